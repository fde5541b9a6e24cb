//! `refresh_groups`: rewrite the main group's `available_groups.json`.

use serde::Serialize;

use super::{Ctx, Fields, RequestType, Tool};
use crate::ipc::apply::Changes;
use crate::ipc::authorize::Act;
use crate::ipc::outcome::{Outcome, Step};
use crate::model::ValidationError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RefreshGroups {}

impl RequestType for RefreshGroups {
    const TYPE: &'static str = "refresh_groups";
    const TOOL: Option<Tool> = Some(Tool {
        name: "refresh_groups",
        description: "Refresh the list of known chats in list_groups (main group only).",
    });

    fn parse(_: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(RefreshGroups {})
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        cx.authorize(Act::RefreshGroups)?;
        Ok(Outcome::ok(
            "group list refreshed".into(),
            None,
            Changes {
                refresh_groups: true,
                ..Default::default()
            },
        ))
    }
}
