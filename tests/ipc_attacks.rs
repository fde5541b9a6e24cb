//! Issue #11's attacks, each played by a hostile agent that writes only inside its own
//! directories while the IPC service runs. After each: nothing outside the tree was
//! created, changed or removed; the impostor is in the quarantine with a reason; the
//! directory is repaired; the next ordinary request is answered.

#[path = "support/files.rs"]
mod files;
#[path = "ipc_support/mod.rs"]
mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use files::{files_below, is_real_dir};
use rust_claw::agent::home::{self, HomeConfig};
use rust_claw::ipc::protocol::Status;
use serde_json::json;
use support::*;

/// A directory outside the root holding a valid request file.
fn victim(rig: &Rig) -> PathBuf {
    let v = rig.dir.path().join("victim");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(
        v.join("precious.json"),
        json!({"type":"message","chatJid":MAIN,"text":"stolen"}).to_string(),
    )
    .unwrap();
    v
}

/// Removes the directory `at` and puts a link to `to` there, as an agent would: the
/// service may recreate the directory in between, so try again until the link is in.
fn replace_with_link(at: &Path, to: &Path) {
    for _ in 0..100 {
        let _ = std::fs::remove_dir_all(at);
        if symlink(to, at).is_ok() {
            return;
        }
    }
    panic!("could not replace {at:?} with a link");
}

async fn still_serves(rig: &Rig, f: &str, id: &str) {
    let r = rig.ask(f, id, json!({"type":"refresh_skills"})).await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
}

