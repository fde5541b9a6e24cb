//! Chat metadata for every chat seen, registered or not.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Result, from_ms, parse_col, to_ms};
use crate::model::Jid;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chat {
    pub jid: Jid,
    pub name: Option<String>,
    pub(crate) channel: String,
    #[serde(serialize_with = "super::rfc3339::option::serialize")]
    pub(crate) last_message_at: Option<DateTime<Utc>>,
}

/// Records that a chat exists (and its latest name and activity), under the channel
/// its jid belongs to.
pub(crate) fn upsert(
    conn: &Connection,
    jid: &Jid,
    name: Option<&str>,
    at: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO chats (jid, name, channel, last_message_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(jid) DO UPDATE SET name = COALESCE(excluded.name, chats.name),
             last_message_at = MAX(COALESCE(chats.last_message_at, 0), excluded.last_message_at)",
        params![jid, name, jid.channel(), to_ms(at)],
    )?;
    Ok(())
}

/// All known chats, most recently active first.
pub fn list(conn: &Connection) -> Result<Vec<Chat>> {
    let mut stmt = conn.prepare_cached(
        "SELECT jid, name, channel, last_message_at FROM chats ORDER BY last_message_at DESC, jid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Chat {
            jid: parse_col(r, 0, Jid::parse)?,
            name: r.get(1)?,
            channel: r.get(2)?,
            last_message_at: r.get::<_, Option<i64>>(3)?.map(from_ms),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
