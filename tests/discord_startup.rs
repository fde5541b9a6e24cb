//! `rust_claw run` when Discord cannot be reached at start-up (a network blip at boot):
//! the daemon serves anyway — systemd hears READY with a status saying Discord is being
//! retried, `status` answers, the scheduler runs an agent whose reply waits in the
//! outbox — and connects once the fake Discord answers again, delivering what waited
//! and answering a new message. A refusal (401) still ends `run`, at once or on a later
//! attempt. SIGTERM during an outage does not wait for a reply's gateway wait.

#[path = "support/fake_discord.rs"]
mod fake_discord;
mod support;

use std::path::Path;
use std::time::Duration;

use fake_discord::{FakeDiscord, user};
use support::mock_model::Reply;
use support::process::{self, Daemon};
use support::rig::last_message;
use support::{TestRoot, codex_bin};

const MAIN: u64 = 100_000_000_000_000_001;
const ALICE: u64 = 200_000_000_000_000_001;

/// `.env` for a daemon whose agents run the pinned codex on the host against the mock
/// model, with MAIN registered as the main group and Discord at `fake`.
fn write_env(t: &TestRoot, fake: &FakeDiscord) {
    std::fs::write(
        t.root.join(".env"),
        format!(
            "TIMEZONE=UTC\nAGENT_RUNNER=host\nCODEX_BIN={}\nCODEX_CONFIG={}\nCODEX_AUTH_DIR={}\n\
             DISCORD_BOT_TOKEN=startup-test-token\nDISCORD_API_BASE={}\n\
             AUTO_REGISTER_MAIN_JID={MAIN}@discord\n",
            codex_bin().display(),
            t.root.join("codex-fragment.toml").display(),
            t.owner_auth.display(),
            fake.api_base()
        ),
    )
    .unwrap();
}

