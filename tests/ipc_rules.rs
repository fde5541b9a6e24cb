//! #11's lower-severity rules, through the real binary: private modes, a root that must
//! exist, a relative root, unregistered groups' tasks, the owner's schedule floor.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MAIN: &str = "111111111111111111@discord";
const OPS: &str = "222222222222222222@discord";

fn cli_in(cwd: &Path, root: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .arg("--root")
        .arg(root)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_CLAW_ROOT")
        .env("TIMEZONE", "UTC")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(cwd: &Path, root: &str, args: &[&str]) -> String {
    let out = cli_in(cwd, root, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_root_must_exist_for_admin_verbs() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("typo");
    for verb in [
        &["list-groups"][..],
        &["list-tasks"],
        &["skills", "list", "--group", "main"],
    ] {
        let out = cli_in(tmp.path(), typo.to_str().unwrap(), verb);
        assert_eq!(out.status.code(), Some(2), "{verb:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(typo.to_str().unwrap()) && err.contains("bootstrap-main"),
            "{err}"
        );
        assert!(!typo.exists(), "{verb:?} created the root");
    }
    let out = ok(
        tmp.path(),
        typo.to_str().unwrap(),
        &["bootstrap-main", "--jid", MAIN],
    );
    assert!(out.contains("creating a new RustClaw root"), "{out}");
    ok(tmp.path(), typo.to_str().unwrap(), &["list-groups"]);
}

#[test]
fn store_data_and_groups_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    let r = root.to_str().unwrap();
    ok(tmp.path(), r, &["bootstrap-main", "--jid", MAIN]);
    ok(
        tmp.path(),
        r,
        &[
            "register-group",
            "--jid",
            OPS,
            "--name",
            "ops",
            "--folder",
            "ops",
        ],
    );
    assert_eq!(mode(&root.join("store")), 0o700);
    for f in ["messages.db", "messages.db-wal", "messages.db-shm"] {
        let p = root.join("store").join(f);
        if p.exists() {
            assert_eq!(mode(&p) & 0o077, 0, "{f} is {:o}", mode(&p));
        }
    }
    assert_eq!(mode(&root.join("data")) & 0o077, 0);
    assert_eq!(mode(&root.join("groups")) & 0o077, 0);
    // An existing, world-readable store is tightened by the next command.
    std::fs::set_permissions(root.join("store"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        root.join("store/messages.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    ok(tmp.path(), r, &["list-groups"]);
    assert_eq!(mode(&root.join("store")), 0o700);
    assert_eq!(mode(&root.join("store/messages.db")), 0o600);
}

#[test]
fn unregistering_pauses_the_groups_tasks_and_the_owner_floor_is_one_second() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("r");
    let r = r.to_str().unwrap();
    ok(tmp.path(), r, &["bootstrap-main", "--jid", MAIN]);
    ok(
        tmp.path(),
        r,
        &[
            "register-group",
            "--jid",
            OPS,
            "--name",
            "ops",
            "--folder",
            "ops",
        ],
    );
    let task = |id: &str, every: &str| {
        cli_in(
            tmp.path(),
            r,
            &[
                "create-task",
                "--id",
                id,
                "--group-folder",
                "ops",
                "--chat-jid",
                OPS,
                "--prompt",
                "p",
                "--schedule-type",
                "interval",
                "--schedule-value",
                every,
            ],
        )
    };
    let out = task("fast", "999");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1000 ms"));
    assert!(task("t1", "1000").status.success());
    assert!(task("t2", "3600000").status.success());
    let out = ok(tmp.path(), r, &["unregister-group", "--jid", OPS]);
    assert!(out.contains("paused its 2 active task"), "{out}");
    let list = ok(tmp.path(), r, &["list-tasks", "--json"]);
    let v: serde_json::Value = serde_json::from_str(list.lines().next().unwrap_or("[]"))
        .unwrap_or_else(|_| serde_json::from_str(&list).unwrap());
    let statuses: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["paused", "paused"], "{list}");
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// With `--root ./r`, requests renamed in while the daemon runs are applied (not only
/// those present at start-up).
#[test]
fn a_relative_root_serves_requests_written_while_running() {
    let tmp = tempfile::tempdir().unwrap();
    ok(tmp.path(), "./r", &["bootstrap-main", "--jid", MAIN]);
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_rust_claw"))
            .args(["--root", "./r", "run"])
            .current_dir(tmp.path())
            .env_remove("RUST_CLAW_ROOT")
            .env("TIMEZONE", "UTC")
            .env("AGENT_RUNNER", "host")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ipc = tmp.path().join("r/data/ipc/main");
    wait_until(Duration::from_secs(20), || {
        ipc.join("current_tasks.json").exists()
    });
    for i in 0..3 {
        let tasks = ipc.join("tasks");
        let tmpf = tasks.join(format!(".r{i}.json.tmp"));
        std::fs::write(&tmpf, br#"{"type":"refresh_groups"}"#).unwrap();
        std::fs::rename(&tmpf, tasks.join(format!("r{i}.json"))).unwrap();
        let resp = ipc.join("responses").join(format!("r{i}.json"));
        wait_until(Duration::from_secs(10), || resp.exists());
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&resp).unwrap()).unwrap();
        assert_eq!(v["status"], "ok", "{v}");
        assert_eq!(mode(&resp) & 0o077, 0, "responses are private");
    }
}

#[test]
fn agent_tools_refuse_a_bad_environment_with_exit_2() {
    for (var, value, needle) in [
        ("RUST_CLAW_IPC_DIR", None, "RUST_CLAW_IPC_DIR"),
        (
            "RUST_CLAW_TIMEZONE",
            Some("Mars/Base"),
            "RUST_CLAW_TIMEZONE",
        ),
        ("RUST_CLAW_CHAT_JID", Some("not a jid"), "jid"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rust_claw"));
        cmd.arg("agent-tools")
            .env("RUST_CLAW_IPC_DIR", "/tmp")
            .stdin(Stdio::null());
        match value {
            Some(v) => cmd.env(var, v),
            None => cmd.env_remove(var),
        };
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{var}: {err}");
    }
}
