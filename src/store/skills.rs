//! Per-group skill switches. A skill with no row is disabled.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{Result, to_ms};
use crate::model::FolderName;

/// The names of the skills enabled for `folder`, sorted.
pub(crate) fn enabled(conn: &Connection, folder: &FolderName) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT skill_name FROM group_skills WHERE group_folder = ?1 AND enabled = 1 ORDER BY skill_name",
    )?;
    let rows = stmt.query_map([folder.as_str()], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn set(
    conn: &Connection,
    folder: &FolderName,
    skill: &str,
    on: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO group_skills (group_folder, skill_name, enabled, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(group_folder, skill_name) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
        params![folder.as_str(), skill, on, to_ms(now)],
    )?;
    Ok(())
}
