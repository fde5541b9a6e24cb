//! Read-only views an agent reads from its IPC directory, written by the host:
//!
//! * `current_tasks.json` — the main group sees every task, other groups their own;
//! * `available_groups.json` — the main group sees every known chat (registered or
//!   not), other groups an empty list;
//! * `current_skills.json` — the skills available to the group and whether each is on.
//!
//! Each is rendered from the store under the store lock, then written atomically
//! (temp file + rename) outside it, and only when its bytes changed, so a refresh that
//! changes nothing costs no write and wakes no reader. The shapes follow NanoClaw v1's
//! (camelCase where NanoClaw used it) so NanoClaw agents read them unchanged.
//!
//! A task snapshot costs what changed, not what exists: each group's tasks are rendered
//! once into a "chunk" kept in a host-private cache directory (`data/snapshot-cache/`,
//! derived, rebuilt at start-up, never fsynced, overwritten in place). A request's
//! change to a task is spliced into its group's chunk, reading back that task only
//! ([`chunk::splice`]); a change announced without naming its tasks (the scheduler's,
//! the CLI's) re-renders the chunks. The main group's list — every task — is the
//! chunks concatenated by folder, copied from the page cache instead of re-read from
//! the store and re-serialised. Nothing of it is held in memory between passes.
//!
//! The main group's list is the one snapshot whose size is every task, so it is not
//! written on another group's request path: the IPC service writes it a short while
//! after the first change it is behind ([`Writer::main_pending`]), once for every
//! change in that while, concurrently with the passes. Only a request of the main
//! group itself waits for it, so that main reads its own change after its answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::sync::LockExt as _;

use rusqlite::Connection;
use serde_json::{Value, json};

use super::watcher::GroupDirs;
use crate::model::{FolderName, Jid, TaskId};
use crate::paths::Paths;
use crate::safe_dir::{Durability, SafeDir};
use crate::skills;
use crate::store::groups::Group;
use crate::store::{self, StoreError, chats, groups, tasks};
use std::io::Write as _;

mod chunk;

use chunk::wrap;

pub const TASKS_FILE: &str = "current_tasks.json";
pub const GROUPS_FILE: &str = "available_groups.json";
pub const SKILLS_FILE: &str = "current_skills.json";

/// Which snapshots to render.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds {
    pub tasks: bool,
    pub groups: bool,
    pub skills: bool,
}

impl Kinds {
    pub const ALL: Kinds = Kinds {
        tasks: true,
        groups: true,
        skills: true,
    };
}

