#![allow(dead_code)]
//! A fake Discord on 127.0.0.1 for the real serenity client: REST (axum) and the
//! gateway (websocket, tokio-tungstenite), each on its own port.
//!
//! REST answers what RustClaw uses — `/gateway`, `/users/@me`, `/applications/@me`
//! (the intent `doctor` checks), typing, message
//! creates (recorded; a repeated nonce with `enforce_nonce` returns the first message,
//! as Discord does) — and serves attachment bytes. It can be told to answer the next
//! creates with 429, refuse them all (Discord unreachable), or refuse `/gateway` and
//! `/users/@me` too (Discord down while a client starts).
//!
//! The gateway speaks JSON text frames: HELLO, READY on IDENTIFY, HEARTBEAT_ACK,
//! RESUME (replaying what came after the client's `seq`, then RESUMED). Tests inject
//! dispatches, close the socket with a code, refuse reconnections for a while, or make
//! IDENTIFY fail with 4004 / 4014.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub const BOT_ID: u64 = 900_000_000_000_000_001;
pub const GUILD_ID: u64 = 800_000_000_000_000_001;

/// A message create the fake accepted.
#[derive(Debug, Clone)]
pub struct Post {
    pub channel: u64,
    pub body: Value,
    pub at: Instant,
}

impl Post {
    pub fn content(&self) -> &str {
        self.body["content"].as_str().unwrap_or("")
    }
}

enum Cmd {
    Send(String),
    Close(u16),
}

#[derive(Default)]
struct Inner {
    gw_addr: Mutex<Option<SocketAddr>>,
    seq: AtomicU64,
    /// Dispatches (seq, frame) in order, replayed on RESUME.
    history: Mutex<Vec<(u64, String)>>,
    socket: Mutex<Option<mpsc::UnboundedSender<Cmd>>>,
    /// The close code IDENTIFY is answered with, if any.
    identify_close: Mutex<Option<u16>>,
    refuse_gateway: AtomicBool,
    refuse_rest: AtomicBool,
    /// `/gateway` and `/users/@me` answer 503 (Discord down as a client starts).
    offline: AtomicBool,
    /// `/users/@me` answers 401 (an invalid token).
    reject_token: AtomicBool,
    /// The application's flags `/applications/@me` answers, if not the default.
    app_flags: Mutex<Option<u64>>,
    /// `users/@me` and `applications/@me` requests: (path, Authorization header).
    identity_requests: Mutex<Vec<(String, String)>>,
    identifies: AtomicU32,
    resumes: AtomicU32,
    /// REST message creates answered with 429 before accepting again.
    pending_429: AtomicU32,
    /// Every create attempt (accepted, rate limited, refused, or a duplicate).
    create_attempts: Mutex<Vec<Instant>>,
    posts: Mutex<Vec<Post>>,
    nonces: Mutex<HashMap<String, Value>>,
    typing: Mutex<Vec<(u64, Instant)>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    next_id: AtomicU64,
    changed: Notify,
}

impl Inner {
    fn bump(&self) {
        self.changed.notify_waiters();
    }
    fn id(&self) -> u64 {
        700_000_000_000_000_000 + self.next_id.fetch_add(1, Ordering::SeqCst)
    }
}

#[derive(Clone)]
pub struct FakeDiscord {
    pub rest: SocketAddr,
    inner: Arc<Inner>,
}

