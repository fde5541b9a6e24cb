//! Moving refused request files aside, within bounds.
//!
//! A request directory is writable by an agent, so anything can be in it: a symlink
//! to `/etc/shadow`, a FIFO, a 10 GiB file, a directory named `x.json`. The reader
//! (`reader.rs`) refuses such entries; this module only moves them aside.
//!
//! Refused entries are moved (`renameat`, a link is moved, never followed) to
//! `data/ipc/errors/<folder>/<stem>.json` with a `<stem>.reason` beside it, so the
//! owner can see what an agent tried. Per group the quarantine keeps at most
//! [`QuarantineLimits::max_files`] entries and [`QuarantineLimits::max_bytes`] bytes:
//! the oldest are dropped (said once in the log), so refused requests cannot fill the
//! disk. Reasons quote at most [`crate::text::QUOTE_CHARS`] characters.

use crate::sync::LockExt as _;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};

use crate::safe_dir::{Durability, SafeDir};
use crate::text::quote;

/// Bounds of one group's quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineLimits {
    pub max_files: usize,
    pub max_bytes: u64,
}

impl Default for QuarantineLimits {
    fn default() -> Self {
        QuarantineLimits {
            max_files: 1000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `data/ipc/errors/`, with a running tally per group.
#[derive(Debug)]
pub struct Quarantine {
    errors: SafeDir,
    limits: QuarantineLimits,
    tallies: Mutex<HashMap<String, Tally>>,
}

#[derive(Debug)]
struct Tally {
    dir: Arc<SafeDir>,
    /// Oldest first: (stem, bytes).
    entries: VecDeque<(String, u64)>,
    bytes: u64,
    /// "Dropping the oldest" has been logged for this group.
    warned: bool,
}

/// A file-name stem safe to create: the request's own name without `.json` when it
/// is printable UTF-8 of at most 100 bytes not starting with a dot; otherwise that
/// name with every other character replaced by `_`, clipped.
fn stem_of(name: &OsStr) -> String {
    let lossy = name.to_string_lossy();
    let base = lossy
        .strip_suffix(".json")
        .or_else(|| lossy.strip_suffix(".JSON"))
        .unwrap_or(&lossy);
    let printable = |c: char| !c.is_control() && c != '\u{fffd}';
    if name.to_str().is_some()
        && !base.is_empty()
        && base.len() <= 100
        && !base.starts_with('.')
        && base.chars().all(printable)
    {
        return base.to_owned();
    }
    let mut s: String = base
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

impl Quarantine {
    /// Opens (creating) `errors/` below the IPC root.
    pub fn open(ipc: &SafeDir, limits: QuarantineLimits) -> std::io::Result<Quarantine> {
        Ok(Quarantine {
            errors: ipc.ensure_dir_removing("errors")?,
            limits,
            tallies: Mutex::new(HashMap::new()),
        })
    }

    /// Moves `from/name` (whatever it is) to the quarantine of `folder` with a reason.
    /// Never fails: if the move is impossible the entry is deleted, so a refused
    /// request can never be read twice.
    pub fn put(&self, folder: &str, from: &SafeDir, name: &OsStr, reason: &str) {
        self.put_as(folder, from, name, &stem_of(name), reason)
    }

    /// [`Quarantine::put`] under a chosen stem.
    pub fn put_as(&self, folder: &str, from: &SafeDir, name: &OsStr, stem: &str, reason: &str) {
        let reason = quote(reason);
        tracing::warn!(folder, request = %quote(&name.to_string_lossy()), %reason, "IPC request refused and quarantined");
        let mut tallies = self.tallies.lock_ignoring_poison();
        let tally = match self.tally(&mut tallies, folder) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(folder, error = %e, "cannot open the quarantine directory; deleting the request");
                from.remove(name);
                return;
            }
        };
        let dir = tally.dir.clone();
        let mut stem = stem.to_owned();
        if dir.stat(format!("{stem}.json")).is_ok() || dir.stat(format!("{stem}.reason")).is_ok() {
            stem = format!(
                "{stem}-{}-{:04x}",
                chrono::Utc::now().timestamp_millis(),
                rand::random::<u16>()
            );
        }
        let bytes = from.stat(name).map(|st| st.st_size as u64).unwrap_or(0);
        let original = name.to_string_lossy();
        let text = if original.strip_suffix(".json") == Some(stem.as_str()) {
            format!("{reason}\n")
        } else {
            format!("{reason}\nfile name: {:?}\n", quote(&original))
        };
        // The reason first: whoever sees the entry in the quarantine sees why.
        if let Err(e) = dir.write_atomic(
            &format!("{stem}.reason"),
            text.as_bytes(),
            Durability::Atomic,
        ) {
            tracing::error!(folder, error = %e, "cannot write the quarantine reason");
        }
        match from.rename_to(name, &dir, &format!("{stem}.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                dir.remove(format!("{stem}.reason"));
                return;
            }
            Err(e) => {
                tracing::error!(folder, error = %e, "cannot quarantine; deleting the request");
                from.remove(name);
            }
        }
        let size = bytes + text.len() as u64;
        tally.entries.push_back((stem, size));
        tally.bytes += size;
        self.trim(folder, tally);
    }

    fn tally<'a>(
        &self,
        tallies: &'a mut HashMap<String, Tally>,
        folder: &str,
    ) -> std::io::Result<&'a mut Tally> {
        if !tallies.contains_key(folder) {
            let dir = self.errors.ensure_dir_removing(folder)?;
            let tally = load(dir)?;
            tallies.insert(folder.to_owned(), tally);
        }
        Ok(tallies.get_mut(folder).expect("inserted above"))
    }

