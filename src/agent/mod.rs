//! The agent: OpenAI's Codex CLI in app-server mode, driven over JSON-RPC on stdio.
//!
//! One concern per file:
//! - [`rpc`]: line-delimited JSON-RPC over any async reader/writer pair.
//! - [`protocol`]: the typed app-server messages we use (pinned codex version).
//! - [`codex`]: the typed client, server-request answers, decoded turn events.
//! - [`runner`]: the object-safe [`runner::Runner`] boundary; [`host`] implements it.
//! - [`home`]: the per-group codex home (config.toml, memory, skills).
//! - [`auth`]: the owner's login shared without leaks, refreshed tokens flowing back.
//! - [`session`] and [`turn`]: start a group's session, run/steer/interrupt turns.
//! - [`text`]: what users see of an agent message.

pub mod auth;
pub mod codex;
pub mod home;
pub mod host;
pub mod images;
pub mod protocol;
pub mod rpc;
pub mod runner;
pub mod session;
pub mod text;
pub mod turn;

pub use protocol::ApprovalDecision;
pub use runner::{AgentChild, AgentProcess, Runner, RunnerError, SpawnSpec};
pub use session::{AgentError, AgentSettings, Agents, Session};
pub use text::strip_internal;
pub use turn::{ActiveTurn, SessionHandle, TurnEnd, TurnEvent, TurnOutcome};
