//! The group queue: at most one agent session per group, at most `MAX_CONCURRENT_AGENTS`
//! in total, first come first served beyond that.
//!
//! Work arrives as "this group has new messages" (a flag: the messages themselves are
//! in the store) or as a scheduled run. A group with work and a free slot gets a
//! *worker*: one tokio task that opens the group's agent session when it first needs
//! it, does the group's work — scheduled runs first, then messages — and then waits,
//! idle, for more. Follow-up messages that arrive meanwhile go into the same live
//! session as its next turn. The worker closes the session and frees its slot after
//! `IDLE_TIMEOUT_MS` without work, or at once when another group is waiting for a slot.
//!
//! Groups waiting for a slot are served in arrival order, except that groups with a
//! scheduled run waiting go first.
//!
//! The queue knows nothing about agents or chats: a [`GroupHandler`] does the work.

use crate::sync::LockExt as _;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::channels::BoxFuture;
use crate::model::FolderName;
use crate::scheduler::DueRun;

/// What a handler asks the queue to do after processing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterMessages {
    /// Done (or nothing to do).
    Done,
    /// One turn done; there may be more. The worker checks for scheduled runs (which
    /// go first) before calling again.
    More,
    /// It failed; try the group's messages again after this delay.
    RetryAfter(Duration),
}

/// A worker's next step ([`GroupQueue::next_step`]).
enum Next {
    Run(Box<DueRun>),
    Messages,
    Idle,
    Exit,
}

/// Does one group's work inside the worker the queue gives it.
pub(crate) trait GroupHandler: Send + Sync + 'static {
    /// A live agent session; opened lazily by the handler, closed by [`close`](Self::close).
    type Session: Send + 'static;

    /// Answers the group's unanswered messages.
    fn messages<'a>(
        &'a self,
        folder: &'a FolderName,
        session: &'a mut Option<Self::Session>,
    ) -> BoxFuture<'a, AfterMessages>;

    /// Runs one scheduled task run.
    fn task<'a>(&'a self, run: DueRun, session: &'a mut Option<Self::Session>)
    -> BoxFuture<'a, ()>;

    /// Ends a session (idle timeout, preemption or shutdown).
    fn close(&self, folder: &FolderName, session: Self::Session) -> BoxFuture<'_, ()>;
}

#[derive(Default)]
struct GroupState {
    /// A worker holds a slot for this group.
    running: bool,
    /// The worker has a session and nothing to do (it may be preempted).
    idle: bool,
    /// The worker should close its session and exit when idle.
    close_requested: bool,
    pending_messages: bool,
    pending_runs: VecDeque<DueRun>,
    /// Wakes the worker (a stored permit means no wake-up is ever lost).
    wake: Arc<Notify>,
    /// Waiting for a slot.
    queued: bool,
}

impl GroupState {
    fn has_work(&self) -> bool {
        self.pending_messages || !self.pending_runs.is_empty()
    }
}

#[derive(Default)]
struct State {
    groups: HashMap<FolderName, GroupState>,
    active: usize,
    waiting: VecDeque<FolderName>,
    shutting_down: bool,
}

/// One group's place in the queue, as `rust_claw status` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct GroupActivity {
    pub(crate) folder: FolderName,
    /// `working`, `idle` (a live session waiting for input) or `none`.
    pub(crate) agent: String,
    /// Waiting for one of the MAX_CONCURRENT_AGENTS slots.
    pub(crate) waiting_for_slot: bool,
    pub(crate) pending_messages: bool,
    pub(crate) pending_runs: usize,
}

pub(crate) struct GroupQueue<H: GroupHandler> {
    handler: Arc<H>,
    state: Mutex<State>,
    max_active: usize,
    idle_timeout: Duration,
    workers: Mutex<JoinSet<()>>,
    /// Notified whenever a worker exits (used by `wait_idle` and shutdown).
    worker_done: Notify,
}

