//! Orchestrator benchmarks.
//!
//!   cargo bench --bench orchestrator   full run, prints the numbers
//!   cargo test  --bench orchestrator   (what `cargo test --all-targets` does) a smoke run
//!
//! 1. Message received → agent turn started, on a warm session: the time from the
//!    channel handing a message over to the orchestrator starting the turn (the typing
//!    indicator goes on right before `turn/start`). Stores, wakes the queue, reads the
//!    batch, formats the prompt. Target p99 ≤ 20 ms.
//! 2. End to end, message → reply, with the real codex and the mock model: cold (the
//!    first message spawns codex) and warm.
//! 3. `rust_claw run` (this build's release binary) idle with 100 registered groups and
//!    no channel: resident memory and CPU over 10 s.

#[path = "support/mod.rs"]
mod bench;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rust_claw::channels::{BoxFuture, Channel, ChannelError, Inbound};
use rust_claw::model::Jid;
use support::mock_model::Reply;
use support::rig::{DaemonRig, last_message};
use tokio::sync::{Notify, mpsc};

const MAIN: &str = "100000000000000001@discord";

/// Records when the daemon turned typing on and when it sent, per chat.
#[derive(Default)]
struct TimingChannel {
    inbound: Mutex<Option<mpsc::Sender<Inbound>>>,
    typing_on: Mutex<Vec<Instant>>,
    sent: Mutex<Vec<Instant>>,
    changed: Notify,
}

impl TimingChannel {
    async fn say(&self, n: u64, text: &str) -> Instant {
        let tx = self.inbound.lock().unwrap().clone().unwrap();
        let at = Instant::now();
        tx.send(Inbound {
            chat_jid: Jid::parse(MAIN).unwrap(),
            chat_name: None,
            external_id: Some(format!("b{n}")),
            sender_id: "u".into(),
            sender_name: "Bench".into(),
            content: text.into(),
            sent_at: chrono::Utc::now(),
            from_self: false,
            from_bot: false,
            mentions_assistant: false,
            direct: false,
        })
        .await
        .unwrap();
        at
    }

    async fn wait_sent(&self, n: usize) -> Instant {
        loop {
            let changed = self.changed.notified();
            if let Some(t) = self.sent.lock().unwrap().get(n - 1) {
                return *t;
            }
            tokio::time::timeout(Duration::from_secs(30), changed)
                .await
                .expect("no reply within 30 s");
        }
    }
}

impl Channel for TimingChannel {
    fn name(&self) -> &'static str {
        "bench"
    }
    fn owns(&self, jid: &Jid) -> bool {
        jid.is_discord()
    }
    fn connect(&self, inbound: mpsc::Sender<Inbound>) -> BoxFuture<'_, Result<(), ChannelError>> {
        *self.inbound.lock().unwrap() = Some(inbound);
        Box::pin(async { Ok(()) })
    }
    fn send<'a>(
        &'a self,
        _: &'a Jid,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        self.sent.lock().unwrap().push(Instant::now());
        self.changed.notify_waiters();
        Box::pin(async { Ok(()) })
    }
    fn set_typing<'a>(&'a self, _: &'a Jid, on: bool) -> BoxFuture<'a, ()> {
        if on {
            self.typing_on.lock().unwrap().push(Instant::now());
        }
        Box::pin(async {})
    }
    fn disconnect(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

async fn pipeline(full: bool) {
    let mut rig = DaemonRig::start("bench-orch", &[], &[(MAIN, "main", true, false)]).await;
    rig.t
        .mock
        .respond_with(|req| Reply::Text(format!("re: {}", last_message(req))));
    // Swap the rig's channel for one that timestamps what the daemon does.
    let ch = Arc::new(TimingChannel::default());
    if let Some(d) = rig.daemon.take() {
        d.shutdown().await;
    }
    let channel: Arc<dyn Channel> = ch.clone();
    let daemon = rig.start_daemon(channel).await;

    let n = if full { 200 } else { 5 };
    let t0 = ch.say(0, "cold start").await;
    let cold = ch.wait_sent(1).await - t0;
    println!(
        "end to end, cold (spawns codex): {:.1} ms",
        cold.as_secs_f64() * 1e3
    );
    let mut to_turn = Vec::new();
    let mut e2e = Vec::new();
    for i in 1..=n {
        let t = ch.say(i as u64, &format!("message {i}")).await;
        let sent = ch.wait_sent(i + 1).await;
        let turn = ch.typing_on.lock().unwrap()[i];
        to_turn.push(turn - t);
        e2e.push(sent - t);
    }
    let p99 = bench::ms(bench::report("message received → turn started (warm)", to_turn).p99);
    bench::report("end to end, warm (codex + mock model)", e2e);
    if full {
        println!(
            "target: turn started p99 ≤ 20 ms → {}",
            if p99 <= 20.0 { "met" } else { "MISSED" }
        );
    }
    daemon.shutdown().await;
}

/// `rust_claw run` idle with 100 groups: RSS and CPU time over 10 s.
fn idle_daemon(full: bool) {
    use std::process::{Command, Stdio};
    let dir = support::homes_dir().join(format!("bench-idle-{}", std::process::id()));
    bench::daemon_root(&dir, 100, "");
    let exe = env!("CARGO_BIN_EXE_rust_claw");
    let root = dir.to_str().unwrap();
    let mut child = Command::new(exe)
        .args(["--root", root, "run"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = |pid: u32| {
        support::cpu_time(pid)
            .expect("the daemon's CPU time")
            .as_secs_f64()
    };
    let rss_kb = || support::rss_kib(pid).expect("the daemon's VmRSS");
    let secs = if full { 10 } else { 2 };
    let (c0, t0) = (cpu(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, dt) = (cpu(pid), t0.elapsed());
    let rss = rss_kb();
    let private = support::private_dirty_kib(pid).expect("the daemon's Private_Dirty");
    bench::sigterm(pid);
    let stopped = Instant::now();
    let status = child.wait().unwrap();
    println!(
        "rust_claw run idle, 100 groups, no channel: RSS {:.1} MB, private (Private_Dirty) {:.1} MB, CPU {:.3}% of a core over {:.0} s; SIGTERM → exit {:.0} ms ({status})",
        rss as f64 / 1024.0,
        private as f64 / 1024.0,
        (c1 - c0) / dt.as_secs_f64() * 100.0,
        dt.as_secs_f64(),
        stopped.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        status.success(),
        "the daemon did not stop cleanly on SIGTERM"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let full = bench::full_run();
    let rt = bench::runtime();
    rt.block_on(pipeline(full));
    idle_daemon(full);
}
