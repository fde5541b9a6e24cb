//! RustClaw: a self-hosted personal AI assistant daemon.
//!
//! Data flows one way through a few modules (see `docs/architecture.md`):
//! channel → [`store`] → group queue → agent → outbox → channel; the IPC watcher
//! authorises agents' requests and applies them to the store; the scheduler hands due
//! tasks to the group queue. The CLI ([`cli`]) administers the same store.
//!
//! Visibility: items are `pub(crate)` (so the compiler reports dead code) unless the
//! binary, the integration tests (`tests/`) or the benchmarks (`benches/`) use them;
//! those stay `pub` on purpose, and modules none of them use are private.

pub mod actions;
pub mod agent;
pub mod agent_tools;
pub mod bus;
pub mod channels;
pub mod cli;
pub mod config;
pub mod daemon;
mod delivery;
mod doctor;
pub mod ipc;
mod logging;
pub mod model;
mod nanoclaw;
pub mod orchestrator;
pub mod paths;
mod prompt;
mod pruner;
mod queue;
mod recurrence;
pub mod safe_dir;
pub mod scheduler;
mod sd_notify;
pub mod shutdown;
pub mod skills;
mod status;
pub mod store;
pub mod sync;
mod text;
