//! The built `rust_claw run` (and `chat`) in a temporary root: one daemon per root, the
//! scheduler inside it woken by CLI processes (control notes → inotify → scheduler) and
//! running tasks through the real codex against the mock model, and a stop within about
//! a second of SIGTERM/Ctrl-C that leaves no codex process behind.

mod support;

use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::mock_model::{MockModel, Reply};
use support::process::{LoggedChild, wait_timeout};

const BIN: &str = env!("CARGO_BIN_EXE_rust_claw");
const MAIN: &str = "123456789012345678@discord";

fn command(root: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(root)
        .env_remove("RUST_CLAW_ROOT")
        .env_remove("DISCORD_BOT_TOKEN")
        .env_remove("AUTO_REGISTER_MAIN_JID")
        .env_remove("AGENT_RUNNER")
        .env_remove("CODEX_BIN")
        .env_remove("CODEX_CONFIG")
        .env_remove("CODEX_AUTH_DIR")
        .env("TIMEZONE", "UTC")
        .env("NO_COLOR", "1");
    c
}

fn cli(root: &Path, args: &[&str]) -> Output {
    let out = command(root)
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running daemon with its log lines (stderr) arriving as they are written.
struct Daemon(LoggedChild);

impl Daemon {
    fn start(root: &Path) -> Daemon {
        Daemon::start_logging(root, "info")
    }

    fn start_logging(root: &Path, filter: &str) -> Daemon {
        let mut cmd = command(root);
        cmd.env("RUST_LOG", filter).arg("run");
        let mut d = LoggedChild::spawn(cmd);
        d.expect("rust_claw daemon started", Duration::from_secs(20));
        Daemon(d)
    }

    /// Waits for a log line containing `needle`; fails with everything seen so far.
    fn expect_line(&mut self, needle: &str, within: Duration) -> String {
        self.0.expect(needle, within)
    }

    /// SIGTERM; the daemon must exit within [`STOP_BOUND`].
    fn stop(mut self) -> ExitStatus {
        self.0.signal_and_wait(Signal::SIGTERM, STOP_BOUND)
    }
}

/// How soon after SIGTERM/SIGINT `run` and `chat` must have exited (the promise is
/// "about a second"; the margin is for a loaded 2-core CI machine).
const STOP_BOUND: Duration = Duration::from_millis(2_000);

/// The processes `pid` started (every thread's children).
fn children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    out
}

/// The `codex` processes among `pid`'s children.
fn codex_children(pid: u32) -> Vec<i32> {
    children(pid)
        .into_iter()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with("codex"))
        })
        .collect()
}

