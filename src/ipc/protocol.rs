//! The IPC wire format: the one definition of requests and responses, shared by the
//! host's watcher (which parses) and `rust_claw agent-tools` (which writes).
//!
//! Field names are NanoClaw v1's, verbatim (`chatJid`, `taskId`, `schedule_type`, ...),
//! so an agent written for NanoClaw works unchanged; snake_case aliases (`chat_jid`,
//! `task_id`, ...) are accepted too. Unknown fields are ignored (NanoClaw writes
//! `groupFolder`, `isMain`, `timestamp`: identity comes from the directory, never from
//! the payload). An unknown `type` is `invalid`.
//!
//! Parsing is hand-written over a `serde_json::Value` rather than derived, so that
//! every error names the field and the rule it broke ("invalid chatJid: ..."): the
//! agent reads these messages and must be able to fix its request.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::model::{
    ContextMode, FolderName, Jid, ScheduleType, SkillName, TaskId, ValidationError,
};

/// Request files larger than this are refused unread.
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Deepest JSON nesting accepted (requests are flat; this only stops abuse).
pub const MAX_DEPTH: usize = 32;
/// The longest `text` a `message` request may carry.
pub const MAX_TEXT_CHARS: usize = 16_000;
/// The longest request id (the file name without `.json`).
pub const MAX_ID_LEN: usize = 128;

/// Every request type the host understands, as spelled in the `type` field.
pub const REQUEST_TYPES: &[&str] = &[
    "message",
    "schedule_task",
    "update_task",
    "pause_task",
    "resume_task",
    "cancel_task",
    "register_group",
    "refresh_groups",
    "enable_skill",
    "disable_skill",
    "refresh_skills",
];

/// A parsed, field-validated request. Authorisation and the rules that need the
/// database (does this task exist, is this chat registered) come later.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Send `text` to a chat (through the durable outbox).
    Message {
        chat_jid: Jid,
        text: String,
    },
    ScheduleTask {
        prompt: String,
        schedule_type: ScheduleType,
        schedule_value: String,
        context_mode: Option<ContextMode>,
        /// The chat the task's runs answer in; `None` means the sender's own chat.
        target_jid: Option<Jid>,
    },
    UpdateTask {
        task_id: TaskId,
        prompt: Option<String>,
        schedule_type: Option<ScheduleType>,
        schedule_value: Option<String>,
        context_mode: Option<ContextMode>,
    },
    PauseTask {
        task_id: TaskId,
    },
    ResumeTask {
        task_id: TaskId,
    },
    CancelTask {
        task_id: TaskId,
    },
    RegisterGroup {
        jid: Jid,
        name: String,
        folder: FolderName,
        trigger: Option<String>,
        requires_trigger: Option<bool>,
    },
    RefreshGroups,
    EnableSkill {
        skill_name: String,
        target_group_folder: Option<FolderName>,
    },
    DisableSkill {
        skill_name: String,
        target_group_folder: Option<FolderName>,
    },
    RefreshSkills,
}