impl<H: GroupHandler> GroupQueue<H> {
    pub(crate) fn new(handler: Arc<H>, max_active: usize, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(GroupQueue {
            handler,
            state: Mutex::new(State::default()),
            max_active: max_active.max(1),
            idle_timeout,
            workers: Mutex::new(JoinSet::new()),
            worker_done: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock_ignoring_poison()
    }

    /// The group has unanswered messages in the store.
    pub(crate) fn enqueue_messages(self: &Arc<Self>, folder: &FolderName) {
        self.enqueue(folder, |g| g.pending_messages = true);
    }

    /// A scheduled run is due for the group.
    pub(crate) fn enqueue_run(self: &Arc<Self>, run: DueRun) {
        let folder = run.task.group_folder.clone();
        self.enqueue(&folder, |g| g.pending_runs.push_back(run));
    }

    fn enqueue(self: &Arc<Self>, folder: &FolderName, add: impl FnOnce(&mut GroupState)) {
        let mut st = self.lock();
        if st.shutting_down {
            return;
        }
        let g = st.groups.entry(folder.clone()).or_default();
        add(g);
        if g.running {
            g.idle = false;
            g.wake.notify_one();
            return;
        }
        if g.queued {
            return;
        }
        if st.active < self.max_active {
            self.start_worker(&mut st, folder.clone());
        } else {
            st.groups.get_mut(folder).expect("just inserted").queued = true;
            st.waiting.push_back(folder.clone());
            // A group idling on a slot gives it up for one that has work.
            if let Some((_, idle)) = st
                .groups
                .iter_mut()
                .find(|(_, g)| g.running && g.idle && !g.close_requested)
            {
                idle.close_requested = true;
                idle.wake.notify_one();
            }
        }
    }

    fn start_worker(self: &Arc<Self>, st: &mut State, folder: FolderName) {
        st.active += 1;
        let g = st.groups.entry(folder.clone()).or_default();
        g.running = true;
        g.idle = false;
        g.close_requested = false;
        g.queued = false;
        let wake = g.wake.clone();
        let me = self.clone();
        let mut workers = self.workers.lock_ignoring_poison();
        // Reap finished workers so the set does not grow over months of uptime.
        while workers.try_join_next().is_some() {}
        workers.spawn(async move { me.worker(folder, wake).await });
    }

    async fn worker(self: Arc<Self>, folder: FolderName, wake: Arc<Notify>) {
        let mut session: Option<H::Session> = None;
        loop {
            match self.next_step(&folder, session.is_some()) {
                Next::Run(run) => self.handler.task(*run, &mut session).await,
                Next::Messages => match self.handler.messages(&folder, &mut session).await {
                    AfterMessages::Done => {}
                    AfterMessages::More => {
                        let mut st = self.lock();
                        st.groups
                            .get_mut(&folder)
                            .expect("worker's group exists")
                            .pending_messages = true;
                    }
                    AfterMessages::RetryAfter(delay) => {
                        let me = self.clone();
                        let f = folder.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            me.enqueue_messages(&f);
                        });
                    }
                },
                Next::Idle => {
                    let timed_out = tokio::time::timeout(self.idle_timeout, wake.notified())
                        .await
                        .is_err();
                    let mut st = self.lock();
                    let g = st.groups.get_mut(&folder).expect("worker's group exists");
                    g.idle = false;
                    if timed_out && !g.has_work() {
                        break;
                    }
                }
                Next::Exit => break,
            }
        }
        if let Some(s) = session.take() {
            self.handler.close(&folder, s).await;
        }
        self.release_slot(&folder);
    }

    /// What `folder`'s worker does next: due runs before messages; with nothing to
    /// do it waits idle (keeping its session) unless it should give its slot up.
    fn next_step(&self, folder: &FolderName, has_session: bool) -> Next {
        let mut st = self.lock();
        let shutting_down = st.shutting_down;
        let others_waiting = !st.waiting.is_empty();
        let g = st.groups.get_mut(folder).expect("worker's group exists");
        if shutting_down {
            Next::Exit
        } else if let Some(run) = g.pending_runs.pop_front() {
            Next::Run(Box::new(run))
        } else if g.pending_messages {
            g.pending_messages = false;
            Next::Messages
        } else if !has_session || g.close_requested || others_waiting {
            Next::Exit
        } else {
            g.idle = true;
            Next::Idle
        }
    }

    /// A worker ended: frees its slot, queues the group again if work arrived while
    /// it was closing, and starts whoever waits.
    fn release_slot(self: &Arc<Self>, folder: &FolderName) {
        let mut st = self.lock();
        st.active -= 1;
        let shutting_down = st.shutting_down;
        let g = st.groups.get_mut(folder).expect("worker's group exists");
        g.running = false;
        g.idle = false;
        g.close_requested = false;
        let again = g.has_work() && !shutting_down;
        if again {
            // Work arrived while closing: queue up again, behind those already waiting.
            g.queued = true;
            st.waiting.push_back(folder.clone());
        }
        self.start_waiting(&mut st);
        drop(st);
        self.worker_done.notify_waiters();
    }

    /// Fills free slots from the waiting list, groups with scheduled runs first.
    fn start_waiting(self: &Arc<Self>, st: &mut State) {
        while st.active < self.max_active && !st.shutting_down {
            let pos = st
                .waiting
                .iter()
                .position(|f| st.groups.get(f).is_some_and(|g| !g.pending_runs.is_empty()))
                .or(if st.waiting.is_empty() { None } else { Some(0) });
            let Some(pos) = pos else { break };
            let folder = st.waiting.remove(pos).expect("position is in range");
            self.start_worker(st, folder);
        }
    }

