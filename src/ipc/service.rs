//! The IPC service: one async task that turns watcher signals into bounded passes of
//! request applications on the blocking pool, keeps the snapshots current, and tells
//! the rest of the daemon what changed.
//!
//! Idle, it sleeps in one `select!` on three event sources (inotify signals, the
//! daemon's change bus, shutdown) — there is no timer unless a host-side failure asked
//! for a retry, so an idle daemon with any number of groups costs no CPU.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use notify::RecommendedWatcher;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::apply::{self, Changes, Committed, Env};
use super::snapshots::{self, Kinds, Rendered};
use super::watcher::{self, Pending, Signal};
use crate::config::Config;
use crate::control::Topic;
use crate::model::FolderName;
use crate::paths::Paths;
use crate::store::{SharedStore, groups};

/// At most this many files of one group per pass (fairness).
const PER_GROUP: usize = 64;
/// At most this many files per pass (bounds snapshot and shutdown latency).
const PER_PASS: usize = 1024;
/// After a host-side failure (disk full, store busy), rescan this much later.
const RETRY_AFTER: Duration = Duration::from_secs(1);

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
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let (tx, signals) = mpsc::unbounded_channel();
        let watcher = watcher::start(&env.paths, tx).context("cannot start the IPC watcher")?;
        let mut svc = Service {
            bus_rx: bus.subscribe(),
            bus,
            env,
            store,
            watcher,
            signals,
            groups: BTreeMap::new(),
            pending: Pending::default(),
            writer: Arc::new(Mutex::new(snapshots::Writer::default())),
            own: [0; 4],
            resync: true,
            rescan: true,
            refresh: Kinds::ALL,
            retry_at: None,
        };
        svc.prepare().await;
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
    watcher: RecommendedWatcher,
    signals: mpsc::UnboundedReceiver<Signal>,
    /// Registered groups whose directories are watched.
    groups: BTreeMap<FolderName, bool>,
    pending: Pending,
    writer: Arc<Mutex<snapshots::Writer>>,
    /// Topics we published and will receive back on our own subscription.
    own: [usize; 4],
    resync: bool,
    rescan: bool,
    /// Snapshot kinds to re-render for every group.
    refresh: Kinds,
    retry_at: Option<Instant>,
}

fn slot(t: Topic) -> usize {
    match t {
        Topic::Tasks => 0,
        Topic::Groups => 1,
        Topic::Skills => 2,
        Topic::Outbox => 3,
    }
}

