//! The state changes an admin (CLI) or an agent (IPC) can ask for, validated the same
//! way for both.
//!
//! Each function takes a `&Connection` — usually an open transaction — and the
//! current time, checks every rule, and applies the change. Who may ask for what is
//! not decided here: the IPC layer authorises first, the CLI is the owner.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::Connection;

use crate::model::{
    ContextMode, FolderName, Jid, ScheduleType, SkillName, TaskId, TaskStatus, ValidationError,
    validate_name, validate_trigger,
};
use crate::recurrence::Schedule;
use crate::store::groups::{self, Group};
use crate::store::tasks::{self, Task};
use crate::store::{StoreError, skills};

/// The longest prompt a task may carry.
pub(crate) const MAX_PROMPT_CHARS: usize = 20_000;
/// The shortest time between runs of any schedule, even one the owner creates from
/// the CLI. Agents have a higher floor (`MIN_TASK_INTERVAL_MS`, checked by IPC).
pub(crate) const OWNER_MIN_INTERVAL_MS: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(
        "{what} {id:?} not found (it may have been removed); `rust_claw {list}` shows what exists"
    )]
    NotFound {
        what: &'static str,
        id: String,
        /// The CLI verb that lists what exists.
        list: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ActionError {
    fn from(e: rusqlite::Error) -> Self {
        ActionError::Store(StoreError::from(e))
    }
}

type Result<T> = std::result::Result<T, ActionError>;

/// A group registration request, fields still unvalidated strings where users type them.
#[derive(Debug, Clone)]
pub struct RegisterGroup {
    pub jid: Jid,
    pub name: String,
    pub folder: FolderName,
    /// `None` for the default, `@<ASSISTANT_NAME>`.
    pub trigger: Option<String>,
    pub requires_trigger: bool,
    pub is_main: bool,
    pub container_config: Option<serde_json::Value>,
}

impl RegisterGroup {
    /// The main group: answers every message (no trigger needed), default trigger word
    /// and container settings.
    pub fn main(jid: Jid, name: impl Into<String>, folder: FolderName) -> RegisterGroup {
        RegisterGroup {
            jid,
            name: name.into(),
            folder,
            trigger: None,
            requires_trigger: false,
            is_main: true,
            container_config: None,
        }
    }
}

pub fn register_group(
    conn: &Connection,
    req: RegisterGroup,
    default_trigger: &str,
    now: DateTime<Utc>,
) -> Result<Group> {
    let name = validate_name(&req.name)?;
    let trigger = validate_trigger(req.trigger.as_deref().unwrap_or(default_trigger))?;
    if let Some(existing) = groups::get_by_jid(conn, &req.jid)? {
        return Err(ActionError::Conflict(format!(
            "chat {} is already registered as group {:?} (folder {})",
            req.jid, existing.name, existing.folder
        )));
    }
    if let Some(existing) = groups::get_by_folder(conn, &req.folder)? {
        return Err(ActionError::Conflict(format!(
            "folder {} is already used by chat {}; choose another --folder",
            req.folder, existing.jid
        )));
    }
    if req.is_main
        && let Some(main) = groups::get_main(conn)?
    {
        return Err(ActionError::Conflict(format!(
            "a main group is already registered (chat {}, folder {})",
            main.jid, main.folder
        )));
    }
    let group = Group {
        jid: req.jid,
        name,
        folder: req.folder,
        trigger,
        requires_trigger: req.requires_trigger,
        is_main: req.is_main,
        container_config: req.container_config,
        added_at: now,
    };
    groups::insert(conn, &group)?;
    Ok(group)
}

/// Unregisters a chat. Its folder, tasks and history stay on disk; its active tasks
/// are paused (an unregistered group never runs). Returns the group and how many
/// tasks were paused.
pub(crate) fn unregister_group(conn: &Connection, jid: &Jid) -> Result<(Group, usize)> {
    let group = groups::get_by_jid(conn, jid)?.ok_or_else(|| ActionError::NotFound {
        what: "group with jid",
        list: "list-groups",
        id: jid.to_string(),
    })?;
    groups::delete(conn, jid)?;
    let paused = tasks::pause_group(conn, &group.folder)?;
    Ok((group, paused))
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: Option<TaskId>,
    pub group_folder: FolderName,
    pub chat_jid: Jid,
    pub prompt: String,
    pub schedule_type: ScheduleType,
    pub schedule_value: String,
    pub context_mode: ContextMode,
    /// `None` for the configured TIMEZONE.
    pub timezone: Option<Tz>,
}

fn validate_prompt(prompt: &str) -> std::result::Result<String, ValidationError> {
    let p = prompt.trim();
    if p.is_empty() {
        return Err(ValidationError::new("prompt", "must not be empty"));
    }
    if p.chars().count() > MAX_PROMPT_CHARS {
        return Err(ValidationError::new(
            "prompt",
            format!("must be at most {MAX_PROMPT_CHARS} characters"),
        ));
    }
    Ok(p.to_owned())
}

pub fn create_task(
    conn: &Connection,
    req: NewTask,
    created_by: &str,
    default_tz: Tz,
    now: DateTime<Utc>,
) -> Result<Task> {
    let prompt = validate_prompt(&req.prompt)?;
    let group = groups::get_by_folder(conn, &req.group_folder)?.ok_or_else(|| {
        ValidationError::new(
            "group_folder",
            format!("{} is not a registered group's folder", req.group_folder),
        )
    })?;
    if group.jid != req.chat_jid {
        return Err(ValidationError::new(
            "chat_jid",
            format!(
                "{} is not registered to group {} (its chat is {})",
                req.chat_jid, group.folder, group.jid
            ),
        )
        .into());
    }
    let tz = req.timezone.unwrap_or(default_tz);
    let schedule = Schedule::parse(req.schedule_type, &req.schedule_value, tz, now)?;
    schedule.check_min_gap(tz, now, OWNER_MIN_INTERVAL_MS, "any schedule")?;
    let id = req
        .id
        .unwrap_or_else(|| TaskId::generate(now.timestamp_millis()));
    if tasks::get(conn, &id)?.is_some() {
        return Err(ActionError::Conflict(format!(
            "a task with id {id} already exists"
        )));
    }
    let task = Task {
        id,
        group_folder: group.folder,
        chat_jid: group.jid,
        prompt,
        schedule_type: req.schedule_type,
        schedule_value: req.schedule_value.trim().to_owned(),
        context_mode: req.context_mode,
        timezone: tz,
        next_run: schedule.first_run(tz, now),
        last_run: None,
        last_result: None,
        status: TaskStatus::Active,
        created_by: created_by.to_owned(),
        created_at: now,
    };
    tasks::insert(conn, &task)?;
    Ok(task)
}

pub(crate) fn get_task(conn: &Connection, id: &TaskId) -> Result<Task> {
    tasks::get(conn, id)?.ok_or_else(|| ActionError::NotFound {
        what: "task",
        list: "list-tasks",
        id: id.to_string(),
    })
}

/// Stops future runs; the schedule is kept. Pausing a paused task changes nothing.
pub fn pause_task(conn: &Connection, id: &TaskId) -> Result<Task> {
    let mut task = get_task(conn, id)?;
    match task.status {
        TaskStatus::Active => {
            task.status = TaskStatus::Paused;
            tasks::update(conn, &task)?;
            Ok(task)
        }
        TaskStatus::Paused => Ok(task),
        s => Err(ActionError::Conflict(format!(
            "task {id} is {s} and cannot be paused"
        ))),
    }
}

/// Resumes a paused task, recomputing its next run from now.
pub fn resume_task(conn: &Connection, id: &TaskId, now: DateTime<Utc>) -> Result<Task> {
    let mut task = get_task(conn, id)?;
    match task.status {
        TaskStatus::Paused => {
            let schedule =
                Schedule::parse(task.schedule_type, &task.schedule_value, task.timezone, now)
                    .or_else(|e| match task.schedule_type {
                        // A once task whose time passed while paused runs now.
                        ScheduleType::Once => Ok(Schedule::Once { at: now }),
                        _ => Err(e),
                    })?;
            task.next_run = schedule.resume_at(task.timezone, now);
            task.status = TaskStatus::Active;
            tasks::update(conn, &task)?;
            Ok(task)
        }
        TaskStatus::Active => Ok(task),
        s => Err(ActionError::Conflict(format!(
            "task {id} is {s} and cannot be resumed"
        ))),
    }
}

/// Deletes a task and its run log.
pub fn cancel_task(conn: &Connection, id: &TaskId) -> Result<Task> {
    let task = get_task(conn, id)?;
    tasks::delete(conn, id)?;
    Ok(task)
}

/// Changes to a task; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskUpdate {
    pub(crate) prompt: Option<String>,
    pub(crate) schedule_type: Option<ScheduleType>,
    pub(crate) schedule_value: Option<String>,
    pub(crate) context_mode: Option<ContextMode>,
}

