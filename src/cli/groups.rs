//! `bootstrap-main`, `register-group`, `list-groups`, `unregister-group`.

use clap::Args;

use super::output::{print_listing, when};
use super::{CliError, Context, ListArgs};
use crate::actions::{self, RegisterGroup};
use crate::bus::{self, Topic};
use crate::model::{FolderName, Jid};
use crate::store::groups;

#[derive(Debug, Args)]
pub(crate) struct BootstrapMainArgs {
    /// The main chat, `<discord channel id>@discord`.
    #[arg(long)]
    pub(crate) jid: Jid,
    /// Display name.
    #[arg(long, default_value = "Main")]
    pub(crate) name: String,
    /// Folder (default: MAIN_GROUP_FOLDER, `main`).
    #[arg(long)]
    pub(crate) folder: Option<FolderName>,
}

#[derive(Debug, Args)]
pub(crate) struct RegisterGroupArgs {
    /// The chat, `<discord channel id>@discord`.
    #[arg(long)]
    pub(crate) jid: Jid,
    /// Display name.
    #[arg(long)]
    pub(crate) name: String,
    /// Folder under groups/ and data/: ^[a-z0-9][a-z0-9_-]{0,63}$.
    #[arg(long)]
    pub(crate) folder: FolderName,
    /// Trigger word (default: @<ASSISTANT_NAME>).
    #[arg(long)]
    pub(crate) trigger: Option<String>,
    /// Whether messages must start with the trigger (true|false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub(crate) requires_trigger: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UnregisterGroupArgs {
    #[arg(long)]
    pub(crate) jid: Jid,
}

/// Creates the group's folder with a starting memory file, if missing.
fn ensure_group_dir(ctx: &Context, folder: &FolderName, name: &str) -> Result<(), CliError> {
    let dir = ctx.paths.group_dir(folder);
    let memory = dir.join("AGENTS.md");
    if !memory.exists() {
        std::fs::create_dir_all(&dir)
            .and_then(|()| {
                std::fs::write(
                    &memory,
                    format!("# {name}\n\nMemory for this group. The assistant keeps notes here.\n"),
                )
            })
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", memory.display()))?;
    }
    Ok(())
}

pub(crate) fn bootstrap_main(ctx: &Context, a: BootstrapMainArgs) -> Result<(), CliError> {
    let folder = a
        .folder
        .unwrap_or_else(|| ctx.config.main_group_folder.clone());
    let mut store = ctx.open_store()?;
    let req = RegisterGroup::main(a.jid.clone(), a.name, folder);
    let trigger = ctx.config.default_trigger();
    let group = store.write(|tx| {
        // Re-running with the same chat is a no-op, so set-up scripts can repeat it.
        if let Some(main) = groups::get_main(tx)?
            && main.jid == a.jid
        {
            return Ok::<_, actions::ActionError>((main, false));
        }
        actions::register_group(tx, req, &trigger, chrono::Utc::now()).map(|g| (g, true))
    })?;
    ensure_group_dir(ctx, &group.0.folder, &group.0.name)?;
    if group.1 {
        bus::notify(&ctx.paths, Topic::Groups);
        println!(
            "registered main group {} (folder {})",
            group.0.jid, group.0.folder
        );
    } else {
        println!(
            "main group {} is already registered (folder {})",
            group.0.jid, group.0.folder
        );
    }
    Ok(())
}

pub(crate) fn register(ctx: &Context, a: RegisterGroupArgs) -> Result<(), CliError> {
    let mut store = ctx.open_store()?;
    let req = RegisterGroup {
        jid: a.jid,
        name: a.name,
        folder: a.folder,
        trigger: a.trigger,
        requires_trigger: a.requires_trigger,
        is_main: false,
        container_config: None,
    };
    let trigger = ctx.config.default_trigger();
    let group = store.write(|tx| actions::register_group(tx, req, &trigger, chrono::Utc::now()))?;
    ensure_group_dir(ctx, &group.folder, &group.name)?;
    bus::notify(&ctx.paths, Topic::Groups);
    println!(
        "registered group {} (folder {}, trigger {}{})",
        group.jid,
        group.folder,
        group.trigger,
        if group.requires_trigger {
            ""
        } else {
            ", no trigger required"
        }
    );
    Ok(())
}

pub(crate) fn list(ctx: &Context, a: ListArgs) -> Result<(), CliError> {
    let store = ctx.open_store()?;
    let all = groups::list(store.conn())?;
    let tz = ctx.config.timezone;
    print_listing(
        a.json,
        &all,
        &[
            "JID",
            "NAME",
            "FOLDER",
            "TRIGGER",
            "REQUIRES_TRIGGER",
            "MAIN",
            "ADDED",
        ],
        |g| {
            vec![
                g.jid.to_string(),
                g.name.clone(),
                g.folder.to_string(),
                g.trigger.clone(),
                g.requires_trigger.to_string(),
                if g.is_main { "yes" } else { "no" }.to_owned(),
                when(Some(g.added_at), tz),
            ]
        },
    )
}

pub(crate) fn unregister(ctx: &Context, a: UnregisterGroupArgs) -> Result<(), CliError> {
    let mut store = ctx.open_store()?;
    let (group, paused) = store.write(|tx| actions::unregister_group(tx, &a.jid))?;
    bus::notify(&ctx.paths, Topic::Groups);
    if paused > 0 {
        bus::notify(&ctx.paths, Topic::Tasks);
    }
    println!(
        "unregistered {} (folder {} and its data are kept); paused its {paused} active task(s) — `resume-task` them after registering it again",
        group.jid, group.folder
    );
    Ok(())
}
