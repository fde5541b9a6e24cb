//! Chat channels: where messages come from and replies go.
//!
//! A [`Channel`] connects to one chat platform (Discord, the local terminal, a test
//! harness), turns what it receives into [`Inbound`] messages for the orchestrator,
//! and sends the orchestrator's replies. Channels know nothing about groups, triggers
//! or agents; the orchestrator knows nothing about the platform.

pub mod discord;
pub(crate) mod local;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::model::Jid;

/// The trait's futures are boxed so it stays object-safe (`Arc<dyn Channel>`).
pub use crate::sync::BoxFuture;

/// A message as a channel received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub chat_jid: Jid,
    /// The chat's display name, if the platform told us.
    pub chat_name: Option<String>,
    /// The platform's message id: a redelivered message is stored once.
    pub external_id: Option<String>,
    pub sender_id: String,
    pub sender_name: String,
    pub content: String,
    pub sent_at: DateTime<Utc>,
    /// Sent by the assistant itself (never triggers it).
    pub from_self: bool,
    /// Stored as context, never triggers: another bot's message, or one from a sender
    /// the allowlist keeps as context only.
    pub from_bot: bool,
    /// The message mentions the assistant for real (e.g. Discord's `<@id>`).
    pub mentions_assistant: bool,
    /// A one-to-one conversation with the assistant (the terminal): every message is
    /// addressed to it, whatever the group's trigger rules.
    pub direct: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Worth retrying later (network, rate limit, platform hiccup).
    #[error("{0}")]
    Transient(String),
    /// Will never succeed (unknown chat, no permission, message refused).
    #[error("{0}")]
    Permanent(String),
}

pub trait Channel: Send + Sync + 'static {
    /// A short name for logs: `discord`, `local`, ...
    fn name(&self) -> &'static str;

    /// Whether replies to `jid` go through this channel.
    fn owns(&self, jid: &Jid) -> bool;

    /// Connects and forwards every received message to `inbound` until the channel is
    /// closed or `inbound` is dropped. Resolves once the channel is ready to send.
    fn connect(&self, inbound: mpsc::Sender<Inbound>) -> BoxFuture<'_, Result<(), ChannelError>>;

    /// Sends `text` to `jid`. `nonce` is stable across retries of the same reply, so a
    /// platform that supports it can drop a duplicate create.
    fn send<'a>(
        &'a self,
        jid: &'a Jid,
        text: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// Shows (or stops showing) that the assistant is working in `jid`. Best effort.
    fn set_typing<'a>(&'a self, jid: &'a Jid, on: bool) -> BoxFuture<'a, ()>;

    /// Stops receiving; pending sends may still complete.
    fn disconnect(&self) -> BoxFuture<'_, ()>;
}