/// Applies `changes`; a new schedule recomputes the next run from now.
pub(crate) fn update_task(
    conn: &Connection,
    id: &TaskId,
    changes: TaskUpdate,
    now: DateTime<Utc>,
) -> Result<Task> {
    let mut task = get_task(conn, id)?;
    if let Some(p) = changes.prompt {
        task.prompt = validate_prompt(&p)?;
    }
    if let Some(m) = changes.context_mode {
        task.context_mode = m;
    }
    if changes.schedule_type.is_some() || changes.schedule_value.is_some() {
        let kind = changes.schedule_type.unwrap_or(task.schedule_type);
        let value = changes
            .schedule_value
            .unwrap_or_else(|| task.schedule_value.clone());
        let schedule = Schedule::parse(kind, &value, task.timezone, now)?;
        schedule.check_min_gap(task.timezone, now, OWNER_MIN_INTERVAL_MS, "any schedule")?;
        task.schedule_type = kind;
        task.schedule_value = value.trim().to_owned();
        task.next_run = schedule.first_run(task.timezone, now);
        if matches!(task.status, TaskStatus::Completed | TaskStatus::Failed) {
            task.status = TaskStatus::Active;
        }
    }
    tasks::update(conn, &task)?;
    Ok(task)
}

/// Turns a skill on or off for a group. `available` lists the skills that exist for
/// it; unknown names are refused.
pub fn set_skill(
    conn: &Connection,
    folder: &FolderName,
    name: &str,
    on: bool,
    available: &[String],
    now: DateTime<Utc>,
) -> Result<()> {
    let name = SkillName::parse(name)?.as_str().to_owned();
    if !available.contains(&name) {
        return Err(ValidationError::new(
            "skill_name",
            format!(
                "no skill {name:?} exists for group {folder} (available: {})",
                if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                }
            ),
        )
        .into());
    }
    skills::set(conn, folder, &name, on, now)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use chrono::TimeZone;

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        (dir, store)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn reg(jid: &str, folder: &str, main: bool) -> RegisterGroup {
        RegisterGroup {
            jid: Jid::parse(jid).unwrap(),
            name: folder.to_uppercase(),
            folder: FolderName::parse(folder).unwrap(),
            trigger: None,
            requires_trigger: !main,
            is_main: main,
            container_config: None,
        }
    }

    fn task(folder: &str, jid: &str, kind: ScheduleType, value: &str) -> NewTask {
        NewTask {
            id: None,
            group_folder: FolderName::parse(folder).unwrap(),
            chat_jid: Jid::parse(jid).unwrap(),
            prompt: "hello".into(),
            schedule_type: kind,
            schedule_value: value.into(),
            context_mode: ContextMode::Group,
            timezone: None,
        }
    }

    /// A task created from the CLI in UTC at [`now`].
    fn create(c: &rusqlite::Connection, t: NewTask) -> Result<Task> {
        create_task(c, t, "cli", Tz::UTC, now())
    }

    #[test]
    fn registration_conflicts() {
        let (_d, store) = setup();
        let c = store.conn();
        let g = register_group(c, reg("111111@discord", "main", true), "@Andy", now()).unwrap();
        assert_eq!(g.trigger, "@Andy");
        assert_eq!(groups::get_by_folder(c, &g.folder).unwrap().unwrap(), g);
        for (r, needle) in [
            (reg("111111@discord", "other", false), "already registered"),
            (reg("222222@discord", "main", false), "already used"),
            (
                reg("333333@discord", "second-main", true),
                "main group is already",
            ),
        ] {
            let e = register_group(c, r, "@Andy", now()).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        let mut bad = reg("444444@discord", "ops", false);
        bad.trigger = Some("Andy".into());
        assert!(matches!(
            register_group(c, bad, "@Andy", now()),
            Err(ActionError::Invalid(_))
        ));
        let _ = unregister_group(c, &Jid::parse("111111@discord").unwrap()).unwrap();
        assert!(groups::list(c).unwrap().is_empty());
    }

    #[test]
    fn tasks_need_a_registered_group_and_its_own_chat() {
        let (_d, store) = setup();
        let c = store.conn();
        register_group(c, reg("111111@discord", "main", true), "@Andy", now()).unwrap();
        register_group(c, reg("222222@discord", "ops", false), "@Andy", now()).unwrap();
        let e = create(
            c,
            task("nope", "111111@discord", ScheduleType::Cron, "0 9 * * *"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("group_folder"), "{e}");
        let e = create(
            c,
            task("ops", "111111@discord", ScheduleType::Cron, "0 9 * * *"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("chat_jid"), "{e}");
        let t = create(
            c,
            task("ops", "222222@discord", ScheduleType::Cron, "0 9 * * *"),
        )
        .unwrap();
        assert_eq!(
            t.next_run,
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap())
        );
        assert_eq!(tasks::get(c, &t.id).unwrap().unwrap(), t);
        let mut dup = task("ops", "222222@discord", ScheduleType::Interval, "1000");
        dup.id = Some(t.id.clone());
        assert!(matches!(create(c, dup), Err(ActionError::Conflict(_))));
    }

    #[test]
    fn pause_resume_cancel() {
        let (_d, store) = setup();
        let c = store.conn();
        register_group(c, reg("111111@discord", "main", true), "@Andy", now()).unwrap();
        let t = create(
            c,
            task("main", "111111@discord", ScheduleType::Interval, "60000"),
        )
        .unwrap();
        assert_eq!(pause_task(c, &t.id).unwrap().status, TaskStatus::Paused);
        assert_eq!(pause_task(c, &t.id).unwrap().status, TaskStatus::Paused);
        let later = now() + chrono::Duration::hours(1);
        let r = resume_task(c, &t.id, later).unwrap();
        assert_eq!(r.status, TaskStatus::Active);
        assert_eq!(r.next_run, Some(later + chrono::Duration::minutes(1)));
        cancel_task(c, &t.id).unwrap();
        let missing = TaskId::parse("missing").unwrap();
        for e in [
            pause_task(c, &t.id).unwrap_err(),
            resume_task(c, &missing, later).unwrap_err(),
            cancel_task(c, &missing).unwrap_err(),
        ] {
            assert!(matches!(e, ActionError::NotFound { .. }), "{e}");
        }
    }

    #[test]
    fn update_recomputes_the_schedule() {
        let (_d, store) = setup();
        let c = store.conn();
        register_group(c, reg("111111@discord", "main", true), "@Andy", now()).unwrap();
        let t = create(
            c,
            task("main", "111111@discord", ScheduleType::Interval, "60000"),
        )
        .unwrap();
        let changes = TaskUpdate {
            schedule_type: Some(ScheduleType::Cron),
            schedule_value: Some("0 18 * * *".into()),
            prompt: Some("evening".into()),
            ..Default::default()
        };
        let u = update_task(c, &t.id, changes, now()).unwrap();
        assert_eq!(
            u.next_run,
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 18, 0, 0).unwrap())
        );
        assert_eq!(u.prompt, "evening");
        let bad = TaskUpdate {
            schedule_value: Some("not cron".into()),
            ..Default::default()
        };
        assert!(matches!(
            update_task(c, &t.id, bad, now()),
            Err(ActionError::Invalid(_))
        ));
    }
}
