//! `refresh_skills`: rescan the sender's skill directories and rewrite its
//! `current_skills.json` (`agent-tools`' `list_skills` asks for it first).

use serde::Serialize;

use super::{Ctx, Fields, RequestType, Tool};
use crate::ipc::apply::Changes;
use crate::ipc::outcome::{Outcome, Step};
use crate::model::ValidationError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RefreshSkills {}

impl RequestType for RefreshSkills {
    const TYPE: &'static str = "refresh_skills";
    const TOOL: Option<Tool> = None;

    fn parse(_: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(RefreshSkills {})
    }

    /// Every group may refresh its own skills: no row of the table to consult.
    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        Ok(Outcome::ok(
            "skills list refreshed".into(),
            None,
            Changes {
                skill_folders: vec![cx.sender.folder.clone()],
                ..Default::default()
            },
        ))
    }
}
