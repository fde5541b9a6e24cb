//! Delivery: sends what the outbox holds through the channel that owns each chat.
//!
//! Replies are committed to the outbox (with the cursor move that produced them)
//! before anything is sent, so a crash never loses one; a row is marked sent after
//! the channel accepted it, so a crash in between re-sends it once, with the same
//! nonce, which Discord uses to drop the duplicate.
//!
//! Event-driven: the sender sleeps until [`Delivery::wake`] is called (a reply was
//! queued, an IPC `message` was applied, a channel connected) or a retry is due.
//! Replies to one chat go out in order: a chat whose head item failed waits for it.

use crate::sync::RwLockExt as _;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::channels::{Channel, ChannelError};
use crate::model::Jid;
use crate::shutdown::Shutdown;
use crate::store::{SharedStore, outbox};

/// The longest wait between two attempts at one item.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub(crate) struct Delivery {
    store: SharedStore,
    channels: std::sync::RwLock<Vec<Arc<dyn Channel>>>,
    wake: Notify,
    /// Notified (all waiters) after every pass over the outbox.
    delivered: Notify,
}

impl Delivery {
    pub(crate) fn new(store: SharedStore) -> Arc<Delivery> {
        Arc::new(Delivery {
            store,
            channels: std::sync::RwLock::new(Vec::new()),
            wake: Notify::new(),
            delivered: Notify::new(),
        })
    }

    /// Adds a channel (and retries what was waiting for it).
    pub(crate) fn add_channel(&self, channel: Arc<dyn Channel>) {
        self.channels.write_ignoring_poison().push(channel);
        self.wake();
    }

    /// Something was queued: look at the outbox now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves after the next pass over the outbox (create it before checking state).
    pub(crate) fn delivered(&self) -> tokio::sync::futures::Notified<'_> {
        self.delivered.notified()
    }

    /// The channel that owns `jid`, if one is connected.
    pub(crate) fn channel_for(&self, jid: &Jid) -> Option<Arc<dyn Channel>> {
        self.channels
            .read_ignoring_poison()
            .iter()
            .find(|c| c.owns(jid))
            .cloned()
    }

    /// Sends until `stop` fires (between passes: a pass is never cut in half).
    pub(crate) async fn run(self: Arc<Self>, stop: Shutdown) {
        let mut retry_at: HashMap<i64, Instant> = HashMap::new();
        loop {
            let next_retry = self.pass(&mut retry_at).await;
            self.delivered.notify_waiters();
            let sleep = async {
                match next_retry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = sleep => {}
                _ = stop.triggered() => return,
            }
        }
    }

    /// Sends everything sendable now; returns when the next retry is due.
    pub(crate) async fn pass(&self, retry_at: &mut HashMap<i64, Instant>) -> Option<Instant> {
        let mut blocked: HashSet<Jid> = HashSet::new();
        let mut next: Option<Instant> = None;
        loop {
            let pending = match self.store.call(|s| outbox::pending(s.conn(), 200)).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox; retrying in 5 s");
                    return Some(Instant::now() + Duration::from_secs(5));
                }
            };
            let mut progressed = false;
            for item in &pending {
                if blocked.contains(&item.chat_jid) {
                    continue;
                }
                if let Some(at) = retry_at.get(&item.id)
                    && *at > Instant::now()
                {
                    blocked.insert(item.chat_jid.clone());
                    next = Some(next.map_or(*at, |n| n.min(*at)));
                    continue;
                }
                let jid = &item.chat_jid;
                let Some(channel) = self.channel_for(jid) else {
                    // No channel for this chat right now (e.g. no Discord token, or the
                    // terminal chat is not open): keep it for when one connects.
                    blocked.insert(item.chat_jid.clone());
                    continue;
                };
                match channel.send(jid, &item.text, &item.nonce).await {
                    Ok(()) => {
                        tracing::info!(chat = %jid, outbox = item.id, "reply sent");
                        retry_at.remove(&item.id);
                        self.finish(item.id, None).await;
                        progressed = true;
                    }
                    Err(ChannelError::Permanent(e)) => {
                        tracing::warn!(chat = %jid, error = %e, "reply refused by the channel; giving up on it");
                        retry_at.remove(&item.id);
                        self.finish(item.id, Some(e)).await;
                        progressed = true;
                    }
                    Err(ChannelError::Transient(e)) => {
                        let backoff =
                            Duration::from_secs(1 << item.attempts.clamp(0, 8)).min(MAX_BACKOFF);
                        tracing::warn!(chat = %jid, error = %e, retry_in = ?backoff, "sending a reply failed");
                        let id = item.id;
                        let err = e.clone();
                        let _ = self
                            .store
                            .call(move |s| outbox::record_failure(s.conn(), id, &err))
                            .await;
                        let at = Instant::now() + backoff;
                        retry_at.insert(item.id, at);
                        next = Some(next.map_or(at, |n| n.min(at)));
                        blocked.insert(item.chat_jid.clone());
                    }
                }
            }
            // Another page only if this one was full and we got somewhere with it.
            if pending.len() < 200 || !progressed {
                return next;
            }
        }
    }

    async fn finish(&self, id: i64, error: Option<String>) {
        let res = self
            .store
            .call(move |s| match error {
                None => outbox::mark_sent(s.conn(), id, Utc::now()),
                Some(e) => outbox::give_up(s.conn(), id, &e, Utc::now()),
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, id, "cannot mark an outbox item; it may be sent again");
        }
    }
}
