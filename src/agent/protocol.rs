//! The part of the `codex app-server` protocol RustClaw speaks, as typed messages.
//!
//! Only the fields we send or read are modelled; everything else codex sends is
//! ignored by serde. The pinned version's JSON schema is test data in
//! `tests/fixtures/codex-app-server-<version>/` (generated with
//! `codex app-server generate-json-schema`), and a test checks these types against it, so an upgrade of codex is a deliberate act, not a surprise.

use serde::{Deserialize, Serialize};

/// The codex version this protocol was written and tested against.
pub const CODEX_VERSION: &str = "0.169.0";

/// Method names, in one place.
pub(crate) mod method {
    pub(crate) const INITIALIZE: &str = "initialize";
    pub(crate) const INITIALIZED: &str = "initialized";
    pub(crate) const THREAD_START: &str = "thread/start";
    pub(crate) const THREAD_RESUME: &str = "thread/resume";
    pub(crate) const TURN_START: &str = "turn/start";
    pub(crate) const TURN_STEER: &str = "turn/steer";
    pub(crate) const TURN_INTERRUPT: &str = "turn/interrupt";

    pub(crate) const TURN_STARTED: &str = "turn/started";
    pub(crate) const TURN_COMPLETED: &str = "turn/completed";
    pub(crate) const ITEM_COMPLETED: &str = "item/completed";
    pub(crate) const AGENT_MESSAGE_DELTA: &str = "item/agentMessage/delta";
    pub(crate) const ERROR: &str = "error";

    pub(crate) const COMMAND_APPROVAL: &str = "item/commandExecution/requestApproval";
    pub(crate) const FILE_CHANGE_APPROVAL: &str = "item/fileChange/requestApproval";
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    pub client_info: ClientInfo,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub name: String,
    pub title: Option<String>,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitializeResponse {}

/// `thread/start` and (with `thread_id`) `thread/resume`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Resume only: do not send the old turns back to us (codex still replays them to
    /// the model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_turns: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub developer_instructions: Option<String>,
    /// Start only: no rollout file, so the thread cannot be resumed later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ThreadResponse {
    pub(crate) thread: Thread,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Thread {
    pub(crate) id: String,
}

/// One item of user input: text, or an image (a data URL read by RustClaw, so codex
/// never opens a path in an agent-writable folder).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UserInput {
    Text { text: String },
    Image { url: String },
}

impl UserInput {
    pub fn text(text: impl Into<String>) -> Vec<UserInput> {
        vec![UserInput::Text { text: text.into() }]
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnStartParams {
    pub thread_id: String,
    pub input: Vec<UserInput>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnSteerParams {
    pub thread_id: String,
    pub input: Vec<UserInput>,
    pub expected_turn_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnInterruptParams {
    pub thread_id: String,
    pub turn_id: String,
}

/// The result of `turn/start`; the payload of `turn/started` and `turn/completed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TurnResponse {
    pub(crate) turn: Turn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Turn {
    pub(crate) id: String,
    pub(crate) status: TurnStatus,
    #[serde(default)]
    pub(crate) error: Option<TurnError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum TurnStatus {
    Completed,
    Interrupted,
    Failed,
    InProgress,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TurnError {
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) additional_details: Option<String>,
    /// codex's own classification (`codexErrorInfo`): a name such as `unauthorized`,
    /// or `{"httpConnectionFailed": {"httpStatusCode": 401}}`.
    #[serde(default)]
    pub(crate) codex_error_info: Option<serde_json::Value>,
}

/// `turn/started`, `turn/completed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TurnNotification {
    pub thread_id: String,
    pub(crate) turn: Turn,
}

/// `item/completed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ItemCompletedNotification {
    pub(crate) thread_id: String,
    pub(crate) turn_id: String,
    pub(crate) item: ThreadItem,
}

/// The items we look at; every other kind deserialises as `Other`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum ThreadItem {
    AgentMessage {
        id: String,
        text: String,
    },
    CommandExecution {
        command: String,
    },
    McpToolCall {
        server: String,
        tool: String,
    },
    #[serde(other)]
    Other,
}

/// `item/agentMessage/delta`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentMessageDeltaNotification {
    pub(crate) thread_id: String,
    pub(crate) turn_id: String,
    pub(crate) item_id: String,
    pub(crate) delta: String,
}

/// `error`: a problem during a turn; `will_retry` false means the turn is failing.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorNotification {
    pub(crate) thread_id: String,
    pub(crate) turn_id: String,
    pub(crate) error: TurnError,
    pub(crate) will_retry: bool,
}

/// The params of the approval requests codex sends us (command or file change).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApprovalRequest {
    #[serde(default)]
    pub(crate) command: Option<String>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

/// The answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalDecision {
    Accept,
    AcceptForSession,
    Decline,
    Cancel,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApprovalResponse {
    pub decision: ApprovalDecision,
}
