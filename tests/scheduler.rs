//! The scheduler loop end to end on a real SQLite file, with the injectable clock:
//! the test moves time, the real loop claims runs and hands them to a recording
//! sink (the group queue's interface), and the test completes them as the queue
//! would. No test sleeps: each step waits for the scheduler to finish its pass.

mod support;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use rust_claw::actions::{self, NewTask};
use rust_claw::bus::Topic;
use rust_claw::model::{ContextMode, FolderName, Jid, ScheduleType, TaskId, TaskStatus};
use rust_claw::scheduler::runs::{self, INTERRUPTED_BY_RESTART};
use rust_claw::scheduler::{
    Clock, Completion, DueRun, ManualClock, RunOutcome, Scheduler, SchedulerHandle, TaskSink,
};
use rust_claw::store::tasks::{self, RunStatus, Task, TaskRun};
use rust_claw::store::{SharedStore, Store};
use support::MAIN_JID;
use tokio::sync::broadcast;

/// The queue's stand-in: records what it is handed.
#[derive(Default)]
struct RecordingSink {
    runs: Mutex<Vec<DueRun>>,
}

impl TaskSink for RecordingSink {
    fn submit(&self, run: DueRun) {
        self.runs.lock().unwrap().push(run);
    }
}

impl RecordingSink {
    fn take(&self) -> Vec<DueRun> {
        std::mem::take(&mut *self.runs.lock().unwrap())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: SharedStore,
    clock: ManualClock,
    topics: broadcast::Sender<Topic>,
    sink: Arc<RecordingSink>,
    handle: Option<SchedulerHandle>,
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

impl Harness {
    /// A root with a main group, the clock at `start`, the scheduler not started.
    fn new(start: DateTime<Utc>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store").join("messages.db")).unwrap();
        store.write(|tx| support::register_main(tx, start)).unwrap();
        let (topics, _) = broadcast::channel(256);
        Harness {
            _dir: dir,
            store: SharedStore::new(store),
            clock: ManualClock::new(start),
            topics,
            sink: Arc::new(RecordingSink::default()),
            handle: None,
        }
    }

    /// Starts a scheduler and waits for its first sleep.
    async fn start(&mut self) {
        assert!(self.handle.is_none());
        let s = Scheduler::new(
            self.store.clone(),
            Arc::new(self.clock.clone()),
            self.sink.clone(),
            self.topics.subscribe(),
        );
        let h = s.spawn();
        h.settled_after(0).await;
        self.handle = Some(h);
    }

    async fn stop(&mut self) {
        self.handle.take().unwrap().shutdown().await;
    }

    fn h(&self) -> &SchedulerHandle {
        self.handle.as_ref().unwrap()
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn create(&self, id: &str, kind: ScheduleType, value: &str, tz: &str) -> Task {
        let now = self.now();
        let req = NewTask {
            id: Some(TaskId::parse(id).unwrap()),
            group_folder: FolderName::parse("main").unwrap(),
            chat_jid: Jid::parse(MAIN_JID).unwrap(),
            prompt: format!("prompt of {id}"),
            schedule_type: kind,
            schedule_value: value.into(),
            context_mode: ContextMode::Group,
            timezone: Some(tz.parse::<Tz>().unwrap()),
        };
        let t = self
            .store
            .call(move |s| s.write(|tx| actions::create_task(tx, req, "test", Tz::UTC, now)))
            .await
            .unwrap();
        self.changed().await;
        t
    }

    /// Tells the scheduler tasks changed (as IPC or the control watcher would) and
    /// waits for the pass that follows.
    async fn changed(&self) {
        if let Some(h) = &self.handle {
            let n = h.status().passes;
            self.topics.send(Topic::Tasks).unwrap();
            h.settled_after(n).await;
        }
    }

    /// Moves the clock to `t`; if that reaches the scheduler's wake time, waits for
    /// its pass. Returns the runs handed over.
    async fn set(&self, t: DateTime<Utc>) -> Vec<DueRun> {
        let s = self.h().status();
        self.clock.set(t);
        if s.next_wake.is_some_and(|w| w <= t) {
            self.h().settled_after(s.passes).await;
        }
        self.sink.take()
    }

    /// Jumps to the scheduler's next wake time; returns it and the runs handed over.
    async fn step(&self) -> (DateTime<Utc>, Vec<DueRun>) {
        let t = self
            .h()
            .status()
            .next_wake
            .expect("the scheduler has a next wake");
        (t, self.set(t).await)
    }

    /// Steps `n` times, completing every run successfully at once; the due times.
    async fn fire_times(&self, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = vec![];
        while out.len() < n {
            let (_, got) = self.step().await;
            for r in got {
                out.push(r.due_at);
                self.complete(
                    r.run_id,
                    RunOutcome::Success {
                        result: "ok".into(),
                    },
                )
                .await;
            }
        }
        out
    }

    async fn complete(&self, run_id: i64, outcome: RunOutcome) -> Completion {
        let now = self.now();
        self.store
            .call(move |s| s.write(|tx| runs::complete(tx, run_id, &outcome, now)))
            .await
            .unwrap()
    }

    async fn task(&self, id: &str) -> Option<Task> {
        let id = TaskId::parse(id).unwrap();
        self.store
            .call(move |s| tasks::get(s.conn(), &id))
            .await
            .unwrap()
    }

    /// A task's runs, oldest first.
    async fn runs(&self, id: &str) -> Vec<TaskRun> {
        let id = TaskId::parse(id).unwrap();
        let mut r = self
            .store
            .call(move |s| tasks::runs(s.conn(), &id, 10_000))
            .await
            .unwrap();
        r.reverse();
        r
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, actions::ActionError> + Send + 'static,
    ) -> T {
        let t = self.store.call(move |s| s.write(f)).await.unwrap();
        self.changed().await;
        t
    }
}

fn tid(s: &str) -> TaskId {
    TaskId::parse(s).unwrap()
}

#[tokio::test]
async fn weekday_range_fires_monday_to_friday_at_nine_local_across_dst() {
    let tz: Tz = "America/New_York".parse().unwrap();
    // Thursday 2026-03-05; DST starts Sunday 2026-03-08.
    let mut h = Harness::new(utc("2026-03-05T00:00:00Z"));
    h.start().await;
    h.create(
        "weekdays",
        ScheduleType::Cron,
        "0 9 * * 1-5",
        "America/New_York",
    )
    .await;
    let got = h.fire_times(8).await;
    let days: Vec<Weekday> = got.iter().map(|t| t.with_timezone(&tz).weekday()).collect();
    use Weekday::*;
    assert_eq!(days, [Thu, Fri, Mon, Tue, Wed, Thu, Fri, Mon]);
    for t in &got {
        let local = t.with_timezone(&tz);
        assert_eq!(
            (local.hour(), local.minute(), local.second()),
            (9, 0, 0),
            "{local}"
        );
    }
    assert_eq!(got[1], utc("2026-03-06T14:00:00Z"), "09:00 EST");
    assert_eq!(got[2], utc("2026-03-09T13:00:00Z"), "09:00 EDT");
    assert_eq!(h.runs("weekdays").await.len(), 8);
}

#[tokio::test]
async fn day_of_month_and_day_of_week_follow_the_crontab_or_rule() {
    // April 2026: Fridays 3, 10, 17, 24; the 13th is a Monday.
    let mut h = Harness::new(utc("2026-04-01T00:00:00Z"));
    h.start().await;
    h.create("or-rule", ScheduleType::Cron, "0 9 13 4 FRI", "UTC")
        .await;
    let got = h.fire_times(6).await;
    let want: Vec<DateTime<Utc>> = [
        "2026-04-03",
        "2026-04-10",
        "2026-04-13",
        "2026-04-17",
        "2026-04-24",
        // The month field restricts both: next April, first Friday (2 April 2027).
        "2027-04-02",
    ]
    .iter()
    .map(|d| utc(&format!("{d}T09:00:00Z")))
    .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn new_york_spring_forward_and_fall_back() {
    let mut h = Harness::new(utc("2026-03-07T00:00:00Z"));
    h.start().await;
    // 02:30 does not exist on 8 March: it runs once, at the end of the gap (03:00 EDT).
    h.create("gap", ScheduleType::Cron, "30 2 * * *", "America/New_York")
        .await;
    assert_eq!(
        h.fire_times(3).await,
        [
            utc("2026-03-07T07:30:00Z"), // 02:30 EST
            utc("2026-03-08T07:00:00Z"), // 03:00 EDT
            utc("2026-03-09T06:30:00Z"), // 02:30 EDT
        ]
    );
    h.write(|tx| actions::cancel_task(tx, &tid("gap"))).await;

    // 01:30 happens twice on 1 November: it runs once, at the first.
    h.set(utc("2026-10-31T00:00:00Z")).await;
    h.create(
        "overlap",
        ScheduleType::Cron,
        "30 1 * * *",
        "America/New_York",
    )
    .await;
    assert_eq!(
        h.fire_times(3).await,
        [
            utc("2026-10-31T05:30:00Z"), // 01:30 EDT
            utc("2026-11-01T05:30:00Z"), // 01:30 EDT, not again at 01:30 EST
            utc("2026-11-02T06:30:00Z"), // 01:30 EST
        ]
    );
}

#[tokio::test]
async fn berlin_spring_forward_and_fall_back_and_intervals_ignore_dst() {
    let mut h = Harness::new(utc("2026-03-28T12:00:00Z"));
    h.start().await;
    h.create("gap", ScheduleType::Cron, "30 2 * * *", "Europe/Berlin")
        .await;
    // Hourly interval across the change: always 3600 s apart in real time.
    h.create("hourly", ScheduleType::Interval, "3600000", "Europe/Berlin")
        .await;
    let mut gap = vec![];
    let mut hourly = vec![];
    while gap.len() < 2 {
        let (_, got) = h.step().await;
        for r in got {
            if r.task.id.as_str() == "gap" {
                gap.push(r.due_at);
            } else {
                hourly.push(r.due_at);
            }
            h.complete(
                r.run_id,
                RunOutcome::Success {
                    result: "ok".into(),
                },
            )
            .await;
        }
    }
    assert_eq!(
        gap,
        [utc("2026-03-29T01:00:00Z"), utc("2026-03-30T00:30:00Z")],
        "03:00 CEST after the gap, then 02:30 CEST"
    );
    assert!(hourly.len() > 30);
    for w in hourly.windows(2) {
        assert_eq!(w[1] - w[0], Duration::hours(1));
    }
    h.write(|tx| actions::cancel_task(tx, &tid("gap"))).await;
    h.write(|tx| actions::cancel_task(tx, &tid("hourly"))).await;

    h.set(utc("2026-10-24T12:00:00Z")).await;
    h.create("overlap", ScheduleType::Cron, "30 2 * * *", "Europe/Berlin")
        .await;
    assert_eq!(
        h.fire_times(3).await,
        [
            utc("2026-10-25T00:30:00Z"), // 02:30 CEST, once (not again at 02:30 CET)
            utc("2026-10-26T01:30:00Z"), // 02:30 CET
            utc("2026-10-27T01:30:00Z"),
        ]
    );
}

#[tokio::test]
async fn intervals_stay_anchored_and_a_run_in_flight_is_never_started_twice() {
    let t0 = utc("2026-06-01T10:00:00Z");
    let mut h = Harness::new(t0);
    h.start().await;
    h.create("slow", ScheduleType::Interval, "10000", "UTC")
        .await;
    let s = |n: i64| t0 + Duration::seconds(n);

    let (at, first) = h.step().await;
    assert_eq!((at, first.len()), (s(10), 1));
    let first = &first[0];
    assert_eq!(first.task.next_run, Some(s(20)));
    // The run is slow: at 20 and 30 it is still in flight, so those are skipped.
    assert!(h.set(s(20)).await.is_empty());
    assert!(h.set(s(30)).await.is_empty());
    assert_eq!(h.h().status().skipped, 2);
    h.set(s(35)).await;
    h.complete(
        first.run_id,
        RunOutcome::Success {
            result: "done".into(),
        },
    )
    .await;
    // Anchored: the next run is at 40, not 35 + 10 = 45.
    let (at, second) = h.step().await;
    assert_eq!((at, second[0].due_at), (s(40), s(40)));
    h.complete(
        second[0].run_id,
        RunOutcome::Success {
            result: "done".into(),
        },
    )
    .await;
    // A late wake (the machine was busy) still keeps the anchor.
    let third = h.set(s(51) + Duration::milliseconds(500)).await;
    assert_eq!(third[0].due_at, s(50));
    assert_eq!(third[0].task.next_run, Some(s(60)));

    let log = h.runs("slow").await;
    let statuses: Vec<RunStatus> = log.iter().map(|r| r.status).collect();
    use RunStatus::*;
    // The two skipped occurrences are counted on the run that blocked them.
    assert_eq!(statuses, [Success, Success, Running]);
    assert_eq!(log[0].duration_ms, Some(25_000));
    assert_eq!((log[0].skipped, log[1].skipped, log[2].skipped), (2, 0, 0));
    let task = h.task("slow").await.unwrap();
    assert_eq!(task.last_run, Some(s(51) + Duration::milliseconds(500)));
}

#[tokio::test]
async fn once_success_completes_and_failure_fails() {
    let t0 = utc("2026-06-01T10:00:00Z");
    let mut h = Harness::new(t0);
    h.start().await;
    h.create("ok", ScheduleType::Once, "2026-06-01T11:00:00Z", "UTC")
        .await;
    h.create(
        "bad",
        ScheduleType::Once,
        "2026-06-01T12:00:00+00:00",
        "UTC",
    )
    .await;

    let (_, got) = h.step().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.next_run, None);
    assert_eq!(
        h.complete(
            got[0].run_id,
            RunOutcome::Success {
                result: "all good".into()
            }
        )
        .await,
        Completion::Recorded {
            task_status: TaskStatus::Completed
        }
    );
    let (_, got) = h.step().await;
    assert_eq!(
        h.complete(
            got[0].run_id,
            RunOutcome::Error {
                error: "codex: login required".into()
            }
        )
        .await,
        Completion::Recorded {
            task_status: TaskStatus::Failed
        }
    );
    // Nothing left to wake for.
    assert_eq!(h.h().status().next_wake, None);

    let ok = h.task("ok").await.unwrap();
    assert_eq!(
        (ok.status, ok.last_result.as_deref()),
        (TaskStatus::Completed, Some("all good"))
    );
    let bad = h.task("bad").await.unwrap();
    assert_eq!(bad.status, TaskStatus::Failed);
    assert_eq!(
        bad.last_result.as_deref(),
        Some("error: codex: login required")
    );
    let run = &h.runs("bad").await[0];
    assert_eq!(run.status, RunStatus::Error);
    assert_eq!(run.error.as_deref(), Some("codex: login required"));
    // A duplicate completion changes nothing.
    assert_eq!(
        h.complete(
            run.run_id,
            RunOutcome::Success {
                result: "late".into()
            }
        )
        .await,
        Completion::AlreadyFinished
    );
    assert_eq!(h.task("bad").await.unwrap().status, TaskStatus::Failed);
}

#[tokio::test]
async fn paused_tasks_do_not_run_and_resume_counts_from_now() {
    let t0 = utc("2026-06-01T10:00:00Z");
    let mut h = Harness::new(t0);
    h.start().await;
    h.create("p", ScheduleType::Interval, "60000", "UTC").await;
    assert_eq!(h.h().status().next_wake, Some(t0 + Duration::minutes(1)));
    h.write(|tx| actions::pause_task(tx, &tid("p"))).await;
    assert_eq!(
        h.h().status().next_wake,
        None,
        "a paused task has no wake-up"
    );
    // An hour passes; a forced pass finds nothing to run.
    h.set(t0 + Duration::hours(1)).await;
    h.changed().await;
    assert!(h.sink.take().is_empty());
    assert!(h.runs("p").await.is_empty());

    let now = h.now();
    h.write(move |tx| actions::resume_task(tx, &tid("p"), now))
        .await;
    let (at, got) = h.step().await;
    assert_eq!(at, now + Duration::minutes(1), "recomputed from the resume");
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn cancelling_a_task_during_its_run_neither_fails_nor_resurrects_it() {
    let t0 = utc("2026-06-01T10:00:00Z");
    let mut h = Harness::new(t0);
    h.start().await;
    h.create("c", ScheduleType::Interval, "60000", "UTC").await;
    let (_, got) = h.step().await;
    let run = got[0].clone();
    h.write(|tx| actions::cancel_task(tx, &tid("c"))).await;
    assert_eq!(h.h().status().next_wake, None);
    for outcome in [
        RunOutcome::Success { result: "x".into() },
        RunOutcome::Error { error: "y".into() },
        RunOutcome::Interrupted,
    ] {
        assert_eq!(h.complete(run.run_id, outcome).await, Completion::TaskGone);
    }
    assert!(h.task("c").await.is_none());
    assert!(h.runs("c").await.is_empty());
    // The async entry point the queue uses says the same.
    assert_eq!(
        rust_claw::scheduler::complete(&h.store, run.run_id, RunOutcome::Interrupted)
            .await
            .unwrap(),
        Completion::TaskGone
    );
}

#[tokio::test]
async fn a_restart_fires_overdue_tasks_once_then_continues_from_now() {
    let t0 = utc("2026-06-01T10:00:00Z");
    let mut h = Harness::new(t0);
    h.start().await;
    h.create("every-min", ScheduleType::Interval, "60000", "UTC")
        .await;
    h.create("quarter", ScheduleType::Cron, "*/15 * * * *", "UTC")
        .await;
    h.create("once", ScheduleType::Once, "2026-06-01T10:30:00Z", "UTC")
        .await;
    h.stop().await;

    // Down for three hours: 180 minute-runs, 12 quarter-hours and the once were missed.
    let restart = t0 + Duration::hours(3) + Duration::seconds(20);
    h.clock.set(restart);
    h.start().await;
    let mut got = h.sink.take();
    got.sort_by(|a, b| a.task.id.cmp(&b.task.id));
    type Row<'a> = (&'a str, DateTime<Utc>, Option<DateTime<Utc>>);
    let summary: Vec<Row> = got
        .iter()
        .map(|r| (r.task.id.as_str(), r.due_at, r.task.next_run))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "every-min",
                t0 + Duration::minutes(1),
                Some(t0 + Duration::minutes(181))
            ),
            ("once", utc("2026-06-01T10:30:00Z"), None),
            (
                "quarter",
                utc("2026-06-01T10:15:00Z"),
                Some(utc("2026-06-01T13:15:00Z"))
            ),
        ],
        "each overdue task fired once; intervals keep their anchor"
    );
    for r in &got {
        assert_eq!(r.started_at, restart);
        h.complete(
            r.run_id,
            RunOutcome::Success {
                result: "ok".into(),
            },
        )
        .await;
    }
    let (at, next) = h.step().await;
    assert_eq!((at, next.len()), (t0 + Duration::minutes(181), 1));
    assert_eq!(h.runs("every-min").await.len(), 2);
    assert_eq!(h.runs("quarter").await.len(), 1);
}

