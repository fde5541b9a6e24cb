//! Our app-server types against the pinned codex's JSON schema.
//!
//! 1. The committed schema (`tests/fixtures/codex-app-server-<version>/`) is exactly what the pinned binary
//!    generates: upgrading codex without looking fails here.
//! 2. What we send validates against it (every key known, every required key present,
//!    enum values allowed), and every field we read exists in it.

mod support;

use std::path::{Path, PathBuf};

use rust_claw::agent::protocol::{
    ApprovalDecision, ApprovalResponse, CODEX_VERSION, ClientInfo, InitializeParams, ThreadParams,
    TurnInterruptParams, TurnStartParams, TurnSteerParams, UserInput,
};
use serde::Serialize;
use serde_json::{Value, json};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("codex-app-server-{CODEX_VERSION}"))
}

fn load(rel: &str) -> Value {
    let text = std::fs::read_to_string(schema_dir().join(rel)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn committed_files() -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["", "v1", "v2"] {
        for e in std::fs::read_dir(schema_dir().join(sub)).unwrap().flatten() {
            let name = e.file_name().into_string().unwrap();
            if name.ends_with(".json") {
                out.push(if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                });
            }
        }
    }
    out.sort();
    out
}

#[test]
fn committed_schema_is_what_the_pinned_codex_generates() {
    let codex = support::codex_bin();
    let version = std::process::Command::new(&codex)
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.trim().ends_with(CODEX_VERSION),
        "RUST_CLAW_TEST_CODEX is {version:?}, the client is pinned to {CODEX_VERSION}"
    );
    let out = support::homes_dir().join(format!("schema-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = std::process::Command::new(&codex)
        .args(["app-server", "generate-json-schema", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let files = committed_files();
    assert!(files.len() >= 15, "{files:?}");
    for rel in files {
        let generated: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(&rel)).unwrap()).unwrap();
        assert_eq!(
            generated,
            load(&rel),
            "{rel} differs from codex {CODEX_VERSION}'s schema"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Follows `$ref` and unwraps `anyOf/allOf [X, null]`.
fn resolve<'a>(root: &'a Value, mut s: &'a Value) -> &'a Value {
    loop {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/definitions/");
            s = &root["definitions"][name];
            continue;
        }
        for key in ["allOf", "anyOf"] {
            if let Some(list) = s.get(key).and_then(Value::as_array) {
                let non_null: Vec<&Value> = list.iter().filter(|v| v["type"] != "null").collect();
                if non_null.len() == 1 && s.get("properties").is_none() {
                    s = non_null[0];
                    continue;
                }
            }
        }
        return s;
    }
}

fn type_ok(schema: &Value, v: &Value) -> bool {
    let actual = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    match &schema["type"] {
        Value::String(t) => t == actual || (t == "number" && actual == "integer"),
        Value::Array(ts) => ts
            .iter()
            .any(|t| t == actual || (t == "number" && actual == "integer")),
        _ => true,
    }
}

/// A small validator: enough of JSON Schema for codex's generated files.
fn check(root: &Value, schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let s = resolve(root, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = s.get(key).and_then(Value::as_array) {
            return if variants.iter().any(|var| check(root, var, v, path).is_ok()) {
                Ok(())
            } else {
                Err(format!("{path}: {v} matches no variant"))
            };
        }
    }
    if !type_ok(s, v) {
        return Err(format!("{path}: {v} is not of type {}", s["type"]));
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        return Err(format!("{path}: {v} not in {allowed:?}"));
    }
    match v {
        Value::Object(map) => {
            let props = s.get("properties").and_then(Value::as_object);
            if let Some(props) = props {
                for (k, val) in map {
                    let p = props
                        .get(k)
                        .ok_or_else(|| format!("{path}.{k}: unknown field"))?;
                    check(root, p, val, &format!("{path}.{k}"))?;
                }
            }
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap();
                if !map.contains_key(r) {
                    return Err(format!("{path}: required field {r} missing"));
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    check(root, item_schema, it, &format!("{path}[{i}]"))?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn valid<T: Serialize>(rel: &str, value: &T) {
    let root = load(rel);
    let v = serde_json::to_value(value).unwrap();
    if let Err(e) = check(&root, &root, &v, rel) {
        panic!("{e}\nvalue: {v}");
    }
}

#[test]
fn what_we_send_validates() {
    valid(
        "v1/InitializeParams.json",
        &InitializeParams {
            client_info: ClientInfo {
                name: "rust_claw".into(),
                title: Some("RustClaw".into()),
                version: "1".into(),
            },
        },
    );
    let full = ThreadParams {
        thread_id: None,
        exclude_turns: None,
        cwd: Some("/x".into()),
        model: Some("m".into()),
        approval_policy: Some("never".into()),
        sandbox: Some("workspace-write".into()),
        developer_instructions: Some("d".into()),
        ephemeral: Some(true),
    };
    valid("v2/ThreadStartParams.json", &full);
    valid(
        "v2/ThreadResumeParams.json",
        &ThreadParams {
            thread_id: Some("t".into()),
            exclude_turns: Some(true),
            ephemeral: None,
            ..full.clone()
        },
    );
    valid(
        "v2/TurnStartParams.json",
        &TurnStartParams {
            thread_id: "t".into(),
            input: UserInput::text("hi"),
        },
    );
    valid(
        "v2/TurnSteerParams.json",
        &TurnSteerParams {
            thread_id: "t".into(),
            input: UserInput::text("more"),
            expected_turn_id: "u".into(),
        },
    );
    valid(
        "v2/TurnInterruptParams.json",
        &TurnInterruptParams {
            thread_id: "t".into(),
            turn_id: "u".into(),
        },
    );
    for decision in [
        ApprovalDecision::Accept,
        ApprovalDecision::AcceptForSession,
        ApprovalDecision::Decline,
        ApprovalDecision::Cancel,
    ] {
        valid(
            "CommandExecutionRequestApprovalResponse.json",
            &ApprovalResponse { decision },
        );
        valid(
            "FileChangeRequestApprovalResponse.json",
            &ApprovalResponse { decision },
        );
    }
    // The checker itself rejects what codex would reject.
    let root = load("v2/TurnStartParams.json");
    for bad in [
        json!({"threadId": "t"}),
        json!({"threadId": "t", "input": [], "bogus": 1}),
        json!({"threadId": "t", "input": [{"type": "txt", "text": "a"}]}),
        json!({"threadId": 5, "input": []}),
    ] {
        assert!(check(&root, &root, &bad, "bad").is_err(), "{bad} accepted");
    }
    for action in ["accept", "decline", "cancel"] {
        valid(
            "McpServerElicitationRequestResponse.json",
            &json!({"action": action, "content": null}),
        );
    }
}

/// The property names of the object schema at `def` (a definition name, or "" for
/// the file's top level).
fn fields(rel: &str, def: &str) -> Vec<String> {
    let root = load(rel);
    let s = if def.is_empty() {
        &root
    } else {
        &root["definitions"][def]
    };
    let s = resolve(&root, s);
    s["properties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn has(rel: &str, def: &str, want: &[&str]) {
    let got = fields(rel, def);
    for w in want {
        assert!(
            got.iter().any(|g| g == w),
            "{rel} {def}: no field {w} (has {got:?})"
        );
    }
}

#[test]
fn what_we_read_exists() {
    has("v2/ThreadStartResponse.json", "", &["thread"]);
    has("v2/ThreadStartResponse.json", "Thread", &["id"]);
    has("v2/TurnStartResponse.json", "", &["turn"]);
    has(
        "v2/TurnCompletedNotification.json",
        "",
        &["threadId", "turn"],
    );
    has(
        "v2/TurnCompletedNotification.json",
        "Turn",
        &["id", "status", "error"],
    );
    has(
        "v2/TurnCompletedNotification.json",
        "TurnError",
        &["message", "additionalDetails"],
    );
    let statuses =
        load("v2/TurnCompletedNotification.json")["definitions"]["TurnStatus"]["enum"].clone();
    assert_eq!(
        statuses,
        json!(["completed", "interrupted", "failed", "inProgress"])
    );
    has(
        "v2/ItemCompletedNotification.json",
        "",
        &["threadId", "turnId", "item"],
    );
    let items = load("v2/ItemCompletedNotification.json");
    let variant = |kind: &str| -> Vec<String> {
        items["definitions"]["ThreadItem"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["properties"]["type"]["enum"][0] == kind)
            .unwrap_or_else(|| panic!("no ThreadItem {kind}"))["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for (kind, want) in [
        ("agentMessage", &["id", "text"][..]),
        ("commandExecution", &["command"][..]),
        ("mcpToolCall", &["server", "tool"][..]),
    ] {
        let got = variant(kind);
        for w in want {
            assert!(got.iter().any(|g| g == w), "ThreadItem {kind} has no {w}");
        }
    }
    has(
        "v2/AgentMessageDeltaNotification.json",
        "",
        &["threadId", "turnId", "itemId", "delta"],
    );
    has(
        "v2/ErrorNotification.json",
        "",
        &["threadId", "turnId", "error", "willRetry"],
    );
    has(
        "CommandExecutionRequestApprovalParams.json",
        "",
        &["command", "reason"],
    );
}

#[test]
fn every_server_request_kind_is_known() {
    // codex must get an answer to each; a new kind in an upgrade must be looked at
    // (and answered on purpose) before the pin moves.
    let s = load("ServerRequest.json");
    let mut methods: Vec<String> = s["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["properties"]["method"]["enum"][0]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    methods.sort();
    assert_eq!(
        methods,
        [
            "account/chatgptAuthTokens/refresh",
            "applyPatchApproval",
            "attestation/generate",
            "execCommandApproval",
            "item/commandExecution/requestApproval",
            "item/fileChange/requestApproval",
            "item/permissions/requestApproval",
            "item/tool/call",
            "item/tool/requestUserInput",
            "mcpServer/elicitation/request",
        ]
    );
}
