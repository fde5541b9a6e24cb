//! The Discord channel end to end: the real serenity client against a fake Discord on
//! 127.0.0.1 (REST + gateway), the real daemon, store and codex (host runner) against
//! the mock model.

#[path = "support/fake_discord.rs"]
mod fake_discord;
mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fake_discord::{BOT_ID, FakeDiscord, user};
use rust_claw::actions::{self, RegisterGroup};
use rust_claw::agent::host::HostRunner;
use rust_claw::channels::Channel;
use rust_claw::channels::discord::{self, DiscordChannel, DiscordOptions};
use rust_claw::config::Config;
use rust_claw::daemon::Daemon;
use rust_claw::model::{FolderName, Jid};
use rust_claw::store::{Store, messages};
use serde_json::{Value, json};
use support::mock_model::Reply;
use support::rig::last_message;
use support::{TestRoot, codex_bin};

const MAIN: u64 = 100_000_000_000_000_001;
const OPS: u64 = 100_000_000_000_000_002;
const ALICE: u64 = 200_000_000_000_000_001;
const BOB: u64 = 200_000_000_000_000_002;

fn jid(channel: u64) -> String {
    format!("{channel}@discord")
}

fn alice() -> Value {
    user(ALICE, "alice", false)
}

struct Setup {
    fake: FakeDiscord,
    t: TestRoot,
    discord: Arc<DiscordChannel>,
    daemon: Option<Daemon>,
}

impl Setup {
    /// A daemon whose only channel is serenity connected to a fresh fake Discord, with
    /// MAIN registered as main and OPS as a group that needs its trigger.
    async fn start(name: &str, allowlist: Option<&str>) -> Setup {
        let fake = FakeDiscord::start().await;
        let t = TestRoot::new(name).await;
        std::fs::write(t.root.join(".env"), "TIMEZONE=UTC\nAGENT_RUNNER=host\n").unwrap();
        let config = Arc::new(Config::load(&t.root).unwrap());
        for (channel, folder, main) in [(MAIN, "main", true), (OPS, "ops", false)] {
            let req = RegisterGroup {
                jid: Jid::parse(&jid(channel)).unwrap(),
                name: folder.to_uppercase(),
                folder: FolderName::parse(folder).unwrap(),
                trigger: None,
                requires_trigger: true,
                is_main: main,
                container_config: None,
            };
            t.store
                .call(move |s| s.write(|tx| actions::register_group(tx, req, "@Andy", Utc::now())))
                .await
                .unwrap();
        }
        let allow_dir = t.root.join("config");
        std::fs::create_dir_all(&allow_dir).unwrap();
        let allowlist_path = allow_dir.join("sender-allowlist.json");
        if let Some(text) = allowlist {
            std::fs::write(&allowlist_path, text).unwrap();
        }
        let discord = DiscordChannel::new(DiscordOptions {
            token: "test-token".into(),
            api_base: fake.api_base(),
            allowlist_path,
            typing_every: Duration::from_millis(250),
            reconnect_wait: Duration::from_secs(60),
            rate_limit_wait: Duration::from_millis(400),
        })
        .unwrap();
        let store = Store::open(&t.paths.database()).unwrap();
        let channel: Arc<dyn Channel> = discord.clone();
        let daemon = Daemon::start_with(
            &t.paths,
            config,
            store,
            vec![channel],
            t.settings.clone(),
            Arc::new(HostRunner::new(codex_bin())),
        )
        .await
        .unwrap();
        // serenity silently falls back to the real gateway when /gateway fails.
        let ws = discord.ws_url().unwrap().to_owned();
        assert!(ws.starts_with("ws://127.0.0.1"), "gateway URL {ws}");
        discord.set_group_dirs(discord::group_dirs(daemon.store().clone(), t.paths.clone()));
        fake.wait_for("the first IDENTIFY", 30, |f| f.connected())
            .await;
        Setup {
            fake,
            t,
            discord,
            daemon: Some(daemon),
        }
    }

    fn echo(&self) {
        self.t
            .mock
            .respond_with(|req| Reply::Text(format!("re: {}", last_message(req))));
    }

    async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
    }
}

/// The `<messages>` block of the last user prompt in what codex sent the model.
fn prompt_of(req: &Value) -> String {
    let body = req.to_string();
    let start = body.rfind("<messages>").unwrap_or(0);
    let end = body[start..]
        .find("</messages>")
        .map_or(body.len(), |e| start + e);
    body[start..end].to_owned()
}

fn assert_safe_create(body: &Value) {
    assert_eq!(
        body["allowed_mentions"]["parse"],
        json!(["users"]),
        "allowed_mentions on the wire: {body}"
    );
    assert!(
        body["nonce"].as_str().is_some_and(|n| n.len() <= 25),
        "{body}"
    );
    assert_eq!(body["enforce_nonce"], json!(true), "{body}");
}

