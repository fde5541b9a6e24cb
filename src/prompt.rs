//! Prompts from stored messages: which messages make the agent answer (trigger rules),
//! which of them go along as context, and the text the agent gets. No I/O here; the
//! orchestrator feeds in rows and acts on the result.
//!
//! * The main group, groups registered with `requires_trigger = false`, and direct
//!   (terminal) messages answer every message.
//! * Other groups answer a message that starts with the group's trigger (e.g. `@Andy`,
//!   case-insensitive, followed by a non-word character or the end) or that really
//!   mentions the assistant.
//! * Messages that do not trigger are kept, and handed to the agent as context with
//!   the next triggered batch (at most [`CONTEXT_LIMIT`] of them).
//! * Messages marked `is_from_bot` (other bots, senders the allowlist keeps as context
//!   only) never trigger but are context like any other (channels do not hand over
//!   the assistant's own messages).

use chrono_tz::Tz;

use crate::store::groups::Group;
use crate::store::messages::Message;
use crate::store::tasks::Task;

/// How many messages are read past the cursor at a time.
pub(crate) const PAGE: usize = 100;
/// The most messages one prompt carries.
pub(crate) const CONTEXT_LIMIT: usize = 50;

/// Whether `content` starts with `trigger` as a whole word (case-insensitive).
pub(crate) fn starts_with_trigger(content: &str, trigger: &str) -> bool {
    let content = content.trim_start();
    let Some(head) = content.get(..trigger.len()) else {
        return false;
    };
    if !head.eq_ignore_ascii_case(trigger) && head.to_lowercase() != trigger.to_lowercase() {
        return false;
    }
    match content[trigger.len()..].chars().next() {
        None => true,
        Some(c) => !(c.is_alphanumeric() || c == '_'),
    }
}

/// Whether `m` makes `group`'s assistant answer.
pub(crate) fn triggers(group: &Group, m: &Message) -> bool {
    if m.is_from_bot {
        return false;
    }
    group.is_main
        || !group.requires_trigger
        || m.mentions_bot
        || starts_with_trigger(&m.content, &group.trigger)
}

/// What to do with a page of messages read past a chat's cursor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Run a turn with `messages`; when its reply is queued, the cursor moves to `through`.
    Answer {
        messages: Vec<Message>,
        through: i64,
    },
    /// Nothing to answer yet. If `advance_to` is set, older untriggered messages are
    /// beyond the context window: the cursor may move there without a turn.
    Wait { advance_to: Option<i64> },
}

/// Decides on `page` (messages after the cursor, oldest first, at most [`PAGE`]).
pub(crate) fn decide(group: &Group, page: &[Message]) -> Decision {
    let last_trigger = page.iter().rposition(|m| triggers(group, m));
    match last_trigger {
        Some(k) => {
            let through = page[k].id;
            let prompt_msgs: Vec<Message> = page[..=k].to_vec();
            let skip = prompt_msgs.len().saturating_sub(CONTEXT_LIMIT);
            Decision::Answer {
                messages: prompt_msgs[skip..].to_vec(),
                through,
            }
        }
        None if page.len() > CONTEXT_LIMIT => Decision::Wait {
            advance_to: Some(page[page.len() - CONTEXT_LIMIT - 1].id),
        },
        None => Decision::Wait { advance_to: None },
    }
}

/// Escapes text for an XML attribute or element.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The prompt for a batch of chat messages (NanoClaw's format).
pub(crate) fn format_messages(messages: &[Message], tz: Tz) -> String {
    let mut out = format!(
        "<context timezone=\"{}\"/>\n<messages>\n",
        xml_escape(tz.name())
    );
    for m in messages {
        let time = m.sent_at.with_timezone(&tz).format("%Y-%m-%d %H:%M");
        out.push_str(&format!(
            "<message sender=\"{}\" time=\"{}\">{}</message>\n",
            xml_escape(&m.sender_name),
            time,
            xml_escape(&m.content)
        ));
    }
    out.push_str("</messages>");
    out
}

