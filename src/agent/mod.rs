//! The agent: OpenAI's Codex CLI in app-server mode, driven over JSON-RPC on stdio.
//!
//! One concern per file:
//! - [`rpc`]: line-delimited JSON-RPC over any async reader/writer pair.
//! - [`protocol`]: the typed app-server messages we use (pinned codex version).
//! - [`codex`]: the typed client, server-request answers, decoded turn events.
//! - [`runner`]: the object-safe [`runner::Runner`] boundary; [`host`] and
//!   [`container`] implement it ([`container_mounts`]: what a container sees;
//!   [`container_runtime`]: podman/docker, the image check, clean-up); [`runners`]
//!   picks one from the configuration.
//! - [`home`]: the per-group codex home (config.toml, memory, skills).
//! - [`auth`]: the owner's login shared without leaks, refreshed tokens flowing back.
//! - [`error`]: what can go wrong, and whether retrying can help.
//! - [`session`] and [`turn`]: start a group's session, run/steer/interrupt turns.
//! - [`text`]: what users see of an agent message.

pub mod auth;
pub(crate) mod codex;
pub mod container;
pub(crate) mod container_mounts;
pub mod container_runtime;
pub mod error;
pub mod home;
pub mod host;
pub(crate) mod images;
pub mod protocol;
pub mod rpc;
pub(crate) mod runner;
pub(crate) mod runners;
pub(crate) mod session;
pub(crate) mod text;
pub(crate) mod turn;

pub use error::{AgentError, Failure};
pub use protocol::ApprovalDecision;
pub use runner::{AgentChild, AgentProcess, Runner, RunnerError, SpawnSpec};
pub use session::{AgentSettings, Agents, Session};
pub use turn::{ActiveTurn, SessionHandle, TurnEnd, TurnEvent, TurnOutcome};