/// Main answers everything; OPS only its trigger or a real mention; bots (others and
/// itself) never trigger; the full round trip goes through codex and the mock model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_mentions_and_bots() {
    let s = Setup::start("dc-triggers", None).await;
    s.echo();
    let f = &s.fake;

    f.guild_create("Test Guild", &[(MAIN, "general"), (OPS, "ops-room")]);
    f.message(MAIN, alice(), "hello main");
    let posts = f.wait_posts(MAIN, 1).await;
    assert_eq!(posts[0].content(), "re: hello main");
    assert_safe_create(&posts[0].body);
    // Typing was shown for the turn.
    assert!(!f.typing_in(MAIN).is_empty());

    // OPS: chatter, another bot's trigger and our own message do not trigger...
    f.message(OPS, alice(), "just chatting");
    f.message(
        OPS,
        user(BOB, "otherbot", true),
        "@Andy do something, bot says",
    );
    f.message(
        OPS,
        user(BOT_ID, "andy", true),
        "@Andy this is my own reply",
    );
    // ...the trigger does, with the chatter and the other bot as context.
    f.message(OPS, alice(), "@Andy what now?");
    let posts = f.wait_posts(OPS, 1).await;
    assert_eq!(posts[0].content(), "re: @Andy what now?");
    let reqs = s.t.mock.requests();
    let prompt = prompt_of(reqs.last().unwrap());
    let stored = s
        .daemon
        .as_ref()
        .unwrap()
        .store()
        .call(|st| messages::since(st.conn(), &Jid::parse(&jid(OPS)).unwrap(), 0, 100))
        .await
        .unwrap();
    assert!(prompt.contains("just chatting"), "{prompt} {stored:?}");
    assert!(
        prompt.contains("bot says"),
        "other bots are context: {prompt}"
    );
    assert!(
        !prompt.contains("my own reply"),
        "own messages re-ingested: {prompt}"
    );

    // A real mention triggers; a typed name that is not the trigger does not.
    f.message(OPS, alice(), "hey Andy, no trigger here");
    f.message_with(
        OPS,
        alice(),
        &format!("<@{BOT_ID}> ping"),
        vec![user(BOT_ID, "andy", true)],
        vec![],
    );
    let posts = f.wait_posts(OPS, 2).await;
    // (The echo is of the XML-escaped prompt.)
    assert_eq!(posts[1].content(), format!("re: &lt;@{BOT_ID}&gt; ping"));
    // Exactly one reply per trigger: 3 creates in all.
    assert_eq!(f.posts().len(), 3, "{:?}", f.posts());

    // Chats are recorded with their guild and channel names (list-groups, the agent's
    // available_groups). serenity runs each event's handler in its own task, so the
    // first message above may have been taken in before GUILD_CREATE's names were
    // learnt (it is then stored without a name, which a later message fills in): one
    // more round trip in MAIN, long after GUILD_CREATE was handled, records its name.
    f.message(MAIN, alice(), "hello again");
    let posts = f.wait_posts(MAIN, 2).await;
    assert_eq!(posts[1].content(), "re: hello again");
    let chats = s
        .daemon
        .as_ref()
        .unwrap()
        .store()
        .call(|st| rust_claw::store::chats::list(st.conn()))
        .await
        .unwrap();
    let name_of = |c: u64| {
        chats
            .iter()
            .find(|x| x.jid.to_string() == jid(c))
            .and_then(|x| x.name.clone())
    };
    assert_eq!(name_of(MAIN).as_deref(), Some("Test Guild #general"));
    assert_eq!(name_of(OPS).as_deref(), Some("Test Guild #ops-room"));
    s.stop().await;
}

/// A 5,000-character reply with a code block arrives as ordered chunks ≤ 2000 with
/// intact fences; an @everyone in it pings nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_replies_and_everyone() {
    let s = Setup::start("dc-split", None).await;
    let para = "Some prose that goes on for a while, sentence after sentence. ".repeat(20);
    let code: String = (0..70)
        .map(|i| format!("println!(\"line {i}\");\n"))
        .collect();
    let reply = format!("@everyone look:\n\n{para}\n\n```rust\n{code}```\n\n{para}\n\n{para}");
    assert!(reply.chars().count() >= 5000);
    s.t.mock.push([Reply::Text(reply.clone())]);
    s.fake.message(MAIN, alice(), "write a lot");
    s.fake.wait_posts(MAIN, 3).await;
    // Let the reply finish (its turn committed, the outbox emptied).
    s.daemon
        .as_ref()
        .unwrap()
        .wait_answered(&Jid::parse(&jid(MAIN)).unwrap())
        .await;
    let posts = s.fake.posts_to(MAIN);
    let texts: Vec<&str> = posts.iter().map(|p| p.content()).collect();
    for (i, t) in texts.iter().enumerate() {
        assert!(t.chars().count() <= 2000, "chunk {i} too long");
        assert_eq!(t.matches("```").count() % 2, 0, "chunk {i} fences: {t}");
        assert_safe_create(&posts[i].body);
    }
    assert!(texts[0].starts_with("@everyone look:"));
    let joined = texts.join("\n");
    let mut pos = 0;
    for i in 0..70 {
        let line = format!("println!(\"line {i}\");");
        let at = joined[pos..]
            .find(&line)
            .unwrap_or_else(|| panic!("{line} missing or out of order"))
            + pos;
        pos = at + line.len();
    }
    // A chunk that continues the code block reopens it with its language.
    assert!(texts.iter().skip(1).any(|t| t.starts_with("```rust\n")));
    s.stop().await;
}

