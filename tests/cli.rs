//! The built `rust_claw` binary, run in a temporary root: output, `--json` shapes and
//! exit codes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rust_claw"))
            .args(args)
            .current_dir(self.path())
            .env_remove("RUST_CLAW_ROOT")
            .env("TIMEZONE", "UTC")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects exit code `code`; returns stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

const MAIN: &str = "123456789012345678@discord";
const OPS: &str = "223456789012345678@discord";

fn with_groups() -> Root {
    let r = Root::new();
    r.ok(&["bootstrap-main", "--jid", MAIN]);
    r.ok(&[
        "register-group",
        "--jid",
        OPS,
        "--name",
        "Team Ops",
        "--folder",
        "team-ops",
    ]);
    r
}

#[test]
fn groups_register_list_and_unregister() {
    let r = with_groups();
    assert!(r.path().join("groups/main/AGENTS.md").is_file());
    assert!(r.path().join("groups/team-ops/AGENTS.md").is_file());
    // Bootstrapping again with the same chat is a no-op.
    assert!(
        r.ok(&["bootstrap-main", "--jid", MAIN])
            .contains("already registered")
    );

    let groups = r.json(&["list-groups", "--json"]);
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["jid"], MAIN);
    assert_eq!(groups[0]["folder"], "main");
    assert_eq!(groups[0]["is_main"], true);
    assert_eq!(groups[0]["requires_trigger"], false);
    assert_eq!(groups[1]["folder"], "team-ops");
    assert_eq!(groups[1]["trigger"], "@Andy");
    assert_eq!(groups[1]["requires_trigger"], true);
    let keys: Vec<&str> = groups[1]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "added_at",
            "container_config",
            "folder",
            "is_main",
            "jid",
            "name",
            "requires_trigger",
            "trigger"
        ]
    );

    let table = r.ok(&["list-groups"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("JID"), "{table}");
    assert!(
        lines[2].contains("Team Ops") && lines[2].contains("team-ops"),
        "{table}"
    );
    // Columns line up: FOLDER starts at the same offset in every line.
    let col = lines[0].find("FOLDER").unwrap();
    assert_eq!(&lines[1][col..col + 4], "main");

    r.ok(&["unregister-group", "--jid", OPS]);
    assert_eq!(
        r.json(&["list-groups", "--json"]).as_array().unwrap().len(),
        1
    );
    let e = r.fails(2, &["unregister-group", "--jid", OPS]);
    assert!(e.contains("not found"), "{e}");
}

