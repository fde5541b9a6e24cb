//! The typed `codex app-server` client: handshake, threads, turns, and the events of a
//! turn decoded from codex's notifications.
//!
//! [`CodexClient`] is cheap to clone, so one task can run a turn (reading events) while
//! another steers or interrupts it. Server→client requests are answered inside the
//! reader task by [`approval_handler`]: approvals per the configured
//! [`ApprovalDecision`], everything else with a JSON-RPC error, so a turn never waits
//! on us.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::protocol::{
    AgentMessageDeltaNotification, ApprovalDecision, ApprovalRequest, ApprovalResponse, ClientInfo,
    ErrorNotification, InitializeParams, InitializeResponse, ItemCompletedNotification, ThreadItem,
    ThreadParams, ThreadResponse, Turn, TurnInterruptParams, TurnNotification, TurnResponse,
    TurnStartParams, TurnSteerParams, UserInput, method,
};
use super::rpc::{
    HandlerError, METHOD_NOT_FOUND, Notification, RequestHandler, RpcClient, RpcError,
};

#[derive(Clone)]
pub(crate) struct CodexClient {
    rpc: RpcClient,
}

impl CodexClient {
    /// Connects to an app-server over `reader`/`writer` (not yet initialised). Raw
    /// notifications arrive on the returned receiver; decode them with
    /// [`CodexEvent::decode`].
    pub(crate) fn connect<R, W>(
        reader: R,
        writer: W,
        approvals: ApprovalDecision,
    ) -> (CodexClient, mpsc::UnboundedReceiver<Notification>)
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (rpc, notes) = RpcClient::spawn(reader, writer, approval_handler(approvals));
        (CodexClient { rpc }, notes)
    }

    /// `initialize` then the `initialized` notification.
    pub(crate) async fn initialize(&self) -> Result<InitializeResponse, RpcError> {
        let params = InitializeParams {
            client_info: ClientInfo {
                name: "rust_claw".to_owned(),
                title: Some("RustClaw".to_owned()),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
        };
        let resp = self.rpc.request(method::INITIALIZE, &params).await?;
        self.rpc.notify(method::INITIALIZED, None)?;
        Ok(resp)
    }

    pub(crate) async fn thread_start(
        &self,
        params: &ThreadParams,
    ) -> Result<ThreadResponse, RpcError> {
        self.rpc.request(method::THREAD_START, params).await
    }

    /// `thread/resume`; `params.thread_id` must be set.
    pub(crate) async fn thread_resume(
        &self,
        params: &ThreadParams,
    ) -> Result<ThreadResponse, RpcError> {
        self.rpc.request(method::THREAD_RESUME, params).await
    }

    pub(crate) async fn turn_start(
        &self,
        thread_id: &str,
        input: Vec<UserInput>,
    ) -> Result<Turn, RpcError> {
        let params = TurnStartParams {
            thread_id: thread_id.to_owned(),
            input,
        };
        let resp: TurnResponse = self.rpc.request(method::TURN_START, &params).await?;
        Ok(resp.turn)
    }

    /// Adds input to the running turn `turn_id` (codex refuses if it is not the
    /// active one).
    pub(crate) async fn turn_steer(
        &self,
        thread_id: &str,
        turn_id: &str,
        input: Vec<UserInput>,
    ) -> Result<(), RpcError> {
        let params = TurnSteerParams {
            thread_id: thread_id.to_owned(),
            input,
            expected_turn_id: turn_id.to_owned(),
        };
        let _: Value = self.rpc.request(method::TURN_STEER, &params).await?;
        Ok(())
    }

    /// Asks codex to stop the turn; it then completes with status `interrupted`.
    pub(crate) async fn turn_interrupt(
        &self,
        thread_id: &str,
        turn_id: &str,
    ) -> Result<(), RpcError> {
        let params = TurnInterruptParams {
            thread_id: thread_id.to_owned(),
            turn_id: turn_id.to_owned(),
        };
        let _: Value = self.rpc.request(method::TURN_INTERRUPT, &params).await?;
        Ok(())
    }

    /// Closes codex's stdin; the app-server exits when it sees end of input.
    pub(crate) fn close(&self) {
        self.rpc.close();
    }
}

