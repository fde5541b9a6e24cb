//! What a running daemon is doing, asked without a network port.
//!
//! The daemon's memory (which groups hold an agent, which wait) is reached through
//! `data/control/status/`: a CLI process renames `<id>.req` into it, the daemon hears
//! it through inotify and answers with `<id>.json` (written aside, then renamed), and
//! the CLI waits for that file the same way. Everything else `status` shows comes from
//! the store. Whether a daemon runs at all is read from the kernel's lock table: the
//! daemon holds `store/daemon.lock`, and `/proc/locks` names the holder's pid without
//! anyone having to touch the lock (taking it, even briefly, could make a starting
//! daemon fail).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::paths::Paths;
use crate::queue::GroupActivity;

/// The daemon's own view, as it answers a status request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LiveStatus {
    pub(crate) pid: u32,
    pub(crate) version: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) active_agents: usize,
    pub(crate) max_agents: usize,
    /// Groups with an agent or queued work; idle groups are absent.
    pub(crate) groups: Vec<GroupActivity>,
    pub(crate) turns: u64,
    pub(crate) sessions_started: u64,
}

impl LiveStatus {
    /// This process's status now.
    pub(crate) fn now(
        started_at: DateTime<Utc>,
        max_agents: usize,
        active_agents: usize,
        groups: Vec<GroupActivity>,
        stats: &crate::orchestrator::Stats,
    ) -> LiveStatus {
        use std::sync::atomic::Ordering::Relaxed;
        LiveStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at,
            active_agents,
            max_agents,
            groups,
            turns: stats.turns.load(Relaxed),
            sessions_started: stats.sessions_started.load(Relaxed),
        }
    }
}

fn status_dir(paths: &Paths) -> PathBuf {
    paths.control_dir().join("status")
}

/// The daemon's side: answers status requests until dropped.
pub(crate) struct Responder {
    _watcher: notify::RecommendedWatcher,
}

/// Starts answering status requests with `snapshot()`. Requests left by CLI processes
/// before this daemon started are removed first.
pub(crate) fn serve(
    paths: &Paths,
    snapshot: impl Fn() -> LiveStatus + Send + Sync + 'static,
) -> anyhow::Result<Responder> {
    use notify::{EventKind, RecursiveMode, Watcher as _};
    let dir = status_dir(paths);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let snapshot = Arc::new(snapshot);
    let answer_dir = dir.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_) | EventKind::Remove(_)) {
            return;
        }
        for path in &event.paths {
            let Some(id) = request_id(path) else { continue };
            // A request seen twice (create + rename events) is answered once: the
            // first answer removes it.
            if std::fs::remove_file(path).is_err() {
                continue;
            }
            if let Err(e) = answer(&answer_dir, id, &snapshot()) {
                tracing::warn!(error = %e, "cannot answer a status request");
            }
        }
    })
    .context("cannot start a file watcher for status requests")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(Responder { _watcher: watcher })
}

/// `<id>.req` → `<id>`, for ids a CLI process could have made (digits and `-`).
fn request_id(path: &Path) -> Option<&str> {
    let id = path.file_name()?.to_str()?.strip_suffix(".req")?;
    (!id.is_empty() && id.len() <= 40 && id.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        .then_some(id)
}

fn answer(dir: &Path, id: &str, status: &LiveStatus) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{id}.json.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    serde_json::to_writer(&mut f, status)?;
    f.write_all(b"\n")?;
    drop(f);
    std::fs::rename(&tmp, dir.join(format!("{id}.json")))
}

/// The CLI's side: asks a running daemon for its [`LiveStatus`]; `None` if no answer
/// came within `within` (no daemon, or a daemon that does not answer).
pub(crate) fn ask(paths: &Paths, within: Duration) -> anyhow::Result<Option<LiveStatus>> {
    use notify::{RecursiveMode, Watcher as _};
    let dir = status_dir(paths);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let id = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let answer = dir.join(format!("{id}.json"));
    let (tx, rx) = std::sync::mpsc::channel();
    let target = answer.clone();
    // Watch before asking, so the answer cannot slip by.
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && event.paths.iter().any(|p| p == &target)
        {
            let _ = tx.send(());
        }
    })
    .context("cannot start a file watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    let tmp = dir.join(format!(".{id}.req.tmp"));
    std::fs::write(&tmp, b"")
        .and_then(|()| std::fs::rename(&tmp, dir.join(format!("{id}.req"))))
        .with_context(|| format!("cannot write a status request into {}", dir.display()))?;
    let deadline = std::time::Instant::now() + within;
    let result = loop {
        if let Ok(bytes) = std::fs::read(&answer) {
            break Some(serde_json::from_slice(&bytes).context("unreadable status answer")?);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || rx.recv_timeout(left).is_err() {
            break None;
        }
    };
    let _ = std::fs::remove_file(&answer);
    let _ = std::fs::remove_file(dir.join(format!("{id}.req")));
    Ok(result)
}

/// The pid of the process holding the root's daemon lock, read from `/proc/locks`
/// (without touching the lock); `None` when no daemon runs on this root.
pub(crate) fn daemon_pid(paths: &Paths) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(paths.daemon_lock()).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    lock_holder(&locks, meta.dev(), meta.ino())
}

/// Finds the holder of a FLOCK on (`dev`, `ino`) in `/proc/locks` text. Lines look like
/// `3: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF` (device in hex, inode decimal);
/// waiters (`-> FLOCK …`) are skipped.
fn lock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = f.get(5)?.split(':');
        let (ma, mi, i) = (id.next()?, id.next()?, id.next()?);
        (u64::from_str_radix(ma, 16).ok()? == major
            && u64::from_str_radix(mi, 16).ok()? == minor
            && i.parse::<u64>().ok()? == ino)
            .then(|| f[4].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_found_by_device_and_inode() {
        let dev = nix::sys::stat::makedev(0x08, 0x21);
        let table = "1: POSIX  ADVISORY  WRITE 99 08:21:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 08:21:77 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 5555 08:21:77 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 11 08:22:77 0 EOF\n";
        assert_eq!(lock_holder(table, dev, 77), Some(4242));
        assert_eq!(lock_holder(table, dev, 78), None);
    }

    #[test]
    fn only_cli_made_ids_are_requests() {
        assert_eq!(request_id(Path::new("/x/12-34.req")), Some("12-34"));
        assert_eq!(request_id(Path::new("/x/.12-34.req.tmp")), None);
        assert_eq!(request_id(Path::new("/x/../a.req")), None);
        assert_eq!(request_id(Path::new("/x/12.json")), None);
    }

    #[test]
    fn a_request_is_answered_and_a_lock_holder_found() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert!(daemon_pid(&paths).is_none());
        let _lock = crate::daemon::InstanceLock::acquire(&paths).unwrap();
        assert_eq!(daemon_pid(&paths), Some(std::process::id()));
        let started_at = Utc::now();
        let _r = serve(&paths, move || LiveStatus {
            pid: 7,
            version: "v".into(),
            started_at,
            active_agents: 1,
            max_agents: 5,
            groups: vec![],
            turns: 3,
            sessions_started: 1,
        })
        .unwrap();
        let got = ask(&paths, Duration::from_secs(5))
            .unwrap()
            .expect("answered");
        assert_eq!((got.pid, got.turns, got.started_at), (7, 3, started_at));
        // Nothing is left behind.
        let left: Vec<_> = std::fs::read_dir(status_dir(&paths)).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
