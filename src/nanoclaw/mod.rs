//! `import-nanoclaw`: moves a NanoClaw v1 install over — registered groups, scheduled
//! tasks, group folders and memory, the sender allowlist — and reports, line by line,
//! what it took, what it had to map and what it skipped, with why.
//!
//! Idempotent: what is already here (same chat, same task id, an existing file) is
//! left alone and reported as present. Groups and tasks go in through the same
//! validation the CLI uses, in one transaction (rolled back under `--dry-run`).

pub(crate) mod files;
pub(crate) mod source;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::actions::{self, ActionError, NewTask, RegisterGroup};
use crate::config::Config;
use crate::model::{ContextMode, FolderName, Jid, ScheduleType, TaskId};
use crate::paths::Paths;
use crate::store::{Store, groups, tasks};
use files::Copied;
use source::{NcGroup, NcTask};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// Taken as it was.
    Imported,
    /// Taken with a change (a jid, folder or file name translated); `detail` says which.
    Mapped,
    /// Already here: left alone.
    Present,
    /// Not taken; `detail` says why.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Item {
    /// `group`, `task`, `file`, `allowlist`, `history`.
    pub(crate) kind: &'static str,
    pub(crate) source: String,
    pub(crate) outcome: Outcome,
    pub(crate) detail: String,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) dry_run: bool,
    pub(crate) items: Vec<Item>,
}

impl Report {
    fn add(
        &mut self,
        kind: &'static str,
        source: impl Into<String>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        self.items.push(Item {
            kind,
            source: source.into(),
            outcome,
            detail: detail.into(),
        });
    }
}

pub(crate) struct Options {
    pub(crate) from: PathBuf,
    /// NanoClaw's sender allowlist (default `~/.config/nanoclaw/sender-allowlist.json`).
    pub(crate) allowlist: Option<PathBuf>,
    /// Where ours goes (default `~/.config/rust-claw/sender-allowlist.json`).
    pub(crate) allowlist_target: Option<PathBuf>,
    pub(crate) dry_run: bool,
}

/// NanoClaw's jid → ours: `dc:<channel id>` → `<channel id>@discord`; other platforms
/// (WhatsApp `…@g.us`, Telegram `tg:…`) have no channel here.
pub(crate) fn map_jid(jid: &str) -> Result<Jid, String> {
    match jid.strip_prefix("dc:") {
        Some(id) => Jid::parse(&format!("{id}@discord")).map_err(|e| e.reason),
        None if jid.ends_with("@g.us") || jid.ends_with("@s.whatsapp.net") => {
            Err("a WhatsApp chat: RustClaw serves Discord only".into())
        }
        None if jid.starts_with("tg:") => {
            Err("a Telegram chat: RustClaw serves Discord only".into())
        }
        None => Err("not a Discord chat (dc:<channel id>)".into()),
    }
}

pub(crate) fn run(paths: &Paths, config: &Config, opts: &Options) -> anyhow::Result<Report> {
    let install = source::read(&opts.from)?;
    let mut report = Report {
        dry_run: opts.dry_run,
        ..Report::default()
    };
    let now = Utc::now();

    // A dry run against a root with no store works on a throwaway copy of nothing.
    let scratch = std::env::temp_dir().join(format!("rust-claw-import-{}.db", std::process::id()));
    let db = if opts.dry_run && !paths.database().exists() {
        scratch.clone()
    } else {
        paths.database()
    };
    let mut store = Store::open(&db)?;
    // NanoClaw folder → ours, for every group that is (or already was) here.
    let mut folders: HashMap<String, (FolderName, Jid)> = HashMap::new();
    {
        let tx = store
            .conn_mut()
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for g in &install.groups {
            import_group(
                &tx,
                config,
                g,
                &install.groups_from,
                now,
                &mut folders,
                &mut report,
            )?;
        }
        for t in &install.tasks {
            import_task(&tx, config, t, &folders, now, &mut report)?;
        }
        if opts.dry_run {
            tx.rollback()?;
        } else {
            tx.commit()?;
        }
    }
    drop(store);
    if db == scratch {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", scratch.display()));
        }
    }

    import_folders(paths, opts, &folders, &mut report);
    import_allowlist(opts, &mut report);
    report.add(
        "history",
        "store/messages.db",
        Outcome::Skipped,
        format!(
            "{} messages and the Claude sessions stay in NanoClaw: codex cannot resume Claude sessions, and each group starts a fresh thread with its memory file",
            install.messages
        ),
    );
    if !opts.dry_run && !install.groups.is_empty() {
        crate::bus::notify(paths, crate::bus::Topic::Groups);
        crate::bus::notify(paths, crate::bus::Topic::Tasks);
    }
    Ok(report)
}

