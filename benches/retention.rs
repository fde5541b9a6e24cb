//! Benchmark: a simulated year of a busy install, at accelerated time — 10 groups ×
//! 200 messages a day (and 100 replies), an hourly task each, 50 IPC requests a day
//! each — with the daemon's pruning (default retention) run every 6 simulated hours,
//! against the same year never pruned. Prints the database size at the end of each,
//! the time of one steady-state pruning pass, and of the first pass over a whole
//! unpruned year (an install upgrading to a pruning build).
//!
//! `cargo bench --bench retention` (release profile) runs the year;
//! `cargo test --bench retention` (what `cargo test --all-targets` does) simulates 20 days.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rust_claw::store::retention::{self, Retention};
use rust_claw::store::{Store, to_ms};

const GROUPS: usize = 10;
const MESSAGES_A_DAY: usize = 200;
const REPLIES_A_DAY: usize = 100;
const IPC_A_DAY: usize = 50;
const DAY_MS: i64 = 86_400_000;

fn db_size(dir: &Path) -> u64 {
    ["messages.db", "messages.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// One simulated day of every group's traffic, in one transaction.
fn day(store: &mut Store, start: DateTime<Utc>, day: i64) {
    let t0 = to_ms(start) + day * DAY_MS;
    store
        .write(|tx| -> rusqlite::Result<()> {
            let mut msg = tx.prepare_cached(
                "INSERT INTO messages (chat_jid, external_id, sender_id, sender_name, content, sent_at, mentions_bot)
                 VALUES (?1, ?2, 'u1', 'Alice', ?3, ?4, 1)",
            )?;
            let mut reply = tx.prepare_cached(
                "INSERT INTO outbox (chat_jid, text, nonce, origin, created_at, attempts, sent_at)
                 VALUES (?1, ?2, ?3, 'reply', ?4, 1, ?4)",
            )?;
            let mut ipc = tx.prepare_cached(
                "INSERT INTO ipc_ledger (group_folder, request_id, request_type, status, response, applied_at)
                 VALUES (?1, ?2, 'message', 'ok', '{\"ok\":true}', ?3)",
            )?;
            let mut run = tx.prepare_cached(
                "INSERT INTO task_run_logs (task_id, due_at, started_at, finished_at, duration_ms, status, result)
                 VALUES (?1, ?2, ?2, ?2 + 4000, 4000, 'success', 'Nothing new in the channel today.')",
            )?;
            for g in 0..GROUPS {
                let chat = format!("10000000000000000{g}@discord");
                for i in 0..MESSAGES_A_DAY {
                    let at = t0 + (i as i64) * (DAY_MS / MESSAGES_A_DAY as i64);
                    msg.execute(rusqlite::params![
                        chat,
                        format!("{day}-{g}-{i}"),
                        format!("message {i} of day {day}: could you look at the build again, it failed on the second step"),
                        at
                    ])?;
                }
                for i in 0..REPLIES_A_DAY {
                    let at = t0 + (i as i64) * (DAY_MS / REPLIES_A_DAY as i64);
                    reply.execute(rusqlite::params![
                        chat,
                        "Done: the build passes again; the second step needed a fresh cache.",
                        format!("{day:05}{g:02}{i:04}"),
                        at
                    ])?;
                }
                for i in 0..IPC_A_DAY {
                    let at = t0 + (i as i64) * (DAY_MS / IPC_A_DAY as i64);
                    ipc.execute(rusqlite::params![format!("group{g}"), format!("req-{day}-{i}"), at])?;
                }
                for h in 0..24 {
                    run.execute(rusqlite::params![format!("hourly-{g}"), t0 + h * 3_600_000])?;
                }
                // Everything of the day is answered.
                tx.execute(
                    "INSERT INTO router_cursors (chat_jid, last_message_id, updated_at)
                     VALUES (?1, (SELECT MAX(id) FROM messages WHERE chat_jid = ?1), ?2)
                     ON CONFLICT (chat_jid) DO UPDATE SET last_message_id = excluded.last_message_id",
                    rusqlite::params![chat, t0 + DAY_MS - 1],
                )?;
            }
            Ok(())
        })
        .expect("simulated day");
}

fn seed_tasks(store: &Store) {
    for g in 0..GROUPS {
        store
            .conn()
            .execute(
                "INSERT INTO scheduled_tasks (id, group_folder, chat_jid, prompt, schedule_type, schedule_value,
                     context_mode, timezone, status, created_by, created_at)
                 VALUES (?1, ?2, ?3, 'summarise the channel', 'cron', '0 * * * *', 'group', 'UTC', 'active', 'cli', 0)",
                rusqlite::params![format!("hourly-{g}"), format!("group{g}"), format!("10000000000000000{g}@discord")],
            )
            .expect("task");
    }
}

struct Year {
    size: u64,
    rows: [(&'static str, i64); 4],
    /// Pruning passes at steady state (the last 30 days), wall time each.
    passes: Vec<Duration>,
    simulated_in: Duration,
}

fn year(dir: &Path, days: i64, prune: bool) -> Year {
    let mut store = Store::open(&dir.join("messages.db")).expect("store");
    seed_tasks(&store);
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let keep = Retention::default();
    let mut passes = Vec::new();
    let t = Instant::now();
    for d in 0..days {
        day(&mut store, start, d);
        if prune {
            for quarter in 1..=4 {
                let now = start + chrono::Duration::milliseconds(d * DAY_MS + quarter * DAY_MS / 4);
                let p = Instant::now();
                retention::prune(&mut store, &keep, now).expect("prune");
                if d >= days - 30 {
                    passes.push(p.elapsed());
                }
            }
        }
    }
    let simulated_in = t.elapsed();
    store
        .conn()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    let rows = retention::counts(store.conn()).expect("counts");
    drop(store);
    Year {
        size: db_size(dir),
        rows,
        passes,
        simulated_in,
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let days = if full { 365 } else { 20 };

    let pruned_dir = tempfile::tempdir().expect("tempdir");
    let pruned = year(pruned_dir.path(), days, true);
    let mut passes = pruned.passes.clone();
    passes.sort();
    println!(
        "{days} days pruned every 6 h (default retention): database {:.1} MB, rows {:?}; simulated in {:.1} s",
        mb(pruned.size),
        pruned.rows,
        pruned.simulated_in.as_secs_f64()
    );
    println!(
        "one steady-state pruning pass: median {:.1} ms, max {:.1} ms ({} passes)",
        passes[passes.len() / 2].as_secs_f64() * 1e3,
        passes[passes.len() - 1].as_secs_f64() * 1e3,
        passes.len()
    );

    let unpruned_dir = tempfile::tempdir().expect("tempdir");
    let unpruned = year(unpruned_dir.path(), days, false);
    println!(
        "{days} days never pruned: database {:.1} MB, rows {:?}",
        mb(unpruned.size),
        unpruned.rows
    );
    // An install that upgrades after a year: the first pass deletes the backlog.
    let mut store = Store::open(&unpruned_dir.path().join("messages.db")).expect("reopen");
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
        + chrono::Duration::milliseconds(days * DAY_MS);
    let t = Instant::now();
    let first = retention::prune(&mut store, &Retention::default(), now).expect("prune");
    let took = t.elapsed();
    println!(
        "first pass over the unpruned {days} days: {} rows deleted in {:.0} ms (in transactions of ≤ {} rows a table)",
        first.total(),
        took.as_secs_f64() * 1e3,
        retention::BATCH
    );
    if full {
        assert!(
            pruned.size < unpruned.size,
            "pruning must bound the database"
        );
    }
}
