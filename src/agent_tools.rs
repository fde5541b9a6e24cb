//! `rust_claw agent-tools`: the MCP server (stdio) an agent uses to reach the host.
//!
//! codex runs it inside the agent's sandbox or container with `RUST_CLAW_IPC_DIR`
//! pointing at the group's IPC directory. There is one action tool per request type
//! that has one (`crate::ipc::requests`): its name and description come from the
//! type's module and its input schema is derived (schemars) from the same struct the
//! host parses, so the tool and the file format cannot drift. A call's arguments are
//! read by the host's own parser (ids, jids, folders, text length) and schedules
//! checked, so the model hears "invalid schedule_value: ..." at once, before any file
//! is written; then the request is written (temp file + rename, so the host never sees
//! a torn file) and the tool waits — on inotify, not a sleep loop — at most
//! `RESPONSE_TIMEOUT` for `responses/<id>.json`, and tells the model the status and
//! message. The list tools read the snapshots the host keeps current. The host checks
//! everything again: this process runs on the agent's side of the trust boundary.
//!
//! A line on stdin that is not JSON is answered with a JSON-RPC parse error (code
//! -32700, id null), as JSON-RPC asks, and the session goes on.
//!
//! Environment: `RUST_CLAW_IPC_DIR` (required), `RUST_CLAW_CHAT_JID` (the group's own
//! chat: the default target of `send_message`), `RUST_CLAW_TIMEZONE` (how schedules
//! are read; default UTC).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use notify::{RecursiveMode, Watcher as _};
use rmcp::handler::server::router::tool::{ToolRoute, ToolRouter};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde_json::{Value, json};

use crate::ipc::protocol::{self, Request, Response, Status};
use crate::ipc::requests::{self, fields};
use crate::ipc::snapshots::{GROUPS_FILE, SKILLS_FILE, TASKS_FILE};
use crate::model::Jid;
use crate::safe_dir::{Durability, write_atomic_path};

/// How long a tool waits for the host's answer.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

type ToolResult = Result<CallToolResult, ErrorData>;

/// Fields the tools fill in when the model leaves them out: a message goes to this
/// group's own chat (`RUST_CLAW_CHAT_JID`). They are optional in the tools' schemas.
/// (Added to the arguments of every tool; a type without the field ignores it, and
/// only the parsed request is written.)
const FILLED_BY_TOOLS: &[&[&str]] = &[fields::CHAT_JID];

/// The MCP server.
#[derive(Clone)]
pub struct AgentTools {
    ipc_dir: PathBuf,
    chat_jid: Option<Jid>,
    timezone: Tz,
    timeout: Duration,
    tool_router: ToolRouter<Self>,
}

fn text_result(ok: bool, text: String) -> CallToolResult {
    if ok {
        CallToolResult::success(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::error(vec![ContentBlock::text(text)])
    }
}

fn refuse(e: impl std::fmt::Display) -> ToolResult {
    Ok(text_result(false, format!("invalid: {e}")))
}

/// A request type's tool input schema: the request struct's, with the fields the
/// tools fill in made optional.
fn tool_schema(schema: schemars::Schema) -> JsonObject {
    let mut schema = match schema.to_value() {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    };
    schema.remove("$schema");
    schema.remove("title");
    // Some clients want `properties` even when there are none.
    schema.entry("properties").or_insert_with(|| json!({}));
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|r| !FILLED_BY_TOOLS.iter().any(|names| *r == names[0]));
    }
    schema
}

/// Renders a response for the model: `<status>: <message>` and the result, if any.
pub(crate) fn describe(r: &Response) -> String {
    let mut s = format!("{}: {}", r.status.as_str(), r.message);
    if let Some(result) = &r.result {
        s.push_str(&format!("\nresult: {result}"));
    }
    s
}

