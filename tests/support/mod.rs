//! Shared by the integration tests and benches: a temporary RustClaw root wired to the
//! real codex binary and a mock model server.
#![allow(dead_code)]

pub mod containers;
pub mod files;
pub mod mock_model;
pub mod process;
pub mod rig;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rust_claw::agent::host::HostRunner;
use rust_claw::agent::{AgentSettings, Agents, ApprovalDecision};
use rust_claw::model::FolderName;
use rust_claw::paths::Paths;
use rust_claw::store::{SharedStore, Store};

use mock_model::MockModel;

/// Resident memory of a process (`"self"` or a pid) in KiB, from `/proc/<pid>/status`;
/// `None` once the process is gone.
pub fn rss_kib(pid: impl std::fmt::Display) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Private memory a process has written (`Private_Dirty` in `/proc/<pid>/smaps_rollup`)
/// in KiB: what it really costs, unlike RSS, which counts clean shared pages the kernel
/// may drop at will. `None` once the process is gone.
pub fn private_dirty_kib(pid: impl std::fmt::Display) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Private_Dirty:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time a process (`"self"` or a pid) has used, its reaped children included
/// (utime + stime + cutime + cstime from `/proc/<pid>/stat`); `None` once the process
/// is gone.
pub fn cpu_time(pid: impl std::fmt::Display) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may itself contain spaces: state is field 3,
    // utime..cstime are fields 14..=17.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest
        .split(' ')
        .skip(11)
        .take(4)
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    // /proc counts in USER_HZ, which is 100 on Linux.
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// The main group the scheduler tests and bench start from: folder `main`, chat
/// [`MAIN_JID`], trigger `@Andy`.
pub const MAIN_JID: &str = "111111111111111111@discord";

pub fn register_main(
    conn: &rusqlite::Connection,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<rust_claw::store::groups::Group, rust_claw::actions::ActionError> {
    rust_claw::actions::register_group(
        conn,
        rust_claw::actions::RegisterGroup::main(
            rust_claw::model::Jid::parse(MAIN_JID).unwrap(),
            "Main",
            FolderName::parse("main").unwrap(),
        ),
        "@Andy",
        now,
    )
}

/// The pinned codex binary. A missing binary FAILS the test with the fix.
pub fn codex_bin() -> PathBuf {
    let path = std::env::var_os("RUST_CLAW_TEST_CODEX").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "RUST_CLAW_TEST_CODEX is not set: run the tests with scripts/test.sh, which installs \
             codex 0.169.0 and exports it (or `source scripts/test-env.sh` after installing)"
        )
    });
    assert!(
        path.is_file(),
        "RUST_CLAW_TEST_CODEX={} does not exist: run scripts/install-test-deps.sh",
        path.display()
    );
    path
}

/// Writes `root/codex-fragment.toml` (the `CODEX_CONFIG` a root's agents get): codex
/// talks to `mock` and never retries on its own. Returns its path.
pub fn write_codex_fragment(root: &Path, mock: &MockModel) -> PathBuf {
    let fragment = root.join("codex-fragment.toml");
    std::fs::write(
        &fragment,
        format!(
            "model = \"mock-model\"\nmodel_provider = \"mock\"\n\n[model_providers.mock]\n\
             name = \"Local mock\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
             request_max_retries = 0\nstream_max_retries = 0\n",
            mock.base_url()
        ),
    )
    .unwrap();
    fragment
}

/// A RustClaw root under target/ (never under /tmp: codex refuses to set up its
/// sandbox when CODEX_HOME is under TMPDIR), removed on drop.
pub struct TestRoot {
    pub root: PathBuf,
    pub paths: Paths,
    pub store: SharedStore,
    pub mock: MockModel,
    pub settings: AgentSettings,
    pub owner_auth: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where test roots live: `$RUST_CLAW_TEST_HOMES`, else `target/test-homes/`
/// (CARGO_TARGET_TMPDIR is `target/tmp`).
pub fn homes_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUST_CLAW_TEST_HOMES") {
        return PathBuf::from(dir);
    }
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tmp"));
    base.parent().unwrap_or(&base).join("test-homes")
}

/// A fresh directory under [`homes_dir`] (created if missing), removed when dropped.
pub fn home_tempdir(prefix: &str) -> tempfile::TempDir {
    let homes = homes_dir();
    std::fs::create_dir_all(&homes).unwrap();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&homes)
        .unwrap()
}

impl TestRoot {
    pub async fn new(name: &str) -> TestRoot {
        TestRoot::new_in(&homes_dir(), name).await
    }

    /// A root under `base` instead of the usual test homes (benches compare layouts).
    pub async fn new_in(base: &Path, name: &str) -> TestRoot {
        let codex = codex_bin();
        let _ = codex;
        let root = base.join(format!(
            "{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let paths = Paths::new(&root);
        std::fs::create_dir_all(paths.store_dir()).unwrap();
        let store = SharedStore::new(Store::open(&paths.database()).unwrap());
        let mock = MockModel::start().await;
        let fragment = write_codex_fragment(&root, &mock);
        let owner_auth = root.join("owner-codex");
        std::fs::create_dir_all(&owner_auth).unwrap();
        let settings = AgentSettings {
            tools_exe: PathBuf::from(env!("CARGO_BIN_EXE_rust_claw")),
            auth_dir: owner_auth.clone(),
            codex_config: Some(fragment),
            model: None,
            reasoning_effort: None,
            approval_policy: "never".to_owned(),
            approvals: ApprovalDecision::Decline,
            timezone: Some("UTC".to_owned()),
            turn_timeout: std::time::Duration::from_secs(1800),
        };
        TestRoot {
            root,
            paths,
            store,
            mock,
            settings,
            owner_auth,
        }
    }

    pub fn agents(&self) -> Agents {
        Agents::new(
            self.paths.clone(),
            self.settings.clone(),
            Arc::new(HostRunner::new(codex_bin())),
            self.store.clone(),
        )
    }

    pub fn group_dir(&self, folder: &FolderName) -> PathBuf {
        let d = self.paths.group_dir(folder);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub fn write(&self, path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

pub fn folder(name: &str) -> FolderName {
    FolderName::parse(name).unwrap()
}

/// Everything codex sent the model in one request, as one string (for `contains`).
pub fn body_text(req: &serde_json::Value) -> String {
    req.to_string()
}

/// The name of the tool ending with `suffix` that codex offered the model (MCP tools
/// get a server prefix and may sit inside a `namespace` entry, whose name is returned
/// as `prefix`), for scripting a `Reply::call`: e.g. `find_tool(&req, "schedule_task")`.
pub fn find_tool(req: &serde_json::Value, suffix: &str) -> Option<(String, String)> {
    fn walk(v: &serde_json::Value, suffix: &str, prefix: &str) -> Option<(String, String)> {
        match v {
            serde_json::Value::Array(items) => items.iter().find_map(|i| walk(i, suffix, prefix)),
            serde_json::Value::Object(map) => {
                let name = map.get("name").and_then(|n| n.as_str()).unwrap_or("");
                if map.get("type").and_then(|t| t.as_str()) == Some("namespace") {
                    return map.get("tools").and_then(|t| walk(t, suffix, name));
                }
                if name.ends_with(suffix) {
                    return Some((prefix.to_owned(), name.to_owned()));
                }
                None
            }
            _ => None,
        }
    }
    walk(&req["tools"], suffix, "")
}
