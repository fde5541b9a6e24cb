//! Sending replies and keeping the typing indicator alive.
//!
//! A reply is split into Discord-sized chunks (see `split`) sent in order. Each
//! create carries a nonce derived from the outbox item's stable nonce and the chunk's
//! index, with `enforce_nonce`, so a retried reply (after a crash, a timeout or a
//! partly sent reply) is not posted twice: Discord answers a repeated nonce with the
//! message it already created. `allowed_mentions` lets the agent mention users, never
//! `@everyone`, `@here` or roles.

use crate::sync::LockExt as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serenity::builder::{CreateAllowedMentions, CreateMessage};
use serenity::http::{Http, HttpError};
use serenity::model::channel::Nonce;
use serenity::model::id::ChannelId;
use tokio::task::JoinHandle;

use super::split::{MAX_CHARS, split};
use crate::channels::ChannelError;

/// What a reply may ping: the users it names, nothing wider.
fn allowed_mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
        .all_users(true)
        .all_roles(false)
        .everyone(false)
}

/// The nonce of chunk `k` of a reply (Discord allows 25 characters).
pub(crate) fn chunk_nonce(nonce: &str, k: usize) -> String {
    let head: String = nonce.chars().take(20).collect();
    format!("{head}-{k}")
}

/// What a failed request means for the outbox.
fn classify(e: &serenity::Error) -> (ChannelError, bool) {
    match e {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => {
            let status = r.status_code.as_u16();
            let what = format!("Discord answered {status}: {}", r.error.message);
            match status {
                429 => (ChannelError::Transient(what), true),
                408 | 500..=599 => (ChannelError::Transient(what), false),
                _ => (ChannelError::Permanent(what), false),
            }
        }
        serenity::Error::Http(HttpError::Request(e)) => (
            ChannelError::Transient(format!("cannot reach Discord: {e}")),
            false,
        ),
        other => (ChannelError::Permanent(other.to_string()), false),
    }
}

/// Sends `text` to `channel` as one or more messages. A 429 (seen only when
/// serenity's own rate limiter is off, i.e. with a custom `DISCORD_API_BASE`) is
/// waited out for `rate_limit_wait` and the chunk retried once.
pub(crate) async fn send_reply(
    http: &Http,
    channel: ChannelId,
    text: &str,
    nonce: &str,
    rate_limit_wait: Duration,
) -> Result<(), ChannelError> {
    for (k, chunk) in split(text, MAX_CHARS).into_iter().enumerate() {
        let build = || {
            CreateMessage::new()
                .content(chunk.clone())
                .allowed_mentions(allowed_mentions())
                .nonce(Nonce::String(chunk_nonce(nonce, k)))
                .enforce_nonce(true)
        };
        let mut retried = false;
        loop {
            match channel.send_message(http, build()).await {
                Ok(_) => break,
                Err(e) => {
                    let (err, rate_limited) = classify(&e);
                    if rate_limited && !retried {
                        tracing::warn!(%channel, wait = ?rate_limit_wait, "rate limited by Discord; waiting");
                        tokio::time::sleep(rate_limit_wait).await;
                        retried = true;
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// The typing indicators being kept alive, per channel.
#[derive(Default)]
pub(crate) struct Typing {
    tasks: Mutex<HashMap<ChannelId, JoinHandle<()>>>,
}

impl Typing {
    /// Shows typing in `channel` now and every `every` until [`Typing::stop`].
    pub(crate) fn start(&self, http: Arc<Http>, channel: ChannelId, every: Duration) {
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = http.broadcast_typing(channel).await {
                    tracing::debug!(%channel, error = %e, "typing indicator failed");
                }
                tokio::time::sleep(every).await;
            }
        });
        let old = self.tasks.lock_ignoring_poison().insert(channel, task);
        if let Some(old) = old {
            old.abort();
        }
    }

    pub(crate) fn stop(&self, channel: ChannelId) {
        let task = self.tasks.lock_ignoring_poison().remove(&channel);
        if let Some(t) = task {
            t.abort();
        }
    }

    pub(crate) fn stop_all(&self) {
        for (_, t) in self.tasks.lock_ignoring_poison().drain() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_fit_discord() {
        let n = chunk_nonce("0123456789abcdef", 12);
        assert_eq!(n, "0123456789abcdef-12");
        assert!(chunk_nonce(&"x".repeat(40), 999).chars().count() <= 25);
        assert_ne!(chunk_nonce("a", 0), chunk_nonce("a", 1));
    }

    #[test]
    fn mentions_never_reach_everyone_or_roles() {
        let v = serde_json::to_value(allowed_mentions()).unwrap();
        assert_eq!(v["parse"], serde_json::json!(["users"]));
        assert!(
            v.get("roles")
                .is_none_or(|r| r.as_array().is_some_and(|a| a.is_empty()))
        );
    }
}
