//! A group's task "chunk": its tasks as the inside of a pretty-printed JSON array (the
//! elements joined by `,\n`, without the brackets), in listing order — tasks without a
//! next run last, then by next run, then by id. The group's own `current_tasks.json` is
//! its chunk in brackets; the main group's is every chunk, joined.
//!
//! A change to one task is spliced into the chunk ([`splice`]) instead of re-reading
//! and re-serialising the whole group: a group with hundreds of tasks otherwise spends
//! most of each request's time reading its rows back (measured: 57% of the daemon's CPU
//! with 600 tasks in the group). The chunk is its own index: JSON strings cannot hold a
//! raw newline, so `\n  },\n  {` only ever separates two elements, and a task's id (a
//! name token, never escaped) and next run are read back from its element's lines.
//! Anything unexpected makes the splice decline, and the caller re-renders the group.

use std::cmp::Ordering;
use std::ops::Range;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use memchr::memmem;
use rusqlite::Connection;

use crate::model::{FolderName, TaskId};
use crate::store::{StoreError, tasks};

/// One task as `current_tasks.json` shows it (NanoClaw's field names), serialised
/// straight from the row: no intermediate JSON tree for thousands of tasks.
#[derive(serde::Serialize)]
struct TaskView<'a> {
    #[serde(rename = "chatJid")]
    chat_jid: &'a crate::model::Jid,
    context_mode: crate::model::ContextMode,
    #[serde(rename = "groupFolder")]
    group_folder: &'a FolderName,
    id: &'a TaskId,
    last_run: Option<DateTime<Utc>>,
    next_run: Option<DateTime<Utc>>,
    prompt: &'a str,
    schedule_type: crate::model::ScheduleType,
    schedule_value: &'a str,
    status: crate::model::TaskStatus,
    timezone: &'static str,
}

impl<'a> From<&'a tasks::Task> for TaskView<'a> {
    fn from(t: &'a tasks::Task) -> Self {
        TaskView {
            chat_jid: &t.chat_jid,
            context_mode: t.context_mode,
            group_folder: &t.group_folder,
            id: &t.id,
            last_run: t.last_run,
            next_run: t.next_run,
            prompt: &t.prompt,
            schedule_type: t.schedule_type,
            schedule_value: &t.schedule_value,
            status: t.status,
            timezone: t.timezone.name(),
        }
    }
}

/// Where a task sits in the listing: (no next run, next run, id).
type Key<'a> = (bool, Option<DateTime<Utc>>, &'a str);

fn key(t: &tasks::Task) -> Key<'_> {
    (t.next_run.is_none(), t.next_run, t.id.as_str())
}

/// Serialises `views` as a pretty-printed array without its brackets: the whole array
/// is "[\n" + the elements joined by ",\n" + "\n]", so what is left is exactly the
/// elements at the indentation main's list holds them at.
fn inside_of_array(views: &[TaskView]) -> Vec<u8> {
    if views.is_empty() {
        return Vec::new();
    }
    let mut out = serde_json::to_vec_pretty(views).unwrap_or_default();
    out.truncate(out.len().saturating_sub(2));
    out.drain(..2.min(out.len()));
    out
}

/// Renders `folder`'s whole chunk from the store (reads every task of the group).
pub(super) fn render(conn: &Connection, folder: &FolderName) -> Result<Vec<u8>, StoreError> {
    let mut list = tasks::of_group(conn, folder)?;
    list.sort_by(|a, b| key(a).cmp(&key(b)));
    let views: Vec<TaskView> = list.iter().map(TaskView::from).collect();
    Ok(inside_of_array(&views))
}

/// A group's task list file from its chunk.
pub(super) fn wrap(chunk: &[u8]) -> Vec<u8> {
    if chunk.is_empty() {
        return b"[]\n".to_vec();
    }
    let mut out = Vec::with_capacity(chunk.len() + 6);
    out.extend_from_slice(b"[\n");
    out.extend_from_slice(chunk);
    out.extend_from_slice(b"\n]\n");
    out
}

