//! The daemon-wide change bus: what changed ([`Topic`]), published on one
//! `tokio::sync::broadcast` by the IPC service, the orchestrator and the scheduler's
//! callers, and the wake-up notes that carry topics from CLI processes to a daemon
//! running on the same root.
//!
//! The CLI writes straight to SQLite, so a running daemon must hear that something
//! changed without polling the database. After a successful change the CLI renames a
//! small file into `data/control/` (`tasks`, `groups` or `skills`); the daemon watches
//! that directory with inotify and re-reads what the topic names. The file's content
//! (the time of the change) is informational only: the database is the truth.

use crate::paths::Paths;
use crate::safe_dir::{Durability, SafeDir};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Tasks,
    Groups,
    Skills,
    /// New rows in the outbox (e.g. an agent's `message` request): the orchestrator sends them.
    Outbox,
}

impl Topic {
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            Topic::Tasks => "tasks",
            Topic::Groups => "groups",
            Topic::Skills => "skills",
            Topic::Outbox => "outbox",
        }
    }

    pub(crate) fn from_file_name(name: &str) -> Option<Topic> {
        match name {
            "tasks" => Some(Topic::Tasks),
            "groups" => Some(Topic::Groups),
            "skills" => Some(Topic::Skills),
            "outbox" => Some(Topic::Outbox),
            _ => None,
        }
    }
}

/// Leaves a note that `topic` changed. Failure is logged, not fatal: the change itself
/// is committed, and a daemon re-reads everything when it starts.
pub(crate) fn notify(paths: &Paths, topic: Topic) {
    if let Err(e) = write_note(paths, topic) {
        tracing::warn!(error = %e, topic = topic.file_name(), "could not notify a running daemon");
    }
}

fn write_note(paths: &Paths, topic: Topic) -> std::io::Result<()> {
    let note = format!("{}\n", chrono::Utc::now().to_rfc3339());
    SafeDir::open_trusted(&paths.control_dir(), true)?.write_atomic(
        topic.file_name(),
        note.as_bytes(),
        Durability::Atomic,
    )
}

/// The daemon's side: an inotify watch on `data/control/`. Dropping it stops watching.
pub(crate) struct NoteWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `data/control/` (creating it) and publishes the matching [`Topic`] on
/// `topics` whenever a CLI process leaves a note. Event-driven: the kernel tells us,
/// nothing is polled. Events for other names (the writers' `.tmp` files, strays) are
/// ignored; several events for one note (create, rename) publish the topic more than
/// once, which subscribers collapse.
///
/// Start it before reading the state it guards: a note left between the read and
/// the watch would otherwise be missed.
pub(crate) fn watch(
    paths: &Paths,
    topics: tokio::sync::broadcast::Sender<Topic>,
) -> anyhow::Result<NoteWatcher> {
    use anyhow::Context as _;
    use notify::{EventKind, RecursiveMode, Watcher as _};

    let dir = paths.control_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let event = match res {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "control directory watch error");
                return;
            }
        };
        if matches!(event.kind, EventKind::Access(_) | EventKind::Remove(_)) {
            return;
        }
        for path in &event.paths {
            let topic = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(Topic::from_file_name);
            if let Some(topic) = topic {
                tracing::debug!(topic = topic.file_name(), "change note from a CLI process");
                // No subscriber (yet) is not an error: they read the store when they start.
                let _ = topics.send(topic);
            }
        }
    })
    .context("cannot start a file watcher for the control directory")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(NoteWatcher { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::broadcast;

    #[tokio::test]
    async fn a_cli_note_publishes_its_topic() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let (tx, mut rx) = broadcast::channel(16);
        let _w = watch(&paths, tx).unwrap();
        // A stray file is ignored; a note is heard.
        std::fs::write(paths.control_dir().join("stray"), "x").unwrap();
        notify(&paths, Topic::Groups);
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no topic published within 5 s")
            .unwrap();
        assert_eq!(got, Topic::Groups);
        notify(&paths, Topic::Tasks);
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match rx.recv().await.unwrap() {
                    Topic::Groups => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("no tasks topic within 5 s");
        assert_eq!(got, Topic::Tasks);
    }
}
