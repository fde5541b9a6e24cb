//! Filesystem IPC: agents ask the host for things by renaming JSON files into
//! `data/ipc/<folder>/{messages,tasks}/`; the host answers in `responses/`.
//!
//! The flow is one way: [`watcher`] (inotify + rescans, fair per-group batches) →
//! [`protocol`] (parse) → [`authorize`] (the permission table; the sender is the
//! directory) → [`apply`] (effect + ledger row in one transaction, then the response
//! file) → [`snapshots`]. Hostile entries go to [`quarantine`]. The full reference is
//! `docs/ipc.md`.

pub mod apply;
pub mod authorize;
mod effects;
pub mod protocol;
pub mod quarantine;
mod service;
pub mod snapshots;
pub mod watcher;

pub use service::{IpcHandle, IpcService};
