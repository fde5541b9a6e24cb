//! Containers vs host, side by side in one run: the real codex, in the real agent image
//! (podman, `--network host` to reach the mock model) and on the host.
//!
//!   cargo bench --bench container      full run (≥ 10 samples each), prints the numbers
//!   cargo test  --bench container      a smoke run (one sample each)
//!
//! - cold start: `Agents::start` of an isolated session — codex home prepared, runtime
//!   started (`podman run -i` / a child process), `initialize`, `thread/start` — i.e.
//!   container start → codex initialised → thread ready. Then `close` (stdin closed →
//!   the process, and for a container the container, gone).
//! - warm turn: a turn on a warm thread against a mock that answers at once, so the
//!   whole turn is overhead; host and container turns alternate so both see the same
//!   machine load. The root lies outside any git checkout for both (codex runs no git
//!   probes then: see benches/agent.rs), so only the runner differs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_claw::agent::{Agents, Runner};
use rust_claw::model::ContextMode;
use support::mock_model::Reply;
use support::{TestRoot, folder};

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn line(name: &str, xs: &[Duration]) {
    let mut s = xs.to_vec();
    s.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<36} n={:<3} min {:>7.1} ms  p50 {:>7.1} ms  max {:>7.1} ms",
        s.len(),
        ms(s[0]),
        ms(s[s.len() / 2]),
        ms(s[s.len() - 1])
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(if full { 12 } else { 1 }, if full { 30 } else { 1 }));
}

async fn run(starts: usize, turns: usize) {
    let base = bench_base();
    let t = TestRoot::new_in(&base, "ctr-bench").await;
    let container: Arc<dyn Runner> = support::containers::runner(&t, None).await;
    let host = t.agents();
    let boxed = Agents::new(
        t.paths.clone(),
        t.settings.clone(),
        container,
        t.store.clone(),
    );
    let both: [(&str, &Agents); 2] = [("host", &host), ("container", &boxed)];

    let mut cold = [Vec::new(), Vec::new()];
    let mut close = [Vec::new(), Vec::new()];
    for i in 0..starts {
        for (k, (_, agents)) in both.iter().enumerate() {
            let f = folder(&format!("cold-{k}-{i}"));
            let started = Instant::now();
            let s = agents
                .start(&f, false, ContextMode::Isolated)
                .await
                .unwrap();
            cold[k].push(started.elapsed());
            let closing = Instant::now();
            s.close().await;
            close[k].push(closing.elapsed());
        }
    }

    let f = [folder("warm-host"), folder("warm-container")];
    let mut sessions = Vec::new();
    for (k, (_, agents)) in both.iter().enumerate() {
        let mut s = agents
            .start(&f[k], false, ContextMode::Group)
            .await
            .unwrap();
        s.run_turn("warm up").await.unwrap();
        sessions.push(s);
    }
    let mut warm = [Vec::new(), Vec::new()];
    for i in 0..turns {
        for (k, s) in sessions.iter_mut().enumerate() {
            t.mock.push([Reply::text("pong")]);
            let started = Instant::now();
            let out = s.run_turn(&format!("ping {i}")).await.unwrap();
            warm[k].push(started.elapsed());
            assert_eq!(out.final_message.as_deref(), Some("pong"));
        }
    }
    for s in sessions {
        s.close().await;
    }

    println!(
        "containers vs host (podman, image {}):",
        support::containers::image()
    );
    for (k, (name, _)) in both.iter().enumerate() {
        line(&format!("cold start → thread ready, {name}"), &cold[k]);
        line(&format!("close, {name}"), &close[k]);
        line(&format!("warm turn, {name}"), &warm[k]);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "container cold start p50 {:.0} ms (target ≤ 600 ms); warm turn p50 {:+.1} ms vs host \
         (target within 5 ms)",
        ms(median(cold[1].clone())),
        ms(median(warm[1].clone())) - ms(median(warm[0].clone())),
    );
}

/// Outside the checkout and outside $TMPDIR, as in benches/agent.rs.
fn bench_base() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let base = std::path::Path::new(&home).join(".cache/rust_claw/bench-homes");
    std::fs::create_dir_all(&base).unwrap();
    base
}