/// The next datagram systemd would receive.
async fn notified(sock: &tokio::net::UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(60), sock.recv(&mut buf))
        .await
        .expect("no sd_notify message within 60 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Creates task `t1` through the CLI: one run in MAIN, a second from now.
async fn once_task_in_main(root: &Path, prompt: &str) {
    let at = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let chat = format!("{MAIN}@discord");
    process::cli_ok(
        root,
        &[
            "create-task",
            "--id",
            "t1",
            "--group-folder",
            "main",
            "--chat-jid",
            &chat,
            "--prompt",
            prompt,
            "--schedule-type",
            "once",
            "--schedule-value",
            &at,
        ],
    )
    .await;
}

async fn outbox_pending(root: &Path) -> i64 {
    let live = process::cli_json(root, &["status", "--json"]).await;
    assert_eq!(live["daemon"]["running"], true, "{live}");
    live["outbox"]["pending"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_while_discord_is_down_and_connects_when_it_is_back() {
    let fake = FakeDiscord::start().await;
    fake.set_offline(true);
    let t = TestRoot::new("dc-down").await;
    write_env(&t, &fake);
    t.mock.respond_with(|req| {
        Reply::Text(match last_message(req) {
            said if said.is_empty() => "the scheduled report".to_owned(),
            said => format!("re: {said}"),
        })
    });
    let sock_path = t.root.join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let daemon =
        Daemon::start_with_env(&t.root, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]).await;

    let ready = notified(&sock).await;
    assert!(
        ready.contains("READY=1") && ready.contains("Discord unreachable, retrying"),
        "{ready}"
    );
    // Attempts go on, the delay doubling: the second one failed too.
    daemon.wait_log("retry_in=2s", 30).await;
    assert_eq!(outbox_pending(&t.root).await, 0);

    // The scheduler and agents work meanwhile; the reply waits in the outbox.
    once_task_in_main(&t.root, "report while offline").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while outbox_pending(&t.root).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scheduled run's reply never reached the outbox:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(fake.posts().is_empty());

    fake.set_offline(false);
    fake.wait_for("IDENTIFY after the outage", 90, |f| f.connected())
        .await;
    assert_eq!(notified(&sock).await, "STATUS=serving");
    let posts = fake.wait_posts(MAIN, 1).await;
    assert!(
        posts[0].content() == "the scheduled report",
        "{:?}",
        posts[0].body
    );

    fake.message(MAIN, user(ALICE, "alice", false), "hello after the outage");
    let posts = fake.wait_posts(MAIN, 2).await;
    assert!(
        posts[1].content().contains("hello after the outage"),
        "{:?}",
        posts[1].body
    );
    let log = daemon.stop().await;
    assert!(log.contains("Discord client started"), "{log}");
}

/// `rust_claw run` on `root` (with `env`) to its end, which must be the invalid token's
/// message; returns its log.
async fn run_to_the_end(root: &Path, env: &[(&str, &str)], what: &str) -> String {
    let child = process::command(root)
        .arg("run")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("run did not end {what}"))
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: {log}");
    assert!(log.contains("the token is invalid"), "{what}: {log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_token_still_ends_run_at_once_or_after_an_outage() {
    let fake = FakeDiscord::start().await;
    fake.reject_token(true);
    let t = TestRoot::new("dc-401").await;
    write_env(&t, &fake);
    let log = run_to_the_end(&t.root, &[], "on a 401").await;
    assert!(!log.contains("rust_claw daemon started"), "{log}");

    // Down at start, then back with a 401: the background attempt ends `run`.
    fake.set_offline(true);
    let sock_path = t.root.join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let root = t.root.clone();
    let env = [("NOTIFY_SOCKET", sock_path.to_str().unwrap().to_owned())];
    let run = tokio::spawn(async move {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_to_the_end(&root, &env, "on a 401 after an outage").await
    });
    assert!(notified(&sock).await.contains("READY=1"));
    fake.set_offline(false);
    let log = run.await.unwrap();
    assert!(log.contains("Discord is unreachable"), "{log}");
    assert!(log.contains("rust_claw daemon started"), "{log}");
}

/// SIGTERM while a reply waits for the gateway (up to the default 30 s reconnect wait)
/// ends the wait: the daemon exits at once, the reply stays in the outbox and is posted
/// once after the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_reply_waiting_for_the_gateway() {
    let fake = FakeDiscord::start().await;
    let t = TestRoot::new("dc-stop-wait").await;
    write_env(&t, &fake);
    t.mock
        .respond_with(|_| Reply::Text("the report during the outage".to_owned()));
    let daemon = Daemon::start(&t.root).await;
    fake.wait_for("IDENTIFY", 60, |f| f.connected()).await;

    // Discord goes away: REST refuses, the socket closes and cannot come back.
    fake.refuse_rest(true);
    fake.refuse_gateway(true);
    fake.set_offline(true);
    fake.close_gateway(4000);
    fake.wait_for("the socket to go", 10, |f| !f.connected())
        .await;

    once_task_in_main(&t.root, "report during the outage").await;
    // The run's reply was refused and now waits for the gateway (reconnect_wait is the
    // default 30 s: `.env` cannot change it).
    daemon
        .wait_log("the reply waits for the gateway to come back", 60)
        .await;
    assert!(!fake.create_attempts().is_empty());
    assert_eq!(outbox_pending(&t.root).await, 1);

    let stopping = std::time::Instant::now();
    let log = daemon.stop().await;
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM took {took:?} with a reply waiting for the gateway:\n{log}"
    );
    assert!(fake.posts().is_empty());

    // Discord is back; the next start sends the reply that waited, once.
    fake.refuse_rest(false);
    fake.refuse_gateway(false);
    fake.set_offline(false);
    let daemon = Daemon::start(&t.root).await;
    let posts = fake.wait_posts(MAIN, 1).await;
    assert_eq!(posts[0].content(), "the report during the outage");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while outbox_pending(&t.root).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never emptied:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().await;
    assert_eq!(fake.posts_to(MAIN).len(), 1, "{:?}", fake.posts());
    assert_eq!(t.mock.requests().len(), 1, "the once-task ran again");
}
