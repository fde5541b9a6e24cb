//! Agents in REAL podman containers, from the image scripts/build-image.sh builds, with
//! the real codex inside against the mock model on the host's 127.0.0.1
//! (`--network host`). Never skipped: without podman or the image every test fails
//! with the command that fixes it.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_claw::agent::container_runtime::install_id;
use rust_claw::agent::{AgentError, Runner, SpawnSpec};
use rust_claw::model::{ContextMode, FolderName};
use serde_json::{Value, json};
use support::containers::{containers_of, image, podman, podman_ok, runner, stand_in_container};
use support::files::{files_below, is_real_dir};
use support::mock_model::{MockModel, Reply};
use support::rig::DaemonRig;
use support::{TestRoot, folder};

const MAIN: &str = "111111111111111111@discord";
const OPS: &str = "222222222222222222@discord";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_turn_runs_in_a_labelled_container_that_close_removes() {
    let t = TestRoot::new("ctr-text").await;
    let r = runner(&t, None).await;
    let agents = rust_claw::agent::Agents::new(
        t.paths.clone(),
        t.settings.clone(),
        r.clone(),
        t.store.clone(),
    );
    t.mock.push([Reply::text("hello from a container")]);
    let mut s = agents
        .start(&folder("team"), false, ContextMode::Group)
        .await
        .unwrap();
    let running = containers_of(r.install_id());
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(running[0].starts_with("rustclaw-team-"), "{running:?}");
    let out = s.run_turn("hi").await.unwrap();
    assert_eq!(out.final_message.as_deref(), Some("hello from a container"));
    // codex ran in the container: its working directory is the mount point.
    let req = t.mock.requests()[0].to_string();
    assert!(req.contains("/workspace/group"), "{req}");
    s.close().await;
    assert!(
        containers_of(r.install_id()).is_empty(),
        "closing the session removes the container"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_tool_call_goes_through_ipc_to_sqlite_and_back() {
    let rig = main_and_ops_in_containers("ctr-tools").await;
    let ch = rig.channel.clone();
    rig.t.mock.push([Reply::text("warming up")]);
    ch.say(OPS, "hi").await;
    ch.wait_sent(OPS, 1).await;
    let first = rig.t.mock.requests()[0].clone();
    let (namespace, schedule) =
        support::find_tool(&first, "schedule_task").expect("schedule_task offered to the model");
    rig.t.mock.push([
        Reply::call_in(
            &namespace,
            &schedule,
            json!({"prompt": "water the plants", "schedule_type": "cron", "schedule_value": "0 9 * * 1-5"}),
        ),
        Reply::text("done"),
    ]);
    ch.say(OPS, "schedule it").await;
    assert_eq!(ch.wait_sent(OPS, 2).await[1], "done");
    let reqs = rig.t.mock.requests();
    let after = reqs.last().unwrap().to_string();
    assert!(
        after.contains("function_call_output") && after.contains("ok: task "),
        "the tool's result did not reach the model: {after}"
    );
    let f = FolderName::parse("ops").unwrap();
    let tasks = rig
        .t
        .store
        .call(move |s| rust_claw::store::tasks::list(s.conn(), Some(&f), None))
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].prompt, "water the plants");
    rig.stop().await;
}

/// A running daemon with main and ops registered, whose agents run in containers.
async fn main_and_ops_in_containers(name: &str) -> DaemonRig {
    let mut rig = DaemonRig::start_with_runner(
        name,
        &[],
        &[(MAIN, "main", true, false), (OPS, "ops", false, false)],
        |_| unreachable_runner(),
    )
    .await;
    // The rig's root is known only now: build the real runner for it and restart.
    rig.runner = runner(&rig.t, None).await;
    rig.restart().await;
    rig
}

/// A placeholder until the rig's root exists (never asked to spawn).
fn unreachable_runner() -> Arc<dyn Runner> {
    Arc::new(rust_claw::agent::host::HostRunner::new(
        "/nonexistent/codex",
    ))
}

