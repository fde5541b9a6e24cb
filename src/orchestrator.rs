//! The orchestrator: from a stored chat message to a queued reply.
//!
//! * [`Orchestrator::ingest`] stores what a channel received (content only for
//!   registered chats) and says which group should look at it.
//! * As the queue's [`GroupHandler`], it answers a group's unanswered messages and runs
//!   its scheduled tasks in the group's live agent session.
//!
//! Exactly once: a turn's replies are committed to the outbox in the same transaction
//! that moves the chat's cursor past the messages they answer (or that finishes the
//! scheduled run). A crash before that commit re-runs the turn after restart; a crash
//! after it re-sends nothing that was sent (see `delivery`).
//!
//! A chat is routed to a group by its registered jid, or — for the local terminal
//! channel — by `<folder>@local`, which is the terminal's view of group `<folder>`.

use crate::sync::LockExt as _;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::broadcast;
use tracing::Instrument as _;

use crate::agent::{AgentError, Agents, Failure, Session, TurnEnd, TurnOutcome};
use crate::bus::Topic;
use crate::channels::{BoxFuture, Inbound};
use crate::config::Config;
use crate::delivery::Delivery;
use crate::model::{ContextMode, FolderName, Jid};
use crate::prompt::{self, Decision};
use crate::queue::{AfterMessages, GroupHandler};
use crate::scheduler::{DueRun, RunOutcome, runs};
use crate::shutdown::Shutdown;
use crate::store::groups::{self, Group};
use crate::store::{SharedStore, StoreError, chats, messages, outbox};

/// The longest error text shown in a chat.
const MAX_ERROR_CHARS: usize = 500;
/// At shutdown, how long an interrupted turn may take to end before its agent is killed.
const INTERRUPT_GRACE: Duration = Duration::from_millis(300);
/// A chat whose answer is delayed longer than this by retries is told so (once).
const RETRY_NOTICE_AFTER: Duration = Duration::from_secs(30);

/// The transient failures of a group's current messages.
struct Retries {
    count: u32,
    since: tokio::time::Instant,
    /// The chat was told that its answer is being retried.
    told: bool,
}

pub(crate) struct Orchestrator {
    config: Arc<Config>,
    store: SharedStore,
    agents: Agents,
    delivery: Arc<Delivery>,
    bus: broadcast::Sender<Topic>,
    /// The daemon's shutdown: running turns are interrupted when it fires.
    stop: Shutdown,
    /// Failed attempts at each group's current messages.
    attempts: Mutex<HashMap<FolderName, Retries>>,
    stats: Stats,
}

/// Counters for tests, benchmarks and status output.
#[derive(Debug, Default)]
pub struct Stats {
    pub sessions_started: AtomicU64,
    pub sessions_closed: AtomicU64,
    pub(crate) turns: AtomicU64,
}

