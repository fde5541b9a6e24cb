//! Read-only views an agent reads from its IPC directory, written by the host:
//!
//! * `current_tasks.json` — the main group sees every task, other groups their own;
//! * `available_groups.json` — the main group sees every known chat (registered or
//!   not), other groups an empty list;
//! * `current_skills.json` — the skills available to the group and whether each is on.
//!
//! Each is rendered from the store under the store lock, then written atomically
//! (temp file + rename) outside it, and only when its bytes changed, so a refresh that
//! changes nothing costs no write and wakes no reader. The shapes follow NanoClaw v1's
//! (camelCase where NanoClaw used it) so NanoClaw agents read them unchanged.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rusqlite::Connection;
use serde_json::{Value, json};

use super::watcher::GroupDirs;
use crate::model::FolderName;
use crate::paths::Paths;
use crate::safe_dir::Durability;
use crate::skills;
use crate::store::groups::Group;
use crate::store::{self, StoreError, chats, groups, tasks};

pub const TASKS_FILE: &str = "current_tasks.json";
pub const GROUPS_FILE: &str = "available_groups.json";
pub const SKILLS_FILE: &str = "current_skills.json";

/// Which snapshots to render.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds {
    pub tasks: bool,
    pub groups: bool,
    pub skills: bool,
}

impl Kinds {
    pub const ALL: Kinds = Kinds {
        tasks: true,
        groups: true,
        skills: true,
    };
}

/// Rendered snapshot files, ready to be written: (group, file name, bytes).
pub type Rendered = Vec<(FolderName, &'static str, Vec<u8>)>;

/// Renders the chosen snapshots of `group` (call under the store lock).
pub fn render(
    conn: &Connection,
    paths: &Paths,
    group: &Group,
    kinds: Kinds,
    out: &mut Rendered,
) -> Result<(), StoreError> {
    let folder = &group.folder;
    if kinds.tasks {
        let filter = (!group.is_main).then_some(&group.folder);
        let list = tasks::list(conn, filter, None)?;
        let views: Vec<TaskView<'_>> = list.iter().map(TaskView::from).collect();
        out.push((folder.clone(), TASKS_FILE, pretty(&views)));
    }
    if kinds.groups {
        let list = if group.is_main {
            known_chats(conn)?
        } else {
            Vec::new()
        };
        out.push((
            folder.clone(),
            GROUPS_FILE,
            pretty(&json!({ "groups": list })),
        ));
    }
    if kinds.skills {
        let enabled = store::skills::enabled(conn, &group.folder)?;
        let list: Vec<Value> = skills::list(paths, &group.folder)
            .into_iter()
            .map(|s| {
                let on = enabled.contains(&s.name);
                json!({ "name": s.name, "scope": s.scope, "enabled": on })
            })
            .collect();
        out.push((
            folder.clone(),
            SKILLS_FILE,
            pretty(&json!({ "skills": list })),
        ));
    }
    Ok(())
}

/// Every chat the daemon knows: registered groups first, then other seen chats.
fn known_chats(conn: &Connection) -> Result<Vec<Value>, StoreError> {
    let registered = groups::list(conn)?;
    let mut list: Vec<Value> = Vec::new();
    let seen = chats::list(conn)?;
    let activity: HashMap<&str, _> = seen
        .iter()
        .map(|c| (c.jid.as_str(), c.last_message_at))
        .collect();
    for g in &registered {
        let jid = g.jid.to_string();
        list.push(json!({
            "jid": jid,
            "name": g.name,
            "folder": g.folder,
            "isMain": g.is_main,
            "isRegistered": true,
            "lastActivity": activity.get(jid.as_str()).copied().flatten(),
        }));
    }
    for c in &seen {
        if registered.iter().any(|g| g.jid.to_string() == c.jid) {
            continue;
        }
        list.push(json!({
            "jid": c.jid,
            "name": c.name,
            "isRegistered": false,
            "lastActivity": c.last_message_at,
        }));
    }
    Ok(list)
}

/// One task as `current_tasks.json` shows it (NanoClaw's field names), serialised
/// straight from the row: no intermediate JSON tree for thousands of tasks.
#[derive(serde::Serialize)]
struct TaskView<'a> {
    #[serde(rename = "chatJid")]
    chat_jid: &'a crate::model::Jid,
    context_mode: crate::model::ContextMode,
    #[serde(rename = "groupFolder")]
    group_folder: &'a FolderName,
    id: &'a crate::model::TaskId,
    last_run: Option<chrono::DateTime<chrono::Utc>>,
    next_run: Option<chrono::DateTime<chrono::Utc>>,
    prompt: &'a str,
    schedule_type: crate::model::ScheduleType,
    schedule_value: &'a str,
    status: crate::model::TaskStatus,
    timezone: &'static str,
}

impl<'a> From<&'a tasks::Task> for TaskView<'a> {
    fn from(t: &'a tasks::Task) -> Self {
        TaskView {
            chat_jid: &t.chat_jid,
            context_mode: t.context_mode,
            group_folder: &t.group_folder,
            id: &t.id,
            last_run: t.last_run,
            next_run: t.next_run,
            prompt: &t.prompt,
            schedule_type: t.schedule_type,
            schedule_value: &t.schedule_value,
            status: t.status,
            timezone: t.timezone.name(),
        }
    }
}

fn pretty<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Writes snapshot files through each group's verified IPC directory descriptor,
/// skipping those whose content is unchanged since the last write through this writer.
#[derive(Default)]
pub struct Writer {
    last: HashMap<(FolderName, &'static str), u64>,
}

impl Writer {
    pub fn write(&mut self, dirs: &BTreeMap<FolderName, Arc<GroupDirs>>, rendered: Rendered) {
        for (folder, file, bytes) in rendered {
            let Some(d) = dirs.get(&folder) else { continue };
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            let digest = h.finish();
            let key = (folder, file);
            if self.last.get(&key) == Some(&digest) && d.base.stat(file).is_ok() {
                continue;
            }
            match d.base.write_atomic(file, &bytes, Durability::Atomic) {
                Ok(()) => {
                    self.last.insert(key, digest);
                }
                Err(e) => {
                    tracing::error!(folder = %key.0, file, error = %e, "cannot write an IPC snapshot")
                }
            }
        }
    }

    /// Forgets what was written for `folder` (its directory was removed or recreated).
    pub fn forget(&mut self, folder: &FolderName) {
        self.last.retain(|(f, _), _| f != folder);
    }
}
