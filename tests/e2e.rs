//! The end-to-end proof (issue #15): one scripted scenario through the real
//! `rust_claw run` binary, with everything real except the model and Discord's servers.
//!
//! Real: the daemon process, its SQLite store, serenity (inside the daemon) speaking to a
//! fake Discord on 127.0.0.1 (REST + gateway), agents in podman containers
//! (`AGENT_RUNNER=container`, the image from `RUST_CLAW_TEST_IMAGE`) running the pinned
//! codex, the agent-tools MCP server in the container writing IPC files, the CLI verbs.
//! Doubles: the mock model (a scripted Responses API: it answers from what codex sent it
//! and records every request) and the fake Discord.
//!
//! The scenario, in order; every step waits on something observable (a post the fake
//! Discord recorded, a request the mock model received, a run in the task log, a log
//! line), never on a sleep:
//! 1. Main channel chat: a message in main gets its reply in main; the model is shown
//!    both enabled skills.
//! 2. The main agent registers a second channel through its `register_group` MCP tool;
//!    there, chatter without the trigger is not answered (but is context), and
//!    `@Andy …` is answered in that channel.
//! 3. That channel's agent schedules an interval task through `schedule_task`; it fires
//!    (twice) and posts in its chat; `rust_claw status` sees the daemon, both groups
//!    and the task.
//! 4. `rust_claw pause-task` from the CLI takes effect in the running daemon: no run of the
//!    task is claimed afterwards — checked in its run log once a marker task created by
//!    the CLI, due two intervals later, has run (the scheduler claims in due order, so a
//!    live task would have had runs by then; and if the CLI's change note were lost, the
//!    scheduler, with no active task left, would never wake for the marker).
//!    `resume-task` brings it back (a new tick), `cancel-task` deletes it: at most the
//!    one run already in flight posts afterwards, and a second marker proves the
//!    scheduler went on.
//! 5. The main agent disables a skill through IPC (`disable_skill`).
//! 6. The daemon is SIGKILLed (with its process group: the `podman run` clients) while
//!    the model holds a turn open. The restarted daemon removes what the killed one left
//!    (a labelled stand-in orphan is added, since whether the killed agents' containers
//!    outlive it is up to timing), answers the interrupted message, and its new session
//!    shows the model the remaining skill but no longer the disabled one.
//! 7. Every user message that should be answered was answered exactly once (posts are
//!    counted as Discord counts them: one per nonce), none that should not was.
//! 8. After a clean shutdown no container of this installation is left, and
//!    `rust_claw doctor` passes (exit 0) against the same root and fake Discord.
//!
//! Never skipped: without podman, the image or codex in it, the test FAILS naming the fix.

#[path = "support/fake_discord.rs"]
mod fake_discord;
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fake_discord::{FakeDiscord, Post, user};
use rust_claw::agent::container_runtime::install_id;
use serde_json::{Value, json};
use support::containers::{containers_of, image, podman, stand_in_container};
use support::mock_model::{MockModel, Reply};
use support::process::{Daemon, cli, cli_json, cli_ok};
use tokio::sync::watch;

const MAIN: u64 = 310_000_000_000_000_001;
const OPS: u64 = 310_000_000_000_000_002;
const ALICE: u64 = 320_000_000_000_000_001;
/// The interval of the agent's task (the test daemon's floor is 1000 ms).
const TICK_MS: i64 = 1500;
const KEEP_SKILL: &str = "e2e-keep";
const DROP_SKILL: &str = "e2e-drop";

fn jid(channel: u64) -> String {
    format!("{channel}@discord")
}

fn desc(skill: &str) -> String {
    format!("DESC-OF-{skill}")
}

