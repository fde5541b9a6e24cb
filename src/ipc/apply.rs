//! Applying one request file: effect and ledger row in one transaction, then the
//! response file, then the request file's removal.
//!
//! Exactly once, across crashes at any point:
//! 1. one IMMEDIATE transaction checks the ledger (`folder`, `request id`), applies the
//!    effect through [`crate::actions`] (the rules shared with the CLI), and inserts the
//!    ledger row holding the full response;
//! 2. after the commit, `responses/<id>.json` is written atomically;
//! 3. then the request file is removed (or quarantined, if it was refused).
//!
//! A crash before 1 commits leaves the file: it is applied on restart. A crash after
//! it finds the id in the ledger on restart: the stored response is written again and
//! the file removed, the effect is not repeated.

use std::ffi::{OsStr, OsString};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::Connection;

use super::effects::{Fail, effect};
use super::protocol::{self, MAX_REQUEST_BYTES, Response, Status};
use super::quarantine::Quarantine;
use super::watcher::{GroupDirs, RESPONSES};
use crate::bus::Topic;
use crate::model::FolderName;
use crate::paths::Paths;
use crate::safe_dir::{Durability, ReadError, SafeDir};
use crate::store::{SharedStore, StoreError, groups, ipc_ledger};

/// What the watcher needs to apply requests.
#[derive(Debug, Clone)]
pub struct Env {
    pub paths: Paths,
    /// The trigger of groups registered without one (`@<ASSISTANT_NAME>`).
    pub default_trigger: String,
    /// The timezone of schedules (TIMEZONE).
    pub timezone: Tz,
    /// What one group's agent may make the host do.
    pub limits: super::Limits,
}

/// What a committed request changed: topics for the daemon's bus, and whose
/// snapshots to re-render.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Committed changes, published on the bus.
    pub topics: Vec<Topic>,
    /// Groups whose task snapshot changed (the main group's always does too).
    pub task_folders: Vec<FolderName>,
    /// Groups whose skills snapshot must be re-rendered.
    pub skill_folders: Vec<FolderName>,
    /// The main group asked for its groups snapshot to be re-rendered.
    pub refresh_groups: bool,
}

impl Changes {
    pub(super) fn topic(mut self, t: Topic) -> Self {
        self.topics.push(t);
        self
    }

    pub fn merge(&mut self, other: Changes) {
        for t in other.topics {
            if !self.topics.contains(&t) {
                self.topics.push(t);
            }
        }
        for f in other.task_folders {
            if !self.task_folders.contains(&f) {
                self.task_folders.push(f);
            }
        }
        for f in other.skill_folders {
            if !self.skill_folders.contains(&f) {
                self.skill_folders.push(f);
            }
        }
        self.refresh_groups |= other.refresh_groups;
    }

    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// What happens to the request file once its response is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Remove,
    Quarantine(String),
}

/// A request file whose transaction has committed (or that needed none), waiting
/// for [`finish`]: the response file and the removal of the request.
#[derive(Debug)]
pub enum Committed {
    /// The file was already gone.
    Gone,
    /// Refused without an answer (unusable id, or the folder is not registered); the
    /// file has been quarantined.
    Refused,
    Answered(Box<Answer>),
}

#[derive(Debug)]
pub struct Answer {
    pub folder: FolderName,
    pub sub: &'static str,
    pub name: OsString,
    pub response: Response,
    pub changes: Changes,
    pub disposition: Disposition,
    /// The ledger already had this id: the effect was applied before a restart.
    pub replay: bool,
}

/// A host-side failure that leaves the file in place to be retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retry(pub String);

/// A request file read and ready for its transaction.
struct Prepared {
    slot: usize,
    sub: &'static str,
    name: OsString,
    id: String,
    input: Input,
}

