//! Gateway events: connection state, chat names, and received messages.
//!
//! serenity runs every event handler call as its own task, and tokio may run a burst
//! of them in another order (the newest spawned task runs first). So nothing here
//! relies on the order of handler calls: the bot's own id is known before the client
//! starts, (re)connections are a counter any sender can wait on, and received
//! messages go through one queue whose consumer lets the rest of a burst arrive
//! (yielding to the tasks already spawned) and takes them in message-id order —
//! Discord's ids grow with time — before storing them.

use crate::sync::LockExt as _;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serenity::all::{
    ChannelId, Context, EventHandler, GuildChannel, GuildId, Message, Ready, ResumedEvent, UserId,
};
use serenity::async_trait;
use serenity::model::guild::Guild;
use tokio::sync::{mpsc, watch};

use super::GroupDirs;
use super::allowlist::{LiveAllowlist, Verdict};
use super::attachments::{client, download_image, image_extension, link_line};
use crate::agent::images;
use crate::channels::Inbound;
use crate::model::Jid;

/// How long a message with images waits for the daemon to say where groups live.
const GROUP_DIRS_WAIT: Duration = Duration::from_secs(10);

/// Names of guilds and channels, learnt from gateway events.
#[derive(Default)]
struct Names {
    guilds: HashMap<GuildId, String>,
    channels: HashMap<ChannelId, (Option<GuildId>, String)>,
}

impl Names {
    fn add_channel(&mut self, c: &GuildChannel) {
        self.channels
            .insert(c.id, (Some(c.guild_id), c.name.clone()));
    }

    /// `Guild #channel` (or `#channel` while the guild's name is unknown).
    fn chat_name(&self, channel: ChannelId) -> Option<String> {
        let (guild, name) = self.channels.get(&channel)?;
        match guild.and_then(|g| self.guilds.get(&g)) {
            Some(g) => Some(format!("{g} #{name}")),
            None => Some(format!("#{name}")),
        }
    }
}

/// State shared by the channel and its event handler.
pub(super) struct Shared {
    /// Set before the client starts: no event is handled without it.
    pub(crate) bot_id: OnceLock<UserId>,
    pub(crate) inbound: Mutex<Option<mpsc::Sender<Inbound>>>,
    /// Bumped on every READY and RESUMED: a sender that found Discord unreachable
    /// waits for the next one.
    pub(crate) sessions: watch::Sender<u64>,
    pub(crate) allowlist: LiveAllowlist,
    pub(crate) group_dirs: watch::Sender<Option<GroupDirs>>,
    names: Mutex<Names>,
    /// Received messages, to the single consumer that orders and converts them.
    queue: mpsc::UnboundedSender<Message>,
    queue_rx: Mutex<Option<mpsc::UnboundedReceiver<Message>>>,
}

impl Shared {
    pub(crate) fn new(allowlist: LiveAllowlist) -> Shared {
        let (queue, queue_rx) = mpsc::unbounded_channel();
        Shared {
            bot_id: OnceLock::new(),
            inbound: Mutex::new(None),
            sessions: watch::channel(0).0,
            allowlist,
            group_dirs: watch::channel(None).0,
            names: Mutex::new(Names::default()),
            queue,
            queue_rx: Mutex::new(Some(queue_rx)),
        }
    }

    /// Starts the consumer of received messages (once).
    pub(crate) fn spawn_consumer(self: &Arc<Self>) {
        let rx = self.queue_rx.lock_ignoring_poison().take();
        if let Some(rx) = rx {
            tokio::spawn(consume(self.clone(), rx));
        }
    }

    fn names(&self) -> std::sync::MutexGuard<'_, Names> {
        self.names.lock_ignoring_poison()
    }

    async fn group_dir(&self, jid: &Jid) -> Option<PathBuf> {
        let mut rx = self.group_dirs.subscribe();
        let resolver = tokio::time::timeout(GROUP_DIRS_WAIT, rx.wait_for(|r| r.is_some()))
            .await
            .ok()?
            .ok()?
            .clone()?;
        resolver(jid.clone()).await
    }
}

pub(super) struct Handler(pub Arc<Shared>);

