//! Where work comes from: inotify events on verified directory descriptors, full
//! rescans, and the per-group queue of request files waiting to be applied.
//!
//! Every directory an agent can write is held open as a [`SafeDir`] (see
//! `crate::safe_dir`); watches are added through `/proc/self/fd/<n>` of that
//! descriptor, so a watch is never set up through a link an agent planted, and events
//! name a watch descriptor, never a path to resolve again. `IN_MOVE_SELF`,
//! `IN_DELETE_SELF` and `IN_IGNORED` mean "this directory is gone": the service
//! re-verifies the group, quarantines an impostor and recreates the directory.
//!
//! Events only say "look at this file"; the directory stays the truth. A rescan at
//! start-up and after a queue overflow catches what events missed.
//!
//! Fairness: [`Pending::take_batch`] takes at most a bounded number of files from each
//! group per pass, in file-name order within the group, so one group flooding
//! requests delays the others by at most one bounded batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::quarantine::Quarantine;
use super::service::Registered;
use crate::model::FolderName;
use crate::paths::IPC_REQUEST_SUBDIRS;
use crate::safe_dir::{Lookup, SafeDir};

/// The host's answers to a group's requests.
pub const RESPONSES: &str = "responses";
/// Marks the watch on the group's IPC directory itself.
const BASE: &str = "";

/// What the event source tells the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A request file may be waiting: `data/ipc/<folder>/<sub>/<name>`.
    File {
        folder: String,
        sub: &'static str,
        name: OsString,
        /// Reported by `IN_CREATE`: a regular file may still be being written.
        created: bool,
    },
    /// A watched directory of this group was moved, deleted or replaced.
    DirGone(String),
    /// Events may have been lost: rescan everything.
    Rescan,
}

/// True for names meant as requests: `*.json` in any case, not dotfiles (writers'
/// temp files). Names the host cannot apply (`x.JSON`, `..json`, not UTF-8) count
/// too, so they are quarantined with a reason instead of ignored.
pub fn is_request_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    let ext = b".json";
    b.len() > ext.len()
        && b[b.len() - ext.len()..].eq_ignore_ascii_case(ext)
        && (!b.starts_with(b".") || b.starts_with(b".."))
}

/// A registered group's IPC directory and its subdirectories, each verified.
#[derive(Debug)]
pub struct GroupDirs {
    pub folder: FolderName,
    pub base: SafeDir,
    pub messages: SafeDir,
    pub tasks: SafeDir,
    pub responses: SafeDir,
}

impl GroupDirs {
    /// Opens a group's directories below `ipc` (`data/ipc/`), creating what is missing
    /// and moving whatever stands in for a directory (a link, a file) to the
    /// quarantine first. Returns whether anything was (re)created.
    pub fn open(
        ipc: &SafeDir,
        q: &Quarantine,
        folder: &FolderName,
    ) -> std::io::Result<(GroupDirs, bool)> {
        let displace = |parent: &SafeDir, name: &str, kind: &'static str| {
            q.put_as(
                folder.as_str(),
                parent,
                OsStr::new(name),
                &format!("{}-dir", name),
                &format!("{name} in the IPC directory was {kind}, not a directory; replaced"),
            );
        };
        let (base, mut created) = ipc.ensure_dir(folder.as_str(), displace)?;
        let mut sub = |name: &str| -> std::io::Result<SafeDir> {
            let (d, c) = base.ensure_dir(name, displace)?;
            created |= c;
            Ok(d)
        };
        let messages = sub(IPC_REQUEST_SUBDIRS[0])?;
        let tasks = sub(IPC_REQUEST_SUBDIRS[1])?;
        let responses = sub(RESPONSES)?;
        Ok((
            GroupDirs {
                folder: folder.clone(),
                base,
                messages,
                tasks,
                responses,
            },
            created,
        ))
    }

    pub fn sub(&self, sub: &str) -> &SafeDir {
        match sub {
            "messages" => &self.messages,
            "tasks" => &self.tasks,
            _ => &self.responses,
        }
    }

    /// True while every subdirectory is still the one we hold.
    pub fn intact(&self) -> bool {
        self.messages.is_at(&self.base, IPC_REQUEST_SUBDIRS[0])
            && self.tasks.is_at(&self.base, IPC_REQUEST_SUBDIRS[1])
            && self.responses.is_at(&self.base, RESPONSES)
    }

    /// The request entries waiting in `messages/` and `tasks/`.
    pub fn scan(&self, out: &mut Vec<Signal>) {
        for sub in IPC_REQUEST_SUBDIRS {
            scan_dir(self.folder.as_str(), sub, self.sub(sub), out);
        }
    }
}