/// What the watcher hands over: `(sub, file name)` of one group's request files.
pub type Files = Vec<(&'static str, OsString)>;

/// Reads, authorises and applies several request files of one group, in order, in
/// ONE transaction: each request still gets its own savepoint and its own ledger row,
/// so a failure affects only that request, but the group pays for one commit. Takes
/// the store lock only for the transaction; reading files happens before. Runs on a
/// blocking thread.
pub fn commit_batch(
    store: &SharedStore,
    env: &Env,
    dirs: &GroupDirs,
    q: &Quarantine,
    files: Files,
) -> Vec<Result<Committed, Retry>> {
    let mut out: Vec<Option<Result<Committed, Retry>>> = Vec::with_capacity(files.len());
    let prepared = read_files(dirs, q, files, &mut out);
    if !prepared.is_empty() {
        let now = Utc::now();
        match store.blocking(|s| s.write(|tx| apply_all(tx, env, &dirs.folder, &prepared, now))) {
            Ok(applied) => {
                for (p, a) in prepared.into_iter().zip(applied) {
                    out[p.slot] = Some(Ok(committed(dirs, q, p.sub, p.name, a)));
                }
            }
            Err(e) => {
                for p in prepared {
                    out[p.slot] = Some(Err(Retry(format!("cannot apply request {}: {e}", p.id))));
                }
            }
        }
    }
    out.into_iter().map(|o| o.expect("filled")).collect()
}

/// The id a request file name carries, or why it carries none.
fn request_id(name: &OsStr) -> Result<String, String> {
    let Some(text) = name.to_str() else {
        return Err("the file name is not UTF-8; request ids are ASCII".into());
    };
    let Some(id) = text.strip_suffix(".json") else {
        return Err("request files must end in \".json\" (lower case)".into());
    };
    protocol::validate_request_id(id).map_err(|e| e.to_string())?;
    Ok(id.to_owned())
}

/// Reads each file; fills `out` for files that need no transaction (gone, refused
/// without an answer, unreadable for now) and returns the others.
fn read_files(
    dirs: &GroupDirs,
    q: &Quarantine,
    files: Files,
    out: &mut Vec<Option<Result<Committed, Retry>>>,
) -> Vec<Prepared> {
    let folder = dirs.folder.as_str();
    let mut prepared: Vec<Prepared> = Vec::new();
    for (slot, (sub, name)) in files.into_iter().enumerate() {
        let dir = dirs.sub(sub);
        let id = request_id(&name).and_then(|id| {
            // The same id in both request directories at once: one is applied, the
            // other refused (its answer would overwrite the first's).
            let twin = if sub == "tasks" { &dirs.messages } else { &dirs.tasks };
            let dup = prepared.iter().any(|p| p.id == id)
                || (sub == "tasks" && twin.stat(&name).is_ok());
            if dup {
                Err(format!("request id {id} is already in flight in the other request directory; ids must be unique per group"))
            } else {
                Ok(id)
            }
        });
        let id = match id {
            Ok(id) => id,
            Err(reason) => {
                if dir.stat(&name).is_ok() {
                    q.put(folder, dir, &name, &reason);
                }
                out.push(Some(Ok(Committed::Refused)));
                continue;
            }
        };
        let input = match dir.read_file(&name, MAX_REQUEST_BYTES) {
            Ok(bytes) => Input::Parsed(protocol::parse(&bytes)),
            Err(ReadError::Gone) => {
                out.push(Some(Ok(Committed::Gone)));
                continue;
            }
            Err(ReadError::Refused(reason)) => Input::Refused(reason),
            Err(ReadError::Io(e)) => {
                out.push(Some(Err(Retry(format!(
                    "cannot read {sub}/{id}.json: {e}"
                )))));
                continue;
            }
        };
        out.push(None);
        prepared.push(Prepared {
            slot,
            sub,
            name,
            id,
            input,
        });
    }
    prepared
}

/// The transaction body: each request in its own savepoint, ledger row included.
fn apply_all(
    tx: &Connection,
    env: &Env,
    folder: &FolderName,
    prepared: &[Prepared],
    now: DateTime<Utc>,
) -> Result<Vec<Applied>, StoreError> {
    let mut applied = Vec::with_capacity(prepared.len());
    for p in prepared {
        let _span = tracing::info_span!("ipc_request", group = %folder, request = %p.id).entered();
        tx.execute_batch("SAVEPOINT ipc_request")?;
        match apply_in_tx(tx, env, folder, &p.id, &p.input, now) {
            Ok(a) => {
                tx.execute_batch("RELEASE ipc_request")?;
                applied.push(a);
            }
            Err(e) => {
                // A host-side failure of this request only: undo it and record the
                // failure, so the agent hears it instead of waiting forever.
                tx.execute_batch("ROLLBACK TO ipc_request; RELEASE ipc_request")?;
                tracing::error!(%folder, request = %p.id, error = %e, "cannot apply an IPC request");
                let response = Response {
                    id: p.id.clone(),
                    kind: p.input.kind().to_owned(),
                    status: Status::Error,
                    message: format!("the host could not apply this request: {e}"),
                    result: None,
                };
                insert_ledger(tx, folder, &response, now)?;
                applied.push(Applied::Done {
                    response,
                    changes: Changes::default(),
                    disposition: Disposition::Remove,
                    replay: false,
                });
            }
        }
    }
    Ok(applied)
}

fn committed(
    dirs: &GroupDirs,
    q: &Quarantine,
    sub: &'static str,
    name: OsString,
    applied: Applied,
) -> Committed {
    match applied {
        Applied::Unregistered => {
            let reason = format!("folder {} is not a registered group", dirs.folder);
            q.put(dirs.folder.as_str(), dirs.sub(sub), &name, &reason);
            Committed::Refused
        }
        Applied::Done {
            response,
            changes,
            disposition,
            replay,
        } => Committed::Answered(Box::new(Answer {
            folder: dirs.folder.clone(),
            sub,
            name,
            response,
            changes,
            disposition,
            replay,
        })),
    }
}

/// After the commit: the response file, then the request file's removal (or move to
/// the quarantine). A failure leaves the request file, which the ledger answers again.
/// The response is written through the verified `responses/` descriptor; if an agent
/// has replaced `responses/` since, a fresh real directory is made first (the
/// impostor quarantined) — never a write through its link.
pub fn finish(dirs: &GroupDirs, q: &Quarantine, a: &Answer) -> Result<(), Retry> {
    let bytes = serde_json::to_vec(&a.response).unwrap_or_default();
    let target = format!("{}.json", a.response.id);
    let write = |d: &SafeDir| d.write_atomic(&target, &bytes, Durability::Atomic);
    let fresh;
    let responses = if dirs.responses.is_at(&dirs.base, RESPONSES) {
        &dirs.responses
    } else {
        let displace = |p: &SafeDir, n: &str, kind: &'static str| {
            let reason = format!("{n} in the IPC directory was {kind}, not a directory; replaced");
            q.put_as(
                a.folder.as_str(),
                p,
                OsStr::new(n),
                &format!("{n}-dir"),
                &reason,
            )
        };
        fresh = dirs
            .base
            .ensure_dir(RESPONSES, displace)
            .map_err(|e| Retry(format!("cannot recreate responses/: {e}")))?
            .0;
        &fresh
    };
    write(responses).map_err(|e| Retry(format!("cannot write responses/{target}: {e}")))?;
    let dir = dirs.sub(a.sub);
    match &a.disposition {
        Disposition::Remove => dir.remove(&a.name),
        Disposition::Quarantine(reason) => q.put(a.folder.as_str(), dir, &a.name, reason),
    }
    Ok(())
}

