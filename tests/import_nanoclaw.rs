//! `import-nanoclaw` on a NanoClaw v1 install the test builds itself: a real SQLite
//! store with NanoClaw's schema, group folders with CLAUDE.md (and hostile entries), and
//! a sender allowlist. Dry run first, then the import, then again (idempotent).

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};

use chrono::{Datelike, Timelike};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rust_claw");

/// NanoClaw v1.2's tables, as its `createSchema` makes them.
const SCHEMA: &str = "
CREATE TABLE chats (jid TEXT PRIMARY KEY, name TEXT, last_message_time TEXT, channel TEXT, is_group INTEGER DEFAULT 0);
CREATE TABLE messages (id TEXT, chat_jid TEXT, sender TEXT, sender_name TEXT, content TEXT, timestamp TEXT,
  is_from_me INTEGER, is_bot_message INTEGER DEFAULT 0, PRIMARY KEY (id, chat_jid));
CREATE TABLE scheduled_tasks (id TEXT PRIMARY KEY, group_folder TEXT NOT NULL, chat_jid TEXT NOT NULL,
  prompt TEXT NOT NULL, schedule_type TEXT NOT NULL, schedule_value TEXT NOT NULL, next_run TEXT, last_run TEXT,
  last_result TEXT, status TEXT DEFAULT 'active', created_at TEXT NOT NULL, context_mode TEXT DEFAULT 'isolated',
  script TEXT);
CREATE TABLE task_run_logs (id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, run_at TEXT NOT NULL,
  duration_ms INTEGER NOT NULL, status TEXT NOT NULL, result TEXT, error TEXT);
CREATE TABLE router_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions (group_folder TEXT PRIMARY KEY, session_id TEXT NOT NULL);
CREATE TABLE registered_groups (jid TEXT PRIMARY KEY, name TEXT NOT NULL, folder TEXT NOT NULL UNIQUE,
  trigger_pattern TEXT NOT NULL, added_at TEXT NOT NULL, container_config TEXT, requires_trigger INTEGER DEFAULT 1,
  is_main INTEGER DEFAULT 0);
";

fn build_nanoclaw(dir: &Path) {
    std::fs::create_dir_all(dir.join("store")).unwrap();
    let db = rusqlite::Connection::open(dir.join("store/messages.db")).unwrap();
    db.execute_batch(SCHEMA).unwrap();
    db.execute_batch(
        "INSERT INTO registered_groups VALUES
           ('dc:111111111111111111', 'Main', 'main', '@Andy', '2025-01-01T00:00:00.000Z', NULL, 0, 1),
           ('dc:222222222222222222', 'Team Ops', 'Team-Ops', '@Andy', '2025-01-02T00:00:00.000Z',
            '{\"additionalMounts\":[{\"hostPath\":\"~/x\"}]}', 1, 0),
           ('120363000000000000@g.us', 'Family', 'family', '@Andy', '2025-01-03T00:00:00.000Z', NULL, 1, 0);
         INSERT INTO scheduled_tasks (id, group_folder, chat_jid, prompt, schedule_type, schedule_value, status,
           created_at, context_mode, script) VALUES
           ('task-weekdays', 'Team-Ops', 'dc:222222222222222222', 'Standup notes', 'cron', '0 9 * * 1-5', 'active', '2025-01-05T00:00:00Z', 'group', NULL),
           ('task-sunday', 'main', 'dc:111111111111111111', 'Weekly review', 'cron', '30 18 * * 0', 'active', '2025-01-05T00:00:00Z', 'isolated', NULL),
           ('task-hourly', 'main', 'dc:111111111111111111', 'Check mail', 'interval', '3600000', 'paused', '2025-01-05T00:00:00Z', 'isolated', NULL),
           ('task-done', 'main', 'dc:111111111111111111', 'Once', 'once', '2025-02-01T09:00:00.000Z', 'completed', '2025-01-05T00:00:00Z', 'isolated', NULL),
           ('task-script', 'main', 'dc:111111111111111111', 'Gated', 'interval', '60000', 'active', '2025-01-05T00:00:00Z', 'isolated', 'echo {}'),
           ('task-family', 'family', '120363000000000000@g.us', 'Hi', 'interval', '60000', 'active', '2025-01-05T00:00:00Z', 'isolated', NULL),
           ('task-badcron', 'main', 'dc:111111111111111111', 'Bad', 'cron', '61 * * * *', 'active', '2025-01-05T00:00:00Z', 'isolated', NULL);
         INSERT INTO messages VALUES ('m1', 'dc:111111111111111111', 'u', 'U', 'hello', '2025-01-05T00:00:00Z', 0, 0);
         INSERT INTO sessions VALUES ('main', 'claude-session-1');",
    )
    .unwrap();
    let groups = dir.join("groups");
    for (folder, memory) in [
        ("main", "# Main memory\nLikes tea.\n"),
        ("Team-Ops", "# Ops\nOn call: Kim.\n"),
        ("global", "# Everyone\n"),
    ] {
        std::fs::create_dir_all(groups.join(folder)).unwrap();
        std::fs::write(groups.join(folder).join("CLAUDE.md"), memory).unwrap();
    }
    std::fs::create_dir_all(groups.join("Team-Ops/notes")).unwrap();
    std::fs::write(groups.join("Team-Ops/notes/todo.md"), "- ship\n").unwrap();
    std::fs::create_dir_all(groups.join("Team-Ops/logs")).unwrap();
    std::fs::write(groups.join("Team-Ops/logs/container-1.log"), "noise\n").unwrap();
    // Written by an agent: a link out of the folder must not be followed.
    symlink("/etc/passwd", groups.join("Team-Ops/passwd")).unwrap();
    std::fs::write(
        dir.join("sender-allowlist.json"),
        r#"{"default":{"allow":"*","mode":"trigger"},"chats":{"dc:222222222222222222":{"allow":["42"],"mode":"drop"},"tg:-1001":{"allow":"*","mode":"trigger"}},"logDenied":true}"#,
    )
    .unwrap();
}