/// The answer to every server→client request, decided without waiting for anyone.
pub(crate) fn approval_handler(decision: ApprovalDecision) -> RequestHandler {
    Arc::new(move |m: &str, params: &Value| match m {
        method::COMMAND_APPROVAL | method::FILE_CHANGE_APPROVAL => {
            let req: Option<ApprovalRequest> = serde_json::from_value(params.clone()).ok();
            tracing::info!(
                request = m,
                command = req
                    .as_ref()
                    .and_then(|r| r.command.as_deref())
                    .unwrap_or("-"),
                reason = req
                    .as_ref()
                    .and_then(|r| r.reason.as_deref())
                    .unwrap_or("-"),
                ?decision,
                "agent asked for approval"
            );
            Ok(serde_json::to_value(ApprovalResponse { decision }).unwrap_or(Value::Null))
        }
        // An MCP server asking its user something. Our own tools never do; answer
        // with the approval decision so codex can continue either way.
        "mcpServer/elicitation/request" => {
            let action = match decision {
                ApprovalDecision::Accept | ApprovalDecision::AcceptForSession => "accept",
                ApprovalDecision::Decline => "decline",
                ApprovalDecision::Cancel => "cancel",
            };
            Ok(json!({"action": action, "content": null}))
        }
        other => Err(HandlerError {
            code: METHOD_NOT_FOUND,
            message: format!("{other} is not supported by rust_claw"),
        }),
    })
}

/// The notifications a turn cares about. Everything else decodes to `None`.
#[derive(Debug, Clone)]
pub(crate) enum CodexEvent {
    TurnStarted {
        turn_id: String,
    },
    /// A piece of an agent message as the model streams it.
    Delta {
        turn_id: String,
        item_id: String,
        delta: String,
    },
    /// A complete agent message.
    AgentMessage {
        turn_id: String,
        item_id: String,
        text: String,
    },
    /// Another kind of item finished (a command, a tool call, ...): logged only.
    ItemCompleted {
        turn_id: String,
        summary: String,
    },
    Error {
        turn_id: String,
        message: String,
        info: Option<super::error::CodexErrorInfo>,
        will_retry: bool,
    },
    TurnCompleted {
        turn: Turn,
    },
}

