//! The Discord channel: a serenity client on the gateway, replies over REST.
//!
//! * `gateway` — connection state, chat names, received messages → [`Inbound`].
//! * `send` — replies (split, `allowed_mentions`, nonces) and the typing indicator.
//! * `split` — cutting a reply into ≤ 2000-character messages (pure).
//! * `attachments` — images into the group's folder, other files as links.
//! * `allowlist` — which senders may wake the agent.
//!
//! Chats are `<channel id>@discord` for guild channels, threads and DMs alike. The
//! bot's own user id is fetched before the gateway starts. A close with 4004 (bad
//! token) or 4014 (MESSAGE CONTENT intent not enabled) is fatal: [`DiscordChannel::fatal`]
//! resolves with a message saying what to fix, and `run` ends with it. Other
//! disconnects are resumed by serenity; a reply that finds Discord unreachable waits
//! for the gateway to be back (READY or RESUMED) and is retried then, in order.
//!
//! Discord unreachable at start-up (the `/users/@me` or `/gateway` request cannot get
//! through) does not stop the daemon: [`Channel::connect`] returns and the channel
//! keeps trying in the background, 1 s apart doubling to 60 s, one WARN line per
//! attempt. Meanwhile replies wait in the outbox (a send waits for the first READY);
//! a permanent answer on a later attempt (401) resolves [`DiscordChannel::fatal`].
//!
//! `DISCORD_API_BASE` (default `https://discord.com/api`) moves REST — and, through its
//! `/gateway` answer, the gateway — elsewhere (a proxy, or a fake Discord in tests).
//! serenity's rate limiter cannot follow a moved base, so it is then turned off and
//! a 429 is waited out here (one retry) instead; with the default base serenity's
//! rate limiter stays on and handles 429s itself.

pub(crate) mod allowlist;
mod attachments;
mod gateway;
pub(crate) mod send;
pub(crate) mod split;

use crate::sync::LockExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serenity::all::{ChannelId, GatewayError, GatewayIntents, ShardManager};
use serenity::http::{Http, HttpBuilder, HttpError};
use tokio::sync::{mpsc, watch};

use super::{BoxFuture, Channel, ChannelError, Inbound};
use crate::config::Config;
use crate::model::Jid;
use crate::paths::Paths;
use crate::store::SharedStore;

/// Discord's own API base.
pub(crate) const DEFAULT_API_BASE: &str = "https://discord.com/api";

/// The first wait before connecting again after Discord was unreachable at start-up;
/// it doubles with every failed attempt up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Finds the folder of the group a chat is registered to (`None`: not registered).
pub(crate) type GroupDirs = Arc<dyn Fn(Jid) -> BoxFuture<'static, Option<PathBuf>> + Send + Sync>;

/// How the channel connects and behaves.
#[derive(Clone)]
pub struct DiscordOptions {
    pub token: String,
    /// REST base ending in `/api`.
    pub api_base: String,
    pub allowlist_path: PathBuf,
    /// How often the typing indicator is renewed during a turn (Discord shows it ~10 s).
    pub typing_every: Duration,
    /// How long a reply that found Discord unreachable waits for the gateway to come
    /// back before the outbox retries it later (with backoff).
    pub reconnect_wait: Duration,
    /// How long a 429 is waited out when serenity's rate limiter is off.
    pub rate_limit_wait: Duration,
}

impl DiscordOptions {
    /// The options from the configuration; `None` without a token.
    pub(crate) fn from_config(config: &Config) -> Option<DiscordOptions> {
        let token = config.discord_bot_token.as_ref()?.expose().to_owned();
        Some(DiscordOptions {
            token,
            api_base: config.discord_api_base.clone(),
            allowlist_path: allowlist::default_path(),
            typing_every: Duration::from_secs(8),
            reconnect_wait: Duration::from_secs(30),
            rate_limit_wait: Duration::from_secs(1),
        })
    }
}

/// Validates a `DISCORD_API_BASE` value; returns it without a trailing slash.
pub(crate) fn parse_api_base(value: &str) -> Result<String, String> {
    let v = value.trim_end_matches('/');
    let scheme_ok = v.starts_with("https://") || v.starts_with("http://");
    if !scheme_ok || !v.ends_with("/api") || v.contains('?') || v.contains('#') {
        return Err("must be an http(s) URL ending in /api, like https://discord.com/api".into());
    }
    Ok(v.to_owned())
}

