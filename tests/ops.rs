//! Operating RustClaw, through the built binary: logs that keep secrets out and carry
//! spans, systemd readiness and watchdog on a real NOTIFY_SOCKET, `status` against a
//! running daemon, `doctor` (against the fake Discord on 127.0.0.1), the systemd unit
//! (checked by `systemd-analyze verify`), completions and the man page.

#[path = "support/fake_discord.rs"]
mod discord_fake;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use support::mock_model::MockModel;
use support::process::LoggedChild;

const BIN: &str = env!("CARGO_BIN_EXE_rust_claw");
const MAIN: &str = "123456789012345678@discord";
const TOKEN: &str = "MTIzNDU2.secret-discord-token-d1sc0rd";
const ACCESS: &str = "secret-access-token-acc355";
const REFRESH: &str = "secret-refresh-token-r3fr35h";

/// A root whose agents run the pinned codex (host runner) against a mock model, with a
/// Discord token in `.env` and a login in the owner's auth.json.
struct Root {
    dir: tempfile::TempDir,
    mock: MockModel,
    /// The daemon connects to it with the secret token in `.env`.
    discord: discord_fake::FakeDiscord,
    rt: tokio::runtime::Runtime,
}

impl Root {
    fn new() -> Root {
        let codex = support::codex_bin();
        let dir = support::home_tempdir("ops-");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mock = rt.block_on(MockModel::start());
        let discord = rt.block_on(discord_fake::FakeDiscord::start());
        let root = dir.path();
        let fragment = support::write_codex_fragment(root, &mock);
        let auth = root.join("owner-codex");
        std::fs::create_dir_all(&auth).unwrap();
        std::fs::write(
            auth.join("auth.json"),
            format!(
                r#"{{"OPENAI_API_KEY":null,"tokens":{{"id_token":"x","access_token":"{ACCESS}","refresh_token":"{REFRESH}","account_id":"a"}},"last_refresh":"2026-11-01T00:00:00Z"}}"#
            ),
        )
        .unwrap();
        let env = root.join(".env");
        std::fs::write(
            &env,
            format!(
                "AGENT_RUNNER=host\nCODEX_BIN={}\nCODEX_CONFIG={}\nCODEX_AUTH_DIR={}\n\
                 DISCORD_BOT_TOKEN={TOKEN}\nDISCORD_API_BASE={}\n",
                codex.display(),
                fragment.display(),
                auth.display(),
                discord.api_base()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
        Root {
            dir,
            mock,
            discord,
            rt,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.path())
            .env_remove("RUST_CLAW_ROOT")
            .env_remove("DISCORD_BOT_TOKEN")
            .env_remove("DISCORD_API_BASE")
            .env_remove("AUTO_REGISTER_MAIN_JID")
            .env_remove("AGENT_RUNNER")
            .env_remove("CODEX_BIN")
            .env_remove("CODEX_CONFIG")
            .env_remove("CODEX_AUTH_DIR")
            .env_remove("LOG_FORMAT")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("NO_COLOR")
            .env("TIMEZONE", "UTC")
            .env("RUST_LOG", "debug");
        c
    }

    /// Runs a verb; returns its output (any exit code).
    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn start(&self, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = self.command();
        cmd.envs(env.iter().copied()).arg("run");
        let mut d = LoggedChild::spawn(cmd);
        d.expect("rust_claw daemon started", Duration::from_secs(20));
        Daemon(d)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `rust_claw run`, its log arriving as it is written.
struct Daemon(LoggedChild);

impl Daemon {
    fn expect(&mut self, needle: &str, within: Duration) -> String {
        self.0.expect(needle, within)
    }

    /// SIGTERM, wait for exit, return every log line.
    fn stop(mut self) -> Vec<String> {
        let status = self
            .0
            .signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
        let lines = self.0.take_lines();
        assert!(status.success(), "{status}: {}", lines.join("\n"));
        lines
    }
}

fn assert_no_secret(what: &str, s: &str) {
    for secret in [TOKEN, ACCESS, REFRESH, "d1sc0rd", "acc355", "r3fr35h"] {
        assert!(!s.contains(secret), "{what} leaks {secret:?}:\n{s}");
    }
}

#[test]
fn secrets_never_reach_a_log_line_even_at_debug() {
    let root = Root::new();
    root.mock.push([support::mock_model::Reply::text("pong")]);
    let mut all = String::new();
    for args in [
        &["bootstrap-main", "--jid", MAIN][..],
        &["doctor"],
        &["doctor", "--json"],
        &["status"],
    ] {
        let out = root.run(args);
        all.push_str(&text(&out.stdout));
        all.push_str(&text(&out.stderr));
    }
    let mut daemon = root.start(&[]);
    root.ok(&[
        "create-task",
        "--id",
        "ping",
        "--group-folder",
        "main",
        "--chat-jid",
        MAIN,
        "--prompt",
        "ping",
        "--schedule-type",
        "once",
        "--schedule-value",
        "2099-01-01T00:00:00Z",
    ]);
    // A run through codex: the login is copied into the group's codex home and back.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    root.ok(&[
        "create-task",
        "--id",
        "now",
        "--group-folder",
        "main",
        "--chat-jid",
        MAIN,
        "--prompt",
        "hello",
        "--schedule-type",
        "once",
        "--schedule-value",
        &soon,
    ]);
    root.rt.block_on(root.mock.wait_requests(1));
    daemon.expect("scheduled run finished", Duration::from_secs(30));
    let status = text(&root.ok(&["status"]).stdout);
    let lines = daemon.stop();
    let log = lines.join("\n");
    // The capture is real: debug lines, span fields, and codex's own stderr got through.
    assert!(log.contains("DEBUG"), "not at debug level:\n{log}");
    assert!(
        log.contains("task_run{task=now"),
        "no task_run span:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "ANSI codes in a pipe:\n{log}");
    assert_no_secret("the daemon's log", &log);
    assert_no_secret("the CLI's output", &all);
    assert_no_secret("status", &status);
}

#[test]
fn readiness_watchdog_json_logs_and_status_against_the_running_daemon() {
    let root = Root::new();
    root.ok(&["bootstrap-main", "--jid", MAIN]);
    let down = root.ok(&["status", "--json"]);
    let down: Value = serde_json::from_slice(&down.stdout).unwrap();
    assert_eq!(down["daemon"]["running"], false, "{down}");
    assert!(text(&root.ok(&["status"]).stdout).contains("daemon: not running"));

    let sock_path = root.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let daemon = root.start(&[
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "300000"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
    ]);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        let n = sock
            .recv(&mut buf)
            .expect("no READY/WATCHDOG from the daemon");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(got[0].contains("READY=1"), "READY must come first: {got:?}");
    // Pings keep coming while it serves.
    let n = sock.recv(&mut buf).expect("a second watchdog ping");
    assert_eq!(&buf[..n], b"WATCHDOG=1");

    let live: Value = serde_json::from_slice(&root.ok(&["status", "--json"]).stdout).unwrap();
    assert_eq!(live["daemon"]["running"], true, "{live}");
    assert_eq!(live["daemon"]["answering"], true, "{live}");
    assert_eq!(live["daemon"]["pid"], daemon.0.child.id(), "{live}");
    assert!(live["daemon"]["uptime_secs"].as_i64().unwrap() >= 0);
    assert_eq!(live["groups"][0]["folder"], "main");
    assert_eq!(live["groups"][0]["agent"], "none");
    assert_eq!(live["outbox"]["pending"], 0);
    let human = text(&root.ok(&["status"]).stdout);
    assert!(
        human.contains(&format!("daemon: running (pid {}", daemon.0.child.id())),
        "{human}"
    );
    let doctor = text(&root.run(&["doctor"]).stdout);
    assert!(
        doctor.contains(&format!(
            "running on this root (pid {})",
            daemon.0.child.id()
        )),
        "{doctor}"
    );

    let lines = daemon.stop();
    loop {
        let n = sock.recv(&mut buf).expect("no STOPPING=1");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("daemon started")),
        "{lines:?}"
    );
}

fn doctor_json(root: &Root, env: &[(&str, &str)]) -> (bool, Value) {
    let out = root
        .command()
        .envs(env.iter().copied())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(v["ok"], out.status.success(), "{v}");
    (out.status.success(), v)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {v}"))
}

#[test]
fn doctor_explains_each_problem_and_passes_when_all_is_well() {
    let root = Root::new();
    root.ok(&["bootstrap-main", "--jid", MAIN]);
    // All well: the pinned codex, a private root, a token Discord accepts with the intent.
    let fake = &root.discord;
    let (ok, v) = doctor_json(&root, &[]);
    assert!(ok, "{v:#}");
    assert_eq!(check(&v, "discord")["level"], "ok", "{v:#}");
    assert!(
        check(&v, "discord")["detail"]
            .as_str()
            .unwrap()
            .contains("andy"),
        "{v:#}"
    );
    assert_eq!(check(&v, "discord intent")["level"], "ok");
    assert_eq!(check(&v, "codex")["level"], "ok", "{v:#}");
    assert_eq!(check(&v, "migrations")["level"], "ok");
    assert_eq!(check(&v, "file modes")["level"], "ok", "{v:#}");
    let bot = format!("Bot {TOKEN}");
    assert_eq!(
        fake.take_identity_requests(),
        [
            ("/api/v10/users/@me".to_owned(), bot.clone()),
            ("/api/v10/applications/@me".to_owned(), bot.clone())
        ]
    );

    // The message-content intent off.
    fake.set_application_flags(0);
    let (ok, v) = doctor_json(&root, &[]);
    assert!(!ok);
    assert_eq!(check(&v, "discord intent")["level"], "fail");
    assert!(
        check(&v, "discord intent")["fix"]
            .as_str()
            .unwrap()
            .contains("Message Content")
    );
    assert_eq!(fake.take_identity_requests().len(), 2);

    // A token Discord refuses.
    fake.reject_token(true);
    let (ok, v) = doctor_json(&root, &[]);
    assert!(!ok);
    assert_eq!(check(&v, "discord")["level"], "fail", "{v:#}");
    assert!(
        check(&v, "discord")["detail"]
            .as_str()
            .unwrap()
            .contains("401")
    );
    assert_eq!(
        fake.take_identity_requests(),
        [("/api/v10/users/@me".to_owned(), bot)]
    );
    fake.reject_token(false);
    fake.set_application_flags(1 << 18);

    // Discord unreachable (a closed port): a warning, not a failure.
    let (ok, v) = doctor_json(&root, &[("DISCORD_API_BASE", "http://127.0.0.1:9/api")]);
    assert!(ok, "{v:#}");
    assert_eq!(check(&v, "discord")["level"], "warn");

    // A world-readable .env (it holds the token).
    let env = root.path().join(".env");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, v) = doctor_json(&root, &[]);
    assert!(!ok);
    let modes = check(&v, "file modes");
    assert!(
        modes["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("chmod 600 {}", env.display())),
        "{modes}"
    );
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();

    // An invalid configuration is reported (not a crash, not exit 2), with the rest.
    let out = root
        .command()
        .env("TIMEZONE", "Mars/Olympus")
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let human = text(&out.stdout);
    assert!(
        human.contains("FAIL  config") && human.contains("TIMEZONE"),
        "{human}"
    );
    assert!(human.contains("fix:"), "{human}");

    // No login and no custom provider.
    let out = root
        .command()
        .env("CODEX_AUTH_DIR", root.path().join("nowhere"))
        .env("CODEX_CONFIG", "")
        .arg("doctor")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("codex login --device-auth"),
        "{}",
        text(&out.stdout)
    );
}

/// `systemd-analyze`, or a failure saying how to get it.
fn systemd_analyze() -> PathBuf {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("systemd-analyze is missing: run scripts/install-test-deps.sh (apt-get install systemd)"))
}

