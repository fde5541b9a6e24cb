//! Agent sessions: one live `codex app-server` per group, on one thread.
//!
//! [`Agents::start`] prepares the group's codex home (config, login, memory, skills),
//! spawns codex through the configured [`Runner`], initialises it and opens the
//! thread: for `context_mode=group` the group's stored thread is resumed (or, if
//! codex can no longer resume it, replaced by a fresh one — logged); isolated runs get
//! an ephemeral thread and never touch the stored one. The [`Session`] then runs turns
//! ([`Session::start_turn`]) until [`Session::close`], which closes codex's stdin (it
//! exits in well under 0.2 s) and syncs the login back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::auth;
use super::codex::CodexClient;
pub(crate) use super::error::AgentError;
use super::home::{self, HomeConfig, HomeError};
use super::protocol::{ApprovalDecision, ThreadParams, UserInput};
use super::rpc::{Notification, RpcError};
use super::runner::{AgentChild, AgentProcess, Runner, SpawnSpec};
use super::turn::{self, ActiveTurn, SessionHandle, TurnHost, TurnOutcome};
use crate::config::Config;
use crate::model::{ContextMode, FolderName};
use crate::paths::Paths;
use crate::store::{SharedStore, sessions, skills};
use crate::sync::BoxFuture;

/// How long codex may take to answer a handshake or thread request (it starts MCP
/// servers while opening a thread).
const RPC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closed codex may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// How often (every 100 ms) to retry a thread another codex process still holds.
const WRITER_RETRIES: u32 = 30;

/// How agents are run, from the daemon's configuration.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// The `rust_claw` executable codex starts as the `agent-tools` MCP server.
    pub tools_exe: PathBuf,
    /// `CODEX_AUTH_DIR`: where the owner's `auth.json` lives.
    pub auth_dir: PathBuf,
    /// `CODEX_CONFIG`: a TOML fragment merged into every group's config.toml.
    pub codex_config: Option<PathBuf>,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    /// codex's `approval_policy` (when codex asks): `never` by default — the sandbox
    /// is the boundary and nobody is there to answer.
    pub approval_policy: String,
    /// How we answer when codex does ask.
    pub approvals: ApprovalDecision,
    /// The daemon's TIMEZONE, handed to the agent's tools.
    pub timezone: Option<String>,
    /// `AGENT_TURN_TIMEOUT_MS`: a longer turn is interrupted, then its agent stopped.
    pub turn_timeout: Duration,
}

impl AgentSettings {
    pub(crate) fn from_config(config: &Config) -> std::io::Result<AgentSettings> {
        Ok(AgentSettings {
            tools_exe: std::env::current_exe()?,
            auth_dir: config.codex_auth_dir.clone(),
            codex_config: config.codex_config.clone(),
            model: config.codex_model.clone(),
            reasoning_effort: config.codex_reasoning_effort.clone(),
            approval_policy: "never".to_owned(),
            approvals: ApprovalDecision::Decline,
            timezone: Some(config.timezone.name().to_owned()),
            turn_timeout: Duration::from_millis(config.agent_turn_timeout_ms),
        })
    }
}

/// Starts sessions. One per daemon; cheap to share behind an `Arc`.
pub struct Agents {
    paths: Paths,
    settings: AgentSettings,
    runner: Arc<dyn Runner>,
    store: SharedStore,
    /// Resume attempts refused because a previous codex still held the thread.
    writer_waits: std::sync::atomic::AtomicU64,
}