pub struct DiscordChannel {
    /// This channel, for the background connection attempts.
    me: Weak<DiscordChannel>,
    opts: DiscordOptions,
    shared: Arc<gateway::Shared>,
    http: OnceLock<Arc<Http>>,
    shards: Mutex<Option<Arc<ShardManager>>>,
    ws_url: OnceLock<String>,
    fatal: watch::Sender<Option<String>>,
    typing: send::Typing,
    /// Connection attempts go on in the background (Discord was unreachable).
    retrying: AtomicBool,
    /// Set by `disconnect`: no more connection attempts, no more waiting to send.
    closed: watch::Sender<bool>,
}

impl DiscordChannel {
    /// Reads the sender allowlist (a broken one is an error) and prepares the client.
    pub fn new(opts: DiscordOptions) -> Result<Arc<DiscordChannel>, allowlist::AllowlistError> {
        let live = allowlist::LiveAllowlist::start(&opts.allowlist_path)?;
        Ok(Arc::new_cyclic(|me| DiscordChannel {
            me: me.clone(),
            opts,
            shared: Arc::new(gateway::Shared::new(live)),
            http: OnceLock::new(),
            shards: Mutex::new(None),
            ws_url: OnceLock::new(),
            fatal: watch::channel(None).0,
            typing: send::Typing::default(),
            retrying: AtomicBool::new(false),
            closed: watch::channel(false).0,
        }))
    }

    /// Tells the channel where registered groups' folders are (for images).
    pub fn set_group_dirs(&self, dirs: GroupDirs) {
        self.shared.group_dirs.send_replace(Some(dirs));
    }

