//! Property tests for the request parser and its validation: whatever bytes an agent
//! writes, parsing never panics, and every accepted request survives a round trip
//! through the writer's JSON unchanged.

use proptest::prelude::*;
use rust_claw::ipc::protocol::{self, REQUEST_TYPES};
use serde_json::{Value, json};

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z0-9@._/ -]{0,30}".prop_map(Value::String),
        Just(json!("123456789012345678@discord")),
        Just(json!("ops")),
        Just(json!("../../etc")),
        Just(json!("0 9 * * 1-5")),
        Just(json!("cron")),
        Just(json!("interval")),
        Just(json!([1, {"a": []}])),
    ]
}

const FIELDS: &[&str] = &[
    "chatJid",
    "chat_jid",
    "text",
    "prompt",
    "schedule_type",
    "schedule_value",
    "context_mode",
    "targetJid",
    "taskId",
    "task_id",
    "jid",
    "name",
    "folder",
    "trigger",
    "requiresTrigger",
    "skillName",
    "targetGroupFolder",
    "isMain",
    "groupFolder",
];

fn request_like() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            proptest::sample::select(REQUEST_TYPES).prop_map(|t| json!(t)),
            field_value()
        ],
        proptest::collection::vec((proptest::sample::select(FIELDS), field_value()), 0..8),
    )
        .prop_map(|(t, fields)| {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), t);
            for (k, v) in fields {
                m.insert(k.to_owned(), v);
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = protocol::parse(&bytes);
    }

    #[test]
    fn request_shaped_json_parses_or_names_a_reason(v in request_like()) {
        let parsed = protocol::parse(v.to_string().as_bytes());
        match parsed.request {
            Ok(req) => {
                prop_assert_eq!(req.kind(), parsed.kind.as_str());
                let again = protocol::parse(req.to_json().to_string().as_bytes());
                prop_assert_eq!(again.request.unwrap(), req);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn nesting_is_bounded(depth in 0usize..200) {
        let doc = format!(r#"{{"type":"refresh_skills","x":{}0{}}}"#, "[".repeat(depth), "]".repeat(depth));
        let parsed = protocol::parse(doc.as_bytes());
        prop_assert_eq!(parsed.request.is_ok(), depth < protocol::MAX_DEPTH);
    }

    #[test]
    fn request_ids_are_safe_path_components(id in ".{0,140}") {
        if protocol::validate_request_id(&id).is_ok() {
            prop_assert!(!id.contains('/') && !id.starts_with('.') && !id.is_empty());
        }
    }
}
