//! `rust_claw agent-tools`: the MCP server (stdio) an agent uses to reach the host.
//!
//! codex runs it inside the agent's sandbox or container with `RUST_CLAW_IPC_DIR`
//! pointing at the group's IPC directory. Each action tool writes one request with
//! the library's own [`Request`] type (temp file + rename, so the host never sees a
//! torn file), then waits — on inotify, not a sleep loop — at most
//! [`RESPONSE_TIMEOUT`] for `responses/<id>.json`, and tells the model the status and
//! message. The list tools read the snapshots the host keeps current.
//!
//! Arguments are validated here with the host's own code (ids, jids, folders and
//! schedules), so the model hears "invalid schedule_value: ..." at once, before any
//! file is written. The host checks everything again: this process runs on the
//! agent's side of the trust boundary.
//!
//! Environment: `RUST_CLAW_IPC_DIR` (required), `RUST_CLAW_CHAT_JID` (the group's own
//! chat: the default target of `send_message`), `RUST_CLAW_TIMEZONE` (how schedules
//! are read; default UTC).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use notify::{RecursiveMode, Watcher as _};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

use crate::ipc::protocol::{self, Request, Response, Status};
use crate::ipc::snapshots::{GROUPS_FILE, SKILLS_FILE, TASKS_FILE};
use crate::model::SkillName;
use crate::model::{ContextMode, FolderName, Jid, ScheduleType, TaskId, ValidationError};
use crate::recurrence::Schedule;
use crate::safe_dir::{Durability, write_atomic_path};

/// How long a tool waits for the host's answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