/// What separates two elements of a chunk (the end of one, the start of the next).
const BETWEEN: &[u8] = b"\n  },\n  {\n";

/// The byte ranges of the elements of `chunk`, in order.
fn elements(chunk: &[u8]) -> Vec<Range<usize>> {
    if chunk.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut start = 0;
    for at in memmem::find_iter(chunk, BETWEEN) {
        out.push(start..at + 4); // through "\n  }"
        start = at + 6; // from "  {\n"
    }
    out.push(start..chunk.len());
    out
}

/// The lines an element's id and next run are read back from (searchers built once:
/// a splice reads the id of every element of the group).
static ID_LINE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\n    \"id\": "));
static NEXT_RUN_LINE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\n    \"next_run\": "));

/// The value on an element's own line that `line` starts, as rendered.
fn field<'a>(elem: &'a [u8], line: &memmem::Finder) -> Option<&'a [u8]> {
    let at = line.find(elem)? + line.needle().len();
    let rest = &elem[at..];
    let end = memchr::memchr(b'\n', rest)?;
    Some(rest[..end].strip_suffix(b",").unwrap_or(&rest[..end]))
}

/// An element's task id (a name token: rendered without escapes).
fn id_of(elem: &[u8]) -> Option<&[u8]> {
    field(elem, &ID_LINE)?
        .strip_prefix(b"\"")?
        .strip_suffix(b"\"")
}

/// Reads an element's listing key back from its text; `None` if it does not look like
/// an element this module rendered.
fn key_of(elem: &[u8]) -> Option<Key<'_>> {
    let id = std::str::from_utf8(id_of(elem)?).ok()?;
    let next = match field(elem, &NEXT_RUN_LINE)? {
        b"null" => None,
        quoted => {
            let s = std::str::from_utf8(quoted.strip_prefix(b"\"")?.strip_suffix(b"\"")?).ok()?;
            Some(DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc))
        }
    };
    Some((next.is_none(), next, id))
}

