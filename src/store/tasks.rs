//! Scheduled tasks and their run logs.

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::{Result, from_ms, parse_col, to_ms};
use crate::model::{ContextMode, FolderName, Jid, ScheduleType, TaskId, TaskStatus};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub id: TaskId,
    pub(crate) group_folder: FolderName,
    pub(crate) chat_jid: Jid,
    pub prompt: String,
    pub(crate) schedule_type: ScheduleType,
    pub(crate) schedule_value: String,
    pub context_mode: ContextMode,
    #[serde(serialize_with = "ser_tz")]
    pub(crate) timezone: Tz,
    #[serde(serialize_with = "super::rfc3339::option::serialize")]
    pub next_run: Option<DateTime<Utc>>,
    #[serde(serialize_with = "super::rfc3339::option::serialize")]
    pub last_run: Option<DateTime<Utc>>,
    pub last_result: Option<String>,
    pub status: TaskStatus,
    pub(crate) created_by: String,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub(crate) created_at: DateTime<Utc>,
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

const COLUMNS: &str = "id, group_folder, chat_jid, prompt, schedule_type, schedule_value, context_mode, \
     timezone, next_run, last_run, last_result, status, created_by, created_at";

// Columns are read by position (the order of COLUMNS): looking them up by name costs
// more than the rest of the row's decoding.
fn from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: parse_col(row, 0, TaskId::parse)?,
        group_folder: parse_col(row, 1, FolderName::parse)?,
        chat_jid: parse_col(row, 2, Jid::parse)?,
        prompt: row.get(3)?,
        schedule_type: parse_col(row, 4, ScheduleType::parse)?,
        schedule_value: row.get(5)?,
        context_mode: parse_col(row, 6, ContextMode::parse)?,
        timezone: parse_col(row, 7, |s| s.parse::<Tz>())?,
        next_run: row.get::<_, Option<i64>>(8)?.map(from_ms),
        last_run: row.get::<_, Option<i64>>(9)?.map(from_ms),
        last_result: row.get(10)?,
        status: parse_col(row, 11, TaskStatus::parse)?,
        created_by: row.get(12)?,
        created_at: from_ms(row.get(13)?),
    })
}

pub(crate) fn insert(conn: &Connection, t: &Task) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO scheduled_tasks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
            t.id.as_str(),
            t.group_folder.as_str(),
            t.chat_jid.to_string(),
            t.prompt,
            t.schedule_type.as_str(),
            t.schedule_value,
            t.context_mode.as_str(),
            t.timezone.name(),
            t.next_run.map(to_ms),
            t.last_run.map(to_ms),
            t.last_result,
            t.status.as_str(),
            t.created_by,
            to_ms(t.created_at),
    ])?;
    Ok(())
}

/// Rewrites every mutable column of an existing task (by id); returns whether it existed.
pub fn update(conn: &Connection, t: &Task) -> Result<bool> {
    let n = conn.execute(
        "UPDATE scheduled_tasks SET prompt = ?2, schedule_type = ?3, schedule_value = ?4, context_mode = ?5,
             timezone = ?6, next_run = ?7, last_run = ?8, last_result = ?9, status = ?10
         WHERE id = ?1",
        params![
            t.id.as_str(),
            t.prompt,
            t.schedule_type.as_str(),
            t.schedule_value,
            t.context_mode.as_str(),
            t.timezone.name(),
            t.next_run.map(to_ms),
            t.last_run.map(to_ms),
            t.last_result,
            t.status.as_str(),
        ],
    )?;
    Ok(n > 0)
}

pub fn get(conn: &Connection, id: &TaskId) -> Result<Option<Task>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM scheduled_tasks WHERE id = ?1"
        ))?
        .query_row([id.as_str()], from_row)
        .optional()?)
}

/// Tasks, optionally only one group's and/or one status, ordered by next run then id.
pub fn list(
    conn: &Connection,
    group: Option<&FolderName>,
    status: Option<TaskStatus>,
) -> Result<Vec<Task>> {
    let mut all = Vec::new();
    for_each(conn, group, status, |t| {
        all.push(t);
        ControlFlow::Continue(())
    })?;
    Ok(all)
}

/// [`list`] one task at a time, for callers that stream (the CLI's `--json`), so a
/// long listing is never all in memory. `f` returns `Break` to stop early.
///
/// Order: tasks without a next run last, then by next run, then by id (byte order).
/// The `scheduled_tasks_listing` index (migration 3) has exactly that order, so SQLite
/// walks it instead of sorting every row into a temporary b-tree.
pub(crate) fn for_each(
    conn: &Connection,
    group: Option<&FolderName>,
    status: Option<TaskStatus>,
    mut f: impl FnMut(Task) -> ControlFlow<()>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM scheduled_tasks INDEXED BY scheduled_tasks_listing
         WHERE (?1 IS NULL OR group_folder = ?1) AND (?2 IS NULL OR status = ?2)
         ORDER BY next_run IS NULL, next_run, id"
    ))?;
    let mut rows = stmt.query(params![
        group.map(|g| g.as_str()),
        status.map(|s| s.as_str())
    ])?;
    while let Some(row) = rows.next()? {
        if f(from_row(row)?).is_break() {
            break;
        }
    }
    Ok(())
}

