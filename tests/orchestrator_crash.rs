//! `kill -9` of the whole daemon while 200 chat messages across 10 groups are in flight
//! (custom harness: this binary is both the test and, with `RUST_CLAW_ORCH_CRASH_CHILD`
//! set to a root, the daemon it kills).
//!
//! The child is a real daemon (`Daemon::start_with`, host runner, the real codex against
//! the parent's mock model) whose channel is a pair of files: on connect it feeds every
//! message of `inbox.tsv` (again after each restart, as Discord would redeliver; the
//! platform ids de-duplicate), and `send` appends the reply with its nonce to `sent.log`
//! before reporting success. The parent kills the child's process group at random
//! moments, restarts it, and finally lets it finish and stops it with SIGTERM. Then:
//! every triggered message was answered in exactly one distinct reply (replies are
//! de-duplicated by nonce, as Discord's `enforce_nonce` does), untriggered messages
//! never caused a reply on their own, and the store agrees (cursors, outbox).
//!
//! The mock model echoes the tokens of the batch it was asked about, so each reply
//! names the messages it answers. Replay a run with `RUST_CLAW_CRASH_SEED=<seed>`; keep
//! the children's log with `RUST_CLAW_CRASH_KEEP_LOG=<file>`.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_claw::actions::{self, RegisterGroup};
use rust_claw::agent::AgentSettings;
use rust_claw::agent::ApprovalDecision;
use rust_claw::agent::host::HostRunner;
use rust_claw::channels::{BoxFuture, Channel, ChannelError, Inbound};
use rust_claw::config::Config;
use rust_claw::daemon::{Daemon, InstanceLock};
use rust_claw::model::{FolderName, Jid};
use rust_claw::paths::Paths;
use rust_claw::shutdown::Shutdown;
use rust_claw::store::{Store, StoreError};
use serde_json::Value;
use support::mock_model::Reply;
use support::{TestRoot, codex_bin};
use tokio::sync::mpsc;

const NAME: &str = "orchestrator_crash_sigkill_200_messages";
const CHILD_ENV: &str = "RUST_CLAW_ORCH_CRASH_CHILD";
const GROUPS: usize = 10;
const PER_GROUP: usize = 20;
const KILLS: usize = 8;
/// Messages are posted this far apart (200 messages: 8 s), across the kills.
const ARRIVAL_GAP: Duration = Duration::from_millis(40);
/// A kill comes this many milliseconds after a start: from before the first agent
/// session is up (codex takes ~0.3 s to start here) to in the middle of turns.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 150..=1500;
const FINAL_WAIT: Duration = Duration::from_secs(120);

fn main() {
    if let Some(root) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&root));
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return;
    }
    // Honour a name filter like libtest does (`cargo test <filter>`).
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out");
        return;
    }
    println!("\nrunning 1 test");
    let started = Instant::now();
    sigkill_200_messages();
    let took = started.elapsed().as_secs_f64();
    println!("test {NAME} ... ok");
    println!(
        "\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in {took:.2}s\n"
    );
}

// ---------------------------------------------------------------------------------
// The scenario: 10 groups, 20 messages each, tokens `m-<group>-<n>`.

struct Msg {
    jid: String,
    external_id: String,
    content: String,
    token: String,
    /// The test's own view of the trigger rules: main and groups without a trigger
    /// requirement answer everything, the others only `@Andy …`.
    triggered: bool,
}

fn group_jid(g: usize) -> String {
    format!("30000000000000{g:04}@discord")
}

fn group_folder(g: usize) -> String {
    if g == 0 {
        "main".into()
    } else {
        format!("g{g}")
    }
}

/// Odd groups need the trigger; the others (main included) answer everything.
fn requires_trigger(g: usize) -> bool {
    g % 2 == 1
}

fn scenario(rng: &mut StdRng) -> Vec<Msg> {
    let mut out = Vec::new();
    // Interleaved, so every group's messages keep arriving while others are answered.
    for n in 0..PER_GROUP {
        for g in 0..GROUPS {
            let token = format!("m-{g}-{n}");
            let (content, triggered) = if requires_trigger(g) {
                // About half addressed to the assistant; the last message never is, so
                // some context is always left waiting for a trigger that never comes.
                if n + 1 < PER_GROUP && rng.random_bool(0.5) {
                    (format!("@Andy {token} please"), true)
                } else {
                    (format!("{token} just chatting"), false)
                }
            } else {
                (format!("{token} hello"), true)
            };
            out.push(Msg {
                jid: group_jid(g),
                external_id: format!("ext-{g}-{n}"),
                content,
                token,
                triggered,
            });
        }
    }
    out
}