/// Typing shows during a long turn, is renewed, and stops with the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_kept_alive() {
    let s = Setup::start("dc-typing", None).await;
    s.t.mock.push([Reply::Stream {
        pieces: vec!["slow ".into(), "answer ".into(), "done".into()],
        gap: Duration::from_millis(500),
    }]);
    s.fake.message(MAIN, alice(), "take your time");
    let post = s.fake.wait_posts(MAIN, 1).await.remove(0);
    assert_eq!(post.content(), "slow answer done");
    let typing = s.fake.typing_in(MAIN);
    assert!(
        typing.len() >= 3,
        "typing renewed during the turn: {typing:?}"
    );
    // Another round trip elsewhere; meanwhile no typing was sent to MAIN after its reply.
    s.echo();
    s.fake.message(OPS, alice(), "@Andy hi");
    s.fake.wait_posts(OPS, 1).await;
    let late: Vec<_> = s
        .fake
        .typing_in(MAIN)
        .into_iter()
        .filter(|t| *t > post.at)
        .collect();
    assert!(late.is_empty(), "typing after the reply: {late:?}");
    s.stop().await;
}

/// An image attachment is stored in the group's folder and reaches codex as an image
/// input item; another file arrives as its name and URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_attachments_reach_codex() {
    let s = Setup::start("dc-image", None).await;
    s.echo();
    // A 1×1 PNG.
    let png: Vec<u8> = vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0d, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0, 0x05, 0x00, 0x01, 0xff,
        0x89, 0x99, 0x3d, 0x1d, 0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    let img_url = s.fake.host_file("cat.png", png.clone());
    let txt_url = s.fake.host_file("notes.txt", b"hello".to_vec());
    let id = s.fake.message_with(
        MAIN,
        alice(),
        "what is in this picture?",
        vec![],
        vec![
            json!({"id": "1", "filename": "cat.png", "size": png.len(), "url": img_url,
                   "proxy_url": img_url, "content_type": "image/png"}),
            json!({"id": "2", "filename": "notes.txt", "size": 5, "url": txt_url,
                   "proxy_url": txt_url, "content_type": "text/plain"}),
        ],
    );
    s.fake.wait_posts(MAIN, 1).await;
    let req = s.t.mock.requests().last().unwrap().clone();
    let stored =
        s.t.paths
            .group_dir(&FolderName::parse("main").unwrap())
            .join(format!("attachments/{id}-0.png"));
    assert_eq!(
        std::fs::read(&stored).ok(),
        Some(png),
        "stored image; prompt: {}",
        prompt_of(&req)
    );
    let body = req.to_string();
    assert!(
        body.contains("\"input_image\"") && body.contains("data:image/png;base64,"),
        "no image input in what the model got: {}",
        prompt_of(&req)
    );
    assert!(body.contains(&format!("[attachment: notes.txt] {txt_url}")));
    s.stop().await;
}

/// The gateway closed with 4000 mid-conversation: serenity resumes, the message sent
/// meanwhile is replayed, nothing is lost or answered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_4000() {
    let s = Setup::start("dc-resume", None).await;
    s.echo();
    s.fake.message(MAIN, alice(), "first");
    s.fake.wait_posts(MAIN, 1).await;
    s.fake.close_gateway(4000);
    s.fake
        .message(MAIN, alice(), "second, sent while the socket was down");
    s.fake.wait_for("a RESUME", 30, |f| f.resumes() >= 1).await;
    let posts = s.fake.wait_posts(MAIN, 2).await;
    assert_eq!(
        posts[1].content(),
        "re: second, sent while the socket was down"
    );
    s.daemon
        .as_ref()
        .unwrap()
        .wait_answered(&Jid::parse(&jid(MAIN)).unwrap())
        .await;
    assert_eq!(s.fake.posts().len(), 2);
    assert_eq!(s.fake.identifies(), 1, "resumed, not re-identified");
    assert!(
        *s.discord.sessions().borrow() >= 2,
        "READY then RESUMED seen"
    );
    assert_eq!(s.t.mock.requests().len(), 2, "each message answered once");
    s.stop().await;
}