/// Whether `content` mentions `bot` the way Discord writes a real mention.
fn mentions(content: &str, bot: UserId) -> bool {
    content.contains(&format!("<@{bot}>")) || content.contains(&format!("<@!{bot}>"))
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "connected to Discord");
        self.0.sessions.send_modify(|n| *n += 1);
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        tracing::info!("Discord session resumed");
        self.0.sessions.send_modify(|n| *n += 1);
    }

    async fn guild_create(&self, _ctx: Context, guild: Guild, _is_new: Option<bool>) {
        let mut names = self.0.names();
        names.guilds.insert(guild.id, guild.name.clone());
        for c in guild.channels.values().chain(guild.threads.iter()) {
            names.add_channel(c);
        }
    }

    async fn channel_create(&self, _ctx: Context, channel: GuildChannel) {
        self.0.names().add_channel(&channel);
    }

    async fn thread_create(&self, _ctx: Context, thread: GuildChannel) {
        self.0.names().add_channel(&thread);
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        // No await before this: the consumer orders what a burst delivers.
        let _ = self.0.queue.send(msg);
    }
}

/// How many times the consumer yields to let the rest of a burst arrive.
const BURST_YIELDS: usize = 3;

/// Takes received messages in id order and hands them to the daemon.
async fn consume(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Message>) {
    let mut batch: Vec<Message> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        for _ in 0..BURST_YIELDS {
            tokio::task::yield_now().await;
            while let Ok(m) = rx.try_recv() {
                batch.push(m);
            }
        }
        batch.sort_by_key(|m| m.id);
        for msg in batch.drain(..) {
            take_in(&shared, msg).await;
        }
    }
}

/// Filters one message (own, allowlist), resolves its attachments and sends it on.
async fn take_in(shared: &Shared, msg: Message) {
    let Some(&bot) = shared.bot_id.get() else {
        return;
    };
    if msg.author.id == bot {
        return; // our own replies are never taken in again
    }
    let jid = Jid::Discord(msg.channel_id.get());
    let sender_id = msg.author.id.to_string();
    let verdict = shared.allowlist.get().check(&jid.to_string(), &sender_id);
    if verdict != Verdict::Allowed && shared.allowlist.get().log_denied() {
        tracing::info!(chat = %jid, sender = %sender_id, ?verdict, "sender not on the allowlist");
    }
    if verdict == Verdict::Drop {
        return;
    }
    let chat_name = match msg.guild_id {
        Some(_) => shared.names().chat_name(msg.channel_id),
        None => Some(format!("DM {}", msg.author.name)),
    };
    let mut content = msg.content.clone();
    let mut group_dir: Option<Option<PathBuf>> = None;
    for (i, a) in msg.attachments.iter().enumerate() {
        let line = match image_extension(a) {
            Some(ext) => {
                if group_dir.is_none() {
                    group_dir = Some(shared.group_dir(&jid).await);
                }
                match group_dir.clone().flatten() {
                    Some(dir) => {
                        let name = format!("{}-{i}.{ext}", msg.id);
                        match download_image(client(), a, dir, name.clone()).await {
                            Ok(()) => images::marker(&name),
                            Err(why) => {
                                tracing::warn!(chat = %jid, file = %a.filename, %why, "image not stored");
                                link_line(a, &format!(", not shown: {why}"))
                            }
                        }
                    }
                    None => link_line(a, ""),
                }
            }
            None => link_line(a, ""),
        };
        if !content.is_empty() {
            content.push('\n');
        }
        content.push_str(&line);
    }
    let inbound = Inbound {
        chat_jid: jid,
        chat_name,
        external_id: Some(msg.id.to_string()),
        sender_id,
        sender_name: msg
            .member
            .as_ref()
            .and_then(|m| m.nick.clone())
            .or_else(|| msg.author.global_name.clone())
            .unwrap_or_else(|| msg.author.name.clone()),
        mentions_assistant: msg.mentions.iter().any(|u| u.id == bot) || mentions(&msg.content, bot),
        content,
        sent_at: *msg.timestamp,
        from_self: false,
        // Other bots, and senders the allowlist keeps as context: never a trigger.
        from_bot: msg.author.bot || verdict == Verdict::ContextOnly,
        // A DM is addressed to the assistant, like the terminal.
        direct: msg.guild_id.is_none(),
    };
    let tx = shared.inbound.lock_ignoring_poison().clone();
    if let Some(tx) = tx
        && tx.send(inbound).await.is_err()
    {
        tracing::debug!("the daemon stopped taking messages");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_mentions_only() {
        let bot = UserId::new(42);
        assert!(mentions("hi <@42>", bot));
        assert!(mentions("<@!42> hi", bot));
        assert!(!mentions("hi @Andy <@420>", bot));
    }
}
