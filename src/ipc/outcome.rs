//! How one request ended: the single result type of the apply path.

use serde_json::Value;

use super::apply::Changes;
use super::authorize::Denied;
use super::protocol::Status;
use crate::actions::ActionError;
use crate::store::StoreError;

/// The verdict on one request, as the agent will read it, plus what the host does
/// with the file and the bus: `ok` (applied: `changes` say what to announce),
/// `denied`, `invalid` (`quarantine` when the input was malformed or hostile, so a
/// copy is kept) or `error` (the host failed; the request's effects are rolled back).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) status: Status,
    pub(crate) message: String,
    pub(crate) result: Option<Value>,
    /// Boxed: an outcome travels as the error of every [`Step`], which stays small.
    pub(crate) changes: Box<Changes>,
    pub(crate) quarantine: bool,
}

/// One step of applying a request: go on with a `T`, or end with an [`Outcome`]
/// (denied, invalid, host error) — so `?` ends a request early.
pub(crate) type Step<T> = Result<T, Outcome>;

impl Outcome {
    pub(crate) fn ok(message: String, result: Option<Value>, changes: Changes) -> Outcome {
        Outcome {
            status: Status::Ok,
            message,
            result,
            changes: Box::new(changes),
            quarantine: false,
        }
    }

    fn refused(status: Status, message: String, quarantine: bool) -> Outcome {
        Outcome {
            status,
            message,
            result: None,
            changes: Box::default(),
            quarantine,
        }
    }

    pub(crate) fn denied(message: String) -> Outcome {
        Outcome::refused(Status::Denied, message, false)
    }

    /// Fine in form but does not fit the current state ("task x not found"): answered,
    /// not kept.
    pub(crate) fn invalid(message: String) -> Outcome {
        Outcome::refused(Status::Invalid, message, false)
    }

    /// Malformed or hostile input (a broken rule): answered and kept in the quarantine.
    pub(crate) fn hostile(message: String) -> Outcome {
        Outcome::refused(Status::Invalid, message, true)
    }

    /// The host failed; nothing of this request is applied.
    pub(crate) fn error(message: String) -> Outcome {
        Outcome::refused(Status::Error, message, false)
    }
}

impl From<Denied> for Outcome {
    fn from(d: Denied) -> Outcome {
        Outcome::denied(d.0)
    }
}

impl From<StoreError> for Outcome {
    fn from(e: StoreError) -> Outcome {
        Outcome::error(format!("the host could not apply this request: {e}"))
    }
}

impl From<ActionError> for Outcome {
    fn from(e: ActionError) -> Outcome {
        match e {
            ActionError::Store(s) => s.into(),
            // A broken rule (bad cron, prompt too long, ...): refused and kept.
            ActionError::Invalid(v) => Outcome::hostile(v.to_string()),
            // A request that is fine in form but does not fit the current state.
            other => Outcome::invalid(other.to_string()),
        }
    }
}