enum Input {
    Parsed(protocol::Parsed),
    Refused(String),
}

impl Input {
    fn kind(&self) -> &str {
        match self {
            Input::Parsed(p) => &p.kind,
            Input::Refused(_) => "unknown",
        }
    }
}

// Built and consumed once per request; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Applied {
    Unregistered,
    Done {
        response: Response,
        changes: Changes,
        disposition: Disposition,
        replay: bool,
    },
}

fn insert_ledger(
    tx: &Connection,
    folder: &FolderName,
    r: &Response,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(r).unwrap_or_default();
    ipc_ledger::insert(tx, folder, &r.id, &r.kind, r.status.as_str(), &json, now)
}

fn apply_in_tx(
    tx: &Connection,
    env: &Env,
    folder: &FolderName,
    id: &str,
    input: &Input,
    now: DateTime<Utc>,
) -> Result<Applied, StoreError> {
    if let Some(stored) = ipc_ledger::get(tx, folder, id)? {
        let response: Response =
            serde_json::from_str(&stored).map_err(|e| StoreError::Corrupt {
                table: "ipc_ledger",
                detail: format!("response of {folder}/{id}: {e}"),
            })?;
        let disposition = match response.status {
            Status::Invalid => Disposition::Quarantine(response.message.clone()),
            _ => Disposition::Remove,
        };
        return Ok(Applied::Done {
            response,
            changes: Changes::default(),
            disposition,
            replay: true,
        });
    }
    let Some(sender) = groups::get_by_folder(tx, folder)? else {
        return Ok(Applied::Unregistered);
    };
    let outcome = match input {
        Input::Refused(reason) => Err(Fail::hostile(reason.clone())),
        Input::Parsed(p) => match &p.request {
            Err(e) => Err(Fail::hostile(e.to_string())),
            Ok(req) => {
                tx.execute_batch("SAVEPOINT ipc_effect")?;
                let r = effect(tx, env, &sender, req, now);
                match &r {
                    Ok(Ok(_)) => tx.execute_batch("RELEASE ipc_effect")?,
                    _ => tx.execute_batch("ROLLBACK TO ipc_effect; RELEASE ipc_effect")?,
                }
                r?
            }
        },
    };
    let (response, changes, disposition) = match outcome {
        Ok(done) => (
            Response {
                id: id.to_owned(),
                kind: input.kind().to_owned(),
                status: Status::Ok,
                message: done.message,
                result: done.result,
            },
            done.changes,
            Disposition::Remove,
        ),
        Err(mut fail) => {
            fail.message = crate::text::clip(&fail.message, 2 * crate::text::QUOTE_CHARS);
            let disposition = if fail.quarantine {
                Disposition::Quarantine(fail.message.clone())
            } else {
                Disposition::Remove
            };
            if fail.status == Status::Denied {
                tracing::warn!(%folder, request = id, kind = input.kind(), reason = %fail.message, "IPC request denied");
            }
            let response = Response {
                id: id.to_owned(),
                kind: input.kind().to_owned(),
                status: fail.status,
                message: fail.message,
                result: None,
            };
            (response, Changes::default(), disposition)
        }
    };
    insert_ledger(tx, folder, &response, now)?;
    Ok(Applied::Done {
        response,
        changes,
        disposition,
        replay: false,
    })
}
