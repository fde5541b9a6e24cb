//! Discord channel benchmarks, against the fake Discord of the tests.
//!
//!   cargo bench --bench discord   full run, prints the numbers
//!   cargo test  --bench discord   (what `cargo test --all-targets` does) a smoke run
//!
//! 1. Fake MESSAGE_CREATE → reply POST, with the real serenity client, the daemon and
//!    the real codex against the mock model (answers at once). Our part is split from
//!    codex's by the typing indicator calls, which the orchestrator makes right before
//!    `turn/start` and right after the turn ends. *In* is typing on minus the moment
//!    the fake wrote MESSAGE_CREATE on the socket (serenity decoding, ordering, store,
//!    queue, prompt); *out* is the fake receiving the POST minus typing off (commit to
//!    the outbox, delivery, split, serenity's REST call). Our part = in + out; codex's
//!    = typing off − typing on. Target p99 ≤ 10 ms.
//! 2. `rust_claw run` (this build's release binary) connected to the fake with 100
//!    registered groups, after 100 messages in unregistered chats: VmRSS and private
//!    memory (Private_Dirty). Target ≤ 15 MB.

#[path = "support/mod.rs"]
mod bench;
#[path = "../tests/support/fake_discord.rs"]
mod fake_discord;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_discord::{FakeDiscord, user};
use rust_claw::channels::discord::{self, DiscordChannel, DiscordOptions};
use rust_claw::channels::{BoxFuture, Channel, ChannelError, Inbound};
use rust_claw::model::Jid;
use support::mock_model::Reply;
use support::rig::{DaemonRig, last_message};
use tokio::sync::mpsc;

const MAIN: u64 = 100_000_000_000_000_001;

/// The Discord channel, with the daemon's typing calls timestamped.
struct Timed {
    inner: Arc<DiscordChannel>,
    typing: Mutex<Vec<(bool, Instant)>>,
}

impl Channel for Timed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn owns(&self, jid: &Jid) -> bool {
        self.inner.owns(jid)
    }
    fn connect(&self, inbound: mpsc::Sender<Inbound>) -> BoxFuture<'_, Result<(), ChannelError>> {
        self.inner.connect(inbound)
    }
    fn send<'a>(
        &'a self,
        jid: &'a Jid,
        text: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        self.inner.send(jid, text, nonce)
    }
    fn set_typing<'a>(&'a self, jid: &'a Jid, on: bool) -> BoxFuture<'a, ()> {
        self.typing.lock().unwrap().push((on, Instant::now()));
        self.inner.set_typing(jid, on)
    }
    fn disconnect(&self) -> BoxFuture<'_, ()> {
        self.inner.disconnect()
    }
}

async fn round_trips(full: bool) {
    let main = format!("{MAIN}@discord");
    let mut rig = DaemonRig::start("bench-discord", &[], &[(&main, "main", true, false)]).await;
    rig.t
        .mock
        .respond_with(|req| Reply::Text(format!("re: {}", last_message(req))));
    if let Some(d) = rig.daemon.take() {
        d.shutdown().await;
    }
    let fake = FakeDiscord::start().await;
    let discord = DiscordChannel::new(DiscordOptions {
        token: "bench-token".into(),
        api_base: fake.api_base(),
        allowlist_path: rig.t.root.join("no-allowlist/sender-allowlist.json"),
        typing_every: Duration::from_secs(8),
        reconnect_wait: Duration::from_secs(30),
        rate_limit_wait: Duration::from_secs(1),
    })
    .unwrap();
    let timed = Arc::new(Timed {
        inner: discord.clone(),
        typing: Mutex::new(Vec::new()),
    });
    let channel: Arc<dyn Channel> = timed.clone();
    let daemon = rig.start_daemon(channel).await;
    assert!(discord.ws_url().unwrap().starts_with("ws://127.0.0.1"));
    discord.set_group_dirs(discord::group_dirs(
        daemon.store().clone(),
        rig.t.paths.clone(),
    ));
    fake.wait_for("IDENTIFY", 30, |f| f.connected()).await;

    let alice = user(200_000_000_000_000_001, "alice", false);
    // Cold: the first message spawns codex.
    let t0 = Instant::now();
    fake.message(MAIN, alice.clone(), "cold start");
    let cold = fake.wait_posts(MAIN, 1).await[0].at - t0;
    println!(
        "end to end, cold (spawns codex): {:.1} ms",
        cold.as_secs_f64() * 1e3
    );

    let n = if full { 200 } else { 5 };
    let (mut ours, mut inbound, mut outbound, mut codex, mut e2e) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=n {
        let t = Instant::now();
        fake.message(MAIN, alice.clone(), &format!("message {i}"));
        let posted = fake.wait_posts(MAIN, i + 1).await[i].at;
        let typing = timed.typing.lock().unwrap().clone();
        let on = typing.iter().rev().find(|(on, _)| *on).unwrap().1;
        let off = typing.iter().rev().find(|(on, _)| !*on).unwrap().1;
        inbound.push(on - t);
        outbound.push(posted - off);
        ours.push((on - t) + (posted - off));
        codex.push(off - on);
        e2e.push(posted - t);
    }
    bench::report("in: MESSAGE_CREATE → turn started", inbound);
    bench::report("out: turn ended → reply POST received", outbound);
    let p99 = bench::ms(bench::report("our part (in + out)", ours).p99);
    bench::report("codex + mock model (turn)", codex);
    bench::report("end to end, warm", e2e);
    if full {
        println!(
            "target: our part p99 ≤ 10 ms → {}",
            if p99 <= 10.0 { "met" } else { "MISSED" }
        );
    }
    daemon.shutdown().await;
}

/// `rust_claw run` connected to the fake with 100 groups: RSS and private memory.
async fn connected_daemon(full: bool) {
    use std::process::Stdio;
    let fake = FakeDiscord::start().await;
    let dir = support::homes_dir().join(format!("bench-discord-rss-{}", std::process::id()));
    bench::daemon_root(&dir, 100, "");
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .arg("--root")
        .arg(&dir)
        .arg("run")
        .env("RUST_LOG", "warn")
        .env("HOME", dir.join("home"))
        .env("DISCORD_BOT_TOKEN", "bench-token")
        .env("DISCORD_API_BASE", fake.api_base())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    fake.wait_for("IDENTIFY", 30, |f| f.connected()).await;
    // Chatter in unregistered chats: received, chats recorded, no agent.
    let alice = user(200_000_000_000_000_001, "alice", false);
    let msgs = if full { 100 } else { 10 };
    for i in 0..msgs {
        fake.message(300_000_000_000_000_000 + (i % 10), alice.clone(), "chatter");
    }
    tokio::time::sleep(Duration::from_secs(if full { 5 } else { 1 })).await;
    let rss = support::rss_kib(pid).expect("VmRSS");
    let private = support::private_dirty_kib(pid).expect("Private_Dirty");
    println!(
        "rust_claw run connected to the fake, 100 groups, {msgs} messages: RSS {:.1} MB, Private_Dirty {:.1} MB",
        rss as f64 / 1024.0,
        private as f64 / 1024.0
    );
    bench::sigterm(pid);
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the daemon did not stop cleanly");
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let full = bench::full_run();
    let rt = bench::runtime();
    rt.block_on(round_trips(full));
    rt.block_on(connected_daemon(full));
}
