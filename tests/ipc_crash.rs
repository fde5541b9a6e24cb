//! Crash safety: the real daemon (`rust_claw run`) is SIGKILLed repeatedly while it
//! applies a burst of requests; after the last restart every request has been applied
//! exactly once (ledger, outbox, tasks) and answered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const MAIN: &str = "111111111111111111@discord";
const GROUPS: [(&str, &str); 3] = [
    ("main", MAIN),
    ("ops", "222222222222222222@discord"),
    ("dev", "333333333333333333@discord"),
];

fn cli(root: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .args(args)
        .env("RUST_CLAW_ROOT", root)
        .env("TIMEZONE", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon process; killed if the test fails, so no daemon outlives it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(root: &Path) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_rust_claw"))
            .arg("run")
            .env("RUST_CLAW_ROOT", root)
            .env("TIMEZONE", "UTC")
            .env("AUTO_REGISTER_MAIN_JID", MAIN)
            // No agent turn runs in this test (it only sends IPC requests); the host
            // runner needs no container runtime.
            .env("AGENT_RUNNER", "host")
            // 1,000 tasks over 3 groups: above the default per-group limit.
            .env("MAX_TASKS_PER_GROUP", "100000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn count(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "condition not met within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes request `i` (messages and tasks from every group) atomically.
fn write_request(root: &Path, i: usize) -> (PathBuf, bool) {
    let (folder, jid) = GROUPS[i % 3];
    let id = format!("{i:06}");
    let (sub, body, is_message) = if i.is_multiple_of(4) {
        (
            "tasks",
            json!({"type":"schedule_task","prompt":format!("task {id}"),"schedule_type":"interval","schedule_value":"3600000"}),
            false,
        )
    } else {
        (
            "messages",
            json!({"type":"message","chatJid":jid,"text":format!("msg {folder} {id}")}),
            true,
        )
    };
    let dir = root.join("data/ipc").join(folder).join(sub);
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{id}.json.tmp"));
    std::fs::write(&tmp, body.to_string()).unwrap();
    let target = dir.join(format!("{id}.json"));
    std::fs::rename(&tmp, &target).unwrap();
    (target, is_message)
}

#[test]
fn sigkill_during_a_burst_applies_every_request_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    cli(root, &["bootstrap-main", "--jid", MAIN]);
    for (f, jid) in &GROUPS[1..] {
        cli(
            root,
            &["register-group", "--jid", jid, "--name", f, "--folder", f],
        );
    }
    let db = root.join("store/messages.db");
    let n = 4000;
    let mut messages = 0;
    // Half written while the daemon is down...
    for i in 0..n / 2 {
        messages += write_request(root, i).1 as i64;
    }
    let mut daemon = start(root);
    // ...half while it is applying them.
    for i in n / 2..n {
        messages += write_request(root, i).1 as i64;
    }
    let mut kills = 0;
    for threshold in [300, 1500, 2800] {
        wait_until(Duration::from_secs(60), || {
            count(&db, "SELECT COUNT(*) FROM ipc_ledger") >= threshold
        });
        daemon.0.kill().unwrap(); // SIGKILL
        daemon.0.wait().unwrap();
        kills += 1;
        let applied = count(&db, "SELECT COUNT(*) FROM ipc_ledger");
        assert!(
            applied < n as i64,
            "the burst finished before kill {kills}; make it bigger"
        );
        daemon = start(root);
    }
    wait_until(Duration::from_secs(120), || {
        count(&db, "SELECT COUNT(*) FROM ipc_ledger") == n as i64
    });
    // Every request file is consumed and answered.
    for (f, _) in GROUPS {
        let ipc = root.join("data/ipc").join(f);
        wait_until(Duration::from_secs(30), || {
            ["messages", "tasks"].iter().all(|s| {
                std::fs::read_dir(ipc.join(s))
                    .unwrap()
                    .filter(|e| {
                        !e.as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .starts_with('.')
                    })
                    .count()
                    == 0
            })
        });
    }
    let answered: usize = GROUPS
        .iter()
        .map(|(f, _)| {
            // A kill during an atomic write may leave a dot-temp file: not an answer.
            std::fs::read_dir(root.join("data/ipc").join(f).join("responses"))
                .unwrap()
                .filter(|e| {
                    let name = e
                        .as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .into_owned();
                    name.ends_with(".json") && !name.starts_with('.')
                })
                .count()
        })
        .sum();
    assert_eq!(answered, n);
    sigterm(&daemon.0);
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status:?}");

    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM ipc_ledger WHERE status = 'ok'"),
        n as i64
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM outbox WHERE origin LIKE 'ipc:%'"),
        messages
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(DISTINCT text) FROM outbox WHERE origin LIKE 'ipc:%'"
        ),
        messages
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM scheduled_tasks"),
        n as i64 - messages
    );
    assert_eq!(
        count(&db, "SELECT COUNT(DISTINCT prompt) FROM scheduled_tasks"),
        n as i64 - messages
    );
    assert_eq!(kills, 3);
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}
