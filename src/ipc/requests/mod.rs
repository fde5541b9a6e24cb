//! The request types, one module each (as mini-redis has `cmd/<verb>.rs`): a type's
//! module holds its fields (parsed from the file, written by `agent-tools`, and the
//! JSON schema of its MCP tool — all from one struct), its permission rule (which row
//! of `super::authorize`'s table it is, with the facts that row needs) and its
//! effect. The `requests!` list below names the types once: a new type is one new file plus
//! one line there.
//!
//! Field names are NanoClaw v1's, verbatim (`chatJid`, `taskId`, `schedule_type`, ...),
//! so an agent written for NanoClaw works unchanged; snake_case aliases (`chat_jid`,
//! `task_id`, ...) are accepted too. Unknown fields are ignored (NanoClaw writes
//! `groupFolder`, `isMain`, `timestamp`: identity comes from the directory, never from
//! the payload).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::{Value, json};

use super::apply::{Changes, Env};
use super::authorize::{Act, Sender, authorize};
use super::outcome::{Outcome, Step};
use crate::actions::ActionError;
use crate::bus::Topic;
use crate::model::{FolderName, ScheduleType, TaskId, ValidationError};
use crate::recurrence::Schedule;
use crate::store::groups::Group;
use crate::store::tasks::{self, Task};

pub(crate) mod fields;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) use fields::Fields;

/// What each request type provides; see the module docs.
pub(crate) trait RequestType: Sized + Serialize + schemars::JsonSchema {
    /// The `type` field.
    const TYPE: &'static str;
    /// The subdirectory a writer puts it in: NanoClaw puts messages in `messages/`,
    /// everything else in `tasks/` (the host reads both alike).
    const SUBDIR: &'static str = "tasks";
    /// The `agent-tools` tool that writes it, if agents get one.
    const TOOL: Option<Tool>;
    /// Reads and validates the fields (the `type` is already known).
    fn parse(f: &Fields<'_>) -> Result<Self, ValidationError>;
    /// What the writer can check before writing, with the agent's timezone; the host
    /// checks everything again.
    fn check_before_writing(&self, _timezone: Tz) -> Result<(), ValidationError> {
        Ok(())
    }
    /// Authorises (the sender is `cx.sender`) and applies the request in the open
    /// transaction.
    fn apply(&self, cx: &Ctx<'_>) -> Step<Outcome>;
}

/// An MCP tool of `agent-tools`: its name and what the model is told it does. Its
/// input schema is the request struct's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
}

/// Lists the request types once and derives from that list the [`Request`] enum,
/// [`REQUEST_TYPES`], and the dispatch of parsing, writing and applying.
macro_rules! requests {
    ($($module:ident :: $ty:ident),+ $(,)?) => {
        $(pub mod $module;)+
        $(pub use $module::$ty;)+

        /// A parsed, field-validated request. Authorisation and the rules that need
        /// the database (does this task exist, is this chat registered) come later.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $($ty($ty),)+
        }

        $(impl From<$ty> for Request {
            fn from(r: $ty) -> Request {
                Request::$ty(r)
            }
        })+

        /// Every request type the host understands, as spelled in the `type` field.
        pub const REQUEST_TYPES: &[&str] = &[$(<$ty as RequestType>::TYPE,)+];

        impl Request {
            /// The `type` string of this request.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Request::$ty(_) => <$ty as RequestType>::TYPE,)+
                }
            }

            /// The subdirectory a writer puts this request in.
            pub fn subdir(&self) -> &'static str {
                match self {
                    $(Request::$ty(_) => <$ty as RequestType>::SUBDIR,)+
                }
            }

            /// The request as written to disk, with NanoClaw's field names.
            pub fn to_json(&self) -> Value {
                match self {
                    $(Request::$ty(r) => to_json(r),)+
                }
            }

            /// Reads a request of type `kind`; `None` for a type nobody defined.
            pub(crate) fn parse(
                kind: &str,
                f: &Fields<'_>,
            ) -> Option<Result<Request, ValidationError>> {
                $(if kind == <$ty as RequestType>::TYPE {
                    return Some(<$ty as RequestType>::parse(f).map(Request::$ty));
                })+
                None
            }

            pub(crate) fn check_before_writing(&self, timezone: Tz) -> Result<(), ValidationError> {
                match self {
                    $(Request::$ty(r) => r.check_before_writing(timezone),)+
                }
            }

            /// Authorises and applies the request: every path ends in an [`Outcome`].
            pub(crate) fn apply(&self, cx: &Ctx<'_>) -> Outcome {
                match self {
                    $(Request::$ty(r) => r.apply(cx).unwrap_or_else(|end| end),)+
                }
            }
        }

        /// Every request type and the JSON schema of its struct.
        #[cfg(test)]
        pub(crate) fn schemas() -> Vec<(&'static str, schemars::Schema)> {
            vec![$((<$ty as RequestType>::TYPE, schemars::schema_for!($ty)),)+]
        }

        /// Each request type that has an `agent-tools` tool: its type, the tool, and
        /// the tool's input schema (the request struct's).
        pub(crate) fn tools() -> Vec<(&'static str, Tool, schemars::Schema)> {
            let mut out = Vec::new();
            $(if let Some(tool) = <$ty as RequestType>::TOOL {
                out.push((<$ty as RequestType>::TYPE, tool, schemars::schema_for!($ty)));
            })+
            out
        }
    };
}

