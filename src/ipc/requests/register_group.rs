//! `register_group`: register a chat as a new group — never as main.

use serde::Serialize;
use serde_json::json;

use super::fields::{FOLDER, JID, NAME, REQUIRES_TRIGGER, TRIGGER};
use super::{Ctx, Fields, RequestType, Tool};
use crate::actions;
use crate::bus::Topic;
use crate::ipc::apply::Changes;
use crate::ipc::authorize::Act;
use crate::ipc::outcome::{Outcome, Step};
use crate::model::{FolderName, Jid, ValidationError};

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RegisterGroup {
    /// The chat to register (`<channel id>@discord`).
    #[schemars(with = "String")]
    pub jid: Jid,
    /// A display name.
    pub name: String,
    /// The group's folder: lower-case letters, digits, `_` and `-`.
    #[schemars(with = "String")]
    pub folder: FolderName,
    /// The trigger word, e.g. `@Andy`; default: the assistant's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Whether messages must start with the trigger (default true).
    #[serde(rename = "requiresTrigger", skip_serializing_if = "Option::is_none")]
    pub requires_trigger: Option<bool>,
}

impl RequestType for RegisterGroup {
    const TYPE: &'static str = "register_group";
    const TOOL: Option<Tool> = Some(Tool {
        name: "register_group",
        description: "Register a chat as a new group (main group only).",
    });

    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(RegisterGroup {
            jid: f.parsed(JID, Jid::parse)?,
            name: f.str(NAME)?.to_owned(),
            folder: f.parsed(FOLDER, FolderName::parse)?,
            trigger: f.opt_str(TRIGGER)?.map(str::to_owned),
            requires_trigger: f.opt_bool(REQUIRES_TRIGGER)?,
        })
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        cx.authorize(Act::RegisterGroup)?;
        let g = actions::register_group(
            cx.tx,
            actions::RegisterGroup {
                jid: self.jid.clone(),
                name: self.name.clone(),
                folder: self.folder.clone(),
                trigger: self.trigger.clone(),
                requires_trigger: self.requires_trigger.unwrap_or(true),
                // Nobody becomes main through IPC.
                is_main: false,
                container_config: None,
            },
            &cx.env.default_trigger,
            cx.now,
        )?;
        Ok(Outcome::ok(
            format!(
                "registered chat {} as group {:?} (folder {})",
                g.jid, g.name, g.folder
            ),
            Some(json!({ "jid": g.jid, "folder": g.folder, "trigger": g.trigger })),
            Changes::default().topic(Topic::Groups),
        ))
    }
}
