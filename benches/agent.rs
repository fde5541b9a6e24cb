//! Agent benchmarks with the real codex (RUST_CLAW_TEST_CODEX) and the mock model.
//!
//!   cargo bench --bench agent          full run, prints the numbers
//!   cargo test  --bench agent          (what `cargo test --all-targets` does) a smoke run
//!
//! - spawn → ready thread: `Agents::start` (codex home prepared, codex spawned,
//!   initialize, thread/start or thread/resume).
//! - turn overhead: a warm thread, the mock answering at once, so the whole turn time
//!   is overhead beyond the model (codex + our client + HTTP on 127.0.0.1); measured
//!   with the root inside this git checkout (`target/test-homes`, as when running from
//!   a clone) and outside any checkout (`~/.cache/rust_claw/bench-homes`), because
//!   codex runs git on every turn in the first layout and not in the second.
//! - host memory: this process's RSS with N live sessions vs none (codex's own memory
//!   is in its own processes and not counted).

#[path = "support/mod.rs"]
mod bench;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rust_claw::agent::Agents;
use rust_claw::model::ContextMode;
use support::mock_model::Reply;
use support::{TestRoot, folder};

fn rss_kib() -> u64 {
    support::rss_kib("self").expect("this process's VmRSS")
}

fn main() {
    let full = bench::full_run();
    let rt = bench::runtime();
    rt.block_on(run(full));
}

/// Our client's own cost: a JSON-RPC round trip through the reader/writer tasks to an
/// in-memory peer that answers at once (no codex involved).
async fn rpc_round_trip(n: usize) {
    use rust_claw::agent::rpc::{HandlerError, RpcClient};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (client_out, server_in) = tokio::io::duplex(64 * 1024);
    let (mut server_out, client_in) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut lines = BufReader::new(server_in).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let answer = serde_json::json!({"id": v["id"], "result": {"turn": {"id": "t", "status": "inProgress"}}});
            server_out
                .write_all(format!("{answer}\n").as_bytes())
                .await
                .unwrap();
        }
    });
    let refuse = std::sync::Arc::new(|_: &str, _: &serde_json::Value| {
        Err(HandlerError {
            code: -32601,
            message: String::new(),
        })
    });
    let (client, _notes) = RpcClient::spawn(client_in, client_out, refuse);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let _: serde_json::Value = client
            .request(
                "turn/start",
                &serde_json::json!({"threadId": "t", "input": [{"type": "text", "text": "hi"}]}),
            )
            .await
            .unwrap();
        times.push(started.elapsed());
    }
    bench::report("our JSON-RPC round trip (no codex)", times);
}

