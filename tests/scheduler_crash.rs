//! `kill -9` during a scheduled run (custom harness: this binary is both the test and,
//! with `--scheduler-child ROOT`, the child process that runs a real scheduler on the
//! real clock with a queue that never finishes its runs).
//!
//! The parent SIGKILLs the child while its runs are in flight, restarts it, and checks
//! that the runs are marked `interrupted`, not replayed, and that the recurring task's
//! next run is intact (the once task is `failed`).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use chrono_tz::Tz;
use rust_claw::actions::{self, NewTask};
use rust_claw::model::{ContextMode, FolderName, Jid, ScheduleType, TaskId, TaskStatus};
use rust_claw::scheduler::runs::INTERRUPTED_BY_RESTART;
use rust_claw::scheduler::{DueRun, Scheduler, SystemClock, TaskSink};
use rust_claw::store::tasks::{self, RunStatus};
use rust_claw::store::{SharedStore, Store};
use support::MAIN_JID;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--scheduler-child") {
        child(Path::new(&args[i + 1]));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("kill_9_during_a_run: test");
        return;
    }
    kill_9_during_a_run();
    println!("test kill_9_during_a_run ... ok");
    println!("\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

/// Prints each run it is handed and never finishes it (an agent still working).
struct PrintSink;

impl TaskSink for PrintSink {
    fn submit(&self, run: DueRun) {
        let mut out = std::io::stdout().lock();
        writeln!(out, "RUN {} {}", run.run_id, run.task.id).unwrap();
        out.flush().unwrap();
    }
}

fn db(root: &Path) -> std::path::PathBuf {
    root.join("store").join("messages.db")
}

fn child(root: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SharedStore::new(Store::open(&db(root)).unwrap());
        let (topics, _) = tokio::sync::broadcast::channel(16);
        let h = Scheduler::new(
            store,
            Arc::new(SystemClock),
            Arc::new(PrintSink),
            topics.subscribe(),
        )
        .spawn();
        let s = h.wait_for(|s| s.waiting).await;
        println!("READY {}", s.interrupted_at_start);
        std::io::stdout().flush().unwrap();
        std::future::pending::<()>().await;
    });
}

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(root: &Path) -> Proc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--scheduler-child")
            .arg(root)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// Lines up to and including the first that starts with `prefix`.
    fn until(&self, prefix: &str) -> Vec<String> {
        let deadline = Instant::now() + StdDuration::from_secs(20);
        let mut seen = vec![];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with(prefix);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("child: no {prefix:?} line ({e}); saw {seen:?}"),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill_9_during_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let now = Utc::now();
    // Stored times have millisecond precision.
    let due = rust_claw::store::from_ms(rust_claw::store::to_ms(now + Duration::milliseconds(400)));
    let mut store = Store::open(&db(root)).unwrap();
    store
        .write(|tx| {
            support::register_main(tx, now)?;
            for (id, kind, value) in [
                ("rec", ScheduleType::Interval, "60000".to_owned()),
                (
                    "one",
                    ScheduleType::Once,
                    (now + Duration::hours(1)).to_rfc3339(),
                ),
            ] {
                let req = NewTask {
                    id: Some(TaskId::parse(id).unwrap()),
                    group_folder: FolderName::parse("main").unwrap(),
                    chat_jid: Jid::parse(MAIN_JID).unwrap(),
                    prompt: "work".into(),
                    schedule_type: kind,
                    schedule_value: value,
                    context_mode: ContextMode::Group,
                    timezone: None,
                };
                let mut t = actions::create_task(tx, req, "test", Tz::UTC, now)?;
                // Both come due shortly after the child starts.
                t.next_run = Some(due);
                tasks::update(tx, &t)?;
            }
            Ok::<_, actions::ActionError>(())
        })
        .unwrap();
    let rec = TaskId::parse("rec").unwrap();
    let one = TaskId::parse("one").unwrap();

    // 1. The child claims both runs and hands them to a queue that keeps working.
    let mut first = Proc::spawn(root);
    first.until("READY");
    let mut handed = vec![];
    while handed.len() < 2 {
        handed.extend(first.until("RUN "));
    }
    let c = store.conn();
    for id in [&rec, &one] {
        let runs = tasks::runs(c, id, 10).unwrap();
        assert_eq!(runs.len(), 1, "{id}: {runs:?}");
        assert_eq!(runs[0].status, RunStatus::Running);
    }
    let next_rec = tasks::get(c, &rec).unwrap().unwrap().next_run;
    assert_eq!(
        next_rec,
        Some(due + Duration::seconds(60)),
        "advanced with the claim"
    );

    // 2. kill -9 mid-run.
    first.child.kill().unwrap();
    let status = first.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));

    // 3. Restart: recovery, then a first pass that must not replay anything.
    let second = Proc::spawn(root);
    let lines = second.until("READY");
    assert_eq!(lines, ["READY 2"], "runs were replayed or not recovered");
    for id in [&rec, &one] {
        let runs = tasks::runs(c, id, 10).unwrap();
        assert_eq!(runs.len(), 1, "{id} ran again: {runs:?}");
        assert_eq!(runs[0].status, RunStatus::Interrupted);
        assert_eq!(runs[0].error.as_deref(), Some(INTERRUPTED_BY_RESTART));
    }
    let rec_task = tasks::get(c, &rec).unwrap().unwrap();
    assert_eq!(rec_task.status, TaskStatus::Active);
    assert_eq!(rec_task.next_run, next_rec, "next run intact");
    let one_task = tasks::get(c, &one).unwrap().unwrap();
    assert_eq!(one_task.status, TaskStatus::Failed);
    assert!(
        one_task
            .last_result
            .as_deref()
            .unwrap()
            .contains("not re-run"),
        "{:?}",
        one_task.last_result
    );
}
