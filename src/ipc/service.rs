//! The IPC service: one async task that turns watcher signals into bounded passes of
//! request applications on the blocking pool, keeps the snapshots current, and tells
//! the rest of the daemon what changed.
//!
//! Idle, it sleeps in one `select!` on three event sources (inotify signals, the
//! daemon's change bus, shutdown) — there is no timer unless a host-side failure asked
//! for a retry, so an idle daemon with any number of groups costs no CPU.

use crate::sync::LockExt as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::apply::{self, Changes, Committed, Env};
use super::quarantine::Quarantine;
use super::snapshots::{self, Kinds, Rendered};
use super::watcher::{self, GroupDirs, Pending, Signal, Watcher};
use crate::bus::Topic;
use crate::config::Config;
use crate::model::FolderName;
use crate::paths::Paths;
use crate::safe_dir::SafeDir;
use crate::store::{SharedStore, groups};

/// At most this many files of one group per pass (fairness).
const PER_GROUP: usize = 64;
/// At most this many files per pass (bounds snapshot and shutdown latency).
const PER_PASS: usize = 1024;
/// After a host-side failure (disk full, store busy), rescan this much later.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// After this many requests, once the service has been idle for [`TRIM_AFTER`], the
/// memory a burst left behind is handed back (see [`SharedStore::release_memory`]).
const TRIM_REQUESTS: usize = 64;
const TRIM_AFTER: Duration = Duration::from_secs(1);
/// The main group's task list (every task) is written this long after the first
/// change it is behind, once for all the changes of that while: another group's
/// request never waits for it, and a stream of changes costs one write per interval.
const MAIN_LIST_DELAY: Duration = Duration::from_millis(100);

/// Starts the IPC service.
pub struct IpcService;

/// A running IPC service; [`IpcHandle::shutdown`] stops it cleanly.
pub struct IpcHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl IpcHandle {
    /// Stops after the pass in progress (if any) and waits for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the IPC service task failed");
        }
    }
}

impl IpcService {
    /// Creates and watches every registered group's IPC directories, applies what is
    /// already waiting (written while the daemon was down), writes the snapshots, and
    /// serves until shut down. Every committed change is published on `bus`;
    /// `Topic::Groups` on `bus` (e.g. from the CLI) makes new groups' directories
    /// appear and be watched without a restart.
    pub async fn start(
        paths: Paths,
        store: SharedStore,
        config: &Config,
        bus: broadcast::Sender<Topic>,
    ) -> anyhow::Result<IpcHandle> {
        let env = Env {
            paths,
            default_trigger: config.default_trigger(),
            timezone: config.timezone,
            limits: config.ipc_limits,
        };
        Self::start_with(env, store, bus).await
    }

    /// [`IpcService::start`] with the settings spelled out.
    pub async fn start_with(
        env: Env,
        store: SharedStore,
        bus: broadcast::Sender<Topic>,
    ) -> anyhow::Result<IpcHandle> {
        let root = env.paths.ipc_root();
        let ipc = SafeDir::open_trusted(&root, true)
            .with_context(|| format!("cannot open {}", root.display()))?;
        let quarantine = Quarantine::open(&ipc, env.limits.quarantine)
            .with_context(|| format!("cannot open {}/errors", root.display()))?;
        let watcher = Watcher::new().context("cannot start the IPC watcher")?;
        let writer = snapshots::Writer::open(&env.paths)
            .with_context(|| format!("cannot open {}", env.paths.snapshot_cache_dir().display()))?;
        let mut svc = Service {
            bus_rx: bus.subscribe(),
            bus,
            env,
            store,
            ipc: Arc::new(ipc),
            quarantine: Arc::new(quarantine),
            watcher,
            registered: Registered::default(),
            dirs: Arc::new(BTreeMap::new()),
            damaged: BTreeSet::new(),
            pending: Pending::default(),
            writer: Arc::new(Mutex::new(writer)),
            own: OwnEchoes::default(),
            resync: true,
            rescan: true,
            refresh: Kinds::ALL,
            retry_at: None,
            since_trim: 0,
            trim_at: None,
            main_due: None,
            main_job: None,
        };
        svc.prepare().await;
        // At start-up every snapshot is there before we return, main's list included.
        let _ = tokio::task::spawn_blocking(svc.main_list_writer()).await;
        svc.arm_trim();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(svc.run(stop_rx));
        Ok(IpcHandle { stop, task })
    }
}