pub fn user(id: u64, name: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "username": name, "discriminator": "0",
           "global_name": null, "avatar": null, "bot": bot})
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let inner = Arc::new(Inner::default());
        let gw = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = gw.local_addr().unwrap();
        *inner.gw_addr.lock().unwrap() = Some(gateway);
        tokio::spawn(accept_gateway(gw, inner.clone()));

        let app = Router::new()
            .route("/api/v10/gateway", get(gateway_url))
            .route("/api/v10/gateway/bot", get(gateway_url))
            .route("/api/v10/users/@me", get(me))
            .route("/api/v10/applications/@me", get(application))
            .route("/api/v10/channels/{id}/typing", post(typing))
            .route("/api/v10/channels/{id}/messages", post(create_message))
            .route("/files/{name}", get(file))
            .with_state(inner.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rest = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app).await.unwrap();
        });
        FakeDiscord { rest, inner }
    }

    /// The value for `DISCORD_API_BASE`.
    pub fn api_base(&self) -> String {
        format!("http://{}/api", self.rest)
    }

    /// Serves `bytes` at a URL, as Discord's CDN serves attachments.
    pub fn host_file(&self, name: &str, bytes: Vec<u8>) -> String {
        self.inner
            .files
            .lock()
            .unwrap()
            .insert(name.to_owned(), bytes);
        format!("http://{}/files/{name}", self.rest)
    }

    /// Sends a dispatch (kept for RESUME replays); returns its sequence number.
    pub fn dispatch(&self, kind: &str, d: Value) -> u64 {
        let s = self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let frame = json!({"op": 0, "s": s, "t": kind, "d": d}).to_string();
        self.inner.history.lock().unwrap().push((s, frame.clone()));
        if let Some(tx) = &*self.inner.socket.lock().unwrap() {
            let _ = tx.send(Cmd::Send(frame));
        }
        s
    }

    /// A GUILD_CREATE for guild [`GUILD_ID`] named `name` with text `channels`
    /// (id, name), as Discord sends after READY.
    pub fn guild_create(&self, name: &str, channels: &[(u64, &str)]) -> u64 {
        let channels: Vec<Value> = channels
            .iter()
            .enumerate()
            .map(|(i, (id, n))| {
                json!({"id": id.to_string(), "type": 0, "guild_id": GUILD_ID.to_string(), "name": n,
                       "position": i, "permission_overwrites": [], "nsfw": false, "parent_id": null,
                       "topic": null, "last_message_id": null, "rate_limit_per_user": 0})
            })
            .collect();
        let mut guild = json!({
            "id": GUILD_ID.to_string(), "name": name, "icon": null, "icon_hash": null,
            "splash": null, "discovery_splash": null, "owner_id": "1", "afk_channel_id": null,
            "afk_timeout": 300, "widget_enabled": false, "widget_channel_id": null,
            "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "roles": [], "emojis": [], "features": [],
            "mfa_level": 0, "application_id": null, "system_channel_id": null,
            "system_channel_flags": 0, "rules_channel_id": null, "max_presences": null
        });
        let more = json!({
            "max_members": 100, "vanity_url_code": null, "description": null, "banner": null,
            "premium_tier": 0, "premium_subscription_count": 0, "preferred_locale": "en-US",
            "public_updates_channel_id": null, "max_video_channel_users": 25,
            "nsfw_level": 0, "stickers": [], "premium_progress_bar_enabled": false,
            "safety_alerts_channel_id": null, "joined_at": chrono::Utc::now().to_rfc3339(),
            "large": false, "unavailable": false, "member_count": 1, "voice_states": [],
            "members": [], "channels": channels, "threads": [], "presences": [],
            "stage_instances": [], "guild_scheduled_events": []
        });
        let obj = guild.as_object_mut().unwrap();
        obj.extend(more.as_object().unwrap().clone());
        self.dispatch("GUILD_CREATE", guild)
    }

    /// A MESSAGE_CREATE in `channel` (a guild channel) from `author`.
    pub fn message(&self, channel: u64, author: Value, content: &str) -> u64 {
        self.message_with(channel, author, content, vec![], vec![])
    }

    pub fn message_with(
        &self,
        channel: u64,
        author: Value,
        content: &str,
        mentions: Vec<Value>,
        attachments: Vec<Value>,
    ) -> u64 {
        let id = self.inner.id();
        self.dispatch(
            "MESSAGE_CREATE",
            json!({
                "id": id.to_string(), "channel_id": channel.to_string(), "guild_id": GUILD_ID.to_string(),
                "author": author, "content": content, "timestamp": chrono::Utc::now().to_rfc3339(),
                "edited_timestamp": null, "tts": false, "mention_everyone": false,
                "mentions": mentions, "mention_roles": [], "attachments": attachments,
                "embeds": [], "pinned": false, "type": 0
            }),
        );
        id
    }

    /// Closes the current gateway socket with `code`.
    pub fn close_gateway(&self, code: u16) {
        if let Some(tx) = self.inner.socket.lock().unwrap().take() {
            let _ = tx.send(Cmd::Close(code));
        }
    }

    /// While set, new gateway connections are dropped before the handshake.
    pub fn refuse_gateway(&self, refuse: bool) {
        self.inner.refuse_gateway.store(refuse, Ordering::SeqCst);
    }

    /// IDENTIFY is answered by closing with `code` (4004, 4014).
    pub fn fail_identify(&self, code: u16) {
        *self.inner.identify_close.lock().unwrap() = Some(code);
    }

    /// While set, message creates get 503 (Discord unreachable).
    pub fn refuse_rest(&self, refuse: bool) {
        self.inner.refuse_rest.store(refuse, Ordering::SeqCst);
    }

    /// While set, `/gateway` and `/users/@me` answer 503: a client cannot start.
    pub fn set_offline(&self, offline: bool) {
        self.inner.offline.store(offline, Ordering::SeqCst);
    }

    /// While set, `/users/@me` answers 401 Unauthorized, as for an invalid token.
    pub fn reject_token(&self, reject: bool) {
        self.inner.reject_token.store(reject, Ordering::SeqCst);
    }

    /// The flags `/applications/@me` answers (default: MESSAGE_CONTENT on, 1 << 18).
    pub fn set_application_flags(&self, flags: u64) {
        *self.inner.app_flags.lock().unwrap() = Some(flags);
    }

    /// The `users/@me` and `applications/@me` requests since the last call, as (path,
    /// Authorization header).
    pub fn take_identity_requests(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.inner.identity_requests.lock().unwrap())
    }

    /// The next `n` message creates get 429 (retry after 300 ms).
    pub fn rate_limit_next(&self, n: u32) {
        self.inner.pending_429.store(n, Ordering::SeqCst);
    }

    pub fn posts(&self) -> Vec<Post> {
        self.inner.posts.lock().unwrap().clone()
    }

    pub fn posts_to(&self, channel: u64) -> Vec<Post> {
        self.posts()
            .into_iter()
            .filter(|p| p.channel == channel)
            .collect()
    }

    pub fn create_attempts(&self) -> Vec<Instant> {
        self.inner.create_attempts.lock().unwrap().clone()
    }

    pub fn typing_in(&self, channel: u64) -> Vec<Instant> {
        self.inner
            .typing
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| *c == channel)
            .map(|(_, t)| *t)
            .collect()
    }

    pub fn identifies(&self) -> u32 {
        self.inner.identifies.load(Ordering::SeqCst)
    }

    pub fn resumes(&self) -> u32 {
        self.inner.resumes.load(Ordering::SeqCst)
    }

    pub fn connected(&self) -> bool {
        self.inner.socket.lock().unwrap().is_some()
    }

    /// Waits until `cond` holds (re-checked on every change), panicking after `secs`.
    pub async fn wait_for(&self, what: &str, secs: u64, cond: impl Fn(&FakeDiscord) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let changed = self.inner.changed.notified();
            if cond(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("fake Discord: timed out after {secs} s waiting for {what}");
            }
        }
    }

    /// Waits until `channel` has `n` posts and returns them.
    pub async fn wait_posts(&self, channel: u64, n: usize) -> Vec<Post> {
        self.wait_for(&format!("{n} posts in {channel}"), 60, |f| {
            f.posts_to(channel).len() >= n
        })
        .await;
        self.posts_to(channel)
    }
}