/// Rendered snapshot files, ready to be written: (group, file name, bytes).
pub type Rendered = Vec<(FolderName, &'static str, Vec<u8>)>;

/// Renders the chosen snapshots of `group` (call under the store lock), except the
/// task list, which goes through [`Writer::update_tasks`] / [`Writer::rebuild_tasks`].
pub fn render(
    conn: &Connection,
    paths: &Paths,
    group: &Group,
    kinds: Kinds,
    out: &mut Rendered,
) -> Result<(), StoreError> {
    let folder = &group.folder;
    if kinds.groups {
        let list = if group.is_main {
            known_chats(conn)?
        } else {
            Vec::new()
        };
        out.push((
            folder.clone(),
            GROUPS_FILE,
            pretty(&json!({ "groups": list })),
        ));
    }
    if kinds.skills {
        let enabled = store::skills::enabled(conn, &group.folder)?;
        let list: Vec<Value> = skills::list(paths, &group.folder)
            .into_iter()
            .map(|s| {
                let on = enabled.contains(&s.name);
                json!({ "name": s.name, "scope": s.scope, "enabled": on })
            })
            .collect();
        out.push((
            folder.clone(),
            SKILLS_FILE,
            pretty(&json!({ "skills": list })),
        ));
    }
    Ok(())
}

/// Every chat the daemon knows: registered groups first, then other seen chats.
fn known_chats(conn: &Connection) -> Result<Vec<Value>, StoreError> {
    let registered = groups::list(conn)?;
    let mut list: Vec<Value> = Vec::new();
    let seen = chats::list(conn)?;
    let activity: HashMap<&Jid, _> = seen.iter().map(|c| (&c.jid, c.last_message_at)).collect();
    for g in &registered {
        list.push(json!({
            "jid": g.jid,
            "name": g.name,
            "folder": g.folder,
            "isMain": g.is_main,
            "isRegistered": true,
            "lastActivity": activity.get(&g.jid).copied().flatten(),
        }));
    }
    for c in &seen {
        if registered.iter().any(|g| g.jid == c.jid) {
            continue;
        }
        list.push(json!({
            "jid": c.jid,
            "name": c.name,
            "isRegistered": false,
            "lastActivity": c.last_message_at,
        }));
    }
    Ok(list)
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The longest chunk file read back (a group's tasks; far above any real size).
const MAX_CHUNK_BYTES: u64 = 256 * 1024 * 1024;

fn pretty<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Writes snapshot files through each group's verified IPC directory descriptor,
/// skipping those whose content is unchanged since the last write through this writer,
/// and keeps the per-group task chunks the main group's task list is assembled from.
///
/// Whether a task list changed is decided on its chunk, byte for byte (a length
/// differs, or the cached bytes differ), not by hashing hundreds of kilobytes per
/// request; the small snapshots are compared by digest.
pub struct Writer {
    /// Digest of the last small snapshot (groups, skills) written, by group and file.
    last: HashMap<(FolderName, &'static str), u64>,
    /// Groups whose `current_tasks.json` was written from their current chunk.
    shown: HashSet<FolderName>,
    /// `data/snapshot-cache/` (the owner's, private).
    cache: SafeDir,
    /// Length of each non-empty chunk in `cache`, by folder (the folders main lists).
    chunks: BTreeMap<FolderName, usize>,
    /// `chunks` reflects every task in the store (a rebuild has run).
    built: bool,
    /// A chunk changed since the main group's task list was last written.
    main_stale: bool,
    /// Held while the main group's list is written (see [`Writer::write_main_tasks`]).
    main_gate: Arc<Mutex<()>>,
}

impl Writer {
    /// Opens (creating, private) the chunk cache directory.
    pub fn open(paths: &Paths) -> std::io::Result<Writer> {
        let dir = paths.snapshot_cache_dir();
        crate::safe_dir::ensure_private_dir(&dir)?;
        Ok(Writer {
            last: HashMap::new(),
            shown: HashSet::new(),
            cache: SafeDir::open_trusted(&dir, false)?,
            chunks: BTreeMap::new(),
            built: false,
            main_stale: true,
            main_gate: Arc::default(),
        })
    }

    /// Whether the chunks cover the whole store (else rebuild before assembling).
    pub fn built(&self) -> bool {
        self.built
    }

    /// Re-renders `folder`'s task chunk (call under the store lock) and returns that
    /// group's own `current_tasks.json`. Costs the group's tasks, not every task.
    pub fn update_tasks(
        &mut self,
        conn: &Connection,
        folder: &FolderName,
    ) -> Result<Vec<u8>, StoreError> {
        let chunk = chunk::render(conn, folder)?;
        let same = match self.chunks.get(folder) {
            None => chunk.is_empty(),
            Some(&len) => {
                len == chunk.len() && self.cached_chunk(folder).is_some_and(|old| old == chunk)
            }
        };
        if !same {
            self.store_chunk(folder, &chunk);
        }
        Ok(wrap(&chunk))
    }

    /// Puts the current state of the tasks `ids` of `folder` (call under the store
    /// lock) into its chunk, reading those tasks only, and returns that group's own
    /// `current_tasks.json`. Re-renders the group instead when its chunk is not at hand
    /// or cannot be read as expected.
    pub fn splice_tasks(
        &mut self,
        conn: &Connection,
        folder: &FolderName,
        ids: &[&TaskId],
    ) -> Result<Vec<u8>, StoreError> {
        if !self.built || ids.is_empty() {
            return self.update_tasks(conn, folder);
        }
        let cached = match self.chunks.get(folder) {
            None => Some(Vec::new()),
            Some(&len) => self.cached_chunk(folder).filter(|c| c.len() == len),
        };
        let Some(mut chunk) = cached else {
            return self.update_tasks(conn, folder);
        };
        // Each id once: the splice puts one element per change.
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let now = ids
            .iter()
            .map(|id| Ok(tasks::get(conn, id)?.filter(|t| &t.group_folder == folder)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let changes: Vec<_> = ids
            .iter()
            .copied()
            .zip(now.iter().map(Option::as_ref))
            .collect();
        match chunk::splice(&mut chunk, &changes) {
            None => self.update_tasks(conn, folder),
            Some(changed) => {
                if changed {
                    self.store_chunk(folder, &chunk);
                }
                Ok(wrap(&chunk))
            }
        }
    }

    fn cached_chunk(&self, folder: &FolderName) -> Option<Vec<u8>> {
        self.cache.read_file(folder.as_str(), MAX_CHUNK_BYTES).ok()
    }

    /// Keeps `chunk` as `folder`'s (a new content: main's list and the group's own
    /// file are now behind it).
    fn store_chunk(&mut self, folder: &FolderName, chunk: &[u8]) {
        self.main_stale = true;
        self.shown.remove(folder);
        let stored = if chunk.is_empty() {
            self.cache.remove(folder.as_str());
            Ok(())
        } else {
            // In place: chunks are read only under the writer's lock.
            self.cache.write_in_place(folder.as_str(), chunk)
        };
        match stored {
            Ok(()) if chunk.is_empty() => {
                self.chunks.remove(folder);
            }
            Ok(()) => {
                self.chunks.insert(folder.clone(), chunk.len());
            }
            Err(e) => {
                tracing::error!(%folder, error = %e, "cannot write a task snapshot chunk; will rebuild");
                self.chunks.remove(folder);
                self.built = false;
            }
        }
    }

    /// Re-renders every group's task chunk (start-up, or a change announced without
    /// saying whose tasks changed); returns each folder's own `current_tasks.json`
    /// (folders with no task are absent: their list is `[]`).
    pub fn rebuild_tasks(
        &mut self,
        conn: &Connection,
    ) -> Result<BTreeMap<FolderName, Vec<u8>>, StoreError> {
        let mut folders: std::collections::BTreeSet<FolderName> =
            tasks::folders(conn)?.into_iter().collect();
        folders.extend(self.chunks.keys().cloned());
        // A chunk file left by an earlier run for a folder this run never saw.
        if !self.built
            && let Ok(entries) = self.cache.entries()
        {
            for (name, _) in entries {
                match name.to_str().map(FolderName::parse) {
                    Some(Ok(f)) if folders.contains(&f) => {}
                    _ => self.cache.remove(&name),
                }
            }
        }
        self.built = true;
        let mut out = BTreeMap::new();
        for f in folders {
            let file = self.update_tasks(conn, &f)?;
            if self.chunks.contains_key(&f) {
                out.insert(f, file);
            }
        }
        self.main_stale = true;
        Ok(out)
    }

    /// The list a folder with no task shows.
    pub fn empty_tasks() -> Vec<u8> {
        wrap(&[])
    }

    /// Whether the main group's task list is behind its chunks (a chunk changed since
    /// it was last written): [`Writer::write_main_tasks`] is due.
    pub fn main_pending(&self) -> bool {
        self.built && self.main_stale
    }

    /// Writes the main group's `current_tasks.json` (every task: the chunks in folder
    /// order) if a chunk changed since the last write, or the file is missing.
    ///
    /// Takes the writer's lock only to read one chunk at a time, so a pass that
    /// updates a chunk meanwhile waits for at most one chunk's read, never for the
    /// whole list (megabytes with thousands of tasks). Each chunk read is one group's
    /// committed state; a chunk that changes during the write marks the list stale
    /// again, and the next write includes it. Writes of the list are serialised, so
    /// an older assembly never lands after a newer one.
    pub fn write_main_tasks(
        writer: &Mutex<Writer>,
        dirs: &BTreeMap<FolderName, Arc<GroupDirs>>,
        main: &FolderName,
    ) {
        let Some(d) = dirs.get(main) else { return };
        let gate = writer.lock_ignoring_poison().main_gate.clone();
        let _one_at_a_time = gate.lock_ignoring_poison();
        let folders: Vec<FolderName> = {
            let mut w = writer.lock_ignoring_poison();
            if !w.built || (!w.main_stale && d.base.stat(TASKS_FILE).is_ok()) {
                return;
            }
            w.main_stale = false;
            w.chunks.keys().cloned().collect()
        };
        let r = d
            .base
            .write_atomic_with(TASKS_FILE, Durability::Atomic, |f| {
                let mut any = false;
                for folder in &folders {
                    let chunk = {
                        let w = writer.lock_ignoring_poison();
                        if !w.chunks.contains_key(folder) {
                            continue; // its last task is gone since
                        }
                        w.cache.read_file(folder.as_str(), MAX_CHUNK_BYTES)
                    };
                    let chunk = chunk
                        .map_err(|e| std::io::Error::other(format!("chunk {folder}: {e:?}")))?;
                    f.write_all(if any { b",\n" } else { b"[\n" })?;
                    f.write_all(&chunk)?;
                    any = true;
                }
                f.write_all(if any { b"\n]\n" } else { b"[]\n" })
            });
        if let Err(e) = r {
            tracing::error!(folder = %main, error = %e, "cannot write the main group's task snapshot; will rebuild");
            let mut w = writer.lock_ignoring_poison();
            w.built = false;
            w.main_stale = true;
        }
    }

    pub fn write(&mut self, dirs: &BTreeMap<FolderName, Arc<GroupDirs>>, rendered: Rendered) {
        for (folder, file, bytes) in rendered {
            let Some(d) = dirs.get(&folder) else { continue };
            // A task list is known unchanged from its chunk (`shown`); the small
            // snapshots by the digest of what was last written.
            let digest = (file != TASKS_FILE).then(|| digest(&bytes));
            let unchanged = match digest {
                None => self.shown.contains(&folder),
                Some(h) => self.last.get(&(folder.clone(), file)) == Some(&h),
            };
            if unchanged && d.base.stat(file).is_ok() {
                continue;
            }
            match d.base.write_atomic(file, &bytes, Durability::Atomic) {
                Ok(()) => match digest {
                    None => {
                        self.shown.insert(folder);
                    }
                    Some(h) => {
                        self.last.insert((folder, file), h);
                    }
                },
                Err(e) => {
                    tracing::error!(%folder, file, error = %e, "cannot write an IPC snapshot")
                }
            }
        }
    }

    /// Forgets what was written for `folder` (its directory was removed or recreated).
    pub fn forget(&mut self, folder: &FolderName) {
        self.last.retain(|(f, _), _| f != folder);
        self.shown.remove(folder);
        // It may be the main group's: write its list again.
        self.main_stale = true;
    }
}
