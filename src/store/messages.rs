//! Chat messages and the per-chat cursors of what was answered.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Result, from_ms, parse_col, to_ms};
use crate::model::Jid;

/// A message to store. `external_id` (the platform's id) de-duplicates redeliveries.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage<'a> {
    pub(crate) chat_jid: &'a Jid,
    pub(crate) external_id: Option<&'a str>,
    pub(crate) sender_id: &'a str,
    pub(crate) sender_name: &'a str,
    pub(crate) content: &'a str,
    pub(crate) sent_at: DateTime<Utc>,
    pub(crate) is_from_bot: bool,
    pub(crate) mentions_bot: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub(crate) id: i64,
    pub(crate) chat_jid: Jid,
    pub(crate) sender_id: String,
    pub(crate) sender_name: String,
    pub(crate) content: String,
    pub(crate) sent_at: DateTime<Utc>,
    pub(crate) is_from_bot: bool,
    pub(crate) mentions_bot: bool,
}

/// Stores a message; returns its id, or `None` if this external id was already stored.
pub(crate) fn insert(conn: &Connection, m: &NewMessage<'_>) -> Result<Option<i64>> {
    let n = conn.execute(
        "INSERT INTO messages (chat_jid, external_id, sender_id, sender_name, content, sent_at, is_from_bot, mentions_bot)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT DO NOTHING",
        params![
            m.chat_jid,
            m.external_id,
            m.sender_id,
            m.sender_name,
            m.content,
            to_ms(m.sent_at),
            m.is_from_bot,
            m.mentions_bot
        ],
    )?;
    Ok((n > 0).then(|| conn.last_insert_rowid()))
}

/// Messages of `chat_jid` with id greater than `after`, oldest first, at most `limit`.
pub fn since(conn: &Connection, chat_jid: &Jid, after: i64, limit: usize) -> Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, chat_jid, sender_id, sender_name, content, sent_at, is_from_bot, mentions_bot
         FROM messages WHERE chat_jid = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![chat_jid, after, limit as i64], |r| {
        Ok(Message {
            id: r.get(0)?,
            chat_jid: parse_col(r, 1, Jid::parse)?,
            sender_id: r.get(2)?,
            sender_name: r.get(3)?,
            content: r.get(4)?,
            sent_at: from_ms(r.get(5)?),
            is_from_bot: r.get(6)?,
            mentions_bot: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The answered-up-to cursor for a chat: the last message id answered (0 if none).
pub fn cursor(conn: &Connection, chat_jid: &Jid) -> Result<i64> {
    Ok(conn
        .query_row(
            "SELECT last_message_id FROM router_cursors WHERE chat_jid = ?1",
            [chat_jid],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Moves a chat's cursor forward (never backward).
pub(crate) fn advance_cursor(
    conn: &Connection,
    chat_jid: &Jid,
    to: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO router_cursors (chat_jid, last_message_id, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(chat_jid) DO UPDATE SET
             last_message_id = MAX(router_cursors.last_message_id, excluded.last_message_id),
             updated_at = excluded.updated_at",
        params![chat_jid, to, to_ms(now)],
    )?;
    Ok(())
}

/// The newest message id of a chat (0 if none).
pub(crate) fn latest_id(conn: &Connection, chat_jid: &Jid) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM messages WHERE chat_jid = ?1",
        [chat_jid],
        |r| r.get(0),
    )?)
}