fn import_group(
    tx: &rusqlite::Transaction<'_>,
    config: &Config,
    g: &NcGroup,
    from: &str,
    now: DateTime<Utc>,
    folders: &mut HashMap<String, (FolderName, Jid)>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let source = format!("{} ({from})", g.jid);
    let jid = match map_jid(&g.jid) {
        Ok(j) => j,
        Err(why) => {
            report.add("group", source, Outcome::Skipped, why);
            return Ok(());
        }
    };
    let folder = match FolderName::parse(&g.folder.to_ascii_lowercase()) {
        Ok(f) => f,
        Err(e) => {
            report.add(
                "group",
                source,
                Outcome::Skipped,
                format!("folder {:?}: {}", g.folder, e.reason),
            );
            return Ok(());
        }
    };
    if let Some(existing) = groups::get_by_jid(tx, &jid)? {
        report.add(
            "group",
            source,
            Outcome::Present,
            format!("{jid} is registered (folder {})", existing.folder),
        );
        folders.insert(g.folder.clone(), (existing.folder, jid));
        return Ok(());
    }
    let mut notes = vec![format!("{} → {jid}", g.jid)];
    if folder.as_str() != g.folder {
        notes.push(format!("folder {} → {folder}", g.folder));
    }
    let mut is_main = g.is_main;
    if is_main && let Some(main) = groups::get_main(tx)? {
        notes.push(format!(
            "registered as a normal group: {} is already the main group",
            main.jid
        ));
        is_main = false;
    }
    if g.container_config
        .as_deref()
        .is_some_and(|c| !c.trim().is_empty() && c.trim() != "null")
    {
        notes.push(
            "containerConfig not carried over (extra mounts need RustClaw's own mount allowlist)"
                .into(),
        );
    }
    let trigger = if g.trigger.trim().is_empty() {
        None
    } else {
        Some(g.trigger.trim().to_owned())
    };
    let req = RegisterGroup {
        jid: jid.clone(),
        name: g.name.clone(),
        folder: folder.clone(),
        trigger,
        requires_trigger: g.requires_trigger && !is_main,
        is_main,
        container_config: None,
    };
    match actions::register_group(tx, req, &config.default_trigger(), now) {
        Ok(_) => {
            report.add("group", source, Outcome::Mapped, notes.join("; "));
            folders.insert(g.folder.clone(), (folder, jid));
        }
        Err(ActionError::Store(e)) => return Err(e.into()),
        Err(e) => report.add("group", source, Outcome::Skipped, e.to_string()),
    }
    Ok(())
}

fn import_task(
    tx: &rusqlite::Transaction<'_>,
    config: &Config,
    t: &NcTask,
    folders: &HashMap<String, (FolderName, Jid)>,
    now: DateTime<Utc>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let source = format!("task {}", t.id);
    let skip = |report: &mut Report, why: String| {
        report.add("task", source.clone(), Outcome::Skipped, why)
    };
    match t.status.as_str() {
        "active" | "paused" => {}
        other => {
            skip(report, format!("status {other}: nothing left to run"));
            return Ok(());
        }
    }
    if t.script.is_some() {
        skip(
            report,
            "it has a pre-run script, which RustClaw does not run; re-create it without one".into(),
        );
        return Ok(());
    }
    let Some((folder, jid)) = folders.get(&t.group_folder) else {
        skip(
            report,
            format!("its group {} was not imported", t.group_folder),
        );
        return Ok(());
    };
    let id = match TaskId::parse(&t.id) {
        Ok(id) => id,
        Err(e) => {
            skip(report, e.reason);
            return Ok(());
        }
    };
    if tasks::get(tx, &id)?.is_some() {
        report.add(
            "task",
            source,
            Outcome::Present,
            "a task with this id exists",
        );
        return Ok(());
    }
    let kind = match t.schedule_type.parse::<ScheduleType>() {
        Ok(k) => k,
        Err(e) => {
            skip(report, e.reason);
            return Ok(());
        }
    };
    let context_mode = t
        .context_mode
        .parse::<ContextMode>()
        .unwrap_or(ContextMode::Isolated);
    let req = NewTask {
        id: Some(id.clone()),
        group_folder: folder.clone(),
        chat_jid: jid.clone(),
        prompt: t.prompt.clone(),
        schedule_type: kind,
        schedule_value: t.schedule_value.clone(),
        context_mode,
        timezone: None,
    };
    match actions::create_task(tx, req, "import-nanoclaw", config.timezone, now) {
        Ok(task) => {
            if t.status == "paused" {
                actions::pause_task(tx, &id).map_err(anyhow::Error::from)?;
            }
            let next = match (&task.next_run, t.status.as_str()) {
                (_, "paused") => "paused".to_owned(),
                (Some(n), _) => format!("next run {}", crate::store::rfc3339::format(n)),
                (None, _) => "no next run".to_owned(),
            };
            report.add(
                "task",
                source,
                Outcome::Mapped,
                format!(
                    "{} {:?} in {} for {jid} re-validated in {}; {next}",
                    t.schedule_type, t.schedule_value, folder, config.timezone
                ),
            );
        }
        Err(ActionError::Store(e)) => return Err(e.into()),
        Err(e) => skip(report, e.to_string()),
    }
    Ok(())
}