#[test]
fn invalid_input_exits_2_and_names_the_field() {
    let r = with_groups();
    for (args, needle) in [
        (
            vec![
                "register-group",
                "--jid",
                "12345",
                "--name",
                "x",
                "--folder",
                "x",
            ],
            "--jid",
        ),
        (
            vec![
                "register-group",
                "--jid",
                "1@discord",
                "--name",
                "x",
                "--folder",
                "../etc",
            ],
            "--folder",
        ),
        (
            vec![
                "register-group",
                "--jid",
                "1@discord",
                "--name",
                "x",
                "--folder",
                "global",
            ],
            "reserved",
        ),
        (
            vec![
                "register-group",
                "--jid",
                "1@discord",
                "--name",
                "x",
                "--folder",
                "team-ops",
            ],
            "already used",
        ),
        (
            vec![
                "register-group",
                "--jid",
                "1@discord",
                "--name",
                "x",
                "--folder",
                "x",
                "--trigger",
                "Andy",
            ],
            "--trigger",
        ),
        (
            vec![
                "register-group",
                "--jid",
                "1@discord",
                "--name",
                "x",
                "--folder",
                "x",
                "--requires-trigger",
                "maybe",
            ],
            "--requires-trigger",
        ),
        (
            vec![
                "create-task",
                "--group-folder",
                "main",
                "--chat-jid",
                MAIN,
                "--prompt",
                "p",
                "--schedule-type",
                "cron",
                "--schedule-value",
                "61 * * * *",
            ],
            "--schedule-value",
        ),
        (
            vec![
                "create-task",
                "--group-folder",
                "main",
                "--chat-jid",
                MAIN,
                "--prompt",
                "p",
                "--schedule-type",
                "weekly",
                "--schedule-value",
                "1",
            ],
            "--schedule-type",
        ),
        (
            vec![
                "create-task",
                "--group-folder",
                "main",
                "--chat-jid",
                OPS,
                "--prompt",
                "p",
                "--schedule-type",
                "interval",
                "--schedule-value",
                "1000",
            ],
            "--chat-jid",
        ),
        (
            vec![
                "create-task",
                "--group-folder",
                "nobody",
                "--chat-jid",
                MAIN,
                "--prompt",
                "p",
                "--schedule-type",
                "interval",
                "--schedule-value",
                "1000",
            ],
            "--group-folder",
        ),
        (
            vec![
                "create-task",
                "--group-folder",
                "main",
                "--chat-jid",
                MAIN,
                "--prompt",
                "p",
                "--schedule-type",
                "once",
                "--schedule-value",
                "2001-01-01T00:00:00Z",
            ],
            "in the past",
        ),
        (
            vec![
                "create-task",
                "--group-folder",
                "main",
                "--chat-jid",
                MAIN,
                "--prompt",
                "p",
                "--schedule-type",
                "interval",
                "--schedule-value",
                "1000",
                "--timezone",
                "Mars/Base",
            ],
            "--timezone",
        ),
        (vec!["pause-task", "--id", "missing"], "not found"),
        (vec!["resume-task", "--id", "missing"], "not found"),
        (vec!["cancel-task", "--id", "missing"], "not found"),
        (vec!["task-runs", "--id", "missing"], "not found"),
        (vec!["list-tasks", "--status", "done"], "--status"),
    ] {
        let e = r.fails(2, &args);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}

#[test]
fn bad_configuration_names_the_variable() {
    let r = Root::new();
    std::fs::write(r.path().join(".env"), "MAX_CONCURRENT_AGENTS=lots\n").unwrap();
    let e = r.fails(2, &["list-groups"]);
    assert!(e.contains("MAX_CONCURRENT_AGENTS"), "{e}");
}

#[test]
fn tasks_life_cycle() {
    let r = with_groups();
    let out = r.ok(&[
        "create-task",
        "--id",
        "daily-report",
        "--group-folder",
        "main",
        "--chat-jid",
        MAIN,
        "--prompt",
        "Write the daily report.",
        "--schedule-type",
        "cron",
        "--schedule-value",
        "0 9 * * 1-5",
        "--timezone",
        "Asia/Seoul",
    ]);
    assert!(out.contains("created task daily-report"), "{out}");
    r.ok(&[
        "create-task",
        "--group-folder",
        "team-ops",
        "--chat-jid",
        OPS,
        "--prompt",
        "ping",
        "--schedule-type",
        "interval",
        "--schedule-value",
        "3600000",
        "--context-mode",
        "isolated",
    ]);
    let e = r.fails(
        2,
        &[
            "create-task",
            "--id",
            "daily-report",
            "--group-folder",
            "main",
            "--chat-jid",
            MAIN,
            "--prompt",
            "again",
            "--schedule-type",
            "interval",
            "--schedule-value",
            "1000",
        ],
    );
    assert!(e.contains("already exists"), "{e}");

    let all = r.json(&["list-tasks", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let daily = r.json(&["list-tasks", "--group", "main", "--json"]);
    let daily = &daily[0];
    assert_eq!(daily["id"], "daily-report");
    assert_eq!(daily["schedule_type"], "cron");
    assert_eq!(daily["timezone"], "Asia/Seoul");
    assert_eq!(daily["status"], "active");
    assert_eq!(daily["context_mode"], "group");
    assert_eq!(daily["created_by"], "cli");
    // Next run: 09:00 in Seoul on a weekday, i.e. 00:00 UTC.
    let next = daily["next_run"].as_str().unwrap();
    assert!(next.ends_with("T00:00:00Z"), "{next}");

    r.ok(&["pause-task", "--id", "daily-report"]);
    assert_eq!(
        r.json(&["list-tasks", "--status", "paused", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    r.ok(&["resume-task", "--id", "daily-report"]);
    assert_eq!(
        r.json(&["list-tasks", "--status", "active", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let table = r.ok(&["list-tasks"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("cron 0 9 * * 1-5"), "{table}");

    assert_eq!(
        r.ok(&["task-runs", "--id", "daily-report", "--json"])
            .trim(),
        "[]"
    );
    r.ok(&["cancel-task", "--id", "daily-report"]);
    assert_eq!(
        r.json(&["list-tasks", "--json"]).as_array().unwrap().len(),
        1
    );
    // The CLI leaves a note for a running daemon.
    assert!(r.path().join("data/control/tasks").is_file());
}

#[test]
fn root_flag_and_env_select_the_root() {
    let r = Root::new();
    let other = tempfile::tempdir().unwrap();
    let dir = other.path().to_str().unwrap();
    r.ok(&["--root", dir, "bootstrap-main", "--jid", MAIN]);
    assert!(other.path().join("store/messages.db").is_file());
    assert!(!r.path().join("store").exists());
    let out = Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .args(["list-groups", "--json"])
        .env("RUST_CLAW_ROOT", dir)
        .env("TIMEZONE", "UTC")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(MAIN));
}

#[test]
fn skills_list_enable_disable() {
    let r = with_groups();
    for (dir, name) in [
        ("groups/global/skills", "web"),
        ("groups/team-ops/skills", "deploy"),
    ] {
        let d = r.path().join(dir).join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("SKILL.md"), format!("---\nname: {name}\n---\n")).unwrap();
    }
    let list = r.json(&["skills", "list", "--group", "team-ops", "--json"]);
    assert_eq!(
        list,
        serde_json::json!([
            {"name": "deploy", "enabled": false, "source": "group"},
            {"name": "web", "enabled": false, "source": "global"},
        ])
    );
    r.ok(&["skills", "enable", "--group", "team-ops", "deploy"]);
    assert!(
        r.path().join("data/control/skills").is_file(),
        "daemon is notified"
    );
    let list = r.json(&["skills", "list", "--group", "team-ops", "--json"]);
    assert_eq!(list[0]["enabled"], true);
    assert_eq!(list[1]["enabled"], false);
    r.ok(&["skills", "disable", "--group", "team-ops", "deploy"]);
    let list = r.json(&["skills", "list", "--group", "team-ops", "--json"]);
    assert_eq!(list[0]["enabled"], false);
    // main does not see team-ops' own skill.
    let main = r.json(&["skills", "list", "--group", "main", "--json"]);
    assert_eq!(main.as_array().unwrap().len(), 1);

    let e = r.fails(2, &["skills", "enable", "--group", "main", "deploy"]);
    assert!(e.contains("no skill \"deploy\""), "{e}");
    let e = r.fails(2, &["skills", "enable", "--group", "team-ops", "../x"]);
    assert!(e.contains("skill"), "{e}");
    let e = r.fails(2, &["skills", "list", "--group", "nobody"]);
    assert!(e.contains("no registered group"), "{e}");
    let table = r.ok(&["skills", "list", "--group", "team-ops"]);
    assert!(table.starts_with("NAME"), "{table}");
}