#[tool_router]
impl AgentTools {
    pub fn new(ipc_dir: PathBuf, chat_jid: Option<Jid>, timezone: Tz) -> AgentTools {
        let mut tool_router = Self::tool_router();
        for (kind, tool, schema) in requests::tools() {
            let attr = rmcp::model::Tool::new(tool.name, tool.description, tool_schema(schema));
            tool_router.add_route(ToolRoute::new_dyn(
                attr,
                move |cx: ToolCallContext<'_, AgentTools>| {
                    Box::pin(async move {
                        cx.service
                            .call_request(kind, cx.arguments)
                            .await
                            .map(Into::into)
                    })
                },
            ));
        }
        AgentTools {
            ipc_dir,
            chat_jid,
            timezone,
            timeout: RESPONSE_TIMEOUT,
            tool_router,
        }
    }

    /// Reads the configuration from the environment (see the module docs).
    pub(crate) fn from_env() -> anyhow::Result<AgentTools> {
        let dir = std::env::var_os("RUST_CLAW_IPC_DIR")
            .ok_or_else(|| anyhow::anyhow!("RUST_CLAW_IPC_DIR is not set"))?;
        let chat_jid = match std::env::var("RUST_CLAW_CHAT_JID") {
            Ok(v) if !v.is_empty() => Some(Jid::parse(&v)?),
            _ => None,
        };
        let timezone = match std::env::var("RUST_CLAW_TIMEZONE") {
            Ok(v) if !v.is_empty() => v
                .parse::<Tz>()
                .map_err(|_| anyhow::anyhow!("invalid RUST_CLAW_TIMEZONE={v:?}"))?,
            _ => Tz::UTC,
        };
        Ok(AgentTools::new(PathBuf::from(dir), chat_jid, timezone))
    }

    #[tool(description = "List scheduled tasks (the main group sees all, others their own).")]
    async fn list_tasks(&self) -> ToolResult {
        Ok(self.read_snapshot(TASKS_FILE))
    }

    #[tool(
        description = "List known chats and registered groups (main group only; others see none)."
    )]
    async fn list_groups(&self) -> ToolResult {
        Ok(self.read_snapshot(GROUPS_FILE))
    }

    #[tool(description = "List the skills available to this group and whether each is enabled.")]
    async fn list_skills(&self) -> ToolResult {
        // Skills are directories on disk: have the host look again first.
        let refreshed = self.submit(requests::RefreshSkills {}.into()).await?;
        if refreshed.is_error == Some(true) {
            return Ok(refreshed);
        }
        Ok(self.read_snapshot(SKILLS_FILE))
    }
}

impl AgentTools {
    /// Overrides how long tools wait for the host.
    pub fn with_timeout(mut self, timeout: Duration) -> AgentTools {
        self.timeout = timeout;
        self
    }

    /// An action tool: the arguments (plus `type`) read by the host's own parser,
    /// checked as far as this side can, then written and answered.
    async fn call_request(&self, kind: &'static str, args: Option<JsonObject>) -> ToolResult {
        let mut args = args.unwrap_or_default();
        args.insert("type".into(), json!(kind));
        if let Some(own) = &self.chat_jid {
            for names in FILLED_BY_TOOLS {
                let given = names
                    .iter()
                    .any(|n| args.get(*n).is_some_and(|v| !v.is_null()));
                if !given {
                    args.insert(names[0].into(), json!(own));
                }
            }
        }
        let bytes = serde_json::to_vec(&Value::Object(args)).unwrap_or_default();
        let req = match protocol::parse(&bytes).request {
            Ok(req) => req,
            Err(e) => return refuse(e),
        };
        if let Err(e) = req.check_before_writing(self.timezone) {
            return refuse(e);
        }
        self.submit(req).await
    }

    fn read_snapshot(&self, name: &str) -> CallToolResult {
        match std::fs::read_to_string(self.ipc_dir.join(name)) {
            Ok(text) => text_result(true, text),
            Err(e) => text_result(
                false,
                format!("error: cannot read {name} (is the host running?): {e}"),
            ),
        }
    }

    /// Writes `req` and waits for its response.
    pub async fn submit(&self, req: Request) -> ToolResult {
        match submit(&self.ipc_dir, &req, self.timeout).await {
            Ok(r) => Ok(text_result(r.status == Status::Ok, describe(&r))),
            Err(e) => Ok(text_result(false, format!("error: {e:#}"))),
        }
    }
}