impl Request {
    /// The `type` string of this request.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Message { .. } => "message",
            Request::ScheduleTask { .. } => "schedule_task",
            Request::UpdateTask { .. } => "update_task",
            Request::PauseTask { .. } => "pause_task",
            Request::ResumeTask { .. } => "resume_task",
            Request::CancelTask { .. } => "cancel_task",
            Request::RegisterGroup { .. } => "register_group",
            Request::RefreshGroups => "refresh_groups",
            Request::EnableSkill { .. } => "enable_skill",
            Request::DisableSkill { .. } => "disable_skill",
            Request::RefreshSkills => "refresh_skills",
        }
    }

    /// The subdirectory a writer puts this request in: `messages/` for messages,
    /// `tasks/` for everything else (as NanoClaw does; the host reads both alike).
    pub fn subdir(&self) -> &'static str {
        match self {
            Request::Message { .. } => "messages",
            _ => "tasks",
        }
    }

    /// The request as written to disk, with NanoClaw's field names.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind()));
        let mut put = |k: &str, v: Value| {
            if !v.is_null() {
                m.insert(k.to_owned(), v);
            }
        };
        match self {
            Request::Message { chat_jid, text } => {
                put("chatJid", json!(chat_jid.to_string()));
                put("text", json!(text));
            }
            Request::ScheduleTask {
                prompt,
                schedule_type,
                schedule_value,
                context_mode,
                target_jid,
            } => {
                put("prompt", json!(prompt));
                put("schedule_type", json!(schedule_type.as_str()));
                put("schedule_value", json!(schedule_value));
                put("context_mode", json!(context_mode.map(|c| c.as_str())));
                put(
                    "targetJid",
                    json!(target_jid.as_ref().map(|j| j.to_string())),
                );
            }
            Request::UpdateTask {
                task_id,
                prompt,
                schedule_type,
                schedule_value,
                context_mode,
            } => {
                put("taskId", json!(task_id.as_str()));
                put("prompt", json!(prompt));
                put("schedule_type", json!(schedule_type.map(|s| s.as_str())));
                put("schedule_value", json!(schedule_value));
                put("context_mode", json!(context_mode.map(|c| c.as_str())));
            }
            Request::PauseTask { task_id }
            | Request::ResumeTask { task_id }
            | Request::CancelTask { task_id } => put("taskId", json!(task_id.as_str())),
            Request::RegisterGroup {
                jid,
                name,
                folder,
                trigger,
                requires_trigger,
            } => {
                put("jid", json!(jid.to_string()));
                put("name", json!(name));
                put("folder", json!(folder.as_str()));
                put("trigger", json!(trigger));
                put("requiresTrigger", json!(requires_trigger));
            }
            Request::EnableSkill {
                skill_name,
                target_group_folder,
            }
            | Request::DisableSkill {
                skill_name,
                target_group_folder,
            } => {
                put("skillName", json!(skill_name));
                put(
                    "targetGroupFolder",
                    json!(target_group_folder.as_ref().map(|f| f.as_str())),
                );
            }
            Request::RefreshGroups | Request::RefreshSkills => {}
        }
        Value::Object(m)
    }
}

/// Why a request file could not be turned into a [`Request`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("not UTF-8: {0}")]
    Utf8(String),
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("the request must be a JSON object with a \"type\" field")]
    NotAnObject,
    #[error("unknown request type {0:?} (known: {types})", types = REQUEST_TYPES.join(", "))]
    UnknownType(String),
    #[error(transparent)]
    Field(#[from] ValidationError),
}

/// A request file's content after parsing: its `type` (for the ledger, even when
/// the rest is unusable) and the request or why it was refused.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub kind: String,
    pub request: Result<Request, ProtocolError>,
}

/// Parses a request file's bytes. Never panics, whatever the input.
pub fn parse(bytes: &[u8]) -> Parsed {
    let unknown = |e: ProtocolError| Parsed {
        kind: "unknown".to_owned(),
        request: Err(e),
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return unknown(ProtocolError::Utf8(e.to_string())),
    };
    if nesting_depth_exceeds(text.as_bytes(), MAX_DEPTH) {
        return unknown(ProtocolError::TooDeep);
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return unknown(ProtocolError::Json(e.to_string())),
    };
    let Value::Object(map) = value else {
        return unknown(ProtocolError::NotAnObject);
    };
    let Some(Value::String(kind)) = map.get("type") else {
        return unknown(ProtocolError::NotAnObject);
    };
    let kind = if REQUEST_TYPES.contains(&kind.as_str()) {
        kind.clone()
    } else {
        return Parsed {
            kind: "unknown".to_owned(),
            request: Err(ProtocolError::UnknownType(crate::text::clip(kind, 64))),
        };
    };
    let request = from_fields(&kind, &Fields(&map)).map_err(ProtocolError::from);
    Parsed { kind, request }
}

