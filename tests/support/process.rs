//! The `rust_claw` binary as an owner runs it, from async tests: admin verbs, and
//! `rust_claw run` as a child in its own process group with its log collected — on a
//! root whose `.env` is the whole configuration (the test's own environment's RustClaw
//! variables are removed) and with an empty home of its own (no allowlist of this
//! machine's owner is read).

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::Notify;

const BIN: &str = env!("CARGO_BIN_EXE_rust_claw");

/// `rust_claw run` in its own process group, its log collected.
pub struct Daemon {
    child: tokio::process::Child,
    log: Arc<(Mutex<Vec<String>>, Notify)>,
}

impl Daemon {
    pub async fn start(root: &Path) -> Daemon {
        Daemon::start_with_env(root, &[]).await
    }

    /// [`Daemon::start`] with more environment variables (`NOTIFY_SOCKET`, ...).
    pub async fn start_with_env(root: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = command(root)
            .arg("run")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new((Mutex::new(Vec::new()), Notify::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.0.lock().unwrap().push(line);
                sink.1.notify_waiters();
            }
        });
        let d = Daemon { child, log };
        d.wait_log("rust_claw daemon started", 60).await;
        d
    }

    pub fn log_text(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    pub async fn wait_log(&self, needle: &str, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let changed = self.log.1.notified();
            if self
                .log
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "no log line with {needle:?} within {secs} s; the daemon said:\n{}",
                    self.log_text()
                );
            }
        }
    }

    /// SIGKILL of the daemon and its process group, as a power cut would.
    pub async fn kill9(mut self) {
        let pg = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL).unwrap();
        self.child.wait().await.unwrap();
    }

    /// SIGTERM; the daemon must exit 0 within 15 s.
    pub async fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("the daemon did not stop within 15 s of SIGTERM")
            .unwrap();
        // The log reader sees EOF right after the exit.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while !self.log_text().contains("stopped") {
                self.log.1.notified().await;
            }
        })
        .await;
        assert!(status.success(), "{status}: {}", self.log_text());
        self.log_text()
    }
}

/// The binary on `root`, with every RustClaw variable of the test's own environment
/// removed: the configuration is the root's `.env` only.
pub fn command(root: &Path) -> tokio::process::Command {
    let _ = std::fs::create_dir_all(root.join("home"));
    let mut c = tokio::process::Command::new(BIN);
    for (var, _) in rust_claw::config::VARIABLES {
        c.env_remove(var);
    }
    c.env_remove("RUST_CLAW_ROOT")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        // Neither allowlist of this machine's owner (senders: ~/.config/rust-claw/,
        // mounts: $XDG_CONFIG_HOME/rust-claw/) is read: the root's own, empty home.
        .env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("home/.config"))
        .env("RUST_LOG", "warn")
        .arg("--root")
        .arg(root);
    c
}

pub async fn cli(root: &Path, args: &[&str]) -> Output {
    command(root).args(args).output().await.unwrap()
}

pub async fn cli_ok(root: &Path, args: &[&str]) -> String {
    let out = cli(root, args).await;
    assert!(
        out.status.success(),
        "rust_claw {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub async fn cli_json(root: &Path, args: &[&str]) -> Value {
    let out = cli_ok(root, args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}