/// Writes `req` into `ipc_dir` atomically and waits up to `timeout` for the host's
/// response, which is then removed.
pub(crate) async fn submit(
    ipc_dir: &Path,
    req: &Request,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let id = protocol::new_request_id(chrono::Utc::now().timestamp_millis());
    let responses = ipc_dir.join("responses");
    std::fs::create_dir_all(&responses)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Watch before writing, so the answer cannot slip in unseen.
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&responses, RecursiveMode::NonRecursive)?;
    let dir = ipc_dir.join(req.subdir());
    std::fs::create_dir_all(&dir)?;
    let bytes = serde_json::to_vec(&req.to_json())?;
    write_atomic_path(&dir.join(format!("{id}.json")), &bytes, Durability::Atomic)?;
    let target = responses.join(format!("{id}.json"));
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        if let Ok(bytes) = std::fs::read(&target)
            && let Ok(r) = serde_json::from_slice::<Response>(&bytes)
        {
            let _ = std::fs::remove_file(&target);
            return Ok(r);
        }
        tokio::select! {
            _ = &mut deadline => anyhow::bail!(
                "no answer from the host within {} s; request {id} stays queued and may still be applied",
                timeout.as_secs()
            ),
            _ = rx.recv() => {}
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for AgentTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "RustClaw host tools: send messages, schedule and manage tasks, manage groups and skills. \
             Every action returns the host's verdict: ok, denied, invalid or error.",
        )
    }
}

/// The version of the IPC request/response files these tools write and read. Bump it
/// with any incompatible change to `ipc::protocol`: a container image whose
/// `rust_claw` speaks another version is refused (rebuild it with
/// scripts/build-image.sh).
pub(crate) const IPC_VERSION: u32 = 1;

/// Serves the tools on stdin/stdout until the client closes them (`tools` from
/// [`AgentTools::from_env`], whose errors are the caller's to report: exit 2).
pub(crate) fn serve_stdio(tools: AgentTools) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(serve_lines(tools, tokio::io::stdin(), tokio::io::stdout()));
    // Reading stdin happens on a blocking thread that may still wait for a line
    // nobody needs any more: do not wait for it.
    rt.shutdown_background();
    result
}

/// The JSON-RPC answer to a line that is not JSON.
fn parse_error(e: &serde_json::Error) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32700, "message": format!("Parse error: {e}") },
    })
    .to_string()
}