    /// Resolves with a message when the connection ended for good (4004, 4014, ...).
    pub(crate) async fn fatal(&self) -> String {
        let mut rx = self.fatal.subscribe();
        match rx.wait_for(|f| f.is_some()).await {
            Ok(f) => f.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    /// The gateway URL serenity was given (tests check it is not Discord's).
    pub fn ws_url(&self) -> Option<&str> {
        self.ws_url.get().map(String::as_str)
    }

    /// Whether Discord was unreachable at start-up and the channel is still trying.
    pub fn retrying(&self) -> bool {
        self.retrying.load(Ordering::SeqCst)
    }

    /// Gateway sessions so far (READY and RESUMED), as a watch.
    pub fn sessions(&self) -> watch::Receiver<u64> {
        self.shared.sessions.subscribe()
    }

    fn build_http(&self) -> Http {
        let proxy = self
            .opts
            .api_base
            .strip_suffix("/api")
            .unwrap_or(&self.opts.api_base);
        let builder = HttpBuilder::new(&self.opts.token);
        if proxy == "https://discord.com" {
            builder.build()
        } else {
            // serenity's rate limiter ignores the proxy: off, and 429s are handled in `send`.
            builder.proxy(proxy).ratelimiter_disabled(true).build()
        }
    }

    async fn start(&self, inbound: mpsc::Sender<Inbound>) -> Result<(), ChannelError> {
        let intents = GatewayIntents::GUILDS
            | GatewayIntents::GUILD_MESSAGES
            | GatewayIntents::DIRECT_MESSAGES
            | GatewayIntents::MESSAGE_CONTENT;
        let handler = gateway::Handler(self.shared.clone());
        let mut client = serenity::all::ClientBuilder::new_with_http(self.build_http(), intents)
            .event_handler(handler)
            .await
            .map_err(|e| {
                ChannelError::Permanent(format!("cannot build the Discord client: {e}"))
            })?;
        let ws_url = client.ws_url.lock().await.clone();
        if self.opts.api_base != DEFAULT_API_BASE && !ws_url.starts_with("ws") {
            return Err(ChannelError::Permanent(format!(
                "{}/v10/gateway gave no usable gateway URL ({ws_url:?})",
                self.opts.api_base
            )));
        }
        if self.opts.api_base != DEFAULT_API_BASE && ws_url.starts_with("wss://gateway.discord.gg")
        {
            // serenity's silent fallback when the /gateway request failed.
            return Err(ChannelError::Transient(format!(
                "cannot reach {}/v10/gateway (DISCORD_API_BASE)",
                self.opts.api_base
            )));
        }
        let me = client.http.get_current_user().await.map_err(|e| match &e {
            serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) if r.status_code == 401 => {
                ChannelError::Permanent(token_invalid(None))
            }
            _ => ChannelError::Transient(format!("cannot reach Discord: {e}")),
        })?;
        // Under the lock `disconnect` takes: a client never starts after it.
        let mut shards = self.shards.lock_ignoring_poison();
        if *self.closed.borrow() {
            return Ok(());
        }
        let _ = self.ws_url.set(ws_url);
        let _ = self.shared.bot_id.set(me.id);
        *self.shared.inbound.lock_ignoring_poison() = Some(inbound);
        let _ = self.http.set(client.http.clone());
        self.shared.spawn_consumer();
        *shards = Some(client.shard_manager.clone());
        drop(shards);
        let fatal = self.fatal.clone();
        tokio::spawn(async move {
            if let Err(e) = client.start().await {
                let message = fatal_message(&e);
                tracing::error!(error = %e, "{message}");
                fatal.send_replace(Some(message));
            }
        });
        tracing::info!(bot = %me.name, "Discord client started");
        Ok(())
    }

    /// Connects, retrying in the background when Discord is unreachable (returns then).
    async fn connect_or_retry(&self, inbound: mpsc::Sender<Inbound>) -> Result<(), ChannelError> {
        match self.start(inbound.clone()).await {
            Err(ChannelError::Transient(why)) => {
                let me = self
                    .me
                    .upgrade()
                    .ok_or(ChannelError::Transient(why.clone()))?;
                self.retrying.store(true, Ordering::SeqCst);
                tokio::spawn(me.keep_connecting(inbound, why));
                Ok(())
            }
            other => other,
        }
    }

    /// Attempts to connect, with capped exponential backoff, until connected, refused
    /// for good (`fatal`), or disconnected.
    async fn keep_connecting(self: Arc<Self>, inbound: mpsc::Sender<Inbound>, mut why: String) {
        let mut closed = self.closed.subscribe();
        let mut delay = RETRY_FIRST;
        loop {
            tracing::warn!(error = %why, retry_in = ?delay,
                "Discord is unreachable; trying again (the daemon serves meanwhile, replies wait in the outbox)");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = closed.wait_for(|c| *c) => break,
            }
            match self.start(inbound.clone()).await {
                Ok(()) => {
                    crate::sd_notify::notify("STATUS=serving");
                    break;
                }
                Err(ChannelError::Transient(e)) => {
                    why = e;
                    delay = (delay * 2).min(RETRY_MAX);
                }
                Err(ChannelError::Permanent(e)) => {
                    tracing::error!("{e}");
                    self.fatal.send_replace(Some(e));
                    break;
                }
            }
        }
        self.retrying.store(false, Ordering::SeqCst);
    }

    /// The REST client, once connected: waits for the first READY while the channel
    /// is still connecting (the reply stays in the outbox until then).
    async fn connected_http(&self) -> Result<&Arc<Http>, ChannelError> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let mut sessions = self.shared.sessions.subscribe();
        let mut closed = self.closed.subscribe();
        tokio::select! {
            _ = sessions.wait_for(|n| *n > 0) => {}
            _ = closed.wait_for(|c| *c) => {}
        }
        self.http
            .get()
            .ok_or_else(|| ChannelError::Transient("Discord is not connected yet".into()))
    }
}

fn token_invalid(code: Option<u16>) -> String {
    let how = code.map_or("401 Unauthorized".to_owned(), |c| format!("close code {c}"));
    format!(
        "Discord says the token is invalid ({how}): check DISCORD_BOT_TOKEN (Developer Portal → your application → Bot → Reset Token)"
    )
}