/// True when `json` opens more than `max` arrays/objects at once. A byte scan that
/// skips strings: cheaper than parsing, and it stops a stack-deep document before the
/// parser sees it.
pub fn nesting_depth_exceeds(json: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Typed access to a request's fields under their NanoClaw name or its alias.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// The first of `names` present and not null.
    fn get(&self, names: &[&str]) -> Option<&Value> {
        names
            .iter()
            .filter_map(|n| self.0.get(*n))
            .find(|v| !v.is_null())
    }

    fn opt_str(&self, names: &[&str]) -> Result<Option<&str>, ValidationError> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ValidationError::new(
                names[0],
                format!("must be a string, not {}", type_name(other)),
            )),
        }
    }

    fn str(&self, names: &[&str]) -> Result<&str, ValidationError> {
        self.opt_str(names)?
            .ok_or_else(|| ValidationError::new(names[0], "is required"))
    }

    fn opt_bool(&self, names: &[&str]) -> Result<Option<bool>, ValidationError> {
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
    fn parsed<T>(
        &self,
        names: &[&str],
        parse: impl FnOnce(&str) -> Result<T, ValidationError>,
    ) -> Result<T, ValidationError> {
        parse(self.str(names)?).map_err(|e| e.for_field(names[0]))
    }

    fn opt_parsed<T>(
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

const CHAT_JID: &[&str] = &["chatJid", "chat_jid"];
const TASK_ID: &[&str] = &["taskId", "task_id"];
const SCHEDULE_TYPE: &[&str] = &["schedule_type", "scheduleType"];
const SCHEDULE_VALUE: &[&str] = &["schedule_value", "scheduleValue"];
const CONTEXT_MODE: &[&str] = &["context_mode", "contextMode"];
const TARGET_JID: &[&str] = &["targetJid", "target_jid"];
const REQUIRES_TRIGGER: &[&str] = &["requiresTrigger", "requires_trigger"];
const SKILL_NAME: &[&str] = &["skillName", "skill_name"];
const TARGET_FOLDER: &[&str] = &["targetGroupFolder", "target_group_folder"];

/// A `message` request's text: 1 to [`MAX_TEXT_CHARS`] characters, not blank.
pub fn message_text(text: &str) -> Result<String, ValidationError> {
    if text.trim().is_empty() {
        return Err(ValidationError::new("text", "must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ValidationError::new(
            "text",
            format!("must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(text.to_owned())
}

fn from_fields(kind: &str, f: &Fields<'_>) -> Result<Request, ValidationError> {
    let task_id = || f.parsed(TASK_ID, TaskId::parse);
    let skill = || -> Result<(String, Option<FolderName>), ValidationError> {
        Ok((
            f.parsed(SKILL_NAME, |v| {
                SkillName::parse(v).map(|n| n.as_str().to_owned())
            })?,
            f.opt_parsed(TARGET_FOLDER, FolderName::parse)?,
        ))
    };
    Ok(match kind {
        "message" => Request::Message {
            chat_jid: f.parsed(CHAT_JID, Jid::parse)?,
            text: f.parsed(&["text"], message_text)?,
        },
        "schedule_task" => Request::ScheduleTask {
            prompt: f.str(&["prompt"])?.to_owned(),
            schedule_type: f.parsed(SCHEDULE_TYPE, ScheduleType::parse)?,
            schedule_value: f.str(SCHEDULE_VALUE)?.to_owned(),
            context_mode: f.opt_parsed(CONTEXT_MODE, ContextMode::parse)?,
            target_jid: f.opt_parsed(TARGET_JID, Jid::parse)?,
        },
        "update_task" => Request::UpdateTask {
            task_id: task_id()?,
            prompt: f.opt_str(&["prompt"])?.map(str::to_owned),
            schedule_type: f.opt_parsed(SCHEDULE_TYPE, ScheduleType::parse)?,
            schedule_value: f.opt_str(SCHEDULE_VALUE)?.map(str::to_owned),
            context_mode: f.opt_parsed(CONTEXT_MODE, ContextMode::parse)?,
        },
        "pause_task" => Request::PauseTask {
            task_id: task_id()?,
        },
        "resume_task" => Request::ResumeTask {
            task_id: task_id()?,
        },
        "cancel_task" => Request::CancelTask {
            task_id: task_id()?,
        },
        "register_group" => Request::RegisterGroup {
            jid: f.parsed(&["jid"], Jid::parse)?,
            name: f.str(&["name"])?.to_owned(),
            folder: f.parsed(&["folder"], FolderName::parse)?,
            trigger: f.opt_str(&["trigger"])?.map(str::to_owned),
            requires_trigger: f.opt_bool(REQUIRES_TRIGGER)?,
        },
        "refresh_groups" => Request::RefreshGroups,
        "enable_skill" => {
            let (skill_name, target_group_folder) = skill()?;
            Request::EnableSkill {
                skill_name,
                target_group_folder,
            }
        }
        "disable_skill" => {
            let (skill_name, target_group_folder) = skill()?;
            Request::DisableSkill {
                skill_name,
                target_group_folder,
            }
        }
        "refresh_skills" => Request::RefreshSkills,
        other => unreachable!("type {other} is in REQUEST_TYPES but not parsed"),
    })
}

/// The outcome of a request, as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Applied.
    Ok,
    /// The sending group may not do this.
    Denied,
    /// The request was malformed or broke a rule; nothing was applied.
    Invalid,
    /// The host failed; nothing was applied.
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Denied => "denied",
            Status::Invalid => "invalid",
            Status::Error => "error",
        }
    }
}

/// The host's answer, written to `responses/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Status,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// A request id (the file name without `.json`): 1 to 128 characters of A-Z, a-z, 0-9,
/// `_`, `-`, `.`, starting with a letter or digit. It names the response file, so it
/// must be a safe single path component.
pub fn validate_request_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "request id (file name)",
            format!(
                "must be 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '_', '-' or '.', starting with a letter or digit"
            ),
        ))
    }
}