type ToolResult = Result<CallToolResult, ErrorData>;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SendMessageArgs {
    /// The text to send.
    pub text: String,
    /// The chat to send to (`<channel id>@discord`); default: this group's own chat.
    pub chat_jid: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ScheduleTaskArgs {
    /// What the agent should do when the task runs.
    pub prompt: String,
    /// `cron` (5-field crontab in the host's timezone), `interval` (milliseconds) or `once` (a local time like 2026-11-25T09:00:00, or RFC 3339).
    pub schedule_type: String,
    pub schedule_value: String,
    /// `group` (continue this group's conversation; default) or `isolated` (a fresh one).
    pub context_mode: Option<String>,
    /// The chat the task answers in (main group only); default: this group's own chat.
    pub target_jid: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UpdateTaskArgs {
    pub task_id: String,
    pub prompt: Option<String>,
    pub schedule_type: Option<String>,
    pub schedule_value: Option<String>,
    pub context_mode: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TaskIdArgs {
    /// The task's id (see list_tasks).
    pub task_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RegisterGroupArgs {
    /// The chat to register (`<channel id>@discord`).
    pub jid: String,
    /// A display name.
    pub name: String,
    /// The group's folder: lower-case letters, digits, `_` and `-`.
    pub folder: String,
    /// The trigger word, e.g. `@Andy`; default: the assistant's name.
    pub trigger: Option<String>,
    /// Whether messages must start with the trigger (default true).
    pub requires_trigger: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SkillArgs {
    /// The skill's name (a directory with a SKILL.md; see list_skills).
    pub skill_name: String,
    /// Another group's folder (main group only); default: this group.
    pub target_group_folder: Option<String>,
}

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

fn refuse(e: ValidationError) -> ToolResult {
    Ok(text_result(false, format!("invalid: {e}")))
}

fn opt<T>(
    v: Option<&str>,
    field: &str,
    parse: impl FnOnce(&str) -> Result<T, ValidationError>,
) -> Result<Option<T>, ValidationError> {
    v.map(|s| parse(s).map_err(|e| e.for_field(field)))
        .transpose()
}

/// Renders a response for the model: `<status>: <message>` and the result, if any.
pub fn describe(r: &Response) -> String {
    let mut s = format!("{}: {}", r.status.as_str(), r.message);
    if let Some(result) = &r.result {
        s.push_str(&format!("\nresult: {result}"));
    }
    s
}

#[tool_router]
impl AgentTools {
    pub fn new(ipc_dir: PathBuf, chat_jid: Option<Jid>, timezone: Tz) -> AgentTools {
        AgentTools {
            ipc_dir,
            chat_jid,
            timezone,
            timeout: RESPONSE_TIMEOUT,
            tool_router: Self::tool_router(),
        }
    }

    /// Reads the configuration from the environment (see the module docs).
    pub fn from_env() -> anyhow::Result<AgentTools> {
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

    #[tool(
        description = "Send a message to a chat now (default: this group's chat). Non-main groups can only send to their own chat."
    )]
    async fn send_message(&self, Parameters(a): Parameters<SendMessageArgs>) -> ToolResult {
        let chat_jid = match (
            opt(a.chat_jid.as_deref(), "chat_jid", Jid::parse),
            &self.chat_jid,
        ) {
            (Err(e), _) => return refuse(e),
            (Ok(Some(j)), _) => j,
            (Ok(None), Some(own)) => own.clone(),
            (Ok(None), None) => return refuse(ValidationError::new("chat_jid", "is required")),
        };
        // Refused here, before anything is written, like every other rule.
        let text = match protocol::message_text(&a.text) {
            Ok(t) => t,
            Err(e) => return refuse(e),
        };
        self.submit(Request::Message { chat_jid, text }).await
    }

    #[tool(
        description = "Schedule a task: the agent runs `prompt` on a schedule (cron, interval in ms, or once at a local time) and its reply goes to the chat."
    )]
    async fn schedule_task(&self, Parameters(a): Parameters<ScheduleTaskArgs>) -> ToolResult {
        let parsed = (|| {
            let kind = ScheduleType::parse(&a.schedule_type)?;
            self.check_schedule(kind, &a.schedule_value)?;
            Ok::<_, ValidationError>(Request::ScheduleTask {
                prompt: a.prompt.clone(),
                schedule_type: kind,
                schedule_value: a.schedule_value.clone(),
                context_mode: opt(
                    a.context_mode.as_deref(),
                    "context_mode",
                    ContextMode::parse,
                )?,
                target_jid: opt(a.target_jid.as_deref(), "target_jid", Jid::parse)?,
            })
        })();
        match parsed {
            Ok(req) => self.submit(req).await,
            Err(e) => refuse(e),
        }
    }

    #[tool(description = "List scheduled tasks (the main group sees all, others their own).")]
    async fn list_tasks(&self) -> ToolResult {
        Ok(self.read_snapshot(TASKS_FILE))
    }

    #[tool(description = "Change a task's prompt, schedule or context mode.")]
    async fn update_task(&self, Parameters(a): Parameters<UpdateTaskArgs>) -> ToolResult {
        let parsed = (|| {
            let schedule_type = opt(
                a.schedule_type.as_deref(),
                "schedule_type",
                ScheduleType::parse,
            )?;
            if let (Some(kind), Some(value)) = (schedule_type, &a.schedule_value) {
                self.check_schedule(kind, value)?;
            }
            Ok::<_, ValidationError>(Request::UpdateTask {
                task_id: TaskId::parse(&a.task_id).map_err(|e| e.for_field("task_id"))?,
                prompt: a.prompt.clone(),
                schedule_type,
                schedule_value: a.schedule_value.clone(),
                context_mode: opt(
                    a.context_mode.as_deref(),
                    "context_mode",
                    ContextMode::parse,
                )?,
            })
        })();
        match parsed {
            Ok(req) => self.submit(req).await,
            Err(e) => refuse(e),
        }
    }

    #[tool(description = "Pause a task: no runs until it is resumed.")]
    async fn pause_task(&self, Parameters(a): Parameters<TaskIdArgs>) -> ToolResult {
        match TaskId::parse(&a.task_id) {
            Ok(task_id) => self.submit(Request::PauseTask { task_id }).await,
            Err(e) => refuse(e.for_field("task_id")),
        }
    }

    #[tool(description = "Resume a paused task; its next run is computed from now.")]
    async fn resume_task(&self, Parameters(a): Parameters<TaskIdArgs>) -> ToolResult {
        match TaskId::parse(&a.task_id) {
            Ok(task_id) => self.submit(Request::ResumeTask { task_id }).await,
            Err(e) => refuse(e.for_field("task_id")),
        }
    }

    #[tool(description = "Cancel (delete) a task.")]
    async fn cancel_task(&self, Parameters(a): Parameters<TaskIdArgs>) -> ToolResult {
        match TaskId::parse(&a.task_id) {
            Ok(task_id) => self.submit(Request::CancelTask { task_id }).await,
            Err(e) => refuse(e.for_field("task_id")),
        }
    }

    #[tool(description = "Register a chat as a new group (main group only).")]
    async fn register_group(&self, Parameters(a): Parameters<RegisterGroupArgs>) -> ToolResult {
        let parsed = (|| {
            Ok::<_, ValidationError>(Request::RegisterGroup {
                jid: Jid::parse(&a.jid)?,
                name: a.name.clone(),
                folder: FolderName::parse(&a.folder)?,
                trigger: a.trigger.clone(),
                requires_trigger: a.requires_trigger,
            })
        })();
        match parsed {
            Ok(req) => self.submit(req).await,
            Err(e) => refuse(e),
        }
    }

    #[tool(description = "Refresh the list of known chats in list_groups (main group only).")]
    async fn refresh_groups(&self) -> ToolResult {
        self.submit(Request::RefreshGroups).await
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
        let refreshed = self.submit(Request::RefreshSkills).await?;
        if refreshed.is_error == Some(true) {
            return Ok(refreshed);
        }
        Ok(self.read_snapshot(SKILLS_FILE))
    }

    #[tool(
        description = "Enable a skill for this group (or, from the main group, for another group)."
    )]
    async fn enable_skill(&self, Parameters(a): Parameters<SkillArgs>) -> ToolResult {
        self.skill(a, true).await
    }

    #[tool(
        description = "Disable a skill for this group (or, from the main group, for another group)."
    )]
    async fn disable_skill(&self, Parameters(a): Parameters<SkillArgs>) -> ToolResult {
        self.skill(a, false).await
    }
}