impl Agents {
    pub fn new(
        paths: Paths,
        settings: AgentSettings,
        runner: Arc<dyn Runner>,
        store: SharedStore,
    ) -> Agents {
        Agents {
            paths,
            settings,
            runner,
            store,
            writer_waits: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many resume attempts found the thread still held by a previous codex
    /// process of the group ("active writer") and waited for it.
    pub fn writer_waits(&self) -> u64 {
        self.writer_waits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts codex for `folder` and opens its thread (see the module docs).
    pub async fn start(
        &self,
        folder: &FolderName,
        is_main: bool,
        mode: ContextMode,
    ) -> Result<Session, AgentError> {
        // Runtime and image first: without them nothing else is worth doing.
        self.runner.preflight().await?;
        let f = folder.clone();
        let stored = self
            .store
            .call(move |s| {
                let group = crate::store::groups::get_by_folder(s.conn(), &f)?;
                let (chat_jid, container_config) = match group {
                    Some(g) => (Some(g.jid.to_string()), g.container_config),
                    None => (None, None),
                };
                Ok::<_, crate::store::StoreError>(StoredGroup {
                    enabled_skills: skills::enabled(s.conn(), &f)?,
                    chat_jid,
                    container_config,
                })
            })
            .await?;
        let prepared = {
            let (paths, settings, folder) =
                (self.paths.clone(), self.settings.clone(), folder.clone());
            let runner = self.runner.clone();
            tokio::task::spawn_blocking(move || {
                prepare(&paths, &settings, runner.as_ref(), &folder, is_main, stored)
            })
            .await
            .expect("prepare panicked")?
        };
        let spec = prepared.spec;
        let AgentProcess {
            stdin,
            stdout,
            child,
        } = self.runner.spawn(&spec)?;
        let (client, notes) = CodexClient::connect(stdout, stdin, self.settings.approvals);
        let mut session = Session {
            handle: SessionHandle::new(client.clone()),
            notes,
            child: Some(child),
            folder: folder.clone(),
            group_dir: spec.workdir.clone(),
            mode,
            auth_dir: self.settings.auth_dir.clone(),
            codex_home: spec.codex_home.clone(),
            login_required: prepared.login_required,
            turn_timeout: self.settings.turn_timeout,
        };
        match self.open_thread(&mut session).await {
            Ok(()) => Ok(session),
            Err(e) => {
                session.kill().await;
                if e.to_string().contains(STALE_BACKFILL) {
                    reset_codex_state_db(&session.codex_home);
                }
                Err(e)
            }
        }
    }

    async fn open_thread(&self, session: &mut Session) -> Result<(), AgentError> {
        let client = session.handle.client.clone();
        timed(session, "initialize", client.initialize()).await?;
        // No `cwd`: the runner started codex in the group folder (a host path here, a
        // mount point in a container), and codex uses its own working directory.
        let base = ThreadParams::default();
        let folder = session.folder.clone();
        let thread_id = match session.mode {
            ContextMode::Isolated => {
                let params = ThreadParams {
                    ephemeral: Some(true),
                    ..base
                };
                timed(session, "thread/start", client.thread_start(&params))
                    .await?
                    .thread
                    .id
            }
            ContextMode::Group => {
                let f = folder.clone();
                let stored = self
                    .store
                    .call(move |s| sessions::get(s.conn(), &f))
                    .await?;
                let resumed = match stored {
                    None => None,
                    Some(id) => {
                        let params = ThreadParams {
                            thread_id: Some(id.clone()),
                            exclude_turns: Some(true),
                            ..base.clone()
                        };
                        resume(session, &params, &self.writer_waits).await?
                    }
                };
                match resumed {
                    Some(id) => id,
                    None => {
                        let id = timed(session, "thread/start", client.thread_start(&base))
                            .await?
                            .thread
                            .id;
                        let (f, tid) = (folder.clone(), id.clone());
                        self.store
                            .call(move |s| sessions::set(s.conn(), &f, &tid, chrono::Utc::now()))
                            .await?;
                        id
                    }
                }
            }
        };
        tracing::info!(group = %folder, thread = %thread_id, mode = %session.mode, "agent session ready");
        session.handle.thread_id = Arc::from(thread_id);
        Ok(())
    }
}

/// Resumes the stored thread. `Ok(None)` when codex cannot resume it (gone,
/// corrupt): the caller starts a fresh one. A thread still held by a previous codex
/// process of this group ("active writer") is waited for, bounded, and never replaced:
/// replacing it would silently drop the group's context.
async fn resume(
    session: &Session,
    params: &ThreadParams,
    waits: &std::sync::atomic::AtomicU64,
) -> Result<Option<String>, AgentError> {
    let client = session.handle.client.clone();
    let id = params.thread_id.as_deref().unwrap_or_default();
    let mut attempt = 0;
    loop {
        match timed(session, "thread/resume", client.thread_resume(params)).await {
            Ok(r) => return Ok(Some(r.thread.id)),
            Err(AgentError::Rpc { source, .. }) if source.to_string().contains("active writer") => {
                attempt += 1;
                waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if attempt >= WRITER_RETRIES {
                    return Err(AgentError::rpc(
                        "thread/resume",
                        source,
                        session.stderr_tail(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e @ AgentError::Timeout { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(group = %session.folder, thread = %id, error = %e,
                    "the group's thread cannot be resumed; starting a fresh one");
                return Ok(None);
            }
        }
    }
}

async fn timed<T>(
    session: &Session,
    step: &'static str,
    fut: impl Future<Output = Result<T, RpcError>>,
) -> Result<T, AgentError> {
    match tokio::time::timeout(RPC_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(AgentError::rpc(step, e, session.stderr_tail())),
        Err(_) => Err(AgentError::Timeout {
            step,
            secs: RPC_TIMEOUT.as_secs(),
        }),
    }
}

/// What a start reads about the group from the store.
struct StoredGroup {
    enabled_skills: Vec<String>,
    chat_jid: Option<String>,
    /// Extra mounts (container runner).
    container_config: Option<serde_json::Value>,
}

struct Prepared {
    spec: SpawnSpec,
    login_required: bool,
}

/// The blocking part of a start: codex home, login, spawn spec.
fn prepare(
    paths: &Paths,
    settings: &AgentSettings,
    runner: &dyn Runner,
    folder: &FolderName,
    is_main: bool,
    stored: StoredGroup,
) -> Result<Prepared, AgentError> {
    let StoredGroup {
        enabled_skills,
        chat_jid,
        container_config,
    } = stored;
    let fragment = match &settings.codex_config {
        Some(p) => Some(home::load_fragment(p)?),
        None => None,
    };
    let writable_roots = if is_main {
        vec![runner.agent_path(&paths.global_dir())]
    } else {
        Vec::new()
    };
    if is_main {
        std::fs::create_dir_all(paths.global_dir()).map_err(|source| HomeError::Io {
            path: paths.global_dir(),
            source,
        })?;
    }
    let config = HomeConfig {
        model: settings.model.clone(),
        reasoning_effort: settings.reasoning_effort.clone(),
        approval_policy: settings.approval_policy.clone(),
        sandbox_mode: runner.sandbox_mode().to_owned(),
        tools_exe: runner.agent_path(&settings.tools_exe),
        ipc_dir: runner.agent_path(&paths.ipc_dir(folder)),
        chat_jid,
        timezone: settings.timezone.clone(),
        writable_roots,
        user_fragment: fragment.clone(),
    };
    home::prepare(paths, folder, &config, &enabled_skills)?;
    let codex_home = paths.codex_home(folder);
    let login_required = home::uses_openai_login(fragment.as_ref());
    auth::sync(&settings.auth_dir, &codex_home, login_required)?;
    let env = home::provider_env_keys(fragment.as_ref())
        .into_iter()
        .filter_map(|k| std::env::var(&k).ok().map(|v| (k, v)))
        .collect();
    Ok(Prepared {
        spec: SpawnSpec {
            folder: folder.clone(),
            is_main,
            codex_home,
            workdir: paths.group_dir(folder),
            global_dir: paths.global_dir(),
            ipc_dir: paths.ipc_dir(folder),
            tmp_dir: paths.agent_tmp_dir(folder),
            home_dir: paths.agent_home_dir(folder),
            env,
            container_config,
        },
        login_required,
    })
}

/// A live agent: one codex process, one thread.
pub struct Session {
    pub(super) handle: SessionHandle,
    pub(super) notes: mpsc::UnboundedReceiver<Notification>,
    child: Option<Box<dyn AgentChild>>,
    pub(super) folder: FolderName,
    /// The group's folder on this host (images attached to messages are read from it).
    group_dir: PathBuf,
    mode: ContextMode,
    auth_dir: PathBuf,
    codex_home: PathBuf,
    login_required: bool,
    pub(super) turn_timeout: Duration,
}

impl Session {
    /// A cloneable handle for steering or interrupting from other tasks.
    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    pub fn thread_id(&self) -> &str {
        self.handle.thread_id()
    }

    /// The OS pid of the agent process (host runner) or its container client.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Starts a turn with `prompt`. If an earlier turn was abandoned while still
    /// running, it is interrupted first.
    pub async fn start_turn(&mut self, prompt: &str) -> Result<ActiveTurn<'_>, AgentError> {
        if let Some(old) = self.handle.active_turn() {
            turn::abandon(self, &old).await;
        }
        let mut input = UserInput::text(prompt);
        if !super::images::referenced(prompt).is_empty() {
            let (dir, p) = (self.group_dir.clone(), prompt.to_owned());
            let urls = tokio::task::spawn_blocking(move || super::images::load(&dir, &p))
                .await
                .unwrap_or_default();
            input.extend(urls.into_iter().map(|url| UserInput::Image { url }));
        }
        let turn = self
            .handle
            .client
            .turn_start(&self.handle.thread_id, input)
            .await
            .map_err(|e| AgentError::rpc("turn/start", e, self.stderr_tail()))?;
        Ok(ActiveTurn::begin(self, turn.id))
    }

    /// Runs a whole turn and returns its outcome (messages are not streamed).
    pub async fn run_turn(&mut self, prompt: &str) -> Result<TurnOutcome, AgentError> {
        self.start_turn(prompt).await?.finish().await
    }

    /// Ends the session: closes codex's stdin, waits briefly for it to exit (kills it
    /// otherwise) and syncs a refreshed login back to the owner.
    pub async fn close(mut self) {
        self.handle.client.close();
        if let Some(mut child) = self.child.take() {
            match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(group = %self.folder, "codex did not exit after stdin closed; killing it");
                    let _ = child.kill().await;
                }
            }
        }
        self.sync_auth().await;
    }

    /// Kills the process at once (failed start, shutdown deadline).
    pub(crate) async fn kill(&mut self) {
        self.handle.client.close();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    pub(super) fn stderr_tail(&self) -> String {
        match self.child.as_ref().map(|c| c.stderr_tail()) {
            Some(t) if !t.is_empty() => format!("\ncodex stderr:\n{t}"),
            _ => String::new(),
        }
    }

    /// Newest login wins, in both directions. Failures are logged: the turn's result
    /// matters more, and the next start syncs again.
    pub(super) async fn sync_auth(&self) {
        let (dir, home, required) = (
            self.auth_dir.clone(),
            self.codex_home.clone(),
            self.login_required,
        );
        let folder = self.folder.clone();
        let res = tokio::task::spawn_blocking(move || auth::sync(&dir, &home, required)).await;
        match res {
            Ok(Ok(auth::SyncOutcome::ToOwner)) => {
                tracing::info!(group = %folder, "codex refreshed the login; saved for every group")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(group = %folder, error = %e, "login sync failed"),
            Err(e) => tracing::warn!(group = %folder, error = %e, "login sync panicked"),
        }
    }
}

/// What codex 0.169.0 says when a previous codex was killed while it first built its
/// state database: every later start waits 30 s for that backfill and fails.
const STALE_BACKFILL: &str = "state db backfill";

/// Removes codex's state database (`state_*.sqlite*`, an index codex rebuilds from its
/// rollout files) so the next start backfills it afresh. The codex home is the agent's
/// to write: it is reached by descriptor from its owner-made parent, as `home.rs` does,
/// and its entries are unlinked with `*at()` calls (never followed).
fn reset_codex_state_db(codex_home: &std::path::Path) {
    use crate::safe_dir::{Lookup, SafeDir};
    let (Some(parent), Some(name)) = (codex_home.parent(), codex_home.file_name()) else {
        return;
    };
    let Ok(Lookup::Dir(home)) = SafeDir::open_trusted(parent, false).and_then(|p| p.open_dir(name))
    else {
        return;
    };
    for (entry, _) in home.entries().unwrap_or_default() {
        let text = entry.to_string_lossy();
        if text.starts_with("state_") && text.contains(".sqlite") {
            home.remove(&entry);
        }
    }
    tracing::warn!(home = %codex_home.display(),
        "codex's state database was left half-built by a killed codex; removed it so the next start rebuilds it");
}

impl TurnHost for Session {
    fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    fn notes(&mut self) -> &mut mpsc::UnboundedReceiver<Notification> {
        &mut self.notes
    }

    fn folder(&self) -> &FolderName {
        &self.folder
    }

    fn turn_timeout(&self) -> Duration {
        self.turn_timeout
    }

    fn stderr_tail(&self) -> String {
        Session::stderr_tail(self)
    }

    fn sync_auth(&self) -> BoxFuture<'_, ()> {
        Box::pin(Session::sync_auth(self))
    }

    fn kill(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(Session::kill(self))
    }
}