/// What `script` prints when run by `sh` in a container with exactly the agent's
/// arguments (mounts, masks, user, hardening) for `spec`.
fn run_as_agent(
    r: &rust_claw::agent::container::ContainerRunner,
    spec: &SpawnSpec,
    script: &str,
) -> String {
    let rt = podman();
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("rustclaw-probe-{}-{n}", std::process::id());
    let mut args = r.run_args(&rt, spec, &name).unwrap();
    let n = args.len();
    assert_eq!(args[n - 2], "/usr/local/bin/codex-native");
    args.truncate(n - 2);
    args.extend(["sh", "-c", script].map(Into::into));
    let out = rt
        .std_command()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn spec_for(t: &TestRoot, name: &str, is_main: bool, config: Option<Value>) -> SpawnSpec {
    let f = folder(name);
    let spec = SpawnSpec {
        folder: f.clone(),
        is_main,
        codex_home: t.paths.codex_home(&f),
        workdir: t.paths.group_dir(&f),
        global_dir: t.paths.global_dir(),
        ipc_dir: t.paths.ipc_dir(&f),
        tmp_dir: t.paths.agent_tmp_dir(&f),
        home_dir: t.paths.agent_home_dir(&f),
        env: Vec::new(),
        container_config: config,
    };
    for d in [
        &spec.codex_home,
        &spec.workdir,
        &spec.global_dir,
        &spec.ipc_dir,
        &spec.tmp_dir,
        &spec.home_dir,
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    spec
}

const PROBE: &str = r#"
yes_no() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
echo "group_rw=$(yes_no touch /workspace/group/probe)"
echo "global_rw=$(yes_no touch /workspace/global/probe)"
echo "global_mem=$(cat /workspace/global/AGENTS.md)"
echo "rootfs_rw=$(yes_no touch /etc/probe)"
echo "tmp_rw=$(yes_no touch /tmp/probe)"
echo "project=$(yes_no test -d /workspace/project/groups)"
echo "project_rw=$(yes_no touch /workspace/project/probe)"
echo "other_group=$(yes_no grep -rqs OTHER-GROUP-SECRET /workspace)"
echo "env_secret=$(yes_no grep -rqs ENV-FILE-SECRET /workspace)"
echo "store=$(find / \( -path /proc -o -path /sys \) -prune -o -name messages.db -print 2>/dev/null | head -n 1)"
echo "env_file=$(cat /workspace/project/.env 2>/dev/null)"
echo "project_store=$(ls -A /workspace/project/store 2>/dev/null)"
echo "project_data=$(ls -A /workspace/project/data 2>/dev/null)"
echo "sees_groups=$(ls /workspace/project/groups 2>/dev/null | tr '\n' ' ')"
echo "extra=$(ls /workspace/extra 2>/dev/null | tr '\n' ' ')"
echo "extra_rw=$(yes_no touch /workspace/extra/app/probe)"
echo "extra_file=$(cat /workspace/extra/app/APP.txt 2>/dev/null)"
echo "caps=$(grep CapEff /proc/self/status | tr -d ' \t')"
"#;

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} missing from:\n{out}"))
}

