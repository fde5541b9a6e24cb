//! The scheduler's transactions: claiming due runs, finishing them, and recovering
//! from a crash. Synchronous functions over the store, so they are easy to test and
//! the callers decide the transaction (the async loop in `mod.rs` is a thin shell).
//!
//! The exactly-once rule lives here. A run exists from the moment its `running` row
//! commits, and that commit also advances the task's `next_run` — so a due
//! occurrence is either not claimed yet (and will be), or claimed (and never will be
//! again), whatever happens to the process afterwards.

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::model::{ScheduleType, TaskStatus};
use crate::recurrence::Schedule;
use crate::store::tasks::{self, RunStatus, Task, bounded};
use crate::store::{Store, StoreError, groups};

/// A claimed run, handed to the group queue: everything it needs to run the task
/// (group folder, chat, prompt, context mode are all in `task`).
#[derive(Debug, Clone, PartialEq)]
pub struct DueRun {
    /// The run-log row, `running` until [`complete`] finishes it.
    pub run_id: i64,
    /// The task as it stood when the run was claimed (`next_run` already advanced,
    /// `last_run` = `started_at`).
    pub task: Task,
    /// The scheduled time this run is for.
    pub due_at: DateTime<Utc>,
    /// When the scheduler claimed it.
    pub started_at: DateTime<Utc>,
}

/// How a run ended, as the group queue reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The agent's turn completed; `result` is its final text (stored bounded).
    Success { result: String },
    /// The turn failed, or could not start (the message is shown to the user in
    /// `task-runs` and `last_result`).
    Error { error: String },
    /// The daemon stopped the run (shutdown) before it finished.
    Interrupted,
}

/// What [`complete`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The run log is finished and the task updated; the task's status afterwards.
    Recorded { task_status: TaskStatus },
    /// The task was cancelled (deleted with its run log) while the run was in
    /// flight: nothing to record, and nothing is recreated.
    TaskGone,
    /// The run was already finished (a duplicate completion): nothing changed.
    AlreadyFinished,
}

/// The error recorded for runs found in flight at start-up.
pub const INTERRUPTED_BY_RESTART: &str = "the daemon stopped while this run was in flight (crash, kill or power loss); it was not re-run";

/// The error recorded for runs stopped by a clean shutdown.
pub(crate) const INTERRUPTED_BY_SHUTDOWN: &str =
    "the daemon shut down before this run finished; it was not re-run";

/// An occurrence skipped because the task's previous run was still in flight.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SkippedRun {
    pub(crate) task_id: crate::model::TaskId,
    pub due_at: DateTime<Utc>,
    /// The run still in flight.
    pub(crate) blocking_run_id: i64,
}

/// The result of one claiming transaction.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// Claimed runs, to hand to the queue in this order (earliest due first).
    pub(crate) runs: Vec<DueRun>,
    pub(crate) skipped: Vec<SkippedRun>,
    /// Tasks whose stored schedule could not be read; marked `failed`.
    pub(crate) broken: usize,
    /// The earliest `next_run` of an active task after this pass.
    pub(crate) next_wake: Option<DateTime<Utc>>,
    /// The batch limit was reached: more tasks may be due right now.
    pub(crate) more: bool,
}