impl Orchestrator {
    pub(crate) fn new(
        config: Arc<Config>,
        store: SharedStore,
        agents: Agents,
        delivery: Arc<Delivery>,
        bus: broadcast::Sender<Topic>,
        stop: Shutdown,
    ) -> Orchestrator {
        Orchestrator {
            config,
            store,
            agents,
            delivery,
            bus,
            stop,
            attempts: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        }
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Stores a received message. Returns the group to wake, if the chat is registered
    /// and the message is new.
    pub(crate) async fn ingest(&self, m: Inbound) -> Result<Option<FolderName>, StoreError> {
        self.store
            .call(move |s| {
                s.write(|tx| {
                    let jid = &m.chat_jid;
                    chats::upsert(tx, jid, m.chat_name.as_deref(), m.sent_at)?;
                    let Some(group) = group_for_chat(tx, &m.chat_jid)? else {
                        return Ok(None);
                    };
                    let id = messages::insert(
                        tx,
                        &messages::NewMessage {
                            chat_jid: jid,
                            external_id: m.external_id.as_deref(),
                            sender_id: &m.sender_id,
                            sender_name: &m.sender_name,
                            content: &m.content,
                            sent_at: m.sent_at,
                            is_from_bot: m.from_self || m.from_bot,
                            mentions_bot: m.mentions_assistant || m.direct,
                        },
                    )?;
                    if let Some(id) = id {
                        tracing::info!(chat = %jid, group = %group.folder, message = id, "message received");
                    }
                    Ok(id.map(|_| group.folder))
                })
            })
            .await
    }

    /// Groups with messages past their cursor (to queue at start-up).
    pub(crate) async fn groups_with_unanswered(&self) -> Result<Vec<FolderName>, StoreError> {
        self.store
            .call(|s| {
                let conn = s.conn();
                let mut out = Vec::new();
                for g in groups::list(conn)? {
                    for chat in chats_of(&g) {
                        if messages::latest_id(conn, &chat)? > messages::cursor(conn, &chat)? {
                            out.push(g.folder.clone());
                            break;
                        }
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn typing(&self, chat: &Jid, on: bool) {
        if let Some(channel) = self.delivery.channel_for(chat) {
            channel.set_typing(chat, on).await;
        }
    }

    /// Opens the group's session if it has none.
    async fn ensure_session<'s>(
        &self,
        group: &Group,
        session: &'s mut Option<Session>,
    ) -> Result<&'s mut Session, AgentError> {
        if session.is_none() {
            *session = Some(
                self.agents
                    .start(&group.folder, group.is_main, ContextMode::Group)
                    .await?,
            );
            self.stats.sessions_started.fetch_add(1, Ordering::Relaxed);
        }
        Ok(session.as_mut().expect("just opened"))
    }

    /// One turn in the group's session; a failed session is dropped so the next
    /// attempt starts a fresh process (resuming the same thread).
    async fn group_turn(
        &self,
        group: &Group,
        session: &mut Option<Session>,
        prompt: &str,
    ) -> Result<TurnOutcome, AgentError> {
        self.stats.turns.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let s = tokio::select! {
                biased;
                _ = self.stop.triggered() => return Err(AgentError::Shutdown),
                s = self.ensure_session(group, session) => s?,
            };
            self.turn_until_shutdown(s, prompt).await
        }
        .await;
        if result.is_err()
            && let Some(mut s) = session.take()
        {
            s.kill().await;
            self.stats.sessions_closed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Runs a turn; if the daemon starts shutting down meanwhile, asks codex to stop
    /// it and gives it [`INTERRUPT_GRACE`] to end. A turn cut short is
    /// [`AgentError::Shutdown`] (its messages are answered after the next start).
    async fn turn_until_shutdown(
        &self,
        session: &mut Session,
        prompt: &str,
    ) -> Result<TurnOutcome, AgentError> {
        let handle = session.handle();
        let turn = session.run_turn(prompt);
        tokio::pin!(turn);
        tokio::select! {
            biased;
            r = &mut turn => return r,
            _ = self.stop.triggered() => {}
        }
        let ended = tokio::time::timeout(INTERRUPT_GRACE, async {
            let _ = handle.interrupt().await;
            (&mut turn).await
        })
        .await;
        match ended {
            Ok(Ok(outcome)) if outcome.end == TurnEnd::Completed => Ok(outcome),
            _ => Err(AgentError::Shutdown),
        }
    }

    /// What the chat is told when the agent failed for good.
    fn user_error(e: &AgentError) -> String {
        let first = e.to_string();
        let first = first.lines().next().unwrap_or("unknown error");
        let text = match e.failure() {
            Failure::Permanent { fix } => {
                format!("I can't answer until this is fixed: {first}. To fix it: {fix}.")
            }
            _ => format!("I couldn't answer because the agent failed: {first}"),
        };
        crate::text::clip(&text, MAX_ERROR_CHARS)
    }

    /// Queues `text` for `chat` without moving its cursor (the messages stay unanswered).
    async fn tell(&self, chat: &Jid, text: String) {
        let c = chat.clone();
        let res = self
            .store
            .call(move |s| outbox::enqueue(s.conn(), &c, &text, "notice", Utc::now()))
            .await;
        match res {
            Ok(_) => self.delivery.wake(),
            Err(e) => tracing::error!(error = %e, %chat, "cannot queue a notice for the chat"),
        }
    }

    /// A transient failure: how long to wait before the next attempt (`None`: give up),
    /// telling the chat once when its answer will be late by more than
    /// [`RETRY_NOTICE_AFTER`].
    async fn after_transient(
        &self,
        folder: &FolderName,
        chat: &Jid,
        e: &AgentError,
    ) -> Option<Duration> {
        let (attempt, delay, tell) = {
            let mut a = self.attempts.lock_ignoring_poison();
            let r = a.entry(folder.clone()).or_insert_with(|| Retries {
                count: 0,
                since: tokio::time::Instant::now(),
                told: false,
            });
            r.count += 1;
            if r.count > self.config.agent_max_retries {
                a.remove(folder);
                return None;
            }
            let delay = self.retry_delay(r.count);
            let tell = !r.told && r.since.elapsed() + delay >= RETRY_NOTICE_AFTER;
            r.told |= tell;
            (r.count, delay, tell)
        };
        tracing::warn!(group = %folder, attempt, retry_in = ?delay, error = %e, "agent turn failed");
        if tell {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("unknown error").to_owned();
            let text = format!(
                "The agent failed ({first}); I'm retrying (next attempt in {} s, at most {} attempts) and will answer as soon as it works.",
                delay.as_secs().max(1),
                self.config.agent_max_retries + 1
            );
            self.tell(chat, crate::text::clip(&text, MAX_ERROR_CHARS))
                .await;
        }
        Some(delay)
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        let base = self.config.agent_retry_base_ms;
        Duration::from_millis(base.saturating_mul(1 << (attempt.saturating_sub(1)).min(16)))
    }

    /// Answers `chat`'s oldest unanswered batch, if any.
    async fn answer_chat(
        &self,
        group: &Group,
        chat: &Jid,
        session: &mut Option<Session>,
    ) -> ChatTurn {
        loop {
            let c = chat.clone();
            let page = self
                .store
                .call(move |s| {
                    let cursor = messages::cursor(s.conn(), &c)?;
                    messages::since(s.conn(), &c, cursor, prompt::PAGE)
                })
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    // Retried when the next message or restart wakes the group.
                    tracing::error!(error = %e, "cannot read messages");
                    return ChatTurn::Settled;
                }
            };
            match prompt::decide(group, &page) {
                Decision::Wait { advance_to: None } => return ChatTurn::Settled,
                Decision::Wait {
                    advance_to: Some(id),
                } => {
                    let c = chat.clone();
                    let _ = self
                        .store
                        .call(move |s| messages::advance_cursor(s.conn(), &c, id, Utc::now()))
                        .await;
                }
                Decision::Answer {
                    messages: batch,
                    through,
                } => {
                    let prompt = prompt::format_messages(&batch, self.config.timezone);
                    let span = tracing::info_span!("turn", group = %group.folder, %chat, through);
                    let turn = async {
                        tracing::info!(messages = batch.len(), "starting a turn");
                        self.typing(chat, true).await;
                        let result = self.group_turn(group, session, &prompt).await;
                        self.typing(chat, false).await;
                        let outcome = result?;
                        self.commit_replies(chat, &outcome.messages, "reply", through)
                            .await;
                        tracing::info!(replies = outcome.messages.len(), "turn done");
                        Ok::<_, AgentError>(())
                    }
                    .instrument(span)
                    .await;
                    if let Err(error) = turn {
                        return ChatTurn::Failed { error, through };
                    }
                    self.attempts.lock_ignoring_poison().remove(&group.folder);
                    // One turn per call: the queue runs due tasks before further messages.
                    return ChatTurn::Answered;
                }
            }
        }
    }

    /// Queues `replies` for `chat` and moves its cursor to `through`, atomically.
    async fn commit_replies(&self, chat: &Jid, replies: &[String], origin: &str, through: i64) {
        let (c, r, o) = (chat.clone(), replies.to_vec(), origin.to_owned());
        let res = self
            .store
            .call(move |s| {
                s.write(|tx| {
                    let now = Utc::now();
                    for text in &r {
                        outbox::enqueue(tx, &c, text, &o, now)?;
                    }
                    messages::advance_cursor(tx, &c, through, now)
                })
            })
            .await;
        match res {
            Ok(()) => self.delivery.wake(),
            Err(e) => {
                tracing::error!(error = %e, %chat, "cannot queue the reply; the turn will be retried")
            }
        }
    }
}

/// What [`Orchestrator::answer_chat`] came to.
enum ChatTurn {
    /// Nothing (more) in the chat needs answering.
    Settled,
    /// One batch answered; the queue decides what runs next (due tasks first).
    Answered,
    /// The turn for the batch ending at message `through` failed.
    Failed { error: AgentError, through: i64 },
}

/// The group a chat belongs to: by registered jid, or `<folder>@local` for the terminal.
pub(crate) fn group_for_chat(
    conn: &rusqlite::Connection,
    jid: &Jid,
) -> Result<Option<Group>, StoreError> {
    match jid {
        Jid::Local(name) => match FolderName::parse(name) {
            Ok(folder) => groups::get_by_folder(conn, &folder),
            Err(_) => Ok(None),
        },
        _ => groups::get_by_jid(conn, jid),
    }
}

/// The chats whose messages a group answers: its registered chat and its terminal chat.
fn chats_of(g: &Group) -> Vec<Jid> {
    let mut chats = vec![g.jid.clone()];
    let local = Jid::local_for(&g.folder);
    if chats[0] != local {
        chats.push(local);
    }
    chats
}

impl GroupHandler for Orchestrator {
    type Session = Session;

    fn messages<'a>(
        &'a self,
        folder: &'a FolderName,
        session: &'a mut Option<Session>,
    ) -> BoxFuture<'a, AfterMessages> {
        Box::pin(async move {
            let f = folder.clone();
            let group = match self
                .store
                .call(move |s| groups::get_by_folder(s.conn(), &f))
                .await
            {
                Ok(Some(g)) => g,
                Ok(None) => return AfterMessages::Done,
                Err(e) => {
                    tracing::error!(group = %folder, error = %e, "cannot read the group");
                    return AfterMessages::RetryAfter(self.retry_delay(1));
                }
            };
            for chat in chats_of(&group) {
                match self.answer_chat(&group, &chat, session).await {
                    ChatTurn::Settled => {}
                    ChatTurn::Answered => return AfterMessages::More,
                    ChatTurn::Failed { error: e, through } => {
                        match e.failure() {
                            // Answered after the next start.
                            Failure::Shutdown => return AfterMessages::Done,
                            Failure::Transient => {
                                if let Some(delay) =
                                    self.after_transient(&group.folder, &chat, &e).await
                                {
                                    return AfterMessages::RetryAfter(delay);
                                }
                                tracing::error!(group = %folder, error = %e, "agent turn failed; giving up and telling the chat");
                            }
                            Failure::Permanent { .. } => {
                                tracing::error!(group = %folder, error = %e, "agent failed in a way retrying cannot fix; telling the chat");
                                self.attempts.lock_ignoring_poison().remove(&group.folder);
                            }
                        }
                        self.commit_replies(&chat, &[Self::user_error(&e)], "error", through)
                            .await;
                        // Other messages may still be waiting (after any due task).
                        return AfterMessages::More;
                    }
                }
            }
            AfterMessages::Done
        })
    }

    fn task<'a>(&'a self, run: DueRun, session: &'a mut Option<Session>) -> BoxFuture<'a, ()> {
        let span = tracing::info_span!("task_run", task = %run.task.id, run = run.run_id,
            group = %run.task.group_folder);
        Box::pin(async move {
            let task = run.task.clone();
            let f = task.group_folder.clone();
            let group = match self
                .store
                .call(move |s| groups::get_by_folder(s.conn(), &f))
                .await
            {
                Ok(Some(g)) => g,
                other => {
                    let why = match other {
                        Err(e) => e.to_string(),
                        _ => format!("group {} is no longer registered", task.group_folder),
                    };
                    self.finish_run(&run, RunOutcome::Error { error: why }, None)
                        .await;
                    return;
                }
            };
            let prompt = prompt::format_task(&task, run.due_at, task.timezone);
            let chat = task.chat_jid.clone();
            tracing::info!(mode = %task.context_mode, "running a scheduled task");
            self.typing(&chat, true).await;
            let result = match task.context_mode {
                ContextMode::Group => self.group_turn(&group, session, &prompt).await,
                ContextMode::Isolated => {
                    // A fresh, ephemeral thread in its own process: the group's session is
                    // neither used nor replaced.
                    let started = tokio::select! {
                        biased;
                        _ = self.stop.triggered() => Err(AgentError::Shutdown),
                        s = self.agents.start(&group.folder, group.is_main, ContextMode::Isolated) => s,
                    };
                    match started {
                        Ok(mut s) => {
                            let r = self.turn_until_shutdown(&mut s, &prompt).await;
                            if self.stop.is_triggered() {
                                s.kill().await;
                            } else {
                                s.close().await;
                            }
                            r
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            self.typing(&chat, false).await;
            match result {
                Err(AgentError::Shutdown) => {
                    tracing::info!(task = %task.id, run = run.run_id, "scheduled run interrupted by the shutdown");
                    self.finish_run(&run, RunOutcome::Interrupted, None).await
                }
                Ok(outcome) => {
                    let summary = outcome.final_message.clone().unwrap_or_default();
                    self.finish_run(
                        &run,
                        RunOutcome::Success { result: summary },
                        Some(outcome.messages),
                    )
                    .await
                }
                Err(e) => {
                    let error = e.to_string();
                    let note = format!(
                        "Scheduled task {} failed. {}",
                        task.id,
                        Self::user_error(&e)
                    );
                    self.finish_run(&run, RunOutcome::Error { error }, Some(vec![note]))
                        .await
                }
            }
        }
        .instrument(span))
    }

    fn close(&self, folder: &FolderName, session: Session) -> BoxFuture<'_, ()> {
        let folder = folder.clone();
        Box::pin(async move {
            tracing::info!(group = %folder, "closing the agent session");
            session.close().await;
            self.stats.sessions_closed.fetch_add(1, Ordering::Relaxed);
        })
    }
}

impl Orchestrator {
    /// Finishes a scheduled run and queues its output, in one transaction.
    async fn finish_run(&self, run: &DueRun, outcome: RunOutcome, replies: Option<Vec<String>>) {
        let replies_n = replies.as_ref().map_or(0, Vec::len);
        let (run_id, chat, origin) = (
            run.run_id,
            run.task.chat_jid.clone(),
            format!("task:{}", run.task.id),
        );
        let res = self
            .store
            .call(move |s| {
                s.write(|tx| {
                    let now = Utc::now();
                    for text in replies.iter().flatten() {
                        outbox::enqueue(tx, &chat, text, &origin, now)?;
                    }
                    runs::complete(tx, run_id, &outcome, now)?;
                    Ok::<_, StoreError>(())
                })
            })
            .await;
        match res {
            Ok(()) => {
                tracing::info!(replies = replies_n, "scheduled run finished");
                self.delivery.wake();
                let _ = self.bus.send(Topic::Tasks);
            }
            Err(e) => {
                tracing::error!(run_id, error = %e, "cannot record the end of a scheduled run")
            }
        }
    }
}