impl Service {
    /// Does everything that is pending without waiting for events.
    async fn prepare(&mut self) {
        if self.resync {
            self.resync = false;
            self.sync_groups().await;
        }
        if self.rescan {
            self.rescan = false;
            for s in watcher::scan_all(&self.env.paths) {
                self.on_signal(s);
            }
        }
        if self.refresh != Kinds::default() {
            let kinds = std::mem::take(&mut self.refresh);
            self.refresh_all(kinds).await;
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(groups = self.groups.len(), "IPC watcher running");
        loop {
            if self.pending.is_empty() {
                let retry_at = self.retry_at;
                let retry = async move {
                    match retry_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    // A dropped handle stops the service like an explicit shutdown.
                    r = stop.changed() => if r.is_err() { break },
                    Some(s) = self.signals.recv() => self.on_signal(s),
                    t = self.bus_rx.recv() => self.on_topic(t),
                    _ = retry => {
                        self.retry_at = None;
                        self.rescan = true;
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
            while let Ok(s) = self.signals.try_recv() {
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
        }
        tracing::info!("IPC watcher stopped");
    }

    fn on_signal(&mut self, s: Signal) {
        match s {
            Signal::File { folder, sub, name } => self.pending.insert(folder, sub, name),
            Signal::DirGone => self.resync = true,
            Signal::Rescan => {
                self.resync = true;
                self.rescan = true;
            }
        }
    }

    fn on_topic(&mut self, t: Result<Topic, RecvError>) {
        let topic = match t {
            Ok(t) => t,
            Err(RecvError::Lagged(_)) => {
                self.own = [0; 4];
                self.resync = true;
                self.refresh = Kinds::ALL;
                return;
            }
            Err(RecvError::Closed) => return,
        };
        let own = &mut self.own[slot(topic)];
        if *own > 0 {
            *own -= 1;
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
                self.own[slot(t)] += 1;
            }
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
            .groups
            .keys()
            .filter(|f| !now.contains_key(*f))
            .cloned()
            .collect();
        for f in gone {
            watcher::unwatch_group(&mut self.watcher, &self.env.paths, &f);
            self.groups.remove(&f);
            tracing::info!(folder = %f, "stopped watching an unregistered group's IPC directory");
        }
        let mut fresh = Vec::new();
        for (folder, is_main) in now {
            // Re-check every group: an agent may have replaced a directory.
            let recreated = match watcher::ensure_group_dirs(&self.env.paths, &folder) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(%folder, error = %e, "cannot create the group's IPC directories");
                    self.retry_at = Some(Instant::now() + RETRY_AFTER);
                    continue;
                }
            };
            let changed = self.groups.insert(folder.clone(), is_main) != Some(is_main);
            if recreated {
                // A fresh directory needs a fresh watch (the old one died with it).
                watcher::unwatch_group(&mut self.watcher, &self.env.paths, &folder);
            }
            if (changed || recreated)
                && let Err(e) = watcher::watch_group(&mut self.watcher, &self.env.paths, &folder)
            {
                tracing::error!(%folder, error = %e, "cannot watch the group's IPC directories");
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
            if changed || recreated {
                fresh.push(folder);
            }
        }
        let mut found = Vec::new();
        for f in &fresh {
            watcher::scan_folder(&self.env.paths, f.as_str(), &mut found);
        }
        for s in found {
            self.on_signal(s);
        }
        if !fresh.is_empty() {
            // New groups see everything; the main group's group list changed.
            self.render_for(fresh, Kinds::ALL).await;
            self.refresh.groups = true;
        }
    }

    /// Re-renders `kinds` for every registered group.
    async fn refresh_all(&mut self, kinds: Kinds) {
        let all: Vec<FolderName> = self.groups.keys().cloned().collect();
        self.render_for(all, kinds).await;
    }

    async fn render_for(&mut self, folders: Vec<FolderName>, kinds: Kinds) {
        let paths = self.env.paths.clone();
        let writer = self.writer.clone();
        let store = self.store.clone();
        let r = tokio::task::spawn_blocking(move || {
            let rendered = store.blocking(|s| -> Result<Rendered, crate::store::StoreError> {
                let mut out = Vec::new();
                for g in groups::list(s.conn())? {
                    if folders.contains(&g.folder) {
                        snapshots::render(s.conn(), &paths, &g, kinds, &mut out)?;
                    }
                }
                Ok(out)
            })?;
            writer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write(rendered);
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
        let env = self.env.clone();
        let store = self.store.clone();
        let writer = self.writer.clone();
        let result =
            tokio::task::spawn_blocking(move || run_pass(&store, &env, &writer, batch)).await;
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

/// Applies a batch on a blocking thread: commit each request, re-render the snapshots
/// it changed, then write the responses (so an agent that reads a snapshot after its
/// response sees its own change) and remove the request files.
fn run_pass(
    store: &SharedStore,
    env: &Env,
    writer: &Mutex<snapshots::Writer>,
    batch: watcher::Batch,
) -> (Changes, usize) {
    let mut changes = Changes::default();
    let mut answers = Vec::new();
    let mut retries = 0;
    for (folder_raw, items) in batch {
        let folder = match FolderName::parse(&folder_raw) {
            Ok(f) => f,
            Err(e) => {
                for (sub, name) in items {
                    let path = env.paths.ipc_root().join(&folder_raw).join(sub).join(&name);
                    let reason =
                        format!("directory {folder_raw:?} is not a registered group ({e})");
                    super::quarantine::quarantine(&env.paths, &folder_raw, &path, &name, &reason);
                }
                continue;
            }
        };
        let dir = env.paths.ipc_dir(&folder);
        let files = items
            .iter()
            .map(|(sub, name)| dir.join(sub).join(name))
            .collect();
        for (result, (_, name)) in apply::commit_batch(store, env, &folder, files)
            .into_iter()
            .zip(&items)
        {
            match result {
                Ok(Committed::Answered(a)) => {
                    changes.merge(a.changes.clone());
                    answers.push(a);
                }
                Ok(Committed::Gone | Committed::Refused) => {}
                Err(e) => {
                    tracing::error!(%folder, request = %name, error = %e, "IPC request will be retried");
                    retries += 1;
                }
            }
        }
    }
    let shown_changed = !changes.task_folders.is_empty()
        || !changes.skill_folders.is_empty()
        || changes.refresh_groups
        || changes.topics.contains(&Topic::Groups);
    if shown_changed {
        let rendered = store.blocking(|s| -> Result<Rendered, crate::store::StoreError> {
            let mut out = Vec::new();
            let task_change = !changes.task_folders.is_empty();
            let groups_change = changes.refresh_groups || changes.topics.contains(&Topic::Groups);
            for g in groups::list(s.conn())? {
                let kinds = Kinds {
                    tasks: task_change && (g.is_main || changes.task_folders.contains(&g.folder)),
                    groups: g.is_main && groups_change,
                    skills: changes.skill_folders.contains(&g.folder),
                };
                if kinds != Kinds::default() {
                    snapshots::render(s.conn(), &env.paths, &g, kinds, &mut out)?;
                }
            }
            Ok(out)
        });
        match rendered {
            Ok(r) => writer.lock().unwrap_or_else(|p| p.into_inner()).write(r),
            Err(e) => tracing::error!(error = %e, "cannot render IPC snapshots"),
        }
    }
    for a in &answers {
        if let Err(e) = apply::finish(env, a) {
            tracing::error!(folder = %a.folder, request = %a.name, error = %e, "IPC response will be retried");
            retries += 1;
        }
    }
    (changes, retries)
}
