//! `cancel_task`: delete a task and its run log.

use serde::Serialize;

use super::fields::TASK_ID;
use super::{Ctx, Fields, RequestType, Tool, task_done};
use crate::actions;
use crate::ipc::outcome::{Outcome, Step};
use crate::model::{TaskId, ValidationError};

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CancelTask {
    /// The task's id (see list_tasks).
    #[serde(rename = "taskId")]
    #[schemars(with = "String")]
    pub task_id: TaskId,
}

impl RequestType for CancelTask {
    const TYPE: &'static str = "cancel_task";
    const TOOL: Option<Tool> = Some(Tool {
        name: "cancel_task",
        description: "Cancel (delete) a task.",
    });

    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(CancelTask {
            task_id: f.parsed(TASK_ID, TaskId::parse)?,
        })
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        let task = cx.owned_task(&self.task_id)?;
        actions::cancel_task(cx.tx, &self.task_id)?;
        Ok(task_done(&self.task_id, "cancelled", None, &task.group_folder))
    }
}