async fn gateway_url(State(inner): State<Arc<Inner>>) -> Response {
    if inner.offline.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
    }
    let addr = inner.gw_addr.lock().unwrap().unwrap();
    json_response(json!({"url": format!("ws://{addr}"), "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}))
}

fn record_identity(inner: &Inner, path: &str, headers: &HeaderMap) {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    inner
        .identity_requests
        .lock()
        .unwrap()
        .push((path.to_owned(), auth));
}

async fn me(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    record_identity(&inner, "/api/v10/users/@me", &headers);
    if inner.offline.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
    }
    if inner.reject_token.load(Ordering::SeqCst) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"message": "401: Unauthorized", "code": 0}"#,
        )
            .into_response();
    }
    json_response(user(BOT_ID, "andy", true))
}

/// The bot's application, by default with the MESSAGE_CONTENT intent enabled (flag
/// 1 << 18), as `rust_claw doctor` reads it.
async fn application(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    record_identity(&inner, "/api/v10/applications/@me", &headers);
    let flags = inner.app_flags.lock().unwrap().unwrap_or(1 << 18);
    json_response(json!({"id": BOT_ID.to_string(), "name": "andy", "flags": flags}))
}

async fn typing(State(inner): State<Arc<Inner>>, Path(id): Path<u64>) -> Response {
    inner.typing.lock().unwrap().push((id, Instant::now()));
    inner.bump();
    StatusCode::NO_CONTENT.into_response()
}

