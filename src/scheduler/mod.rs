//! The scheduler: fires due tasks on time, exactly once, and hands them to the group
//! queue.
//!
//! An exact timer, not a poll. The loop does one *pass* — claim everything due now
//! (see [`runs::claim_due`]), hand the claimed runs to the [`TaskSink`] — then sleeps
//! until the earliest `next_run` of any active task, which SQLite answers from an
//! index in one lookup however many tasks exist. There are no per-task timers: 10,000
//! tasks cost one timer and one row lookup per pass. The sleep ends early when a
//! [`Topic::Tasks`] arrives on the daemon's broadcast channel — published by the IPC
//! watcher, by in-process callers, and by [`crate::bus::watch`] when a CLI process
//! changed tasks — because the earliest time may have moved.
//!
//! Wake-ups are never lost: the receiver exists for the scheduler's whole life, so a
//! change published while a pass runs is waiting in the channel when the pass ends,
//! and triggers another pass (which re-reads the database, the single source of
//! truth). Many notes in a row collapse into one pass.
//!
//! Exactly once, and what a crash does, are decided in [`runs`]; the rules for users
//! are in `docs/scheduling.md`.

pub(crate) mod clock;
pub mod runs;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use clock::{Clock, ManualClock, SystemClock};
pub use runs::{Completion, DueRun, RunOutcome};

use crate::bus::Topic;
use crate::shutdown::Shutdown;
use crate::store::{SharedStore, StoreError};

/// Where claimed runs go: the group queue (the orchestrator), or a test double.
///
/// `submit` is called on the scheduler's task, in due order, right after the claim
/// committed: it must not block (queue the run and return). From then on the sink
/// owns the run and must finish it with [`complete`] (or [`runs::complete`] inside
/// its own transaction) — `Success`, `Error`, or `Interrupted` on shutdown. Until it
/// does, the task's later occurrences are skipped, never started in parallel. If the
/// process dies first, the next start marks the run `interrupted`.
pub trait TaskSink: Send + Sync + 'static {
    fn submit(&self, run: DueRun);
}

/// How many due tasks one claiming transaction takes; a larger backlog is claimed
/// in several transactions back to back, so no write lock is held for long.
pub(crate) const CLAIM_BATCH: usize = 500;

/// The longest wait before retrying after a store error.
const MAX_BACKOFF: StdDuration = StdDuration::from_secs(30);

/// What the scheduler is doing, for tests, benchmarks and health checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulerStatus {
    /// Start-up recovery is done (runs left `running` by a dead daemon are marked).
    pub(crate) started: bool,
    /// Runs found in flight at start-up and marked `interrupted`.
    pub interrupted_at_start: usize,
    /// Completed passes (claiming transactions).
    pub passes: u64,
    /// Runs handed to the sink since start.
    pub(crate) handed_over: u64,
    /// Occurrences skipped because the previous run was still in flight.
    pub skipped: u64,
    /// Store errors since start (each retried after a back-off).
    pub(crate) errors: u64,
    /// Between passes, sleeping.
    pub waiting: bool,
    /// What the sleep is until (`None`: no active task has a next run).
    pub next_wake: Option<DateTime<Utc>>,
}

/// A scheduler, ready to [`spawn`](Scheduler::spawn).
pub struct Scheduler {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn TaskSink>,
    wake: broadcast::Receiver<Topic>,
}

impl Scheduler {
    /// `wake` must be subscribed before anything can change tasks that this
    /// scheduler should notice (in the daemon: before the IPC watcher and the control
    /// watcher start).
    pub fn new(
        store: SharedStore,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn TaskSink>,
        wake: broadcast::Receiver<Topic>,
    ) -> Scheduler {
        Scheduler {
            store,
            clock,
            sink,
            wake,
        }
    }

    /// Starts the loop on the current tokio runtime. The first thing it does is the
    /// start-up recovery ([`runs::recover_interrupted`]), then a pass that fires
    /// every overdue task once.
    pub fn spawn(self) -> SchedulerHandle {
        self.spawn_until(Shutdown::new())
    }

    /// [`spawn`](Self::spawn), stopping between passes when `stop` fires (the daemon's
    /// shutdown) or when [`SchedulerHandle::shutdown`] is called.
    pub(crate) fn spawn_until(self, stop: Shutdown) -> SchedulerHandle {
        let (status_tx, status_rx) = watch::channel(SchedulerStatus::default());
        let task = tokio::spawn(self.run(status_tx, stop.clone()));
        SchedulerHandle {
            status: status_rx,
            stop,
            task,
        }
    }

    async fn run(self, status: watch::Sender<SchedulerStatus>, stop: Shutdown) {
        let Scheduler {
            store,
            clock,
            sink,
            wake,
        } = self;
        let mut wake = Some(wake);
        let mut backoff = Backoff::default();

        if !recover_at_start(&store, &*clock, &mut backoff, &status, &stop).await {
            return;
        }

        loop {
            let now = clock.now();
            let pass = match store
                .call(move |s| runs::claim_due(s, now, CLAIM_BATCH))
                .await
            {
                Ok(pass) => {
                    backoff = Backoff::default();
                    pass
                }
                Err(e) => {
                    if !retry_after_error(&e, &*clock, &mut backoff, &status, &stop).await {
                        return;
                    }
                    continue;
                }
            };
            let (handed, skipped) = (pass.runs.len() as u64, pass.skipped.len() as u64);
            hand_over(&*sink, pass.runs, pass.skipped.len());
            if pass.more {
                status.send_modify(|s| {
                    s.passes += 1;
                    s.handed_over += handed;
                    s.skipped += skipped;
                });
                // More is due right now: claim the next batch, letting others run first.
                tokio::task::yield_now().await;
                if stop.is_triggered() {
                    return;
                }
                continue;
            }
            status.send_modify(|s| {
                s.passes += 1;
                s.handed_over += handed;
                s.skipped += skipped;
                s.waiting = true;
                s.next_wake = pass.next_wake;
            });
            tracing::debug!(next_wake = ?pass.next_wake, "scheduler sleeping");
            let go_on = wait(&*clock, pass.next_wake, &mut wake, &stop).await;
            status.send_modify(|s| s.waiting = false);
            if !go_on {
                return;
            }
        }
    }
}

