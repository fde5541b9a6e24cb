//! The sender allowlist: who may wake the agent in which chat.
//!
//! NanoClaw v1's file format, at `~/.config/rust-claw/sender-allowlist.json`:
//!
//! ```json
//! { "default": { "allow": "*", "mode": "trigger" },
//!   "chats": { "123456789@discord": { "allow": ["111", "222"], "mode": "drop" } },
//!   "logDenied": true }
//! ```
//!
//! `allow` is `"*"` (everyone) or a list of sender (Discord user) ids. `mode` says what
//! happens to a message from anyone else: `trigger` keeps it as context but it cannot
//! wake the agent; `drop` does not store it at all. Chat keys are our jids
//! (`<channel id>@discord`); NanoClaw's `dc:<channel id>` is accepted too.
//!
//! Unlike NanoClaw it never fails open: a broken file is an error at start-up, and a
//! broken edit (or removing the file) while running keeps the last good list and says
//! so in the log. No file at start-up means no restriction. Changes are picked up
//! through inotify, not polling.

use crate::sync::RwLockExt as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The sender may wake the agent.
    Allowed,
    /// Keep it as context; it cannot wake the agent.
    ContextOnly,
    /// Do not store it.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum Allow {
    Star(String),
    Ids(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Trigger,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    allow: Allow,
    mode: Mode,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    default: Rule,
    #[serde(default)]
    chats: HashMap<String, Rule>,
    #[serde(default)]
    log_denied: bool,
}

/// A parsed allowlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Allowlist {
    /// `None`: no file, everyone may trigger everywhere.
    file: Option<File>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct AllowlistError {
    pub(crate) path: PathBuf,
    pub(crate) reason: String,
}

impl Allowlist {
    /// Parses the file's text; `path` only names it in errors.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Allowlist, AllowlistError> {
        let err = |reason: String| AllowlistError {
            path: path.to_owned(),
            reason,
        };
        let mut file: File = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let check = |rule: &Rule, what: &str| match &rule.allow {
            Allow::Star(s) if s != "*" => Err(err(format!(
                "{what}: \"allow\" must be \"*\" or a list of sender ids, not {s:?}"
            ))),
            _ => Ok(()),
        };
        check(&file.default, "default")?;
        let mut chats = HashMap::with_capacity(file.chats.len());
        for (key, rule) in file.chats.drain() {
            check(&rule, &format!("chats.{key}"))?;
            let jid = match key.strip_prefix("dc:") {
                Some(id) => format!("{id}@discord"),
                None => key,
            };
            chats.insert(jid, rule);
        }
        file.chats = chats;
        Ok(Allowlist { file: Some(file) })
    }

    /// Reads `path`: a missing file is an empty (unrestricted) list; anything else
    /// that cannot be read or parsed is an error.
    pub(crate) fn load(path: &Path) -> Result<Allowlist, AllowlistError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Allowlist::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Allowlist::default()),
            Err(e) => Err(AllowlistError {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// The verdict on a message from `sender` in `chat`.
    pub(crate) fn check(&self, chat: &str, sender: &str) -> Verdict {
        let Some(file) = &self.file else {
            return Verdict::Allowed;
        };
        let rule = file.chats.get(chat).unwrap_or(&file.default);
        let allowed = match &rule.allow {
            Allow::Star(_) => true,
            Allow::Ids(ids) => ids.iter().any(|id| id == sender),
        };
        match (allowed, rule.mode) {
            (true, _) => Verdict::Allowed,
            (false, Mode::Trigger) => Verdict::ContextOnly,
            (false, Mode::Drop) => Verdict::Drop,
        }
    }

    /// Whether denied senders are logged.
    pub(crate) fn log_denied(&self) -> bool {
        self.file.as_ref().is_some_and(|f| f.log_denied)
    }
}

/// The default location: `~/.config/rust-claw/sender-allowlist.json`.
pub(crate) fn default_path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".config/rust-claw/sender-allowlist.json")
}

/// The current allowlist, reloaded when its file changes. Dropping it stops watching.
pub(crate) struct LiveAllowlist {
    current: Arc<RwLock<Arc<Allowlist>>>,
    /// Bumped after every reload attempt (tests wait on it).
    #[cfg(test)]
    reloads: tokio::sync::watch::Receiver<u64>,
    _watcher: notify::RecommendedWatcher,
}

