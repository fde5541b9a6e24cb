//! Reading a NanoClaw v1 install: its SQLite store (`store/messages.db`) and, for older
//! installs, `data/registered_groups.json`. Read-only; nothing of it is changed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags};

/// A registered group as NanoClaw stored it.
#[derive(Debug, Clone)]
pub(crate) struct NcGroup {
    pub(crate) jid: String,
    pub(crate) name: String,
    pub(crate) folder: String,
    pub(crate) trigger: String,
    pub(crate) requires_trigger: bool,
    pub(crate) is_main: bool,
    pub(crate) container_config: Option<String>,
}

/// A scheduled task as NanoClaw stored it.
#[derive(Debug, Clone)]
pub(crate) struct NcTask {
    pub(crate) id: String,
    pub(crate) group_folder: String,
    pub(crate) prompt: String,
    pub(crate) schedule_type: String,
    pub(crate) schedule_value: String,
    pub(crate) status: String,
    pub(crate) context_mode: String,
    pub(crate) script: Option<String>,
}

/// What was read, and where from.
pub(crate) struct Install {
    pub(crate) groups: Vec<NcGroup>,
    /// `store/messages.db` or `data/registered_groups.json`.
    pub(crate) groups_from: String,
    pub(crate) tasks: Vec<NcTask>,
    pub(crate) messages: i64,
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(1))?;
    rows.collect()
}

/// Reads the install at `from`.
pub(crate) fn read(from: &Path) -> anyhow::Result<Install> {
    let db = from.join("store").join("messages.db");
    let conn = if db.exists() {
        Some(
            Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("cannot open {}", db.display()))?,
        )
    } else {
        None
    };
    let mut groups = Vec::new();
    let mut groups_from = String::new();
    if let Some(conn) = &conn
        && has_table(conn, "registered_groups")?
    {
        groups = read_groups(conn).context("cannot read registered_groups")?;
        groups_from = "store/messages.db".into();
    }
    if groups.is_empty() {
        let json = from.join("data").join("registered_groups.json");
        if json.exists() {
            groups = read_groups_json(&json)?;
            groups_from = "data/registered_groups.json".into();
        }
    }
    let mut tasks = Vec::new();
    let mut messages = 0;
    if let Some(conn) = &conn {
        if has_table(conn, "scheduled_tasks")? {
            tasks = read_tasks(conn).context("cannot read scheduled_tasks")?;
        }
        if has_table(conn, "messages")? {
            messages = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
        }
    }
    if conn.is_none() && groups.is_empty() {
        anyhow::bail!(
            "{} has neither store/messages.db nor data/registered_groups.json: is it a NanoClaw directory?",
            from.display()
        );
    }
    Ok(Install {
        groups,
        groups_from,
        tasks,
        messages,
    })
}

fn read_groups(conn: &Connection) -> anyhow::Result<Vec<NcGroup>> {
    let cols = columns(conn, "registered_groups")?;
    // Older schemas lack the later columns: read what is there.
    let opt = |c: &str, default: &str| {
        if cols.iter().any(|x| x == c) {
            c.to_owned()
        } else {
            default.to_owned()
        }
    };
    let sql = format!(
        "SELECT jid, name, folder, trigger_pattern, {}, {}, {} FROM registered_groups ORDER BY added_at, jid",
        opt("requires_trigger", "1"),
        opt("is_main", "0"),
        opt("container_config", "NULL"),
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(NcGroup {
            jid: r.get(0)?,
            name: r.get(1)?,
            folder: r.get(2)?,
            trigger: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
            requires_trigger: r.get::<_, Option<i64>>(4)?.unwrap_or(1) != 0,
            is_main: r.get::<_, Option<i64>>(5)?.unwrap_or(0) != 0,
            container_config: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonGroup {
    name: String,
    folder: String,
    #[serde(default)]
    trigger: String,
    requires_trigger: Option<bool>,
    container_config: Option<serde_json::Value>,
}

fn read_groups_json(path: &Path) -> anyhow::Result<Vec<NcGroup>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let map: BTreeMap<String, JsonGroup> = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not NanoClaw's group map", path.display()))?;
    Ok(map
        .into_iter()
        .map(|(jid, g)| NcGroup {
            // Legacy installs marked main by its folder.
            is_main: g.folder == "main",
            jid,
            name: g.name,
            folder: g.folder,
            trigger: g.trigger,
            requires_trigger: g.requires_trigger.unwrap_or(true),
            container_config: g.container_config.map(|c| c.to_string()),
        })
        .collect())
}

fn read_tasks(conn: &Connection) -> anyhow::Result<Vec<NcTask>> {
    let cols = columns(conn, "scheduled_tasks")?;
    let has = |c: &str| cols.iter().any(|x| x == c);
    let sql = format!(
        "SELECT id, group_folder, prompt, schedule_type, schedule_value, status, {}, {}
         FROM scheduled_tasks ORDER BY created_at, id",
        if has("context_mode") {
            "context_mode"
        } else {
            "'isolated'"
        },
        if has("script") { "script" } else { "NULL" },
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(NcTask {
            id: r.get(0)?,
            group_folder: r.get(1)?,
            prompt: r.get(2)?,
            schedule_type: r.get(3)?,
            schedule_value: r.get(4)?,
            status: r
                .get::<_, Option<String>>(5)?
                .unwrap_or_else(|| "active".into()),
            context_mode: r
                .get::<_, Option<String>>(6)?
                .unwrap_or_else(|| "isolated".into()),
            script: r
                .get::<_, Option<String>>(7)?
                .filter(|s| !s.trim().is_empty()),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