/// One group's tasks, in no particular order (walks the `scheduled_tasks_group` index,
/// so the cost is the group's tasks, not every task).
pub fn of_group(conn: &Connection, group: &FolderName) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM scheduled_tasks WHERE group_folder = ?1"
    ))?;
    let rows = stmt.query_map([group.as_str()], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every group folder that has at least one task (registered or not).
pub fn folders(conn: &Connection) -> Result<Vec<FolderName>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT group_folder FROM scheduled_tasks")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(parse_col(row, 0, FolderName::parse)?);
    }
    Ok(out)
}

/// Deletes a task and (by cascade) its run log; returns whether it existed.
pub(crate) fn delete(conn: &Connection, id: &TaskId) -> Result<bool> {
    Ok(conn.execute("DELETE FROM scheduled_tasks WHERE id = ?1", [id.as_str()])? > 0)
}

/// Pauses every active task of `folder`; returns how many.
pub(crate) fn pause_group(conn: &Connection, folder: &FolderName) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE scheduled_tasks SET status = 'paused' WHERE group_folder = ?1 AND status = 'active'",
        [folder.as_str()],
    )?)
}

/// How many active tasks `folder` has (the per-group limit counts these).
pub(crate) fn count_active(conn: &Connection, folder: &FolderName) -> Result<usize> {
    // Kept by triggers (schema 5): one row, however many tasks the group has.
    let n: Option<i64> = conn
        .prepare_cached("SELECT active FROM group_active_tasks WHERE group_folder = ?1")?
        .query_row([folder.as_str()], |r| r.get(0))
        .optional()?;
    let n = n.unwrap_or(0);
    Ok(n as usize)
}

