//! Where work comes from: inotify events (through `notify`), full rescans, and the
//! per-group queue of request files waiting to be applied.
//!
//! Events only say "look at this file"; the file system stays the truth. A rescan at
//! start-up and after any watcher error or queue overflow catches what events missed
//! (a file written while the daemon was down, or during a watcher restart).
//!
//! Fairness: [`Pending::take_batch`] takes at most a bounded number of files from each
//! group per pass, in file-name order within the group, so one group flooding
//! requests delays the others by at most one bounded batch.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedSender;

use crate::model::FolderName;
use crate::paths::{IPC_REQUEST_SUBDIRS, Paths};

/// What the event source tells the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A request file may be waiting: `data/ipc/<folder>/<sub>/<name>`.
    File {
        folder: String,
        sub: &'static str,
        name: String,
    },
    /// A watched directory vanished (an agent deleted it): recreate and rewatch.
    DirGone,
    /// Events may have been lost: rescan everything.
    Rescan,
}

/// True for names the host reads: `*.json`, not dotfiles (writers' temp files).
pub fn is_request_name(name: &str) -> bool {
    name.ends_with(".json") && !name.starts_with('.') && name.len() > ".json".len()
}

/// Maps `<ipc_root>/<folder>/<sub>/<name>` to its parts.
fn locate(ipc_root: &Path, path: &Path) -> Option<(String, &'static str, String)> {
    let rel = path.strip_prefix(ipc_root).ok()?;
    let mut parts = rel.components();
    let folder = parts.next()?.as_os_str().to_str()?.to_owned();
    let sub = parts.next()?.as_os_str().to_str()?;
    let name = parts.next()?.as_os_str().to_str()?.to_owned();
    if parts.next().is_some() {
        return None;
    }
    let sub = IPC_REQUEST_SUBDIRS.into_iter().find(|s| *s == sub)?;
    Some((folder, sub, name))
}

/// Turns one notify event into signals.
fn classify(ipc_root: &Path, res: notify::Result<notify::Event>) -> Vec<Signal> {
    let event = match res {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "IPC watcher error; rescanning");
            return vec![Signal::Rescan];
        }
    };
    if event.need_rescan() {
        tracing::warn!("IPC watcher queue overflowed; rescanning");
        return vec![Signal::Rescan];
    }
    let mut out = Vec::new();
    match event.kind {
        EventKind::Remove(_) => {
            if event.paths.iter().any(|p| {
                p.parent().and_then(|d| d.parent()) == Some(ipc_root)
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| IPC_REQUEST_SUBDIRS.contains(&n))
            }) {
                out.push(Signal::DirGone);
            }
            return out;
        }
        EventKind::Create(_)
        | EventKind::Modify(ModifyKind::Name(
            RenameMode::To | RenameMode::Both | RenameMode::Any,
        ))
        | EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        _ => return out,
    }
    for path in &event.paths {
        let Some((folder, sub, name)) = locate(ipc_root, path) else {
            continue;
        };
        if !is_request_name(&name) {
            continue;
        }
        if let EventKind::Create(_) = event.kind {
            // A regular file just created by open(O_CREAT) may still be being
            // written: wait for its close-write event. Anything else (a link, a
            // FIFO, a directory, a hard link to a finished file) is ready now.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.nlink() == 1) {
                continue;
            }
        }
        out.push(Signal::File { folder, sub, name });
    }
    out
}

/// Starts the inotify watcher; its callback thread feeds `tx`.
pub fn start(paths: &Paths, tx: UnboundedSender<Signal>) -> notify::Result<RecommendedWatcher> {
    let root = paths.ipc_root();
    notify::recommended_watcher(move |res| {
        for signal in classify(&root, res) {
            // The receiver is gone only during shutdown.
            let _ = tx.send(signal);
        }
    })
}

/// Adds watches on a group's request directories.
pub fn watch_group(
    watcher: &mut RecommendedWatcher,
    paths: &Paths,
    folder: &FolderName,
) -> notify::Result<()> {
    for dir in paths.ipc_request_dirs(folder) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok(())
}

pub fn unwatch_group(watcher: &mut RecommendedWatcher, paths: &Paths, folder: &FolderName) {
    for dir in paths.ipc_request_dirs(folder) {
        let _ = watcher.unwatch(&dir);
    }
}

