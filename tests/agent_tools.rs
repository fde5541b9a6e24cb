//! `rust_claw agent-tools` driven by a real MCP client (rmcp) over stdio, against a
//! running IPC watcher on a real store.

#[path = "ipc_support/mod.rs"]
mod support;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use support::*;

async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    tool: &'static str,
    args: Value,
) -> (bool, String) {
    let mut p = CallToolRequestParams::new(tool);
    if let Value::Object(m) = args {
        p = p.with_arguments(m);
    }
    let r = client.call_tool(p).await.unwrap();
    let text = r
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    (r.is_error != Some(true), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_over_stdio() {
    let rig = Rig::new().await;
    // A dev task the ops agent must not touch, and a skill ops may enable.
    let r = rig
        .ask("main", "setup", json!({"type":"schedule_task","prompt":"dev's","schedule_type":"interval","schedule_value":"3600000","targetJid":DEV}))
        .await;
    let dev_task = r.result.unwrap()["taskId"].as_str().unwrap().to_owned();
    let skill = rig
        .paths
        .groups_dir()
        .join("ops")
        .join("skills")
        .join("notes");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(skill.join("SKILL.md"), "---\nname: notes\n---\n").unwrap();

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rust_claw"));
    cmd.arg("agent-tools")
        .env("RUST_CLAW_IPC_DIR", rig.ipc("ops"))
        .env("RUST_CLAW_CHAT_JID", OPS)
        .env("RUST_CLAW_TIMEZONE", "UTC")
        .env("RUST_LOG", "warn");
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cancel_task",
            "disable_skill",
            "enable_skill",
            "list_groups",
            "list_skills",
            "list_tasks",
            "pause_task",
            "refresh_groups",
            "register_group",
            "resume_task",
            "schedule_task",
            "send_message",
            "update_task"
        ]
    );

    let (ok, text) = call(
        &client,
        "send_message",
        json!({"text":"hello from the agent"}),
    )
    .await;
    assert!(ok, "{text}");
    assert!(text.starts_with("ok: message queued"), "{text}");
    assert_eq!(
        rig.count(
            "SELECT COUNT(*) FROM outbox WHERE origin = 'ipc:ops' AND text = 'hello from the agent'"
        ),
        1
    );

    // Invalid schedules (and texts too long) are refused before anything is written.
    let ledger = rig.count("SELECT COUNT(*) FROM ipc_ledger");
    let (ok, text) = call(&client, "send_message", json!({"text":"x".repeat(16_001)})).await;
    assert!(
        !ok && text.starts_with("invalid:") && text.contains("text"),
        "{text}"
    );
    let (ok, text) = call(
        &client,
        "schedule_task",
        json!({"prompt":"p","schedule_type":"cron","schedule_value":"0 25 * * *"}),
    )
    .await;
    assert!(!ok);
    assert!(
        text.starts_with("invalid:") && text.contains("schedule_value"),
        "{text}"
    );
    assert_eq!(rig.count("SELECT COUNT(*) FROM ipc_ledger"), ledger);

    let (ok, text) = call(
        &client,
        "schedule_task",
        json!({"prompt":"water the plants","schedule_type":"cron","schedule_value":"0 9 * * 1-5"}),
    )
    .await;
    assert!(ok, "{text}");
    let task_id = rig.db(|c| {
        c.query_row(
            "SELECT id FROM scheduled_tasks WHERE group_folder = 'ops'",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap()
    });
    assert!(text.contains(&task_id), "{text}");

    let (ok, text) = call(&client, "list_tasks", json!({})).await;
    assert!(ok);
    assert!(
        text.contains(&task_id) && !text.contains(&dev_task),
        "{text}"
    );

    let (ok, text) = call(&client, "pause_task", json!({"task_id": task_id})).await;
    assert!(ok, "{text}");
    let (ok, text) = call(&client, "pause_task", json!({"task_id": dev_task})).await;
    assert!(!ok);
    assert!(text.starts_with("denied:"), "{text}");
    let (ok, text) = call(
        &client,
        "register_group",
        json!({"jid":"555555555555555555@discord","name":"x","folder":"x"}),
    )
    .await;
    assert!(!ok && text.contains("only the main group"), "{text}");

    let (ok, text) = call(&client, "list_skills", json!({})).await;
    assert!(ok, "{text}");
    assert!(text.contains("notes"), "{text}");
    let (ok, text) = call(&client, "enable_skill", json!({"skill_name":"notes"})).await;
    assert!(ok, "{text}");
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM group_skills WHERE group_folder = 'ops' AND enabled = 1"),
        1
    );
    let (ok, text) = call(&client, "list_groups", json!({})).await;
    assert!(ok && text.contains("\"groups\": []"), "{text}");

    // Responses are consumed: nothing piles up.
    assert_eq!(
        std::fs::read_dir(rig.ipc("ops").join("responses"))
            .unwrap()
            .count(),
        0
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_host_times_out_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let tools =
        rust_claw::agent_tools::AgentTools::new(dir.path().to_owned(), None, chrono_tz::UTC)
            .with_timeout(std::time::Duration::from_millis(200));
    let r = tools
        .submit(rust_claw::ipc::protocol::Request::RefreshSkills(
            Default::default(),
        ))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    let text = r.content[0].as_text().unwrap().text.clone();
    assert!(text.contains("no answer from the host"), "{text}");
    // The request is left queued for the host.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tasks")).unwrap().count(),
        1
    );
}

/// A line that is not JSON gets a JSON-RPC parse error (-32700, id null); the session
/// goes on, and the end of input ends it cleanly.
#[test]
fn a_line_that_is_not_json_gets_a_parse_error() {
    use std::io::{BufRead, BufReader, Write};

    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .arg("agent-tools")
        .env("RUST_CLAW_IPC_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // Lines arrive through a channel so that a server that never answers fails the
    // test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let answer = || {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("agent-tools answered within 10 s");
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    for bad in [&b"not json\n"[..], b"{\"jsonrpc\": \n", b"\xff\xfe\n"] {
        stdin.write_all(bad).unwrap();
        let a = answer();
        assert_eq!(a["error"]["code"], -32700, "{a}");
        assert_eq!(a["id"], Value::Null, "{a}");
        assert_eq!(a["jsonrpc"], "2.0", "{a}");
    }
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},
        "clientInfo":{"name":"test","version":"0"}}});
    writeln!(stdin, "{init}").unwrap();
    let a = answer();
    assert_eq!(a["id"], 1, "{a}");
    assert!(a["result"]["serverInfo"].is_object(), "{a}");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