/// Claims every active task due at `now` (at most `limit`), in ONE transaction:
/// a `running` run-log row, `last_run = now`, and `next_run` advanced with
/// [`Schedule::next_after_run`] (anchored intervals; an overdue task fires once and
/// continues from now — no catch-up burst). A task whose previous run is still in
/// flight gets a `skipped` row instead and moves on to its next time.
pub(crate) fn claim_due(
    store: &mut Store,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Pass, StoreError> {
    store.write(|tx| claim_due_in(tx, now, limit))
}

fn claim_due_in(conn: &Connection, now: DateTime<Utc>, limit: usize) -> Result<Pass, StoreError> {
    let due = tasks::due(conn, now, limit)?;
    let mut pass = Pass {
        more: due.len() == limit,
        ..Pass::default()
    };
    for mut task in due {
        let Some(due_at) = task.next_run else {
            continue;
        };
        if groups::get_by_folder(conn, &task.group_folder)?.is_none() {
            // Never run for a group that is not registered: pause (once, logged once).
            tracing::warn!(task = %task.id, group = %task.group_folder, "task of an unregistered group paused instead of run");
            task.status = TaskStatus::Paused;
            tasks::update(conn, &task)?;
            continue;
        }
        let next = match next_after(&task, due_at, now) {
            Ok(next) => next,
            Err(reason) => {
                tracing::error!(task = %task.id, %reason, "task schedule unreadable; marking the task failed");
                task.status = TaskStatus::Failed;
                task.next_run = None;
                task.last_result = bounded(Some(&format!("error: {reason}")));
                tasks::update(conn, &task)?;
                pass.broken += 1;
                continue;
            }
        };
        task.next_run = next;
        if let Some(blocking) = tasks::in_flight_run(conn, &task.id)? {
            tasks::count_skipped(conn, blocking)?;
            tasks::update(conn, &task)?;
            pass.skipped.push(SkippedRun {
                task_id: task.id.clone(),
                due_at,
                blocking_run_id: blocking,
            });
            continue;
        }
        let run_id = tasks::start_run(conn, &task.id, due_at, now)?;
        task.last_run = Some(now);
        tasks::update(conn, &task)?;
        pass.runs.push(DueRun {
            run_id,
            task,
            due_at,
            started_at: now,
        });
    }
    pass.next_wake = tasks::earliest_due(conn)?;
    Ok(pass)
}

/// The task's next time after the occurrence due at `due_at`, claimed at `now`.
fn next_after(
    task: &Task,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    if task.schedule_type == ScheduleType::Once {
        // A once task runs once; parsing it again would refuse its (now past) time.
        return Ok(None);
    }
    let schedule = Schedule::parse(task.schedule_type, &task.schedule_value, task.timezone, now)
        .map_err(|e| format!("its schedule cannot be read any more: {e}"))?;
    Ok(schedule.next_after_run(task.timezone, due_at, now))
}

/// Finishes run `run_id` with `outcome`, inside the caller's transaction (so the
/// queue can commit the run's reply to the outbox and its completion together):
/// the run-log row (status, duration, bounded result or error), the task's
/// `last_result`, and for a once task its final status — `completed` after success,
/// `failed` after an error or interruption (never "completed").
///
/// A task cancelled during the run is gone with its run log: that is reported as
/// [`Completion::TaskGone`], not an error, and nothing is recreated. A second
/// completion of the same run changes nothing.
pub fn complete(
    conn: &Connection,
    run_id: i64,
    outcome: &RunOutcome,
    now: DateTime<Utc>,
) -> Result<Completion, StoreError> {
    let Some(run) = tasks::get_run(conn, run_id)? else {
        return Ok(Completion::TaskGone);
    };
    if run.status != RunStatus::Running {
        return Ok(Completion::AlreadyFinished);
    }
    let (status, result, error, summary) = match outcome {
        RunOutcome::Success { result } => (
            RunStatus::Success,
            Some(result.as_str()),
            None,
            result.clone(),
        ),
        RunOutcome::Error { error } => (
            RunStatus::Error,
            None,
            Some(error.as_str()),
            format!("error: {error}"),
        ),
        RunOutcome::Interrupted => (
            RunStatus::Interrupted,
            None,
            Some(INTERRUPTED_BY_SHUTDOWN),
            format!("interrupted: {INTERRUPTED_BY_SHUTDOWN}"),
        ),
    };
    tasks::finish_run(conn, run_id, status, now, result, error)?;
    let Some(mut task) = tasks::get(conn, &run.task_id)? else {
        // Unreachable while the foreign key cascades; harmless if it does not.
        return Ok(Completion::TaskGone);
    };
    task.last_result = bounded(Some(&summary));
    settle_once(&mut task, status == RunStatus::Success);
    tasks::update(conn, &task)?;
    Ok(Completion::Recorded {
        task_status: task.status,
    })
}

/// A once task whose run ended is `completed` (success) or `failed` — unless it was
/// rescheduled while the run was in flight (it has a `next_run` again), or already
/// ended by an admin.
fn settle_once(task: &mut Task, success: bool) {
    if task.schedule_type == ScheduleType::Once
        && task.next_run.is_none()
        && matches!(task.status, TaskStatus::Active | TaskStatus::Paused)
    {
        task.status = if success {
            TaskStatus::Completed
        } else {
            TaskStatus::Failed
        };
    }
}

/// A run found `running` at start-up, now marked `interrupted`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Interrupted {
    pub(crate) run_id: i64,
    pub(crate) task_id: crate::model::TaskId,
    /// The task's status afterwards (`failed` for a once task).
    pub(crate) task_status: Option<TaskStatus>,
}