/// Makes sure a group's IPC directories exist and are real directories. An agent
/// could replace `tasks/` with a symlink to somewhere on the host, making the host
/// read, move or delete files there: such an entry is moved to the quarantine and a
/// real directory created in its place. Returns whether anything was (re)created.
pub fn ensure_group_dirs(paths: &Paths, folder: &FolderName) -> std::io::Result<bool> {
    let mut created = false;
    let base = paths.ipc_dir(folder);
    let dirs: Vec<PathBuf> = std::iter::once(base.clone())
        .chain(paths.ipc_request_dirs(folder))
        .chain(std::iter::once(paths.ipc_responses_dir(folder)))
        .collect();
    for dir in dirs {
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let name = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("entry")
                    .to_owned();
                super::quarantine::quarantine(
                    paths,
                    folder.as_str(),
                    &dir,
                    &format!("{name}-dir"),
                    &format!("{} was not a directory (a symlink?)", dir.display()),
                );
                std::fs::create_dir_all(&dir)?;
                created = true;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)?;
                created = true;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Every request entry under `data/ipc/*/{messages,tasks}/`, registered or not.
pub fn scan_all(paths: &Paths) -> Vec<Signal> {
    let root = paths.ipc_root();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Ok(folder) = e.file_name().into_string() else {
            tracing::warn!(entry = ?e.file_name(), "ignoring an IPC directory whose name is not UTF-8");
            continue;
        };
        if folder == "errors" || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        scan_folder(paths, &folder, &mut out);
    }
    out
}

/// The request entries of one folder's directories.
pub fn scan_folder(paths: &Paths, folder: &str, out: &mut Vec<Signal>) {
    for sub in IPC_REQUEST_SUBDIRS {
        let dir = paths.ipc_root().join(folder).join(sub);
        // A request dir that is itself a link is never listed through.
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(name) = e.file_name().into_string()
                && is_request_name(&name)
            {
                out.push(Signal::File {
                    folder: folder.to_owned(),
                    sub,
                    name,
                });
            }
        }
    }
}

/// Request files waiting, per folder, in file-name order.
#[derive(Debug, Default)]
pub struct Pending {
    by_folder: BTreeMap<String, BTreeSet<(String, &'static str)>>,
    /// Round-robin start, so no folder is always first.
    cursor: usize,
}

/// One folder's share of a pass: `(sub, name)` in order.
pub type Batch = Vec<(String, Vec<(&'static str, String)>)>;

impl Pending {
    pub fn insert(&mut self, folder: String, sub: &'static str, name: String) {
        self.by_folder
            .entry(folder)
            .or_default()
            .insert((name, sub));
    }

    pub fn is_empty(&self) -> bool {
        self.by_folder.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_folder.values().map(|s| s.len()).sum()
    }

    /// Takes up to `per_folder` files from each folder (at most `max_total` in all),
    /// starting at a rotating folder.
    pub fn take_batch(&mut self, per_folder: usize, max_total: usize) -> Batch {
        let folders: Vec<String> = self.by_folder.keys().cloned().collect();
        if folders.is_empty() {
            return Vec::new();
        }
        let start = self.cursor % folders.len();
        self.cursor = self.cursor.wrapping_add(1);
        let mut out = Vec::new();
        let mut total = 0;
        for i in 0..folders.len() {
            if total >= max_total {
                break;
            }
            let folder = &folders[(start + i) % folders.len()];
            let set = self.by_folder.get_mut(folder).expect("key listed above");
            let n = per_folder.min(max_total - total);
            let mut items = Vec::with_capacity(n.min(set.len()));
            while items.len() < n {
                let Some((name, sub)) = set.pop_first() else {
                    break;
                };
                items.push((sub, name));
            }
            total += items.len();
            if set.is_empty() {
                self.by_folder.remove(folder);
            }
            out.push((folder.clone(), items));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_fair_and_ordered() {
        let mut p = Pending::default();
        for i in (0..100).rev() {
            p.insert("flood".into(), "tasks", format!("{i:03}.json"));
        }
        p.insert("quiet".into(), "messages", "b.json".into());
        p.insert("quiet".into(), "tasks", "a.json".into());
        let batch = p.take_batch(8, 64);
        let quiet = batch.iter().find(|(f, _)| f == "quiet").unwrap();
        assert_eq!(
            quiet.1,
            [
                ("tasks", "a.json".to_owned()),
                ("messages", "b.json".to_owned())
            ]
        );
        let flood = batch.iter().find(|(f, _)| f == "flood").unwrap();
        assert_eq!(flood.1.len(), 8);
        assert_eq!(flood.1[0].1, "000.json");
        assert_eq!(p.len(), 92);
    }

    #[test]
    fn locating_paths() {
        let root = Path::new("/r/data/ipc");
        assert_eq!(
            locate(root, Path::new("/r/data/ipc/ops/tasks/1.json")),
            Some(("ops".into(), "tasks", "1.json".into()))
        );
        assert_eq!(
            locate(root, Path::new("/r/data/ipc/ops/responses/1.json")),
            None
        );
        assert!(!is_request_name(".1.json"));
        assert!(!is_request_name("1.json.tmp"));
        assert!(!is_request_name(".json"));
    }
}
