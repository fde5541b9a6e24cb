//! `update_task`: change a task's prompt, schedule or context mode.

use serde::Serialize;

use super::fields::{CONTEXT_MODE, PROMPT, SCHEDULE_TYPE, SCHEDULE_VALUE, TASK_ID};
use super::{ContextModeSchema, Ctx, Fields, RequestType, ScheduleTypeSchema, Tool, task_done};
use crate::actions::{self, TaskUpdate};
use crate::ipc::outcome::{Outcome, Step};
use crate::model::{ContextMode, ScheduleType, TaskId, ValidationError};
use crate::recurrence::Schedule;

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct UpdateTask {
    /// The task's id (see list_tasks).
    #[serde(rename = "taskId")]
    #[schemars(with = "String")]
    pub task_id: TaskId,
    /// A new prompt; omitted: unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A new schedule type; omitted: unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<ScheduleTypeSchema>")]
    pub schedule_type: Option<ScheduleType>,
    /// A new schedule value; omitted: unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_value: Option<String>,
    /// A new context mode; omitted: unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<ContextModeSchema>")]
    pub context_mode: Option<ContextMode>,
}

impl RequestType for UpdateTask {
    const TYPE: &'static str = "update_task";
    const TOOL: Option<Tool> = Some(Tool {
        name: "update_task",
        description: "Change a task's prompt, schedule or context mode.",
    });

    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(UpdateTask {
            task_id: f.parsed(TASK_ID, TaskId::parse)?,
            prompt: f.opt_str(PROMPT)?.map(str::to_owned),
            schedule_type: f.opt_parsed(SCHEDULE_TYPE, ScheduleType::parse)?,
            schedule_value: f.opt_str(SCHEDULE_VALUE)?.map(str::to_owned),
            context_mode: f.opt_parsed(CONTEXT_MODE, ContextMode::parse)?,
        })
    }

    fn check_before_writing(&self, timezone: chrono_tz::Tz) -> Result<(), ValidationError> {
        match (self.schedule_type, &self.schedule_value) {
            (Some(kind), Some(value)) => {
                Schedule::parse(kind, value, timezone, chrono::Utc::now()).map(|_| ())
            }
            _ => Ok(()),
        }
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        let task = cx.owned_task(&self.task_id)?;
        if self.schedule_type.is_some() || self.schedule_value.is_some() {
            let kind = self.schedule_type.unwrap_or(task.schedule_type);
            let value = self
                .schedule_value
                .as_deref()
                .unwrap_or(&task.schedule_value);
            cx.check_agent_schedule(kind, value)?;
        }
        let changes = TaskUpdate {
            prompt: self.prompt.clone(),
            schedule_type: self.schedule_type,
            schedule_value: self.schedule_value.clone(),
            context_mode: self.context_mode,
        };
        let after = actions::update_task(cx.tx, &self.task_id, changes, cx.now)?;
        Ok(task_done(
            &self.task_id,
            "updated",
            Some(&after),
            &task.group_folder,
        ))
    }
}