requests! {
    message::Message,
    schedule_task::ScheduleTask,
    update_task::UpdateTask,
    pause_task::PauseTask,
    resume_task::ResumeTask,
    cancel_task::CancelTask,
    register_group::RegisterGroup,
    refresh_groups::RefreshGroups,
    enable_skill::EnableSkill,
    disable_skill::DisableSkill,
    refresh_skills::RefreshSkills,
}

fn to_json<T: RequestType>(r: &T) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("type".into(), json!(T::TYPE));
    }
    v
}

/// What applying a request can see: the open transaction, the settings, the sending
/// group (the directory the file was in) and the time.
pub(crate) struct Ctx<'a> {
    pub(crate) tx: &'a Connection,
    pub(crate) env: &'a Env,
    pub(crate) sender: &'a Group,
    pub(crate) now: DateTime<Utc>,
}

impl Ctx<'_> {
    /// Looks `act` up in the permission table for the sender.
    pub(crate) fn authorize(&self, act: Act<'_>) -> Step<()> {
        let who = Sender {
            folder: &self.sender.folder,
            is_main: self.sender.is_main,
        };
        Ok(authorize(who, act)?)
    }

    /// What the store records as the origin of rows this request creates.
    pub(crate) fn origin(&self) -> String {
        format!("ipc:{}", self.sender.folder)
    }

    /// A task the sender may change: it exists and the table lets the sender change
    /// its owner's tasks.
    pub(crate) fn owned_task(&self, id: &TaskId) -> Step<Task> {
        let Some(task) = tasks::get(self.tx, id)? else {
            return Err(Outcome::invalid(format!("task {id} not found")));
        };
        self.authorize(Act::ChangeTask {
            owner: &task.group_folder,
        })?;
        Ok(task)
    }

    /// An agent's schedule may not run more often than `MIN_TASK_INTERVAL_MS`.
    pub(crate) fn check_agent_schedule(&self, kind: ScheduleType, value: &str) -> Step<()> {
        let (tz, now) = (self.env.timezone, self.now);
        let schedule = Schedule::parse(kind, value, tz, now).map_err(ActionError::from)?;
        schedule
            .check_min_gap(
                tz,
                now,
                self.env.limits.min_task_interval_ms,
                "schedules made by an agent (MIN_TASK_INTERVAL_MS)",
            )
            .map_err(ActionError::from)?;
        Ok(())
    }

    /// A group may hold at most `MAX_TASKS_PER_GROUP` active tasks.
    pub(crate) fn check_room(&self, folder: &FolderName) -> Step<()> {
        let max = self.env.limits.max_tasks_per_group;
        if tasks::count_active(self.tx, folder)? >= max {
            return Err(Outcome::invalid(format!(
                "group {folder} already has {max} active tasks, the most allowed (MAX_TASKS_PER_GROUP); cancel or pause one first"
            )));
        }
        Ok(())
    }
}

/// What a change to task `id` of `folder` announces.
pub(crate) fn task_changed(folder: &FolderName, id: &TaskId) -> Changes {
    Changes {
        tasks: vec![(folder.clone(), id.clone())],
        ..Default::default()
    }
    .topic(Topic::Tasks)
}

/// The result an agent gets about a task it changed.
pub(crate) fn task_result(t: &Task) -> Value {
    json!({ "taskId": t.id, "status": t.status, "nextRun": t.next_run })
}

/// The outcome of pause, resume, cancel and update: `task <id> <verb>`.
pub(crate) fn task_done(
    id: &TaskId,
    verb: &str,
    after: Option<&Task>,
    owner: &FolderName,
) -> Outcome {
    Outcome::ok(
        format!("task {id} {verb}"),
        after.map(task_result),
        task_changed(owner, id),
    )
}

/// A schema-only stand-in for a word enum of [`crate::model`]: a string, one of
/// the enum's words (`#[schemars(with = "...")]` on a request field).
macro_rules! word_schema {
    ($name:ident, $words:ty) => {
        pub(crate) struct $name;

        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($words).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let words: Vec<&str> = <$words>::ALL.iter().map(|w| w.as_str()).collect();
                schemars::json_schema!({ "type": "string", "enum": words })
            }
        }
    };
}

word_schema!(ScheduleTypeSchema, ScheduleType);
word_schema!(ContextModeSchema, crate::model::ContextMode);
