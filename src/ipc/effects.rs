//! The effect of each request type: authorise with the facts read in the open
//! transaction, then apply through [`crate::actions`] (the rules shared with the CLI).

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde_json::{Value, json};

use super::apply::{Changes, Env};
use super::authorize::{Act, Denied, Sender, authorize};
use super::protocol::{Request, Status};
use crate::actions::{self, ActionError, NewTask, RegisterGroup, TaskUpdate};
use crate::bus::Topic;
use crate::model::{ContextMode, FolderName, ScheduleType, TaskStatus};
use crate::recurrence::Schedule;
use crate::store::groups::Group;
use crate::store::{StoreError, groups, outbox, tasks};

pub(super) struct Done {
    pub(super) message: String,
    pub(super) result: Option<Value>,
    pub(super) changes: Changes,
}

pub(super) struct Fail {
    pub(super) status: Status,
    pub(super) message: String,
    /// Hostile or malformed input: keep a copy in the quarantine.
    pub(super) quarantine: bool,
}

impl Fail {
    pub(super) fn hostile(message: String) -> Fail {
        Fail {
            status: Status::Invalid,
            message,
            quarantine: true,
        }
    }
}

impl From<Denied> for Fail {
    fn from(d: Denied) -> Fail {
        Fail {
            status: Status::Denied,
            message: d.0,
            quarantine: false,
        }
    }
}

/// Applies an authorised request. `Ok(Err(_))` is a refusal to answer; `Err(_)` a
/// host-side failure that rolls the whole transaction back.
pub(super) fn effect(
    tx: &Connection,
    env: &Env,
    sender: &Group,
    req: &Request,
    now: DateTime<Utc>,
) -> Result<Result<Done, Fail>, StoreError> {
    match effect_inner(tx, env, sender, req, now) {
        Ok(done) => Ok(Ok(done)),
        Err(Failure::Fail(f)) => Ok(Err(f)),
        Err(Failure::Store(e)) => Err(e),
    }
}

enum Failure {
    Fail(Fail),
    Store(StoreError),
}

impl From<Denied> for Failure {
    fn from(d: Denied) -> Self {
        Failure::Fail(d.into())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<ActionError> for Failure {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Store(s) => Failure::Store(s),
            // A broken rule (bad cron, prompt too long, ...): refused and kept.
            ActionError::Invalid(v) => Failure::Fail(Fail::hostile(v.to_string())),
            // A request that is fine in form but does not fit the current state.
            other => Failure::Fail(Fail {
                status: Status::Invalid,
                message: other.to_string(),
                quarantine: false,
            }),
        }
    }
}

fn invalid(message: String) -> Failure {
    Failure::Fail(Fail {
        status: Status::Invalid,
        message,
        quarantine: false,
    })
}

/// An agent's schedule may not run more often than `MIN_TASK_INTERVAL_MS`.
fn check_agent_schedule(
    env: &Env,
    kind: ScheduleType,
    value: &str,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let schedule = Schedule::parse(kind, value, env.timezone, now).map_err(ActionError::from)?;
    schedule
        .check_min_gap(
            env.timezone,
            now,
            env.limits.min_task_interval_ms,
            "schedules made by an agent (MIN_TASK_INTERVAL_MS)",
        )
        .map_err(ActionError::from)?;
    Ok(())
}

/// A group may hold at most `MAX_TASKS_PER_GROUP` active tasks.
fn check_room(tx: &Connection, env: &Env, folder: &FolderName) -> Result<(), Failure> {
    let max = env.limits.max_tasks_per_group;
    if tasks::count_active(tx, folder)? >= max {
        return Err(invalid(format!(
            "group {folder} already has {max} active tasks, the most allowed (MAX_TASKS_PER_GROUP); cancel or pause one first"
        )));
    }
    Ok(())
}

