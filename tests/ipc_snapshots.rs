//! Task snapshots are kept incrementally (one group's chunk re-rendered per change, the
//! main group's list assembled from the chunks): whatever the sequence of changes,
//! every file must equal a fresh rendering of the store — the requester's own list
//! before its answer, the main group's list (every task) right after.

#[path = "ipc_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rust_claw::bus::Topic;
use rust_claw::ipc::protocol::Status;
use serde_json::{Value, json};
use support::*;

fn read(rig: &Rig, f: &str) -> (Vec<u8>, Vec<Value>) {
    let bytes = std::fs::read(rig.ipc(f).join("current_tasks.json")).unwrap();
    let list: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    (bytes, list)
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every task in the store, as (folder → ids sorted by next run then id), and its
/// prompt by id.
fn store_view(rig: &Rig) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, String>) {
    rig.db(|c| {
        let mut st = c
            .prepare(
                "SELECT group_folder, id, prompt FROM scheduled_tasks
                 ORDER BY group_folder, next_run IS NULL, next_run, id",
            )
            .unwrap();
        let mut by_folder: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut prompts = BTreeMap::new();
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (f, id, p) = row.unwrap();
            by_folder.entry(f).or_default().push(id.clone());
            prompts.insert(id, p);
        }
        (by_folder, prompts)
    })
}

/// Checks every group's file (and main's, the concatenation of all) against the store.
fn check_all(rig: &Rig) {
    let (by_folder, prompts) = store_view(rig);
    for f in ["ops", "dev"] {
        let (bytes, list) = read(rig, f);
        assert_eq!(
            ids(&list),
            by_folder.get(f).cloned().unwrap_or_default(),
            "{f}'s list"
        );
        // Exactly what one pretty-printed array of the same tasks would be.
        let mut again = serde_json::to_vec_pretty(&list).unwrap();
        again.push(b'\n');
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            String::from_utf8(again).unwrap()
        );
        for t in &list {
            assert_eq!(t["groupFolder"], f);
            assert_eq!(t["prompt"], prompts[t["id"].as_str().unwrap()]);
        }
    }
    let (bytes, list) = read(rig, "main");
    let all: Vec<String> = by_folder.values().flatten().cloned().collect();
    assert_eq!(ids(&list), all, "main lists every task, grouped by folder");
    let mut again = serde_json::to_vec_pretty(&list).unwrap();
    again.push(b'\n');
    assert_eq!(bytes, again);
}

async fn schedule(rig: &Rig, from: &str, id: &str, target: Option<&str>) -> String {
    let mut req = json!({"type":"schedule_task","prompt":format!("from {from} {id}"),"schedule_type":"interval","schedule_value":"3600000"});
    if let Some(t) = target {
        req["targetJid"] = json!(t);
    }
    let r = rig.ask(from, id, req).await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    r.result.unwrap()["taskId"].as_str().unwrap().to_owned()
}

/// Main's list follows another group's change shortly after that group's answer.
async fn main_shows(rig: &Rig, task: &str) {
    let p = rig.ipc("main").join("current_tasks.json");
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&p).is_ok_and(|s| s.contains(task))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_snapshots_equal_the_store_after_every_kind_of_change() {
    let mut rig = Rig::new().await;
    assert_eq!(read(&rig, "main").0, b"[]\n");
    let mut made = Vec::new();
    for i in 0..3 {
        let t = schedule(&rig, "ops", &format!("o{i}"), None).await;
        // The requester's own list already holds its task when the answer is there.
        assert!(ids(&read(&rig, "ops").1).contains(&t));
        main_shows(&rig, &t).await;
        made.push(t);
    }
    let t = schedule(&rig, "main", "m0", Some(DEV)).await;
    // main asked: its list is written before its answer.
    assert!(ids(&read(&rig, "main").1).contains(&t));
    wait_for(Duration::from_secs(10), || {
        ids(&read(&rig, "dev").1).contains(&t)
    })
    .await;
    schedule(&rig, "main", "m1", None).await;
    check_all(&rig);

    // An update and a cancellation re-render the owner's chunk only; main follows.
    let r = rig
        .ask(
            "ops",
            "u0",
            json!({"type":"update_task","taskId":made[1],"prompt":"changed"}),
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    let r = rig
        .ask("ops", "c0", json!({"type":"cancel_task","taskId":made[0]}))
        .await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(!ids(&read(&rig, "ops").1).contains(&made[0]));
    wait_for(Duration::from_secs(10), || {
        !ids(&read(&rig, "main").1).contains(&made[0])
            && std::fs::read_to_string(rig.ipc("main").join("current_tasks.json"))
                .unwrap()
                .contains("changed")
    })
    .await;
    check_all(&rig);

    // A change made outside IPC (the CLI, the scheduler) is announced without saying
    // whose: everything is rebuilt, including an unregistered folder's tasks.
    rig.db(|c| {
        c.execute(
            "UPDATE scheduled_tasks SET prompt = 'by the cli' WHERE id = ?1",
            [&made[2]],
        )
        .unwrap();
        c.execute(
            "UPDATE scheduled_tasks SET group_folder = 'gone' WHERE id = (SELECT id FROM scheduled_tasks WHERE group_folder = 'dev')",
            [],
        )
        .unwrap();
    });
    rig.bus.send(Topic::Tasks).unwrap();
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(rig.ipc("main").join("current_tasks.json"))
            .unwrap()
            .contains("\"gone\"")
            && std::fs::read_to_string(rig.ipc("ops").join("current_tasks.json"))
                .unwrap()
                .contains("by the cli")
    })
    .await;
    check_all(&rig);

    // A restart rebuilds the same bytes; a deleted main list is written again.
    let before = read(&rig, "main").0;
    rig.stop().await;
    std::fs::remove_file(rig.ipc("main").join("current_tasks.json")).unwrap();
    rig.start().await;
    wait_for(Duration::from_secs(10), || {
        exists(&rig.ipc("main").join("current_tasks.json"))
    })
    .await;
    assert_eq!(read(&rig, "main").0, before);
    check_all(&rig);
}

/// Another group's request never waits for main's list (every task, megabytes with
/// thousands): the list is written once for the changes of a short while, not once
/// per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_list_is_written_once_for_a_run_of_changes() {
    use notify::Watcher as _;
    let rig = Rig::new().await;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = notify::recommended_watcher(move |r: notify::Result<notify::Event>| {
        // One replacement is one rename *to* the name (a swap of names is two
        // renames, one of them away from it).
        use notify::event::{ModifyKind, RenameMode};
        if let Ok(e) = r
            && matches!(
                e.kind,
                notify::EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
            )
            && e.paths
                .last()
                .is_some_and(|p| p.ends_with("current_tasks.json"))
        {
            let _ = tx.send(());
        }
    })
    .unwrap();
    w.watch(&rig.ipc("main"), notify::RecursiveMode::NonRecursive)
        .unwrap();
    let n = 30;
    let mut last = String::new();
    for i in 0..n {
        last = schedule(&rig, "ops", &format!("r{i}"), None).await;
    }
    main_shows(&rig, &last).await;
    check_all(&rig);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("main's list was never replaced");
    drop(w);
    let writes = 1 + rx.try_iter().count();
    assert!(
        writes <= n / 2,
        "main's list was written {writes} times for {n} requests of another group"
    );
}