    /// Drops the oldest entries until the group is within its limits.
    fn trim(&self, folder: &str, tally: &mut Tally) {
        while tally.entries.len() > self.limits.max_files || tally.bytes > self.limits.max_bytes {
            let Some((stem, size)) = tally.entries.pop_front() else {
                break;
            };
            if !tally.warned {
                tally.warned = true;
                tracing::warn!(
                    folder,
                    max_files = self.limits.max_files,
                    max_bytes = self.limits.max_bytes,
                    "the group's IPC quarantine is full; dropping its oldest entries from now on (said once)"
                );
            }
            tally.dir.remove(format!("{stem}.json"));
            tally.dir.remove(format!("{stem}.reason"));
            tally.bytes = tally.bytes.saturating_sub(size);
        }
    }
}

/// Reads what a group's quarantine already holds, oldest first.
fn load(dir: SafeDir) -> std::io::Result<Tally> {
    let mut by_stem: HashMap<String, (i64, u64)> = HashMap::new();
    for (name, _) in dir.entries()? {
        let Some(n) = name.to_str() else { continue };
        let Some(stem) = n
            .strip_suffix(".json")
            .or_else(|| n.strip_suffix(".reason"))
        else {
            continue;
        };
        let Ok(st) = dir.stat(&name) else { continue };
        let e = by_stem.entry(stem.to_owned()).or_insert((st.st_mtime, 0));
        e.0 = e.0.min(st.st_mtime);
        e.1 += st.st_size as u64;
    }
    let mut entries: Vec<(String, (i64, u64))> = by_stem.into_iter().collect();
    entries.sort_by(|a, b| (a.1.0, &a.0).cmp(&(b.1.0, &b.0)));
    let bytes = entries.iter().map(|e| e.1.1).sum();
    Ok(Tally {
        dir: Arc::new(dir),
        entries: entries.into_iter().map(|(s, (_, b))| (s, b)).collect(),
        bytes,
        warned: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_explains_and_stays_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let root = SafeDir::open_trusted(tmp.path(), false).unwrap();
        let src = root.ensure_dir_removing("src").unwrap();
        let limits = QuarantineLimits {
            max_files: 3,
            max_bytes: 1 << 20,
        };
        let q = Quarantine::open(&root, limits).unwrap();
        for i in 0..5 {
            std::fs::write(tmp.path().join("src/x.json"), format!("bad {i}")).unwrap();
            q.put("ops", &src, OsStr::new("x.json"), &"y".repeat(10_000));
            assert!(!tmp.path().join("src/x.json").exists());
        }
        let errs = tmp.path().join("errors/ops");
        let names: Vec<_> = std::fs::read_dir(&errs).unwrap().collect();
        assert_eq!(names.len(), 6, "3 entries, each with its reason");
        let mut kept = Vec::new();
        for e in names {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            if p.extension().is_some_and(|x| x == "reason") {
                let first = text.lines().next().unwrap();
                assert_eq!(first.chars().count(), crate::text::QUOTE_CHARS, "clipped");
            } else {
                kept.push(text);
            }
        }
        kept.sort();
        assert_eq!(kept, ["bad 2", "bad 3", "bad 4"], "the oldest were dropped");
        // Odd names get a safe stem and the original name in the reason.
        let long = format!("{}.json", "n".repeat(250));
        std::fs::write(tmp.path().join("src").join(&long), "x").unwrap();
        q.put("ops", &src, OsStr::new(&long), "not a usable id");
        let stem = "n".repeat(100);
        assert!(
            std::fs::read_to_string(errs.join(format!("{stem}.reason")))
                .unwrap()
                .contains("file name: \"nnnn")
        );
        assert!(errs.join(format!("{stem}.json")).exists());
    }
}