struct Service {
    env: Env,
    store: SharedStore,
    bus: broadcast::Sender<Topic>,
    bus_rx: broadcast::Receiver<Topic>,
    /// `data/ipc/` (the owner's).
    ipc: Arc<SafeDir>,
    quarantine: Arc<Quarantine>,
    watcher: Watcher,
    /// Registered groups, as last read from the store.
    registered: Registered,
    /// Verified, watched directories of the registered groups.
    dirs: Arc<BTreeMap<FolderName, Arc<GroupDirs>>>,
    /// Groups whose directories were reported gone: re-verify them.
    damaged: BTreeSet<String>,
    pending: Pending,
    writer: Arc<Mutex<snapshots::Writer>>,
    /// Topics we published and will receive back on our own subscription.
    own: OwnEchoes,
    resync: bool,
    rescan: bool,
    /// Snapshot kinds to re-render for every group.
    refresh: Kinds,
    retry_at: Option<Instant>,
    /// Requests handled since memory was last released.
    since_trim: usize,
    /// When to release memory (set once a burst has gone quiet).
    trim_at: Option<Instant>,
    /// When to write the main group's task list (it is behind its chunks).
    main_due: Option<Instant>,
    /// The main group's task list being written, on the blocking pool.
    main_job: Option<JoinHandle<()>>,
}

/// The registered groups the service watches, and which one is main.
#[derive(Default)]
pub(crate) struct Registered(BTreeMap<FolderName, bool>);

impl Registered {
    pub(crate) fn contains(&self, folder: &FolderName) -> bool {
        self.0.contains_key(folder)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn main(&self) -> Option<&FolderName> {
        self.0.iter().find(|(_, is_main)| **is_main).map(|(f, _)| f)
    }

    fn folders(&self) -> impl Iterator<Item = &FolderName> {
        self.0.keys()
    }

    /// Records `folder` (main or not); returns whether that is news.
    fn set(&mut self, folder: &FolderName, is_main: bool) -> bool {
        self.0.insert(folder.clone(), is_main) != Some(is_main)
    }

    fn remove(&mut self, folder: &FolderName) {
        self.0.remove(folder);
    }
}

/// How many of each topic we published and have not yet received back: the bus
/// echoes our own messages to our own subscription, and those are not news.
#[derive(Default)]
struct OwnEchoes {
    tasks: usize,
    groups: usize,
    skills: usize,
    outbox: usize,
}

impl OwnEchoes {
    fn count(&mut self, t: Topic) -> &mut usize {
        match t {
            Topic::Tasks => &mut self.tasks,
            Topic::Groups => &mut self.groups,
            Topic::Skills => &mut self.skills,
            Topic::Outbox => &mut self.outbox,
        }
    }

    /// We published `t`.
    fn sent(&mut self, t: Topic) {
        *self.count(t) += 1;
    }

