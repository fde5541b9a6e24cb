//! `rust_claw run`: the daemon's life cycle.
//!
//! Holds the root's single-instance lock for its whole life, opens the store,
//! registers the main group from `AUTO_REGISTER_MAIN_JID` if it is missing, then
//! serves until SIGTERM or SIGINT.

use std::fs::File;

use anyhow::{Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::actions::{self, RegisterGroup};
use crate::config::Config;
use crate::paths::Paths;
use crate::store::{SharedStore, Store, groups};

/// An exclusive lock on `store/daemon.lock`, released when dropped (or when the process
/// dies, however it dies: the kernel drops flocks with the last descriptor).
pub struct InstanceLock {
    _lock: Flock<File>,
}

impl InstanceLock {
    pub fn acquire(paths: &Paths) -> Result<InstanceLock> {
        let path = paths.daemon_lock();
        std::fs::create_dir_all(paths.store_dir())
            .with_context(|| format!("cannot create {}", paths.store_dir().display()))?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
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
pub fn auto_register_main(store: &mut Store, config: &Config) -> Result<()> {
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
        let req = RegisterGroup {
            jid: jid.clone(),
            name: "Main".to_owned(),
            folder,
            trigger: None,
            requires_trigger: false,
            is_main: true,
            container_config: None,
        };
        actions::register_group(tx, req, &trigger, chrono::Utc::now()).map(Some)
    })?;
    if let Some(g) = registered {
        tracing::info!(jid = %g.jid, folder = %g.folder, "registered the main group from AUTO_REGISTER_MAIN_JID");
    }
    Ok(())
}

pub fn run(paths: &Paths, config: &Config) -> Result<()> {
    let _lock = InstanceLock::acquire(paths)?;
    let mut store = Store::open(&paths.database())
        .with_context(|| format!("cannot open the store {}", paths.database().display()))?;
    auto_register_main(&mut store, config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let store = SharedStore::new(store);
    runtime.block_on(async {
        // What changed (tasks, groups, skills, outbox), for every part of the daemon.
        let (bus, _) = tokio::sync::broadcast::channel::<crate::control::Topic>(1024);
        let ipc = crate::ipc::IpcService::start(paths.clone(), store.clone(), config, bus.clone())
            .await?;
        tracing::info!(root = %paths.root().display(), "rust_claw daemon started");
        if config.discord_bot_token.is_none() {
            tracing::info!("no DISCORD_BOT_TOKEN configured: running without a Discord channel");
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        ipc.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
