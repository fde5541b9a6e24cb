//! The layout of a RustClaw root directory.
//!
//! ```text
//! <root>/
//!   .env                      configuration (optional; the environment wins)
//!   store/messages.db         the SQLite store
//!   groups/<folder>/          a group's memory (AGENTS.md) and skills
//!   groups/global/            memory and skills shared by every group
//!   data/ipc/<folder>/        requests from that group's agent, responses, snapshots
//!   data/ipc/errors/<folder>/ quarantined requests, each with a .reason file
//!   data/sessions/<folder>/   per-group agent state (the codex home)
//!   data/control/             wake-up notes from CLI processes to a running daemon
//! ```
//!
//! Only this module knows these names; everything else asks it.

use std::path::{Path, PathBuf};

use crate::model::FolderName;

/// The request subdirectories of a group's IPC directory.
pub(crate) const IPC_REQUEST_SUBDIRS: [&str; 2] = ["messages", "tasks"];

#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Paths {
        Paths { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn env_file(&self) -> PathBuf {
        self.root.join(".env")
    }

    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    pub fn database(&self) -> PathBuf {
        self.store_dir().join("messages.db")
    }

    /// Held (flock) by the running daemon: one daemon per root.
    pub(crate) fn daemon_lock(&self) -> PathBuf {
        self.store_dir().join("daemon.lock")
    }

    pub fn groups_dir(&self) -> PathBuf {
        self.root.join("groups")
    }

    pub fn group_dir(&self, folder: &FolderName) -> PathBuf {
        self.groups_dir().join(folder.as_str())
    }

    pub fn global_dir(&self) -> PathBuf {
        self.groups_dir().join("global")
    }

    pub fn ipc_root(&self) -> PathBuf {
        self.root.join("data").join("ipc")
    }

    pub fn ipc_dir(&self, folder: &FolderName) -> PathBuf {
        self.ipc_root().join(folder.as_str())
    }

    /// The host's private cache of rendered task snapshots (derived from the store,
    /// rebuilt at start-up; never shown to an agent).
    pub fn snapshot_cache_dir(&self) -> PathBuf {
        self.root.join("data").join("snapshot-cache")
    }

    /// Quarantine for requests that were refused before they could be answered.
    pub fn ipc_errors_dir(&self, folder_component: &str) -> PathBuf {
        self.ipc_root().join("errors").join(folder_component)
    }

    /// Where the host answers each request: `responses/<request id>.json`.
    pub fn ipc_responses_dir(&self, folder: &FolderName) -> PathBuf {
        self.ipc_dir(folder).join("responses")
    }

    pub(crate) fn sessions_dir(&self, folder: &FolderName) -> PathBuf {
        self.root
            .join("data")
            .join("sessions")
            .join(folder.as_str())
    }

    /// The group's codex home (`CODEX_HOME`): config.toml, auth.json, skills, threads.
    pub fn codex_home(&self, folder: &FolderName) -> PathBuf {
        self.sessions_dir(folder).join("codex")
    }

    /// The agent's private temporary directory (`TMPDIR`), outside the codex home.
    pub fn agent_tmp_dir(&self, folder: &FolderName) -> PathBuf {
        self.sessions_dir(folder).join("tmp")
    }

    /// `HOME` for the agent's commands.
    pub fn agent_home_dir(&self, folder: &FolderName) -> PathBuf {
        self.sessions_dir(folder).join("home")
    }

    /// A group's own skills: `groups/<folder>/skills/`.
    pub fn group_skills_dir(&self, folder: &FolderName) -> PathBuf {
        self.group_dir(folder).join("skills")
    }

    /// Skills every group may enable: `groups/global/skills/`.
    pub fn global_skills_dir(&self) -> PathBuf {
        self.global_dir().join("skills")
    }

    /// Where CLI processes leave wake-up notes for a daemon running on the same root.
    pub(crate) fn control_dir(&self) -> PathBuf {
        self.root.join("data").join("control")
    }
}