fn scan_dir(folder: &str, sub: &'static str, dir: &SafeDir, out: &mut Vec<Signal>) {
    let Ok(entries) = dir.entries() else { return };
    for (name, _) in entries {
        if is_request_name(&name) {
            out.push(Signal::File {
                folder: folder.to_owned(),
                sub,
                name,
                created: false,
            });
        }
    }
}

/// Request entries of directories under `data/ipc/` that are not registered groups
/// (so not watched): found by rescans, then quarantined.
pub(crate) fn scan_unregistered(ipc: &SafeDir, registered: &Registered) -> Vec<Signal> {
    let mut out = Vec::new();
    let Ok(entries) = ipc.entries() else {
        return out;
    };
    for (name, _) in entries {
        let Some(folder) = name.to_str() else {
            tracing::warn!(entry = ?name, "ignoring an IPC directory whose name is not UTF-8");
            continue;
        };
        if folder == "errors" || FolderName::parse(folder).is_ok_and(|f| registered.contains(&f)) {
            continue;
        }
        for sub in IPC_REQUEST_SUBDIRS {
            if let Ok(Lookup::Dir(d)) = ipc.open_path(&[folder, sub]) {
                scan_dir(folder, sub, &d, &mut out);
            }
        }
    }
    out
}

/// The request directories' watch: file events in `messages/` and `tasks/`.
const FILE_EVENTS: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_CREATE);
/// The group's IPC directory: one of its subdirectories deleted or moved away. (A
/// subdirectory's own `IN_DELETE_SELF` waits until the host closes its descriptor.)
const PARENT_EVENTS: AddWatchFlags = AddWatchFlags::IN_DELETE.union(AddWatchFlags::IN_MOVED_FROM);
/// Every watched directory: "I am gone".
const SELF_EVENTS: AddWatchFlags = AddWatchFlags::IN_MOVE_SELF
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One inotify instance, read from the service's event loop (no thread hop).
pub struct Watcher {
    fd: AsyncFd<Fd>,
    /// Which group directory each watch is on.
    watches: HashMap<WatchDescriptor, (String, &'static str)>,
}

impl Watcher {
    pub fn new() -> std::io::Result<Watcher> {
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        Ok(Watcher {
            // SAFETY: `Fd` owns the inotify descriptor (an `OwnedFd` inside `Inotify`)
            // and never closes or replaces it while the `AsyncFd` holds it.
            fd: unsafe { AsyncFd::register_with_interest(Fd(ino), Interest::READABLE) }?,
            watches: HashMap::new(),
        })
    }

    /// Watches a group's directories (through their descriptors).
    pub fn watch_group(&mut self, dirs: &GroupDirs) -> std::io::Result<()> {
        let folder = dirs.folder.as_str();
        let wd = self
            .fd
            .get_ref()
            .0
            .add_watch(&dirs.base.proc_path(), PARENT_EVENTS | SELF_EVENTS)?;
        self.watches.insert(wd, (folder.to_owned(), BASE));
        for sub in IPC_REQUEST_SUBDIRS.into_iter().chain([RESPONSES]) {
            let mask = if sub == RESPONSES {
                SELF_EVENTS
            } else {
                SELF_EVENTS | FILE_EVENTS
            };
            let wd = self
                .fd
                .get_ref()
                .0
                .add_watch(&dirs.sub(sub).proc_path(), mask)?;
            self.watches.insert(wd, (folder.to_owned(), sub));
        }
        Ok(())
    }

    pub fn unwatch_group(&mut self, folder: &str) {
        let wds: Vec<WatchDescriptor> = self
            .watches
            .iter()
            .filter(|(_, (f, _))| f == folder)
            .map(|(wd, _)| *wd)
            .collect();
        for wd in wds {
            self.watches.remove(&wd);
            // Fails when the kernel already dropped it (directory deleted): fine.
            let _ = self.fd.get_ref().0.rm_watch(wd);
        }
    }

