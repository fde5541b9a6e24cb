//! The permission table, every cell both ways, through real files in a running
//! watcher, checked in the database and in the response file.

#[path = "ipc_support/mod.rs"]
mod support;

use rust_claw::ipc::protocol::Status;
use serde_json::json;
use support::*;

fn status_of(rig: &Rig, id: &str) -> String {
    let id = id.to_owned();
    rig.db(move |c| {
        c.query_row(
            "SELECT status FROM scheduled_tasks WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    })
}

async fn schedule(rig: &Rig, from: &str, id: &str, target: Option<&str>) -> String {
    let mut req = json!({"type":"schedule_task","prompt":"p","schedule_type":"interval","schedule_value":"3600000"});
    if let Some(t) = target {
        req["targetJid"] = json!(t);
    }
    let r = rig.ask(from, id, req).await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    r.result.unwrap()["taskId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages() {
    let rig = Rig::new().await;
    let outbox = |origin: &str, jid: &str| {
        rig.count(&format!(
            "SELECT COUNT(*) FROM outbox WHERE origin = 'ipc:{origin}' AND chat_jid = '{jid}'"
        ))
    };
    // main → any chat, registered or not
    for (i, jid) in [DEV, OPS, "444444444444444444@discord"].iter().enumerate() {
        let r = rig
            .ask(
                "main",
                &format!("m{i}"),
                json!({"type":"message","chatJid":jid,"text":"hi"}),
            )
            .await;
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(outbox("main", jid), 1);
        assert!(r.result.unwrap()["outboxId"].as_i64().unwrap() > 0);
    }
    // non-main → own chat (through messages/ as NanoClaw writes it)
    rig.put_raw(
        "ops",
        "messages",
        "o1.json",
        json!({"type":"message","chatJid":OPS,"text":"own"})
            .to_string()
            .as_bytes(),
    );
    let r = rig.response("ops", "o1").await;
    assert_eq!(r.status, Status::Ok);
    assert_eq!(outbox("ops", OPS), 1);
    // non-main → another group's chat, the main chat, an unregistered chat: denied
    for (i, jid) in [DEV, MAIN, "444444444444444444@discord"].iter().enumerate() {
        let r = rig
            .ask("ops", &format!("o2{i}"), json!({"type":"message","chatJid":jid,"text":"x","groupFolder":"main","isMain":true}))
            .await;
        assert_eq!(r.status, Status::Denied, "{r:?}");
        assert!(r.message.contains("own chat"), "{}", r.message);
        assert_eq!(outbox("ops", jid), 0);
    }
    assert_eq!(rig.count("SELECT COUNT(*) FROM ipc_ledger"), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks() {
    let rig = Rig::new().await;
    // main schedules for any group; non-main for itself only
    let t_dev = schedule(&rig, "main", "s1", Some(DEV)).await;
    let t_ops = schedule(&rig, "ops", "s2", None).await;
    let t_ops2 = schedule(&rig, "ops", "s3", Some(OPS)).await;
    let owner = |id: &str| {
        let id = id.to_owned();
        rig.db(move |c| {
            c.query_row(
                "SELECT group_folder FROM scheduled_tasks WHERE id = ?1",
                [id],
                |r| r.get::<_, String>(0),
            )
            .unwrap()
        })
    };
    assert_eq!(owner(&t_dev), "dev");
    assert_eq!(owner(&t_ops), "ops");
    assert_eq!(owner(&t_ops2), "ops");
    let r = rig
        .ask("ops", "s4", json!({"type":"schedule_task","prompt":"p","schedule_type":"interval","schedule_value":"60000","targetJid":DEV}))
        .await;
    assert_eq!(r.status, Status::Denied);
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM scheduled_tasks WHERE group_folder = 'dev'"),
        1
    );

    // pause / resume / update / cancel: main on any, ops on own, ops not on dev's
    for (verb, after) in [("pause_task", "paused"), ("resume_task", "active")] {
        let r = rig
            .ask(
                "ops",
                &format!("{verb}-x"),
                json!({"type":verb,"taskId":t_dev}),
            )
            .await;
        assert_eq!(r.status, Status::Denied, "{r:?}");
        let r = rig
            .ask(
                "ops",
                &format!("{verb}-own"),
                json!({"type":verb,"taskId":t_ops}),
            )
            .await;
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(status_of(&rig, &t_ops), after);
        let r = rig
            .ask(
                "main",
                &format!("{verb}-main"),
                json!({"type":verb,"task_id":t_dev}),
            )
            .await;
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(status_of(&rig, &t_dev), after);
    }
    let upd = |p: &str| json!({"type":"update_task","taskId":t_dev,"prompt":p});
    assert_eq!(
        rig.ask("ops", "u1", upd("hijack")).await.status,
        Status::Denied
    );
    assert_eq!(
        rig.ask("main", "u2", upd("by main")).await.status,
        Status::Ok
    );
    let r = rig.ask("ops", "u3", json!({"type":"update_task","taskId":t_ops,"schedule_type":"cron","schedule_value":"0 9 * * *"})).await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    let prompt = {
        let id = t_dev.clone();
        rig.db(move |c| {
            c.query_row(
                "SELECT prompt FROM scheduled_tasks WHERE id = ?1",
                [id],
                |r| r.get::<_, String>(0),
            )
            .unwrap()
        })
    };
    assert_eq!(prompt, "by main");
    assert_eq!(
        rig.ask("ops", "c1", json!({"type":"cancel_task","taskId":t_dev}))
            .await
            .status,
        Status::Denied
    );
    assert_eq!(rig.count("SELECT COUNT(*) FROM scheduled_tasks"), 3);
    assert_eq!(
        rig.ask("ops", "c2", json!({"type":"cancel_task","taskId":t_ops2}))
            .await
            .status,
        Status::Ok
    );
    assert_eq!(
        rig.ask("main", "c3", json!({"type":"cancel_task","taskId":t_dev}))
            .await
            .status,
        Status::Ok
    );
    assert_eq!(rig.count("SELECT COUNT(*) FROM scheduled_tasks"), 1);
    let r = rig
        .ask("ops", "c4", json!({"type":"cancel_task","taskId":"nope"}))
        .await;
    assert_eq!(r.status, Status::Invalid);
    assert!(r.message.contains("not found"));

    // snapshots: main sees all, others their own
    let snap = |f: &str| -> Vec<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(rig.ipc(f).join("current_tasks.json")).unwrap())
            .unwrap()
    };
    assert_eq!(snap("main").len(), 1);
    assert_eq!(snap("ops").len(), 1);
    assert_eq!(snap("dev").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_skills() {
    let rig = Rig::new().await;
    let reg = |jid: &str, f: &str| json!({"type":"register_group","jid":jid,"name":"New","folder":f,"isMain":true,"requiresTrigger":false});
    // non-main may not register, refresh the group list, or become main
    let r = rig
        .ask("ops", "g1", reg("555555555555555555@discord", "newg"))
        .await;
    assert_eq!(r.status, Status::Denied);
    assert!(r.message.contains("only the main group"));
    assert_eq!(rig.count("SELECT COUNT(*) FROM registered_groups"), 3);
    assert_eq!(
        rig.ask("ops", "g2", json!({"type":"refresh_groups"}))
            .await
            .status,
        Status::Denied
    );
    // main may, and the new group is never main; its IPC dirs appear and work at once
    let r = rig
        .ask("main", "g3", reg("555555555555555555@discord", "newg"))
        .await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(rig.count("SELECT COUNT(*) FROM registered_groups WHERE folder = 'newg' AND is_main = 0 AND requires_trigger = 0"), 1);
    assert_eq!(
        rig.ask("main", "g4", json!({"type":"refresh_groups"}))
            .await
            .status,
        Status::Ok
    );
    let groups: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rig.ipc("main").join("available_groups.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(groups["groups"].as_array().unwrap().len(), 4);
    let groups: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rig.ipc("ops").join("available_groups.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(groups["groups"].as_array().unwrap().len(), 0);
    support::wait_for(std::time::Duration::from_secs(5), || {
        rig.ipc("newg").join("tasks").is_dir()
    })
    .await;
    let r = rig
        .ask(
            "newg",
            "n1",
            json!({"type":"message","chatJid":"555555555555555555@discord","text":"hello"}),
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{r:?}");

    // skills: main toggles any group's, non-main only its own
    for f in ["global", "ops", "dev"] {
        let d = rig
            .paths
            .groups_dir()
            .join(f)
            .join("skills")
            .join(format!("{f}-skill"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("SKILL.md"), "---\nname: s\n---\n").unwrap();
    }
    let enabled = |f: &str, s: &str| {
        rig.count(&format!("SELECT COUNT(*) FROM group_skills WHERE group_folder = '{f}' AND skill_name = '{s}' AND enabled = 1"))
    };
    let r = rig
        .ask(
            "ops",
            "k1",
            json!({"type":"enable_skill","skillName":"ops-skill"}),
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(enabled("ops", "ops-skill"), 1);
    let r = rig
        .ask(
            "ops",
            "k2",
            json!({"type":"enable_skill","skillName":"dev-skill","targetGroupFolder":"dev"}),
        )
        .await;
    assert_eq!(r.status, Status::Denied);
    assert_eq!(enabled("dev", "dev-skill"), 0);
    let r = rig
        .ask(
            "main",
            "k3",
            json!({"type":"enable_skill","skillName":"dev-skill","targetGroupFolder":"dev"}),
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(enabled("dev", "dev-skill"), 1);
    let r = rig
        .ask(
            "ops",
            "k4",
            json!({"type":"disable_skill","skill_name":"global-skill","target_group_folder":"dev"}),
        )
        .await;
    assert_eq!(r.status, Status::Denied);
    let r = rig
        .ask(
            "main",
            "k5",
            json!({"type":"disable_skill","skillName":"dev-skill","targetGroupFolder":"dev"}),
        )
        .await;
    assert_eq!(r.status, Status::Ok);
    assert_eq!(enabled("dev", "dev-skill"), 0);
    let r = rig
        .ask(
            "ops",
            "k6",
            json!({"type":"enable_skill","skillName":"dev-skill"}),
        )
        .await;
    assert_eq!(
        r.status,
        Status::Invalid,
        "a skill of another group is not available: {r:?}"
    );
    assert_eq!(
        rig.ask("ops", "k7", json!({"type":"refresh_skills"}))
            .await
            .status,
        Status::Ok
    );
    let skills: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rig.ipc("ops").join("current_skills.json")).unwrap())
            .unwrap();
    let list = skills["skills"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{skills}");
    assert!(
        list.iter()
            .any(|s| s["name"] == "ops-skill" && s["enabled"] == true)
    );
    assert!(
        list.iter()
            .any(|s| s["name"] == "global-skill" && s["enabled"] == false)
    );
}

/// A crash after the commit but before the file's removal leaves the file behind;
/// on restart its id is in the ledger: the stored response is written again and the
/// effect is not repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_already_in_the_ledger_is_answered_again_not_reapplied() {
    let mut rig = Rig::new().await;
    let req = json!({"type":"message","chatJid":OPS,"text":"once"});
    let first = rig.ask("ops", "dup", req.clone()).await;
    assert_eq!(first.status, Status::Ok);
    rig.stop().await;
    std::fs::remove_file(rig.response_path("ops", "dup")).unwrap();
    let p = rig.put("ops", "dup", &req);
    rig.start().await;
    let again = rig.response("ops", "dup").await;
    assert_eq!(again, first);
    support::wait_for(std::time::Duration::from_secs(5), || !p.exists()).await;
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM outbox WHERE text = 'once'"),
        1
    );
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM ipc_ledger WHERE request_id = 'dup'"),
        1
    );
}
