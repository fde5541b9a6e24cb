//! `enable_skill`: turn an available skill on for a group (`disable_skill` shares
//! `set_skill`).

use serde::Serialize;

use super::fields::{SKILL_NAME, TARGET_FOLDER};
use super::{Ctx, Fields, RequestType, Tool};
use crate::actions;
use crate::bus::Topic;
use crate::ipc::apply::Changes;
use crate::ipc::authorize::Act;
use crate::ipc::outcome::{Outcome, Step};
use crate::model::{FolderName, SkillName, ValidationError};
use crate::store::groups;

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct EnableSkill {
    /// The skill's name (a directory with a SKILL.md; see list_skills).
    #[serde(rename = "skillName")]
    #[schemars(with = "String")]
    pub skill_name: SkillName,
    /// Another group's folder (main group only); default: this group.
    #[serde(rename = "targetGroupFolder", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub target_group_folder: Option<FolderName>,
}

/// The fields of `enable_skill` and `disable_skill`.
pub(super) fn parse_fields(
    f: &Fields<'_>,
) -> Result<(SkillName, Option<FolderName>), ValidationError> {
    Ok((
        f.parsed(SKILL_NAME, SkillName::parse)?,
        f.opt_parsed(TARGET_FOLDER, FolderName::parse)?,
    ))
}

/// Turns `skill` on or off for `target` (default: the sender).
pub(super) fn set_skill(
    cx: &Ctx<'_>,
    skill: &SkillName,
    target: Option<&FolderName>,
    on: bool,
) -> Step<Outcome> {
    let target = target.unwrap_or(&cx.sender.folder);
    cx.authorize(Act::ChangeSkills { target })?;
    if groups::get_by_folder(cx.tx, target)?.is_none() {
        return Err(Outcome::invalid(format!(
            "invalid targetGroupFolder: {target} is not a registered group's folder"
        )));
    }
    let available = crate::skills::available(&cx.env.paths, target);
    actions::set_skill(cx.tx, target, skill.as_str(), on, &available, cx.now)?;
    Ok(Outcome::ok(
        format!(
            "skill {skill} {} for group {target}",
            if on { "enabled" } else { "disabled" }
        ),
        None,
        Changes {
            skill_folders: vec![target.clone()],
            ..Default::default()
        }
        .topic(Topic::Skills),
    ))
}

impl RequestType for EnableSkill {
    const TYPE: &'static str = "enable_skill";
    const TOOL: Option<Tool> = Some(Tool {
        name: "enable_skill",
        description: "Enable a skill for this group (or, from the main group, for another group).",
    });

    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError> {
        let (skill_name, target_group_folder) = parse_fields(f)?;
        Ok(EnableSkill {
            skill_name,
            target_group_folder,
        })
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        set_skill(
            cx,
            &self.skill_name,
            self.target_group_folder.as_ref(),
            true,
        )
    }
}
