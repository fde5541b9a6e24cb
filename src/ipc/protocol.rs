//! The IPC file format around the requests: reading a request file (size, nesting,
//! JSON, its `type`), the response file, and request ids. The request types
//! themselves, shared by the host's watcher (which parses) and `rust_claw agent-tools`
//! (which writes), are in [`super::requests`], one module each.
//!
//! An unknown `type` is `invalid`; field errors name the field and the rule it broke
//! ("invalid chatJid: ...") so the agent can fix its request.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::requests::Fields;
pub use super::requests::{REQUEST_TYPES, Request};
use crate::model::ValidationError;

/// Request files larger than this are refused unread.
pub(crate) const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Deepest JSON nesting accepted (requests are flat; this only stops abuse).
pub const MAX_DEPTH: usize = 32;
/// The longest request id (the file name without `.json`).
pub const MAX_ID_LEN: usize = 128;

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
    match Request::parse(kind, &Fields(&map)) {
        Some(request) => Parsed {
            kind: kind.clone(),
            request: request.map_err(ProtocolError::from),
        },
        None => Parsed {
            kind: "unknown".to_owned(),
            request: Err(ProtocolError::UnknownType(crate::text::clip(kind, 64))),
        },
    }
}

/// True when `json` opens more than `max` arrays/objects at once. A byte scan that
/// skips strings: cheaper than parsing, and it stops a stack-deep document before the
/// parser sees it.
pub(crate) fn nesting_depth_exceeds(json: &[u8], max: usize) -> bool {
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
pub(crate) fn new_request_id(now_ms: i64) -> String {
    format!("{now_ms:013}-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::requests::{PauseTask, ScheduleTask};
    use crate::model::{ContextMode, TaskId};

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
            Request::ScheduleTask(ScheduleTask {
                context_mode: Some(ContextMode::Isolated),
                ..
            })
        ));
        assert_eq!(
            ok(r#"{"type":"pause_task","task_id":"t1"}"#),
            Request::PauseTask(PauseTask {
                task_id: TaskId::parse("t1").unwrap()
            })
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
    fn request_ids() {
        assert!(validate_request_id("1700000000000-ab12cd34").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_request_id(bad).is_err(), "{bad}");
        }
        assert!(validate_request_id(&new_request_id(1)).is_ok());
    }
}