/// Group folders (CLAUDE.md becomes AGENTS.md; NanoClaw's `logs/` stay behind) and the
/// global memory.
fn import_folders(
    paths: &Paths,
    opts: &Options,
    folders: &HashMap<String, (FolderName, Jid)>,
    report: &mut Report,
) {
    let src_groups = opts.from.join("groups");
    let Ok(src_root) = files::open_dir(&src_groups) else {
        report.add(
            "file",
            "groups/",
            Outcome::Skipped,
            "NanoClaw has no groups/ directory",
        );
        return;
    };
    if !opts.dry_run
        && let Err(e) = std::fs::create_dir_all(paths.groups_dir())
    {
        report.add(
            "file",
            "groups/",
            Outcome::Skipped,
            format!("cannot create {}: {e}", paths.groups_dir().display()),
        );
        return;
    }
    let dst_root = files::open_dir(&paths.groups_dir()).ok();
    let mut pairs: Vec<(String, String)> = folders
        .iter()
        .map(|(nc, (ours, _))| (nc.clone(), ours.to_string()))
        .collect();
    pairs.sort();
    pairs.push(("global".into(), "global".into()));
    for (nc, ours) in pairs {
        let Ok(src) = nix::fcntl::openat(
            &src_root,
            nc.as_str(),
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::empty(),
        ) else {
            continue;
        };
        let dst = match dst_root
            .as_ref()
            .map(|d| files::open_or_make_dir(d, OsStr::new(&ours), opts.dry_run))
        {
            Some(Ok(d)) => d,
            None => None,
            Some(Err(e)) => {
                report.add(
                    "file",
                    format!("groups/{nc}/"),
                    Outcome::Skipped,
                    format!("target groups/{ours}/: {e} (a link or not a directory?)"),
                );
                continue;
            }
        };
        let copied = copy_group_folder(&src, dst.as_ref(), &nc, opts.dry_run);
        report_copied(report, copied, &ours);
    }
}

/// Copies one NanoClaw group folder (`groups/<nc>/`): its CLAUDE.md becomes
/// AGENTS.md (replacing our starter memory), the rest is copied but `logs/`.
fn copy_group_folder(src: &OwnedFd, dst: Option<&OwnedFd>, nc: &str, dry_run: bool) -> Vec<Copied> {
    let mut copied = Vec::new();
    let memory = files::copy_file(
        src,
        dst,
        OsStr::new("CLAUDE.md"),
        OsStr::new("AGENTS.md"),
        format!("groups/{nc}/CLAUDE.md"),
        dry_run,
    );
    let memory = replace_starter_memory(dst, src, memory, dry_run);
    copied.push(memory);
    files::copy_tree(
        src,
        dst,
        &format!("groups/{nc}/"),
        &["CLAUDE.md", "logs"],
        dry_run,
        &mut copied,
    );
    copied
}

/// One report line per file copied (or not) into `groups/<ours>/`.
fn report_copied(report: &mut Report, copied: Vec<Copied>, ours: &str) {
    for c in copied {
        match c {
            Copied::Written(p) if p.ends_with("CLAUDE.md") => report.add(
                "file",
                p,
                Outcome::Mapped,
                format!("→ groups/{ours}/AGENTS.md"),
            ),
            Copied::Written(p) => {
                let rel = p
                    .split_once('/')
                    .and_then(|(_, r)| r.split_once('/'))
                    .map_or("", |(_, r)| r)
                    .to_owned();
                report.add(
                    "file",
                    p,
                    Outcome::Imported,
                    format!("→ groups/{ours}/{rel}"),
                )
            }
            Copied::Present(p) => {
                report.add("file", p, Outcome::Present, "the target exists; left alone")
            }
            // A group folder without a CLAUDE.md: nothing to say.
            Copied::Missing(_) => {}
            Copied::Skipped(p, why) => report.add("file", p, Outcome::Skipped, why),
        }
    }
}