impl LiveAllowlist {
    /// Watches `path`'s directory (made if missing, so a list written later is picked
    /// up), then loads it: an error if it is broken.
    pub(crate) fn start(path: &Path) -> Result<LiveAllowlist, AllowlistError> {
        use notify::{EventKind, RecursiveMode, Watcher as _};
        let err = |reason: String| AllowlistError {
            path: path.to_owned(),
            reason,
        };
        let current = Arc::new(RwLock::new(Arc::new(Allowlist::default())));
        let (tx, _reloads) = tokio::sync::watch::channel(0u64);
        let dir = path
            .parent()
            .ok_or_else(|| err("has no parent directory".into()))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create its directory: {e}")))?;
        let name = path.file_name().map(|n| n.to_owned());
        let (p, cur) = (path.to_owned(), current.clone());
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            if !event.paths.iter().any(|x| x.file_name() == name.as_deref()) {
                return;
            }
            // While running, a missing file is not "no list": it keeps the last one
            // too (an editor replacing the file, or a mistake, must not open it up).
            let loaded = match std::fs::read_to_string(&p) {
                Ok(text) => Allowlist::parse(&text, &p),
                Err(e) => Err(AllowlistError {
                    path: p.clone(),
                    reason: e.to_string(),
                }),
            };
            match loaded {
                Ok(list) => {
                    let mut slot = cur.write_ignoring_poison();
                    if **slot != list {
                        tracing::info!(path = %p.display(), "sender allowlist reloaded");
                        *slot = Arc::new(list);
                    }
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "the sender allowlist cannot be used as it is now; keeping the last good one"
                ),
            }
            tx.send_modify(|n| *n += 1);
        })
        .map_err(|e| err(format!("cannot watch: {e}")))?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| err(format!("cannot watch: {e}")))?;
        *current.write_ignoring_poison() = Arc::new(Allowlist::load(path)?);
        Ok(LiveAllowlist {
            current,
            #[cfg(test)]
            reloads: _reloads,
            _watcher: watcher,
        })
    }

    pub(crate) fn get(&self) -> Arc<Allowlist> {
        self.current.read_ignoring_poison().clone()
    }

    /// A receiver bumped after every reload attempt.
    #[cfg(test)]
    fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Allowlist, AllowlistError> {
        Allowlist::parse(text, Path::new("sender-allowlist.json"))
    }

    #[test]
    fn verdicts() {
        let list = parse(
            r#"{"default":{"allow":"*","mode":"trigger"},
                "chats":{"1@discord":{"allow":["7"],"mode":"trigger"},
                         "dc:2":{"allow":["7"],"mode":"drop"}},
                "logDenied":true}"#,
        )
        .unwrap();
        assert_eq!(list.check("9@discord", "8"), Verdict::Allowed);
        assert_eq!(list.check("1@discord", "7"), Verdict::Allowed);
        assert_eq!(list.check("1@discord", "8"), Verdict::ContextOnly);
        assert_eq!(list.check("2@discord", "8"), Verdict::Drop);
        assert!(list.log_denied());
        assert_eq!(
            Allowlist::default().check("1@discord", "x"),
            Verdict::Allowed
        );
    }

    #[test]
    fn broken_files_are_errors() {
        for bad in [
            "",
            "{",
            r#"{"chats":{}}"#,
            r#"{"default":{"allow":"everyone","mode":"trigger"}}"#,
            r#"{"default":{"allow":"*","mode":"ignore"}}"#,
            r#"{"default":{"allow":"*","mode":"trigger"},"chats":{"1@discord":{"allow":5,"mode":"drop"}}}"#,
            r#"{"default":{"allow":"*","mode":"trigger"},"typo":1}"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("sender-allowlist.json: "),
                "{bad}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn a_broken_edit_keeps_the_last_good_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sender-allowlist.json");
        let only_seven = r#"{"default":{"allow":["7"],"mode":"drop"}}"#;
        std::fs::write(&path, only_seven).unwrap();
        let live = LiveAllowlist::start(&path).unwrap();
        let mut reloads = live.reloads();
        assert_eq!(live.get().check("1@discord", "8"), Verdict::Drop);

        // A valid edit is picked up.
        std::fs::write(&path, r#"{"default":{"allow":"*","mode":"drop"}}"#).unwrap();
        let wait = async {
            while live.get().check("1@discord", "8") != Verdict::Allowed {
                reloads.changed().await.unwrap();
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .expect("the edit was picked up");

        // A broken one is not: the last good list stays.
        let seen = *reloads.borrow_and_update();
        std::fs::write(&path, "{ not json").unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while *reloads.borrow_and_update() == seen {
                reloads.changed().await.unwrap();
            }
        })
        .await
        .expect("the broken edit was looked at");
        assert_eq!(live.get().check("1@discord", "8"), Verdict::Allowed);

        // A broken file at start-up is an error.
        assert!(LiveAllowlist::start(&path).is_err());
    }
}
