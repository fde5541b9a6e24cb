//! Typed access to a request's fields under their NanoClaw name or its alias.
//!
//! Hand-written rather than serde-derived so that every error names the field and
//! the rule it broke ("invalid chatJid: must be a string, not a number"): the agent
//! reads these messages and must be able to fix its request. A `null` counts as
//! absent, and the first of a field's names that is present wins.

use serde_json::{Map, Value};

use crate::model::ValidationError;

/// A request object's fields.
pub(crate) struct Fields<'a>(pub(crate) &'a Map<String, Value>);

impl Fields<'_> {
    /// The first of `names` present and not null.
    fn get(&self, names: &[&str]) -> Option<&Value> {
        names
            .iter()
            .filter_map(|n| self.0.get(*n))
            .find(|v| !v.is_null())
    }

    pub(crate) fn opt_str(&self, names: &[&str]) -> Result<Option<&str>, ValidationError> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ValidationError::new(
                names[0],
                format!("must be a string, not {}", type_name(other)),
            )),
        }
    }

    pub(crate) fn str(&self, names: &[&str]) -> Result<&str, ValidationError> {
        self.opt_str(names)?
            .ok_or_else(|| ValidationError::new(names[0], "is required"))
    }

    pub(crate) fn opt_bool(&self, names: &[&str]) -> Result<Option<bool>, ValidationError> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ValidationError::new(
                names[0],
                format!("must be true or false, not {}", type_name(other)),
            )),
        }
    }

    /// A required string parsed by `parse`, errors reported under `names[0]`.
    pub(crate) fn parsed<T>(
        &self,
        names: &[&str],
        parse: impl FnOnce(&str) -> Result<T, ValidationError>,
    ) -> Result<T, ValidationError> {
        parse(self.str(names)?).map_err(|e| e.for_field(names[0]))
    }

    pub(crate) fn opt_parsed<T>(
        &self,
        names: &[&str],
        parse: impl FnOnce(&str) -> Result<T, ValidationError>,
    ) -> Result<Option<T>, ValidationError> {
        self.opt_str(names)?
            .map(|s| parse(s).map_err(|e| e.for_field(names[0])))
            .transpose()
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// Each field's names: the NanoClaw spelling first (what errors name, and what the
// request structs' `#[serde(rename)]` writes), then the accepted alias. The round-trip
// test in `requests/tests.rs` fails if a struct writes a name its parser does not read.
pub(crate) const CHAT_JID: &[&str] = &["chatJid", "chat_jid"];
pub(crate) const TEXT: &[&str] = &["text"];
pub(crate) const PROMPT: &[&str] = &["prompt"];
pub(crate) const TASK_ID: &[&str] = &["taskId", "task_id"];
pub(crate) const SCHEDULE_TYPE: &[&str] = &["schedule_type", "scheduleType"];
pub(crate) const SCHEDULE_VALUE: &[&str] = &["schedule_value", "scheduleValue"];
pub(crate) const CONTEXT_MODE: &[&str] = &["context_mode", "contextMode"];
pub(crate) const TARGET_JID: &[&str] = &["targetJid", "target_jid"];
pub(crate) const JID: &[&str] = &["jid"];
pub(crate) const NAME: &[&str] = &["name"];
pub(crate) const FOLDER: &[&str] = &["folder"];
pub(crate) const TRIGGER: &[&str] = &["trigger"];
pub(crate) const REQUIRES_TRIGGER: &[&str] = &["requiresTrigger", "requires_trigger"];
pub(crate) const SKILL_NAME: &[&str] = &["skillName", "skill_name"];
pub(crate) const TARGET_FOLDER: &[&str] = &["targetGroupFolder", "target_group_folder"];