/// The mock model's script, as a function of what codex sent: the newest chat prompt
/// decides (see the scenario); a tool's output is answered with a message. Every
/// answer to a chat message starts with `re: <that message>`.
fn responder(held: watch::Sender<bool>) -> impl Fn(&Value) -> Reply + Send + Sync + 'static {
    let hung_once = AtomicBool::new(false);
    move |req| {
        let Some(latest) = latest_prompt(req) else {
            return Reply::text("no prompt found");
        };
        if latest.contains("<scheduled_task") {
            for (marker, reply) in [
                ("TICK", "tick"),
                ("MARKER-1", "marker 1"),
                ("MARKER-2", "marker 2"),
            ] {
                if latest.contains(marker) {
                    return Reply::text(reply);
                }
            }
            return Reply::text("unknown task");
        }
        let said = last_message(&latest);
        if let Some(output) = tool_output(req) {
            return Reply::Text(format!("re: {said} | tool: {output}"));
        }
        let call = |suffix: &str, args: Value| match support::find_tool(req, suffix) {
            Some((ns, name)) => Reply::call_in(&ns, &name, args),
            None => Reply::Text(format!("re: {said} | no tool {suffix} offered")),
        };
        if said.contains("REGISTER-OPS") {
            return call(
                "register_group",
                json!({"jid": jid(OPS), "name": "Ops", "folder": "ops", "trigger": "@Andy",
                       "requires_trigger": true}),
            );
        }
        if said.contains("SCHEDULE-TICK") {
            return call(
                "schedule_task",
                json!({"prompt": "TICK", "schedule_type": "interval",
                       "schedule_value": TICK_MS.to_string(), "context_mode": "group"}),
            );
        }
        if said.contains("DISABLE-SKILL") {
            return call("disable_skill", json!({"skill_name": DROP_SKILL}));
        }
        if said.contains("HOLD") && !hung_once.swap(true, Ordering::SeqCst) {
            held.send_replace(true);
            return Reply::Hang;
        }
        Reply::Text(format!("re: {said}"))
    }
}

/// The text of the newest user input holding a chat or task prompt.
fn latest_prompt(req: &Value) -> Option<String> {
    req["input"].as_array()?.iter().rev().find_map(|item| {
        if item["type"] != "message" || item["role"] != "user" {
            return None;
        }
        let text: String = item["content"]
            .as_array()?
            .iter()
            .filter_map(|c| c["text"].as_str())
            .collect();
        (text.contains("<messages>") || text.contains("<scheduled_task")).then_some(text)
    })
}

/// The output of the tool call the model is answering, when the newest input item is one.
fn tool_output(req: &Value) -> Option<String> {
    let last = req["input"].as_array()?.last()?;
    // A plain string, or content items (`input_text`) of which the text counts.
    (last["type"] == "function_call_output").then(|| match &last["output"] {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    })
}

/// The content of the last `<message …>…</message>` of a chat prompt.
fn last_message(prompt: &str) -> String {
    let Some(start) = prompt.rfind("<message ") else {
        return String::new();
    };
    let rest = &prompt[start..];
    let open = rest.find('>').map_or(0, |i| i + 1);
    let close = rest.find("</message>").unwrap_or(rest.len());
    rest[open..close].to_owned()
}