/// `register-group` writes a starter AGENTS.md; NanoClaw's memory replaces that one
/// (and only that one).
fn replace_starter_memory(
    dst: Option<&OwnedFd>,
    src: &OwnedFd,
    result: Copied,
    dry_run: bool,
) -> Copied {
    let (Copied::Present(shown), Some(dst)) = (&result, dst) else {
        return result;
    };
    let Ok(current) = files::read_file(dst, OsStr::new("AGENTS.md")) else {
        return result;
    };
    let text = String::from_utf8_lossy(&current);
    let starter =
        text.len() < 300 && text.contains("Memory for this group. The assistant keeps notes here.");
    if !starter {
        return result;
    }
    if dry_run {
        return Copied::Written(shown.clone());
    }
    if nix::unistd::unlinkat(dst, "AGENTS.md", nix::unistd::UnlinkatFlags::NoRemoveDir).is_err() {
        return result;
    }
    files::copy_file(
        src,
        Some(dst),
        OsStr::new("CLAUDE.md"),
        OsStr::new("AGENTS.md"),
        shown.clone(),
        false,
    )
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// NanoClaw's sender allowlist, with its chat keys mapped to our jids.
fn import_allowlist(opts: &Options, report: &mut Report) {
    let Some(src) = opts
        .allowlist
        .clone()
        .or_else(|| home().map(|h| h.join(".config/nanoclaw/sender-allowlist.json")))
    else {
        return;
    };
    let shown = src.display().to_string();
    let bytes = match std::fs::read(&src) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.add(
                "allowlist",
                shown,
                Outcome::Skipped,
                "not present: every sender may trigger (NanoClaw's default too)",
            );
            return;
        }
        Err(e) => {
            report.add("allowlist", shown, Outcome::Skipped, e.to_string());
            return;
        }
    };
    let mut json: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(j) => j,
        Err(e) => {
            report.add(
                "allowlist",
                shown,
                Outcome::Skipped,
                format!("not valid JSON: {e}"),
            );
            return;
        }
    };
    let mut notes = Vec::new();
    if let Some(chats) = json.get_mut("chats").and_then(|c| c.as_object_mut()) {
        let old = std::mem::take(chats);
        for (jid, rule) in old {
            match map_jid(&jid) {
                Ok(j) => {
                    chats.insert(j.to_string(), rule);
                }
                Err(why) => notes.push(format!("dropped the rule for {jid} ({why})")),
            }
        }
    }
    let Some(target) = opts
        .allowlist_target
        .clone()
        .or_else(|| home().map(|h| h.join(".config/rust-claw/sender-allowlist.json")))
    else {
        report.add("allowlist", shown, Outcome::Skipped, "HOME is not set");
        return;
    };
    let text = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
    if target.exists() {
        let same = std::fs::read_to_string(&target).is_ok_and(|t| t == text);
        let why = if same {
            "already imported"
        } else {
            "a different allowlist is already there; left alone"
        };
        report.add(
            "allowlist",
            shown,
            Outcome::Present,
            format!("{}: {why}", target.display()),
        );
        return;
    }
    notes.insert(
        0,
        format!("→ {} (chat keys mapped to <id>@discord)", target.display()),
    );
    if !opts.dry_run {
        let written = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| write_private(&target, text.as_bytes()));
        if let Err(e) = written {
            report.add(
                "allowlist",
                shown,
                Outcome::Skipped,
                format!("cannot write {}: {e}", target.display()),
            );
            return;
        }
    }
    report.add("allowlist", shown, Outcome::Mapped, notes.join("; "));
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jids_map_for_discord_and_are_explained_otherwise() {
        assert_eq!(
            map_jid("dc:123456789012345678").unwrap().to_string(),
            "123456789012345678@discord"
        );
        assert!(map_jid("120363@g.us").unwrap_err().contains("WhatsApp"));
        assert!(map_jid("tg:-100123").unwrap_err().contains("Telegram"));
        assert!(map_jid("dc:not-a-snowflake").is_err());
    }
}
