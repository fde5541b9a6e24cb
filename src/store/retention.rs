//! Pruning: what each growing table may forget, and when.
//!
//! | table           | deleted                                                   | kept whatever its age                         |
//! |-----------------|-----------------------------------------------------------|-----------------------------------------------|
//! | `messages`      | older than `messages`, and already answered (id ≤ the chat's cursor) | every unanswered message (the next prompt and its context) |
//! | `outbox`        | sent (or given up) longer ago than `outbox`               | every unsent reply                            |
//! | `ipc_ledger`    | applied longer ago than `ipc_ledger`                      | —                                             |
//! | `task_run_logs` | finished longer ago than `task_runs`                      | `running` rows (they block overlapping runs), each task's latest run |
//!
//! The exactly-once guarantees need far less than the defaults: a reply is re-sent at
//! most once, right after a crash, with its nonce (Discord remembers nonces for
//! minutes); a request file is re-read only until the watcher removed it (seconds);
//! a run is finished or interrupted before the next start. The defaults keep weeks
//! of history for `task-runs` and for the owner to look back on.
//!
//! Deletes run in steps of at most [`BATCH`] rows a table, each its own short
//! transaction, so the daemon and CLI processes never wait long for the write lock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::{Result, Store, to_ms};

/// Rows deleted per transaction.
pub const BATCH: usize = 5_000;

/// How long each table keeps its rows (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub(crate) messages: Duration,
    pub(crate) outbox: Duration,
    pub(crate) ipc_ledger: Duration,
    pub(crate) task_runs: Duration,
}

const DAY: Duration = Duration::from_secs(86_400);

/// The defaults of `RETAIN_MESSAGES_DAYS` (messages, task runs) and
/// `RETAIN_RECEIPTS_DAYS` (outbox, IPC ledger).
impl Default for Retention {
    fn default() -> Self {
        Retention {
            messages: DAY * 90,
            outbox: DAY * 7,
            ipc_ledger: DAY * 7,
            task_runs: DAY * 90,
        }
    }
}

/// Rows one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub(crate) messages: usize,
    pub(crate) outbox: usize,
    pub(crate) ipc_ledger: usize,
    pub(crate) task_runs: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.messages + self.outbox + self.ipc_ledger + self.task_runs
    }

    /// A table filled its batch: there may be more to delete.
    pub(crate) fn more(&self) -> bool {
        [self.messages, self.outbox, self.ipc_ledger, self.task_runs]
            .iter()
            .any(|&n| n >= BATCH)
    }

    pub(crate) fn add(&mut self, other: &Pruned) {
        self.messages += other.messages;
        self.outbox += other.outbox;
        self.ipc_ledger += other.ipc_ledger;
        self.task_runs += other.task_runs;
    }
}

fn cutoff(now: DateTime<Utc>, keep: Duration) -> i64 {
    to_ms(now) - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2)
}

const PRUNE_MESSAGES: &str = "DELETE FROM messages WHERE id IN (
     SELECT m.id FROM messages m
     JOIN router_cursors c ON c.chat_jid = m.chat_jid
     WHERE m.sent_at < ?1 AND m.id <= c.last_message_id
     LIMIT ?2)";
const PRUNE_OUTBOX: &str = "DELETE FROM outbox WHERE id IN (
     SELECT id FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?1 LIMIT ?2)";
const PRUNE_IPC_LEDGER: &str = "DELETE FROM ipc_ledger WHERE rowid IN (
     SELECT rowid FROM ipc_ledger WHERE applied_at < ?1 LIMIT ?2)";
const PRUNE_TASK_RUNS: &str = "DELETE FROM task_run_logs WHERE id IN (
     SELECT r.id FROM task_run_logs r
     WHERE r.status != 'running' AND r.started_at < ?1
       AND r.id < (SELECT MAX(l.id) FROM task_run_logs l WHERE l.task_id = r.task_id)
     LIMIT ?2)";

/// Deletes at most [`BATCH`] rows from each table, in one short transaction. The
/// pass is over when [`Pruned::more`] is false.
pub(crate) fn prune_step(
    store: &mut Store,
    keep: &Retention,
    now: DateTime<Utc>,
) -> Result<Pruned> {
    store.write(|tx| -> Result<Pruned> {
        let delete = |sql: &str, keep: Duration| -> Result<usize> {
            Ok(tx
                .prepare_cached(sql)?
                .execute([cutoff(now, keep), BATCH as i64])?)
        };
        Ok(Pruned {
            messages: delete(PRUNE_MESSAGES, keep.messages)?,
            outbox: delete(PRUNE_OUTBOX, keep.outbox)?,
            ipc_ledger: delete(PRUNE_IPC_LEDGER, keep.ipc_ledger)?,
            task_runs: delete(PRUNE_TASK_RUNS, keep.task_runs)?,
        })
    })
}

/// A whole pruning pass as of `now`: [`prune_step`] until nothing is left to delete.
pub fn prune(store: &mut Store, keep: &Retention, now: DateTime<Utc>) -> Result<Pruned> {
    let mut total = Pruned::default();
    loop {
        let step = prune_step(store, keep, now)?;
        total.add(&step);
        if !step.more() {
            return Ok(total);
        }
    }
}

