//! `message`: send `text` to a chat now, through the durable outbox.

use serde::Serialize;
use serde_json::json;

use super::fields::{CHAT_JID, TEXT};
use super::{Ctx, Fields, RequestType, Tool};
use crate::bus::Topic;
use crate::ipc::apply::Changes;
use crate::ipc::authorize::Act;
use crate::ipc::outcome::{Outcome, Step};
use crate::model::{Jid, ValidationError};
use crate::store::{groups, outbox};

/// The longest `text` a `message` request may carry.
pub const MAX_TEXT_CHARS: usize = 16_000;

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Message {
    /// The chat to send to (`<channel id>@discord`); `agent-tools` defaults it to
    /// this group's own chat.
    #[serde(rename = "chatJid")]
    #[schemars(with = "String")]
    pub chat_jid: Jid,
    /// The text to send (1 to 16,000 characters).
    pub text: String,
}

/// A `message` request's text: 1 to [`MAX_TEXT_CHARS`] characters, not blank.
fn message_text(text: &str) -> Result<String, ValidationError> {
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

impl RequestType for Message {
    const TYPE: &'static str = "message";
    const SUBDIR: &'static str = "messages";
    const TOOL: Option<Tool> = Some(Tool {
        name: "send_message",
        description: "Send a message to a chat now (default: this group's chat). Non-main groups can only send to their own chat.",
    });

    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(Message {
            chat_jid: f.parsed(CHAT_JID, Jid::parse)?,
            text: f.parsed(TEXT, message_text)?,
        })
    }

    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome> {
        let target = groups::get_by_jid(cx.tx, &self.chat_jid)?;
        cx.authorize(Act::SendMessage {
            target_folder: target.as_ref().map(|g| &g.folder),
        })?;
        let id = outbox::enqueue(
            cx.tx,
            &self.chat_jid,
            &self.text,
            &cx.origin(),
            cx.now,
        )?;
        Ok(Outcome::ok(
            format!("message queued for {}", self.chat_jid),
            Some(json!({ "outboxId": id })),
            Changes::default().topic(Topic::Outbox),
        ))
    }
}
