//! RustClaw: a self-hosted personal AI assistant daemon.
//!
//! Data flows one way through a few modules (see `docs/architecture.md`):
//! channel → [`store`] → group queue → agent → outbox → channel; the IPC watcher
//! authorises agents' requests and applies them to the store; the scheduler hands due
//! tasks to the group queue. The CLI ([`cli`]) administers the same store.

pub mod actions;
pub mod agent;
pub mod agent_tools;
pub mod bus;
pub mod channels;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod doctor;
pub mod ipc;
pub mod logging;
pub mod model;
pub mod nanoclaw;
pub mod orchestrator;
pub mod paths;
pub mod prompt;
pub mod pruner;
pub mod queue;
pub mod recurrence;
pub mod safe_dir;
pub mod scheduler;
pub mod sd_notify;
pub mod shutdown;
pub mod skills;
pub mod status;
pub mod store;
pub mod text;
