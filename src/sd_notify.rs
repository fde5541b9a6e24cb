//! systemd's service notification protocol (`sd_notify(3)`), spoken directly: one
//! datagram per message to the unix socket named by `NOTIFY_SOCKET` (a path, or
//! `@name` for an abstract socket). Without `NOTIFY_SOCKET` (not under systemd, or a
//! unit without `Type=notify`) every call does nothing.
//!
//! The daemon sends `READY=1` once it serves (store open, IPC watcher and scheduler
//! up, channels connected, failed, or — Discord unreachable — retrying in the background
//! with a `STATUS=` line saying so), then `WATCHDOG=1` from [`spawn_watchdog`] while
//! the runtime and the store answer, and `STOPPING=1` when it begins to shut down.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use crate::store::SharedStore;

/// A connection to the service manager.
pub(crate) struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, if any.
    pub(crate) fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Notifier::connect(&v.to_string_lossy()).map(Some),
        }
    }

    /// A notifier for the socket `name` (`/run/…` or `@abstract`).
    pub(crate) fn connect(name: &str) -> io::Result<Notifier> {
        let addr = match name.strip_prefix('@') {
            Some(abs) => {
                use std::os::linux::net::SocketAddrExt as _;
                SocketAddr::from_abstract_name(abs.as_bytes())?
            }
            None => SocketAddr::from_pathname(name)?,
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier { socket, addr })
    }

    /// Sends one message (newline-separated `KEY=value` assignments).
    pub(crate) fn send(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }
}

/// Sends `state` to the service manager, if there is one; failures are logged (a
/// daemon that cannot reach systemd still serves).
pub(crate) fn notify(state: &str) {
    match Notifier::from_env() {
        Ok(Some(n)) => {
            if let Err(e) = n.send(state) {
                tracing::warn!(error = %e, state, "cannot notify systemd");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "NOTIFY_SOCKET is unusable"),
    }
}

/// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`), if it is
/// meant for this process (`WATCHDOG_PID` absent or ours).
pub(crate) fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog every half interval while both the async runtime and the store
/// answer: a ping runs a trivial query through the same blocking pool and store lock
/// every part of the daemon uses, so a deadlock or a wedged runtime stops the pings
/// and systemd restarts the daemon. Does nothing without a watchdog.
pub(crate) fn spawn_watchdog(store: SharedStore) -> Option<tokio::task::JoinHandle<()>> {
    let interval = watchdog_interval()?;
    let notifier = match Notifier::from_env() {
        Ok(Some(n)) => n,
        _ => return None,
    };
    let period = interval / 2;
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let probe = store.call(|s| {
                s.conn()
                    .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                    .is_ok()
            });
            match tokio::time::timeout(period, probe).await {
                Ok(true) => {
                    if let Err(e) = notifier.send("WATCHDOG=1") {
                        tracing::warn!(error = %e, "cannot ping the systemd watchdog");
                    }
                }
                Ok(false) => {
                    tracing::error!("the store does not answer; withholding the watchdog ping")
                }
                Err(_) => tracing::error!(
                    "the store took longer than half the watchdog interval; withholding the ping"
                ),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reaches_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        Notifier::connect(path.to_str().unwrap())
            .unwrap()
            .send("READY=1\nSTATUS=serving")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");

        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("rust-claw-test-{}", std::process::id());
        let abs = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&abs).unwrap();
        Notifier::connect(&format!("@{name}"))
            .unwrap()
            .send("WATCHDOG=1")
            .unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
