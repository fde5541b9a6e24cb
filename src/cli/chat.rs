//! `rust_claw chat`: talk to a group's assistant from the terminal.
//!
//! It runs the whole pipeline in this process — store, group queue, agent, IPC watcher,
//! scheduler — with the local terminal channel instead of Discord, so anyone can try
//! RustClaw without a bot token. It therefore needs the root to itself: if a daemon is
//! running on the same root, it says so and exits.
//!
//! The terminal is chat `<folder>@local`, routed to group `<folder>`; every line is
//! addressed to the assistant. With no main group registered at all, `chat` registers
//! a terminal-only main group (`main@local`) so a fresh install works at once.
//!
//! It ends when the input ends and every reply is out, or within about a second of
//! Ctrl-C or SIGTERM, whatever it is waiting for (stdin is read on a thread of its
//! own, which never holds the exit); a second Ctrl-C ends it at once.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use super::{CliError, Context};
use crate::actions::{self, RegisterGroup};
use crate::channels::local::LocalChannel;
use crate::daemon::{Daemon, InstanceLock, RUNTIME_GRACE};
use crate::model::{FolderName, Jid};
use crate::shutdown::Shutdown;
use crate::store::groups;

#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// The group to talk to (default: the main group's folder).
    #[arg(long)]
    pub(crate) group: Option<FolderName>,
}

pub(crate) fn chat(ctx: &Context, a: ChatArgs) -> Result<(), CliError> {
    let _lock = InstanceLock::acquire(&ctx.paths).map_err(|e| {
        CliError::Runtime(anyhow::anyhow!(
            "{e:#}\n`rust_claw chat` runs the whole pipeline itself and cannot share the root with a running daemon; \
             stop the daemon first (e.g. `systemctl stop rust-claw`), or use another --root"
        ))
    })?;
    let folder = a
        .group
        .unwrap_or_else(|| ctx.config.main_group_folder.clone());
    let mut store = ctx.open_store()?;
    let trigger = ctx.config.default_trigger();
    let main_folder = ctx.config.main_group_folder.clone();
    let f = folder.clone();
    let (group, created) = store.write(|tx| {
        if let Some(g) = groups::get_by_folder(tx, &f)? {
            return Ok::<_, actions::ActionError>((g, false));
        }
        if f == main_folder && groups::get_main(tx)?.is_none() {
            let req = RegisterGroup::main(Jid::local_for(&f), "Main (terminal)", f.clone());
            return actions::register_group(tx, req, &trigger, chrono::Utc::now())
                .map(|g| (g, true));
        }
        Err(actions::ActionError::Invalid(
            crate::model::ValidationError::new(
                "group",
                format!("no group uses folder {f}; see `rust_claw list-groups`"),
            ),
        ))
    })?;
    if created {
        eprintln!(
            "No main group was registered: registered {} as a terminal-only main group.",
            group.jid
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = Arc::new(ctx.config.clone());
    let done = runtime.block_on(async move {
        let stop = Shutdown::new();
        stop.on_signals()
            .context("cannot install the SIGINT/SIGTERM handlers")?;
        let local = Arc::new(
            LocalChannel::stdio(&folder, &config.assistant_name)
                .context("cannot read the terminal")?,
        );
        let input_closed = local.input_closed();
        let jid = local.jid().clone();
        let d = Daemon::start(&ctx.paths, config.clone(), store, vec![local.clone()]).await?;
        eprintln!(
            "Chatting with {} (group {}). Type a message and press Enter; Ctrl-D or Ctrl-C to quit.",
            config.assistant_name, folder
        );
        let answered = async {
            input_closed.notified().await;
            // Every line typed is stored before we look for unanswered ones.
            d.wait_ingested(local.lines_sent()).await;
            d.wait_answered(&jid).await
        };
        tokio::select! {
            _ = answered => {}
            _ = stop.triggered() => {}
        }
        d.shutdown().await;
        Ok::<_, anyhow::Error>(())
    });
    // The stdin thread may still be blocked in a read: it never holds the exit.
    runtime.shutdown_timeout(RUNTIME_GRACE);
    done?;
    Ok(())
}