/// Serves MCP (newline-delimited JSON-RPC) from `input` to `output`. rmcp only sees
/// lines that are JSON: the others are answered here with a parse error. One writer
/// task writes whole lines, so rmcp's answers and ours never interleave.
async fn serve_lines<R, W>(tools: AgentTools, input: R, output: W) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    const PIPE: usize = 64 * 1024;
    let (rmcp_in, mut to_rmcp) = tokio::io::duplex(PIPE);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(PIPE);
    let (errors, mut errors_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut output = output;
        let mut answers = BufReader::new(from_rmcp).lines();
        loop {
            let line = tokio::select! {
                l = answers.next_line() => match l? {
                    Some(l) => l,
                    None => break,
                },
                Some(e) = errors_rx.recv() => e,
            };
            output.write_all(line.as_bytes()).await?;
            output.write_all(b"\n").await?;
            output.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let reader = tokio::spawn(async move {
        let mut input = BufReader::new(input);
        let mut line = Vec::new();
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.trim_ascii().is_empty() {
                continue;
            }
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&line) {
                let _ = errors.send(parse_error(&e));
                continue;
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            if to_rmcp.write_all(&line).await.is_err() {
                break;
            }
        }
        // End of input: dropping `to_rmcp` ends the session.
    });
    let served = async {
        let service = tools.serve((rmcp_in, rmcp_out)).await?;
        service.waiting().await?;
        anyhow::Ok(())
    }
    .await;
    reader.abort();
    // rmcp has closed its side: the writer ends once its last answer is out.
    match tokio::time::timeout(Duration::from_secs(5), writer).await {
        Ok(Ok(Err(e))) if served.is_ok() => return Err(e.into()),
        _ => {}
    }
    served
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ipc::requests::Message;
    use crate::ipc::requests::tests::{required, samples};

    /// Each action tool offers its request struct's fields, and requires what the
    /// struct requires except what the tools fill in.
    #[test]
    fn each_tool_schema_is_its_request_struct() {
        let tools = AgentTools::new(PathBuf::from("/nonexistent"), None, Tz::UTC);
        let offered = tools.tool_router.list_all();
        assert_eq!(
            offered.len(),
            requests::tools().len() + 3,
            "and three list tools"
        );
        for (kind, tool, schema) in requests::tools() {
            let t = tools
                .tool_router
                .get(tool.name)
                .unwrap_or_else(|| panic!("no tool {} for {kind}", tool.name));
            let got = Value::Object((*t.input_schema).clone());
            let want = schema.to_value();
            assert_eq!(got["type"], "object", "{kind}");
            let props = |v: &Value| v.get("properties").cloned().unwrap_or(json!({}));
            assert_eq!(props(&got), props(&want), "{kind}");
            let mut want_required = required(&want);
            for names in FILLED_BY_TOOLS {
                want_required.remove(names[0]);
            }
            assert_eq!(required(&got), want_required, "{kind}");
        }
    }

    /// What a tool writes is exactly the request its arguments describe, as the
    /// watcher parses it.
    #[tokio::test]
    async fn requests_written_by_the_tools_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let own = Jid::parse("7@discord").unwrap();
        let tools = AgentTools::new(dir.path().to_owned(), Some(own.clone()), Tz::UTC)
            .with_timeout(Duration::from_millis(20));
        let with_tools: BTreeSet<&str> = requests::tools().iter().map(|(k, _, _)| *k).collect();
        let mut cases: Vec<(JsonObject, Request)> = samples()
            .into_iter()
            .filter(|r| with_tools.contains(r.kind()))
            .map(|r| match r.to_json() {
                Value::Object(mut m) => {
                    m.remove("type");
                    (m, r)
                }
                _ => unreachable!(),
            })
            .collect();
        // A message without a chat goes to the group's own.
        let own_chat = Message {
            chat_jid: own,
            text: "hi".into(),
        };
        let args = json!({"text": "hi"}).as_object().unwrap().clone();
        cases.push((args, own_chat.into()));
        assert_eq!(cases.len(), with_tools.len() + 1);
        for (args, want) in cases {
            let r = tools.call_request(want.kind(), Some(args)).await.unwrap();
            let text = r.content[0].as_text().unwrap().text.clone();
            assert!(text.contains("no answer from the host"), "{text}");
            let sub = dir.path().join(want.subdir());
            let files: Vec<_> = std::fs::read_dir(&sub)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(files.len(), 1, "{}", want.kind());
            let parsed = protocol::parse(&std::fs::read(&files[0]).unwrap());
            assert_eq!(parsed.request.unwrap(), want);
            std::fs::remove_file(&files[0]).unwrap();
        }
    }

    #[test]
    fn arguments_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let tools = AgentTools::new(dir.path().to_owned(), None, Tz::UTC);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (kind, args, needle) in [
            ("message", json!({"text": "hi"}), "chatJid"),
            (
                "message",
                json!({"chatJid": "1@discord", "text": "x".repeat(16_001)}),
                "text",
            ),
            (
                "schedule_task",
                json!({"prompt": "p", "schedule_type": "cron", "schedule_value": "0 25 * * *"}),
                "schedule_value",
            ),
            ("pause_task", json!({"taskId": "../x"}), "taskId"),
        ] {
            let args = args.as_object().cloned();
            let r = rt.block_on(tools.call_request(kind, args)).unwrap();
            let text = r.content[0].as_text().unwrap().text.clone();
            assert_eq!(r.is_error, Some(true), "{text}");
            assert!(
                text.starts_with("invalid:") && text.contains(needle),
                "{text}"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }
}