/// What to tell the user when the client stopped for good.
fn fatal_message(e: &serenity::Error) -> String {
    match e {
        serenity::Error::Gateway(GatewayError::InvalidAuthentication) => token_invalid(Some(4004)),
        serenity::Error::Gateway(GatewayError::DisallowedGatewayIntents) => {
            "Discord refused the MESSAGE CONTENT intent (close code 4014): turn on \"Message Content Intent\" \
             under Bot → Privileged Gateway Intents in the Discord Developer Portal \
             (https://discord.com/developers/applications), then start rust_claw again"
                .to_owned()
        }
        serenity::Error::Gateway(GatewayError::InvalidGatewayIntents) => {
            "Discord rejected the gateway intents (close code 4013)".to_owned()
        }
        other => format!("the Discord connection stopped: {other}"),
    }
}

impl Channel for DiscordChannel {
    fn name(&self) -> &'static str {
        "discord"
    }

    fn owns(&self, jid: &Jid) -> bool {
        jid.is_discord()
    }

    fn connect(&self, inbound: mpsc::Sender<Inbound>) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(self.connect_or_retry(inbound))
    }

    fn send<'a>(
        &'a self,
        jid: &'a Jid,
        text: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let Jid::Discord(id) = jid else {
                return Err(ChannelError::Permanent(format!(
                    "{jid} is not a Discord chat"
                )));
            };
            let http = self.connected_http().await?;
            let channel = ChannelId::new(*id);
            let wait = self.opts.rate_limit_wait;
            let mut sessions = self.shared.sessions.subscribe();
            sessions.borrow_and_update();
            match send::send_reply(http, channel, text, nonce, wait).await {
                Err(ChannelError::Transient(e)) => {
                    // Discord unreachable: wait for the gateway to be back, then retry
                    // (the nonces make a partly sent reply safe to send again). Shutdown
                    // ends the wait: the reply stays in the outbox for the next start.
                    tracing::warn!(chat = %jid, error = %e, wait = ?self.opts.reconnect_wait,
                        "Discord is unreachable; the reply waits for the gateway to come back");
                    let mut closed = self.closed.subscribe();
                    let back = tokio::select! {
                        r = tokio::time::timeout(self.opts.reconnect_wait, sessions.changed()) => {
                            matches!(r, Ok(Ok(())))
                        }
                        _ = closed.wait_for(|c| *c) => false,
                    };
                    if !back {
                        return Err(ChannelError::Transient(e));
                    }
                    tracing::info!(chat = %jid, "Discord is back; sending the waiting reply");
                    send::send_reply(http, channel, text, nonce, wait).await
                }
                other => other,
            }
        })
    }

    fn set_typing<'a>(&'a self, jid: &'a Jid, on: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (Jid::Discord(id), Some(http)) = (jid, self.http.get()) else {
                return;
            };
            let channel = ChannelId::new(*id);
            if on {
                self.typing
                    .start(http.clone(), channel, self.opts.typing_every);
            } else {
                self.typing.stop(channel);
            }
        })
    }

    fn disconnect(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.typing.stop_all();
            self.closed.send_replace(true);
            self.shared.inbound.lock_ignoring_poison().take();
            let shards = self.shards.lock_ignoring_poison().clone();
            if let Some(s) = shards {
                s.shutdown_all().await;
            }
        })
    }
}

/// Group folders from the store: a registered chat's `groups/<folder>`.
pub fn group_dirs(store: SharedStore, paths: Paths) -> GroupDirs {
    Arc::new(move |jid: Jid| {
        let (store, paths) = (store.clone(), paths.clone());
        Box::pin(async move {
            let group = store
                .call(move |s| crate::store::groups::get_by_jid(s.conn(), &jid))
                .await
                .ok()
                .flatten()?;
            Some(paths.group_dir(&group.folder))
        })
    })
}

/// The Discord channel `run` uses, if a token is configured. A broken sender
/// allowlist is an error.
pub(crate) fn from_config(config: &Config) -> anyhow::Result<Option<Arc<DiscordChannel>>> {
    let Some(opts) = DiscordOptions::from_config(config) else {
        return Ok(None);
    };
    Ok(Some(DiscordChannel::new(opts)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_values() {
        assert_eq!(
            parse_api_base("https://discord.com/api/").unwrap(),
            DEFAULT_API_BASE
        );
        assert!(parse_api_base("http://127.0.0.1:8080/api").is_ok());
        for bad in [
            "discord.com/api",
            "https://discord.com",
            "ftp://x/api",
            "https://x/api?v=1",
        ] {
            assert!(parse_api_base(bad).is_err(), "{bad}");
        }
    }
}