struct Env {
    _tmp: tempfile::TempDir,
    nanoclaw: std::path::PathBuf,
    root: std::path::PathBuf,
    home: std::path::PathBuf,
}

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(&self.root)
            .env_remove("RUST_CLAW_ROOT")
            .env_remove("AUTO_REGISTER_MAIN_JID")
            .env("HOME", &self.home)
            .env("TIMEZONE", "UTC")
            .env("AGENT_RUNNER", "host")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn import(&self, extra: &[&str]) -> String {
        let from = self.nanoclaw.to_str().unwrap().to_owned();
        let allow = self.nanoclaw.join("sender-allowlist.json");
        let mut args = vec![
            "import-nanoclaw",
            "--from",
            &from,
            "--allowlist",
            allow.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let (nanoclaw, root, home) = (
        tmp.path().join("nanoclaw"),
        tmp.path().join("claw"),
        tmp.path().join("home"),
    );
    build_nanoclaw(&nanoclaw);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    Env {
        _tmp: tmp,
        nanoclaw,
        root,
        home,
    }
}

fn line<'a>(report: &'a str, needle: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{report}"))
}

#[test]
fn a_nanoclaw_install_is_imported_once_with_a_reason_for_everything_left_behind() {
    let e = env();
    // An agent-writable target folder with a link planted where a copied folder would go.
    let outside = e.root.parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(e.root.join("groups/team-ops")).unwrap();
    symlink(&outside, e.root.join("groups/team-ops/notes")).unwrap();

    let dry = e.import(&["--dry-run"]);
    assert!(dry.starts_with("dry run: nothing was changed"), "{dry}");
    assert!(
        line(&dry, "dc:222222222222222222").starts_with("would map"),
        "{dry}"
    );
    assert!(
        !e.root.join("store/messages.db").exists(),
        "a dry run created the store"
    );
    assert!(
        !e.root.join("groups/main").exists(),
        "a dry run wrote files"
    );
    assert!(!e.home.join(".config/rust-claw").exists());

    let report = e.import(&[]);
    // Groups: Discord mapped, folder lowercased, WhatsApp reported.
    assert!(
        line(&report, "dc:111111111111111111").starts_with("mapped"),
        "{report}"
    );
    let ops = line(&report, "dc:222222222222222222");
    assert!(
        ops.contains("folder Team-Ops → team-ops")
            && ops.contains("containerConfig not carried over"),
        "{ops}"
    );
    assert!(
        line(&report, "120363000000000000@g.us").contains("skipped") && report.contains("WhatsApp"),
        "{report}"
    );
    // Tasks: re-validated, or skipped with why.
    assert!(
        line(&report, "task task-done").contains("status completed"),
        "{report}"
    );
    assert!(
        line(&report, "task task-script").contains("pre-run script"),
        "{report}"
    );
    assert!(
        line(&report, "task task-family").contains("family was not imported"),
        "{report}"
    );
    assert!(
        line(&report, "task task-badcron").starts_with("skipped"),
        "{report}"
    );
    assert!(line(&report, "history").contains("1 messages"), "{report}");
    // Files: the link in the source and the link in the target are both refused.
    assert!(
        line(&report, "groups/Team-Ops/passwd").contains("skipped"),
        "{report}"
    );
    assert!(
        line(&report, "groups/Team-Ops/notes").contains("skipped"),
        "{report}"
    );
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "wrote through a planted link"
    );
    assert!(!report.contains("container-1.log"), "{report}");

    let groups: Value = serde_json::from_str(&e.ok(&["list-groups", "--json"])).unwrap();
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0]["jid"], "111111111111111111@discord");
    assert_eq!(groups[0]["is_main"], true);
    assert_eq!(groups[1]["folder"], "team-ops");
    assert_eq!(groups[1]["requires_trigger"], true);

    let tasks: Value = serde_json::from_str(&e.ok(&["list-tasks", "--json"])).unwrap();
    let by_id = |id: &str| {
        tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id}: {tasks}"))
    };
    let next =
        |t: &Value| chrono::DateTime::parse_from_rfc3339(t["next_run"].as_str().unwrap()).unwrap();
    // Crontab weekdays as cron-parser reads them: 1-5 is Monday to Friday, 0 is Sunday.
    let weekdays = next(&by_id("task-weekdays"));
    assert!(
        weekdays.weekday().number_from_monday() <= 5 && weekdays.hour() == 9,
        "{weekdays}"
    );
    assert_eq!(
        by_id("task-weekdays")["chat_jid"],
        "222222222222222222@discord"
    );
    assert_eq!(by_id("task-weekdays")["context_mode"], "group");
    let sunday = next(&by_id("task-sunday"));
    assert_eq!(
        (sunday.weekday(), sunday.hour(), sunday.minute()),
        (chrono::Weekday::Sun, 18, 30)
    );
    assert_eq!(by_id("task-hourly")["status"], "paused");
    assert_eq!(tasks.as_array().unwrap().len(), 3, "{tasks}");

    // Memory and files.
    let read = |p: &str| std::fs::read_to_string(e.root.join(p)).unwrap();
    assert_eq!(read("groups/main/AGENTS.md"), "# Main memory\nLikes tea.\n");
    assert_eq!(read("groups/team-ops/AGENTS.md"), "# Ops\nOn call: Kim.\n");
    assert_eq!(read("groups/global/AGENTS.md"), "# Everyone\n");
    assert!(!e.root.join("groups/team-ops/logs").exists());
    assert!(std::fs::symlink_metadata(e.root.join("groups/team-ops/passwd")).is_err());

    // The allowlist, with its chat keys mapped.
    let allow: Value = serde_json::from_str(
        &std::fs::read_to_string(e.home.join(".config/rust-claw/sender-allowlist.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(allow["chats"]["222222222222222222@discord"]["mode"], "drop");
    assert!(allow["chats"].get("tg:-1001").is_none());
    assert_eq!(allow["default"]["allow"], "*");

    // Again: nothing new, everything present.
    let again = e.import(&[]);
    assert!(again.contains("\n0 imported, 0 mapped,"), "{again}");
    assert!(
        line(&again, "dc:111111111111111111").starts_with("present"),
        "{again}"
    );
    assert!(
        line(&again, "task task-weekdays").starts_with("present"),
        "{again}"
    );
    let tasks2: Value = serde_json::from_str(&e.ok(&["list-tasks", "--json"])).unwrap();
    assert_eq!(tasks2.as_array().unwrap().len(), 3);
}

#[test]
fn the_starter_memory_of_an_existing_main_group_gives_way_to_nanoclaws() {
    let e = env();
    e.ok(&["bootstrap-main", "--jid", "111111111111111111@discord"]);
    assert!(
        std::fs::read_to_string(e.root.join("groups/main/AGENTS.md"))
            .unwrap()
            .contains("Memory for this group")
    );
    let report = e.import(&["--json"]);
    let v: Value = serde_json::from_str(&report).unwrap();
    let item = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source"] == "groups/main/CLAUDE.md")
        .unwrap();
    assert_eq!(item["outcome"], "mapped", "{item}");
    assert_eq!(
        std::fs::read_to_string(e.root.join("groups/main/AGENTS.md")).unwrap(),
        "# Main memory\nLikes tea.\n"
    );
    // A memory someone wrote is never replaced.
    std::fs::write(e.root.join("groups/main/AGENTS.md"), "mine\n").unwrap();
    e.import(&[]);
    assert_eq!(
        std::fs::read_to_string(e.root.join("groups/main/AGENTS.md")).unwrap(),
        "mine\n"
    );
}
