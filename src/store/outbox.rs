//! The durable outbox: replies are queued here before they are sent.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Result, from_ms, parse_col, to_ms};
use crate::model::Jid;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OutboxItem {
    pub(crate) id: i64,
    pub(crate) chat_jid: Jid,
    pub(crate) text: String,
    /// Stable across retries, so the channel can de-duplicate a re-sent create.
    pub(crate) nonce: String,
    pub(crate) origin: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) attempts: i64,
}

/// Queues a reply; returns its row id.
pub(crate) fn enqueue(
    conn: &Connection,
    chat_jid: &Jid,
    text: &str,
    origin: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    // The nonce is derived from a fresh random value, not the row id, so it is unique
    // even across databases (Discord keeps nonces for a few minutes per channel).
    let nonce = format!("{:016x}", rand::random::<u64>());
    conn.prepare_cached(
        "INSERT INTO outbox (chat_jid, text, nonce, origin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![chat_jid, text, nonce, origin, to_ms(now)])?;
    Ok(conn.last_insert_rowid())
}

/// Unsent items, oldest first.
pub(crate) fn pending(conn: &Connection, limit: usize) -> Result<Vec<OutboxItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, chat_jid, text, nonce, origin, created_at, attempts FROM outbox
         WHERE sent_at IS NULL ORDER BY id LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(OutboxItem {
            id: r.get(0)?,
            chat_jid: parse_col(r, 1, Jid::parse)?,
            text: r.get(2)?,
            nonce: r.get(3)?,
            origin: r.get(4)?,
            created_at: from_ms(r.get(5)?),
            attempts: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn mark_sent(conn: &Connection, id: i64, now: DateTime<Utc>) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET sent_at = ?2, attempts = attempts + 1 WHERE id = ?1",
        params![id, to_ms(now)],
    )?;
    Ok(())
}

pub(crate) fn record_failure(conn: &Connection, id: i64, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
        params![id, error],
    )?;
    Ok(())
}

/// Gives up on an item that can never be sent (kept, with the reason, for inspection).
pub(crate) fn give_up(conn: &Connection, id: i64, error: &str, now: DateTime<Utc>) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET sent_at = ?3, attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
        params![id, error, to_ms(now)],
    )?;
    Ok(())
}

/// How many items for `chat_jid` are still unsent.
pub(crate) fn pending_for(conn: &Connection, chat_jid: &Jid) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM outbox WHERE chat_jid = ?1 AND sent_at IS NULL",
        [chat_jid],
        |r| r.get(0),
    )?)
}
