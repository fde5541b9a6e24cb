//! `skills list|enable|disable --group <folder> [<name>]`.
//!
//! A skill is a directory with a `SKILL.md` under `groups/global/skills/` or the
//! group's own `groups/<folder>/skills/`; enabling one makes the group's agent see it
//! (it is installed into the group's codex home before the next session).

use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::print_listing;
use super::{CliError, Context};
use crate::actions;
use crate::bus::{self, Topic};
use crate::model::FolderName;
use crate::store::{groups, skills as skill_store};

#[derive(Debug, Args)]
pub(crate) struct SkillsArgs {
    #[command(subcommand)]
    pub(crate) command: SkillsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SkillsCommand {
    /// List the skills available to a group and whether each is enabled.
    List {
        #[arg(long)]
        group: FolderName,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Enable a skill for a group.
    Enable {
        #[arg(long)]
        group: FolderName,
        name: String,
    },
    /// Disable a skill for a group.
    Disable {
        #[arg(long)]
        group: FolderName,
        name: String,
    },
}

#[derive(Debug, Serialize)]
struct SkillRow {
    name: String,
    enabled: bool,
    /// `group` (its own folder) or `global`.
    source: &'static str,
}

pub(crate) fn run(ctx: &Context, a: SkillsArgs) -> Result<(), CliError> {
    match a.command {
        SkillsCommand::List { group, json } => list(ctx, &group, json),
        SkillsCommand::Enable { group, name } => set(ctx, &group, &name, true),
        SkillsCommand::Disable { group, name } => set(ctx, &group, &name, false),
    }
}

fn require_group(store: &crate::store::Store, folder: &FolderName) -> Result<(), CliError> {
    match groups::get_by_folder(store.conn(), folder)? {
        Some(_) => Ok(()),
        None => Err(CliError::Invalid(format!(
            "invalid --group: no registered group has folder {folder}"
        ))),
    }
}

fn list(ctx: &Context, folder: &FolderName, json: bool) -> Result<(), CliError> {
    let store = ctx.open_store()?;
    require_group(&store, folder)?;
    let enabled = skill_store::enabled(store.conn(), folder)?;
    let rows: Vec<SkillRow> = crate::skills::list(&ctx.paths, folder)
        .into_iter()
        .map(|s| SkillRow {
            enabled: enabled.contains(&s.name),
            source: match s.scope {
                crate::skills::Scope::Group => "group",
                crate::skills::Scope::Global => "global",
            },
            name: s.name,
        })
        .collect();
    print_listing(json, &rows, &["NAME", "ENABLED", "SOURCE"], |r| {
        vec![
            r.name.clone(),
            if r.enabled { "yes" } else { "no" }.to_owned(),
            r.source.to_owned(),
        ]
    })
}

fn set(ctx: &Context, folder: &FolderName, name: &str, on: bool) -> Result<(), CliError> {
    let mut store = ctx.open_store()?;
    require_group(&store, folder)?;
    let available = crate::skills::available(&ctx.paths, folder);
    store.write(|tx| actions::set_skill(tx, folder, name, on, &available, chrono::Utc::now()))?;
    bus::notify(&ctx.paths, Topic::Skills);
    println!(
        "{} skill {name} for group {folder} (takes effect at its next agent session)",
        if on { "enabled" } else { "disabled" }
    );
    Ok(())
}