fn effect_inner(
    tx: &Connection,
    env: &Env,
    sender: &Group,
    req: &Request,
    now: DateTime<Utc>,
) -> Result<Done, Failure> {
    let who = Sender {
        folder: &sender.folder,
        is_main: sender.is_main,
    };
    let origin = format!("ipc:{}", sender.folder);
    let task_changed = |folder: &FolderName| {
        Changes {
            task_folders: vec![folder.clone()],
            ..Default::default()
        }
        .topic(Topic::Tasks)
    };
    match req {
        Request::Message { chat_jid, text } => {
            let target = groups::get_by_jid(tx, chat_jid)?;
            authorize(
                who,
                Act::SendMessage {
                    target_folder: target.as_ref().map(|g| &g.folder),
                },
            )?;
            let id = outbox::enqueue(tx, chat_jid, text, &origin, now)?;
            Ok(Done {
                message: format!("message queued for {chat_jid}"),
                result: Some(json!({ "outboxId": id })),
                changes: Changes::default().topic(Topic::Outbox),
            })
        }
        Request::ScheduleTask {
            prompt,
            schedule_type,
            schedule_value,
            context_mode,
            target_jid,
        } => {
            let jid = target_jid.clone().unwrap_or_else(|| sender.jid.clone());
            let target = groups::get_by_jid(tx, &jid)?;
            authorize(
                who,
                Act::ScheduleTask {
                    target_folder: target.as_ref().map(|g| &g.folder),
                },
            )?;
            let Some(target) = target else {
                return Err(invalid(format!(
                    "invalid targetJid: {jid} is not a registered group's chat"
                )));
            };
            check_agent_schedule(env, *schedule_type, schedule_value, now)?;
            check_room(tx, env, &target.folder)?;
            let task = actions::create_task(
                tx,
                NewTask {
                    id: None,
                    group_folder: target.folder.clone(),
                    chat_jid: target.jid,
                    prompt: prompt.clone(),
                    schedule_type: *schedule_type,
                    schedule_value: schedule_value.clone(),
                    context_mode: context_mode.unwrap_or(ContextMode::Group),
                    timezone: None,
                },
                &origin,
                env.timezone,
                now,
            )?;
            Ok(Done {
                message: format!(
                    "task {} scheduled for group {}; next run {}",
                    task.id,
                    task.group_folder,
                    task.next_run
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "never".into())
                ),
                result: Some(json!({ "taskId": task.id, "nextRun": task.next_run })),
                changes: task_changed(&task.group_folder),
            })
        }
        Request::UpdateTask { task_id, .. }
        | Request::PauseTask { task_id }
        | Request::ResumeTask { task_id }
        | Request::CancelTask { task_id } => {
            let Some(task) = tasks::get(tx, task_id)? else {
                return Err(invalid(format!("task {task_id} not found")));
            };
            authorize(
                who,
                Act::ChangeTask {
                    owner: &task.group_folder,
                },
            )?;
            let (verb, after) = match req {
                Request::PauseTask { .. } => ("paused", Some(actions::pause_task(tx, task_id)?)),
                Request::ResumeTask { .. } => {
                    if task.status != TaskStatus::Active {
                        check_room(tx, env, &task.group_folder)?;
                    }
                    ("resumed", Some(actions::resume_task(tx, task_id, now)?))
                }
                Request::CancelTask { .. } => {
                    actions::cancel_task(tx, task_id)?;
                    ("cancelled", None)
                }
                Request::UpdateTask {
                    prompt,
                    schedule_type,
                    schedule_value,
                    context_mode,
                    ..
                } => {
                    if schedule_type.is_some() || schedule_value.is_some() {
                        let kind = schedule_type.unwrap_or(task.schedule_type);
                        let value = schedule_value.as_deref().unwrap_or(&task.schedule_value);
                        check_agent_schedule(env, kind, value, now)?;
                    }
                    let changes = TaskUpdate {
                        prompt: prompt.clone(),
                        schedule_type: *schedule_type,
                        schedule_value: schedule_value.clone(),
                        context_mode: *context_mode,
                    };
                    (
                        "updated",
                        Some(actions::update_task(tx, task_id, changes, now)?),
                    )
                }
                _ => unreachable!("matched above"),
            };
            Ok(Done {
                message: format!("task {task_id} {verb}"),
                result: after
                    .map(|t| json!({ "taskId": t.id, "status": t.status, "nextRun": t.next_run })),
                changes: task_changed(&task.group_folder),
            })
        }
        Request::RegisterGroup {
            jid,
            name,
            folder,
            trigger,
            requires_trigger,
        } => {
            authorize(who, Act::RegisterGroup)?;
            let g = actions::register_group(
                tx,
                RegisterGroup {
                    jid: jid.clone(),
                    name: name.clone(),
                    folder: folder.clone(),
                    trigger: trigger.clone(),
                    requires_trigger: requires_trigger.unwrap_or(true),
                    // Nobody becomes main through IPC.
                    is_main: false,
                    container_config: None,
                },
                &env.default_trigger,
                now,
            )?;
            Ok(Done {
                message: format!(
                    "registered chat {} as group {:?} (folder {})",
                    g.jid, g.name, g.folder
                ),
                result: Some(json!({ "jid": g.jid, "folder": g.folder, "trigger": g.trigger })),
                changes: Changes::default().topic(Topic::Groups),
            })
        }
        Request::RefreshGroups => {
            authorize(who, Act::RefreshGroups)?;
            Ok(Done {
                message: "group list refreshed".into(),
                result: None,
                changes: Changes {
                    refresh_groups: true,
                    ..Default::default()
                },
            })
        }
        Request::EnableSkill {
            skill_name,
            target_group_folder,
        }
        | Request::DisableSkill {
            skill_name,
            target_group_folder,
        } => {
            let on = matches!(req, Request::EnableSkill { .. });
            let target = target_group_folder.as_ref().unwrap_or(&sender.folder);
            authorize(who, Act::ChangeSkills { target })?;
            if groups::get_by_folder(tx, target)?.is_none() {
                return Err(invalid(format!(
                    "invalid targetGroupFolder: {target} is not a registered group's folder"
                )));
            }
            let available = crate::skills::available(&env.paths, target);
            actions::set_skill(tx, target, skill_name, on, &available, now)?;
            Ok(Done {
                message: format!(
                    "skill {skill_name} {} for group {target}",
                    if on { "enabled" } else { "disabled" }
                ),
                result: None,
                changes: Changes {
                    skill_folders: vec![target.clone()],
                    ..Default::default()
                }
                .topic(Topic::Skills),
            })
        }
        Request::RefreshSkills => Ok(Done {
            message: "skills list refreshed".into(),
            result: None,
            changes: Changes {
                skill_folders: vec![sender.folder.clone()],
                ..Default::default()
            },
        }),
    }
}
