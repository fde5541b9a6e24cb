//! The scheduler's notion of time, behind a small trait so tests can move it.
//!
//! Task times are wall-clock instants (a cron task fires at 09:00 in its zone), but
//! tokio's timers run on the monotonic clock. [`SystemClock`] bridges the two: it
//! sleeps on a tokio timer for the remaining wall-clock time, in slices of at most
//! [`WALL_CLOCK_RESYNC`], re-reading the wall clock between slices. The monotonic clock
//! stops while the machine is suspended and does not follow NTP steps, so without the
//! slices a task due after a suspend could fire hours late. A slice end reads one
//! clock and goes back to sleep: it does not touch the database or any task, so it
//! is not a poll.
//!
//! [`ManualClock`] is the test clock: time stands still until the test moves it, and
//! moving it wakes every sleeper whose deadline has passed — a week of schedule runs
//! in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

/// A boxed future borrowing the clock.
pub(crate) type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// "What time is it" and "wake me at this time".
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once [`Clock::now`] has reached `deadline` (at once if it already has).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_>;
}

/// The longest single timer [`SystemClock`] arms before re-reading the wall clock.
pub(crate) const WALL_CLOCK_RESYNC: StdDuration = StdDuration::from_secs(30);

/// The real clock: the system's wall clock and tokio timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let left = deadline - Utc::now();
                if left <= Duration::zero() {
                    return;
                }
                // `to_std` cannot fail for a positive duration; tokio rounds the timer
                // up to the next millisecond, so this never wakes early by design —
                // and if it does (a clock step backwards), the loop sleeps again.
                let left = left.to_std().unwrap_or_default().min(WALL_CLOCK_RESYNC);
                tokio::time::sleep(left).await;
            }
        })
    }
}

/// A clock that only moves when told to. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Sets the time (forwards or backwards) and wakes sleepers that are now due.
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_replace(t);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.send_modify(|t| *t += d);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, which outlives this future.
            let _ = rx.wait_for(|t| *t >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test]
    async fn manual_clock_wakes_only_when_moved_past_the_deadline() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = ManualClock::new(t0);
        let deadline = t0 + Duration::seconds(10);
        let mut sleep = clock.sleep_until(deadline);
        let poll_once = |s: &mut Sleep<'_>| {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            s.as_mut().poll(&mut cx).is_ready()
        };
        assert!(!poll_once(&mut sleep));
        clock.advance(Duration::seconds(9));
        assert!(!poll_once(&mut sleep));
        clock.advance(Duration::seconds(1));
        assert!(poll_once(&mut sleep));
        assert_eq!(clock.now(), deadline);
        // A deadline in the past resolves at once.
        assert!(poll_once(&mut clock.sleep_until(t0)));
    }

    #[tokio::test]
    async fn system_clock_sleeps_until_the_wall_clock_deadline() {
        let clock = SystemClock;
        let deadline = clock.now() + Duration::milliseconds(30);
        clock.sleep_until(deadline).await;
        assert!(clock.now() >= deadline);
    }
}