#[tokio::test]
async fn a_run_in_flight_at_a_crash_is_marked_interrupted_and_not_replayed() {
    let t0 = utc("2026-06-01T10:00:00Z");
    let mut h = Harness::new(t0);
    h.start().await;
    h.create("rec", ScheduleType::Interval, "600000", "UTC")
        .await;
    h.create("one", ScheduleType::Once, "2026-06-01T10:10:00Z", "UTC")
        .await;
    let (_, got) = h.step().await;
    assert_eq!(got.len(), 2);
    // The process "dies" with both runs in flight: the sink never completes them.
    h.stop().await;
    h.clock.advance(Duration::minutes(1));
    h.start().await;
    assert_eq!(h.h().status().interrupted_at_start, 2);
    assert!(h.sink.take().is_empty(), "nothing is replayed");
    let rec = h.task("rec").await.unwrap();
    assert_eq!(rec.status, TaskStatus::Active);
    assert_eq!(
        rec.next_run,
        Some(t0 + Duration::minutes(20)),
        "next run intact"
    );
    assert!(rec.last_result.unwrap().starts_with("interrupted:"));
    let one = h.task("one").await.unwrap();
    assert_eq!(one.status, TaskStatus::Failed);
    for id in ["rec", "one"] {
        let log = h.runs(id).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].status, RunStatus::Interrupted);
        assert_eq!(log[0].error.as_deref(), Some(INTERRUPTED_BY_RESTART));
    }
    // The recurring task goes on at its next time.
    let (at, got) = h.step().await;
    assert_eq!((at, got.len()), (t0 + Duration::minutes(20), 1));
}

