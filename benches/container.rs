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

#[path = "support/mod.rs"]
mod bench;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use rust_claw::agent::{Agents, Runner};
use rust_claw::model::ContextMode;
use support::mock_model::Reply;
use support::{TestRoot, folder};

fn main() {
    let full = bench::full_run();
    let rt = bench::runtime();
    rt.block_on(run(if full { 12 } else { 1 }, if full { 30 } else { 1 }));
}

async fn run(starts: usize, turns: usize) {
    let base = bench::outside_checkout_base();
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
    let mut p50 = Vec::new();
    for (k, (name, _)) in both.iter().enumerate() {
        let c = bench::report(
            &format!("cold start → thread ready, {name}"),
            cold[k].clone(),
        );
        bench::report(&format!("close, {name}"), close[k].clone());
        let w = bench::report(&format!("warm turn, {name}"), warm[k].clone());
        p50.push((c.p50, w.p50));
    }
    println!(
        "container cold start p50 {:.0} ms (target ≤ 600 ms); warm turn p50 {:+.1} ms vs host \
         (target within 5 ms)",
        bench::ms(p50[1].0),
        bench::ms(p50[1].1) - bench::ms(p50[0].1),
    );
}