async fn file(State(inner): State<Arc<Inner>>, Path(name): Path<String>) -> Response {
    match inner.files.lock().unwrap().get(&name) {
        Some(b) => b.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn create_message(
    State(inner): State<Arc<Inner>>,
    Path(channel): Path<u64>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner.create_attempts.lock().unwrap().push(Instant::now());
    inner.bump();
    if inner.refuse_rest.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
    }
    let limited = inner
        .pending_429
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if limited {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1"), (header::CONTENT_TYPE, "application/json")],
            json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false, "code": 0})
                .to_string(),
        )
            .into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let nonce = body["nonce"].as_str().map(str::to_owned);
    if body["enforce_nonce"] == json!(true)
        && let Some(n) = &nonce
        && let Some(existing) = inner.nonces.lock().unwrap().get(n)
    {
        return json_response(existing.clone());
    }
    let msg = json!({
        "id": inner.id().to_string(), "channel_id": channel.to_string(),
        "author": user(BOT_ID, "andy", true), "content": body["content"],
        "timestamp": chrono::Utc::now().to_rfc3339(), "edited_timestamp": null, "tts": false,
        "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": false, "type": 0, "nonce": body["nonce"]
    });
    if let Some(n) = nonce {
        inner.nonces.lock().unwrap().insert(n, msg.clone());
    }
    inner.posts.lock().unwrap().push(Post {
        channel,
        body,
        at: Instant::now(),
    });
    inner.bump();
    json_response(msg)
}

async fn accept_gateway(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        if inner.refuse_gateway.load(Ordering::SeqCst) {
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_socket(tcp, inner.clone()));
    }
}

async fn serve_socket(tcp: tokio::net::TcpStream, inner: Arc<Inner>) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 41250}}).to_string();
    if sink.send(Ws::Text(hello)).await.is_err() {
        return;
    }
    let gw = inner.gw_addr.lock().unwrap().unwrap();
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Send(frame)) => {
                    if sink.send(Ws::Text(frame)).await.is_err() {
                        break;
                    }
                }
                other => {
                    let code = match other { Some(Cmd::Close(c)) => c, _ => 1000 };
                    let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
                    let _ = sink.send(Ws::Close(Some(frame))).await;
                    break;
                }
            },
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break };
                let text = match frame {
                    Ws::Text(t) => t,
                    Ws::Close(_) => break,
                    _ => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                match v["op"].as_u64() {
                    Some(1) => {
                        let ack = json!({"op": 11}).to_string();
                        if sink.send(Ws::Text(ack)).await.is_err() { break; }
                    }
                    Some(2) => {
                        inner.identifies.fetch_add(1, Ordering::SeqCst);
                        if let Some(code) = *inner.identify_close.lock().unwrap() {
                            let _ = tx.send(Cmd::Close(code));
                            continue;
                        }
                        let s = inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
                        let ready = json!({"op": 0, "s": s, "t": "READY", "d": {
                            "v": 10, "user": user(BOT_ID, "andy", true), "guilds": [],
                            "session_id": "fake-session", "resume_gateway_url": format!("ws://{gw}"),
                            "application": {"id": BOT_ID.to_string(), "flags": 0}}}).to_string();
                        if sink.send(Ws::Text(ready)).await.is_err() { break; }
                        *inner.socket.lock().unwrap() = Some(tx.clone());
                        inner.bump();
                    }
                    Some(6) => {
                        inner.resumes.fetch_add(1, Ordering::SeqCst);
                        let after = v["d"]["seq"].as_u64().unwrap_or(0);
                        // Register first, so nothing dispatched meanwhile is missed;
                        // replay under the history lock so the order holds.
                        let replay: Vec<String> = {
                            let history = inner.history.lock().unwrap();
                            *inner.socket.lock().unwrap() = Some(tx.clone());
                            history.iter().filter(|(s, _)| *s > after).map(|(_, f)| f.clone()).collect()
                        };
                        let mut ok = true;
                        for f in replay {
                            if sink.send(Ws::Text(f)).await.is_err() { ok = false; break; }
                        }
                        let s = inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
                        let resumed = json!({"op": 0, "s": s, "t": "RESUMED", "d": {}}).to_string();
                        if !ok || sink.send(Ws::Text(resumed)).await.is_err() { break; }
                        inner.bump();
                    }
                    _ => {}
                }
            }
        }
    }
    // This socket is gone: forget it if it is still the current one.
    let mut cur = inner.socket.lock().unwrap();
    if cur.as_ref().is_some_and(|c| c.same_channel(&tx)) {
        *cur = None;
    }
    drop(cur);
    inner.bump();
}

fn json_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}
