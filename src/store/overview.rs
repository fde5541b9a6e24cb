//! Read-only summaries for `rust_claw status`: the outbox backlog, the next scheduled
//! runs and the latest errors recorded anywhere in the store.

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::Serialize;

use super::{Result, from_ms};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OutboxBacklog {
    /// Replies queued and not sent yet.
    pub(crate) pending: i64,
    /// Of those, how many failed at least once.
    pub(crate) failing: i64,
    #[serde(serialize_with = "super::rfc3339::option::serialize")]
    pub(crate) oldest: Option<DateTime<Utc>>,
}

pub(crate) fn outbox_backlog(conn: &Connection) -> Result<OutboxBacklog> {
    Ok(conn.query_row(
        "SELECT count(*), count(last_error), min(created_at) FROM outbox WHERE sent_at IS NULL",
        [],
        |r| {
            Ok(OutboxBacklog {
                pending: r.get(0)?,
                failing: r.get(1)?,
                oldest: r.get::<_, Option<i64>>(2)?.map(from_ms),
            })
        },
    )?)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct NextRun {
    pub(crate) task_id: String,
    pub(crate) group_folder: String,
    pub(crate) schedule_type: String,
    pub(crate) schedule_value: String,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub(crate) next_run: DateTime<Utc>,
}

/// The active tasks due soonest.
pub(crate) fn next_runs(conn: &Connection, limit: usize) -> Result<Vec<NextRun>> {
    let mut stmt = conn.prepare(
        "SELECT id, group_folder, schedule_type, schedule_value, next_run FROM scheduled_tasks
         WHERE status = 'active' AND next_run IS NOT NULL ORDER BY next_run, id LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(NextRun {
            task_id: r.get(0)?,
            group_folder: r.get(1)?,
            schedule_type: r.get(2)?,
            schedule_value: r.get(3)?,
            next_run: from_ms(r.get(4)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RecentError {
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub(crate) at: DateTime<Utc>,
    /// `task:<id>`, `outbox:<chat>` or `ipc:<folder>/<request>`.
    pub(crate) source: String,
    pub(crate) error: String,
}

/// The latest errors of scheduled runs, unsent replies and IPC requests, newest first.
pub(crate) fn recent_errors(conn: &Connection, limit: usize) -> Result<Vec<RecentError>> {
    let mut stmt = conn.prepare(
        "SELECT at, source, error FROM (
            SELECT coalesce(finished_at, started_at) AS at, 'task:' || task_id AS source,
                   coalesce(error, '') AS error
              FROM task_run_logs WHERE status = 'error'
            UNION ALL
            SELECT created_at, 'outbox:' || chat_jid, last_error
              FROM outbox WHERE sent_at IS NULL AND last_error IS NOT NULL
            UNION ALL
            SELECT applied_at, 'ipc:' || group_folder || '/' || request_id,
                   coalesce(json_extract(response, '$.message'), response)
              FROM ipc_ledger WHERE status = 'error'
         ) ORDER BY at DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(RecentError {
            at: from_ms(r.get(0)?),
            source: r.get(1)?,
            error: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Jid;
    use crate::store::{Store, outbox};

    #[test]
    fn an_empty_store_has_no_backlog_runs_or_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let c = store.conn();
        let b = outbox_backlog(c).unwrap();
        assert_eq!((b.pending, b.failing, b.oldest), (0, 0, None));
        assert!(next_runs(c, 5).unwrap().is_empty());
        assert!(recent_errors(c, 5).unwrap().is_empty());

        let now = Utc::now();
        let id = outbox::enqueue(c, &Jid::Discord(1), "hi", "reply", now).unwrap();
        outbox::record_failure(c, id, "503 from Discord").unwrap();
        outbox::enqueue(c, &Jid::Discord(1), "again", "reply", now).unwrap();
        let b = outbox_backlog(c).unwrap();
        assert_eq!((b.pending, b.failing), (2, 1));
        let errs = recent_errors(c, 5).unwrap();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].source, "outbox:1@discord");
        assert_eq!(errs[0].error, "503 from Discord");
    }
}
