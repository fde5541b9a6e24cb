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

/// A child process (`rust_claw run`, `chat`) as a blocking test watches it: its stderr
/// lines arrive on a channel as they are written; killed when dropped.
pub struct LoggedChild {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl LoggedChild {
    /// Spawns `cmd` with its stderr piped and read line by line.
    pub fn spawn(mut cmd: std::process::Command) -> LoggedChild {
        use std::io::BufRead as _;
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LoggedChild {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle` and returns it; fails with every line seen.
    pub fn expect(&mut self, needle: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line containing {needle:?} within {within:?}; the process said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Sends `sig` and waits for the exit, failing after `within`.
    pub fn signal_and_wait(
        &mut self,
        sig: nix::sys::signal::Signal,
        within: Duration,
    ) -> std::process::ExitStatus {
        self.signal(sig);
        wait_timeout(&mut self.child, within)
    }

    /// Every line read so far and those still arriving (until 2 s pass without one).
    pub fn take_lines(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit; kills it and fails after `within`.
pub fn wait_timeout(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
