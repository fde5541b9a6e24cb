//! `disable_skill`: turn a skill off for a group.

use serde::Serialize;

use super::enable_skill::{parse_fields, set_skill};
use super::{Ctx, Fields, RequestType, Tool};
use crate::ipc::outcome::{Outcome, Step};
use crate::model::{FolderName, SkillName, ValidationError};

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DisableSkill {
    /// The skill's name (see list_skills).
    #[serde(rename = "skillName")]
    #[schemars(with = "String")]
    pub skill_name: SkillName,
    /// Another group's folder (main group only); default: this group.
    #[serde(rename = "targetGroupFolder", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub target_group_folder: Option<FolderName>,
}

impl RequestType for DisableSkill {
    const TYPE: &'static str = "disable_skill";
    const TOOL: Option<Tool> = Some(Tool {
        name: "disable_skill",
        description: "Disable a skill for this group (or, from the main group, for another group).",
    });

    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError> {
        let (skill_name, target_group_folder) = parse_fields(f)?;
        Ok(DisableSkill {
            skill_name,
            target_group_folder,
        })
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        set_skill(
            cx,
            &self.skill_name,
            self.target_group_folder.as_ref(),
            false,
        )
    }
}