/// Puts the current state of some tasks into `chunk`: each change is a task id and
/// the task as stored now, or `None` if it is gone from the group. Returns whether the
/// chunk changed, or `None` when the chunk cannot be read as expected (the caller
/// re-renders the group). One pass over the chunk whatever the number of changes (a
/// burst brings up to a batch of them per group).
pub(super) fn splice(
    chunk: &mut Vec<u8>,
    changes: &[(&TaskId, Option<&tasks::Task>)],
) -> Option<bool> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut old: Vec<Option<usize>> = vec![None; changes.len()];
    for r in elements(chunk) {
        let elem = &chunk[r];
        let id = id_of(elem)?;
        if let Some(c) = changes
            .iter()
            .position(|(cid, _)| cid.as_str().as_bytes() == id)
        {
            old[c] = Some(parts.len());
        }
        parts.push(elem);
    }
    let new: Vec<Option<Vec<u8>>> = changes
        .iter()
        .map(|(_, t)| t.map(|t| inside_of_array(&[TaskView::from(t)])))
        .collect();
    let unchanged = old.iter().zip(&new).all(|(o, n)| match (o, n) {
        (None, None) => true,
        (Some(i), Some(n)) => parts[*i] == n.as_slice(),
        _ => false,
    });
    if unchanged {
        return Some(false);
    }
    // Drop the old elements (from the back, so the indices hold), then put each new
    // one where the listing order wants it: the elements are sorted, so a binary
    // search reads a handful of keys back.
    let mut gone: Vec<usize> = old.into_iter().flatten().collect();
    gone.sort_unstable();
    for i in gone.into_iter().rev() {
        parts.remove(i);
    }
    for ((_, task), elem) in changes.iter().zip(&new) {
        let (Some(t), Some(elem)) = (task, elem) else {
            continue;
        };
        let k = key(t);
        let mut readable = true;
        let at = parts.partition_point(|p| match key_of(p) {
            Some(pk) => pk.cmp(&k) == Ordering::Less,
            None => {
                readable = false;
                false
            }
        });
        if !readable {
            return None;
        }
        parts.insert(at, elem);
    }
    *chunk = parts.join(&b",\n"[..]);
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContextMode, Jid, ScheduleType, TaskStatus};

    fn task(id: &str, next: Option<i64>, prompt: &str) -> tasks::Task {
        tasks::Task {
            id: TaskId::parse(id).unwrap(),
            group_folder: FolderName::parse("g").unwrap(),
            chat_jid: Jid::parse("1@discord").unwrap(),
            prompt: prompt.into(),
            schedule_type: ScheduleType::Interval,
            schedule_value: "3600000".into(),
            context_mode: ContextMode::Group,
            timezone: chrono_tz::UTC,
            next_run: next.map(|ms| DateTime::from_timestamp_millis(ms).unwrap()),
            last_run: None,
            last_result: None,
            status: TaskStatus::Active,
            created_by: "test".into(),
            created_at: DateTime::from_timestamp_millis(0).unwrap(),
        }
    }

    fn whole(list: &[tasks::Task]) -> Vec<u8> {
        let mut sorted: Vec<&tasks::Task> = list.iter().collect();
        sorted.sort_by(|a, b| key(a).cmp(&key(b)));
        let views: Vec<TaskView> = sorted.into_iter().map(TaskView::from).collect();
        inside_of_array(&views)
    }

    /// Random batches of creations, changes (prompts with newlines, quotes, braces and
    /// the separator itself; next runs with and without fractions, none) and removals:
    /// after each splice the chunk equals the group rendered whole.
    #[test]
    fn a_spliced_chunk_equals_the_group_rendered_whole() {
        let prompts = [
            "plain",
            "two\nlines",
            "quote \" and \\ backslash",
            "\n  },\n  {\n    \"id\": \"t1\",\n",
            "{\"next_run\": null}",
        ];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut stored: Vec<tasks::Task> = Vec::new();
        let mut chunk = Vec::new();
        for step in 0..1_000 {
            let mut batch: Vec<(TaskId, Option<tasks::Task>)> = Vec::new();
            for _ in 0..1 + next() % 4 {
                let id = format!("t{}", next() % 40);
                if batch.iter().any(|(b, _)| b.as_str() == id) {
                    continue;
                }
                let run = match next() % 4 {
                    0 => None,
                    1 => Some(1_800_000_000_000 + (next() % 50) as i64 * 1000),
                    _ => Some(1_800_000_000_000 + (next() % 50_000) as i64),
                };
                let prompt = prompts[(next() % prompts.len() as u64) as usize];
                stored.retain(|t| t.id.as_str() != id);
                let now = (next() % 5 != 0).then(|| task(&id, run, prompt));
                stored.extend(now.clone());
                batch.push((TaskId::parse(&id).unwrap(), now));
            }
            let changes: Vec<_> = batch.iter().map(|(id, t)| (id, t.as_ref())).collect();
            assert!(splice(&mut chunk, &changes).is_some(), "step {step}");
            assert_eq!(
                String::from_utf8_lossy(&chunk),
                String::from_utf8_lossy(&whole(&stored)),
                "step {step}"
            );
        }
        assert!(!stored.is_empty());
    }

    #[test]
    fn an_unchanged_task_leaves_the_chunk_as_it_is() {
        let t = task("a", Some(1_800_000_000_000), "p");
        let mut chunk = whole(std::slice::from_ref(&t));
        let before = chunk.clone();
        assert_eq!(splice(&mut chunk, &[(&t.id, Some(&t))]), Some(false));
        let b = TaskId::parse("b").unwrap();
        assert_eq!(
            splice(&mut chunk, &[(&b, None), (&t.id, Some(&t))]),
            Some(false)
        );
        assert_eq!(chunk, before);
    }

    #[test]
    fn a_chunk_it_cannot_read_is_declined() {
        let t = task("a", Some(1_800_000_000_000), "p");
        let mut chunk = b"  {\n    \"garbage\": 1\n  }".to_vec();
        assert_eq!(splice(&mut chunk, &[(&t.id, Some(&t))]), None);
    }
}
