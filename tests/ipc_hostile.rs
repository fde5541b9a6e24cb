//! A hostile corpus thrown at a running watcher. After each entry: nothing
//! unauthorised was applied, the entry was answered/quarantined as expected, and the
//! watcher still serves the next valid request.

#[path = "ipc_support/mod.rs"]
mod support;

use std::os::unix::fs::symlink;
use std::time::Duration;

use rust_claw::ipc::protocol::Status;
use serde_json::{Value, json};
use support::*;

/// The state an unauthorised request must not change.
fn state(rig: &Rig) -> (i64, i64, i64, i64, String) {
    let summary: String = rig.db(|c| {
        c.query_row(
            "SELECT COALESCE(group_concat(id || ':' || status || ':' || prompt, ','), '') FROM scheduled_tasks",
            [],
            |r| r.get(0),
        )
        .unwrap()
    });
    (
        rig.count("SELECT COUNT(*) FROM outbox"),
        rig.count("SELECT COUNT(*) FROM registered_groups"),
        rig.count("SELECT COUNT(*) FROM registered_groups WHERE is_main = 1"),
        rig.count("SELECT COUNT(*) FROM group_skills"),
        summary,
    )
}

enum Expect {
    /// Answered with this status, the file quarantined (true) or removed (false).
    Answer(Status, bool),
    /// Quarantined without an answer (the id or the folder is unusable).
    Silent,
}

struct Case {
    name: &'static str,
    folder: &'static str,
    file: String,
    make: Box<dyn Fn(&std::path::Path)>,
    expect: Expect,
}

fn bytes(name: &'static str, content: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        folder: "ops",
        file: format!("{name}.json"),
        make: Box::new(move |p| std::fs::write(p, &content).unwrap()),
        expect,
    }
}

fn req(name: &'static str, v: Value, expect: Expect) -> Case {
    bytes(name, v.to_string().into_bytes(), expect)
}

fn from(folder: &'static str, mut c: Case) -> Case {
    c.folder = folder;
    c
}