/// Table sizes, for the benchmark and tests.
pub fn counts(conn: &Connection) -> Result<[(&'static str, i64); 4]> {
    let count = |table: &str| -> Result<i64> {
        Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    };
    Ok([
        ("messages", count("messages")?),
        ("outbox", count("outbox")?),
        ("ipc_ledger", count("ipc_ledger")?),
        ("task_run_logs", count("task_run_logs")?),
    ])
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const DAY_MS: i64 = 86_400_000;

    fn ids(store: &Store, sql: &str) -> Vec<i64> {
        let mut stmt = store.conn().prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn prunes_only_what_nothing_needs_any_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("messages.db")).unwrap();
        let now = Utc.timestamp_millis_opt(1_000 * DAY_MS).unwrap();
        let old = to_ms(now) - 100 * DAY_MS;
        let recent = to_ms(now) - DAY_MS;
        store
            .conn()
            .execute_batch(&format!(
                "INSERT INTO messages (id, chat_jid, sender_id, sender_name, content, sent_at) VALUES
                   (1, 'a@local', 'u', 'U', 'old, answered', {old}),
                   (2, 'a@local', 'u', 'U', 'old, unanswered', {old}),
                   (3, 'a@local', 'u', 'U', 'recent', {recent}),
                   (4, 'b@local', 'u', 'U', 'old, chat never answered', {old});
                 INSERT INTO router_cursors (chat_jid, last_message_id, updated_at) VALUES ('a@local', 1, 0);
                 INSERT INTO outbox (id, chat_jid, text, nonce, origin, created_at, sent_at) VALUES
                   (1, 'a@local', 'sent long ago', 'n1', 'reply', {old}, {old}),
                   (2, 'a@local', 'never sent', 'n2', 'reply', {old}, NULL),
                   (3, 'a@local', 'sent recently', 'n3', 'reply', {recent}, {recent});
                 INSERT INTO ipc_ledger (group_folder, request_id, request_type, status, response, applied_at) VALUES
                   ('main', 'old', 'message', 'ok', '{{}}', {old}),
                   ('main', 'new', 'message', 'ok', '{{}}', {recent});
                 INSERT INTO scheduled_tasks (id, group_folder, chat_jid, prompt, schedule_type, schedule_value,
                     context_mode, timezone, status, created_by, created_at) VALUES
                   ('t', 'main', 'a@local', 'p', 'interval', '1000', 'group', 'UTC', 'active', 'cli', 0),
                   ('u', 'main', 'a@local', 'p', 'interval', '1000', 'group', 'UTC', 'active', 'cli', 0);
                 INSERT INTO task_run_logs (id, task_id, due_at, started_at, status) VALUES
                   (1, 't', {old}, {old}, 'success'),
                   (2, 't', {old}, {old}, 'running'),
                   (3, 't', {old}, {old}, 'error'),
                   (4, 't', {recent}, {recent}, 'success'),
                   (5, 'u', {old}, {old}, 'success');"
            ))
            .unwrap();
        let keep = Retention {
            messages: DAY * 30,
            outbox: DAY * 7,
            ipc_ledger: DAY * 7,
            task_runs: DAY * 30,
        };
        let pruned = prune(&mut store, &keep, now).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                messages: 1,
                outbox: 1,
                ipc_ledger: 1,
                task_runs: 2
            }
        );
        // Unanswered messages stay (the next prompt needs them), answered old ones go.
        assert_eq!(
            ids(&store, "SELECT id FROM messages ORDER BY id"),
            [2, 3, 4]
        );
        // Unsent replies stay.
        assert_eq!(ids(&store, "SELECT id FROM outbox ORDER BY id"), [2, 3]);
        assert_eq!(ids(&store, "SELECT applied_at FROM ipc_ledger"), [recent]);
        // A running run stays, and so does each task's latest run however old.
        assert_eq!(
            ids(&store, "SELECT id FROM task_run_logs ORDER BY id"),
            [2, 4, 5]
        );
        // A second pass finds nothing.
        assert_eq!(prune(&mut store, &keep, now).unwrap().total(), 0);
    }

    #[test]
    fn a_backlog_is_deleted_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("messages.db")).unwrap();
        let now = Utc.timestamp_millis_opt(1_000 * DAY_MS).unwrap();
        let n = BATCH * 2 + 10;
        store
            .conn()
            .execute(
                "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1)
                 INSERT INTO ipc_ledger (group_folder, request_id, request_type, status, response, applied_at)
                 SELECT 'main', 'r' || i, 'message', 'ok', '{}', 0 FROM k",
                [n as i64],
            )
            .unwrap();
        let first = prune_step(&mut store, &Retention::default(), now).unwrap();
        assert_eq!(first.ipc_ledger, BATCH);
        assert!(first.more());
        let rest = prune(&mut store, &Retention::default(), now).unwrap();
        assert_eq!(rest.ipc_ledger, n - BATCH);
        assert_eq!(counts(store.conn()).unwrap()[2], ("ipc_ledger", 0));
    }
}