/// The earliest `next_run` of any active task: when the scheduler must wake next.
pub(crate) fn earliest_due(conn: &Connection) -> Result<Option<DateTime<Utc>>> {
    let ms: Option<i64> = conn.query_row(
        "SELECT MIN(next_run) FROM scheduled_tasks WHERE status = 'active' AND next_run IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    Ok(ms.map(from_ms))
}

/// Active tasks due at or before `now`, earliest first.
pub(crate) fn due(conn: &Connection, now: DateTime<Utc>, limit: usize) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM scheduled_tasks
         WHERE status = 'active' AND next_run IS NOT NULL AND next_run <= ?1
         ORDER BY next_run, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![to_ms(now), limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Success,
    Error,
    Interrupted,
    /// The occurrence came due while the task's previous run was still in flight, so
    /// it was not started (a task never runs twice at once).
    Skipped,
}

impl RunStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Error => "error",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> std::result::Result<RunStatus, String> {
        Ok(match s {
            "running" => RunStatus::Running,
            "success" => RunStatus::Success,
            "error" => RunStatus::Error,
            "interrupted" => RunStatus::Interrupted,
            "skipped" => RunStatus::Skipped,
            other => return Err(format!("unknown run status {other:?}")),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRun {
    pub run_id: i64,
    pub(crate) task_id: TaskId,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub(crate) due_at: DateTime<Utc>,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub(crate) started_at: DateTime<Utc>,
    pub duration_ms: Option<i64>,
    pub status: RunStatus,
    pub(crate) result: Option<String>,
    pub error: Option<String>,
    /// Occurrences not started because this run was still in flight.
    pub skipped: i64,
}

/// The longest result or error text kept in a run log row.
pub(crate) const MAX_RUN_TEXT: usize = 4_000;

pub(crate) fn bounded(text: Option<&str>) -> Option<String> {
    text.map(|t| {
        if t.len() <= MAX_RUN_TEXT {
            t.to_owned()
        } else {
            let mut end = MAX_RUN_TEXT;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &t[..end])
        }
    })
}

/// Records that a run started; returns its run id.
pub(crate) fn start_run(
    conn: &Connection,
    id: &TaskId,
    due: DateTime<Utc>,
    started: DateTime<Utc>,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO task_run_logs (task_id, due_at, started_at, status) VALUES (?1, ?2, ?3, 'running')",
        params![id.as_str(), to_ms(due), to_ms(started)],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Finishes a run row that is still `running` (bounded text); returns false if the row
/// is gone (task cancelled) or was already finished.
pub(crate) fn finish_run(
    conn: &Connection,
    run_id: i64,
    status: RunStatus,
    finished: DateTime<Utc>,
    result: Option<&str>,
    error: Option<&str>,
) -> Result<bool> {
    let n = conn.execute(
        "UPDATE task_run_logs SET status = ?2, finished_at = ?3, duration_ms = ?3 - started_at,
             result = ?4, error = ?5
         WHERE id = ?1 AND status = 'running'",
        params![
            run_id,
            status.as_str(),
            to_ms(finished),
            bounded(result),
            bounded(error)
        ],
    )?;
    Ok(n > 0)
}

/// The run of task `id` still in flight (`running`), if any.
pub(crate) fn in_flight_run(conn: &Connection, id: &TaskId) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT id FROM task_run_logs WHERE task_id = ?1 AND status = 'running' LIMIT 1",
            [id.as_str()],
            |r| r.get(0),
        )
        .optional()?)
}

/// Counts an occurrence that was not started because run `run_id` of the task was
/// still in flight, on that run (no row of its own).
pub(crate) fn count_skipped(conn: &Connection, run_id: i64) -> Result<()> {
    conn.execute(
        "UPDATE task_run_logs SET skipped = skipped + 1 WHERE id = ?1",
        [run_id],
    )?;
    Ok(())
}

/// Marks a run found `running` after a crash as `interrupted`. Its duration is
/// unknown (the process died at some point after it started), so it stays NULL.
pub(crate) fn interrupt_run(
    conn: &Connection,
    run_id: i64,
    at: DateTime<Utc>,
    error: &str,
) -> Result<bool> {
    let n = conn.execute(
        "UPDATE task_run_logs SET status = 'interrupted', finished_at = ?2, error = ?3
         WHERE id = ?1 AND status = 'running'",
        params![run_id, to_ms(at), bounded(Some(error))],
    )?;
    Ok(n > 0)
}

/// One run by id.
pub(crate) fn get_run(conn: &Connection, run_id: i64) -> Result<Option<TaskRun>> {
    Ok(conn
        .query_row(
            "SELECT id, task_id, due_at, started_at, duration_ms, status, result, error, skipped
             FROM task_run_logs WHERE id = ?1",
            [run_id],
            run_from_row,
        )
        .optional()?)
}

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<TaskRun> {
    Ok(TaskRun {
        run_id: r.get(0)?,
        task_id: parse_col(r, 1, TaskId::parse)?,
        due_at: from_ms(r.get(2)?),
        started_at: from_ms(r.get(3)?),
        duration_ms: r.get(4)?,
        status: parse_col(r, 5, RunStatus::parse)?,
        result: r.get(6)?,
        error: r.get(7)?,
        skipped: r.get(8)?,
    })
}

/// The latest `limit` runs of a task, newest first.
pub fn runs(conn: &Connection, id: &TaskId, limit: usize) -> Result<Vec<TaskRun>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, task_id, due_at, started_at, duration_ms, status, result, error, skipped
         FROM task_run_logs WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![id.as_str(), limit as i64], run_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Runs still marked `running`: after a crash, these were interrupted.
pub(crate) fn running_runs(conn: &Connection) -> Result<Vec<(i64, TaskId)>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, task_id FROM task_run_logs WHERE status = 'running'")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, parse_col(r, 1, TaskId::parse)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn list_orders_by_next_run_then_id_with_unscheduled_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("messages.db")).unwrap();
        store
            .conn()
            .execute_batch(
                "INSERT INTO registered_groups (jid, name, folder, trigger_word, requires_trigger, is_main, added_at)
                     VALUES ('1@discord', 'Main', 'main', '@Andy', 0, 1, 0);",
            )
            .unwrap();
        let task = |id: &str, next: Option<i64>| Task {
            id: TaskId::parse(id).unwrap(),
            group_folder: FolderName::parse("main").unwrap(),
            chat_jid: Jid::parse("1@discord").unwrap(),
            prompt: "p".into(),
            schedule_type: ScheduleType::Interval,
            schedule_value: "1000".into(),
            context_mode: ContextMode::Group,
            timezone: Tz::UTC,
            next_run: next.map(from_ms),
            last_run: None,
            last_result: None,
            status: TaskStatus::Active,
            created_by: "test".into(),
            created_at: from_ms(0),
        };
        for (id, next) in [
            ("z-none", None),
            ("b", Some(20)),
            ("a-none", None),
            ("c", Some(10)),
            ("a", Some(20)),
            ("B", Some(20)),
        ] {
            insert(store.conn(), &task(id, next)).unwrap();
        }
        let ids: Vec<String> = list(store.conn(), None, None)
            .unwrap()
            .into_iter()
            .map(|t| t.id.to_string())
            .collect();
        // Byte order of ids, as SQLite's BINARY collation: "B" < "a" < "b".
        assert_eq!(ids, ["c", "B", "a", "b", "a-none", "z-none"]);
    }

    #[test]
    fn migration_2_keeps_run_logs_and_never_reuses_a_run_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages.db");
        {
            // A version-1 database with two runs, the newer one deleted.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(include_str!("schema.sql")).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO scheduled_tasks VALUES ('t', 'main', '1@discord', 'p', 'interval', '1000',
                     'group', 'UTC', 5000, NULL, NULL, 'active', 'cli', 0);
                 INSERT INTO task_run_logs (task_id, due_at, started_at, status) VALUES ('t', 1, 2, 'success');
                 INSERT INTO task_run_logs (task_id, due_at, started_at, status) VALUES ('t', 3, 4, 'running');
                 DELETE FROM task_run_logs WHERE id = 2;",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let c = store.conn();
        let id = TaskId::parse("t").unwrap();
        let kept = runs(c, &id, 10).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].run_id, kept[0].status), (1, RunStatus::Success));
        let next = start_run(c, &id, from_ms(10), from_ms(11)).unwrap();
        assert_eq!(next, 3, "run id 2 was used before the migration");
        assert_eq!(in_flight_run(c, &id).unwrap(), Some(3));
        count_skipped(c, 3).unwrap();
        count_skipped(c, 3).unwrap();
        assert_eq!(get_run(c, 3).unwrap().unwrap().skipped, 2);
        // Only a running row can be finished or interrupted, once.
        assert!(finish_run(c, 3, RunStatus::Success, from_ms(20), Some("ok"), None).unwrap());
        assert!(!finish_run(c, 3, RunStatus::Error, from_ms(21), None, Some("x")).unwrap());
        assert!(!interrupt_run(c, 3, from_ms(22), "x").unwrap());
        let done = get_run(c, 3).unwrap().unwrap();
        assert_eq!(
            (done.status, done.duration_ms),
            (RunStatus::Success, Some(9))
        );
        assert_eq!(in_flight_run(c, &id).unwrap(), None);
    }

    #[test]
    fn active_counts_follow_every_kind_of_change_and_a_migrated_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages.db");
        {
            // A version-4 database with tasks: migration 5 counts them.
            let conn = Connection::open(&path).unwrap();
            for sql in &super::super::MIGRATIONS[..4] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 4).unwrap();
            conn.execute_batch(
                "INSERT INTO scheduled_tasks VALUES ('a', 'ops', '1@discord', 'p', 'interval', '1000',
                     'group', 'UTC', 5000, NULL, NULL, 'active', 'cli', 0);
                 INSERT INTO scheduled_tasks VALUES ('b', 'ops', '1@discord', 'p', 'interval', '1000',
                     'group', 'UTC', 5000, NULL, NULL, 'paused', 'cli', 0);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let c = store.conn();
        let count = |f: &str| count_active(c, &FolderName::parse(f).unwrap()).unwrap();
        let truth = |f: &str| -> usize {
            c.query_row(
                "SELECT COUNT(*) FROM scheduled_tasks WHERE group_folder = ?1 AND status = 'active'",
                [f],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as usize
        };
        assert_eq!((count("ops"), count("dev")), (1, 0));
        for sql in [
            "INSERT INTO scheduled_tasks VALUES ('c', 'ops', '1@discord', 'p', 'once', 'x',
                 'group', 'UTC', NULL, NULL, NULL, 'active', 'cli', 0)",
            "UPDATE scheduled_tasks SET status = 'active' WHERE id = 'b'",
            "UPDATE scheduled_tasks SET status = 'paused' WHERE id = 'a'",
            "UPDATE scheduled_tasks SET next_run = 7, last_run = 6 WHERE id = 'c'",
            "UPDATE scheduled_tasks SET group_folder = 'dev' WHERE id = 'c'",
            "UPDATE scheduled_tasks SET status = 'completed' WHERE id = 'b'",
            "UPDATE scheduled_tasks SET group_folder = 'dev', status = 'active' WHERE id = 'a'",
            "DELETE FROM scheduled_tasks WHERE id = 'c'",
            "DELETE FROM scheduled_tasks WHERE id = 'b'",
        ] {
            c.execute(sql, []).unwrap();
            for f in ["ops", "dev"] {
                assert_eq!(count(f), truth(f), "{f} after {sql}");
            }
        }
        assert_eq!((count("ops"), count("dev")), (0, 1));
    }

    #[test]
    fn run_text_is_bounded_on_a_char_boundary() {
        let long = "가".repeat(MAX_RUN_TEXT);
        let b = bounded(Some(&long)).unwrap();
        assert!(b.len() <= MAX_RUN_TEXT + '…'.len_utf8());
        assert!(b.ends_with('…'));
    }
}
