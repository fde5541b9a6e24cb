//! The request structs, their parsers and their schemas agree.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::ipc::protocol;

/// One request of each type with every optional field set, so a field its struct
/// writes under a name its parser does not read cannot go unnoticed.
pub(crate) fn samples() -> Vec<Request> {
    let parse = |json: &str| {
        protocol::parse(json.as_bytes())
            .request
            .unwrap_or_else(|e| panic!("{json}: {e}"))
    };
    let all = [
        r#"{"type":"message","chatJid":"1@discord","text":"hi"}"#,
        r#"{"type":"schedule_task","prompt":"p","schedule_type":"cron","schedule_value":"0 9 * * *","context_mode":"isolated","targetJid":"2@discord"}"#,
        r#"{"type":"update_task","taskId":"t","prompt":"p","schedule_type":"interval","schedule_value":"60000","context_mode":"group"}"#,
        r#"{"type":"pause_task","taskId":"t"}"#,
        r#"{"type":"resume_task","taskId":"t"}"#,
        r#"{"type":"cancel_task","taskId":"t"}"#,
        r#"{"type":"register_group","jid":"x@local","name":"X","folder":"x","trigger":"@X","requiresTrigger":false}"#,
        r#"{"type":"refresh_groups"}"#,
        r#"{"type":"enable_skill","skillName":"pdf","targetGroupFolder":"ops"}"#,
        r#"{"type":"disable_skill","skillName":"pdf","targetGroupFolder":"ops"}"#,
        r#"{"type":"refresh_skills"}"#,
    ];
    let out: Vec<Request> = all.iter().map(|j| parse(j)).collect();
    let kinds: Vec<&str> = out.iter().map(|r| r.kind()).collect();
    assert_eq!(
        kinds, REQUEST_TYPES,
        "one sample per type, in the dispatcher's order"
    );
    out
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The `required` names of a JSON schema.
pub(crate) fn required(schema: &Value) -> BTreeSet<String> {
    schema["required"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn written_requests_parse_back() {
    for r in samples() {
        let bytes = serde_json::to_vec(&r.to_json()).unwrap();
        assert_eq!(protocol::parse(&bytes).request.unwrap(), r);
    }
}

/// The schema (what `agent-tools` offers the model) names exactly the fields the
/// struct writes, and requires exactly those the parser cannot do without.
#[test]
fn schemas_match_the_parsers() {
    for (r, (kind, schema)) in samples().into_iter().zip(schemas()) {
        assert_eq!(r.kind(), kind);
        let schema = schema.to_value();
        let mut written = r.to_json();
        written.as_object_mut().unwrap().remove("type");
        assert_eq!(keys(&schema["properties"]), keys(&written), "{kind}");
        for field in keys(&written) {
            let mut without = r.to_json();
            without.as_object_mut().unwrap().remove(&field);
            let parsed = protocol::parse(without.to_string().as_bytes()).request;
            assert_eq!(
                parsed.is_err(),
                required(&schema).contains(&field),
                "{kind}.{field}: required by the parser iff by the schema"
            );
        }
    }
}