/// Start-up recovery, before the first claim. Runs still `running` belonged to a
/// daemon that died mid-run (only one daemon runs per root): they are marked
/// `interrupted` and NOT re-run — the agent may already have acted (sent messages,
/// written files), and replaying could do it twice. Recurring tasks keep their
/// `next_run` (advanced when the run was claimed); a once task becomes `failed`
/// with the reason in `last_result`.
pub(crate) fn recover_interrupted(
    store: &mut Store,
    now: DateTime<Utc>,
) -> Result<Vec<Interrupted>, StoreError> {
    store.write(|tx| {
        let mut out = vec![];
        for (run_id, task_id) in tasks::running_runs(tx)? {
            tasks::interrupt_run(tx, run_id, now, INTERRUPTED_BY_RESTART)?;
            let task_status = match tasks::get(tx, &task_id)? {
                Some(mut task) => {
                    task.last_result =
                        bounded(Some(&format!("interrupted: {INTERRUPTED_BY_RESTART}")));
                    settle_once(&mut task, false);
                    tasks::update(tx, &task)?;
                    Some(task.status)
                }
                None => None,
            };
            out.push(Interrupted {
                run_id,
                task_id,
                task_status,
            });
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{self, NewTask, RegisterGroup, TaskUpdate};
    use crate::model::{ContextMode, FolderName, Jid, TaskId};
    use chrono::{Duration, TimeZone};
    use chrono_tz::Tz;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap()
    }

    fn setup(kind: ScheduleType, value: &str) -> (tempfile::TempDir, Store, TaskId) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        let id = store
            .write(|tx| {
                actions::register_group(
                    tx,
                    RegisterGroup::main(
                        Jid::parse("1@discord").unwrap(),
                        "Main",
                        FolderName::parse("main").unwrap(),
                    ),
                    "@Andy",
                    t0(),
                )?;
                let req = NewTask {
                    id: None,
                    group_folder: FolderName::parse("main").unwrap(),
                    chat_jid: Jid::parse("1@discord").unwrap(),
                    prompt: "p".into(),
                    schedule_type: kind,
                    schedule_value: value.into(),
                    context_mode: ContextMode::Group,
                    timezone: None,
                };
                actions::create_task(tx, req, "test", Tz::UTC, t0()).map(|t| t.id)
            })
            .unwrap();
        (dir, store, id)
    }

    #[test]
    fn a_task_of_an_unregistered_group_is_paused_never_run() {
        let (_d, mut store, id) = setup(ScheduleType::Interval, "60000");
        // The group row goes without unregister-group's pausing (an old database, or
        // another writer): the scheduler still never runs the task.
        store
            .conn()
            .execute("DELETE FROM registered_groups", [])
            .unwrap();
        let pass = claim_due(&mut store, t0() + Duration::hours(1), 10).unwrap();
        assert!(pass.runs.is_empty());
        let task = tasks::get(store.conn(), &id).unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Paused);
        assert_eq!(pass.next_wake, None);
    }

    #[test]
    fn an_unreadable_schedule_fails_the_task_instead_of_looping() {
        let (_d, mut store, id) = setup(ScheduleType::Cron, "0 9 * * *");
        store
            .conn()
            .execute("UPDATE scheduled_tasks SET schedule_value = 'garbage'", [])
            .unwrap();
        let pass = claim_due(&mut store, t0() + Duration::days(1), 10).unwrap();
        assert_eq!((pass.runs.len(), pass.broken, pass.next_wake), (0, 1, None));
        let task = tasks::get(store.conn(), &id).unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Failed);
        assert!(task.last_result.unwrap().contains("schedule_value"));
    }

    #[test]
    fn a_once_task_rescheduled_during_its_run_is_not_ended_by_that_run() {
        let (_d, mut store, id) = setup(ScheduleType::Once, "2026-06-01T11:00:00Z");
        let pass = claim_due(&mut store, t0() + Duration::hours(1), 10).unwrap();
        let run = pass.runs[0].run_id;
        let later = t0() + Duration::hours(1);
        let changes = TaskUpdate {
            schedule_value: Some("2026-06-02T09:00:00Z".into()),
            ..Default::default()
        };
        store
            .write(|tx| actions::update_task(tx, &id, changes, later))
            .unwrap();
        let done = store
            .write(|tx| complete(tx, run, &RunOutcome::Interrupted, later))
            .unwrap();
        assert_eq!(
            done,
            Completion::Recorded {
                task_status: TaskStatus::Active
            }
        );
        let task = tasks::get(store.conn(), &id).unwrap().unwrap();
        assert_eq!(
            task.next_run,
            Some(Utc.with_ymd_and_hms(2026, 6, 2, 9, 0, 0).unwrap())
        );
        assert_eq!(
            tasks::get_run(store.conn(), run).unwrap().unwrap().status,
            RunStatus::Interrupted
        );
    }

    #[test]
    fn results_are_bounded_in_the_log_and_last_result() {
        let (_d, mut store, id) = setup(ScheduleType::Interval, "1000");
        let pass = claim_due(&mut store, t0() + Duration::seconds(1), 10).unwrap();
        let huge = "x".repeat(100_000);
        store
            .write(|tx| {
                complete(
                    tx,
                    pass.runs[0].run_id,
                    &RunOutcome::Success { result: huge },
                    t0() + Duration::seconds(2),
                )
            })
            .unwrap();
        let task = tasks::get(store.conn(), &id).unwrap().unwrap();
        assert!(task.last_result.unwrap().len() <= tasks::MAX_RUN_TEXT + 3);
        let run = &tasks::runs(store.conn(), &id, 1).unwrap()[0];
        assert!(run.result.as_ref().unwrap().len() <= tasks::MAX_RUN_TEXT + 3);
        assert_eq!(run.duration_ms, Some(1000));
    }
}
