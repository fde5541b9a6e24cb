//! Where a group's `codex app-server` runs: the [`Runner`] boundary.
//!
//! The session layer needs only a byte pipe to an app-server and a way to stop it, so
//! that is all a runner returns. `host` spawns codex as a child of the daemon;
//! `container` spawns `podman run -i … codex app-server` (or docker) and implements the
//! same trait. The trait is object safe: the orchestrator holds an `Arc<dyn Runner>`
//! chosen once from `AGENT_RUNNER` (`runners::from_config`).

use crate::sync::LockExt as _;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};

use crate::model::FolderName;

/// Everything a runner needs to start one group's agent. Paths are host paths; a
/// container runner maps them to mounts.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub folder: FolderName,
    pub is_main: bool,
    /// `CODEX_HOME`: the group's codex home, prepared by `home::prepare`.
    pub codex_home: PathBuf,
    /// The agent's working directory: `groups/<folder>/`.
    pub workdir: PathBuf,
    /// `groups/global/`: readable by every agent, writable only by main's.
    pub global_dir: PathBuf,
    /// `data/ipc/<folder>/`: where the agent's tools write requests.
    pub ipc_dir: PathBuf,
    /// A private temporary directory (never under /tmp: codex refuses to create its
    /// sandbox helper when `CODEX_HOME` lives under `TMPDIR`).
    pub tmp_dir: PathBuf,
    /// `HOME` for the agent's commands.
    pub home_dir: PathBuf,
    /// Extra variables codex needs (e.g. the API key a custom model provider names in
    /// `env_key`). Values go in the child's environment only, never in argv or logs.
    pub env: Vec<(String, String)>,
    /// The group's stored `container_config` (extra mounts; container runner only).
    pub container_config: Option<serde_json::Value>,
}

/// A running app-server: its stdio and a handle to stop it.
pub struct AgentProcess {
    pub(crate) stdin: Pin<Box<dyn AsyncWrite + Send>>,
    pub(crate) stdout: Pin<Box<dyn AsyncRead + Send>>,
    pub(crate) child: Box<dyn AgentChild>,
}

pub(crate) use crate::sync::BoxFuture;

/// Control over the process behind an [`AgentProcess`].
pub trait AgentChild: Send + Sync {
    /// The OS process id of the local child (the CLI client for containers).
    fn id(&self) -> Option<u32>;
    /// Waits for the process to exit (after its stdin was closed).
    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<std::process::ExitStatus>>;
    /// Stops it now (SIGKILL, or `podman rm -f` for a container) and reaps it.
    fn kill(&mut self) -> BoxFuture<'_, std::io::Result<()>>;
    /// The last lines the process wrote to stderr, for error messages.
    fn stderr_tail(&self) -> String;
}

/// Starts app-servers. Object safe: the orchestrator keeps an `Arc<dyn Runner>`.
pub trait Runner: Send + Sync {
    /// `host` or `container`, for logs.
    fn kind(&self) -> &'static str;
    /// Spawns `codex app-server` for `spec`. Must be called inside a tokio runtime.
    fn spawn(&self, spec: &SpawnSpec) -> Result<AgentProcess, RunnerError>;
    /// Where a host path (the `rust_claw` executable, the group's IPC dir,
    /// `groups/global`) appears to codex, for the paths written into config.toml.
    /// The host runner: unchanged; a container runner: its mount points.
    fn agent_path(&self, host_path: &Path) -> PathBuf {
        host_path.to_owned()
    }
    /// codex's `sandbox_mode` for the group's config.toml: the host runner relies on
    /// codex's own sandbox; a container is itself the boundary.
    fn sandbox_mode(&self) -> &'static str {
        "workspace-write"
    }
    /// Checks, before each agent start, that agents can run at all (container: the
    /// runtime and the image, cheap once it succeeded). The error names the fix.
    fn preflight(&self) -> BoxFuture<'_, Result<(), RunnerError>> {
        Box::pin(async { Ok(()) })
    }
    /// Removes what earlier runs of this installation left behind (containers of a
    /// killed daemon). Called at daemon start and shutdown.
    fn cleanup(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The runner cannot start agents until the owner sets something up (e.g. the
    /// container image is missing): a permanent failure, shown to the chat at once.
    #[error("{message}; {fix}")]
    Setup { message: String, fix: String },
    #[error("{0}")]
    Other(String),
}

impl From<super::container_runtime::ContainerError> for RunnerError {
    /// A missing runtime, image or IPC version is permanent until the owner acts
    /// ([`RunnerError::Setup`]); a runtime that fails otherwise may recover.
    fn from(e: super::container_runtime::ContainerError) -> RunnerError {
        match e.fix() {
            Some(fix) => RunnerError::Setup {
                message: e.problem(),
                fix: fix.to_owned(),
            },
            None => RunnerError::Other(e.to_string()),
        }
    }
}

/// Spawns `cmd` (`program` names it in errors) with its stdio piped: the app-server's
/// pipe is its stdin and stdout, its stderr is drained into a [`StderrTail`], and
/// `wrap` makes the process the runner's own [`AgentChild`].
pub(crate) fn spawn_piped(
    cmd: &mut tokio::process::Command,
    program: &Path,
    folder: &FolderName,
    wrap: impl FnOnce(tokio::process::Child, StderrTail) -> Box<dyn AgentChild>,
) -> Result<AgentProcess, RunnerError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| RunnerError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let tail = StderrTail::spawn(stderr, folder.clone());
    Ok(AgentProcess {
        stdin: Box::pin(stdin),
        stdout: Box::pin(stdout),
        child: wrap(child, tail),
    })
}

/// Lines of stderr kept for error messages.
const TAIL_LINES: usize = 20;

/// Keeps the last lines of a child's stderr and logs each line at debug level, so
/// codex's own diagnostics are one `RUST_LOG=rust_claw=debug` away.
#[derive(Clone, Default)]
pub(crate) struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl StderrTail {
    /// Starts a task draining `stderr` (a child blocks if its stderr pipe fills up).
    pub(crate) fn spawn(
        stderr: impl AsyncRead + Send + Unpin + 'static,
        folder: FolderName,
    ) -> StderrTail {
        let tail = StderrTail::default();
        let lines = tail.lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                        tracing::debug!(group = %folder, "codex: {line}");
                        let mut l = lines.lock_ignoring_poison();
                        if l.len() == TAIL_LINES {
                            l.pop_front();
                        }
                        l.push_back(line);
                    }
                }
            }
        });
        tail
    }

    pub(crate) fn text(&self) -> String {
        let l = self.lines.lock_ignoring_poison();
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}
