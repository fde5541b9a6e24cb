//! The agent thread each group resumes between runs.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, to_ms};
use crate::model::FolderName;

pub fn get(conn: &Connection, folder: &FolderName) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT thread_id FROM sessions WHERE group_folder = ?1",
            [folder.as_str()],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn set(
    conn: &Connection,
    folder: &FolderName,
    thread_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO sessions (group_folder, thread_id, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(group_folder) DO UPDATE SET thread_id = excluded.thread_id, updated_at = excluded.updated_at",
        params![folder.as_str(), thread_id, to_ms(now)],
    )?;
    Ok(())
}
