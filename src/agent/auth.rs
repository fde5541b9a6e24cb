//! The owner's codex login, shared with the groups without leaking the rest.
//!
//! Only `auth.json` from `CODEX_AUTH_DIR` (default `~/.codex`) is copied into a
//! group's codex home — never the owner's history, config or sessions. Codex
//! refreshes ChatGPT tokens during a run and rewrites its copy; [`sync`] runs before
//! and after every run (and after each turn) and lets the copy with the newest
//! `last_refresh` win in both directions, under an exclusive file lock, so no run
//! starts from a stale token (a refresh token is single-use: a stale copy would
//! log everyone out overnight).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};

use crate::safe_dir::{Durability, ReadError, SafeDir, write_atomic_path};

/// The one message users (and `doctor`) see when there is no usable login.
pub const LOGIN_REQUIRED: &str =
    "Codex login required: run `codex login --device-auth` on the host";

const AUTH_FILE: &str = "auth.json";
const LOCK_FILE: &str = ".rust_claw-auth.lock";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Codex login required: run `codex login --device-auth` on the host")]
    LoginRequired,
    #[error(
        "cannot access the codex login file {path}: {source}; check that the daemon's user may read and write it (CODEX_AUTH_DIR)"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What [`sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncOutcome {
    /// Both copies were already the same (or there is no login and none is needed).
    Unchanged,
    /// The owner's copy was newer and now is the group's.
    ToGroup,
    /// The group's copy was refreshed by codex and now is the owner's.
    ToOwner,
}

struct AuthFile {
    bytes: Vec<u8>,
    last_refresh: Option<DateTime<Utc>>,
    usable: bool,
}

/// The largest auth.json read (a login is a few KiB).
const MAX_AUTH_BYTES: u64 = 1024 * 1024;

/// Reads an auth.json. The group's copy sits in a directory its agent can write, so it
/// is read through the directory's descriptor, never through a link (a planted link
/// or FIFO counts as no copy, and is replaced by the next write).
fn read_auth(path: &Path) -> Result<Option<AuthFile>, AuthError> {
    let err = |source| AuthError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = SafeDir::open_trusted(path.parent().unwrap_or(Path::new(".")), false).map_err(err)?;
    let bytes = match dir.read_file(AUTH_FILE, MAX_AUTH_BYTES) {
        Ok(b) => b,
        Err(ReadError::Gone) => return Ok(None),
        Err(ReadError::Refused(reason)) => {
            tracing::warn!(path = %path.display(), %reason, "ignoring an unusable auth.json");
            return Ok(None);
        }
        Err(ReadError::Io(e)) => return Err(err(e)),
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let last_refresh = json
        .get("last_refresh")
        .and_then(|v| v.as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let non_empty =
        |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).is_some_and(|s| !s.is_empty());
    let usable = non_empty(json.get("OPENAI_API_KEY"))
        || non_empty(json.get("tokens").and_then(|t| t.get("refresh_token")));
    Ok(Some(AuthFile {
        bytes,
        last_refresh,
        usable,
    }))
}

/// Whether the owner's login in `auth_dir` is usable (for `doctor` and start-up).
pub(crate) fn check_login(auth_dir: &Path) -> Result<(), AuthError> {
    match read_auth(&auth_dir.join(AUTH_FILE))? {
        Some(a) if a.usable => Ok(()),
        _ => Err(AuthError::LoginRequired),
    }
}

/// Reconciles the owner's `auth.json` in `auth_dir` with the group's copy in
/// `codex_home`: the newest `last_refresh` wins. With `required` (codex talks to
/// OpenAI), a missing or unusable login is [`AuthError::LoginRequired`]; without it
/// (a custom provider), a missing login is fine.
pub(crate) fn sync(
    auth_dir: &Path,
    codex_home: &Path,
    required: bool,
) -> Result<SyncOutcome, AuthError> {
    if !auth_dir.is_dir() {
        return if required {
            Err(AuthError::LoginRequired)
        } else {
            Ok(SyncOutcome::Unchanged)
        };
    }
    let _lock = lock(auth_dir)?;
    let owner_path = auth_dir.join(AUTH_FILE);
    let group_path = codex_home.join(AUTH_FILE);
    let owner = read_auth(&owner_path)?;
    let group = read_auth(&group_path)?;
    let (outcome, winner) = match (owner, group) {
        (None, group) => {
            // The owner logged out: the group's copy goes too.
            if group.is_some() {
                remove(&group_path)?;
            }
            return if required {
                Err(AuthError::LoginRequired)
            } else {
                Ok(SyncOutcome::Unchanged)
            };
        }
        (Some(o), None) => {
            write_private(&group_path, &o.bytes)?;
            (SyncOutcome::ToGroup, o)
        }
        (Some(o), Some(g)) => {
            if o.bytes == g.bytes {
                (SyncOutcome::Unchanged, o)
            } else if g.last_refresh > o.last_refresh && g.usable {
                write_private(&owner_path, &g.bytes)?;
                (SyncOutcome::ToOwner, g)
            } else {
                write_private(&group_path, &o.bytes)?;
                (SyncOutcome::ToGroup, o)
            }
        }
    };
    if required && !winner.usable {
        return Err(AuthError::LoginRequired);
    }
    Ok(outcome)
}

fn lock(auth_dir: &Path) -> Result<Flock<File>, AuthError> {
    let path = auth_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| AuthError::Io {
            path: path.clone(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| AuthError::Io {
        path,
        source: errno.into(),
    })
}

fn remove(path: &Path) -> Result<(), AuthError> {
    std::fs::remove_file(path).map_err(|source| AuthError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Durable atomic write with mode 0600 (a private `O_EXCL | O_NOFOLLOW` temp file in
/// the same directory, then rename).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    write_atomic_path(path, bytes, Durability::Durable).map_err(|source| AuthError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(refresh: &str, token: &str) -> String {
        format!(
            r#"{{"OPENAI_API_KEY":null,"tokens":{{"id_token":"i","access_token":"{token}","refresh_token":"r-{token}","account_id":"a"}},"last_refresh":"{refresh}"}}"#
        )
    }

    #[test]
    fn newest_copy_wins_both_ways() {
        let owner = tempfile::tempdir().unwrap();
        let group = tempfile::tempdir().unwrap();
        let (o, g) = (
            owner.path().join("auth.json"),
            group.path().join("auth.json"),
        );
        std::fs::write(&o, auth("2026-01-01T00:00:00Z", "old")).unwrap();
        assert_eq!(
            sync(owner.path(), group.path(), true).unwrap(),
            SyncOutcome::ToGroup
        );
        assert!(std::fs::read_to_string(&g).unwrap().contains("\"old\""));
        assert_eq!(
            sync(owner.path(), group.path(), true).unwrap(),
            SyncOutcome::Unchanged
        );

        // codex refreshed the group's copy: it flows back.
        std::fs::write(&g, auth("2026-01-02T00:00:00Z", "new")).unwrap();
        assert_eq!(
            sync(owner.path(), group.path(), true).unwrap(),
            SyncOutcome::ToOwner
        );
        assert!(std::fs::read_to_string(&o).unwrap().contains("\"new\""));

        // A stale group copy never overwrites a newer owner's copy.
        std::fs::write(&o, auth("2026-01-03T00:00:00Z", "newest")).unwrap();
        std::fs::write(&g, auth("2026-01-02T00:00:00Z", "new")).unwrap();
        assert_eq!(
            sync(owner.path(), group.path(), true).unwrap(),
            SyncOutcome::ToGroup
        );
        assert!(std::fs::read_to_string(&g).unwrap().contains("\"newest\""));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&g).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing else of the owner's home is copied.
        let names: Vec<_> = std::fs::read_dir(group.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["auth.json"]);
    }

    #[test]
    fn missing_or_unusable_login_is_one_clear_error_unless_not_needed() {
        let owner = tempfile::tempdir().unwrap();
        let group = tempfile::tempdir().unwrap();
        let e = sync(owner.path(), group.path(), true).unwrap_err();
        assert_eq!(e.to_string(), LOGIN_REQUIRED);
        assert!(matches!(
            check_login(owner.path()),
            Err(AuthError::LoginRequired)
        ));
        assert_eq!(
            sync(owner.path(), group.path(), false).unwrap(),
            SyncOutcome::Unchanged
        );
        assert_eq!(
            sync(&owner.path().join("nope"), group.path(), false).unwrap(),
            SyncOutcome::Unchanged
        );
        std::fs::write(owner.path().join("auth.json"), r#"{"tokens":null}"#).unwrap();
        assert!(matches!(
            sync(owner.path(), group.path(), true),
            Err(AuthError::LoginRequired)
        ));
        std::fs::write(
            owner.path().join("auth.json"),
            auth("2026-01-01T00:00:00Z", "t"),
        )
        .unwrap();
        assert!(check_login(owner.path()).is_ok());
        // The owner logs out: the group's copy is removed.
        sync(owner.path(), group.path(), true).unwrap();
        std::fs::remove_file(owner.path().join("auth.json")).unwrap();
        assert!(sync(owner.path(), group.path(), true).is_err());
        assert!(!group.path().join("auth.json").exists());
    }
}