    /// `t` arrived: whether it is the echo of one we published.
    fn is_echo(&mut self, t: Topic) -> bool {
        let n = self.count(t);
        let echo = *n > 0;
        *n = n.saturating_sub(1);
        echo
    }
}

impl Service {
    /// Does everything that is pending without waiting for events.
    async fn prepare(&mut self) {
        if self.resync {
            self.resync = false;
            self.sync_groups().await;
        }
        if !self.damaged.is_empty() {
            for folder in std::mem::take(&mut self.damaged) {
                if let Ok(f) = FolderName::parse(&folder)
                    && self.registered.contains(&f)
                {
                    self.repair(&f).await;
                }
            }
        }
        if self.rescan {
            self.rescan = false;
            let mut found = Vec::new();
            for d in self.dirs.values() {
                d.scan(&mut found);
            }
            found.extend(watcher::scan_unregistered(&self.ipc, &self.registered));
            for s in found {
                self.on_signal(s);
            }
        }
        if self.refresh != Kinds::default() {
            let kinds = std::mem::take(&mut self.refresh);
            self.refresh_all(kinds).await;
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(groups = self.registered.len(), "IPC watcher running");
        loop {
            if self.pending.is_empty() {
                let retry = until(self.retry_at);
                let trim = until(self.trim_at);
                let main_due = until(self.main_due);
                tokio::select! {
                    // A dropped handle stops the service like an explicit shutdown.
                    r = stop.changed() => if r.is_err() { break },
                    signals = self.watcher.next() => {
                        for s in signals {
                            self.on_signal(s);
                        }
                    }
                    t = self.bus_rx.recv() => self.on_topic(t),
                    _ = retry => {
                        // Re-verify every group's directories too: a repair that lost
                        // a race with an agent is retried here.
                        self.retry_at = None;
                        self.resync = true;
                        self.rescan = true;
                    }
                    _ = trim => {
                        self.trim_at = None;
                        self.since_trim = 0;
                        let store = self.store.clone();
                        let _ = tokio::task::spawn_blocking(move || store.release_memory()).await;
                        continue;
                    }
                    _ = main_due => {
                        self.main_due = None;
                        self.main_job = Some(tokio::task::spawn_blocking(self.main_list_writer()));
                        continue;
                    }
                    _ = finished(&mut self.main_job) => {
                        self.main_job = None;
                        self.schedule_main_list();
                        continue;
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
            for s in self.watcher.ready() {
                self.on_signal(s);
            }
            loop {
                match self.bus_rx.try_recv() {
                    Ok(t) => self.on_topic(Ok(t)),
                    Err(TryRecvError::Lagged(n)) => self.on_topic(Err(RecvError::Lagged(n))),
                    Err(_) => break,
                }
            }
            self.prepare().await;
            if !self.pending.is_empty() {
                self.pass().await;
            }
            self.arm_trim();
            self.schedule_main_list();
        }
        // What the main group's list is behind is written before we stop.
        if self.main_job.is_some() {
            finished(&mut self.main_job).await;
        }
        let _ = tokio::task::spawn_blocking(self.main_list_writer()).await;
        tracing::info!("IPC watcher stopped");
    }

    /// Arms the memory release once enough work was done since the last one.
    fn arm_trim(&mut self) {
        if self.since_trim >= TRIM_REQUESTS {
            // Re-armed by every pass: fires once the burst has been quiet a while.
            self.trim_at = Some(Instant::now() + TRIM_AFTER);
        }
    }

    /// Arms the main group's list write if the list is behind and none is due or
    /// running (one running write at a time; what changes meanwhile is written next).
    fn schedule_main_list(&mut self) {
        if self.main_due.is_none()
            && self.main_job.is_none()
            && self.writer.lock_ignoring_poison().main_pending()
        {
            self.main_due = Some(Instant::now() + MAIN_LIST_DELAY);
        }
    }

    /// What writes the main group's task list (on the blocking pool).
    fn main_list_writer(&self) -> impl FnOnce() + Send + 'static {
        let (writer, dirs) = (self.writer.clone(), self.dirs.clone());
        let main = self.registered.main().cloned();
        move || {
            if let Some(main) = main {
                snapshots::Writer::write_main_tasks(&writer, &dirs, &main);
            }
        }
    }

    fn on_signal(&mut self, s: Signal) {
        match s {
            Signal::File {
                folder,
                sub,
                name,
                created,
            } => {
                if created && self.still_being_written(&folder, sub, &name) {
                    return;
                }
                self.pending.insert(folder, sub, name)
            }
            Signal::DirGone(folder) => {
                self.damaged.insert(folder);
            }
            Signal::Rescan => {
                self.resync = true;
                self.rescan = true;
            }
        }
    }

    /// A regular file just created by `open(O_CREAT)` may still be being written: wait
    /// for its close-write event. Anything else (a link, a FIFO, a directory, a hard
    /// link to a finished file) is ready now.
    fn still_being_written(&self, folder: &str, sub: &str, name: &std::ffi::OsStr) -> bool {
        let Some(d) = FolderName::parse(folder)
            .ok()
            .and_then(|f| self.dirs.get(&f).cloned())
        else {
            return false;
        };
        d.sub(sub).stat(name).is_ok_and(|st| {
            st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG && st.st_nlink == 1
        })
    }

    fn on_topic(&mut self, t: Result<Topic, RecvError>) {
        let topic = match t {
            Ok(t) => t,
            Err(RecvError::Lagged(_)) => {
                self.own = OwnEchoes::default();
                self.resync = true;
                self.refresh = Kinds::ALL;
                return;
            }
            Err(RecvError::Closed) => return,
        };
        if self.own.is_echo(topic) {
            return;
        }
        match topic {
            Topic::Tasks => self.refresh.tasks = true,
            Topic::Skills => self.refresh.skills = true,
            Topic::Groups => {
                self.resync = true;
                self.refresh.groups = true;
            }
            Topic::Outbox => {}
        }
    }

    fn publish(&mut self, topics: &[Topic]) {
        for &t in topics {
            if self.bus.send(t).is_ok() {
                self.own.sent(t);
            }
        }
    }

    /// Opens (creating, repairing) and watches a group's directories; queues what is
    /// waiting in them. Returns false (and schedules a retry) on failure.
    fn attach(&mut self, folder: &FolderName) -> bool {
        self.watcher.unwatch_group(folder.as_str());
        let mut dirs = (*self.dirs).clone();
        dirs.remove(folder);
        let opened = GroupDirs::open(&self.ipc, &self.quarantine, folder);
        let ok = match opened {
            Ok((d, _)) => match self.watcher.watch_group(&d) {
                Ok(()) => {
                    let mut found = Vec::new();
                    d.scan(&mut found);
                    dirs.insert(folder.clone(), Arc::new(d));
                    for s in found {
                        self.on_signal(s);
                    }
                    true
                }
                Err(e) => {
                    tracing::error!(%folder, error = %e, "cannot watch the group's IPC directories");
                    false
                }
            },
            Err(e) => {
                tracing::error!(%folder, error = %e, "cannot create the group's IPC directories");
                false
            }
        };
        if !ok {
            // Repaired again when the retry timer fires: an attacker who wins the race
            // once more (and then stops) must not leave the directory unwatched.
            self.damaged.insert(folder.as_str().to_owned());
            self.retry_at = Some(Instant::now() + RETRY_AFTER);
        }
        self.dirs = Arc::new(dirs);
        self.writer.lock_ignoring_poison().forget(folder);
        ok
    }

    /// A watched directory of `folder` was moved or deleted: if it is really gone
    /// (or replaced), re-open the group's directories and re-render its snapshots.
    async fn repair(&mut self, folder: &FolderName) {
        if self.dirs.get(folder).is_some_and(|d| d.intact()) {
            return;
        }
        tracing::warn!(%folder, "a group's IPC directory was moved, deleted or replaced; repairing");
        if self.attach(folder) {
            self.render_for(vec![folder.clone()], Kinds::ALL).await;
        }
    }

    /// Makes the watched set match the registered groups: new groups get their
    /// directories, watches, a scan and snapshots; removed ones lose their watches.
    async fn sync_groups(&mut self) {
        let list = match self.store.call(|s| groups::list(s.conn())).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot list groups for the IPC watcher");
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                return;
            }
        };
        let now: BTreeMap<FolderName, bool> =
            list.iter().map(|g| (g.folder.clone(), g.is_main)).collect();
        let gone: Vec<FolderName> = self
            .registered
            .folders()
            .filter(|f| !now.contains_key(*f))
            .cloned()
            .collect();
        if !gone.is_empty() {
            let mut dirs = (*self.dirs).clone();
            for f in gone {
                self.watcher.unwatch_group(f.as_str());
                dirs.remove(&f);
                self.registered.remove(&f);
                tracing::info!(folder = %f, "stopped watching an unregistered group's IPC directory");
            }
            self.dirs = Arc::new(dirs);
        }
        let mut fresh = Vec::new();
        for (folder, is_main) in now {
            let changed = self.registered.set(&folder, is_main);
            // Re-check every group: an agent may have replaced a directory.
            let intact = self.dirs.get(&folder).is_some_and(|d| d.intact());
            if (changed || !intact) && self.attach(&folder) {
                fresh.push(folder);
            }
        }
        if !fresh.is_empty() {
            // New groups see everything; the main group's group list changed.
            self.render_for(fresh, Kinds::ALL).await;
            self.refresh.groups = true;
        }
    }

    /// Re-renders `kinds` for every registered group.
    async fn refresh_all(&mut self, kinds: Kinds) {
        let all: Vec<FolderName> = self.registered.folders().cloned().collect();
        self.render_for(all, kinds).await;
        if kinds.tasks {
            // Every task was read and rendered (megabytes with thousands of tasks, at
            // start-up too): hand that back once things are quiet, as after a burst.
            self.since_trim = self.since_trim.max(TRIM_REQUESTS);
        }
    }

    async fn render_for(&mut self, folders: Vec<FolderName>, kinds: Kinds) {
        let paths = self.env.paths.clone();
        let writer = self.writer.clone();
        let store = self.store.clone();
        let dirs = self.dirs.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock_ignoring_poison();
            let rendered = store.blocking(|s| -> Result<Rendered, crate::store::StoreError> {
                let list = groups::list(s.conn())?;
                let main = list.iter().find(|g| g.is_main).map(|g| g.folder.clone());
                let mut out = Vec::new();
                if kinds.tasks {
                    let asked = |f: &FolderName| folders.contains(f);
                    if !writer.built() || main.as_ref().is_some_and(asked) {
                        // Whose tasks changed is unknown (or main lists them all).
                        let files = writer.rebuild_tasks(s.conn())?;
                        for g in list.iter().filter(|g| !g.is_main && asked(&g.folder)) {
                            let file = files
                                .get(&g.folder)
                                .cloned()
                                .unwrap_or_else(snapshots::Writer::empty_tasks);
                            out.push((g.folder.clone(), snapshots::TASKS_FILE, file));
                        }
                    } else {
                        for g in list.iter().filter(|g| !g.is_main && asked(&g.folder)) {
                            let file = writer.update_tasks(s.conn(), &g.folder)?;
                            out.push((g.folder.clone(), snapshots::TASKS_FILE, file));
                        }
                    }
                }
                for g in list.iter().filter(|g| folders.contains(&g.folder)) {
                    snapshots::render(s.conn(), &paths, g, kinds, &mut out)?;
                }
                Ok(out)
            })?;
            // The main group's list follows (see `Service::schedule_main_list`).
            writer.write(&dirs, rendered);
            Ok::<_, crate::store::StoreError>(())
        })
        .await;
        if !matches!(r, Ok(Ok(()))) {
            tracing::error!(result = ?r, "cannot refresh IPC snapshots");
        }
    }

