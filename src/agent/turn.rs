//! A running turn, and the handle that steers or interrupts it from another task.
//!
//! [`ActiveTurn`] borrows the session mutably and yields [`TurnEvent`]s as codex
//! reports them — each complete agent message (for the chat) and the deltas (for
//! streaming) — then ends with a [`TurnOutcome`] or an error. Meanwhile any task
//! holding a [`SessionHandle`] may `steer` (add input to the running turn) or
//! `interrupt` it.
//!
//! A turn reaches its session only through [`TurnHost`], which `session.rs` implements:
//! the session starts turns, and turns depend on that seam, not on the session.

use crate::sync::LockExt as _;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::codex::{CodexClient, CodexEvent};
use super::error::{AgentError, CodexErrorInfo};
use super::protocol::{TurnError, TurnStatus, UserInput};
use super::rpc::Notification;
use super::text::strip_internal;
use crate::model::FolderName;
use crate::sync::BoxFuture;

/// How long a timed-out turn may take to end after `turn/interrupt`.
const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an abandoned turn (nobody reads it any more) may take to end.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What a running turn needs from the session it runs in.
pub(super) trait TurnHost: Send {
    /// The handle of the session (thread id, the running turn's id).
    fn handle(&self) -> &SessionHandle;
    /// codex's notifications, in order.
    fn notes(&mut self) -> &mut mpsc::UnboundedReceiver<Notification>;
    fn folder(&self) -> &FolderName;
    /// `AGENT_TURN_TIMEOUT_MS`.
    fn turn_timeout(&self) -> std::time::Duration;
    /// The end of codex's stderr (for an agent that exited).
    fn stderr_tail(&self) -> String;
    /// Copies a refreshed login back to the owner's codex home.
    fn sync_auth(&self) -> BoxFuture<'_, ()>;
    /// Stops the agent (for a container: stops and removes it).
    fn kill(&mut self) -> BoxFuture<'_, ()>;
}

/// What the orchestrator sees during a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// A streamed piece of an agent message (raw: `<internal>` not stripped).
    Delta { item_id: String, delta: String },
    /// A complete agent message. `text` is what users may see (internal spans
    /// stripped, possibly empty); `raw` is what the model wrote.
    Message {
        item_id: String,
        text: String,
        raw: String,
    },
    /// The agent finished something else (a command, a tool call): a sign of life.
    Activity { summary: String },
}

/// How a turn ended (a failed turn is an `Err`, never an outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEnd {
    Completed,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnOutcome {
    pub(crate) turn_id: String,
    pub end: TurnEnd,
    /// The user-visible text of every non-empty agent message, in order.
    pub messages: Vec<String>,
    /// The user-visible text of the last agent message, if any was non-empty.
    pub final_message: Option<String>,
}

/// Cloneable: steer or interrupt the session's running turn from any task.
#[derive(Clone)]
pub struct SessionHandle {
    pub(super) client: CodexClient,
    pub(super) thread_id: Arc<str>,
    /// The running turn's id. Only this file writes it: set when a turn begins
    /// ([`ActiveTurn::begin`]), cleared when it ends, times out or is abandoned.
    active: Arc<Mutex<Option<String>>>,
}

impl SessionHandle {
    /// A handle for a session whose thread is not open yet (no turn running).
    pub(super) fn new(client: CodexClient) -> SessionHandle {
        SessionHandle {
            client,
            thread_id: Arc::from(""),
            active: Arc::new(Mutex::new(None)),
        }
    }

    pub(crate) fn thread_id(&self) -> &str {
        &self.thread_id
    }

    /// The id of the running turn, if one is running.
    pub(crate) fn active_turn(&self) -> Option<String> {
        self.active.lock_ignoring_poison().clone()
    }

    /// Adds `text` to the running turn. [`AgentError::NoActiveTurn`] (or codex
    /// refusing because the turn just ended) means: deliver it with the next turn.
    pub async fn steer(&self, text: &str) -> Result<(), AgentError> {
        let turn = self.active_turn().ok_or(AgentError::NoActiveTurn)?;
        self.client
            .turn_steer(&self.thread_id, &turn, UserInput::text(text))
            .await
            .map_err(|e| AgentError::rpc("turn/steer", e, String::new()))
    }

    /// Asks codex to stop the running turn, which then ends as
    /// [`TurnEnd::Interrupted`]. `false` if no turn was running.
    pub async fn interrupt(&self) -> Result<bool, AgentError> {
        let Some(turn) = self.active_turn() else {
            return Ok(false);
        };
        self.client
            .turn_interrupt(&self.thread_id, &turn)
            .await
            .map_err(|e| AgentError::rpc("turn/interrupt", e, String::new()))?;
        Ok(true)
    }

    fn set_active(&self, turn: Option<String>) {
        *self.active.lock_ignoring_poison() = turn;
    }
}

/// How a completed turn ended: a failed one becomes [`AgentError::TurnFailed`] with
/// codex's message, or that of the last non-retried `error` notification (`earlier`),
/// which may also be the only one carrying the failure's classification.
fn how_it_ended(
    status: TurnStatus,
    error: Option<TurnError>,
    earlier: Option<(String, Option<CodexErrorInfo>)>,
) -> Result<TurnEnd, AgentError> {
    match status {
        TurnStatus::Completed => Ok(TurnEnd::Completed),
        TurnStatus::Interrupted => Ok(TurnEnd::Interrupted),
        TurnStatus::Failed | TurnStatus::InProgress => {
            let (message, info) = error
                .map(|e| {
                    let info = CodexErrorInfo::from_json(e.codex_error_info.as_ref());
                    let message = match e.additional_details {
                        Some(d) if !d.is_empty() => format!("{} ({d})", e.message),
                        _ => e.message,
                    };
                    (message, info)
                })
                .or(earlier.clone())
                .unwrap_or_else(|| {
                    (
                        "codex reported a failed turn without a message".into(),
                        None,
                    )
                });
            let info = info.or(earlier.and_then(|(_, info)| info));
            Err(AgentError::TurnFailed { message, info })
        }
    }
}

