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
    pub messages: Duration,
    pub outbox: Duration,
    pub ipc_ledger: Duration,
    pub task_runs: Duration,
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
    pub messages: usize,
    pub outbox: usize,
    pub ipc_ledger: usize,
    pub task_runs: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.messages + self.outbox + self.ipc_ledger + self.task_runs
    }

    /// A table filled its batch: there may be more to delete.
    pub fn more(&self) -> bool {
        [self.messages, self.outbox, self.ipc_ledger, self.task_runs]
            .iter()
            .any(|&n| n >= BATCH)
    }

    pub fn add(&mut self, other: &Pruned) {
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
pub fn prune_step(store: &mut Store, keep: &Retention, now: DateTime<Utc>) -> Result<Pruned> {
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