    /// What every known group is doing right now (for `rust_claw status`).
    pub(crate) fn activity(&self) -> Vec<GroupActivity> {
        let st = self.lock();
        let mut out: Vec<GroupActivity> = st
            .groups
            .iter()
            .filter(|(_, g)| g.running || g.queued || g.has_work())
            .map(|(folder, g)| GroupActivity {
                folder: folder.clone(),
                agent: if !g.running {
                    "none"
                } else if g.idle {
                    "idle"
                } else {
                    "working"
                }
                .to_owned(),
                waiting_for_slot: g.queued,
                pending_messages: g.pending_messages,
                pending_runs: g.pending_runs.len(),
            })
            .collect();
        out.sort_by(|a, b| a.folder.as_str().cmp(b.folder.as_str()));
        out
    }

    /// How many workers hold a slot.
    pub(crate) fn active(&self) -> usize {
        self.lock().active
    }

    /// Stops taking work, lets workers finish what they are doing for up to `grace`,
    /// then aborts the rest (their sessions are dropped, which kills the agent process).
    /// Waits until no worker is running and nothing is waiting.
    #[cfg(test)]
    async fn wait_idle(&self) {
        loop {
            let done = self.worker_done.notified();
            {
                let st = self.lock();
                if st.active == 0 && st.waiting.is_empty() {
                    return;
                }
            }
            done.await;
        }
    }

    pub(crate) async fn shutdown(&self, grace: Duration) {
        {
            let mut st = self.lock();
            st.shutting_down = true;
            st.waiting.clear();
            for g in st.groups.values_mut() {
                g.close_requested = true;
                g.wake.notify_one();
            }
        }
        let mut workers = std::mem::take(&mut *self.workers.lock_ignoring_poison());
        let drained = tokio::time::timeout(grace, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = workers.len(),
                "agent sessions still busy at shutdown; interrupting them"
            );
            workers.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The queue's rules with a fake handler under paused time: each piece of work
    //! "takes" [`WORK`] of virtual time, and every start, end and close is recorded
    //! with the (virtual) instant it happened.

    use std::collections::HashMap;

    use tokio::time::Instant;

    use super::*;
    use crate::model::{ContextMode, Jid, ScheduleType, TaskId, TaskStatus};
    use crate::store::tasks::Task;

    const WORK: Duration = Duration::from_millis(100);

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum What {
        Messages,
        Task,
        Close,
    }

    #[derive(Debug, Clone)]
    struct Event {
        folder: String,
        what: What,
        start: Instant,
        end: Instant,
    }

    #[derive(Default)]
    struct Fake {
        events: Mutex<Vec<Event>>,
        running: Mutex<HashMap<String, usize>>,
        /// The most work items ever running at once: in total, and in one group.
        max_total: Mutex<usize>,
        max_in_group: Mutex<usize>,
    }

    impl Fake {
        async fn work(&self, folder: &str, what: What) {
            let start = Instant::now();
            {
                let mut r = self.running.lock().unwrap();
                *r.entry(folder.to_owned()).or_default() += 1;
                let total: usize = r.values().sum();
                let mut mt = self.max_total.lock().unwrap();
                *mt = (*mt).max(total);
                let mut mg = self.max_in_group.lock().unwrap();
                *mg = (*mg).max(r[folder]);
            }
            tokio::time::sleep(WORK).await;
            *self.running.lock().unwrap().get_mut(folder).unwrap() -= 1;
            self.events.lock().unwrap().push(Event {
                folder: folder.to_owned(),
                what,
                start,
                end: Instant::now(),
            });
        }

        fn events(&self) -> Vec<Event> {
            self.events.lock().unwrap().clone()
        }

        fn of(&self, folder: &str, what: What) -> Vec<Event> {
            self.events()
                .into_iter()
                .filter(|e| e.folder == folder && e.what == what)
                .collect()
        }
    }

    impl GroupHandler for Fake {
        type Session = ();

        fn messages<'a>(
            &'a self,
            folder: &'a FolderName,
            session: &'a mut Option<()>,
        ) -> BoxFuture<'a, AfterMessages> {
            Box::pin(async move {
                *session = Some(());
                self.work(folder.as_str(), What::Messages).await;
                AfterMessages::Done
            })
        }