#[test]
fn the_service_unit_is_complete_and_passes_systemd_analyze_verify() {
    let root = Root::new();
    let out = root.ok(&["service", "install", "--dry-run"]);
    let unit = text(&out.stdout);
    let root_path = std::fs::canonicalize(root.path()).unwrap();
    let exe = std::fs::canonicalize(BIN).unwrap();
    for want in [
        format!(
            "ExecStart={} --root {} run",
            exe.display(),
            root_path.display()
        ),
        format!("WorkingDirectory={}", root_path.display()),
        format!("EnvironmentFile=-{}/.env", root_path.display()),
        "Type=notify".into(),
        "WatchdogSec=".into(),
        "Restart=on-failure".into(),
        "ProtectSystem=strict".into(),
        format!("ReadWritePaths={}", root_path.display()),
    ] {
        assert!(unit.contains(&want), "missing {want:?}:\n{unit}");
    }
    assert!(text(&out.stderr).contains("/etc/systemd/system/rust-claw.service"));
    let user = text(
        &root
            .ok(&["service", "install", "--user", "--dry-run"])
            .stdout,
    );
    assert!(user.contains("WantedBy=default.target"), "{user}");

    // With agents in podman containers: rootful (its state writable) and rootless.
    let container_unit = |user: bool| {
        let mut c = root.command();
        c.env("AGENT_RUNNER", "container")
            .env("CONTAINER_RUNTIME", "podman")
            .args(["service", "install", "--dry-run"]);
        if user {
            c.arg("--user");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let (podman, podman_user) = (container_unit(false), container_unit(true));
    assert!(podman.contains("-/run/runc"), "{podman}");
    assert!(!podman_user.contains("ProtectSystem"), "{podman_user}");

    for (name, text_) in [
        ("rust-claw.service", &unit),
        ("rust-claw-user.service", &user),
        ("rust-claw-podman.service", &podman),
        ("rust-claw-podman-user.service", &podman_user),
    ] {
        let path = root.path().join(name);
        std::fs::write(&path, text_).unwrap();
        let out = Command::new(systemd_analyze())
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify {name}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definitions() {
    let root = Root::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef rust_claw"),
        ("fish", "complete -c rust_claw"),
    ] {
        let out = text(&root.ok(&["completions", shell]).stdout);
        assert!(out.contains(marker), "{shell}: {out}");
        for verb in [
            "import-nanoclaw",
            "doctor",
            "status",
            "service",
            "list-tasks",
        ] {
            assert!(out.contains(verb), "{shell} completions lack {verb}");
        }
    }
    let man = text(&root.ok(&["man"]).stdout);
    assert!(man.contains(".TH rust_claw 1"), "{man}");
    assert!(man.contains("import\\-nanoclaw"), "{man}");
    let bad = root.run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}
