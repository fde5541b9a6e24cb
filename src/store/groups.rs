//! Registered groups: a chat (jid) bound to a folder.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::{Result, from_ms, parse_col, to_ms};
use crate::model::{FolderName, Jid};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub(crate) jid: Jid,
    pub(crate) name: String,
    pub(crate) folder: FolderName,
    pub(crate) trigger: String,
    pub(crate) requires_trigger: bool,
    pub(crate) is_main: bool,
    /// Per-group container settings (JSON), `None` for the defaults.
    pub(crate) container_config: Option<serde_json::Value>,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub(crate) added_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "jid, name, folder, trigger_word, requires_trigger, is_main, container_config, added_at";

/// Reads a row selected with [`COLUMNS`], by position.
fn from_row(row: &Row<'_>) -> rusqlite::Result<Group> {
    let config: Option<String> = row.get(6)?;
    Ok(Group {
        jid: parse_col(row, 0, Jid::parse)?,
        name: row.get(1)?,
        folder: parse_col(row, 2, FolderName::parse)?,
        trigger: row.get(3)?,
        requires_trigger: row.get(4)?,
        is_main: row.get(5)?,
        container_config: config.and_then(|c| serde_json::from_str(&c).ok()),
        added_at: from_ms(row.get(7)?),
    })
}

pub(crate) fn insert(conn: &Connection, g: &Group) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO registered_groups ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            g.jid.to_string(),
            g.name,
            g.folder.as_str(),
            g.trigger,
            g.requires_trigger,
            g.is_main,
            g.container_config.as_ref().map(|c| c.to_string()),
            to_ms(g.added_at),
        ],
    )?;
    Ok(())
}

fn query_one(conn: &Connection, filter: &str, arg: &str) -> Result<Option<Group>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM registered_groups WHERE {filter}"
        ))?
        .query_row([arg], from_row)
        .optional()?)
}

pub(crate) fn get_by_jid(conn: &Connection, jid: &Jid) -> Result<Option<Group>> {
    query_one(conn, "jid = ?1", &jid.to_string())
}

pub(crate) fn get_by_folder(conn: &Connection, folder: &FolderName) -> Result<Option<Group>> {
    query_one(conn, "folder = ?1", folder.as_str())
}

pub(crate) fn get_main(conn: &Connection) -> Result<Option<Group>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM registered_groups WHERE is_main = 1"),
            [],
            from_row,
        )
        .optional()?)
}

/// All groups, main first, then by folder.
pub(crate) fn list(conn: &Connection) -> Result<Vec<Group>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM registered_groups ORDER BY is_main DESC, folder"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Removes a group; returns whether it existed.
pub(crate) fn delete(conn: &Connection, jid: &Jid) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM registered_groups WHERE jid = ?1",
        [jid.to_string()],
    )? > 0)
}