/// The `m-<g>-<n>` tokens in `text`, in order.
fn tokens(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'm' && b[i + 1] == b'-' && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let mut j = i + 2;
            let d1 = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j > d1 && j < b.len() && b[j] == b'-' {
                let d2 = j + 1;
                let mut k = d2;
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                if k > d2 {
                    out.push(text[i..k].to_owned());
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// The mock model's answer: the tokens of the newest `<messages>` batch in the request.
fn echo_batch(req: &Value) -> Reply {
    let body = req.to_string();
    let Some(start) = body.rfind("<messages>") else {
        return Reply::text("no batch in this request");
    };
    let end = body[start..]
        .find("</messages>")
        .map_or(body.len(), |e| start + e);
    Reply::Text(format!("re: {}", tokens(&body[start..end]).join(" ")))
}

// ---------------------------------------------------------------------------------
// The child: a daemon whose channel is two files.

/// A line of the sent log. Each record starts on a fresh line and carries an end
/// marker, so a line torn by a kill mid-write cannot swallow the next record.
const END: &str = "<end>";

struct FileChannel {
    inbox: Vec<Inbound>,
    /// When the first message was posted (the parent's clock, shared through a file).
    epoch: std::time::SystemTime,
    sent: Mutex<std::fs::File>,
}

impl FileChannel {
    fn open(root: &Path) -> FileChannel {
        let text = std::fs::read_to_string(root.join("inbox.tsv")).unwrap();
        let base: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let inbox = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                let mut f = line.splitn(3, '\t');
                let (jid, ext, content) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
                Inbound {
                    chat_jid: Jid::parse(jid).unwrap(),
                    chat_name: Some("crash chat".into()),
                    external_id: Some(ext.to_owned()),
                    sender_id: "user-1".into(),
                    sender_name: "Alice".into(),
                    content: content.to_owned(),
                    sent_at: base + chrono::Duration::seconds(i as i64),
                    from_self: false,
                    from_bot: false,
                    mentions_assistant: false,
                    direct: false,
                }
            })
            .collect();
        let sent = std::fs::File::options()
            .create(true)
            .append(true)
            .open(root.join("sent.log"))
            .unwrap();
        let epoch_ms: u64 = std::fs::read_to_string(root.join("epoch"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        FileChannel {
            inbox,
            epoch: std::time::UNIX_EPOCH + Duration::from_millis(epoch_ms),
            sent: Mutex::new(sent),
        }
    }
}

impl Channel for FileChannel {
    fn name(&self) -> &'static str {
        "file"
    }

    fn owns(&self, jid: &Jid) -> bool {
        jid.is_discord()
    }

    fn connect(&self, inbound: mpsc::Sender<Inbound>) -> BoxFuture<'_, Result<(), ChannelError>> {
        let inbox = self.inbox.clone();
        let epoch = self.epoch;
        tokio::spawn(async move {
            // Message i is posted ARRIVAL_GAP after message i-1, on the test's clock:
            // what was posted while the daemon was down arrives at once on connect (as
            // Discord redelivers), the rest as it is posted, while agents work.
            for (i, m) in inbox.into_iter().enumerate() {
                let due = epoch + ARRIVAL_GAP * i as u32;
                let now = std::time::SystemTime::now();
                if let Ok(wait) = due.duration_since(now) {
                    tokio::time::sleep(wait).await;
                }
                if inbound.send(m).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn send<'a>(
        &'a self,
        jid: &'a Jid,
        text: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let flat = text.replace(['\n', '\t'], " ");
        let record = format!("\n{nonce}\t{jid}\t{flat}\t{END}\n");
        let mut f = self.sent.lock().unwrap();
        let res = f
            .write_all(record.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| ChannelError::Transient(format!("sent.log: {e}")));
        Box::pin(async move { res })
    }

    fn set_typing<'a>(&'a self, _jid: &'a Jid, _on: bool) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn disconnect(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

fn child(root: &Path) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let paths = Paths::new(root);
    // As `rust_claw run` does: a SIGKILLed predecessor must not keep the root locked.
    let _lock = InstanceLock::acquire(&paths).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.on_signals().unwrap();
        let config = Arc::new(Config::load(root).unwrap());
        let store = Store::open(&paths.database()).unwrap();
        let settings = AgentSettings {
            tools_exe: PathBuf::from(env!("CARGO_BIN_EXE_rust_claw")),
            auth_dir: root.join("owner-codex"),
            codex_config: Some(root.join("codex-fragment.toml")),
            model: None,
            reasoning_effort: None,
            approval_policy: "never".to_owned(),
            approvals: ApprovalDecision::Decline,
            timezone: Some("UTC".to_owned()),
            turn_timeout: Duration::from_secs(1800),
        };
        let channel: Arc<dyn Channel> = Arc::new(FileChannel::open(root));
        let daemon = Daemon::start_with(
            &paths,
            config,
            store,
            vec![channel],
            settings,
            Arc::new(HostRunner::new(codex_bin())),
        )
        .await
        .unwrap();
        tracing::info!("crash child: daemon started");
        // The SIGTERM handler is installed: the parent may stop us politely now.
        println!("READY");
        std::io::stdout().flush().unwrap();
        shutdown.triggered().await;
        daemon.shutdown().await;
        tracing::info!("crash child: stopped");
    });
}

// ---------------------------------------------------------------------------------
// The parent: the child's process group, killed and always reaped.

/// The running child, in its own process group. Dropping it kills the whole group and
/// reaps every descendant, so a failing test never leaves a daemon or codex behind.
struct Fleet {
    root: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl Fleet {
    fn spawn(&mut self) {
        assert!(self.child.is_none());
        self.starts += 1;
        let mut log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(log, "===== child start {} =====", self.starts).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &self.root)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,rust_claw=info".into()),
            )
            .env_remove("DISCORD_BOT_TOKEN")
            .env_remove("AUTO_REGISTER_MAIN_JID")
            .env_remove("RUST_CLAW_ROOT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits for the child's READY line (its daemon is up, SIGTERM handled).
    fn wait_ready(&mut self, within: Duration) {
        let out = self.child.as_mut().unwrap().stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(within) {
            Ok(line) if line.trim() == "READY" => {}
            other => {
                let tail = self.log_tail(40);
                self.kill();
                panic!("the daemon did not start within {within:?} ({other:?}); its log:\n{tail}");
            }
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("child running").id() as i32)
    }

    /// SIGKILL to the child's whole process group (daemon, codex, MCP servers), then
    /// waits until every descendant is gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
            reap_descendants();
        }
    }

    /// SIGTERM to the daemon; it must exit on its own within `within`.
    fn terminate(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let c = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                let took = started.elapsed();
                self.child = None;
                reap_descendants();
                return (status, took);
            }
            if started.elapsed() > within {
                self.kill();
                panic!("the daemon did not stop within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reaps descendants orphaned by a kill. The test process is a child subreaper, so
/// they are re-parented to it; "no children left" means every one of them is gone.
fn reap_descendants() {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() > deadline {
                    kill_my_children();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(_) => {}
            Err(Errno::ECHILD) => return,
            Err(e) => panic!("waitpid: {e}"),
        }
    }
}

/// Last resort: SIGKILL every remaining child of this process.
fn kill_my_children() {
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        if after.split_whitespace().nth(1) == Some(me.as_str())
            && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

// ---------------------------------------------------------------------------------
// Reading the outcome.

/// One distinct reply (by nonce).
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    jid: String,
    text: String,
}

/// The sent log de-duplicated by nonce (in first-sent order), and how many records it held.
fn read_sent(path: &Path) -> (Vec<(String, Sent)>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut order = Vec::new();
    let mut by_nonce: HashMap<String, Sent> = HashMap::new();
    let mut records = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 4 || f[3] != END {
            continue; // blank, or torn by a kill
        }
        records += 1;
        let s = Sent {
            jid: f[1].to_owned(),
            text: f[2].to_owned(),
        };
        match by_nonce.get(f[0]) {
            Some(prev) => assert_eq!(
                prev, &s,
                "nonce {} was re-sent with a different reply",
                f[0]
            ),
            None => {
                by_nonce.insert(f[0].to_owned(), s.clone());
                order.push((f[0].to_owned(), s));
            }
        }
    }
    (order, records)
}

fn covered(sent: &[(String, Sent)]) -> HashSet<String> {
    sent.iter().flat_map(|(_, s)| tokens(&s.text)).collect()
}

fn unsent_rows(t: &TestRoot, rt: &tokio::runtime::Runtime) -> i64 {
    rt.block_on(t.store.call(|s| {
        s.conn()
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(StoreError::from)
    }))
    .unwrap()
}

// ---------------------------------------------------------------------------------

fn sigkill_200_messages() {
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    let seed = std::env::var("RUST_CLAW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("seed {seed} (replay with RUST_CLAW_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    // The mock model lives in the parent, so it survives every kill of the daemon.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(TestRoot::new("orch-crash"));
    t.mock.respond_with(echo_batch);
    std::fs::write(t.root.join(".env"), "TIMEZONE=UTC\nAGENT_RUNNER=host\n").unwrap();
    for g in 0..GROUPS {
        let req = RegisterGroup {
            jid: Jid::parse(&group_jid(g)).unwrap(),
            name: group_folder(g).to_uppercase(),
            folder: FolderName::parse(&group_folder(g)).unwrap(),
            trigger: None,
            requires_trigger: requires_trigger(g),
            is_main: g == 0,
            container_config: None,
        };
        rt.block_on(
            t.store
                .call(move |s| s.write(|tx| actions::register_group(tx, req, "@Andy", Utc::now()))),
        )
        .unwrap();
    }
    let msgs = scenario(&mut rng);
    let inbox: String = msgs
        .iter()
        .map(|m| format!("{}\t{}\t{}\n", m.jid, m.external_id, m.content))
        .collect();
    std::fs::write(t.root.join("inbox.tsv"), inbox).unwrap();
    let triggered: HashSet<String> = msgs
        .iter()
        .filter(|m| m.triggered)
        .map(|m| m.token.clone())
        .collect();
    println!(
        "{} messages in {GROUPS} groups, {} of them triggering",
        msgs.len(),
        triggered.len()
    );
    let sent_log = t.root.join("sent.log");

    let mut fleet = Fleet {
        root: t.root.clone(),
        log: t.root.join("child.log"),
        child: None,
        starts: 0,
    };
    let started = Instant::now();

    // 1. Kill the daemon at random moments while it works and messages arrive.
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::fs::write(t.root.join("epoch"), epoch.to_string()).unwrap();
    for k in 1..=KILLS {
        fleet.spawn();
        let after = rng.random_range(KILL_AFTER_MS);
        std::thread::sleep(Duration::from_millis(after));
        fleet.kill();
        let (sent, records) = read_sent(&sent_log);
        println!(
            "kill {k}/{KILLS} after {after} ms: {} replies sent so far ({records} sends), {}/{} triggered messages answered, {} model requests",
            sent.len(),
            covered(&sent).intersection(&triggered).count(),
            triggered.len(),
            t.mock.requests().len()
        );
    }

    // 2. Let the last run finish everything, then stop it the polite way.
    fleet.spawn();
    fleet.wait_ready(Duration::from_secs(30));
    let final_start = Instant::now();
    loop {
        let (sent, _) = read_sent(&sent_log);
        let done = covered(&sent);
        if triggered.is_subset(&done) && unsent_rows(&t, &rt) == 0 {
            break;
        }
        if final_start.elapsed() > FINAL_WAIT {
            let mut missing: Vec<&String> = triggered.difference(&done).collect();
            missing.sort();
            let tail = fleet.log_tail(60);
            fleet.kill();
            panic!(
                "after the last restart, {} triggered messages got no reply within {FINAL_WAIT:?}: {missing:?}\n\
                 ({} unsent outbox rows; seed {seed})\nchild log tail:\n{tail}",
                missing.len(),
                unsent_rows(&t, &rt)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let settled = final_start.elapsed();
    let (status, stop_took) = fleet.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "the daemon exited with {status} after SIGTERM\n{}",
        fleet.log_tail(40)
    );
    println!(
        "final run settled in {:.1} s; SIGTERM stop took {} ms; total {:.1} s",
        settled.as_secs_f64(),
        stop_took.as_millis(),
        started.elapsed().as_secs_f64()
    );

    if let Some(keep) = std::env::var_os("RUST_CLAW_CRASH_KEEP_LOG") {
        std::fs::copy(&fleet.log, keep).unwrap();
    }

    // 3. Verify the replies.
    let (sent, records) = read_sent(&sent_log);
    let by_token: HashMap<&str, &Msg> = msgs.iter().map(|m| (m.token.as_str(), m)).collect();
    let mut answered_in: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (nonce, s) in &sent {
        let toks = tokens(&s.text);
        assert!(
            !toks.is_empty(),
            "a reply names no message (an error reply?): {s:?} (seed {seed})"
        );
        for tok in &toks {
            let m = by_token
                .get(tok.as_str())
                .unwrap_or_else(|| panic!("reply {s:?} names unknown message {tok}"));
            assert_eq!(m.jid, s.jid, "reply {s:?} went to another chat than {tok}");
            answered_in
                .entry(tok.clone())
                .or_default()
                .push(nonce.clone());
        }
        assert!(
            toks.iter().any(|tok| triggered.contains(tok)),
            "a reply answers only untriggered messages: {s:?} (seed {seed})"
        );
    }
    for tok in &triggered {
        let n = answered_in.get(tok).map_or(0, Vec::len);
        assert_eq!(
            n,
            1,
            "triggered message {tok} appears in {n} distinct replies (seed {seed}): {:?}",
            answered_in.get(tok)
        );
    }
    for (tok, nonces) in &answered_in {
        assert!(
            nonces.len() <= 1,
            "message {tok} was answered in {} replies (seed {seed})",
            nonces.len()
        );
    }

    // 4. And the store agrees: each message stored once, every reply queued was sent
    //    exactly as logged, every cursor past its chat's last triggered message.
    let nonces: HashSet<String> = sent.iter().map(|(n, _)| n.clone()).collect();
    let last_triggered: HashMap<String, String> = msgs
        .iter()
        .filter(|m| m.triggered)
        .map(|m| (m.jid.clone(), m.external_id.clone()))
        .collect();
    let (stored, outbox, problems, cursors) = rt
        .block_on(t.store.call(move |s| {
            let c = s.conn();
            let stored: i64 = c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
            let mut stmt = c.prepare("SELECT nonce FROM outbox")?;
            let outbox: HashSet<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let problems: i64 = c.query_row(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL OR last_error IS NOT NULL OR origin != 'reply'",
                [],
                |r| r.get(0),
            )?;
            let mut cursors = Vec::new();
            for (jid, ext) in &last_triggered {
                let id: i64 = c.query_row(
                    "SELECT id FROM messages WHERE chat_jid = ?1 AND external_id = ?2",
                    [jid, ext],
                    |r| r.get(0),
                )?;
                let cursor = rust_claw::store::messages::cursor(c, &rust_claw::model::Jid::parse(jid).unwrap())?;
                cursors.push((jid.clone(), id, cursor));
            }
            Ok::<_, StoreError>((stored, outbox, problems, cursors))
        }))
        .unwrap();
    assert_eq!(
        stored as usize,
        msgs.len(),
        "messages stored more than once"
    );
    assert_eq!(
        problems, 0,
        "outbox rows unsent, failed or not replies at the end"
    );
    assert_eq!(
        outbox, nonces,
        "the replies queued in the outbox and the replies sent differ"
    );
    for (jid, last, cursor) in cursors {
        assert!(
            cursor >= last,
            "{jid}: cursor {cursor} is before its last triggered message {last}"
        );
    }
    println!(
        "{} distinct replies ({} sends: {} re-sent after a kill and dropped by nonce) cover all {} triggered messages once; {} model requests, {} daemon starts",
        sent.len(),
        records,
        records - sent.len(),
        triggered.len(),
        t.mock.requests().len(),
        fleet.starts
    );
}