/// A turn in progress. Drive it to its end with [`ActiveTurn::next_event`] until
/// `None`, then [`ActiveTurn::finish`] (or call `finish` directly to skip events).
pub struct ActiveTurn<'a> {
    /// `AGENT_TURN_TIMEOUT_MS` after the turn started.
    deadline: tokio::time::Instant,
    session: &'a mut dyn TurnHost,
    turn_id: String,
    messages: Vec<String>,
    last_error: Option<(String, Option<CodexErrorInfo>)>,
    outcome: Option<Result<TurnOutcome, AgentError>>,
}

impl<'a> ActiveTurn<'a> {
    /// The turn `turn_id` codex just started in `session`: marks it running.
    pub(super) fn begin(session: &'a mut dyn TurnHost, turn_id: String) -> ActiveTurn<'a> {
        session.handle().set_active(Some(turn_id.clone()));
        ActiveTurn {
            deadline: tokio::time::Instant::now() + session.turn_timeout(),
            session,
            turn_id,
            messages: Vec::new(),
            last_error: None,
            outcome: None,
        }
    }

    /// The next event of this turn; `None` once it has ended.
    pub async fn next_event(&mut self) -> Option<TurnEvent> {
        if self.outcome.is_some() {
            return None;
        }
        loop {
            let next = tokio::time::timeout_at(self.deadline, self.session.notes().recv()).await;
            let Ok(next) = next else {
                self.time_out().await;
                return None;
            };
            let Some(note) = next else {
                self.session.handle().set_active(None);
                self.outcome = Some(Err(AgentError::Exited {
                    stderr: self.session.stderr_tail(),
                }));
                return None;
            };
            let Some(event) = CodexEvent::decode(&note, &self.session.handle().thread_id) else {
                continue;
            };
            if event.turn_id() != self.turn_id {
                continue; // a stale event of an earlier, abandoned turn
            }
            match event {
                CodexEvent::Delta { item_id, delta, .. } => {
                    return Some(TurnEvent::Delta { item_id, delta });
                }
                CodexEvent::AgentMessage { item_id, text, .. } => {
                    let visible = strip_internal(&text);
                    if !visible.is_empty() {
                        self.messages.push(visible.clone());
                    }
                    return Some(TurnEvent::Message {
                        item_id,
                        text: visible,
                        raw: text,
                    });
                }
                CodexEvent::ItemCompleted { summary, .. } => {
                    tracing::debug!(group = %self.session.folder(), %summary, "agent activity");
                    return Some(TurnEvent::Activity { summary });
                }
                CodexEvent::Error {
                    message,
                    info,
                    will_retry,
                    ..
                } => {
                    tracing::warn!(group = %self.session.folder(), %message, ?info, will_retry, "codex reported an error");
                    if !will_retry {
                        self.last_error = Some((message, info));
                    }
                }
                CodexEvent::TurnStarted { .. } => {}
                CodexEvent::TurnCompleted { turn } => {
                    self.session.handle().set_active(None);
                    let end = how_it_ended(turn.status, turn.error, self.last_error.take());
                    self.outcome = Some(end.map(|end| TurnOutcome {
                        turn_id: turn.id,
                        end,
                        final_message: self.messages.last().cloned(),
                        messages: std::mem::take(&mut self.messages),
                    }));
                    // A refreshed login flows back as soon as the turn is over.
                    self.session.sync_auth().await;
                    return None;
                }
            }
        }
    }

    /// The turn ran past its deadline: ask codex to stop it, give it a moment to end,
    /// then stop the agent itself (for a container: stop and remove the container).
    async fn time_out(&mut self) {
        let secs = self.session.turn_timeout().as_secs();
        tracing::warn!(group = %self.session.folder(), turn = %self.turn_id, secs,
            "turn timed out; interrupting it and stopping the agent");
        let handle = self.session.handle().clone();
        let _ = tokio::time::timeout(INTERRUPT_GRACE, handle.interrupt()).await;
        let ended = ended(self.session.notes(), &handle.thread_id, &self.turn_id);
        let _ = tokio::time::timeout(INTERRUPT_GRACE, ended).await;
        self.session.handle().set_active(None);
        self.session.kill().await;
        self.outcome = Some(Err(AgentError::TurnTimeout { secs }));
    }

    /// Runs the turn to its end and returns how it ended. A failed turn is
    /// [`AgentError::TurnFailed`] with codex's message.
    pub async fn finish(mut self) -> Result<TurnOutcome, AgentError> {
        while self.next_event().await.is_some() {}
        self.outcome.take().expect("a finished turn has an outcome")
    }
}

/// Interrupts a turn nobody is reading any more and waits (bounded) for its end; the
/// session then has no running turn.
pub(super) async fn abandon(session: &mut dyn TurnHost, turn_id: &str) {
    let _ = session.handle().interrupt().await;
    let thread = session.handle().thread_id.clone();
    let _ = tokio::time::timeout(ABANDON_GRACE, ended(session.notes(), &thread, turn_id)).await;
    session.handle().set_active(None);
}

/// Resolves when codex reports `turn_id` completed (or its output ends).
async fn ended(notes: &mut mpsc::UnboundedReceiver<Notification>, thread: &str, turn_id: &str) {
    while let Some(note) = notes.recv().await {
        if let Some(CodexEvent::TurnCompleted { turn }) = CodexEvent::decode(&note, thread)
            && turn.id == turn_id
        {
            break;
        }
    }
}