#[tokio::test]
async fn changes_wake_the_scheduler_and_a_backlog_is_claimed_in_batches() {
    let t0 = utc("2026-06-01T10:00:00Z");
    let mut h = Harness::new(t0);
    h.start().await;
    let first = h.h().status();
    assert_eq!(
        first.next_wake, None,
        "no tasks: sleep with no timer at all"
    );
    h.create("late", ScheduleType::Interval, "3600000", "UTC")
        .await;
    assert_eq!(h.h().status().next_wake, Some(t0 + Duration::hours(1)));
    h.create("soon", ScheduleType::Interval, "5000", "UTC")
        .await;
    assert_eq!(h.h().status().next_wake, Some(t0 + Duration::seconds(5)));

    // 1,200 tasks due at the same instant: more than one claiming batch.
    let now = h.now();
    h.write(move |tx| {
        for i in 0..1200 {
            let req = NewTask {
                id: Some(TaskId::parse(&format!("bulk-{i:04}")).unwrap()),
                group_folder: FolderName::parse("main").unwrap(),
                chat_jid: Jid::parse(MAIN_JID).unwrap(),
                prompt: "bulk".into(),
                schedule_type: ScheduleType::Interval,
                schedule_value: "2000".into(),
                context_mode: ContextMode::Isolated,
                timezone: None,
            };
            actions::create_task(tx, req, "test", Tz::UTC, now)?;
        }
        Ok(())
    })
    .await;
    let (at, got) = h.step().await;
    assert_eq!(at, t0 + Duration::seconds(2));
    assert_eq!(got.len(), 1200);
    let mut ids: Vec<&str> = got.iter().map(|r| r.task.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1200, "each task handed over exactly once");
    assert!(
        got.iter()
            .all(|r| r.task.context_mode == ContextMode::Isolated)
    );
    assert_eq!(h.h().status().next_wake, Some(t0 + Duration::seconds(4)));
}
