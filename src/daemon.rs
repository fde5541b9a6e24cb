//! `rust_claw run`: the daemon's life cycle, and the wiring of its parts.
//!
//! [`Daemon::start`] connects the modules in the order the data flows — store, change
//! bus, delivery, orchestrator and group queue, scheduler, IPC, channels — and queues
//! whatever was left unanswered by the previous run. [`Daemon::shutdown`] fires the
//! daemon's one [`Shutdown`] and then waits for the parts in the order data flows:
//! intake stops, running turns are interrupted (a scheduled run cut short is recorded
//! as interrupted by shutdown; a chat's messages stay unanswered and are answered after
//! the next start), agent processes end, the outbox gets one last bounded flush — all
//! within about a second. `rust_claw run` holds the root's single-instance lock around
//! all of it; `rust_claw chat` runs the same daemon with the terminal channel.

use std::fs::File;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinSet;

use crate::actions::{self, RegisterGroup};
use crate::agent::runner::Runner;
use crate::agent::{AgentSettings, Agents};
use crate::bus::{self, NoteWatcher, Topic};
use crate::channels::{Channel, Inbound};
use crate::config::Config;
use crate::delivery::Delivery;
use crate::ipc::{IpcHandle, IpcService};
use crate::model::Jid;
use crate::orchestrator::Orchestrator;
use crate::paths::Paths;
use crate::queue::GroupQueue;
use crate::scheduler::{DueRun, Scheduler, SchedulerHandle, SystemClock, TaskSink};
use crate::shutdown::Shutdown;
use crate::store::{SharedStore, Store, StoreError, groups, messages, outbox};

/// An exclusive lock on `store/daemon.lock`, released when dropped (or when the process
/// dies, however it dies: the kernel drops flocks with the last descriptor).
pub struct InstanceLock {
    _lock: Flock<File>,
}