    /// One bounded, fair pass over pending request files.
    async fn pass(&mut self) {
        let batch = self.pending.take_batch(PER_GROUP, PER_PASS);
        self.since_trim += batch.iter().map(|(_, items)| items.len()).sum::<usize>();
        let ctx = PassCtx {
            env: self.env.clone(),
            store: self.store.clone(),
            writer: self.writer.clone(),
            dirs: self.dirs.clone(),
            quarantine: self.quarantine.clone(),
            ipc: self.ipc.clone(),
        };
        // On the multi-threaded runtime the pass runs right here: block_in_place hands
        // this worker's other tasks to another thread, and the request is applied by
        // the thread its inotify event woke. A hop to the blocking pool would add a
        // wake-up of a parked thread to every request that arrives after quiet.
        let result = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_pass(&ctx, batch)))
                    .map_err(|_| "the pass panicked".to_owned())
            }),
            _ => tokio::task::spawn_blocking(move || run_pass(&ctx, batch))
                .await
                .map_err(|e| e.to_string()),
        };
        let (changes, retries) = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "an IPC pass failed");
                (Changes::default(), 1)
            }
        };
        if retries > 0 {
            self.retry_at = Some(Instant::now() + RETRY_AFTER);
        }
        if changes.topics.contains(&Topic::Groups) {
            self.resync = true;
        }
        self.publish(&changes.topics);
    }
}

