//! The agent with the REAL codex binary (RUST_CLAW_TEST_CODEX, pinned 0.169.0) against
//! a mock Responses API on 127.0.0.1. Each test has its own root under
//! target/test-homes/ and its own mock, so they run in parallel.

mod support;

use std::time::{Duration, Instant};

use rust_claw::agent::auth::LOGIN_REQUIRED;
use rust_claw::agent::{AgentError, ApprovalDecision, TurnEnd, TurnEvent};
use rust_claw::model::ContextMode;
use rust_claw::store::sessions;
use serde_json::{Value, json};
use support::mock_model::Reply;
use support::{TestRoot, body_text, folder};

/// The user-visible conversation items of a request (what the model was shown).
fn inputs(req: &Value) -> String {
    req["input"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_turn_streams_deltas_and_messages_and_close_ends_codex() {
    let t = TestRoot::new("text-turn").await;
    let f = folder("team");
    t.mock.push([Reply::Stream {
        pieces: vec![
            "<internal>thinking</internal>".into(),
            "Hello ".into(),
            "안녕 🦀".into(),
        ],
        gap: Duration::from_millis(5),
    }]);
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    let mut turn = s.start_turn("hi there").await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = turn.next_event().await {
        events.push(e);
    }
    let out = turn.finish().await.unwrap();
    assert_eq!(out.end, TurnEnd::Completed);
    assert_eq!(out.final_message.as_deref(), Some("Hello 안녕 🦀"));
    assert_eq!(out.messages, ["Hello 안녕 🦀"]);
    let deltas: String = events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::Delta { delta, .. } => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, "<internal>thinking</internal>Hello 안녕 🦀");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TurnEvent::Message { text, raw, .. }
        if text == "Hello 안녕 🦀" && raw.starts_with("<internal>")))
    );
    let reqs = t.mock.requests();
    assert_eq!(reqs.len(), 1);
    assert!(inputs(&reqs[0]).contains("hi there"));

    let pid = s.pid().unwrap();
    let started = Instant::now();
    s.close().await;
    let took = started.elapsed();
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err(),
        "codex still running after close"
    );
    assert!(took < Duration::from_secs(2), "close took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_turns_share_the_thread_and_it_resumes_after_a_restart() {
    let t = TestRoot::new("resume").await;
    let f = folder("team");
    t.mock
        .push([Reply::text("noted PINEAPPLE"), Reply::text("still here")]);
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    let thread = s.thread_id().to_owned();
    s.run_turn("remember the word PINEAPPLE").await.unwrap();
    let out = s.run_turn("second turn").await.unwrap();
    assert_eq!(out.final_message.as_deref(), Some("still here"));
    let reqs = t.mock.requests();
    assert!(inputs(&reqs[1]).contains("remember the word PINEAPPLE"));
    assert!(inputs(&reqs[1]).contains("noted PINEAPPLE"));
    s.close().await;
    let stored = t
        .store
        .call(move |st| sessions::get(st.conn(), &folder("team")))
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(thread.as_str()));

    // An isolated run: fresh ephemeral thread, stored thread untouched.
    t.mock.push([Reply::text("isolated")]);
    let mut iso = t
        .agents()
        .start(&f, false, ContextMode::Isolated)
        .await
        .unwrap();
    assert_ne!(iso.thread_id(), thread);
    iso.run_turn("isolated task").await.unwrap();
    assert!(!inputs(&t.mock.requests()[2]).contains("PINEAPPLE"));
    iso.close().await;

    // A new codex process resumes the stored thread with its history.
    t.mock.push([Reply::text("resumed")]);
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    assert_eq!(s.thread_id(), thread);
    s.run_turn("after restart").await.unwrap();
    let last = t.mock.requests().pop().unwrap();
    assert!(inputs(&last).contains("noted PINEAPPLE"));
    assert!(inputs(&last).contains("after restart"));
    s.close().await;

    // A thread codex cannot resume is replaced by a fresh one, and stored.
    t.store
        .call(|st| {
            sessions::set(
                st.conn(),
                &folder("team"),
                "01a00000-0000-7000-8000-000000000000",
                chrono::Utc::now(),
            )
        })
        .await
        .unwrap();
    let s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    let fresh = s.thread_id().to_owned();
    assert_ne!(fresh, "01a00000-0000-7000-8000-000000000000");
    let stored = t
        .store
        .call(move |st| sessions::get(st.conn(), &folder("team")))
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(fresh.as_str()));
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_turn_is_an_error_with_codexs_message() {
    let t = TestRoot::new("failed").await;
    let f = folder("team");
    t.mock.push([Reply::HttpError {
        status: 400,
        message: "the mock model refuses".into(),
    }]);
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    let err = s.run_turn("fail please").await.unwrap_err();
    match &err {
        AgentError::TurnFailed { message, .. } => {
            assert!(message.contains("the mock model refuses"), "{message}")
        }
        other => panic!("expected TurnFailed, got {other:?}"),
    }
    // The session stays usable after a failed turn.
    t.mock.push([Reply::text("recovered")]);
    let out = s.run_turn("again").await.unwrap();
    assert_eq!(out.final_message.as_deref(), Some("recovered"));
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_turn_can_be_interrupted_and_steered_from_another_task() {
    let t = TestRoot::new("interrupt").await;
    let f = folder("team");
    t.mock.push([Reply::Hang]);
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    let handle = s.handle();
    assert!(
        !handle.interrupt().await.unwrap(),
        "nothing to interrupt yet"
    );
    let mock = t.mock.clone();
    let interrupter = tokio::spawn(async move {
        mock.wait_requests(1).await;
        handle.interrupt().await.unwrap()
    });
    let started = Instant::now();
    let out = s
        .start_turn("never ending")
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert!(interrupter.await.unwrap());
    assert_eq!(out.end, TurnEnd::Interrupted);
    assert!(started.elapsed() < Duration::from_secs(30));

    // Steer: input added while the model is still streaming reaches the model in
    // the same turn.
    t.mock.push([
        Reply::Stream {
            pieces: vec!["part ".into(), "one".into()],
            gap: Duration::from_millis(400),
        },
        Reply::text("steered ok"),
    ]);
    let handle = s.handle();
    let mock = t.mock.clone();
    let steerer = tokio::spawn(async move {
        mock.wait_requests(2).await;
        handle.steer("ALSO-THIS-PLEASE").await
    });
    let mut turn = s.start_turn("long answer").await.unwrap();
    let mut messages = Vec::new();
    while let Some(e) = turn.next_event().await {
        if let TurnEvent::Message { text, .. } = e {
            messages.push(text);
        }
    }
    let out = turn.finish().await.unwrap();
    steerer.await.unwrap().unwrap();
    assert_eq!(out.end, TurnEnd::Completed);
    // codex may cut the streaming answer short to take the new input into account;
    // either way the turn's last message answers with the steered input seen.
    assert_eq!(messages.last().map(String::as_str), Some("steered ok"));
    let last = t.mock.requests().pop().unwrap();
    assert!(inputs(&last).contains("ALSO-THIS-PLEASE"));
    assert!(matches!(
        s.handle().steer("late").await,
        Err(AgentError::NoActiveTurn)
    ));
    s.close().await;
}

async fn run_shell_under_approval(decision: ApprovalDecision) -> (bool, String) {
    let mut t = TestRoot::new("approval").await;
    t.settings.approval_policy = "on-request".into();
    t.settings.approvals = decision;
    let f = folder("team");
    t.mock.push([
        Reply::call(
            "exec_command",
            json!({"cmd": "touch approved.txt", "login": false, "yield_time_ms": 2000,
                   "sandbox_permissions": "require_escalated",
                   "justification": "create a file outside the sandbox"}),
        ),
        Reply::text("done"),
    ]);
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    let out = s.run_turn("make a file").await.unwrap();
    assert_eq!(out.final_message.as_deref(), Some("done"));
    let created = t.paths.group_dir(&f).join("approved.txt").exists();
    let reqs = t.mock.requests();
    let output = reqs[1]["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .map(|i| i["output"].to_string())
        .unwrap_or_default();
    s.close().await;
    (created, output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_requests_are_answered_per_policy() {
    let (created, _) = run_shell_under_approval(ApprovalDecision::Accept).await;
    assert!(created, "an accepted command runs");
    let (created, output) = run_shell_under_approval(ApprovalDecision::Decline).await;
    assert!(!created, "a declined command does not run");
    assert!(
        !output.is_empty(),
        "the model hears the command was not run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_files_and_enabled_skills_reach_the_model() {
    let t = TestRoot::new("memory-skills").await;
    let f = folder("team");
    t.write(
        &t.paths.global_dir().join("AGENTS.md"),
        "GLOBAL-MEMORY-MARKER: be kind",
    );
    t.write(
        &t.paths.group_dir(&f).join("AGENTS.md"),
        "GROUP-MEMORY-MARKER: the team likes tea",
    );
    for (dir, name) in [
        (t.paths.global_skills_dir(), "alpha-skill"),
        (t.paths.group_skills_dir(&f), "beta-skill"),
    ] {
        t.write(
            &dir.join(name).join("SKILL.md"),
            &format!("---\nname: {name}\ndescription: DESC-OF-{name}\n---\n\nBODY-OF-{name}\n"),
        );
    }
    let available = rust_claw::skills::available(&t.paths, &f);
    assert_eq!(available, ["alpha-skill", "beta-skill"]);
    let set = |name: &'static str, on: bool| {
        let available = available.clone();
        t.store.call(move |st| {
            st.write(|tx| {
                rust_claw::actions::set_skill(
                    tx,
                    &folder("team"),
                    name,
                    on,
                    &available,
                    chrono::Utc::now(),
                )
            })
        })
    };
    set("alpha-skill", true).await.unwrap();
    set("beta-skill", false).await.unwrap();

    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    s.run_turn("hello").await.unwrap();
    s.close().await;
    let body = body_text(&t.mock.requests()[0]);
    assert!(
        body.contains("GLOBAL-MEMORY-MARKER"),
        "global memory missing"
    );
    assert!(body.contains("GROUP-MEMORY-MARKER"), "group memory missing");
    assert!(
        body.contains("DESC-OF-alpha-skill"),
        "enabled skill missing"
    );
    assert!(!body.contains("DESC-OF-beta-skill"), "disabled skill shown");
    // codex's own bundled skills are off: the model sees the group's enabled set only.
    assert!(
        !body.contains("skill-creator"),
        "codex's bundled skills listed"
    );
    assert!(
        !t.paths.codex_home(&f).join("skills/.system").exists(),
        "bundled skills installed"
    );
    assert!(
        !body.contains("BODY-OF-alpha-skill"),
        "skill bodies are read on demand"
    );

    // Flip them: the next run shows exactly the new set.
    set("alpha-skill", false).await.unwrap();
    set("beta-skill", true).await.unwrap();
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    s.run_turn("hello again").await.unwrap();
    s.close().await;
    // The resumed thread replays the first run's messages; the skills shown now are
    // in the newest <skills_instructions> block.
    let req = &t.mock.requests()[1];
    let listing = req["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .rfind(|i| i.contains("<skills_instructions>"))
        .expect("a skills listing");
    assert!(listing.contains("DESC-OF-beta-skill"), "{listing}");
    assert!(!listing.contains("DESC-OF-alpha-skill"), "{listing}");
}

fn auth_json(refresh: &str, token: &str) -> String {
    json!({"OPENAI_API_KEY": null, "tokens": {"id_token": "x.y.z", "access_token": token,
           "refresh_token": format!("rt-{token}"), "account_id": "acct"}, "last_refresh": refresh})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_auth_json_reaches_the_group_and_a_refresh_flows_back() {
    let t = TestRoot::new("auth").await;
    let f = folder("team");
    let owner = t.owner_auth.join("auth.json");
    std::fs::write(&owner, auth_json("2026-01-01T00:00:00Z", "first")).unwrap();
    std::fs::write(t.owner_auth.join("history.jsonl"), "secret history").unwrap();
    std::fs::write(t.owner_auth.join("config.toml"), "model = \"owner\"").unwrap();
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    let home = t.paths.codex_home(&f);
    assert!(
        std::fs::read_to_string(home.join("auth.json"))
            .unwrap()
            .contains("\"first\"")
    );
    assert!(!home.join("history.jsonl").exists());
    assert!(
        !std::fs::read_to_string(home.join("config.toml"))
            .unwrap()
            .contains("owner")
    );

    // codex refreshes the token during the run (simulated: the real refresh needs
    // auth.openai.com); it reaches the owner's copy when the turn ends.
    std::fs::write(
        home.join("auth.json"),
        auth_json("2026-02-01T00:00:00Z", "refreshed"),
    )
    .unwrap();
    s.run_turn("hello").await.unwrap();
    assert!(
        std::fs::read_to_string(&owner)
            .unwrap()
            .contains("\"refreshed\"")
    );
    s.close().await;
    assert!(
        std::fs::read_to_string(&owner)
            .unwrap()
            .contains("\"refreshed\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_login_is_one_clear_error() {
    let mut t = TestRoot::new("login").await;
    t.settings.codex_config = None; // the default provider needs the owner's login
    let err = t
        .agents()
        .start(&folder("team"), false, ContextMode::Group)
        .await
        .err()
        .expect("start must fail without a login");
    assert_eq!(err.to_string(), LOGIN_REQUIRED);
    assert!(err.is_login_required());
}

/// Runs `cmd` through codex's shell tool in `folder`'s sandbox (approval "never").
async fn sandboxed_shell(t: &TestRoot, folder_name: &str, is_main: bool, cmd: &str) {
    t.mock.push([
        Reply::call(
            "exec_command",
            json!({"cmd": cmd, "login": false, "yield_time_ms": 2000}),
        ),
        Reply::text("done"),
    ]);
    let f = folder(folder_name);
    let mut s = t
        .agents()
        .start(&f, is_main, ContextMode::Group)
        .await
        .unwrap();
    let out = s.run_turn("write a note").await.unwrap();
    assert_eq!(out.final_message.as_deref(), Some("done"));
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_mains_agent_can_write_the_global_memory() {
    let t = TestRoot::new("global-write").await;
    let global = t.paths.global_dir().join("AGENTS.md");
    t.write(&global, "shared\n");
    sandboxed_shell(&t, "main", true, "echo FROM-MAIN >> ../global/AGENTS.md").await;
    sandboxed_shell(
        &t,
        "team",
        false,
        "echo FROM-TEAM >> ../global/AGENTS.md; echo OWN > AGENTS.md",
    )
    .await;
    let text = std::fs::read_to_string(&global).unwrap();
    assert!(text.contains("FROM-MAIN"), "main could not write: {text:?}");
    assert!(
        !text.contains("FROM-TEAM"),
        "a non-main agent wrote the global memory"
    );
    let own =
        std::fs::read_to_string(t.paths.group_dir(&folder("team")).join("AGENTS.md")).unwrap();
    assert_eq!(own.trim(), "OWN", "a group's agent writes its own memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_still_held_by_a_previous_codex_is_waited_for_not_replaced() {
    let t = TestRoot::new("writer").await;
    let f = folder("team");
    let mut first = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    first.run_turn("hello").await.unwrap();
    let thread = first.thread_id().to_owned();
    let agents = std::sync::Arc::new(t.agents());
    let (a2, f2) = (agents.clone(), f.clone());
    let second = tokio::spawn(async move { a2.start(&f2, false, ContextMode::Group).await });
    // The second codex must have been refused the thread at least once ("active
    // writer") before the first lets go: otherwise this test would prove nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while agents.writer_waits() == 0 {
        assert!(
            !second.is_finished(),
            "the second start finished without waiting for the thread"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second start never met the active writer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.close().await;
    let second = second.await.unwrap().unwrap();
    assert_eq!(
        second.thread_id(),
        thread,
        "the group's thread was replaced"
    );
    second.close().await;
}

/// The group folder usually sits inside a git checkout (the RustClaw repo). codex must
/// not probe that repo on each turn nor report it (path, commit, remotes) to the model
/// provider; and our config switches codex's usage analytics off. Both show in the
/// turn metadata codex copies into every request body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_git_checkout_and_analytics_stay_out_of_model_requests() {
    let t = TestRoot::new("host-git").await;
    for args in [
        &["init", "-q"][..],
        &[
            "remote",
            "add",
            "origin",
            "https://example.invalid/host-repo.git",
        ],
    ] {
        let st = std::process::Command::new("git")
            .args(args)
            .current_dir(&t.root)
            .status()
            .expect("this test needs `git` on PATH (it builds a host checkout)");
        assert!(st.success(), "git {args:?} failed");
    }
    // Instructions of the host's checkout (e.g. the owner's own AGENTS.md for working on
    // RustClaw) are not a group's memory and must not reach its agent.
    std::fs::write(t.root.join("AGENTS.md"), "HOST-CHECKOUT-INSTRUCTIONS").unwrap();
    std::fs::create_dir_all(t.root.join("groups")).unwrap();
    std::fs::write(t.root.join("groups/AGENTS.md"), "GROUPS-DIR-INSTRUCTIONS").unwrap();
    let team = folder("team");
    std::fs::create_dir_all(t.paths.group_dir(&team)).unwrap();
    std::fs::write(t.paths.group_dir(&team).join("AGENTS.md"), "TEAM-MEMORY").unwrap();
    t.mock.push([Reply::text("ok")]);
    let mut s = t
        .agents()
        .start(&team, false, ContextMode::Group)
        .await
        .unwrap();
    s.run_turn("hi").await.unwrap();
    s.close().await;
    let body = t.mock.requests()[0].to_string();
    assert!(
        body.contains("x-codex-turn-metadata"),
        "no metadata: {body}"
    );
    assert!(
        body.contains("TEAM-MEMORY"),
        "the group's memory is missing"
    );
    for leak in [
        "example.invalid",
        "workspaces",
        "latest_git_commit_hash",
        "HOST-CHECKOUT-INSTRUCTIONS",
        "GROUPS-DIR-INSTRUCTIONS",
    ] {
        assert!(!body.contains(leak), "{leak} reached the model: {body}");
    }
    assert!(body.contains(r#"\"analytics_enabled\":false"#), "{body}");
}

#[test]
fn the_tool_finder_sees_namespaced_tools() {
    let req = json!({"tools": [
        {"type": "function", "name": "exec_command"},
        {"type": "namespace", "name": "mcp__rust_claw__", "tools": [{"type": "function", "name": "schedule_task"}]},
    ]});
    assert_eq!(
        support::find_tool(&req, "schedule_task"),
        Some(("mcp__rust_claw__".to_owned(), "schedule_task".to_owned()))
    );
    assert_eq!(
        support::find_tool(&req, "exec_command"),
        Some((String::new(), "exec_command".to_owned()))
    );
    assert!(support::find_tool(&req, "nope").is_none());
}

/// A codex killed while it first builds its state database leaves `backfill_state` at
/// `running`; every later codex waits 30 s for that backfill and then refuses to start.
/// The start that fails so removes the half-built index (codex rebuilds it from its
/// rollouts), so the next start works and the thread is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_database_left_half_built_by_a_killed_codex_is_rebuilt() {
    let t = TestRoot::new("stale-backfill").await;
    let f = folder("team");
    t.mock.push([Reply::text("first")]);
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .unwrap();
    let thread = s.thread_id().to_owned();
    s.run_turn("hello").await.unwrap();
    s.close().await;

    // What the kill leaves: the backfill marked as running, just now.
    let home = t.paths.codex_home(&f);
    let db = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("state_") && n.ends_with(".sqlite")
        })
        .expect("codex made no state database");
    let now = chrono::Utc::now().timestamp();
    let c = rusqlite::Connection::open(&db).unwrap();
    let changed = c
        .execute(
            "UPDATE backfill_state SET status = 'running', updated_at = ?1",
            [now],
        )
        .unwrap();
    assert_eq!(changed, 1, "codex's backfill_state has no row");
    drop(c);

    // The stuck index is what the next codex meets (this is the failure seen)...
    let err = match t.agents().start(&f, false, ContextMode::Group).await {
        Ok(_) => panic!("codex started despite a backfill marked as running"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("state db backfill"), "{err}");
    // ...and the start after it works, on the same thread.
    t.mock.push([Reply::text("second")]);
    let mut s = t
        .agents()
        .start(&f, false, ContextMode::Group)
        .await
        .expect("the retry after a stuck backfill must start");
    assert_eq!(s.thread_id(), thread);
    let out = s.run_turn("again").await.unwrap();
    assert_eq!(out.final_message.as_deref(), Some("second"));
    s.close().await;
}