impl AgentTools {
    /// Overrides how long tools wait for the host.
    pub fn with_timeout(mut self, timeout: Duration) -> AgentTools {
        self.timeout = timeout;
        self
    }

    fn check_schedule(&self, kind: ScheduleType, value: &str) -> Result<(), ValidationError> {
        Schedule::parse(kind, value, self.timezone, chrono::Utc::now()).map(|_| ())
    }

    async fn skill(&self, a: SkillArgs, on: bool) -> ToolResult {
        let skill_name = match SkillName::parse(&a.skill_name).map(|n| n.as_str().to_owned()) {
            Ok(n) => n,
            Err(e) => return refuse(e),
        };
        let target_group_folder = match opt(
            a.target_group_folder.as_deref(),
            "target_group_folder",
            FolderName::parse,
        ) {
            Ok(f) => f,
            Err(e) => return refuse(e),
        };
        let req = if on {
            Request::EnableSkill {
                skill_name,
                target_group_folder,
            }
        } else {
            Request::DisableSkill {
                skill_name,
                target_group_folder,
            }
        };
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
/// response, which is then removed. Public so other writers (and tests) share it.
pub async fn submit(ipc_dir: &Path, req: &Request, timeout: Duration) -> anyhow::Result<Response> {
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
pub const IPC_VERSION: u32 = 1;

/// Serves the tools on stdin/stdout until the client closes them (`tools` from
/// [`AgentTools::from_env`], whose errors are the caller's to report: exit 2).
pub fn serve_stdio(tools: AgentTools) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let service = tools.serve(rmcp::transport::stdio()).await?;
        service.waiting().await?;
        Ok(())
    })
}