async fn run(full: bool) {
    let (starts, turns, live) = if full { (10, 40, 8) } else { (1, 2, 1) };
    // codex reads its TLS roots again for every model request; with SSL_CERT_DIR set
    // that means every file in the directory (docs/agent.md, "Turn overhead").
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        match std::env::var_os(var) {
            Some(v) => println!(
                "environment: {var}={} (passed to codex)",
                v.to_string_lossy()
            ),
            None => println!("environment: {var} unset"),
        }
    }
    rpc_round_trip(if full { 2000 } else { 10 }).await;
    let t = TestRoot::new("bench").await;
    let agents = t.agents();
    let f = folder("bench");

    // Spawn → ready thread: the first start creates the thread, later ones resume it.
    let mut fresh = Vec::new();
    let mut resumed = Vec::new();
    let mut isolated = Vec::new();
    let mut closes = Vec::new();
    for i in 0..starts {
        let started = Instant::now();
        let s = agents.start(&f, false, ContextMode::Group).await.unwrap();
        if i == 0 {
            fresh.push(started.elapsed());
        } else {
            resumed.push(started.elapsed());
        }
        let closing = Instant::now();
        s.close().await;
        closes.push(closing.elapsed());
        let started = Instant::now();
        let s = agents
            .start(&f, false, ContextMode::Isolated)
            .await
            .unwrap();
        isolated.push(started.elapsed());
        s.close().await;
    }
    bench::report("spawn → ready (new thread, first run)", fresh);
    if !resumed.is_empty() {
        bench::report("spawn → ready (thread/resume)", resumed);
    }
    bench::report("spawn → ready (isolated, ephemeral)", isolated);
    bench::report("close (stdin closed → codex exited)", closes);

    // Turn overhead on a warm thread: the mock answers immediately.
    let mut s = warm_turns(&t, &agents, &f, turns, "root inside a git checkout").await;
    // The same with a mock that takes 100 ms: overhead = turn time - 100 ms.
    let mut slow = Vec::new();
    for _ in 0..(turns / 4).max(1) {
        t.mock.push([Reply::Stream {
            pieces: vec!["po".into(), "ng".into()],
            gap: Duration::from_millis(50),
        }]);
        let started = Instant::now();
        s.run_turn("slow ping").await.unwrap();
        slow.push(started.elapsed().saturating_sub(Duration::from_millis(100)));
    }
    bench::report("turn overhead beyond a 100 ms mock", slow);
    s.close().await;

    // Host-side memory per live agent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let mut sessions = Vec::new();
    for i in 0..live {
        let g = folder(&format!("live-{i}"));
        let mut s = agents.start(&g, false, ContextMode::Group).await.unwrap();
        s.run_turn("hello").await.unwrap();
        sessions.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib();
    let codex_rss: u64 = sessions
        .iter()
        .filter_map(|s| s.pid())
        .filter_map(support::rss_kib)
        .sum();
    println!(
        "host RSS: {before} KiB with 0 sessions, {after} KiB with {live} live → {:.0} KiB per session \
         (codex processes: {:.0} MiB each)",
        (after.saturating_sub(before)) as f64 / live as f64,
        codex_rss as f64 / 1024.0 / live as f64
    );
    for s in sessions {
        s.close().await;
    }
    drop(t);

    // The same warm turns with the root outside any git checkout (as with
    // `RUST_CLAW_ROOT=/var/lib/rust_claw`): codex finds no `.git` above the group
    // folder and so runs none of its per-turn git probes.
    let base = bench::outside_checkout_base();
    let t = TestRoot::new_in(&base, "bench").await;
    warm_turns(&t, &t.agents(), &f, turns, "root outside any git checkout")
        .await
        .close()
        .await;
}

/// Warm-thread turns against an instant mock: the whole turn time is overhead. Prints
/// the wall-time split and codex's CPU per turn; returns the still-open session.
async fn warm_turns(
    t: &TestRoot,
    agents: &Agents,
    f: &rust_claw::model::FolderName,
    turns: usize,
    layout: &str,
) -> rust_claw::agent::Session {
    let mut s = agents.start(f, false, ContextMode::Group).await.unwrap();
    s.run_turn("warm up").await.unwrap();
    let mut times = Vec::new();
    let (mut before_model, mut after_model) = (Vec::new(), Vec::new());
    let codex_pid = s.pid().expect("codex is running");
    let cpu_before = support::cpu_time(codex_pid).expect("codex's CPU time");
    for i in 0..turns {
        t.mock.push([Reply::text("pong")]);
        let started = Instant::now();
        let out = s.run_turn(&format!("ping {i}")).await.unwrap();
        let done = Instant::now();
        times.push(done - started);
        let arrived = *t.mock.arrivals().last().unwrap();
        before_model.push(arrived - started);
        after_model.push(done - arrived);
        assert_eq!(out.final_message.as_deref(), Some("pong"));
    }
    // CPU is far steadier than wall time on a shared VM: what codex (and the
    // processes it spawns) burns per turn, whichever thread or core it ran on.
    let cpu = support::cpu_time(codex_pid).expect("codex's CPU time") - cpu_before;
    println!("warm turns, {layout}:");
    bench::report("turn overhead (warm thread, instant mock)", times);
    bench::report("  turn/start → model request", before_model);
    bench::report("  model request → turn completed", after_model);
    println!(
        "  codex CPU per turn (its children included): {:.1} ms",
        cpu.as_secs_f64() * 1e3 / turns as f64
    );
    s
}