/// The prompt for a scheduled run: clearly marked, so the agent knows nobody is
/// waiting on the other side and that its reply is posted to the task's chat.
pub(crate) fn format_task(task: &Task, due: chrono::DateTime<chrono::Utc>, tz: Tz) -> String {
    format!(
        "<context timezone=\"{}\"/>\n<scheduled_task id=\"{}\" schedule=\"{} {}\" due=\"{}\">\n{}\n</scheduled_task>\n\
         This is a scheduled task, not a live message. Do what it asks; your reply is posted to the chat.",
        xml_escape(tz.name()),
        xml_escape(task.id.as_str()),
        task.schedule_type,
        xml_escape(&task.schedule_value),
        due.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        xml_escape(&task.prompt),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FolderName, Jid};
    use chrono::{TimeZone, Utc};

    fn group(main: bool, requires: bool) -> Group {
        Group {
            jid: Jid::parse("1@discord").unwrap(),
            name: "G".into(),
            folder: FolderName::parse("g").unwrap(),
            trigger: "@Andy".into(),
            requires_trigger: requires,
            is_main: main,
            container_config: None,
            added_at: Utc::now(),
        }
    }

    fn msg(id: i64, content: &str) -> Message {
        Message {
            id,
            chat_jid: Jid::Discord(1),
            sender_id: "u1".into(),
            sender_name: "Alice".into(),
            content: content.into(),
            sent_at: Utc.with_ymd_and_hms(2026, 11, 25, 0, 5, 0).unwrap(),
            is_from_bot: false,
            mentions_bot: false,
        }
    }

    #[test]
    fn trigger_words() {
        for yes in [
            "@Andy hi",
            "@andy, summarise",
            "@ANDY",
            "  @Andy: x",
            "@Andy\nnext",
        ] {
            assert!(starts_with_trigger(yes, "@Andy"), "{yes}");
        }
        for no in [
            "hi @Andy",
            "@Andybot hi",
            "@And",
            "",
            "@Andy_x",
            "이거 @Andy 요약해줘",
        ] {
            assert!(!starts_with_trigger(no, "@Andy"), "{no}");
        }
        assert!(starts_with_trigger("@앤디 요약해줘", "@앤디"));
    }

    #[test]
    fn who_answers_what() {
        let plain = msg(1, "hello");
        let trig = msg(2, "@Andy hello");
        let mut mention = msg(3, "hey <@42> look");
        mention.mentions_bot = true;
        let mut own = msg(4, "@Andy I said this");
        own.is_from_bot = true;
        assert!(triggers(&group(true, false), &plain));
        assert!(!triggers(&group(true, false), &own));
        assert!(triggers(&group(false, false), &plain));
        let g = group(false, true);
        assert!(!triggers(&g, &plain));
        assert!(triggers(&g, &trig));
        assert!(triggers(&g, &mention));
        assert!(!triggers(&g, &own));
    }

    #[test]
    fn untriggered_messages_become_context() {
        let g = group(false, true);
        let page = vec![
            msg(1, "a"),
            msg(2, "b"),
            msg(3, "@Andy what do you think?"),
            msg(4, "later"),
        ];
        match decide(&g, &page) {
            Decision::Answer { messages, through } => {
                assert_eq!(through, 3);
                assert_eq!(messages.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2, 3]);
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(decide(&g, &page[..2]), Decision::Wait { advance_to: None });
    }

    #[test]
    fn bot_messages_are_context_not_triggers() {
        let g = group(false, true);
        let mut bot = msg(1, "@Andy from another bot");
        bot.is_from_bot = true;
        assert_eq!(
            decide(&g, std::slice::from_ref(&bot)),
            Decision::Wait { advance_to: None }
        );
        match decide(&g, &[bot, msg(2, "@Andy go")]) {
            Decision::Answer { messages, through } => {
                assert_eq!(through, 2);
                assert_eq!(messages.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2]);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn context_is_bounded() {
        let g = group(false, true);
        let mut page: Vec<Message> = (1..=PAGE as i64).map(|i| msg(i, "chatter")).collect();
        // No trigger in a full page: older messages fall out of the window.
        assert_eq!(
            decide(&g, &page),
            Decision::Wait {
                advance_to: Some(PAGE as i64 - CONTEXT_LIMIT as i64)
            }
        );
        page[PAGE - 1] = msg(PAGE as i64, "@Andy sum up");
        match decide(&g, &page) {
            Decision::Answer { messages, through } => {
                assert_eq!(messages.len(), CONTEXT_LIMIT);
                assert_eq!(messages.last().unwrap().id, through);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn prompt_format_escapes() {
        let mut m = msg(1, "a < b & \"c\"");
        m.sender_name = "O'Brien <x>".into();
        let tz: Tz = "Asia/Seoul".parse().unwrap();
        let p = format_messages(&[m], tz);
        assert_eq!(
            p,
            "<context timezone=\"Asia/Seoul\"/>\n<messages>\n\
             <message sender=\"O&apos;Brien &lt;x&gt;\" time=\"2026-11-25 09:05\">a &lt; b &amp; &quot;c&quot;</message>\n\
             </messages>"
        );
    }
}