    /// Waits for events and turns them into signals.
    pub async fn next(&mut self) -> Vec<Signal> {
        loop {
            let mut guard = match self.fd.readable().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "the IPC watcher failed; rescanning");
                    return vec![Signal::Rescan];
                }
            };
            match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(Into::into)) {
                Ok(Ok(events)) => return self.classify(events),
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EAGAIN as i32) => guard.clear_ready(),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read IPC watcher events; rescanning");
                    return vec![Signal::Rescan];
                }
                Err(_would_block) => {}
            }
        }
    }

    /// Every event already queued, without waiting (a burst is taken whole, so a pass
    /// gets full batches instead of one read's worth).
    pub fn ready(&mut self) -> Vec<Signal> {
        let mut out = Vec::new();
        while let Ok(events) = self.fd.get_ref().0.read_events() {
            if events.is_empty() {
                break;
            }
            out.extend(self.classify(events));
        }
        out
    }

    fn classify(&mut self, events: Vec<nix::sys::inotify::InotifyEvent>) -> Vec<Signal> {
        let mut out = Vec::new();
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                tracing::warn!("IPC watcher queue overflowed; rescanning");
                out.push(Signal::Rescan);
                continue;
            }
            let Some((folder, sub)) = self.watches.get(&ev.wd).cloned() else {
                continue;
            };
            let gone = AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_IGNORED;
            if ev.mask.intersects(gone) {
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    self.watches.remove(&ev.wd);
                }
                out.push(Signal::DirGone(folder));
                continue;
            }
            let Some(name) = ev.name else { continue };
            if sub == BASE {
                if ev.mask.intersects(PARENT_EVENTS)
                    && (IPC_REQUEST_SUBDIRS.iter().any(|s| name == *s) || name == RESPONSES)
                {
                    out.push(Signal::DirGone(folder));
                }
                continue;
            }
            if !is_request_name(&name) {
                continue;
            }
            // A file just created by open(O_CREAT) may still be being written (its
            // close-write event follows); the service checks.
            let created = ev.mask.contains(AddWatchFlags::IN_CREATE);
            out.push(Signal::File {
                folder,
                sub,
                name,
                created,
            });
        }
        out
    }
}

/// Request files waiting, per folder, in file-name order.
#[derive(Debug, Default)]
pub struct Pending {
    by_folder: BTreeMap<String, BTreeSet<(OsString, &'static str)>>,
    /// Round-robin start, so no folder is always first.
    cursor: usize,
}

/// One folder's share of a pass: `(sub, name)` in order.
pub type Batch = Vec<(String, Vec<(&'static str, OsString)>)>;

impl Pending {
    pub fn insert(&mut self, folder: String, sub: &'static str, name: OsString) {
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

    fn os(s: &str) -> OsString {
        s.into()
    }

    #[test]
    fn batches_are_fair_and_ordered() {
        let mut p = Pending::default();
        for i in (0..100).rev() {
            p.insert("flood".into(), "tasks", os(&format!("{i:03}.json")));
        }
        p.insert("quiet".into(), "messages", os("b.json"));
        p.insert("quiet".into(), "tasks", os("a.json"));
        let batch = p.take_batch(8, 64);
        let quiet = batch.iter().find(|(f, _)| f == "quiet").unwrap();
        assert_eq!(
            quiet.1,
            [("tasks", os("a.json")), ("messages", os("b.json"))]
        );
        let flood = batch.iter().find(|(f, _)| f == "flood").unwrap();
        assert_eq!(flood.1.len(), 8);
        assert_eq!(flood.1[0].1, os("000.json"));
        assert_eq!(p.len(), 92);
    }

    #[test]
    fn request_names() {
        assert!(is_request_name(&os("1.json")));
        assert!(is_request_name(&os("x.JSON")), "answered as unusable");
        assert!(is_request_name(&os("..json")), "answered as unusable");
        assert!(!is_request_name(&os(".1.json")));
        assert!(!is_request_name(&os("1.json.tmp")));
        assert!(!is_request_name(&os(".json")));
    }
}