/// True once `pid` no longer runs (gone, or a zombie nobody has reaped yet).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Waits (bounded) for `pid` to end.
fn assert_ends(pid: i32, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !is_gone(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until `pid` has a codex child; returns its pid.
fn wait_codex_child(pid: u32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(&c) = codex_children(pid).first() {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "no codex child of {pid} appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A root whose daemon runs agents with the host runner: the pinned codex against a
/// mock model served by this test. Under target/ (codex refuses a home under TMPDIR).
struct AgentRoot {
    dir: tempfile::TempDir,
    mock: MockModel,
    rt: tokio::runtime::Runtime,
}

impl AgentRoot {
    fn new() -> AgentRoot {
        let codex = support::codex_bin();
        let dir = support::home_tempdir("daemon-");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mock = rt.block_on(MockModel::start());
        let root = dir.path();
        let fragment = support::write_codex_fragment(root, &mock);
        std::fs::create_dir_all(root.join("owner-codex")).unwrap();
        std::fs::write(
            root.join(".env"),
            format!(
                "AGENT_RUNNER=host\nCODEX_BIN={}\nCODEX_CONFIG={}\nCODEX_AUTH_DIR={}\n",
                codex.display(),
                fragment.display(),
                root.join("owner-codex").display()
            ),
        )
        .unwrap();
        AgentRoot { dir, mock, rt }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until the mock model has received `n` requests.
    fn wait_requests(&self, n: usize) -> Vec<Value> {
        self.rt.block_on(self.mock.wait_requests(n))
    }
}

#[test]
fn a_second_daemon_on_the_same_root_is_refused() {
    let root = AgentRoot::new();
    let first = Daemon::start(root.path());

    let mut second = command(root.path())
        .env("RUST_LOG", "warn")
        .arg("run")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut second, Duration::from_secs(10));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "the second daemon must fail: {err}");
    assert!(
        err.contains("another rust_claw daemon is already running"),
        "unclear refusal: {err}"
    );

    // The first one is unaffected, stops cleanly, and frees the root.
    assert!(first.stop().success());
    let again = Daemon::start(root.path());
    assert!(again.stop().success());
}

#[test]
fn a_task_created_by_the_cli_wakes_the_running_daemon() {
    let root = AgentRoot::new();
    cli(root.path(), &["bootstrap-main", "--jid", MAIN]);
    // Started with no tasks: its scheduler sleeps with no timer at all, so only the
    // CLI's note can make it fire this task.
    // The scheduler's debug lines show each pass ("scheduler sleeping next_wake=…").
    let mut daemon = Daemon::start_logging(root.path(), "info,rust_claw::scheduler=debug");
    cli(
        root.path(),
        &[
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
            "interval",
            "--schedule-value",
            "1000",
        ],
    );
    let line = daemon.expect_line("task due", Duration::from_secs(10));
    assert!(line.contains("ping"), "{line}");

    // The run reaches the group's agent: codex asks the model with the task's prompt,
    // and the run is recorded as a success.
    let reqs = root.wait_requests(1);
    assert!(
        reqs[0]
            .to_string()
            .contains("scheduled_task id=\\\"ping\\\""),
        "the model was not asked about the task: {}",
        reqs[0]
    );
    // (A run that comes due while the previous one is still in flight is skipped.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let run = loop {
        let out = cli(root.path(), &["task-runs", "--id", "ping", "--json"]);
        let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
        let runs = runs.as_array().unwrap();
        for r in runs {
            assert!(
                ["running", "success", "skipped"].contains(&r["status"].as_str().unwrap()),
                "{r}"
            );
        }
        if let Some(r) = runs.iter().find(|r| r["status"] == "success") {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "no successful run: {runs:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(run["duration_ms"].as_i64().unwrap() >= 0);
    let table = String::from_utf8(cli(root.path(), &["task-runs", "--id", "ping"]).stdout).unwrap();
    assert!(table.starts_with("RUN"), "{table}");
    assert!(table.contains("success"), "{table}");

    // Pausing from the CLI reaches the daemon too. A task due far in the future keeps
    // the scheduler asleep until 2099 unless a note wakes it: only the CLI's note can
    // produce a pass that finds no active task left.
    cli(
        root.path(),
        &[
            "create-task",
            "--id",
            "far",
            "--group-folder",
            "main",
            "--chat-jid",
            MAIN,
            "--prompt",
            "later",
            "--schedule-type",
            "once",
            "--schedule-value",
            "2099-01-01T00:00:00Z",
        ],
    );
    cli(root.path(), &["pause-task", "--id", "ping"]);
    let count = |root: &Path| {
        let out = cli(
            root,
            &["task-runs", "--id", "ping", "--json", "--limit", "10000"],
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    daemon.expect_line("next_wake=Some(2099-01-01", Duration::from_secs(10));
    let before = count(root.path());
    cli(root.path(), &["pause-task", "--id", "far"]);
    daemon.expect_line("next_wake=None", Duration::from_secs(10));
    // Passes ran after the pause (the one above, at least): none started a run.
    assert_eq!(count(root.path()), before, "a paused task ran");
    assert!(daemon.stop().success());
}

#[test]
fn sigterm_stops_the_daemon_quickly() {
    let root = AgentRoot::new();
    // Every turn hangs: the daemon must interrupt it, not wait for it.
    root.mock.respond_with(|_| Reply::Hang);
    cli(root.path(), &["bootstrap-main", "--jid", MAIN]);

    // Idle: nothing running.
    let daemon = Daemon::start(root.path());
    let started = Instant::now();
    let status = daemon.stop();
    let idle = started.elapsed();
    assert_eq!(status.code(), Some(0), "{status}");

    // Busy: a scheduled run in a live agent session whose model never answers.
    let daemon = Daemon::start(root.path());
    cli(
        root.path(),
        &[
            "create-task",
            "--id",
            "stuck",
            "--group-folder",
            "main",
            "--chat-jid",
            MAIN,
            "--prompt",
            "never finishes",
            "--schedule-type",
            "interval",
            "--schedule-value",
            "1000",
        ],
    );
    root.wait_requests(1);
    let codex = wait_codex_child(daemon.0.child.id());
    let started = Instant::now();
    let status = daemon.stop();
    let busy = started.elapsed();
    assert_eq!(status.code(), Some(0), "{status}");
    println!(
        "SIGTERM to exit: idle {} ms, with a hung agent turn {} ms",
        idle.as_millis(),
        busy.as_millis()
    );
    assert!(busy < STOP_BOUND, "took {busy:?}");
    assert_ends(
        codex,
        Duration::from_millis(500),
        "codex after the daemon stopped",
    );

    // The run cut short is recorded as stopped by the shutdown, not as a crash.
    let out = cli(root.path(), &["task-runs", "--id", "stuck", "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] != "skipped")
        .unwrap();
    assert_eq!(run["status"], "interrupted", "{runs}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("shut down"), "{error}");
    assert!(!error.contains("crash"), "{error}");
}

/// `rust_claw chat` with a pipe for stdin (left open: the channel blocks reading it)
/// and its log arriving as it is written.
struct Chat {
    proc: LoggedChild,
    stdin: Option<std::process::ChildStdin>,
}

impl Chat {
    fn start(root: &Path) -> Chat {
        let mut cmd = command(root);
        cmd.env("RUST_LOG", "info")
            .arg("chat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut proc = LoggedChild::spawn(cmd);
        let stdin = proc.child.stdin.take();
        proc.expect("Chatting with", Duration::from_secs(20));
        Chat { proc, stdin }
    }

    fn expect_line(&mut self, needle: &str, within: Duration) {
        self.proc.expect(needle, within);
    }

    fn say(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn signal(&self, sig: Signal) {
        self.proc.signal(sig);
    }
}

#[test]
fn ctrl_c_stops_chat_while_it_waits_for_input_or_for_the_agent() {
    let root = AgentRoot::new();

    // Waiting for the next line (a blocking stdin read that never returns).
    let mut chat = Chat::start(root.path());
    let started = Instant::now();
    chat.signal(Signal::SIGINT);
    let status = wait_timeout(&mut chat.proc.child, STOP_BOUND);
    println!(
        "SIGINT to exit, chat idle: {} ms",
        started.elapsed().as_millis()
    );
    assert!(status.success(), "{status}");

    // Waiting for the agent: a turn the model never finishes; SIGTERM alike.
    root.mock.respond_with(|_| Reply::Hang);
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let mut chat = Chat::start(root.path());
        chat.say("are you there?");
        root.wait_requests(1);
        let codex = wait_codex_child(chat.proc.child.id());
        let started = Instant::now();
        chat.signal(sig);
        let status = wait_timeout(&mut chat.proc.child, STOP_BOUND);
        println!(
            "{sig} to exit, chat with a hung turn: {} ms",
            started.elapsed().as_millis()
        );
        assert!(status.success(), "{status}");
        assert_ends(
            codex,
            Duration::from_millis(500),
            "codex after chat stopped",
        );
    }
}

#[test]
fn a_second_ctrl_c_stops_chat_at_once_and_codex_with_it() {
    let root = AgentRoot::new();
    root.mock.respond_with(|_| Reply::Hang);
    let mut chat = Chat::start(root.path());
    chat.say("are you there?");
    root.wait_requests(1);
    let codex = wait_codex_child(chat.proc.child.id());
    // A codex that no longer answers: the graceful stop now needs its full interrupt
    // grace, and the second Ctrl-C arrives well within it.
    kill(Pid::from_raw(codex), Signal::SIGSTOP).unwrap();
    chat.signal(Signal::SIGINT);
    chat.expect_line("shutting down", Duration::from_secs(5));
    chat.signal(Signal::SIGINT);
    let status = wait_timeout(&mut chat.proc.child, STOP_BOUND);
    assert_eq!(status.code(), Some(130), "{status}");
    // Killed by the kernel with its parent.
    assert_ends(
        codex,
        Duration::from_millis(500),
        "codex after a forced stop",
    );
}
