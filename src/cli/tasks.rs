//! `create-task`, `list-tasks`, `pause-task`, `resume-task`, `cancel-task`, `task-runs`.

use std::ops::ControlFlow;

use chrono_tz::Tz;
use clap::Args;

use super::output::{JsonArray, clip, finished, print_listing, when, when_secs};
use super::{CliError, Context};
use crate::actions::{self, NewTask};
use crate::bus::{self, Topic};
use crate::model::{ContextMode, FolderName, Jid, ScheduleType, TaskId, TaskStatus};
use crate::store::tasks::{self, Task};

#[derive(Debug, Args)]
pub(crate) struct CreateTaskArgs {
    /// Task id (default: generated).
    #[arg(long)]
    pub(crate) id: Option<TaskId>,
    /// The group the task belongs to.
    #[arg(long)]
    pub(crate) group_folder: FolderName,
    /// The chat the output goes to; must be the group's registered chat.
    #[arg(long)]
    pub(crate) chat_jid: Jid,
    /// What the agent is asked to do at each run.
    #[arg(long)]
    pub(crate) prompt: String,
    /// cron | interval | once
    #[arg(long)]
    pub(crate) schedule_type: ScheduleType,
    /// cron: 5-field crontab; interval: milliseconds; once: RFC 3339 or local YYYY-MM-DDTHH:MM.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) schedule_value: String,
    /// group (the group's ongoing session) | isolated (a fresh one).
    #[arg(long, default_value = "group")]
    pub(crate) context_mode: ContextMode,
    /// IANA timezone for the schedule (default: TIMEZONE).
    #[arg(long, value_parser = parse_tz)]
    pub(crate) timezone: Option<Tz>,
}

fn parse_tz(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("{s:?} is not an IANA timezone name (e.g. Asia/Seoul, UTC)"))
}

#[derive(Debug, Args)]
pub(crate) struct ListTasksArgs {
    /// Only this group's tasks.
    #[arg(long)]
    pub(crate) group: Option<FolderName>,
    /// Only tasks with this status (active | paused | completed | failed).
    #[arg(long)]
    pub(crate) status: Option<TaskStatus>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TaskIdArgs {
    #[arg(long)]
    pub(crate) id: TaskId,
}

#[derive(Debug, Args)]
pub(crate) struct TaskRunsArgs {
    #[arg(long)]
    pub(crate) id: TaskId,
    /// How many of the latest runs to show.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn create(ctx: &Context, a: CreateTaskArgs) -> Result<(), CliError> {
    let mut store = ctx.open_store()?;
    let req = NewTask {
        id: a.id,
        group_folder: a.group_folder,
        chat_jid: a.chat_jid,
        prompt: a.prompt,
        schedule_type: a.schedule_type,
        schedule_value: a.schedule_value,
        context_mode: a.context_mode,
        timezone: a.timezone,
    };
    let tz = ctx.config.timezone;
    let task = store.write(|tx| actions::create_task(tx, req, "cli", tz, chrono::Utc::now()))?;
    bus::notify(&ctx.paths, Topic::Tasks);
    println!(
        "created task {} (next run {})",
        task.id,
        when(task.next_run, task.timezone)
    );
    Ok(())
}

fn schedule_cell(t: &Task) -> String {
    format!("{} {}", t.schedule_type, clip(&t.schedule_value, 30))
}

pub(crate) fn list(ctx: &Context, a: ListTasksArgs) -> Result<(), CliError> {
    let store = ctx.open_store()?;
    if a.json {
        // Streamed: each task is written as it is read, never all held at once.
        let mut array = JsonArray::stdout();
        let mut written = Ok(());
        tasks::for_each(store.conn(), a.group.as_ref(), a.status, |t| {
            written = array.push(&t);
            if written.is_ok() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        return finished(written.and_then(|()| array.finish().map(drop)));
    }
    let all = tasks::list(store.conn(), a.group.as_ref(), a.status)?;
    print_listing(
        a.json,
        &all,
        &[
            "ID", "GROUP", "SCHEDULE", "MODE", "STATUS", "NEXT_RUN", "LAST_RUN", "PROMPT",
        ],
        |t| {
            vec![
                t.id.to_string(),
                t.group_folder.to_string(),
                schedule_cell(t),
                t.context_mode.to_string(),
                t.status.to_string(),
                when(t.next_run, t.timezone),
                when(t.last_run, t.timezone),
                clip(&t.prompt, 40),
            ]
        },
    )
}

fn change(
    ctx: &Context,
    id: &TaskId,
    verb: &str,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<Task, actions::ActionError>,
) -> Result<(), CliError> {
    let mut store = ctx.open_store()?;
    let task = store.write(f)?;
    bus::notify(&ctx.paths, Topic::Tasks);
    println!(
        "{verb} task {id} (status {}, next run {})",
        task.status,
        when(task.next_run, task.timezone)
    );
    Ok(())
}

pub(crate) fn pause(ctx: &Context, a: TaskIdArgs) -> Result<(), CliError> {
    change(ctx, &a.id, "paused", |tx| actions::pause_task(tx, &a.id))
}

pub(crate) fn resume(ctx: &Context, a: TaskIdArgs) -> Result<(), CliError> {
    change(ctx, &a.id, "resumed", |tx| {
        actions::resume_task(tx, &a.id, chrono::Utc::now())
    })
}

pub(crate) fn cancel(ctx: &Context, a: TaskIdArgs) -> Result<(), CliError> {
    let mut store = ctx.open_store()?;
    store.write(|tx| actions::cancel_task(tx, &a.id))?;
    bus::notify(&ctx.paths, Topic::Tasks);
    println!("cancelled task {} (deleted with its run history)", a.id);
    Ok(())
}

pub(crate) fn runs(ctx: &Context, a: TaskRunsArgs) -> Result<(), CliError> {
    let store = ctx.open_store()?;
    let task = actions::get_task(store.conn(), &a.id)?;
    let runs = tasks::runs(store.conn(), &a.id, a.limit as usize)?;
    print_listing(
        a.json,
        &runs,
        &[
            "RUN",
            "DUE",
            "STARTED",
            "DURATION",
            "STATUS",
            "RESULT / ERROR",
        ],
        |r| {
            vec![
                r.run_id.to_string(),
                when_secs(Some(r.due_at), task.timezone),
                when_secs(Some(r.started_at), task.timezone),
                r.duration_ms
                    .map(|d| format!("{d} ms"))
                    .unwrap_or_else(|| "-".into()),
                r.status.as_str().to_owned(),
                clip(r.error.as_deref().or(r.result.as_deref()).unwrap_or(""), 60),
            ]
        },
    )
}
