//! `resume_task`: a paused task runs again; its next run is computed from now.

use serde::Serialize;

use super::fields::TASK_ID;
use super::{Ctx, Fields, RequestType, Tool, task_done};
use crate::actions;
use crate::ipc::outcome::{Outcome, Step};
use crate::model::{TaskId, TaskStatus, ValidationError};

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ResumeTask {
    /// The task's id (see list_tasks).
    #[serde(rename = "taskId")]
    #[schemars(with = "String")]
    pub task_id: TaskId,
}

impl RequestType for ResumeTask {
    const TYPE: &'static str = "resume_task";
    const TOOL: Option<Tool> = Some(Tool {
        name: "resume_task",
        description: "Resume a paused task; its next run is computed from now.",
    });

    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(ResumeTask {
            task_id: f.parsed(TASK_ID, TaskId::parse)?,
        })
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        let task = cx.owned_task(&self.task_id)?;
        if task.status != TaskStatus::Active {
            cx.check_room(&task.group_folder)?;
        }
        let after = actions::resume_task(cx.tx, &self.task_id, cx.now)?;
        Ok(task_done(&self.task_id, "resumed", Some(&after), &task.group_folder))
    }
}