fn ledger_has(rig: &Rig, id: &str) -> bool {
    let id = id.to_owned();
    rig.db(move |c| {
        c.query_row(
            "SELECT COUNT(*) FROM ipc_ledger WHERE request_id = ?1",
            [id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    }) > 0
}

/// Attack 1: `responses/` replaced by a link into main's `tasks/`: the answer must not
/// land there (and so never be executed as main), nor anywhere outside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_replaced_by_a_link_is_never_written_through() {
    let rig = Rig::new().await;
    let responses = rig.ipc("ops").join("responses");
    let main_tasks = rig.ipc("main").join("tasks");
    let v = victim(&rig);
    let before = files_below(&v);
    replace_with_link(&responses, Path::new("../main/tasks"));
    // An answer named like a request main would apply.
    let p = rig.put(
        "ops",
        "auth",
        &json!({"type":"message","chatJid":OPS,"text":"hi"}),
    );
    let r = rig.response("ops", "auth").await;
    assert_eq!(r.status, Status::Ok);
    wait_for(Duration::from_secs(5), || !exists(&p)).await;
    assert!(is_real_dir(&responses), "responses/ repaired");
    assert!(
        !exists(&main_tasks.join("auth.json")),
        "answer written into main's tasks/"
    );
    assert!(!ledger_has_for(&rig, "main", "auth"), "executed as main");
    let reason = rig
        .quarantined("ops", "responses-dir")
        .expect("impostor quarantined");
    assert!(reason.contains("symbolic link"), "{reason}");
    // Now a link to a directory outside the root.
    replace_with_link(&responses, &v);
    still_serves(&rig, "ops", "after").await;
    assert_eq!(files_below(&v), before, "the outside directory changed");
    still_serves(&rig, "main", "main-ok").await;
}

fn ledger_has_for(rig: &Rig, folder: &str, id: &str) -> bool {
    let (folder, id) = (folder.to_owned(), id.to_owned());
    rig.db(move |c| {
        c.query_row(
            "SELECT COUNT(*) FROM ipc_ledger WHERE group_folder = ?1 AND request_id = ?2",
            [folder, id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    }) > 0
}

/// Attack 2: `tasks/` moved aside and replaced by a link while watched: files behind
/// the link are never read, applied, moved or deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tasks_dir_replaced_by_a_link_is_repaired_not_followed() {
    let rig = Rig::new().await;
    let tasks = rig.ipc("ops").join("tasks");
    let v = victim(&rig);
    let before = files_below(&v);
    // Moved aside, then a link put in its place (the service may recreate the
    // directory in between: that one is moved aside too).
    for i in 0.. {
        assert!(i < 100, "could not put the link in place");
        std::fs::rename(&tasks, rig.ipc("ops").join(format!("tasks.old{i}"))).unwrap();
        if symlink(&v, &tasks).is_ok() {
            break;
        }
    }
    // A file renamed into the moved directory still reports under "tasks".
    std::fs::write(v.join("late.json"), b"{\"type\":\"refresh_groups\"}").unwrap();
    wait_for(Duration::from_secs(5), || is_real_dir(&tasks)).await;
    still_serves(&rig, "ops", "after-move").await;
    assert_eq!(files_below(&v).len(), before.len() + 1);
    assert!(v.join("precious.json").exists() && v.join("late.json").exists());
    assert!(!ledger_has(&rig, "precious") && !ledger_has(&rig, "late"));
    let reason = rig
        .quarantined("ops", "tasks-dir")
        .expect("impostor quarantined");
    assert!(reason.contains("symbolic link"), "{reason}");
}

/// Attack 3: the repair race — `rmdir messages; ln -s /elsewhere messages` in a loop
/// for more than 2 s while the owner writes request-like files in /elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rmdir_symlink_race_never_wins() {
    let rig = Rig::new().await;
    let messages = rig.ipc("ops").join("messages");
    let v = victim(&rig);
    let attacker = {
        let (messages, v) = (messages.clone(), v.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut i = 0;
            while start.elapsed() < Duration::from_millis(2500) {
                let _ = std::fs::remove_dir(&messages);
                let _ = std::fs::remove_file(&messages);
                let _ = symlink(&v, &messages);
                // The owner keeps writing in its own directory.
                let _ = std::fs::write(v.join(format!("owner-{i}.json")), b"{}");
                i += 1;
            }
            i
        })
    };
    let rounds = tokio::task::spawn_blocking(move || attacker.join().unwrap())
        .await
        .unwrap();
    assert!(rounds > 100, "the loop ran {rounds} times");
    wait_for(Duration::from_secs(10), || is_real_dir(&messages)).await;
    // Every file the owner wrote is still there, unread.
    for i in 0..rounds {
        assert!(
            v.join(format!("owner-{i}.json")).exists(),
            "owner-{i} consumed"
        );
    }
    assert!(v.join("precious.json").exists());
    assert!(!ledger_has(&rig, "precious"));
    still_serves(&rig, "ops", "after-race").await;
    let p = rig.put_raw(
        "ops",
        "messages",
        "m1.json",
        json!({"type":"message","chatJid":OPS,"text":"hi"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(rig.response("ops", "m1").await.status, Status::Ok);
    wait_for(Duration::from_secs(5), || !exists(&p)).await;
}

/// Attack 4: an interval of 1 ms (or a cron with a seconds field) from an agent is
/// refused with the minimum named; a minute is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_schedules_have_a_floor() {
    let rig = Rig::new().await;
    let sched = |kind: &str, value: &str| json!({"type":"schedule_task","prompt":"p","schedule_type":kind,"schedule_value":value});
    for (id, kind, value) in [
        ("i1", "interval", "1"),
        ("i59", "interval", "59999"),
        ("c6", "cron", "*/5 * * * * *"),
        ("c6b", "cron", "0,30 * * * * *"),
    ] {
        let r = rig.ask("ops", id, sched(kind, value)).await;
        assert_eq!(r.status, Status::Invalid, "{id}: {r:?}");
        assert!(r.message.contains("60000 ms"), "{id}: {}", r.message);
    }
    let r = rig.ask("main", "m1", sched("interval", "1")).await;
    assert_eq!(r.status, Status::Invalid, "main is an agent too");
    for (id, kind, value) in [("ok1", "interval", "60000"), ("ok2", "cron", "* * * * *")] {
        let r = rig.ask("ops", id, sched(kind, value)).await;
        assert_eq!(r.status, Status::Ok, "{id}: {r:?}");
    }
    // update_task is held to the same floor.
    let task = rig
        .ask("ops", "ok3", sched("interval", "3600000"))
        .await
        .result
        .unwrap()["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = rig
        .ask(
            "ops",
            "u1",
            json!({"type":"update_task","taskId":task,"schedule_value":"10"}),
        )
        .await;
    assert_eq!(r.status, Status::Invalid, "{r:?}");
    assert_eq!(
        rig.count(
            "SELECT COUNT(*) FROM scheduled_tasks WHERE schedule_value IN ('1','10','59999')"
        ),
        0
    );
}

/// At most MAX_TASKS_PER_GROUP active tasks per group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_per_group_are_capped() {
    let mut rig = Rig::new().await;
    rig.stop().await;
    rig.limits.max_tasks_per_group = 3;
    rig.start().await;
    let sched = json!({"type":"schedule_task","prompt":"p","schedule_type":"interval","schedule_value":"3600000"});
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = rig.ask("ops", &format!("t{i}"), sched.clone()).await;
        assert_eq!(r.status, Status::Ok);
        ids.push(r.result.unwrap()["taskId"].as_str().unwrap().to_owned());
    }
    let r = rig.ask("ops", "t3", sched.clone()).await;
    assert_eq!(r.status, Status::Invalid);
    assert!(r.message.contains("MAX_TASKS_PER_GROUP"), "{}", r.message);
    // Another group is not affected; a paused task frees a place, resuming it needs one.
    assert_eq!(rig.ask("dev", "d0", sched.clone()).await.status, Status::Ok);
    let pause = json!({"type":"pause_task","taskId":ids[0]});
    assert_eq!(rig.ask("ops", "p0", pause).await.status, Status::Ok);
    assert_eq!(rig.ask("ops", "t4", sched.clone()).await.status, Status::Ok);
    let resume = json!({"type":"resume_task","taskId":ids[0]});
    assert_eq!(rig.ask("ops", "r0", resume).await.status, Status::Invalid);
}

/// Attack 5: thousands of invalid 100 KB requests leave a bounded footprint: the
/// quarantine keeps the newest N, and reasons, responses and ledger rows quote at
/// most ~200 characters of the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_cannot_fill_the_disk() {
    let mut rig = Rig::new().await;
    rig.stop().await;
    rig.limits.quarantine.max_files = 20;
    rig.start().await;
    let big = "x".repeat(100_000);
    let n = 200;
    for i in 0..n {
        rig.put(
            "ops",
            &format!("big-{i:04}"),
            &json!({"type":"schedule_task","prompt":"p","schedule_type":"cron","schedule_value":big}),
        );
    }
    let last = rig.response("ops", &format!("big-{:04}", n - 1)).await;
    assert_eq!(last.status, Status::Invalid);
    assert!(
        last.message.chars().count() <= 400,
        "{}",
        last.message.len()
    );
    wait_for(Duration::from_secs(20), || {
        std::fs::read_dir(rig.ipc("ops").join("tasks"))
            .unwrap()
            .count()
            == 0
    })
    .await;
    let errs = rig.paths.ipc_errors_dir("ops");
    // The last entry is trimmed just after its file leaves tasks/.
    wait_for(Duration::from_secs(5), || {
        std::fs::read_dir(&errs).unwrap().count() == 40
    })
    .await;
    let mut bytes = 0;
    let mut files = 0;
    for e in std::fs::read_dir(&errs).unwrap() {
        let e = e.unwrap();
        files += 1;
        bytes += e.metadata().unwrap().len();
        if e.file_name().to_string_lossy().ends_with(".reason") {
            assert!(e.metadata().unwrap().len() < 1200, "{:?}", e.file_name());
        }
    }
    assert_eq!(files, 40, "20 entries and their reasons");
    assert!(bytes < 20 * 101_000 + 20 * 1200, "{bytes}");
    let longest: i64 = rig.count("SELECT MAX(length(response)) FROM ipc_ledger");
    assert!(longest < 1000, "ledger row of {longest} bytes");
    let responses: u64 = std::fs::read_dir(rig.ipc("ops").join("responses"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    assert!(responses < 1000, "response of {responses} bytes");
    still_serves(&rig, "ops", "after-flood").await;
}

fn home_config(rig: &Rig, f: &str) -> HomeConfig {
    HomeConfig {
        model: None,
        reasoning_effort: None,
        approval_policy: "never".into(),
        sandbox_mode: "workspace-write".into(),
        tools_exe: "/bin/true".into(),
        ipc_dir: rig.ipc(f),
        chat_jid: None,
        timezone: None,
        writable_roots: Vec::new(),
        user_fragment: None,
    }
}

/// Attack 6: main's agent links `groups/global/AGENTS.md` to the root's `.env`; the
/// next turn of another group must not copy the secret into its codex home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_memory_link_leaks_nothing() {
    let rig = Rig::new().await;
    let env = rig.dir.path().join(".env");
    std::fs::write(&env, "DISCORD_BOT_TOKEN=secret-token\n").unwrap();
    let global = rig.paths.global_dir();
    std::fs::create_dir_all(&global).unwrap();
    symlink("../../.env", global.join("AGENTS.md")).unwrap();
    let ops = folder("ops");
    home::prepare(&rig.paths, &ops, &home_config(&rig, "ops"), &[]).unwrap();
    let home = rig.paths.codex_home(&ops);
    assert!(
        !exists(&home.join("AGENTS.md")),
        "a link's target became memory"
    );
    // A real file is used; then a FIFO is ignored without blocking.
    std::fs::remove_file(global.join("AGENTS.md")).unwrap();
    std::fs::write(global.join("AGENTS.md"), "shared").unwrap();
    home::prepare(&rig.paths, &ops, &home_config(&rig, "ops"), &[]).unwrap();
    assert_eq!(
        std::fs::read_to_string(home.join("AGENTS.md")).unwrap(),
        "shared"
    );
    std::fs::remove_file(global.join("AGENTS.md")).unwrap();
    nix::unistd::mkfifo(&global.join("AGENTS.md"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    home::prepare(&rig.paths, &ops, &home_config(&rig, "ops"), &[]).unwrap();
    assert!(!exists(&home.join("AGENTS.md")));
    for entry in walk(&home) {
        let text = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("secret-token"),
            "{entry:?} holds the token"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "DISCORD_BOT_TOKEN=secret-token\n"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if is_real_dir(&p) {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Attack 7: ops replaces `groups/ops/skills` with a link to main's skills: main's
/// private skill can be neither enabled for ops nor copied into ops' codex home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skills_link_to_another_group_gives_nothing() {
    let rig = Rig::new().await;
    let main_skill = rig.paths.group_skills_dir(&folder("main")).join("private");
    std::fs::create_dir_all(&main_skill).unwrap();
    std::fs::write(main_skill.join("SKILL.md"), "---\nname: private\n---\n").unwrap();
    std::fs::write(main_skill.join("notes.txt"), "main's secret notes").unwrap();
    let ops_dir = rig.paths.group_dir(&folder("ops"));
    std::fs::create_dir_all(&ops_dir).unwrap();
    symlink("../main/skills", ops_dir.join("skills")).unwrap();
    let r = rig
        .ask(
            "ops",
            "e1",
            json!({"type":"enable_skill","skillName":"private"}),
        )
        .await;
    assert_eq!(r.status, Status::Invalid, "{r:?}");
    // Even if the store said it was enabled, nothing is copied.
    let ops = folder("ops");
    let installed = home::prepare(
        &rig.paths,
        &ops,
        &home_config(&rig, "ops"),
        &["private".into()],
    )
    .unwrap();
    assert!(installed.is_empty());
    assert!(!exists(&rig.paths.codex_home(&ops).join("skills/private")));
    // A link to the group folder itself is refused the same way.
    std::fs::remove_file(ops_dir.join("skills")).unwrap();
    std::fs::remove_dir(&ops_dir).unwrap();
    symlink("main", &ops_dir).unwrap();
    let installed = home::prepare(
        &rig.paths,
        &ops,
        &home_config(&rig, "ops"),
        &["private".into()],
    );
    assert!(installed.map(|i| i.is_empty()).unwrap_or(true));
    assert!(!exists(&rig.paths.codex_home(&ops).join("skills/private")));
    still_serves(&rig, "ops", "after-skills").await;
}

/// Names the host will never apply are quarantined with a reason, never ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_names_are_quarantined_not_ignored() {
    use std::os::unix::ffi::OsStrExt;
    let mut rig = Rig::new().await;
    let tasks = rig.ipc("ops").join("tasks");
    let body = json!({"type":"refresh_skills"}).to_string();
    let long = format!("{}.json", "n".repeat(250));
    let non_utf8 = std::ffi::OsStr::from_bytes(b"bad-\xff.json").to_owned();
    for name in [
        std::ffi::OsString::from("x.JSON"),
        "..json".into(),
        long.clone().into(),
        non_utf8,
    ] {
        std::fs::write(tasks.join(&name), &body).unwrap();
    }
    // The same id in both request directories at once (both there when the daemon
    // starts): one applied, one refused.
    rig.stop().await;
    rig.put_raw("ops", "messages", "twin.json", body.as_bytes());
    rig.put_raw("ops", "tasks", "twin.json", body.as_bytes());
    rig.start().await;
    wait_for(Duration::from_secs(5), || {
        std::fs::read_dir(&tasks).unwrap().count() == 0
            && std::fs::read_dir(rig.ipc("ops").join("messages"))
                .unwrap()
                .count()
                == 0
    })
    .await;
    assert!(rig.quarantined("ops", "x").is_some());
    assert!(rig.quarantined("ops", "_.").is_some() || rig.quarantined("ops", "_").is_some());
    let stem = "n".repeat(100);
    assert!(rig.quarantined("ops", &stem).unwrap().contains("file name"));
    let reason = rig.quarantined("ops", "twin").expect("twin quarantined");
    assert!(reason.contains("already in flight"), "{reason}");
    assert_eq!(rig.response("ops", "twin").await.status, Status::Ok);
    let errs: Vec<String> = std::fs::read_dir(rig.paths.ipc_errors_dir("ops"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        errs.iter()
            .any(|n| n.starts_with("bad-_") && n.ends_with(".reason")),
        "{errs:?}"
    );
    still_serves(&rig, "ops", "after-names").await;
}
