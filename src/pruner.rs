//! Keeps the growing tables bounded: one pruning pass ([`store::retention::prune`]) a
//! minute after start, then every [`EVERY`]. A timer, not a poll: between passes the
//! task sleeps, and it ends with the daemon's [`Shutdown`].
//!
//! [`store::retention::prune`]: crate::store::retention::prune

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::shutdown::Shutdown;
use crate::store::SharedStore;
use crate::store::retention::{self, Pruned, Retention};

/// The first pass waits this long after start (start-up has better things to do).
pub(crate) const FIRST: Duration = Duration::from_secs(60);
/// Time between passes.
pub(crate) const EVERY: Duration = Duration::from_secs(6 * 3600);

/// The pruning loop: returns when `stop` fires.
pub(crate) async fn run(store: SharedStore, keep: Retention, stop: Shutdown) {
    let mut ticks = tokio::time::interval_at(Instant::now() + FIRST, EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.triggered() => return,
            _ = ticks.tick() => {}
        }
        let started = std::time::Instant::now();
        let now = Utc::now();
        let mut total = Pruned::default();
        // One short transaction per step: other store calls go in between.
        loop {
            if stop.is_triggered() {
                return;
            }
            match store
                .call(move |s| retention::prune_step(s, &keep, now))
                .await
            {
                Ok(step) => {
                    total.add(&step);
                    if !step.more() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning old rows failed; trying again at the next pass");
                    break;
                }
            }
        }
        // A pass reads through every table: hand back what it cached and allocated.
        let s = store.clone();
        let _ = tokio::task::spawn_blocking(move || s.release_memory()).await;
        if total.total() > 0 {
            tracing::info!(
                messages = total.messages,
                outbox = total.outbox,
                ipc_ledger = total.ipc_ledger,
                task_runs = total.task_runs,
                ms = started.elapsed().as_millis() as u64,
                "pruned old rows"
            );
        }
    }
}
