//! `AGENT_RUNNER=host`: `codex app-server` as a direct child of the daemon.
//!
//! For users without a container runtime. The boundary is codex's own sandbox
//! (`workspace-write`, set in the group's config.toml): the agent writes only its
//! group folder (and, for main, `groups/global/`) and its private temp dir; the
//! network is off for its commands. The child starts from an EMPTY environment plus
//! the few variables codex needs, so the daemon's secrets (the Discord token, ...)
//! never reach it, and nothing secret is ever in its argv.

use std::path::PathBuf;

use tokio::process::{Child, Command};

use super::runner::{
    AgentChild, AgentProcess, BoxFuture, Runner, RunnerError, SpawnSpec, StderrTail, spawn_piped,
};

/// Variables passed through from the daemon's environment when set: locale and the
/// proxy/CA settings codex needs to reach its model API.
const PASS_THROUGH: &[&str] = &[
    "LANG",
    "LC_ALL",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

pub struct HostRunner {
    codex_bin: PathBuf,
}

impl HostRunner {
    /// `codex_bin`: `CODEX_BIN` (a path, or a name looked up on PATH).
    pub fn new(codex_bin: impl Into<PathBuf>) -> HostRunner {
        HostRunner {
            codex_bin: codex_bin.into(),
        }
    }
}

impl Runner for HostRunner {
    fn kind(&self) -> &'static str {
        "host"
    }

    fn spawn(&self, spec: &SpawnSpec) -> Result<AgentProcess, RunnerError> {
        let mut cmd = Command::new(&self.codex_bin);
        cmd.arg("app-server")
            .current_dir(&spec.workdir)
            .env_clear()
            .env("CODEX_HOME", &spec.codex_home)
            .env("HOME", &spec.home_dir)
            .env("TMPDIR", &spec.tmp_dir)
            // codex's own log level on stderr (kept as a tail for error messages).
            .env(
                "RUST_LOG",
                std::env::var("CODEX_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        // The group folder normally lies inside the RustClaw checkout (a git repo).
        // codex 0.169.0 finds that `.git` by itself and, on EVERY turn before calling the
        // model, runs `git rev-parse HEAD`, `git remote -v` and `git status --porcelain`
        // over the whole checkout and sends the host repo's path, commit and remote URLs
        // to the model provider (`x-codex-turn-metadata`). Git must not climb out of the
        // group folder: with the ceiling those probes fail at once (≈ 10 ms of the
        // warm-turn overhead here) and the host's repo stays private. A repository the
        // agent creates inside its own folder keeps working.
        if let Some(parent) = spec.workdir.parent() {
            cmd.env("GIT_CEILING_DIRECTORIES", parent);
        }
        for var in PASS_THROUGH {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd);
        spawn_piped(&mut cmd, &self.codex_bin, &spec.folder, |child, tail| {
            tracing::debug!(group = %spec.folder, pid = child.id(), "codex app-server started");
            Box::new(HostChild { child, tail })
        })
    }
}

/// The kernel kills codex when the daemon dies, however it dies (SIGKILL, a second
/// Ctrl-C that exits at once): no orphaned agent keeps running or holds its thread.
fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, kill).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent died between fork and prctl: nobody would send the signal.
            if nix::unistd::getppid() != parent {
                nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL)?;
            }
            Ok(())
        });
    }
}

struct HostChild {
    child: Child,
    tail: StderrTail,
}

impl AgentChild for HostChild {
    fn id(&self) -> Option<u32> {
        self.child.id()
    }

    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<std::process::ExitStatus>> {
        Box::pin(self.child.wait())
    }

    fn kill(&mut self) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(self.child.kill())
    }

    fn stderr_tail(&self) -> String {
        self.tail.text()
    }
}
