//! `pause_task`: no runs until the task is resumed.

use serde::Serialize;

use super::fields::TASK_ID;
use super::{Ctx, Fields, RequestType, Tool, task_done};
use crate::actions;
use crate::ipc::outcome::{Outcome, Step};
use crate::model::{TaskId, ValidationError};

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PauseTask {
    /// The task's id (see list_tasks).
    #[serde(rename = "taskId")]
    #[schemars(with = "String")]
    pub task_id: TaskId,
}

impl RequestType for PauseTask {
    const TYPE: &'static str = "pause_task";
    const TOOL: Option<Tool> = Some(Tool {
        name: "pause_task",
        description: "Pause a task: no runs until it is resumed.",
    });

    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(PauseTask {
            task_id: f.parsed(TASK_ID, TaskId::parse)?,
        })
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        let task = cx.owned_task(&self.task_id)?;
        let after = actions::pause_task(cx.tx, &self.task_id)?;
        Ok(task_done(&self.task_id, "paused", Some(&after), &task.group_folder))
    }
}