/// A fresh request id: `<unix ms>-<8 random hex digits>`; sorts in writing order.
pub fn new_request_id(now_ms: i64) -> String {
    format!("{now_ms:013}-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str) -> Request {
        let p = parse(json.as_bytes());
        p.request.unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn err(json: &str) -> String {
        parse(json.as_bytes()).request.unwrap_err().to_string()
    }

    #[test]
    fn nanoclaw_names_and_aliases() {
        let a = ok(
            r#"{"type":"message","chatJid":"1@discord","text":"hi","groupFolder":"main","isMain":true}"#,
        );
        let b = ok(r#"{"type":"message","chat_jid":"1@discord","text":"hi"}"#);
        assert_eq!(a, b);
        let t = ok(
            r#"{"type":"schedule_task","prompt":"p","schedule_type":"cron","schedule_value":"0 9 * * *","context_mode":"isolated","targetJid":"2@discord"}"#,
        );
        assert!(matches!(
            t,
            Request::ScheduleTask {
                context_mode: Some(ContextMode::Isolated),
                ..
            }
        ));
        assert_eq!(
            ok(r#"{"type":"pause_task","task_id":"t1"}"#),
            Request::PauseTask {
                task_id: TaskId::parse("t1").unwrap()
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(r#"{"type":"message","chatJid":5,"text":"x"}"#).contains("chatJid"));
        assert!(err(r#"{"type":"message","chatJid":"1@discord"}"#).contains("text"));
        assert!(
            err(r#"{"type":"register_group","jid":"1@discord","name":"x","folder":"../../etc"}"#)
                .contains("folder")
        );
        assert!(
            err(r#"{"type":"register_group","jid":"1@discord","name":"x","folder":"global"}"#)
                .contains("reserved")
        );
        assert!(err(r#"{"type":"nope"}"#).contains("unknown request type"));
        assert!(err("[1]").contains("JSON object"));
        assert!(err("{").contains("not valid JSON"));
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(err(&deep).contains("nested"));
        assert!(
            parse(b"\xff\xfe")
                .request
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }

    #[test]
    fn round_trip_through_json() {
        let reqs = [
            ok(r#"{"type":"message","chatJid":"1@discord","text":"hi"}"#),
            ok(
                r#"{"type":"update_task","taskId":"t","prompt":"p","schedule_type":"interval","schedule_value":"60000"}"#,
            ),
            ok(
                r#"{"type":"register_group","jid":"x@local","name":"X","folder":"x","requiresTrigger":false}"#,
            ),
            ok(r#"{"type":"enable_skill","skillName":"pdf","targetGroupFolder":"ops"}"#),
            ok(r#"{"type":"refresh_skills"}"#),
        ];
        for r in reqs {
            let bytes = serde_json::to_vec(&r.to_json()).unwrap();
            assert_eq!(parse(&bytes).request.unwrap(), r);
        }
    }

    #[test]
    fn request_ids() {
        assert!(validate_request_id("1700000000000-ab12cd34").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_request_id(bad).is_err(), "{bad}");
        }
        assert!(validate_request_id(&new_request_id(1)).is_ok());
    }
}
