//! The daemon's one shutdown signal.
//!
//! A [`Shutdown`] is a cloneable flag that goes from "running" to "stopping" once and
//! never back. Every long-lived part of the daemon (delivery loop, scheduler, intake,
//! the orchestrator's turns) holds a clone and ends when it fires; the daemon fires it
//! on SIGINT/SIGTERM ([`Shutdown::on_signals`]) or when `chat`'s input ends, then waits
//! for the parts in data-flow order (see `daemon.rs`). Waiting never misses the
//! moment: a waiter that starts after the flag went up returns at once.

use std::sync::Arc;

use tokio::sync::watch;

/// Exit status after a second Ctrl-C/SIGTERM (128 + SIGINT, as shells report it).
pub(crate) const FORCED_EXIT_CODE: i32 = 130;

#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Starts the shutdown (idempotent).
    pub(crate) fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub(crate) fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the shutdown has started (at once if it already has).
    pub async fn triggered(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so `wait_for` cannot fail.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Installs SIGINT and SIGTERM handlers now (so a signal right after start-up is
    /// never lost or fatal): the first signal triggers this shutdown; a second one
    /// while it runs ends the process at once with [`FORCED_EXIT_CODE`] (agent
    /// processes die with it: see `agent::host`). Must be called inside a tokio runtime.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let me = self.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                seen += 1;
                if seen == 1 {
                    tracing::info!("shutting down (signal again to stop at once)");
                    me.trigger();
                } else {
                    eprintln!("stopping at once");
                    std::process::exit(FORCED_EXIT_CODE);
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_before_and_after_the_trigger_both_return() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let early = tokio::spawn({
            let s = s.clone();
            async move { s.triggered().await }
        });
        tokio::task::yield_now().await;
        assert!(!early.is_finished());
        s.trigger();
        early.await.unwrap();
        // Late waiter: returns at once.
        s.triggered().await;
        s.trigger();
        assert!(s.is_triggered());
    }
}
