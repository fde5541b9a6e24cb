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

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::Connection;

use super::outcome::Outcome;
use super::protocol::{Response, Status};
use super::quarantine::Quarantine;
use super::reader::{Input, Prepared, read_files};
use super::requests::Ctx;
use super::watcher::{GroupDirs, RESPONSES};
use crate::bus::Topic;
use crate::model::{FolderName, TaskId};
use crate::paths::Paths;
use crate::safe_dir::{Durability, SafeDir};
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
pub(crate) struct Changes {
    /// Committed changes, published on the bus.
    pub(crate) topics: Vec<Topic>,
    /// Tasks a request created or changed (updated, paused, resumed, cancelled), each
    /// with its group: those groups' task snapshots changed (the main group's always
    /// does too), and only these tasks need reading back.
    pub(crate) tasks: Vec<(FolderName, TaskId)>,
    /// Groups whose skills snapshot must be re-rendered.
    pub(crate) skill_folders: Vec<FolderName>,
    /// The main group asked for its groups snapshot to be re-rendered.
    pub(crate) refresh_groups: bool,
}

impl Changes {
    pub(super) fn topic(mut self, t: Topic) -> Self {
        self.topics.push(t);
        self
    }

    pub(crate) fn merge(&mut self, other: Changes) {
        for t in other.topics {
            if !self.topics.contains(&t) {
                self.topics.push(t);
            }
        }
        for t in other.tasks {
            if !self.tasks.contains(&t) {
                self.tasks.push(t);
            }
        }
        for f in other.skill_folders {
            if !self.skill_folders.contains(&f) {
                self.skill_folders.push(f);
            }
        }
        self.refresh_groups |= other.refresh_groups;
    }

    /// The groups whose tasks changed, each with the ids of its changed tasks.
    pub(crate) fn task_folders(&self) -> BTreeMap<&FolderName, Vec<&TaskId>> {
        let mut out: BTreeMap<&FolderName, Vec<&TaskId>> = BTreeMap::new();
        for (folder, id) in &self.tasks {
            out.entry(folder).or_default().push(id);
        }
        out
    }
}

/// What happens to the request file once its response is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Disposition {
    Remove,
    Quarantine(String),
}

/// What became of one request file in [`commit_batch`].
#[derive(Debug)]
pub(crate) enum Committed {
    /// The file was already gone.
    Gone,
    /// Refused without an answer (unusable id, or the folder is not registered); the
    /// file has been quarantined.
    Refused,
    /// Its outcome is committed; [`finish`] writes the response file and removes the
    /// request.
    Answered(Box<Answer>),
    /// A host-side failure before any outcome could be recorded: the file stays, to
    /// be retried.
    Retry(Retry),
}

#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) folder: FolderName,
    pub(crate) sub: &'static str,
    pub(crate) name: OsString,
    pub(crate) response: Response,
    pub(crate) changes: Changes,
    pub(crate) disposition: Disposition,
}

/// A host-side failure that leaves the request file in place to be retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Retry(pub(crate) String);

/// What the watcher hands over: `(sub, file name)` of one group's request files.
pub(crate) type Files = Vec<(&'static str, OsString)>;

/// Reads, authorises and applies several request files of one group, in order, in
/// ONE transaction: each request still gets its own savepoint and its own ledger row,
/// so a failure affects only that request, but the group pays for one commit. Takes
/// the store lock only for the transaction; reading files happens before. Runs on a
/// blocking thread.
pub(crate) fn commit_batch(
    store: &SharedStore,
    env: &Env,
    dirs: &GroupDirs,
    q: &Quarantine,
    files: Files,
) -> Vec<Committed> {
    let mut out: Vec<Option<Committed>> = Vec::with_capacity(files.len());
    let prepared = read_files(dirs, q, files, &mut out);
    if !prepared.is_empty() {
        let now = Utc::now();
        match store.blocking(|s| s.write(|tx| apply_all(tx, env, &dirs.folder, &prepared, now))) {
            Ok(applied) => {
                for (p, a) in prepared.into_iter().zip(applied) {
                    out[p.slot] = Some(committed(dirs, q, p.sub, p.name, a));
                }
            }
            Err(e) => {
                for p in prepared {
                    out[p.slot] = Some(Committed::Retry(Retry(format!(
                        "cannot apply request {}: {e}",
                        p.id
                    ))));
                }
            }
        }
    }
    out.into_iter().map(|o| o.expect("filled")).collect()
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
        } => Committed::Answered(Box::new(Answer {
            folder: dirs.folder.clone(),
            sub,
            name,
            response,
            changes,
            disposition,
        })),
    }
}

/// After the commit: the response file, then the request file's removal (or move to
/// the quarantine). A failure leaves the request file, which the ledger answers again.
/// The response is written through the verified `responses/` descriptor; if an agent
/// has replaced `responses/` since, a fresh real directory is made first (the
/// impostor quarantined) — never a write through its link.
pub(crate) fn finish(dirs: &GroupDirs, q: &Quarantine, a: &Answer) -> Result<(), Retry> {
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

// Built and consumed once per request; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Applied {
    Unregistered,
    Done {
        response: Response,
        changes: Changes,
        disposition: Disposition,
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
        });
    }
    let Some(sender) = groups::get_by_folder(tx, folder)? else {
        return Ok(Applied::Unregistered);
    };
    let outcome = match input {
        Input::Refused(reason) => Outcome::hostile(reason.clone()),
        Input::Parsed(p) => match &p.request {
            Err(e) => Outcome::hostile(e.to_string()),
            Ok(req) => {
                tx.execute_batch("SAVEPOINT ipc_effect")?;
                let cx = Ctx {
                    tx,
                    env,
                    sender: &sender,
                    now,
                };
                let outcome = req.apply(&cx);
                if outcome.status == Status::Ok {
                    tx.execute_batch("RELEASE ipc_effect")?;
                } else {
                    tx.execute_batch("ROLLBACK TO ipc_effect; RELEASE ipc_effect")?;
                }
                outcome
            }
        },
    };
    let message = crate::text::clip(&outcome.message, 2 * crate::text::QUOTE_CHARS);
    let disposition = if outcome.quarantine {
        Disposition::Quarantine(message.clone())
    } else {
        Disposition::Remove
    };
    match outcome.status {
        Status::Denied => {
            tracing::warn!(%folder, request = id, kind = input.kind(), reason = %message, "IPC request denied")
        }
        Status::Error => {
            tracing::error!(%folder, request = id, error = %message, "cannot apply an IPC request")
        }
        Status::Ok | Status::Invalid => {}
    }
    let response = Response {
        id: id.to_owned(),
        kind: input.kind().to_owned(),
        status: outcome.status,
        message,
        result: outcome.result,
    };
    let changes = *outcome.changes;
    insert_ledger(tx, folder, &response, now)?;
    Ok(Applied::Done {
        response,
        changes,
        disposition,
    })
}