/// Sleeps until `t`; never wakes without one.
async fn until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Waits for `job` to end (a panic in it is logged); never wakes without one.
async fn finished(job: &mut Option<JoinHandle<()>>) {
    match job {
        Some(h) => {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "writing the main group's task list failed");
            }
        }
        None => std::future::pending().await,
    }
}

/// What a pass on the blocking pool needs.
struct PassCtx {
    env: Env,
    store: SharedStore,
    writer: Arc<Mutex<snapshots::Writer>>,
    dirs: Arc<BTreeMap<FolderName, Arc<GroupDirs>>>,
    quarantine: Arc<Quarantine>,
    ipc: Arc<SafeDir>,
}

/// Applies a batch on a blocking thread: commit each request, re-render the snapshots
/// it changed, then write the responses (so an agent that reads a snapshot after its
/// response sees its own change) and remove the request files.
fn run_pass(ctx: &PassCtx, batch: watcher::Batch) -> (Changes, usize) {
    let mut changes = Changes::default();
    let mut answers = Vec::new();
    let mut retries = 0;
    for (folder_raw, items) in batch {
        let dirs = FolderName::parse(&folder_raw)
            .ok()
            .and_then(|f| ctx.dirs.get(&f).cloned());
        let Some(dirs) = dirs else {
            refuse_unregistered(ctx, &folder_raw, items);
            continue;
        };
        let names: Vec<_> = items.iter().map(|(_, n)| n.clone()).collect();
        let results = apply::commit_batch(&ctx.store, &ctx.env, &dirs, &ctx.quarantine, items);
        for (result, name) in results.into_iter().zip(names) {
            match result {
                Committed::Answered(a) => {
                    changes.merge(a.changes.clone());
                    answers.push((dirs.clone(), a));
                }
                Committed::Gone | Committed::Refused => {}
                Committed::Retry(e) => {
                    tracing::error!(folder = %dirs.folder, request = ?name, error = %e, "IPC request will be retried");
                    retries += 1;
                }
            }
        }
    }
    // The snapshots a requester may read after its answer are written before the
    // answers; the others (the main group's list when main did not ask, a group a task
    // was created for) after them, so an answer never waits for them.
    let asked: BTreeSet<FolderName> = answers.iter().map(|(_, a)| a.folder.clone()).collect();
    let later = render_changed(ctx, &changes, &asked);
    for (dirs, a) in &answers {
        if let Err(e) = apply::finish(dirs, &ctx.quarantine, a) {
            tracing::error!(folder = %a.folder, request = %a.response.id, error = %e, "IPC response will be retried");
            retries += 1;
        }
    }
    later();
    (changes, retries)
}