/// A layout with secrets in every place no agent may read.
fn seed(t: &TestRoot) {
    t.write(&t.root.join(".env"), "DISCORD_BOT_TOKEN=ENV-FILE-SECRET\n");
    t.write(&t.paths.global_dir().join("AGENTS.md"), "GLOBAL-MEMORY");
    t.write(
        &t.paths.group_dir(&folder("other")).join("AGENTS.md"),
        "OTHER-GROUP-SECRET",
    );
    t.write(
        &t.paths.ipc_dir(&folder("other")).join("note.json"),
        "OTHER-GROUP-SECRET",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_main_agent_sees_only_its_own_folders() {
    let t = TestRoot::new("ctr-mounts").await;
    seed(&t);
    let r = runner(&t, None).await;
    let out = run_as_agent(&r, &spec_for(&t, "team", false, None), PROBE);
    assert_eq!(field(&out, "group_rw"), "yes", "{out}");
    assert_eq!(field(&out, "global_rw"), "no", "global is read-only: {out}");
    assert_eq!(field(&out, "global_mem"), "GLOBAL-MEMORY", "{out}");
    assert_eq!(field(&out, "rootfs_rw"), "no", "--read-only: {out}");
    assert_eq!(field(&out, "tmp_rw"), "yes", "{out}");
    assert_eq!(field(&out, "project"), "no", "{out}");
    assert_eq!(
        field(&out, "other_group"),
        "no",
        "another group leaked: {out}"
    );
    assert_eq!(field(&out, "env_secret"), "no", "{out}");
    assert_eq!(field(&out, "store"), "", "the store is visible: {out}");
    assert_eq!(field(&out, "caps"), "CapEff:0000000000000000", "{out}");
    assert!(t.paths.group_dir(&folder("team")).join("probe").exists());
    assert!(!t.paths.global_dir().join("probe").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_sees_the_project_read_only_without_env_store_or_data() {
    let t = TestRoot::new("ctr-main").await;
    seed(&t);
    let r = runner(&t, None).await;
    let out = run_as_agent(&r, &spec_for(&t, "main", true, None), PROBE);
    assert_eq!(field(&out, "global_rw"), "yes", "main writes global: {out}");
    assert_eq!(field(&out, "project"), "yes", "{out}");
    assert_eq!(field(&out, "project_rw"), "no", "{out}");
    assert!(field(&out, "sees_groups").contains("other"), "{out}");
    assert_eq!(field(&out, "env_file"), "", ".env is masked: {out}");
    assert_eq!(field(&out, "env_secret"), "no", "{out}");
    assert_eq!(field(&out, "project_store"), "", "{out}");
    assert_eq!(field(&out, "project_data"), "", "{out}");
    assert_eq!(field(&out, "store"), "", "the store is visible: {out}");
    assert!(t.paths.global_dir().join("probe").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowlisted_extra_mounts_are_mounted_and_read_only_for_non_main() {
    let t = TestRoot::new("ctr-extra").await;
    // Outside the RustClaw root, as the owner's own directories would be.
    let outside = support::home_tempdir("ctr-extra-owner-");
    let allowed = outside.path().join("work");
    let app = allowed.join("app");
    let secret = outside.path().join("private");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(app.join("APP.txt"), "APP-CONTENT").unwrap();
    let list = outside.path().join("mount-allowlist.json");
    std::fs::write(
        &list,
        json!({"allowed_roots": [{"path": allowed, "read_write": true}]}).to_string(),
    )
    .unwrap();
    let config = json!({"additional_mounts": [
        {"host_path": app, "container_path": "app", "readonly": false},
        {"host_path": secret, "container_path": "private"},
    ]});

    let r = runner(&t, Some(list.clone())).await;
    let out = run_as_agent(
        &r,
        &spec_for(&t, "team", false, Some(config.clone())),
        PROBE,
    );
    assert_eq!(
        field(&out, "extra").trim(),
        "app",
        "only the allowlisted mount: {out}"
    );
    assert_eq!(field(&out, "extra_file"), "APP-CONTENT", "{out}");
    assert_eq!(field(&out, "extra_rw"), "no", "non-main: read-only: {out}");
    // Main may write where the allowlist allows it.
    let out = run_as_agent(&r, &spec_for(&t, "main", true, Some(config.clone())), PROBE);
    assert_eq!(field(&out, "extra_rw"), "yes", "{out}");
    // No allowlist file: no extra mounts at all.
    let r = runner(&t, Some(outside.path().join("absent.json"))).await;
    let out = run_as_agent(&r, &spec_for(&t, "main", true, Some(config)), PROBE);
    assert_eq!(field(&out, "extra").trim(), "", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_past_its_timeout_is_stopped_and_leaves_no_container() {
    let mut t = TestRoot::new("ctr-timeout").await;
    t.settings.turn_timeout = Duration::from_secs(2);
    let r = runner(&t, None).await;
    let agents = rust_claw::agent::Agents::new(
        t.paths.clone(),
        t.settings.clone(),
        r.clone(),
        t.store.clone(),
    );
    t.mock.push([Reply::Hang]);
    let mut s = agents
        .start(&folder("team"), false, ContextMode::Group)
        .await
        .unwrap();
    assert_eq!(containers_of(r.install_id()).len(), 1);
    let started = Instant::now();
    let err = s.run_turn("take forever").await.unwrap_err();
    assert!(matches!(err, AgentError::TurnTimeout { secs: 2 }), "{err}");
    assert!(matches!(
        err.failure(),
        rust_claw::agent::error::Failure::Permanent { .. }
    ));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        containers_of(r.install_id()).is_empty(),
        "the timed-out agent's container is gone"
    );
}

// ---- the daemon binary: kill -9, restart, orphans, argv ---------------------------

const BIN: &str = env!("CARGO_BIN_EXE_rust_claw");
const SECRET_VAR: &str = "RUST_CLAW_TEST_PROVIDER_KEY";

fn cli(root: &Path, args: &[&str]) {
    let out = Command::new(BIN)
        .current_dir(root)
        .env("TIMEZONE", "UTC")
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rust_claw run` in its own process group, its log lines on a channel.
struct RunningDaemon {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl RunningDaemon {
    fn start(root: &Path, secret: &str) -> RunningDaemon {
        let mut child = Command::new(BIN)
            .current_dir(root)
            .env_remove("AGENT_RUNNER")
            .env_remove("DISCORD_BOT_TOKEN")
            .env("RUST_LOG", "info")
            .env(SECRET_VAR, secret)
            .arg("run")
            .process_group(0)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = RunningDaemon {
            child,
            lines,
            seen: Vec::new(),
        };
        d.expect("rust_claw daemon started");
        d
    }

    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no log line containing {needle:?}; the daemon said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything it logged so far.
    fn drain(&mut self) -> String {
        self.seen.extend(self.lines.try_iter());
        self.seen.join("\n")
    }

    /// SIGKILL of the daemon and every process of its group (the `podman run`
    /// clients too), as a power cut or `systemctl kill -s KILL` would.
    fn kill9(mut self) {
        let pg = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process's command line that contains `needle`.
fn cmdlines_containing(needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            if line.contains(needle) {
                hits.push(line);
            }
        }
    }
    hits
}

#[test]
fn kill_9_then_restart_removes_only_this_installations_orphans_and_no_secret_is_in_argv() {
    let dir = support::home_tempdir("ctr-daemon-");
    let root = dir.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = rt.block_on(MockModel::start());
    mock.respond_with(|_| Reply::Hang);
    let fragment = root.join("codex-fragment.toml");
    std::fs::write(
        &fragment,
        format!(
            "model = \"mock-model\"\nmodel_provider = \"mock\"\n\n[model_providers.mock]\n\
             name = \"Local mock\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
             env_key = \"{SECRET_VAR}\"\nrequest_max_retries = 0\nstream_max_retries = 0\n",
            mock.base_url()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("owner-codex")).unwrap();
    std::fs::write(
        root.join(".env"),
        format!(
            "TIMEZONE=UTC\nAGENT_RUNNER=container\nCONTAINER_RUNTIME=podman\n\
             CONTAINER_IMAGE={}\nCONTAINER_NETWORK=host\nCODEX_CONFIG={}\nCODEX_AUTH_DIR={}\n",
            image(),
            fragment.display(),
            root.join("owner-codex").display()
        ),
    )
    .unwrap();
    let secret = format!("sk-test-{}-never-in-argv", std::process::id());
    let install = install_id(root);
    let ours_before = containers_of(&install);
    assert!(ours_before.is_empty(), "{ours_before:?}");

    cli(root, &["bootstrap-main", "--jid", MAIN]);
    cli(
        root,
        &[
            "create-task",
            "--id",
            "hang",
            "--group-folder",
            "main",
            "--chat-jid",
            MAIN,
            "--prompt",
            "hang",
            "--schedule-type",
            "interval",
            "--schedule-value",
            "1000",
        ],
    );
    let mut daemon = RunningDaemon::start(root, &secret);
    // The task's agent starts in a container and asks the model (which never answers):
    // codex got the provider key (it refuses to call the model without it)...
    if rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(25), mock.wait_requests(1)).await
        })
        .is_err()
    {
        panic!(
            "the model was never asked; the daemon said:\n{}",
            daemon.drain()
        );
    }
    let orphans = containers_of(&install);
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    // ...but no process's argv holds it; the runtime was given only its name.
    let leaks = cmdlines_containing(&secret);
    assert!(leaks.is_empty(), "the secret is in an argv: {leaks:?}");
    assert!(
        cmdlines_containing(&format!("-e {SECRET_VAR} ")).len() == 1,
        "the runtime should inherit {SECRET_VAR} by name"
    );

    // Another installation's container and an unlabelled one, named like ours.
    let pid = std::process::id();
    let (other, unlabelled) = (
        format!("rustclaw-main-{pid}1"),
        format!("rustclaw-main-{pid}2"),
    );
    stand_in_container(&other, Some("00000000000000ff"));
    stand_in_container(&unlabelled, None);

    daemon.kill9();
    // Whether the killed daemon's own container outlives it is up to timing: once its
    // stdin closes, codex exits and `--rm` removes it, sooner or later. An agent that
    // ignores EOF (hung in a tool, say) would stay, so one such orphan is made here
    // deterministically: running, labelled with this installation's id.
    let stand_in = format!("rustclaw-main-{pid}3");
    stand_in_container(&stand_in, Some(&install));
    let left = containers_of(&install);
    assert!(left.contains(&stand_in), "{left:?}");

    // The restarted daemon removes its orphans before it reports being started.
    let daemon = RunningDaemon::start(root, &secret);
    let now = containers_of(&install);
    assert!(
        !now.contains(&orphans[0]) && !now.contains(&stand_in),
        "orphan left: {now:?}"
    );
    let all = podman_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        all.contains(&other) && all.contains(&unlabelled),
        "another installation's containers were touched: {all}"
    );
    daemon.stop();
    assert!(
        containers_of(&install).is_empty(),
        "shutdown removes this installation's containers"
    );
    podman_ok(&["rm", "-f", "-t", "0", &other, &unlabelled]);
    drop(mock);
    let _: PathBuf = root.to_owned();
}

// ---- runtime, image or version missing: one clear error, at once ------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_told_to_the_chat_at_once_with_the_fix() {
    let mut rig = DaemonRig::start_with_runner(
        "ctr-noimage",
        // Retries would take 5 s, 10 s, ...: the answer must come before the first.
        &[("AGENT_RETRY_BASE_MS", "60000")],
        &[(MAIN, "main", true, false)],
        |_| unreachable_runner(),
    )
    .await;
    let mut settings = support::containers::settings(None);
    settings.image = "localhost/rust-claw-no-such-image:never".to_owned();
    let r = Arc::new(rust_claw::agent::container::ContainerRunner::new(
        Ok(podman()),
        settings,
        rig.t.paths.clone(),
    ));
    let err = r.check().await.unwrap_err();
    assert!(err.to_string().contains("scripts/build-image.sh"), "{err}");
    rig.runner = r;
    rig.restart().await;
    let started = Instant::now();
    rig.channel.say(MAIN, "hello?").await;
    let sent = rig.channel.wait_sent(MAIN, 1).await;
    assert!(
        sent[0].contains("is not built") && sent[0].contains("scripts/build-image.sh"),
        "{sent:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(rig.t.mock.requests().is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_speaking_another_ipc_version_is_refused_with_the_fix() {
    let t = TestRoot::new("ctr-skew").await;
    let tag = format!("localhost/rust-claw-skew-test:{}", std::process::id());
    let dir = support::home_tempdir("ctr-skew-");
    std::fs::write(
        dir.path().join("Containerfile"),
        format!("FROM {}\nLABEL io.rust-claw.ipc-version=0\n", image()),
    )
    .unwrap();
    podman_ok(&["build", "-q", "-t", &tag, dir.path().to_str().unwrap()]);
    let mut settings = support::containers::settings(None);
    settings.image = tag.clone();
    let r =
        rust_claw::agent::container::ContainerRunner::new(Ok(podman()), settings, t.paths.clone());
    let err = r.check().await.unwrap_err().to_string();
    podman_ok(&["rmi", &tag]);
    assert!(
        err.contains("IPC version 0") && err.contains("rebuild it with scripts/build-image.sh"),
        "{err}"
    );
}

#[test]
fn run_without_a_runtime_says_so_at_start_up_and_names_both_fixes() {
    let dir = support::home_tempdir("ctr-noruntime-");
    // No AGENT_RUNNER: the default is containers, and nothing falls back silently.
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env_remove("AGENT_RUNNER")
        .env_remove("DISCORD_BOT_TOKEN")
        .env("PATH", "/nonexistent")
        .env("TIMEZONE", "UTC")
        .env("RUST_LOG", "info")
        .arg("run")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut d = RunningDaemon {
        lines: {
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for l in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = tx.send(l);
                }
            });
            rx
        },
        child,
        seen: Vec::new(),
    };
    let line = d.expect("agents cannot run: no container runtime");
    assert!(
        line.contains("scripts/build-image.sh") && line.contains("AGENT_RUNNER=host"),
        "{line}"
    );
    d.stop();
}

/// Writes a request as an agent does (a temporary name, then a rename) and waits for
/// the host's answer.
async fn ask(ipc: &Path, sub: &str, id: &str, req: Value) -> Value {
    let tmp = ipc.join(sub).join(format!("{id}.json.tmp"));
    std::fs::write(&tmp, req.to_string()).unwrap();
    std::fs::rename(&tmp, ipc.join(sub).join(format!("{id}.json"))).unwrap();
    let answer = ipc.join("responses").join(format!("{id}.json"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&answer)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            return v;
        }
        assert!(Instant::now() < deadline, "no answer to {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue #11's directory attacks played by a non-main agent from inside its real
/// container while the daemon runs. Relative links such as `../main/tasks` dangle in
/// the container but point at main's IPC directory on the host: the host must never
/// follow them. Afterwards nothing of main's changed, no request was applied, the
/// directories are repaired and the next ordinary request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_attacking_its_ipc_dir_from_its_container_changes_nothing_outside() {
    let rig = main_and_ops_in_containers("ctr-attack").await;
    let main_ipc = rig.t.paths.ipc_dir(&folder("main"));
    let ops_ipc = rig.t.paths.ipc_dir(&folder("ops"));
    let main_before = files_below(&main_ipc);
    let r = runner(&rig.t, None).await;
    let spec = spec_for(&rig.t, "ops", false, None);
    // The host repairs a deleted directory within microseconds, so each link is
    // retried until it lands where the directory was (`ln -T` never nests it inside).
    let script = r#"
set -u
cd /workspace/ipc
land() {
  n=0
  until ln -sT "$2" "$1" 2>/dev/null; do
    rm -rf "$1"
    n=$((n+1))
    [ $n -lt 5000 ] || return 0
  done
  echo "landed $1"
}
# 1: responses/ replaced by a link into main's request directory.
land responses ../main/tasks
# 2: tasks/ moved aside and replaced by a link; a request left in the moved directory.
mv tasks tasks.old
land tasks ../main/tasks
printf '{"type":"message","chatJid":"111111111111111111@discord","text":"x"}' > tasks.old/moved.json
# 3: the repair race on messages/.
i=0
while [ $i -lt 400 ]; do
  rm -rf messages 2>/dev/null
  ln -sT ../main/messages messages 2>/dev/null
  i=$((i+1))
done
echo raced
"#;
    let out = run_as_agent(&r, &spec, script);
    assert!(
        out.contains("landed responses") && out.contains("landed tasks") && out.contains("raced"),
        "the attacks did not run: {out}"
    );
    // The host repairs every directory (the impostors go to the quarantine).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !["messages", "tasks", "responses"]
        .iter()
        .all(|d| is_real_dir(&ops_ipc.join(d)))
    {
        assert!(
            Instant::now() < deadline,
            "the IPC directories were not repaired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An agent's 1 ms interval is refused with the floor named; a message is answered.
    let floor = ask(
        &ops_ipc,
        "tasks",
        "after-floor",
        json!({"type":"schedule_task","prompt":"p","schedule_type":"interval","schedule_value":"1"}),
    )
    .await;
    assert_eq!(floor["status"], "invalid", "{floor}");
    let hello = ask(
        &ops_ipc,
        "messages",
        "after-hello",
        json!({"type":"message","chatJid":OPS,"text":"still here"}),
    )
    .await;
    assert_eq!(hello["status"], "ok", "{hello}");
    // Nothing of main's was created, changed or removed, apart from its own
    // snapshots the host rewrites; no task exists; the moved request was never applied.
    let snapshots = |v: Vec<(PathBuf, Vec<u8>)>| -> Vec<(PathBuf, Vec<u8>)> {
        v.into_iter()
            .filter(|(p, _)| p.parent() != Some(main_ipc.as_path()))
            .collect()
    };
    assert_eq!(snapshots(files_below(&main_ipc)), snapshots(main_before));
    let tasks = rig
        .t
        .store
        .call(|s| rust_claw::store::tasks::list(s.conn(), None, None))
        .await
        .unwrap();
    assert!(tasks.is_empty(), "{tasks:?}");
    assert!(ops_ipc.join("tasks.old/moved.json").exists());
    // The impostors are in the quarantine, each with its reason.
    let reasons: Vec<String> = files_below(&rig.t.paths.ipc_root().join("errors").join("ops"))
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "reason"))
        .map(|(_, text)| String::from_utf8_lossy(&text).into_owned())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("symbolic link")),
        "no impostor link quarantined: {reasons:?} {:?}",
        files_below(&rig.t.paths.ipc_root())
            .iter()
            .map(|(p, _)| p.clone())
            .collect::<Vec<_>>()
    );
    rig.stop().await;
}