        fn task<'a>(&'a self, run: DueRun, session: &'a mut Option<()>) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                *session = Some(());
                self.work(run.task.group_folder.as_str(), What::Task).await;
            })
        }

        fn close(&self, folder: &FolderName, _session: ()) -> BoxFuture<'_, ()> {
            let folder = folder.to_string();
            Box::pin(async move {
                let now = Instant::now();
                self.events.lock().unwrap().push(Event {
                    folder,
                    what: What::Close,
                    start: now,
                    end: now,
                });
            })
        }
    }

    fn f(name: &str) -> FolderName {
        FolderName::parse(name).unwrap()
    }

    fn run_for(folder: &str) -> DueRun {
        let now = chrono::Utc::now();
        DueRun {
            run_id: 1,
            task: Task {
                id: TaskId::parse("t1").unwrap(),
                group_folder: f(folder),
                chat_jid: Jid::local_for(&f(folder)),
                prompt: "p".into(),
                schedule_type: ScheduleType::Once,
                schedule_value: "2099-01-01T00:00:00Z".into(),
                context_mode: ContextMode::Group,
                timezone: chrono_tz::Tz::UTC,
                next_run: None,
                last_run: Some(now),
                last_result: None,
                status: TaskStatus::Active,
                created_by: "test".into(),
                created_at: now,
            },
            due_at: now,
            started_at: now,
        }
    }

    fn queue(max: usize, idle: Duration) -> (Arc<Fake>, Arc<GroupQueue<Fake>>) {
        let fake = Arc::new(Fake::default());
        (fake.clone(), GroupQueue::new(fake, max, idle))
    }

    #[tokio::test(start_paused = true)]
    async fn one_worker_per_group_and_at_most_the_cap_in_total() {
        let (fake, q) = queue(2, Duration::from_secs(1));
        for g in ["a", "b", "c", "d", "e"] {
            q.enqueue_messages(&f(g));
            // Follow-ups while the group is busy join its worker, never a second one.
            q.enqueue_messages(&f(g));
        }
        q.enqueue_run(run_for("a"));
        q.wait_idle().await;
        assert_eq!(*fake.max_in_group.lock().unwrap(), 1);
        assert_eq!(*fake.max_total.lock().unwrap(), 2);
        for g in ["a", "b", "c", "d", "e"] {
            assert!(
                !fake.of(g, What::Messages).is_empty(),
                "{g} was never served"
            );
            assert_eq!(
                fake.of(g, What::Close).len(),
                1,
                "{g}: one session, closed once"
            );
        }
        assert_eq!(fake.of("a", What::Task).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_task_goes_before_waiting_messages() {
        let (fake, q) = queue(1, Duration::from_secs(3600));
        q.enqueue_messages(&f("busy"));
        tokio::task::yield_now().await;
        q.enqueue_messages(&f("chat"));
        q.enqueue_run(run_for("cron"));
        q.wait_idle().await;
        let order: Vec<(String, What)> = fake
            .events()
            .into_iter()
            .filter(|e| e.what != What::Close)
            .map(|e| (e.folder, e.what))
            .collect();
        assert_eq!(
            order,
            [
                ("busy".to_owned(), What::Messages),
                ("cron".to_owned(), What::Task),
                ("chat".to_owned(), What::Messages),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_closes_after_the_idle_timeout() {
        let idle = Duration::from_secs(300);
        let (fake, q) = queue(2, idle);
        q.enqueue_messages(&f("a"));
        q.wait_idle().await;
        let done = fake.of("a", What::Messages)[0].end;
        let closed = fake.of("a", What::Close)[0].start;
        assert_eq!(
            closed - done,
            idle,
            "closed at the timeout, not before or after"
        );
        assert_eq!(q.active(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn work_during_the_idle_wait_reuses_the_session() {
        let idle = Duration::from_secs(300);
        let (fake, q) = queue(2, idle);
        q.enqueue_messages(&f("a"));
        tokio::time::sleep(WORK + idle / 2).await;
        q.enqueue_messages(&f("a"));
        q.wait_idle().await;
        assert_eq!(fake.of("a", What::Messages).len(), 2);
        assert_eq!(fake.of("a", What::Close).len(), 1, "one session for both");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_gives_its_slot_to_a_waiting_group() {
        let (fake, q) = queue(1, Duration::from_secs(3600));
        q.enqueue_messages(&f("a"));
        // `a` has answered and idles on the only slot.
        tokio::time::sleep(WORK * 2).await;
        assert_eq!(q.active(), 1);
        assert!(fake.of("a", What::Close).is_empty());
        let asked = Instant::now();
        q.enqueue_messages(&f("b"));
        q.wait_idle().await;
        let closed = fake.of("a", What::Close)[0].start;
        let b = &fake.of("b", What::Messages)[0];
        assert_eq!(closed, asked, "the idle session was closed at once");
        assert_eq!(b.start, asked, "and the waiting group started at once");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_taking_work() {
        let (fake, q) = queue(1, Duration::from_secs(3600));
        q.enqueue_messages(&f("a"));
        q.enqueue_messages(&f("b"));
        q.shutdown(Duration::from_secs(1)).await;
        q.enqueue_messages(&f("c"));
        tokio::time::sleep(WORK * 10).await;
        assert!(fake.of("b", What::Messages).is_empty());
        assert!(fake.of("c", What::Messages).is_empty());
        assert_eq!(q.active(), 0);
    }
}
