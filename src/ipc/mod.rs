//! Filesystem IPC: agents ask the host for things by renaming JSON files into
//! `data/ipc/<folder>/{messages,tasks}/`; the host answers in `responses/`.
//!
//! The flow is one way: [`watcher`] (inotify + rescans, fair per-group batches) →
//! `reader` (the untrusting read: id from the file name, bounded read through a
//! verified descriptor) → [`protocol`] (parse the file) → [`requests`] (one module per request type: its
//! fields, its row of the permission table in `authorize` — the sender is the
//! directory — and its effect) → [`apply`] (effect and ledger row in one transaction,
//! then the response file) → `snapshots`. Every request ends in one `outcome`;
//! hostile entries go to `quarantine`. The full reference is `docs/ipc.md`.

pub mod apply;
pub(crate) mod authorize;
mod outcome;
pub mod protocol;
pub(crate) mod quarantine;
mod reader;
pub mod requests;
mod service;
pub(crate) mod snapshots;
pub mod watcher;

pub use quarantine::QuarantineLimits;

pub use service::{IpcHandle, IpcService};

/// Per-group limits on what an agent can make the host do (configurable; see
/// `docs/ipc.md` and `.env.example`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A schedule created or changed by an agent may not run more often than this
    /// (`MIN_TASK_INTERVAL_MS`, default 60 s). The CLI's floor is 1 s.
    pub min_task_interval_ms: u64,
    /// Active tasks per group an agent can reach by creating or resuming
    /// (`MAX_TASKS_PER_GROUP`, default 200).
    pub max_tasks_per_group: usize,
    /// Bounds of each group's quarantine (`IPC_QUARANTINE_MAX_FILES`,
    /// `IPC_QUARANTINE_MAX_BYTES`).
    pub quarantine: QuarantineLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_task_interval_ms: 60_000,
            max_tasks_per_group: 200,
            quarantine: QuarantineLimits::default(),
        }
    }
}