/// A reply produced while the gateway is down waits, then goes out after reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_waits_for_reconnect() {
    let s = Setup::start("dc-down", None).await;
    s.t.mock.push([Reply::Stream {
        pieces: vec!["answer ".into(), "after the outage".into()],
        gap: Duration::from_millis(300),
    }]);
    s.fake.message(MAIN, alice(), "question");
    s.t.mock.wait_requests(1).await;
    // Discord becomes unreachable mid-turn: the socket closes, reconnects and REST fail.
    s.fake.refuse_rest(true);
    s.fake.refuse_gateway(true);
    s.fake.close_gateway(4000);
    s.fake
        .wait_for("the socket to go", 10, |f| !f.connected())
        .await;
    // The reply, produced during the outage, could not be posted: it waits.
    s.fake
        .wait_for("a refused create", 30, |f| !f.create_attempts().is_empty())
        .await;
    assert!(s.fake.posts().is_empty());
    s.fake.refuse_rest(false);
    s.fake.refuse_gateway(false);
    let posts = s.fake.wait_posts(MAIN, 1).await;
    assert_eq!(posts[0].content(), "answer after the outage");
    s.daemon
        .as_ref()
        .unwrap()
        .wait_answered(&Jid::parse(&jid(MAIN)).unwrap())
        .await;
    assert_eq!(s.fake.posts().len(), 1);
    s.stop().await;
}

/// A 429 on send is waited out and retried once; the reply is posted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_send_is_retried_once() {
    let s = Setup::start("dc-429", None).await;
    s.echo();
    s.fake.rate_limit_next(1);
    s.fake.message(MAIN, alice(), "hi");
    let posts = s.fake.wait_posts(MAIN, 1).await;
    assert_eq!(posts[0].content(), "re: hi");
    let attempts = s.fake.create_attempts();
    assert_eq!(attempts.len(), 2, "one 429, one retry");
    assert!(attempts[1] - attempts[0] >= Duration::from_millis(400));
    s.daemon
        .as_ref()
        .unwrap()
        .wait_answered(&Jid::parse(&jid(MAIN)).unwrap())
        .await;
    assert_eq!(s.fake.posts().len(), 1);
    s.stop().await;
}

/// A sender outside the allowlist cannot trigger (kept as context in `trigger` mode,
/// not stored in `drop` mode); an edit is picked up while running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_decides_who_triggers() {
    let list = format!(
        r#"{{"default": {{"allow": "*", "mode": "trigger"}},
            "chats": {{"{MAIN}@discord": {{"allow": ["{ALICE}"], "mode": "trigger"}},
                       "dc:{OPS}": {{"allow": ["{ALICE}"], "mode": "drop"}}}},
            "logDenied": true}}"#
    );
    let s = Setup::start("dc-allow", Some(&list)).await;
    s.echo();
    let bob = user(BOB, "bob", false);
    s.fake.message(MAIN, bob.clone(), "bob speaking in main");
    s.fake.message(OPS, bob.clone(), "@Andy bob in ops");
    s.fake.message(MAIN, alice(), "alice asks");
    s.fake.wait_posts(MAIN, 1).await;
    let prompt = prompt_of(s.t.mock.requests().last().unwrap());
    assert!(
        prompt.contains("bob speaking in main"),
        "context kept: {prompt}"
    );
    s.fake.message(OPS, alice(), "@Andy alice in ops");
    s.fake.wait_posts(OPS, 1).await;
    let prompt = prompt_of(s.t.mock.requests().last().unwrap());
    assert!(prompt.contains("alice in ops"));
    assert!(
        !prompt.contains("bob in ops"),
        "dropped sender stored: {prompt}"
    );
    assert_eq!(s.t.mock.requests().len(), 2, "bob triggered a turn");
    s.stop().await;
}

/// `rust_claw run` ends with the message naming the fix on 4014 and 4004.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_close_codes_end_run() {
    for (code, expect) in [
        (4014, "Message Content Intent"),
        (4004, "the token is invalid"),
    ] {
        let fake = FakeDiscord::start().await;
        fake.fail_identify(code);
        let t = TestRoot::new("dc-fatal").await;
        let home = t.root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rust_claw"))
            .arg("run")
            .arg("--root")
            .arg(&t.root)
            .env("HOME", &home)
            .env("DISCORD_BOT_TOKEN", "test-token")
            .env("DISCORD_API_BASE", fake.api_base())
            .env("AGENT_RUNNER", "host")
            .env("CODEX_BIN", codex_bin())
            .env("TIMEZONE", "UTC")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("run did not end on close code {code}"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{code}: {stderr}");
        assert!(stderr.contains(expect), "{code}: {stderr}");
        assert_eq!(fake.identifies(), 1, "{code}: reconnect loop");
    }
}
