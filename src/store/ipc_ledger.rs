//! The IPC ledger: one row per applied request, committed with its effect.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, to_ms};
use crate::model::FolderName;

/// The stored response of a request already applied, if any.
pub(crate) fn get(
    conn: &Connection,
    folder: &FolderName,
    request_id: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT response FROM ipc_ledger WHERE group_folder = ?1 AND request_id = ?2",
        )?
        .query_row(params![folder.as_str(), request_id], |r| r.get(0))
        .optional()?)
}

pub(crate) fn insert(
    conn: &Connection,
    folder: &FolderName,
    request_id: &str,
    request_type: &str,
    status: &str,
    response_json: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO ipc_ledger (group_folder, request_id, request_type, status, response, applied_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![folder.as_str(), request_id, request_type, status, response_json, to_ms(now)])?;
    Ok(())
}
