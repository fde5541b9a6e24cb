//! Wake-up notes from CLI processes to a daemon running on the same root.
//!
//! The CLI writes straight to SQLite, so a running daemon must hear that something
//! changed without polling the database. After a successful change the CLI renames a
//! small file into `data/control/` (`tasks`, `groups` or `skills`); the daemon watches
//! that directory with inotify and re-reads what the topic names. The file's content
//! (the time of the change) is informational only: the database is the truth.

use std::io::Write;

use crate::paths::Paths;

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
    pub fn file_name(self) -> &'static str {
        match self {
            Topic::Tasks => "tasks",
            Topic::Groups => "groups",
            Topic::Skills => "skills",
            Topic::Outbox => "outbox",
        }
    }

    pub fn from_file_name(name: &str) -> Option<Topic> {
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
pub fn notify(paths: &Paths, topic: Topic) {
    if let Err(e) = write_note(paths, topic) {
        tracing::warn!(error = %e, topic = topic.file_name(), "could not notify a running daemon");
    }
}

fn write_note(paths: &Paths, topic: Topic) -> std::io::Result<()> {
    let dir = paths.control_dir();
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", topic.file_name(), std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{}", chrono::Utc::now().to_rfc3339())?;
    drop(f);
    std::fs::rename(&tmp, dir.join(topic.file_name()))
}
