//! `status`: what the daemon on this root is doing — from the store, and from the
//! daemon itself through `data/control/status/` (see [`crate::status`]).

use std::io::Write as _;
use std::time::Duration;

use chrono::Utc;
use clap::Args;
use serde::Serialize;

use super::output::{clip, finished, when, write_table};
use super::{CliError, Context};
use crate::queue::GroupActivity;
use crate::status::{self, LiveStatus};
use crate::store::overview::{self, NextRun, OutboxBacklog, RecentError};
use crate::store::{Store, groups};

/// How long to wait for a running daemon to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    daemon: DaemonState,
    groups: Vec<GroupLine>,
    next_runs: Vec<NextRun>,
    outbox: OutboxBacklog,
    recent_errors: Vec<RecentError>,
}

#[derive(Debug, Serialize)]
struct DaemonState {
    running: bool,
    /// The process holding the root's lock.
    pid: Option<u32>,
    /// Whether it answered the status request (a running daemon that does not is stuck).
    answering: bool,
    uptime_secs: Option<i64>,
    version: Option<String>,
    active_agents: Option<usize>,
    max_agents: Option<usize>,
    turns: Option<u64>,
}

#[derive(Debug, Serialize)]
struct GroupLine {
    folder: String,
    jid: String,
    name: String,
    is_main: bool,
    /// `working`, `idle`, `none`, or `unknown` when the daemon is down.
    agent: String,
    waiting_for_slot: bool,
    pending_messages: bool,
    pending_runs: usize,
}

pub(crate) fn status(ctx: &Context, args: StatusArgs) -> Result<(), CliError> {
    let pid = status::daemon_pid(&ctx.paths);
    let live = match pid {
        Some(_) => status::ask(&ctx.paths, ANSWER_WITHIN)?,
        None => None,
    };
    let mut report = Report {
        daemon: daemon_state(pid, live.as_ref()),
        groups: Vec::new(),
        next_runs: Vec::new(),
        outbox: OutboxBacklog {
            pending: 0,
            failing: 0,
            oldest: None,
        },
        recent_errors: Vec::new(),
    };
    // A root that never ran has no store: nothing to show, and nothing is created.
    if ctx.paths.database().exists() {
        let store = Store::open(&ctx.paths.database())?;
        let conn = store.conn();
        let activity = live.as_ref().map(|l| l.groups.as_slice()).unwrap_or(&[]);
        report.groups = groups::list(conn)?
            .into_iter()
            .map(|g| {
                let a = activity.iter().find(|a| a.folder == g.folder);
                group_line(g, a, live.is_some())
            })
            .collect();
        report.next_runs = overview::next_runs(conn, 5)?;
        report.outbox = overview::outbox_backlog(conn)?;
        report.recent_errors = overview::recent_errors(conn, 5)?;
    }
    if args.json {
        let mut out = std::io::stdout().lock();
        return finished(
            serde_json::to_writer(&mut out, &report)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out)),
        );
    }
    finished(print_text(&report, ctx.config.timezone))
}

fn group_line(g: groups::Group, a: Option<&GroupActivity>, live: bool) -> GroupLine {
    GroupLine {
        folder: g.folder.to_string(),
        jid: g.jid.to_string(),
        name: g.name,
        is_main: g.is_main,
        agent: match a {
            Some(a) => a.agent.clone(),
            None if live => "none".to_owned(),
            None => "unknown".to_owned(),
        },
        waiting_for_slot: a.is_some_and(|a| a.waiting_for_slot),
        pending_messages: a.is_some_and(|a| a.pending_messages),
        pending_runs: a.map_or(0, |a| a.pending_runs),
    }
}

fn daemon_state(pid: Option<u32>, live: Option<&LiveStatus>) -> DaemonState {
    DaemonState {
        running: pid.is_some(),
        pid,
        answering: live.is_some(),
        uptime_secs: live.map(|l| (Utc::now() - l.started_at).num_seconds()),
        version: live.map(|l| l.version.clone()),
        active_agents: live.map(|l| l.active_agents),
        max_agents: live.map(|l| l.max_agents),
        turns: live.map(|l| l.turns),
    }
}

fn uptime(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn print_text(r: &Report, tz: chrono_tz::Tz) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let d = &r.daemon;
    match (d.pid, d.answering) {
        (None, _) => writeln!(out, "daemon: not running on this root")?,
        (Some(pid), false) => writeln!(
            out,
            "daemon: running (pid {pid}) but not answering within {}s — stuck? see `journalctl -u rust-claw`",
            ANSWER_WITHIN.as_secs()
        )?,
        (Some(pid), true) => writeln!(
            out,
            "daemon: running (pid {pid}, version {}, up {}), agents {}/{}, {} turns",
            d.version.as_deref().unwrap_or("?"),
            uptime(d.uptime_secs.unwrap_or(0)),
            d.active_agents.unwrap_or(0),
            d.max_agents.unwrap_or(0),
            d.turns.unwrap_or(0)
        )?,
    }
    writeln!(out)?;
    let rows: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|g| {
            let mut queued = Vec::new();
            if g.waiting_for_slot {
                queued.push("waiting for a slot".to_owned());
            }
            if g.pending_messages {
                queued.push("messages".to_owned());
            }
            if g.pending_runs > 0 {
                queued.push(format!("{} task run(s)", g.pending_runs));
            }
            vec![
                format!("{}{}", g.folder, if g.is_main { " (main)" } else { "" }),
                g.jid.clone(),
                g.agent.clone(),
                if queued.is_empty() {
                    "-".to_owned()
                } else {
                    queued.join(", ")
                },
            ]
        })
        .collect();
    write_table(&mut out, &["GROUP", "JID", "AGENT", "QUEUED"], &rows)?;
    writeln!(out)?;
    if r.next_runs.is_empty() {
        writeln!(out, "next runs: none scheduled")?;
    } else {
        let rows: Vec<Vec<String>> = r
            .next_runs
            .iter()
            .map(|n| {
                vec![
                    when(Some(n.next_run), tz),
                    n.task_id.clone(),
                    n.group_folder.clone(),
                    format!("{} {}", n.schedule_type, clip(&n.schedule_value, 30)),
                ]
            })
            .collect();
        write_table(&mut out, &["NEXT RUN", "TASK", "GROUP", "SCHEDULE"], &rows)?;
    }
    writeln!(out)?;
    let o = &r.outbox;
    match o.oldest {
        None => writeln!(out, "outbox: empty")?,
        Some(t) => writeln!(
            out,
            "outbox: {} unsent ({} failing), oldest since {}",
            o.pending,
            o.failing,
            when(Some(t), tz)
        )?,
    }
    if r.recent_errors.is_empty() {
        writeln!(out, "recent errors: none")?;
    } else {
        writeln!(out, "recent errors:")?;
        for e in &r.recent_errors {
            writeln!(
                out,
                "  {}  {}  {}",
                when(Some(e.at), tz),
                e.source,
                clip(&e.error, 100)
            )?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_naturally() {
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(65), "1m 5s");
        assert_eq!(uptime(3 * 3600 + 120), "3h 2m");
        assert_eq!(uptime(2 * 86_400 + 3600), "2d 1h");
    }
}
