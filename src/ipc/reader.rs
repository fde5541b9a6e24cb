//! The untrusting reader of request files: everything between a name the watcher
//! saw in `messages/` or `tasks/` and a request ready for its transaction.
//!
//! A request directory is writable by an agent, so the name and the entry are hostile:
//! the id comes from the file name (UTF-8, `.json`, a valid id, not already in flight
//! in the other request directory — otherwise the entry goes to the quarantine
//! unanswered); the content is read with [`crate::safe_dir::SafeDir::read_file`] (never through a
//! link, never blocking on a FIFO, at most [`MAX_REQUEST_BYTES`]) and then parsed by
//! [`protocol::parse`]. What is refused here still gets its answer in `apply`.

use std::ffi::{OsStr, OsString};

use super::apply::{Committed, Files, Retry};
use super::protocol::{self, MAX_REQUEST_BYTES};
use super::quarantine::Quarantine;
use super::watcher::GroupDirs;
use crate::safe_dir::ReadError;

/// A request file read and ready for its transaction.
pub(super) struct Prepared {
    pub(super) slot: usize,
    pub(super) sub: &'static str,
    pub(super) name: OsString,
    pub(super) id: String,
    pub(super) input: Input,
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
pub(super) fn read_files(
    dirs: &GroupDirs,
    q: &Quarantine,
    files: Files,
    out: &mut Vec<Option<Committed>>,
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
                out.push(Some(Committed::Refused));
                continue;
            }
        };
        let input = match dir.read_file(&name, MAX_REQUEST_BYTES) {
            Ok(bytes) => Input::Parsed(protocol::parse(&bytes)),
            Err(ReadError::Gone) => {
                out.push(Some(Committed::Gone));
                continue;
            }
            Err(ReadError::Refused(reason)) => Input::Refused(reason),
            Err(ReadError::Io(e)) => {
                out.push(Some(Committed::Retry(Retry(format!(
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

pub(super) enum Input {
    Parsed(protocol::Parsed),
    Refused(String),
}

impl Input {
    pub(super) fn kind(&self) -> &str {
        match self {
            Input::Parsed(p) => &p.kind,
            Input::Refused(_) => "unknown",
        }
    }
}