const INVALID: Expect = Expect::Answer(Status::Invalid, true);
const DENIED: Expect = Expect::Answer(Status::Denied, false);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus() {
    let mut rig = Rig::new().await;
    // A task owned by dev, for cross-group attempts.
    let r = rig
        .ask("main", "setup", json!({"type":"schedule_task","prompt":"dev's","schedule_type":"interval","schedule_value":"3600000","targetJid":DEV}))
        .await;
    let dev_task = r.result.unwrap()["taskId"].as_str().unwrap().to_owned();
    let outside = rig.dir.path().join("outside.json");
    std::fs::write(
        &outside,
        json!({"type":"message","chatJid":OPS,"text":"via link"}).to_string(),
    )
    .unwrap();
    let outside2 = outside.clone();

    let deep_arr = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!(
        r#"{{"type":"message","chatJid":"{OPS}","text":"x","extra":{}1{}}}"#,
        r#"{"a":"#.repeat(40),
        "}".repeat(40)
    );
    let msg = |text: Value| json!({"type":"message","chatJid":OPS,"text":text});
    let sched = |kind: &str, value: &str| json!({"type":"schedule_task","prompt":"p","schedule_type":kind,"schedule_value":value});

    let cases: Vec<Case> = vec![
        Case {
            name: "symlink-etc",
            folder: "ops",
            file: "symlink-etc.json".into(),
            make: Box::new(|p| symlink("/etc/passwd", p).unwrap()),
            expect: INVALID,
        },
        Case {
            name: "symlink-valid",
            folder: "ops",
            file: "symlink-valid.json".into(),
            make: Box::new(move |p| symlink(&outside2, p).unwrap()),
            expect: INVALID,
        },
        Case {
            name: "symlink-dangling",
            folder: "ops",
            file: "symlink-dangling.json".into(),
            make: Box::new(|p| symlink("/nonexistent/x", p).unwrap()),
            expect: INVALID,
        },
        Case {
            name: "fifo",
            folder: "ops",
            file: "fifo.json".into(),
            make: Box::new(|p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap()),
            expect: INVALID,
        },
        Case {
            name: "directory",
            folder: "ops",
            file: "directory.json".into(),
            make: Box::new(|p| std::fs::create_dir(p).unwrap()),
            expect: INVALID,
        },
        bytes(
            "oversized",
            {
                let mut v = br#"{"type":"message","chatJid":"1@discord","text":""#.to_vec();
                v.resize(2 << 20, b'a');
                v.extend_from_slice(b"\"}");
                v
            },
            INVALID,
        ),
        bytes("one-byte-over", vec![b' '; (1 << 20) + 1], INVALID),
        bytes(
            "invalid-utf8",
            b"{\"type\":\"message\",\"text\":\"\xff\xfe\"}".to_vec(),
            INVALID,
        ),
        bytes("invalid-json", b"{\"type\":\"message\",".to_vec(), INVALID),
        bytes("empty", Vec::new(), INVALID),
        bytes(
            "bom",
            b"\xef\xbb\xbf{\"type\":\"refresh_skills\"}".to_vec(),
            INVALID,
        ),
        bytes("array", b"[1,2,3]".to_vec(), INVALID),
        bytes("string", b"\"message\"".to_vec(), INVALID),
        bytes("null", b"null".to_vec(), INVALID),
        bytes("deep-array", deep_arr.into_bytes(), INVALID),
        bytes("deep-object-field", deep_obj.into_bytes(), INVALID),
        bytes(
            "huge-number",
            b"{\"type\":\"message\",\"x\":1e999999}".to_vec(),
            INVALID,
        ),
        req("no-type", json!({"chatJid":OPS,"text":"x"}), INVALID),
        req("type-number", json!({"type":5}), INVALID),
        req("unknown-type", json!({"type":"delete_everything"}), INVALID),
        req(
            "jid-number",
            json!({"type":"message","chatJid":5,"text":"x"}),
            INVALID,
        ),
        req("text-array", msg(json!(["a"])), INVALID),
        req("text-object", msg(json!({"a":1})), INVALID),
        req("huge-text", msg(json!("x".repeat(16_001))), INVALID),
        req("empty-text", msg(json!("   ")), INVALID),
        req(
            "jid-traversal",
            json!({"type":"message","chatJid":"../../etc@local","text":"x"}),
            INVALID,
        ),
        req(
            "jid-garbage",
            json!({"type":"message","chatJid":"../../etc/passwd","text":"x"}),
            INVALID,
        ),
        req("bad-cron", sched("cron", "61 * * * *"), INVALID),
        req("bad-schedule-type", sched("weekly", "1"), INVALID),
        req(
            "once-in-past",
            sched("once", "2001-01-01T00:00:00Z"),
            INVALID,
        ),
        req(
            "prompt-too-long",
            json!({"type":"schedule_task","prompt":"p".repeat(20_001),"schedule_type":"interval","schedule_value":"60000"}),
            INVALID,
        ),
        req(
            "schedule-other-group",
            json!({"type":"schedule_task","prompt":"p","schedule_type":"interval","schedule_value":"60000","targetJid":DEV}),
            DENIED,
        ),
        req(
            "schedule-spoofed-main",
            json!({"type":"schedule_task","prompt":"p","schedule_type":"interval","schedule_value":"60000","targetJid":MAIN,"groupFolder":"main","isMain":true}),
            DENIED,
        ),
        req(
            "task-id-traversal",
            json!({"type":"pause_task","taskId":"../../etc"}),
            INVALID,
        ),
        req(
            "pause-cross-group",
            json!({"type":"pause_task","taskId":dev_task}),
            DENIED,
        ),
        req(
            "cancel-cross-group",
            json!({"type":"cancel_task","taskId":dev_task}),
            DENIED,
        ),
        req(
            "update-cross-group",
            json!({"type":"update_task","taskId":dev_task,"prompt":"pwned"}),
            DENIED,
        ),
        req(
            "resume-cross-group",
            json!({"type":"resume_task","taskId":dev_task}),
            DENIED,
        ),
        req(
            "register-from-non-main",
            json!({"type":"register_group","jid":"555555555555555555@discord","name":"x","folder":"evil"}),
            DENIED,
        ),
        req(
            "register-spoofed-ismain",
            json!({"type":"register_group","jid":"555555555555555555@discord","name":"x","folder":"evil","isMain":true,"groupFolder":"main"}),
            DENIED,
        ),
        req(
            "refresh-groups-non-main",
            json!({"type":"refresh_groups","isMain":true}),
            DENIED,
        ),
        req(
            "message-spoofed-main",
            json!({"type":"message","chatJid":MAIN,"text":"x","groupFolder":"main","isMain":true}),
            DENIED,
        ),
        req(
            "message-other-group",
            json!({"type":"message","chatJid":DEV,"text":"x"}),
            DENIED,
        ),
        req(
            "skill-traversal",
            json!({"type":"enable_skill","skillName":"../../etc"}),
            INVALID,
        ),
        req(
            "skill-unknown",
            json!({"type":"enable_skill","skillName":"nonexistent"}),
            INVALID,
        ),
        req(
            "skill-other-group",
            json!({"type":"enable_skill","skillName":"x","targetGroupFolder":"dev"}),
            DENIED,
        ),
        req(
            "skill-folder-traversal",
            json!({"type":"enable_skill","skillName":"x","targetGroupFolder":"../main"}),
            INVALID,
        ),
        req(
            "requires-trigger-string",
            json!({"type":"register_group","jid":"555555555555555555@discord","name":"x","folder":"evil","requiresTrigger":"no"}),
            INVALID,
        ),
        from(
            "main",
            req(
                "register-global",
                json!({"type":"register_group","jid":"555555555555555555@discord","name":"x","folder":"global"}),
                INVALID,
            ),
        ),
        from(
            "main",
            req(
                "register-traversal",
                json!({"type":"register_group","jid":"555555555555555555@discord","name":"x","folder":"../../etc"}),
                INVALID,
            ),
        ),
        from(
            "main",
            req(
                "register-bad-jid",
                json!({"type":"register_group","jid":"../../etc","name":"x","folder":"evil"}),
                INVALID,
            ),
        ),
        from(
            "main",
            req(
                "register-existing-chat",
                json!({"type":"register_group","jid":OPS,"name":"x","folder":"evil"}),
                Expect::Answer(Status::Invalid, false),
            ),
        ),
        from(
            "main",
            req(
                "register-bad-trigger",
                json!({"type":"register_group","jid":"555555555555555555@discord","name":"x","folder":"evil","trigger":"no at"}),
                INVALID,
            ),
        ),
        Case {
            name: "bad id",
            folder: "ops",
            file: "bad id.json".into(),
            make: Box::new(|p| std::fs::write(p, "{}").unwrap()),
            expect: Expect::Silent,
        },
        Case {
            name: "-dash-first",
            folder: "ops",
            file: "-dash-first.json".into(),
            make: Box::new(|p| std::fs::write(p, "{}").unwrap()),
            expect: Expect::Silent,
        },
        Case {
            name: "unregistered",
            folder: "ghost",
            file: "unregistered.json".into(),
            make: Box::new(|p| {
                std::fs::write(
                    p,
                    json!({"type":"message","chatJid":MAIN,"text":"boo"}).to_string(),
                )
                .unwrap()
            }),
            expect: Expect::Silent,
        },
        Case {
            name: "invalid-folder-dir",
            folder: "Bad.Dir",
            file: "invalid-folder-dir.json".into(),
            make: Box::new(|p| {
                std::fs::write(p, json!({"type":"refresh_groups"}).to_string()).unwrap()
            }),
            expect: Expect::Silent,
        },
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let before = state(&rig);
    for (i, case) in cases.iter().enumerate() {
        let dir = rig.ipc(case.folder).join("tasks");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(&case.file);
        let unregistered = ["ghost", "Bad.Dir"].contains(&case.folder);
        if unregistered {
            // Unregistered directories are not watched; a restart's rescan finds them.
            rig.stop().await;
        }
        (case.make)(&path);
        if unregistered {
            rig.start().await;
        }
        let id = case.name;
        match case.expect {
            Expect::Answer(status, quarantined) => {
                let r = rig.response(case.folder, id).await;
                assert_eq!(r.status, status, "{id}: {r:?}");
                assert!(!r.message.is_empty());
                wait_for(Duration::from_secs(5), || !exists(&path)).await;
                assert_eq!(
                    rig.quarantined(case.folder, id).is_some(),
                    quarantined,
                    "{id}"
                );
            }
            Expect::Silent => {
                wait_for(Duration::from_secs(5), || !exists(&path)).await;
                let reason = rig
                    .quarantined(case.folder, id)
                    .unwrap_or_else(|| panic!("{id} not quarantined"));
                assert!(!reason.is_empty());
                assert!(!rig.response_path(case.folder, id).exists(), "{id}");
            }
        }
        assert_eq!(state(&rig), before, "{id} changed state");
        // The watcher still serves a valid request.
        let r = rig
            .ask("dev", &format!("ok-{i}"), json!({"type":"refresh_skills"}))
            .await;
        assert_eq!(r.status, Status::Ok, "after {id}");
    }
    // The link's target was neither read nor moved.
    assert!(outside.exists());
    assert!(std::path::Path::new("/etc/passwd").exists());
    let reason = rig.quarantined("ops", "symlink-etc").unwrap();
    assert!(reason.contains("symbolic link"), "{reason}");
    assert!(rig.quarantined("ops", "fifo").unwrap().contains("FIFO"));
    assert!(
        rig.quarantined("ops", "deep-array")
            .unwrap()
            .contains("nested")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_replaced_request_dir_is_recreated_and_never_followed() {
    let mut rig = Rig::new().await;
    let tasks = rig.ipc("ops").join("tasks");
    let is_real_dir = |p: &std::path::Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    // Deleted while watched: recreated and watched again.
    std::fs::remove_dir_all(&tasks).unwrap();
    wait_for(Duration::from_secs(5), || is_real_dir(&tasks)).await;
    let r = rig
        .ask("ops", "after-delete", json!({"type":"refresh_skills"}))
        .await;
    assert_eq!(r.status, Status::Ok);
    // Replaced by a symlink to a host directory (here while the daemon is down).
    rig.stop().await;
    let victim = rig.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("precious.json"), "{}").unwrap();
    std::fs::remove_dir_all(&tasks).unwrap();
    symlink(&victim, &tasks).unwrap();
    rig.start().await;
    assert!(is_real_dir(&tasks));
    let r = rig
        .ask("ops", "after-link", json!({"type":"refresh_skills"}))
        .await;
    assert_eq!(r.status, Status::Ok);
    assert!(
        victim.join("precious.json").exists(),
        "the host file was touched"
    );
    assert!(rig.quarantined("ops", "tasks-dir").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_files_at_once_and_a_restart() {
    let mut rig = Rig::new().await;
    let before = rig.count("SELECT COUNT(*) FROM outbox");
    // Written while the watcher runs: half valid messages, a tenth hostile, the rest
    // cross-group attempts, spread over two groups.
    let n = 10_000;
    for i in 0..n {
        let (f, body) = match i % 10 {
            0 => ("ops", "{not json".to_owned()),
            1..=3 => (
                "dev",
                json!({"type":"message","chatJid":OPS,"text":"x"}).to_string(),
            ),
            4..=6 => (
                "ops",
                json!({"type":"message","chatJid":OPS,"text":format!("m{i}")}).to_string(),
            ),
            _ => (
                "dev",
                json!({"type":"message","chatJid":DEV,"text":format!("m{i}")}).to_string(),
            ),
        };
        rig.put_raw(f, "tasks", &format!("{i:05}.json"), body.as_bytes());
    }
    // A file renamed in while the watcher restarts.
    rig.stop().await;
    rig.put_raw(
        "ops",
        "tasks",
        "zz-during-restart.json",
        json!({"type":"message","chatJid":OPS,"text":"restart"})
            .to_string()
            .as_bytes(),
    );
    rig.start().await;
    wait_for(Duration::from_secs(120), || {
        rig.count("SELECT COUNT(*) FROM ipc_ledger") == n + 1
    })
    .await;
    let valid = (0..n).filter(|i| (4..10).contains(&(i % 10))).count() as i64 + 1;
    assert_eq!(rig.count("SELECT COUNT(*) FROM outbox") - before, valid);
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM ipc_ledger WHERE status = 'denied'"),
        3000
    );
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM ipc_ledger WHERE status = 'invalid'"),
        1000
    );
    for f in ["ops", "dev"] {
        wait_for(Duration::from_secs(30), || {
            std::fs::read_dir(rig.ipc(f).join("tasks")).unwrap().count() == 0
        })
        .await;
    }
    let r = rig.response("ops", "zz-during-restart").await;
    assert_eq!(r.status, Status::Ok);
}