/// Request files in a directory that is not a registered group's: quarantined, not
/// answered (nobody is there to read an answer).
fn refuse_unregistered(
    ctx: &PassCtx,
    folder: &str,
    items: Vec<(&'static str, std::ffi::OsString)>,
) {
    for (sub, name) in items {
        if let Ok(crate::safe_dir::Lookup::Dir(d)) = ctx.ipc.open_path(&[folder, sub]) {
            let reason = format!("directory {folder:?} is not a registered group's");
            ctx.quarantine.put(folder, &d, &name, &reason);
        }
    }
}

/// Re-renders the snapshots a pass changed and writes those of the groups in `asked`
/// (before their responses are written); returns what writes the rest.
fn render_changed<'a>(
    ctx: &'a PassCtx,
    changes: &Changes,
    asked: &BTreeSet<FolderName>,
) -> impl FnOnce() + 'a {
    let task_change = !changes.tasks.is_empty();
    let groups_change = changes.refresh_groups || changes.topics.contains(&Topic::Groups);
    let mut later: Rendered = Vec::new();
    let mut main_now = None;
    if task_change || groups_change || !changes.skill_folders.is_empty() {
        let mut writer = ctx.writer.lock_ignoring_poison();
        let rendered = ctx.store.blocking(
            |s| -> Result<(Rendered, Option<FolderName>), crate::store::StoreError> {
                let list = groups::list(s.conn())?;
                let main = list.iter().find(|g| g.is_main).map(|g| g.folder.clone());
                let mut out = Vec::new();
                if task_change {
                    let own = |f: &FolderName| list.iter().any(|g| !g.is_main && g.folder == *f);
                    if writer.built() {
                        for (f, ids) in changes.task_folders() {
                            let file = writer.splice_tasks(s.conn(), f, &ids)?;
                            if own(f) {
                                out.push((f.clone(), snapshots::TASKS_FILE, file));
                            }
                        }
                    } else {
                        let files = writer.rebuild_tasks(s.conn())?;
                        for f in changes.task_folders().into_keys().filter(|f| own(f)) {
                            let file = files
                                .get(f)
                                .cloned()
                                .unwrap_or_else(snapshots::Writer::empty_tasks);
                            out.push((f.clone(), snapshots::TASKS_FILE, file));
                        }
                    }
                }
                for g in &list {
                    let kinds = Kinds {
                        tasks: false,
                        groups: g.is_main && groups_change,
                        skills: changes.skill_folders.contains(&g.folder),
                    };
                    if kinds != Kinds::default() {
                        snapshots::render(s.conn(), &ctx.env.paths, g, kinds, &mut out)?;
                    }
                }
                Ok((out, main))
            },
        );
        match rendered {
            Ok((r, main)) => {
                let (now, rest): (Rendered, Rendered) =
                    r.into_iter().partition(|(f, _, _)| asked.contains(f));
                writer.write(&ctx.dirs, now);
                later = rest;
                // The main group reads its own change after its answer; for anyone
                // else's, its list follows later (`Service::schedule_main_list`).
                main_now = main.filter(|m| asked.contains(m));
            }
            Err(e) => tracing::error!(error = %e, "cannot render IPC snapshots"),
        }
    }
    if let Some(main) = main_now {
        snapshots::Writer::write_main_tasks(&ctx.writer, &ctx.dirs, &main);
    }
    move || {
        if !later.is_empty() {
            ctx.writer.lock_ignoring_poison().write(&ctx.dirs, later);
        }
    }
}
