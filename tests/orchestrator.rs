//! The orchestrator end to end: a test channel in, the real store, queue, codex (host
//! runner) against the mock model, IPC and scheduler, replies out.

mod support;

use std::time::Duration;

use serde_json::json;
use support::mock_model::Reply;
use support::rig::{DaemonRig, Seen, last_message};

const MAIN: &str = "100000000000000001@discord";
const OPS: &str = "100000000000000002@discord";
const DEV: &str = "100000000000000003@discord";
const QA: &str = "100000000000000004@discord";

fn echo(rig: &DaemonRig) {
    rig.t
        .mock
        .respond_with(|req| Reply::Text(format!("re: {}", last_message(req))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_rules_and_untriggered_context() {
    let rig = DaemonRig::start(
        "orch-trigger",
        &[],
        &[
            (MAIN, "main", true, false),
            (OPS, "ops", false, true),
            (DEV, "dev", false, false),
        ],
    )
    .await;
    echo(&rig);
    let ch = rig.channel.clone();

    ch.say(MAIN, "hello main").await;
    assert_eq!(ch.wait_sent(MAIN, 1).await, ["re: hello main"]);

    // A group registered without a trigger requirement answers plain messages.
    ch.say(DEV, "hello dev").await;
    assert_eq!(ch.wait_sent(DEV, 1).await, ["re: hello dev"]);

    // Not addressed: stored, no turn. Mid-sentence mentions and look-alikes don't count.
    // Stored (and their group woken) before the triggered message arrives, so a turn
    // they wrongly started would come first and answer one of them.
    let before = rig.t.mock.requests().len();
    ch.say(OPS, "just chatting").await;
    ch.say(OPS, "this @Andy is mid-sentence").await;
    ch.say(OPS, "@Andybot hi").await;
    rig.daemon().wait_ingested(5).await;

    ch.say(OPS, "@andy, what did I say?").await;
    assert_eq!(ch.wait_sent(OPS, 1).await, ["re: @andy, what did I say?"]);
    // Everything in the chat is answered and sent: no turn is still to come.
    rig.daemon()
        .wait_answered(&rust_claw::model::Jid::parse(OPS).unwrap())
        .await;
    assert_eq!(
        ch.sent_to(OPS),
        ["re: @andy, what did I say?"],
        "answered without a trigger"
    );
    let reqs = rig.t.mock.requests();
    assert_eq!(reqs.len(), before + 1, "one turn for the triggered batch");
    let prompt = reqs.last().unwrap().to_string();
    for earlier in ["just chatting", "this @Andy is mid-sentence", "@Andybot hi"] {
        assert!(
            prompt.contains(earlier),
            "context {earlier:?} missing from the prompt"
        );
    }
    assert!(
        prompt.contains("<context timezone=\\\"UTC\\\"/>"),
        "{prompt}"
    );
    // The typing indicator wrapped each turn.
    let typing: Vec<Seen> = ch
        .seen()
        .into_iter()
        .filter(|s| matches!(s, Seen::Typing { jid, .. } if jid == OPS))
        .collect();
    assert_eq!(
        typing,
        [
            Seen::Typing {
                jid: OPS.into(),
                on: true
            },
            Seen::Typing {
                jid: OPS.into(),
                on: false
            }
        ]
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_per_group_and_a_global_cap() {
    let rig = DaemonRig::start(
        "orch-cap",
        &[("MAX_CONCURRENT_AGENTS", "2")],
        &[
            (MAIN, "main", true, false),
            (OPS, "ops", false, false),
            (DEV, "dev", false, false),
            (QA, "qa", false, false),
        ],
    )
    .await;
    // Slow answers, so turns overlap if the queue lets them.
    rig.t.mock.respond_with(|req| Reply::Stream {
        pieces: vec!["re: ".into(), last_message(req)],
        gap: Duration::from_millis(400),
    });
    let ch = rig.channel.clone();
    for jid in [MAIN, OPS, DEV, QA] {
        ch.say(jid, &format!("first for {jid}")).await;
    }
    ch.say(MAIN, "second for main").await;
    for jid in [OPS, DEV, QA] {
        ch.wait_sent(jid, 1).await;
    }
    // Main's two messages may be answered in one or two turns; wait for the last one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !ch
        .sent_to(MAIN)
        .iter()
        .any(|t| t.contains("second for main"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "main never answered the second message"
        );
        ch.wait_sent(MAIN, ch.sent_to(MAIN).len() + 1).await;
    }
    // Replay the typing indicators: never more than 2 turns at once, never 2 in one chat.
    let mut running: Vec<String> = Vec::new();
    let mut peak = 0;
    for s in ch.seen() {
        if let Seen::Typing { jid, on } = s {
            if on {
                assert!(!running.contains(&jid), "two turns at once in {jid}");
                running.push(jid);
                peak = peak.max(running.len());
            } else {
                running.retain(|j| *j != jid);
            }
        }
    }
    assert_eq!(peak, 2, "the cap of 2 was not reached or was exceeded");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_use_the_live_session_until_it_idles_out() {
    let rig = DaemonRig::start(
        "orch-live",
        &[("IDLE_TIMEOUT_MS", "1500")],
        &[(MAIN, "main", true, false)],
    )
    .await;
    echo(&rig);
    let ch = rig.channel.clone();
    ch.say(MAIN, "one").await;
    ch.wait_sent(MAIN, 1).await;
    ch.say(MAIN, "two").await;
    assert_eq!(ch.wait_sent(MAIN, 2).await, ["re: one", "re: two"]);
    let stats = rig.daemon().stats();
    assert_eq!(
        stats
            .sessions_started
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "follow-up started a new session"
    );
    // The second turn continued the same conversation.
    let reqs = rig.t.mock.requests();
    let second = reqs.last().unwrap().to_string();
    assert!(
        second.contains("re: one"),
        "the follow-up did not see the first exchange"
    );
    // Idle for longer than IDLE_TIMEOUT_MS: the session closes and frees its slot.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rig.daemon().active_agents() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle session never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stats
            .sessions_closed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // A later message opens a new session that resumes the thread.
    ch.say(MAIN, "three").await;
    ch.wait_sent(MAIN, 3).await;
    assert_eq!(
        stats
            .sessions_started
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert!(
        rig.t
            .mock
            .requests()
            .last()
            .unwrap()
            .to_string()
            .contains("re: two"),
        "the thread was not resumed"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_agent_ends_in_one_honest_error_message() {
    let rig = DaemonRig::start(
        "orch-error",
        &[("AGENT_RETRY_BASE_MS", "50"), ("AGENT_MAX_RETRIES", "2")],
        &[(MAIN, "main", true, false)],
    )
    .await;
    // A server error: worth retrying.
    rig.t.mock.respond_with(|_| Reply::HttpError {
        status: 500,
        message: "model exploded".into(),
    });
    let ch = rig.channel.clone();
    ch.say(MAIN, "are you there?").await;
    let sent = ch.wait_sent(MAIN, 1).await;
    assert!(
        sent[0].starts_with("I couldn't answer because the agent failed"),
        "{sent:?}"
    );
    // Three attempts (one + two retries) came before that message.
    assert_eq!(rig.t.mock.requests().len(), 3);
    // The failure moved the cursor: a new message is answered normally, and nothing
    // else was asked of the model in between.
    echo(&rig);
    ch.say(MAIN, "better now?").await;
    assert_eq!(ch.wait_sent(MAIN, 2).await[1], "re: better now?");
    assert_eq!(rig.t.mock.requests().len(), 4);
    rig.stop().await;
}

/// A failure retrying cannot fix reaches the chat at once, with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_told_at_once_with_the_fix() {
    let rig = DaemonRig::start(
        "orch-permanent",
        // Retries would take minutes: the answer must not wait for them.
        &[("AGENT_RETRY_BASE_MS", "60000"), ("AGENT_MAX_RETRIES", "5")],
        &[(MAIN, "main", true, false)],
    )
    .await;
    let ch = rig.channel.clone();
    for (status, fix) in [(401, "codex login"), (400, "CODEX_MODEL")] {
        rig.t.mock.push([Reply::HttpError {
            status,
            message: format!("refused with {status}"),
        }]);
        let before = rig.t.mock.requests().len();
        let n = ch.sent_to(MAIN).len();
        ch.say(MAIN, &format!("hello {status}")).await;
        let sent = ch.wait_sent(MAIN, n + 1).await;
        let text = &sent[n];
        assert!(
            text.starts_with("I can't answer until this is fixed"),
            "{text}"
        );
        assert!(text.contains(fix), "{status}: {text}");
        assert_eq!(
            rig.t.mock.requests().len(),
            before + 1,
            "{status} was retried"
        );
    }
    rig.stop().await;
}

/// A transient failure keeps its back-off; a chat whose answer will be late by more
/// than ~30 s is told once that it is being retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_retry_is_announced_once() {
    let rig = DaemonRig::start(
        "orch-notice",
        &[("AGENT_RETRY_BASE_MS", "40000"), ("AGENT_MAX_RETRIES", "3")],
        &[(MAIN, "main", true, false)],
    )
    .await;
    rig.t.mock.respond_with(|_| Reply::HttpError {
        status: 503,
        message: "overloaded".into(),
    });
    let ch = rig.channel.clone();
    ch.say(MAIN, "are you there?").await;
    let sent = ch.wait_sent(MAIN, 1).await;
    assert!(sent[0].contains("retrying"), "{sent:?}");
    assert!(sent[0].contains("next attempt in 40 s"), "{sent:?}");
    assert_eq!(rig.t.mock.requests().len(), 1);
    // The messages stay unanswered (the cursor did not move): answered after a restart.
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_tasks_run_before_waiting_messages_and_reply_in_their_chat() {
    let rig = DaemonRig::start("orch-task", &[], &[(MAIN, "main", true, false)]).await;
    // The first turn is slow; meanwhile a message and a due task queue up behind it.
    rig.t.mock.push([Reply::Stream {
        pieces: vec!["slow ".into(), "answer".into()],
        // Longer than the task's 1 s interval (the shortest the CLI allows).
        gap: Duration::from_millis(2500),
    }]);
    rig.t.mock.respond_with(|req| {
        let body = req.to_string();
        if body.contains("scheduled_task") && !body.contains("from the task") {
            Reply::text("from the task")
        } else {
            Reply::Text(format!("re: {}", last_message(req)))
        }
    });
    let ch = rig.channel.clone();
    ch.say(MAIN, "first").await;
    rig.t.mock.wait_requests(1).await;
    ch.say(MAIN, "waiting message").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .args([
            "--root",
            rig.t.root.to_str().unwrap(),
            "create-task",
            "--id",
            "soon",
            "--group-folder",
            "main",
            "--chat-jid",
            MAIN,
            "--prompt",
            "report now",
            "--schedule-type",
            "interval",
            "--schedule-value",
            "1000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = ch.wait_sent(MAIN, 3).await;
    assert_eq!(sent[0], "slow answer");
    assert_eq!(
        sent[1], "from the task",
        "the task did not go before the waiting message: {sent:?}"
    );
    assert_eq!(sent[2], "re: waiting message");
    // The run is logged as a success.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .args([
            "--root",
            rig.t.root.to_str().unwrap(),
            "task-runs",
            "--id",
            "soon",
            "--json",
        ])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "success"),
        "{runs}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tools_reach_the_host_through_ipc() {
    let rig = DaemonRig::start(
        "orch-tools",
        &[],
        &[(MAIN, "main", true, false), (OPS, "ops", false, false)],
    )
    .await;
    let ch = rig.channel.clone();
    // Learn the tool's name from the first request codex sends, then script the call.
    rig.t.mock.push([Reply::text("warming up")]);
    ch.say(OPS, "hi").await;
    ch.wait_sent(OPS, 1).await;
    let first = rig.t.mock.requests()[0].clone();
    let (namespace, schedule) =
        support::find_tool(&first, "schedule_task").expect("schedule_task offered to the model");
    let (_, register) =
        support::find_tool(&first, "register_group").expect("register_group offered");
    rig.t.mock.push([
        Reply::call_in(&namespace, &schedule, json!({"prompt": "water the plants", "schedule_type": "cron", "schedule_value": "0 9 * * 1-5"})),
        Reply::call_in(&namespace, &register, json!({"jid": "100000000000000009@discord", "name": "X", "folder": "x"})),
        Reply::text("done"),
    ]);
    ch.say(OPS, "schedule it").await;
    assert_eq!(ch.wait_sent(OPS, 2).await[1], "done");
    let reqs = rig.t.mock.requests();
    let outputs: Vec<String> = reqs.iter().map(|r| r.to_string()).collect();
    let after_schedule = &outputs[outputs.len() - 2];
    assert!(
        after_schedule.contains("function_call_output"),
        "{after_schedule}"
    );
    assert!(
        after_schedule.contains("ok: task "),
        "schedule_task result not ok: {after_schedule}"
    );
    let after_register = &outputs[outputs.len() - 1];
    assert!(
        after_register.contains("denied: "),
        "register_group from a non-main group was not denied: {after_register}"
    );
    // The task exists, owned by ops, for ops' own chat.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .args([
            "--root",
            rig.t.root.to_str().unwrap(),
            "list-tasks",
            "--json",
        ])
        .env("TIMEZONE", "UTC")
        .output()
        .unwrap();
    let tasks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        tasks.as_array().unwrap().len(),
        1,
        "{tasks}\n{after_schedule}"
    );
    assert_eq!(tasks[0]["group_folder"], "ops");
    assert_eq!(tasks[0]["chat_jid"], OPS);
    assert_eq!(tasks[0]["prompt"], "water the plants");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_chat_runs_the_whole_pipeline_in_a_terminal() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let t = support::TestRoot::new("orch-chat").await;
    t.mock
        .respond_with(|req| Reply::Text(format!("re: {}", last_message(req))));
    let fragment = t.root.join("codex-fragment.toml");
    std::fs::write(
        t.root.join(".env"),
        format!(
            "TIMEZONE=UTC\nAGENT_RUNNER=host\nCODEX_BIN={}\nCODEX_CONFIG={}\nCODEX_AUTH_DIR={}\n",
            support::codex_bin().display(),
            fragment.display(),
            t.owner_auth.display()
        ),
    )
    .unwrap();
    let root = t.root.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rust_claw"))
            .args(["--root", root.to_str().unwrap(), "chat"])
            .env("USER", "tester")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Two lines, then end of input: both answered before `chat` exits.
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all("hello there\nwhat & why <now>?\n".as_bytes())
            .unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chat failed: {stderr}");
    assert!(stderr.contains("terminal-only main group"), "{stderr}");
    // One turn may answer both lines, or one turn each.
    assert!(stdout.starts_with("Andy: re: "), "{stdout}");
    let prompts: String = t.mock.requests().iter().map(|r| r.to_string()).collect();
    assert!(
        prompts.contains("hello there") && prompts.contains("what &amp; why &lt;now&gt;?"),
        "{prompts}"
    );
    assert!(prompts.contains("sender=\\\"tester\\\""), "{prompts}");
    // With a daemon holding the root, chat refuses and says why.
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .args(["--root", t.root.to_str().unwrap(), "run"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Started (so it holds the root's lock) once it says so.
    let mut log = std::io::BufReader::new(daemon.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("rust_claw daemon started") {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut log, &mut line).unwrap();
        assert!(n > 0, "the daemon exited before starting: {seen}");
        seen.push_str(&line);
    }
    let second = Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .args(["--root", t.root.to_str().unwrap(), "chat"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(second.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&second.stderr);
    assert!(
        msg.contains("another rust_claw daemon is already running")
            && msg.contains("stop the daemon"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_registered_from_the_cli_work_without_a_restart() {
    let rig = DaemonRig::start("orch-register", &[], &[(MAIN, "main", true, false)]).await;
    echo(&rig);
    let ch = rig.channel.clone();
    // Before registration: metadata only, no reply.
    ch.say(QA, "@Andy anyone?").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rust_claw"))
        .args([
            "--root",
            rig.t.root.to_str().unwrap(),
            "register-group",
            "--jid",
            QA,
            "--name",
            "QA",
            "--folder",
            "qa",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ch.say(QA, "@Andy now?").await;
    assert_eq!(ch.wait_sent(QA, 1).await, ["re: @Andy now?"]);
    // The message sent before registration was not stored as content.
    let prompt = rig.t.mock.requests().last().unwrap().to_string();
    assert!(
        !prompt.contains("anyone?"),
        "an unregistered chat's message reached the agent"
    );
    // Its IPC directory exists and is served (created on the Groups topic).
    let ipc = rig.t.paths.ipc_dir(&support::folder("qa"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ipc.join("tasks").is_dir() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no IPC directory for the new group"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rig.stop().await;
}