impl InstanceLock {
    pub fn acquire(paths: &Paths) -> Result<InstanceLock> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = paths.daemon_lock();
        crate::safe_dir::ensure_private_dir(&paths.store_dir())
            .with_context(|| format!("cannot create {}", paths.store_dir().display()))?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(InstanceLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => anyhow::bail!(
                "another rust_claw daemon is already running on {} (it holds {}); stop it first",
                paths.root().display(),
                path.display()
            ),
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

/// Registers `AUTO_REGISTER_MAIN_JID` as the main group if no main group exists.
pub(crate) fn auto_register_main(store: &mut Store, config: &Config) -> Result<()> {
    let Some(jid) = config.auto_register_main_jid.clone() else {
        return Ok(());
    };
    let trigger = config.default_trigger();
    let folder = config.main_group_folder.clone();
    let registered = store.write(|tx| {
        if let Some(main) = groups::get_main(tx)? {
            if main.jid != jid {
                tracing::warn!(main = %main.jid, configured = %jid,
                    "AUTO_REGISTER_MAIN_JID differs from the registered main group; keeping the registered one");
            }
            return Ok::<_, actions::ActionError>(None);
        }
        let req = RegisterGroup::main(jid.clone(), "Main", folder);
        actions::register_group(tx, req, &trigger, chrono::Utc::now()).map(Some)
    })?;
    if let Some(g) = registered {
        tracing::info!(jid = %g.jid, folder = %g.folder, "registered the main group from AUTO_REGISTER_MAIN_JID");
    }
    Ok(())
}

/// How long agent sessions may take to end at shutdown (interrupted turns recorded,
/// codex closed) before the rest are killed.
const SESSIONS_GRACE: Duration = Duration::from_millis(700);
/// How long the outbox may take to flush at shutdown (what is left is sent after
/// the next start).
const FLUSH_GRACE: Duration = Duration::from_millis(250);
/// How long the runtime waits for blocking work when the daemon is done.
pub(crate) const RUNTIME_GRACE: Duration = Duration::from_millis(200);

/// Hands due scheduled runs to the group queue.
struct QueueSink(Arc<GroupQueue<Orchestrator>>);

impl TaskSink for QueueSink {
    fn submit(&self, run: DueRun) {
        self.0.enqueue_run(run);
    }
}

/// A running daemon.
pub struct Daemon {
    store: SharedStore,
    orchestrator: Arc<Orchestrator>,
    queue: Arc<GroupQueue<Orchestrator>>,
    delivery: Arc<Delivery>,
    scheduler: SchedulerHandle,
    ipc: IpcHandle,
    _control: NoteWatcher,
    channels: Vec<Arc<dyn Channel>>,
    /// Fired once by [`Daemon::shutdown`]; every long-lived part watches it.
    stop: Shutdown,
    delivery_task: tokio::task::JoinHandle<()>,
    background: JoinSet<()>,
    ingested: Arc<IntakeCount>,
    /// Removes agent containers still running at shutdown.
    runner: Arc<dyn Runner>,
}

/// The outbox is sent when anything queues a reply (directly or through the bus).
async fn wake_delivery_on_outbox(mut topics: broadcast::Receiver<Topic>, delivery: Arc<Delivery>) {
    loop {
        match topics.recv().await {
            Ok(Topic::Outbox) | Err(broadcast::error::RecvError::Lagged(_)) => delivery.wake(),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The intake: every message a channel receives is stored, then its group is woken.
/// Returns the channels' sender and the count of messages taken in.
fn spawn_intake(
    background: &mut JoinSet<()>,
    orchestrator: Arc<Orchestrator>,
    queue: Arc<GroupQueue<Orchestrator>>,
) -> (mpsc::Sender<Inbound>, Arc<IntakeCount>) {
    let (tx, mut rx) = mpsc::channel::<Inbound>(1024);
    let ingested = Arc::new(IntakeCount::default());
    let counter = ingested.clone();
    background.spawn(async move {
        while let Some(m) = rx.recv().await {
            match orchestrator.ingest(m).await {
                Ok(Some(folder)) => queue.enqueue_messages(&folder),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot store an incoming message"),
            }
            counter.add_one();
        }
    });
    (tx, ingested)
}

/// Connects every channel to the intake and lets delivery send through it.
async fn connect_channels(
    channels: &[Arc<dyn Channel>],
    intake: mpsc::Sender<Inbound>,
    delivery: &Delivery,
) -> Result<()> {
    for channel in channels {
        channel
            .connect(intake.clone())
            .await
            .with_context(|| format!("cannot connect the {} channel", channel.name()))?;
        delivery.add_channel(channel.clone());
        tracing::info!(channel = channel.name(), "channel connected");
    }
    Ok(())
}

/// How many messages the intake has taken in from channels (stored, or found to
/// belong to no group), with a wake-up for those waiting on the count.
#[derive(Default)]
struct IntakeCount {
    taken: AtomicU64,
    changed: Notify,
}

impl IntakeCount {
    fn add_one(&self) {
        self.taken.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    async fn wait_for(&self, n: u64) {
        loop {
            let changed = self.changed.notified();
            if self.taken.load(Ordering::SeqCst) >= n {
                return;
            }
            changed.await;
        }
    }
}

impl Daemon {
    /// Starts every part of the daemon on `store` with `channels`, running agents as
    /// the configuration says.
    pub(crate) async fn start(
        paths: &Paths,
        config: Arc<Config>,
        store: Store,
        channels: Vec<Arc<dyn Channel>>,
    ) -> Result<Daemon> {
        let settings =
            AgentSettings::from_config(&config).context("cannot find the rust_claw executable")?;
        let runner = crate::agent::runners::from_config(paths, &config, &settings.tools_exe);
        Daemon::start_with(paths, config, store, channels, settings, runner).await
    }

    /// [`Daemon::start`] with the agent settings and runner given (tests run the daemon
    /// in-process, where the current executable is not `rust_claw`).
    pub async fn start_with(
        paths: &Paths,
        config: Arc<Config>,
        store: Store,
        channels: Vec<Arc<dyn Channel>>,
        settings: AgentSettings,
        runner: Arc<dyn Runner>,
    ) -> Result<Daemon> {
        let store = SharedStore::new(store);
        // Containers a killed previous run left behind; then say now (not at the first
        // message) when agents cannot run, and how to fix it.
        runner.cleanup().await;
        if let Err(e) = runner.preflight().await {
            tracing::error!("agents cannot run: {e}");
        }
        // What changed (tasks, groups, skills, outbox): from IPC, the orchestrator and,
        // through the control watcher, CLI processes.
        let (bus, _) = broadcast::channel::<Topic>(1024);
        let stop = Shutdown::new();
        let mut background = JoinSet::new();

        let delivery = Delivery::new(store.clone());
        let agents = Agents::new(paths.clone(), settings, runner.clone(), store.clone());
        let orchestrator = Arc::new(Orchestrator::new(
            config.clone(),
            store.clone(),
            agents,
            delivery.clone(),
            bus.clone(),
            stop.clone(),
        ));
        let queue = GroupQueue::new(
            orchestrator.clone(),
            config.max_concurrent_agents,
            Duration::from_millis(config.idle_timeout_ms),
        );

        // Watch before reading state, so no change note falls between the two.
        let control = bus::watch(paths, bus.clone())?;
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(SystemClock),
            Arc::new(QueueSink(queue.clone())),
            bus.subscribe(),
        )
        .spawn_until(stop.clone());
        let ipc = IpcService::start(paths.clone(), store.clone(), &config, bus.clone()).await?;

        background.spawn(wake_delivery_on_outbox(bus.subscribe(), delivery.clone()));
        let delivery_task = tokio::spawn(delivery.clone().run(stop.clone()));

        let (tx, ingested) = spawn_intake(&mut background, orchestrator.clone(), queue.clone());
        connect_channels(&channels, tx, &delivery).await?;

        background.spawn(crate::pruner::run(
            store.clone(),
            config.retention,
            stop.clone(),
        ));

        // Recovery: what the previous run left unanswered or unsent.
        for folder in orchestrator.groups_with_unanswered().await? {
            tracing::info!(group = %folder, "unanswered messages from before the restart");
            queue.enqueue_messages(&folder);
        }
        delivery.wake();

        Ok(Daemon {
            store,
            orchestrator,
            queue,
            delivery,
            scheduler,
            ipc,
            _control: control,
            channels,
            stop,
            delivery_task,
            background,
            ingested,
            runner,
        })
    }

    /// The orchestrator's counters.
    pub fn stats(&self) -> &crate::orchestrator::Stats {
        self.orchestrator.stats()
    }

    /// What the daemon is doing, for `rust_claw status` (see [`crate::status`]).
    pub(crate) fn live_view(
        &self,
        max_agents: usize,
    ) -> impl Fn() -> crate::status::LiveStatus + Send + Sync + 'static {
        let (queue, orchestrator) = (self.queue.clone(), self.orchestrator.clone());
        let started_at = chrono::Utc::now();
        move || {
            let stats = orchestrator.stats();
            crate::status::LiveStatus::now(
                started_at,
                max_agents,
                queue.active(),
                queue.activity(),
                stats,
            )
        }
    }

    /// The store the daemon writes (tests and benchmarks inspect it).
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// How many groups hold an agent slot right now.
    pub fn active_agents(&self) -> usize {
        self.queue.active()
    }

    /// Waits until `n` messages from channels have been taken in (stored, or found to
    /// belong to no group).
    pub async fn wait_ingested(&self, n: u64) {
        self.ingested.wait_for(n).await
    }

    /// Waits until every message of `chat` is answered and every reply to it sent.
    pub async fn wait_answered(&self, chat: &Jid) {
        loop {
            let delivered = self.delivery.delivered();
            let c = chat.clone();
            let settled = self
                .store
                .call(move |s| -> Result<bool, StoreError> {
                    let conn = s.conn();
                    Ok(
                        messages::latest_id(conn, &c)? <= messages::cursor(conn, &c)?
                            && outbox::pending_for(conn, &c)? == 0,
                    )
                })
                .await;
            match settled {
                Ok(true) => return,
                Ok(false) => delivered.await,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the store");
                    return;
                }
            }
        }
    }

    /// Stops intake, interrupts running turns and ends the agents, flushes the outbox
    /// (briefly), stops the rest: about a second at most.
    pub async fn shutdown(mut self) {
        // The orchestrator interrupts running turns, the scheduler and the delivery
        // loop stop between passes.
        self.stop.trigger();
        for channel in &self.channels {
            channel.disconnect().await;
        }
        self.scheduler.shutdown().await;
        self.queue.shutdown(SESSIONS_GRACE).await;
        // One last pass for the replies of the turns that just finished; the loop has
        // stopped first so no item is sent by two passes at once.
        let _ = (&mut self.delivery_task).await;
        let mut retries = std::collections::HashMap::new();
        let _ = tokio::time::timeout(FLUSH_GRACE, self.delivery.pass(&mut retries)).await;
        self.ipc.shutdown().await;
        self.background.shutdown().await;
        self.runner.cleanup().await;
    }
}

pub(crate) fn run(paths: &Paths, config: &Config) -> Result<()> {
    let _lock = InstanceLock::acquire(paths)?;
    // At most two glibc malloc arenas: each of the blocking pool's threads would
    // otherwise get one of its own (up to 8 per core), and every arena keeps free
    // memory a burst left behind. The daemon's threads rarely allocate at once.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread is
    // started.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
    let mut store = Store::open(&paths.database())
        .with_context(|| format!("cannot open the store {}", paths.database().display()))?;
    auto_register_main(&mut store, config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = Arc::new(config.clone());
    let done = runtime.block_on(async {
        let stop = Shutdown::new();
        stop.on_signals()
            .context("cannot install the SIGINT/SIGTERM handlers")?;
        let discord = crate::channels::discord::from_config(&config)?;
        let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
        match &discord {
            Some(d) => channels.push(d.clone()),
            None => tracing::info!(
                "Discord is off: no DISCORD_BOT_TOKEN (IPC, the scheduler and `rust_claw chat` still work)"
            ),
        }
        let daemon = Daemon::start(paths, config.clone(), store, channels).await?;
        if let Some(d) = &discord {
            d.set_group_dirs(crate::channels::discord::group_dirs(
                daemon.store().clone(),
                paths.clone(),
            ));
        }
        let _status = crate::status::serve(paths, daemon.live_view(config.max_concurrent_agents))
            .inspect_err(
                |e| tracing::warn!(error = %e, "`rust_claw status` will not see this daemon"),
            );
        crate::sd_notify::notify(match &discord {
            Some(d) if d.retrying() => "READY=1\nSTATUS=serving; Discord unreachable, retrying",
            _ => "READY=1\nSTATUS=serving",
        });
        let _watchdog = crate::sd_notify::spawn_watchdog(daemon.store().clone());
        tracing::info!(root = %paths.root().display(), "rust_claw daemon started");
        // A Discord connection that ended for good (bad token, intent off) ends `run`.
        let fatal = async {
            match &discord {
                Some(d) => Some(d.fatal().await),
                None => std::future::pending().await,
            }
        };
        let fatal = tokio::select! {
            _ = stop.triggered() => None,
            why = fatal => why,
        };
        crate::sd_notify::notify("STOPPING=1");
        daemon.shutdown().await;
        tracing::info!("stopped");
        match fatal {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => Ok::<_, anyhow::Error>(()),
        }
    });
    // Nothing may hold the exit (a blocking read, a stuck store call).
    runtime.shutdown_timeout(RUNTIME_GRACE);
    done
}