/// The newest `<skills_instructions>` listing codex sent the model in `req`.
fn skills_listing(req: &Value) -> String {
    req["input"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .rfind(|i| i.contains("<skills_instructions>"))
        .unwrap_or_default()
}

/// The request whose newest chat message is `said`.
fn request_answering(mock: &MockModel, said: &str) -> Value {
    mock.requests()
        .into_iter()
        .rfind(|r| latest_prompt(r).is_some_and(|p| last_message(&p) == said))
        .unwrap_or_else(|| panic!("the model never saw {said:?}"))
}

/// The posts whose content contains `needle`.
fn posts_with(fake: &FakeDiscord, needle: &str) -> Vec<Post> {
    fake.posts()
        .into_iter()
        .filter(|p| p.content().contains(needle))
        .collect()
}

async fn wait_post(fake: &FakeDiscord, channel: u64, needle: &str) -> Post {
    fake.wait_for(&format!("a post with {needle:?} in {channel}"), 90, |f| {
        f.posts_to(channel)
            .iter()
            .any(|p| p.content().contains(needle))
    })
    .await;
    posts_with(fake, needle).remove(0)
}

/// Runs of a task from its log: (run id, due, skipped).
async fn runs(root: &Path, id: &str) -> Vec<(i64, DateTime<Utc>, i64)> {
    let v = cli_json(root, &["task-runs", "--id", id, "--json"]).await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_i64().unwrap(),
                r["due_at"].as_str().unwrap().parse().unwrap(),
                r["skipped"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A once-task created by the CLI in ops, due `after` from now: a barrier that runs
/// after every occurrence of the agent's task due before it would have been claimed.
async fn marker(root: &Path, id: &str, after: Duration) {
    let at = (Utc::now() + after).to_rfc3339();
    cli_ok(
        root,
        &[
            "create-task",
            "--id",
            &id.to_lowercase(),
            "--group-folder",
            "ops",
            "--chat-jid",
            &jid(OPS),
            "--prompt",
            id,
            "--schedule-type",
            "once",
            "--schedule-value",
            &at,
        ],
    )
    .await;
}

/// Removes this installation's containers if the test fails half-way.
struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        for name in containers_of(&self.0) {
            let _ = podman()
                .std_command()
                .args(["rm", "-f", "-t", "0", &name])
                .output();
        }
    }
}

/// The podman runtime, the agent image and the pinned codex in it, or a failure
/// naming the fix.
fn require_podman_and_image() {
    let _ = podman();
    let img = image();
    let out = podman()
        .std_command()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            &img,
            "codex",
            "--version",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains(rust_claw::agent::protocol::CODEX_VERSION),
        "the agent image {img} with codex {} is needed (run scripts/install-test-deps.sh, \
         which builds it with scripts/build-image.sh): {said}{}",
        rust_claw::agent::protocol::CODEX_VERSION,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_root(root: &Path, mock: &MockModel, fake: &FakeDiscord) {
    use std::os::unix::fs::PermissionsExt as _;
    let fragment = support::write_codex_fragment(root, mock);
    let auth = root.join("owner-codex");
    std::fs::create_dir_all(&auth).unwrap();
    let env = root.join(".env");
    std::fs::write(
        &env,
        format!(
            "TIMEZONE=UTC\nAGENT_RUNNER=container\nCONTAINER_RUNTIME=podman\n\
             CONTAINER_IMAGE={}\nCONTAINER_NETWORK=host\nCODEX_CONFIG={}\nCODEX_AUTH_DIR={}\n\
             DISCORD_BOT_TOKEN=e2e-test-token\nDISCORD_API_BASE={}\nMIN_TASK_INTERVAL_MS=1000\n",
            image(),
            fragment.display(),
            auth.display(),
            fake.api_base()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
    for skill in [KEEP_SKILL, DROP_SKILL] {
        let dir = root.join("groups/global/skills").join(skill);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("SKILL.md"),
            format!(
                "---\nname: {skill}\ndescription: {}\n---\n\nBody of {skill}.\n",
                desc(skill)
            ),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_system_end_to_end() {
    let started = Instant::now();
    require_podman_and_image();
    let dir = support::home_tempdir("e2e-");
    let root: PathBuf = dir.path().to_owned();
    let install = install_id(&root);
    let _guard = ContainerGuard(install.clone());
    assert!(containers_of(&install).is_empty());

    let fake = FakeDiscord::start().await;
    let mock = MockModel::start().await;
    let (held_tx, mut held) = watch::channel(false);
    mock.respond_with(responder(held_tx));
    write_root(&root, &mock, &fake);
    cli_ok(&root, &["bootstrap-main", "--jid", &jid(MAIN)]).await;
    for skill in [KEEP_SKILL, DROP_SKILL] {
        cli_ok(&root, &["skills", "enable", "--group", "main", skill]).await;
    }
    let alice = || user(ALICE, "alice", false);

    let daemon = Daemon::start(&root).await;
    fake.wait_for("the daemon's IDENTIFY", 30, |f| f.connected())
        .await;

    // 1. Main channel chat; both skills are shown to the model.
    fake.message(MAIN, alice(), "m1 hello");
    wait_post(&fake, MAIN, "re: m1 hello").await;
    let shown = skills_listing(&request_answering(&mock, "m1 hello"));
    assert!(
        shown.contains(&desc(KEEP_SKILL)) && shown.contains(&desc(DROP_SKILL)),
        "the enabled skills were not shown: {shown}"
    );

    // 2. The main agent registers ops through its MCP tool; ops answers its trigger.
    fake.message(MAIN, alice(), "m2 REGISTER-OPS");
    let reply = wait_post(&fake, MAIN, "re: m2 REGISTER-OPS").await;
    assert!(
        reply.content().contains("Output: ok: registered chat"),
        "{}",
        reply.content()
    );
    let groups = cli_json(&root, &["list-groups", "--json"]).await;
    assert!(groups.to_string().contains(&jid(OPS)), "{groups}");
    fake.message(OPS, alice(), "m3 just chatting");
    fake.message(OPS, alice(), "@Andy m4 hi ops");
    wait_post(&fake, OPS, "re: @Andy m4 hi ops").await;
    let prompt = latest_prompt(&request_answering(&mock, "@Andy m4 hi ops")).unwrap();
    assert!(
        prompt.contains("m3 just chatting"),
        "chatter is context: {prompt}"
    );

    // 3. The ops agent schedules an interval task through MCP; it fires and posts.
    fake.message(OPS, alice(), "@Andy m5 SCHEDULE-TICK");
    let reply = wait_post(&fake, OPS, "re: @Andy m5 SCHEDULE-TICK").await;
    assert!(reply.content().contains("ok: task "), "{}", reply.content());
    let tasks = cli_json(&root, &["list-tasks", "--group", "ops", "--json"]).await;
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    let task = tasks[0]["id"].as_str().unwrap().to_owned();
    assert!(
        tasks[0]["created_by"].to_string().contains("ops"),
        "{tasks}"
    );
    let ticks = |f: &FakeDiscord| {
        f.posts_to(OPS)
            .iter()
            .filter(|p| p.content() == "tick")
            .count()
    };
    fake.wait_for("two ticks", 60, |f| ticks(f) >= 2).await;

    // `status` sees the running daemon, both groups and the task's next run.
    let status = cli_json(&root, &["status", "--json"]).await;
    assert_eq!(status["daemon"]["running"], true, "{status}");
    let folders: Vec<&str> = status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["folder"].as_str())
        .collect();
    assert_eq!(folders, ["main", "ops"], "{status}");
    assert!(
        status.to_string().contains(&task),
        "no next run of {task}: {status}"
    );

    // 4a. pause-task: no run is claimed after it, up to a barrier two intervals later.
    cli_ok(&root, &["pause-task", "--id", &task]).await;
    let paused_at = Utc::now();
    let status = cli_json(&root, &["list-tasks", "--group", "ops", "--json"]).await;
    assert_eq!(status[0]["status"], "paused", "{status}");
    let at_pause = runs(&root, &task).await;
    assert!(
        at_pause.iter().all(|(_, due, _)| *due <= paused_at),
        "{at_pause:?}"
    );
    marker(
        &root,
        "MARKER-1",
        Duration::from_millis(2 * TICK_MS as u64 + 200),
    )
    .await;
    wait_post(&fake, OPS, "marker 1").await;
    let after = runs(&root, &task).await;
    let ids = |r: &[(i64, DateTime<Utc>, i64)]| -> Vec<(i64, i64)> {
        r.iter().map(|(id, _, skipped)| (*id, *skipped)).collect()
    };
    assert_eq!(
        ids(&after),
        ids(&at_pause),
        "runs were claimed while paused"
    );

    // 4b. resume-task brings the ticks back; cancel-task stops them for good.
    let before_resume = ticks(&fake);
    cli_ok(&root, &["resume-task", "--id", &task]).await;
    fake.wait_for("a tick after resume", 60, |f| ticks(f) > before_resume)
        .await;
    cli_ok(&root, &["cancel-task", "--id", &task]).await;
    let at_cancel = ticks(&fake);
    let left = cli_json(&root, &["list-tasks", "--group", "ops", "--json"]).await;
    assert!(!left.to_string().contains(&task), "{left}");
    marker(
        &root,
        "MARKER-2",
        Duration::from_millis(2 * TICK_MS as u64 + 200),
    )
    .await;
    wait_post(&fake, OPS, "marker 2").await;
    assert!(
        ticks(&fake) <= at_cancel + 1,
        "ticks after cancel-task: {} → {}",
        at_cancel,
        ticks(&fake)
    );

    // 5. The main agent disables a skill through IPC.
    fake.message(MAIN, alice(), "m6 DISABLE-SKILL");
    let reply = wait_post(&fake, MAIN, "re: m6 DISABLE-SKILL").await;
    assert!(
        reply.content().contains("Output: ok"),
        "{}",
        reply.content()
    );
    let skills = cli_json(&root, &["skills", "list", "--group", "main", "--json"]).await;
    let enabled = |name: &str| {
        skills
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["enabled"]
            .clone()
    };
    assert_eq!(
        (enabled(KEEP_SKILL), enabled(DROP_SKILL)),
        (json!(true), json!(false)),
        "{skills}"
    );

    // 6. SIGKILL while the model holds a turn open; the restart answers it once.
    fake.message(MAIN, alice(), "m7 HOLD");
    tokio::time::timeout(Duration::from_secs(60), held.wait_for(|h| *h))
        .await
        .expect("the model was never asked about m7")
        .unwrap();
    let running = containers_of(&install);
    assert!(!running.is_empty(), "no agent container while a turn runs");
    daemon.kill9().await;
    // The killed daemon's own containers may outlive it or not (once their stdin closes
    // codex exits and `--rm` removes them): one orphan is made deterministically, an
    // agent that ignores EOF, labelled with this installation's id.
    let stand_in = format!("rustclaw-main-e2e{}", std::process::id());
    stand_in_container(&stand_in, Some(&install));
    let daemon = Daemon::start(&root).await;
    // The new process identifies afresh; messages sent before its READY would be lost
    // (Discord does not replay them to a new session), as they would be in production.
    fake.wait_for("the restarted daemon's IDENTIFY", 30, |f| {
        f.identifies() >= 2 && f.connected()
    })
    .await;
    // Before it reported being started, it removed every container of this
    // installation the killed one left, and queued the unanswered message.
    let now = containers_of(&install);
    assert!(
        !now.contains(&stand_in) && running.iter().all(|o| !now.contains(o)),
        "orphans left: {now:?}"
    );
    daemon
        .wait_log("unanswered messages from before the restart", 30)
        .await;
    wait_post(&fake, MAIN, "re: m7 HOLD").await;
    let shown = skills_listing(&request_answering(&mock, "m7 HOLD"));
    assert!(shown.contains(&desc(KEEP_SKILL)), "{shown}");
    assert!(
        !shown.contains(&desc(DROP_SKILL)),
        "the disabled skill is still shown: {shown}"
    );
    fake.message(MAIN, alice(), "m8 after the restart");
    wait_post(&fake, MAIN, "re: m8 after the restart").await;
    fake.message(OPS, alice(), "@Andy m9 ops after the restart");
    wait_post(&fake, OPS, "re: @Andy m9 ops after the restart").await;

    // 8 (first half). A clean shutdown leaves no container behind.
    daemon.stop().await;
    let left = containers_of(&install);
    assert!(left.is_empty(), "containers left after shutdown: {left:?}");

    // 7. Each message answered exactly once (one post per nonce), in its channel.
    let posts = fake.posts();
    let mut nonces: Vec<&str> = posts
        .iter()
        .filter_map(|p| p.body["nonce"].as_str())
        .collect();
    let n = nonces.len();
    nonces.sort_unstable();
    nonces.dedup();
    assert_eq!(
        (nonces.len(), n),
        (posts.len(), posts.len()),
        "a post without or with a reused nonce"
    );
    for (channel, said) in [
        (MAIN, "m1 hello"),
        (MAIN, "m2 REGISTER-OPS"),
        (OPS, "@Andy m4 hi ops"),
        (OPS, "@Andy m5 SCHEDULE-TICK"),
        (MAIN, "m6 DISABLE-SKILL"),
        (MAIN, "m7 HOLD"),
        (MAIN, "m8 after the restart"),
        (OPS, "@Andy m9 ops after the restart"),
    ] {
        let answers = posts_with(&fake, &format!("re: {said}"));
        assert_eq!(
            answers.len(),
            1,
            "{said:?} answered {} times: {posts:?}",
            answers.len()
        );
        assert_eq!(
            answers[0].channel, channel,
            "{said:?} answered in the wrong channel"
        );
    }
    assert!(
        posts_with(&fake, "m3 just chatting").is_empty(),
        "chatter was answered"
    );
    for marker in ["marker 1", "marker 2"] {
        assert_eq!(posts_with(&fake, marker).len(), 1, "{marker}");
    }

    // 8. doctor passes on this root, against the same fake Discord.
    let out = cli(&root, &["doctor", "--json"]).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "doctor failed:\n{report:#}");
    // Not only no failure: every check is green here, the Discord ones (token, intent)
    // and the container ones (runtime, image with the pinned codex) included.
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for want in [
        "container runtime",
        "image",
        "discord",
        "discord intent",
        "file modes",
    ] {
        assert!(names.contains(&want), "no {want} check: {report:#}");
    }
    let not_ok: Vec<&Value> = checks.iter().filter(|c| c["level"] != "ok").collect();
    assert!(not_ok.is_empty(), "doctor is not all green: {not_ok:#?}");
    eprintln!(
        "e2e scenario: {:?}; doctor: {names:?} ok",
        started.elapsed()
    );
}
