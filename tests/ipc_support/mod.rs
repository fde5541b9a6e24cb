//! A temporary RustClaw root with a real SQLite store and the IPC service running.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use rust_claw::actions::{self, RegisterGroup};
use rust_claw::bus::Topic;
use rust_claw::ipc::apply::Env;
use rust_claw::ipc::protocol::Response;
use rust_claw::ipc::{IpcHandle, IpcService};
use rust_claw::model::{FolderName, Jid};
use rust_claw::paths::Paths;
use rust_claw::store::{SharedStore, Store};
use serde_json::Value;
use tokio::sync::broadcast;

pub const MAIN: &str = "111111111111111111@discord";
pub const OPS: &str = "222222222222222222@discord";
pub const DEV: &str = "333333333333333333@discord";

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub paths: Paths,
    pub store: SharedStore,
    pub bus: broadcast::Sender<Topic>,
    pub handle: Option<IpcHandle>,
    /// Limits for the next [`Rig::start`].
    pub limits: rust_claw::ipc::Limits,
}

pub fn folder(s: &str) -> FolderName {
    FolderName::parse(s).unwrap()
}

impl Rig {
    /// A root with groups main (main), ops and dev, and the service running.
    pub async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let mut store = Store::open(&paths.database()).unwrap();
        for (jid, f, main) in [
            (MAIN, "main", true),
            (OPS, "ops", false),
            (DEV, "dev", false),
        ] {
            store
                .write(|tx| {
                    actions::register_group(
                        tx,
                        RegisterGroup {
                            jid: Jid::parse(jid).unwrap(),
                            name: f.to_uppercase(),
                            folder: folder(f),
                            trigger: None,
                            requires_trigger: !main,
                            is_main: main,
                            container_config: None,
                        },
                        "@Andy",
                        Utc::now(),
                    )
                })
                .unwrap();
        }
        let (bus, _) = broadcast::channel(1024);
        let mut rig = Rig {
            dir,
            paths,
            store: SharedStore::new(store),
            bus,
            handle: None,
            limits: rust_claw::ipc::Limits::default(),
        };
        rig.start().await;
        rig
    }

    pub fn env(&self) -> Env {
        Env {
            paths: self.paths.clone(),
            default_trigger: "@Andy".into(),
            timezone: chrono_tz::UTC,
            limits: self.limits,
        }
    }

    pub async fn start(&mut self) {
        let h = IpcService::start_with(self.env(), self.store.clone(), self.bus.clone())
            .await
            .unwrap();
        self.handle = Some(h);
    }

    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }

    pub fn ipc(&self, f: &str) -> PathBuf {
        self.paths.ipc_root().join(f)
    }

    /// Writes `content` as `<dir>/.<name>.tmp` and renames it to `<dir>/<name>`.
    pub fn put_raw(&self, f: &str, sub: &str, name: &str, content: &[u8]) -> PathBuf {
        let dir = self.ipc(f).join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        let target = dir.join(name);
        std::fs::rename(&tmp, &target).unwrap();
        target
    }

    /// Writes a request as `<id>.json` into `tasks/`.
    pub fn put(&self, f: &str, id: &str, req: &Value) -> PathBuf {
        self.put_raw(
            f,
            "tasks",
            &format!("{id}.json"),
            req.to_string().as_bytes(),
        )
    }

    pub fn response_path(&self, f: &str, id: &str) -> PathBuf {
        self.ipc(f).join("responses").join(format!("{id}.json"))
    }

    /// Waits (bounded) for the response to request `id` of folder `f`.
    pub async fn response(&self, f: &str, id: &str) -> Response {
        let path = self.response_path(f, id);
        wait_for(Duration::from_secs(10), || path.exists()).await;
        let r: Response = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(r.id, id);
        r
    }

    /// Sends a request and waits for its response; the request file must be gone.
    pub async fn ask(&self, f: &str, id: &str, req: Value) -> Response {
        let p = self.put(f, id, &req);
        let r = self.response(f, id).await;
        wait_for(Duration::from_secs(5), || !p.exists()).await;
        r
    }

    pub fn db<R: Send + 'static>(&self, f: impl FnOnce(&rusqlite::Connection) -> R) -> R {
        self.store.blocking(|s| f(s.conn()))
    }

    pub fn count(&self, sql: &str) -> i64 {
        let sql = sql.to_owned();
        self.db(move |c| c.query_row(&sql, [], |r| r.get(0)).unwrap())
    }

    pub fn quarantined(&self, f: &str, id: &str) -> Option<String> {
        let dir = self.paths.ipc_errors_dir(f);
        let reason = std::fs::read_to_string(dir.join(format!("{id}.reason"))).ok()?;
        assert!(
            std::fs::symlink_metadata(dir.join(format!("{id}.json"))).is_ok(),
            "the quarantined entry {id}.json is missing"
        );
        Some(reason)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The service task dies with the test's runtime.
        let _ = self.handle.take();
    }
}

/// Polls `cond` every 2 ms until true; panics after `limit`.
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