/// Start-up recovery ([`runs::recover_interrupted`]), retried until the store
/// answers; false when asked to stop first.
async fn recover_at_start(
    store: &SharedStore,
    clock: &dyn Clock,
    backoff: &mut Backoff,
    status: &watch::Sender<SchedulerStatus>,
    stop: &Shutdown,
) -> bool {
    loop {
        let now = clock.now();
        match store.call(move |s| runs::recover_interrupted(s, now)).await {
            Ok(interrupted) => {
                for i in &interrupted {
                    tracing::warn!(run = i.run_id, task = %i.task_id, status = ?i.task_status,
                        "run was in flight when the daemon stopped: marked interrupted, not re-run");
                }
                status.send_modify(|s| {
                    s.started = true;
                    s.interrupted_at_start = interrupted.len();
                });
                return true;
            }
            Err(e) => {
                if !retry_after_error(&e, clock, backoff, status, stop).await {
                    return false;
                }
            }
        }
    }
}

/// Gives a pass's claimed runs to the sink, in due order.
fn hand_over(sink: &dyn TaskSink, runs: Vec<DueRun>, skipped: usize) {
    // Counted on the blocking run (`task-runs` shows it), not a line each.
    if skipped > 0 {
        tracing::debug!(
            skipped,
            "occurrences skipped: their task's previous run is still in flight"
        );
    }
    for run in runs {
        let late_ms = (run.started_at - run.due_at).num_milliseconds();
        tracing::info!(task = %run.task.id, run = run.run_id, group = %run.task.group_folder,
            due = %run.due_at, late_ms, "task due: handing the run to the queue");
        sink.submit(run);
    }
}

/// Sleeps until `until` or a task change; false when asked to stop.
async fn wait(
    clock: &dyn Clock,
    until: Option<DateTime<Utc>>,
    wake: &mut Option<broadcast::Receiver<Topic>>,
    stop: &Shutdown,
) -> bool {
    let mut sleep = match until {
        Some(t) => clock.sleep_until(t),
        None => Box::pin(std::future::pending()),
    };
    loop {
        let changed = async {
            match wake.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stop.triggered() => return false,
            r = changed => match r {
                Ok(Topic::Tasks) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Everything queued behind this note is covered by the pass that
                    // follows (it reads the database afresh): drop it.
                    if let Some(rx) = wake.as_mut() {
                        while !matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)) {}
                    }
                    return true;
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    tracing::warn!("task change notifications closed; the scheduler now wakes only on its timer");
                    *wake = None;
                }
            },
            _ = &mut sleep => return true,
        }
    }
}

#[derive(Default)]
struct Backoff {
    next: Option<StdDuration>,
}

impl Backoff {
    fn step(&mut self) -> StdDuration {
        let d = self.next.unwrap_or(StdDuration::from_millis(250));
        self.next = Some((d * 2).min(MAX_BACKOFF));
        d
    }
}

/// Logs a store error and waits before the caller retries; false when asked to stop.
async fn retry_after_error(
    e: &StoreError,
    clock: &dyn Clock,
    backoff: &mut Backoff,
    status: &watch::Sender<SchedulerStatus>,
    stop: &Shutdown,
) -> bool {
    let delay = backoff.step();
    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "scheduler store error");
    status.send_modify(|s| s.errors += 1);
    let until = clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
    tokio::select! {
        biased;
        _ = stop.triggered() => false,
        _ = clock.sleep_until(until) => true,
    }
}

/// The running scheduler. Dropping it stops the loop (as does [`shutdown`](Self::shutdown)).
pub struct SchedulerHandle {
    status: watch::Receiver<SchedulerStatus>,
    stop: Shutdown,
    task: JoinHandle<()>,
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

impl SchedulerHandle {
    pub fn status(&self) -> SchedulerStatus {
        self.status.borrow().clone()
    }

    /// Waits until the status satisfies `f`; returns that status.
    pub async fn wait_for(&self, f: impl FnMut(&SchedulerStatus) -> bool) -> SchedulerStatus {
        let mut rx = self.status.clone();
        let found = rx.wait_for(f).await.map(|s| s.clone());
        // The loop ended (the scheduler stopped): report where it stopped.
        found.unwrap_or_else(|_| self.status())
    }

    /// Waits until the scheduler sleeps after a pass that started after now-ish: the
    /// first sleep with more than `passes` passes done.
    pub async fn settled_after(&self, passes: u64) -> SchedulerStatus {
        self.wait_for(|s| s.waiting && s.passes > passes).await
    }

    /// Stops the loop between passes and waits for it (a pass in progress finishes,
    /// and its runs are handed over, first).
    pub async fn shutdown(mut self) {
        self.stop.trigger();
        let _ = (&mut self.task).await;
    }
}

/// Finishes a run from async code: [`runs::complete`] in its own transaction, now.
/// The group queue calls this (or `runs::complete` inside its own transaction) when
/// a run it was handed ends.
pub async fn complete(
    store: &SharedStore,
    run_id: i64,
    outcome: RunOutcome,
) -> Result<Completion, StoreError> {
    store
        .call(move |s| s.write(|tx| runs::complete(tx, run_id, &outcome, Utc::now())))
        .await
}