impl CodexEvent {
    /// Decodes a notification of thread `thread_id`; `None` for kinds we do not use,
    /// other threads, and payloads that do not match the pinned schema (logged).
    pub(crate) fn decode(note: &Notification, thread_id: &str) -> Option<CodexEvent> {
        fn parse<T: serde::de::DeserializeOwned>(n: &Notification) -> Option<T> {
            match serde_json::from_value(n.params.clone()) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(method = %n.method, error = %e, "unexpected notification shape; ignored");
                    None
                }
            }
        }
        let event = match note.method.as_str() {
            method::TURN_STARTED => {
                let n: TurnNotification = parse(note)?;
                (n.thread_id == thread_id)
                    .then_some(CodexEvent::TurnStarted { turn_id: n.turn.id })?
            }
            method::TURN_COMPLETED => {
                let n: TurnNotification = parse(note)?;
                (n.thread_id == thread_id).then_some(CodexEvent::TurnCompleted { turn: n.turn })?
            }
            method::AGENT_MESSAGE_DELTA => {
                let n: AgentMessageDeltaNotification = parse(note)?;
                (n.thread_id == thread_id).then_some(CodexEvent::Delta {
                    turn_id: n.turn_id,
                    item_id: n.item_id,
                    delta: n.delta,
                })?
            }
            method::ITEM_COMPLETED => {
                let n: ItemCompletedNotification = parse(note)?;
                if n.thread_id != thread_id {
                    return None;
                }
                match n.item {
                    ThreadItem::AgentMessage { id, text } => CodexEvent::AgentMessage {
                        turn_id: n.turn_id,
                        item_id: id,
                        text,
                    },
                    ThreadItem::CommandExecution { command, .. } => CodexEvent::ItemCompleted {
                        turn_id: n.turn_id,
                        summary: format!("command: {command}"),
                    },
                    ThreadItem::McpToolCall { server, tool, .. } => CodexEvent::ItemCompleted {
                        turn_id: n.turn_id,
                        summary: format!("tool: {server}.{tool}"),
                    },
                    ThreadItem::Other => return None,
                }
            }
            method::ERROR => {
                let n: ErrorNotification = parse(note)?;
                (n.thread_id == thread_id).then_some(CodexEvent::Error {
                    turn_id: n.turn_id,
                    info: super::error::CodexErrorInfo::from_json(
                        n.error.codex_error_info.as_ref(),
                    ),
                    message: n.error.message,
                    will_retry: n.will_retry,
                })?
            }
            _ => return None,
        };
        Some(event)
    }

    pub(crate) fn turn_id(&self) -> &str {
        match self {
            CodexEvent::TurnStarted { turn_id }
            | CodexEvent::Delta { turn_id, .. }
            | CodexEvent::AgentMessage { turn_id, .. }
            | CodexEvent::ItemCompleted { turn_id, .. }
            | CodexEvent::Error { turn_id, .. } => turn_id,
            CodexEvent::TurnCompleted { turn } => &turn.id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(method: &str, params: Value) -> Notification {
        Notification {
            method: method.to_owned(),
            params,
        }
    }

    #[test]
    fn decodes_the_events_of_a_turn() {
        let msg = note(
            "item/completed",
            json!({"threadId":"t","turnId":"u","completedAtMs":1,
                   "item":{"type":"agentMessage","id":"i","text":"hi","phase":null}}),
        );
        assert!(matches!(
            CodexEvent::decode(&msg, "t"),
            Some(CodexEvent::AgentMessage { text, .. }) if text == "hi"
        ));
        assert!(CodexEvent::decode(&msg, "other-thread").is_none());
        let done = note(
            "turn/completed",
            json!({"threadId":"t","turn":{"id":"u","status":"failed","items":[],
                   "error":{"message":"boom","codexErrorInfo":null}}}),
        );
        match CodexEvent::decode(&done, "t") {
            Some(CodexEvent::TurnCompleted { turn }) => {
                assert_eq!(turn.status, super::super::protocol::TurnStatus::Failed);
                assert_eq!(turn.error.unwrap().message, "boom");
            }
            other => panic!("{other:?}"),
        }
        // Unknown kinds and unknown items are ignored.
        assert!(CodexEvent::decode(&note("thread/tokenUsage/updated", json!({})), "t").is_none());
        let reasoning = note(
            "item/completed",
            json!({"threadId":"t","turnId":"u","completedAtMs":1,"item":{"type":"reasoning","id":"r"}}),
        );
        assert!(CodexEvent::decode(&reasoning, "t").is_none());
    }

    #[test]
    fn approvals_follow_the_policy_and_the_rest_is_refused() {
        let h = approval_handler(ApprovalDecision::Decline);
        let params =
            json!({"threadId":"t","turnId":"u","itemId":"i","startedAtMs":0,"command":"ls"});
        assert_eq!(
            h(method::COMMAND_APPROVAL, &params).unwrap(),
            json!({"decision":"decline"})
        );
        let h = approval_handler(ApprovalDecision::Accept);
        assert_eq!(
            h(method::FILE_CHANGE_APPROVAL, &params).unwrap(),
            json!({"decision":"accept"})
        );
        for m in [
            "item/tool/call",
            "item/tool/requestUserInput",
            "attestation/generate",
        ] {
            assert_eq!(h(m, &json!({})).unwrap_err().code, METHOD_NOT_FOUND);
        }
    }
}
