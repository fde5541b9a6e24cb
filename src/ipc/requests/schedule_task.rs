//! `schedule_task`: create a task for the group registered to the target chat.

use serde::Serialize;
use serde_json::json;

use super::fields::{CONTEXT_MODE, PROMPT, SCHEDULE_TYPE, SCHEDULE_VALUE, TARGET_JID};
use super::{ContextModeSchema, Ctx, Fields, RequestType, ScheduleTypeSchema, Tool, task_changed};
use crate::actions::{self, NewTask};
use crate::ipc::authorize::Act;
use crate::ipc::outcome::{Outcome, Step};
use crate::model::{ContextMode, Jid, ScheduleType, ValidationError};
use crate::recurrence::Schedule;
use crate::store::groups;

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ScheduleTask {
    /// What the agent should do when the task runs.
    pub prompt: String,
    /// `cron` (5-field crontab in the host's timezone), `interval` (milliseconds) or
    /// `once` (a local time like 2026-11-25T09:00:00, or RFC 3339).
    #[schemars(with = "ScheduleTypeSchema")]
    pub schedule_type: ScheduleType,
    /// The crontab line, the interval in milliseconds, or the time.
    pub schedule_value: String,
    /// `group` (continue this group's conversation; default) or `isolated` (a fresh one).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<ContextModeSchema>")]
    pub context_mode: Option<ContextMode>,
    /// The chat the task's runs answer in (another group's: main group only);
    /// default: this group's own chat.
    #[serde(rename = "targetJid", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub target_jid: Option<Jid>,
}

impl RequestType for ScheduleTask {
    const TYPE: &'static str = "schedule_task";
    const TOOL: Option<Tool> = Some(Tool {
        name: "schedule_task",
        description: "Schedule a task: the agent runs `prompt` on a schedule (cron, interval in ms, or once at a local time) and its reply goes to the chat.",
    });

    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(ScheduleTask {
            prompt: f.str(PROMPT)?.to_owned(),
            schedule_type: f.parsed(SCHEDULE_TYPE, ScheduleType::parse)?,
            schedule_value: f.str(SCHEDULE_VALUE)?.to_owned(),
            context_mode: f.opt_parsed(CONTEXT_MODE, ContextMode::parse)?,
            target_jid: f.opt_parsed(TARGET_JID, Jid::parse)?,
        })
    }

    fn check_before_writing(&self, timezone: chrono_tz::Tz) -> Result<(), ValidationError> {
        Schedule::parse(
            self.schedule_type,
            &self.schedule_value,
            timezone,
            chrono::Utc::now(),
        )
        .map(|_| ())
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        let jid = self
            .target_jid
            .clone()
            .unwrap_or_else(|| cx.sender.jid.clone());
        let target = groups::get_by_jid(cx.tx, &jid)?;
        cx.authorize(Act::ScheduleTask {
            target_folder: target.as_ref().map(|g| &g.folder),
        })?;
        let Some(target) = target else {
            return Err(Outcome::invalid(format!(
                "invalid targetJid: {jid} is not a registered group's chat"
            )));
        };
        cx.check_agent_schedule(self.schedule_type, &self.schedule_value)?;
        cx.check_room(&target.folder)?;
        let task = actions::create_task(
            cx.tx,
            NewTask {
                id: None,
                group_folder: target.folder.clone(),
                chat_jid: target.jid,
                prompt: self.prompt.clone(),
                schedule_type: self.schedule_type,
                schedule_value: self.schedule_value.clone(),
                context_mode: self.context_mode.unwrap_or(ContextMode::Group),
                timezone: None,
            },
            &cx.origin(),
            cx.env.timezone,
            cx.now,
        )?;
        Ok(Outcome::ok(
            format!(
                "task {} scheduled for group {}; next run {}",
                task.id,
                task.group_folder,
                task.next_run
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into())
            ),
            Some(json!({ "taskId": task.id, "nextRun": task.next_run })),
            task_changed(&task.group_folder, &task.id),
        ))
    }
}
