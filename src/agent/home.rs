//! The group's codex home (`data/sessions/<folder>/codex/`), rewritten before each run.
//!
//! ```text
//! codex/
//!   config.toml     written here: model, sandbox, features, our MCP server, + CODEX_CONFIG
//!   auth.json       the owner's login, synced by `auth.rs` (nothing else of ~/.codex)
//!   AGENTS.md       a copy of groups/global/AGENTS.md (shared memory, read-only here)
//!   skills/<name>/  copies of the skills enabled for this group, and nothing else
//!   sessions/ ...   codex's own thread rollouts (what `thread/resume` reads)
//! ```
//! The group's own memory is `groups/<folder>/AGENTS.md` in the agent's working
//! directory, which codex reads by itself. Writing everything from the database and
//! the folders on each run means a change (a skill disabled, a new model) takes effect
//! at the next session without any bookkeeping.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::model::FolderName;
use crate::paths::Paths;
use crate::safe_dir::{Durability, Lookup, ReadError, SafeDir};
use crate::skills;

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error(
        "cannot access {path}: {source}; check that it exists and that the daemon's user may read and write it"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CODEX_CONFIG {path}: {reason}")]
    Fragment { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What goes into a group's config.toml.
#[derive(Debug, Clone)]
pub struct HomeConfig {
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    /// codex's `approval_policy`: when codex asks us (never | on-request | untrusted).
    pub approval_policy: String,
    /// codex's `sandbox_mode`: `workspace-write` on the host; `danger-full-access` in
    /// a container, which is itself the boundary.
    pub sandbox_mode: String,
    /// The `rust_claw` executable that serves `agent-tools` (as codex will see it).
    pub tools_exe: PathBuf,
    /// The group's IPC directory (as codex will see it).
    pub ipc_dir: PathBuf,
    /// The group's chat: where `send_message` goes by default.
    pub chat_jid: Option<String>,
    /// The daemon's TIMEZONE: how the tools read local `once` times.
    pub timezone: Option<String>,
    /// Directories writable besides the working directory (main: groups/global).
    pub writable_roots: Vec<PathBuf>,
    /// The user's fragment from `CODEX_CONFIG`, merged over our defaults.
    pub user_fragment: Option<Table>,
}

/// Reads the `CODEX_CONFIG` fragment.
pub(crate) fn load_fragment(path: &Path) -> Result<Table, HomeError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.parse::<Table>().map_err(|e| HomeError::Fragment {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// codex features switched off in every group's config.toml (a `CODEX_CONFIG` fragment
/// may switch them back on).
///
/// - `plugins`, `apps`, `remote_plugin`: without these codex contacts github.com /
///   chatgpt.com at start.
/// - `unbounded_connection_retries`: else a dead model endpoint makes a turn retry
///   forever.
/// - `skill_search`: in 0.169.0 this runs a dozen *shadow* skill-ranking experiments on
///   every turn before the model is called (≈ 6 ms of CPU on the critical path, logged
///   as `shadow_selection_experiment`, results only logged). Skills are still
///   discovered natively and listed to the model exactly as before (the request body
///   is identical; `tests/agent.rs` checks enabled/disabled skills end to end).
pub(crate) const FEATURES_OFF: &[&str] = &[
    "plugins",
    "apps",
    "remote_plugin",
    "unbounded_connection_retries",
    "skill_search",
];

/// Renders config.toml. Order of precedence: our defaults < the user's fragment <
/// the `rust_claw` MCP server entry (the agent's tools must point at its own IPC dir).
pub(crate) fn render_config(c: &HomeConfig) -> String {
    let mut root = Table::new();
    if let Some(m) = &c.model {
        root.insert("model".into(), m.clone().into());
    }
    if let Some(e) = &c.reasoning_effort {
        root.insert("model_reasoning_effort".into(), e.clone().into());
    }
    root.insert("approval_policy".into(), c.approval_policy.clone().into());
    root.insert("sandbox_mode".into(), c.sandbox_mode.clone().into());
    let mut sww = Table::new();
    sww.insert("writable_roots".into(), paths_array(&c.writable_roots));
    sww.insert("network_access".into(), false.into());
    // /tmp is shared with the host and other groups; the private TMPDIR is enough.
    sww.insert("exclude_slash_tmp".into(), true.into());
    sww.insert("exclude_tmpdir_env_var".into(), false.into());
    root.insert("sandbox_workspace_write".into(), Value::Table(sww));
    let mut features = Table::new();
    for f in FEATURES_OFF {
        features.insert((*f).into(), false.into());
    }
    root.insert("features".into(), Value::Table(features));
    // codex's usage analytics are on by default (its turn metadata says
    // `analytics_enabled: true`): usage reporting is phoning home, and nothing of ours
    // reads it.
    let mut analytics = Table::new();
    analytics.insert("enabled".into(), false.into());
    root.insert("analytics".into(), Value::Table(analytics));
    // codex treats the nearest directory holding `.git` as the project root and reads
    // every AGENTS.md from there down to the working directory. The group folder lies
    // inside the RustClaw checkout, so the owner's own instructions for that checkout
    // (and any `groups/AGENTS.md`) would reach every group's agent. No markers: the
    // group folder is the project root, and its AGENTS.md is the only project memory.
    root.insert("project_root_markers".into(), Value::Array(Vec::new()));
    // codex's own bundled skills (skill-creator, imagegen, plugin-creator, ...) are
    // not part of a group's enabled set: the model must see exactly the skills the
    // group enabled. Without this codex copies them into `skills/.system/` at every
    // start, lists them in every request (~2 KB of prompt) and rescans them each turn.
    let mut bundled = Table::new();
    bundled.insert("enabled".into(), false.into());
    let mut skills_table = Table::new();
    skills_table.insert("bundled".into(), Value::Table(bundled));
    root.insert("skills".into(), Value::Table(skills_table));

    if let Some(user) = &c.user_fragment {
        merge(&mut root, user);
    }

    let mut env = Table::new();
    env.insert(
        "RUST_CLAW_IPC_DIR".into(),
        c.ipc_dir.to_string_lossy().into_owned().into(),
    );
    if let Some(jid) = &c.chat_jid {
        env.insert("RUST_CLAW_CHAT_JID".into(), jid.clone().into());
    }
    if let Some(tz) = &c.timezone {
        env.insert("RUST_CLAW_TIMEZONE".into(), tz.clone().into());
    }
    let mut server = Table::new();
    server.insert(
        "command".into(),
        c.tools_exe.to_string_lossy().into_owned().into(),
    );
    server.insert("args".into(), Value::Array(vec!["agent-tools".into()]));
    // Our own tools never need a person's approval: the host authorises every request
    // (by the IPC directory) and answers with ok / denied / invalid / error.
    server.insert("default_tools_approval_mode".into(), "approve".into());
    server.insert("env".into(), Value::Table(env));
    let servers = root
        .entry("mcp_servers")
        .or_insert_with(|| Value::Table(Table::new()));
    if !servers.is_table() {
        *servers = Value::Table(Table::new());
    }
    if let Some(t) = servers.as_table_mut() {
        t.insert("rust_claw".into(), Value::Table(server));
    }
    let mut text = String::from("# Written by rust_claw before each run; edits are overwritten.\n");
    text.push_str(&toml::to_string(&root).expect("a TOML table always serialises"));
    text
}

fn paths_array(paths: &[PathBuf]) -> Value {
    Value::Array(
        paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned().into())
            .collect(),
    )
}

/// Deep merge: tables merge key by key, anything else in `over` replaces.
fn merge(base: &mut Table, over: &Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The names of environment variables the configured model providers read their API
/// key from (`model_providers.<id>.env_key`): the runner passes these through.
pub(crate) fn provider_env_keys(fragment: Option<&Table>) -> Vec<String> {
    let Some(providers) = fragment
        .and_then(|f| f.get("model_providers"))
        .and_then(Value::as_table)
    else {
        return Vec::new();
    };
    providers
        .values()
        .filter_map(|p| p.get("env_key").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// True when codex will talk to OpenAI itself (and so needs the owner's login), false
/// when the fragment selects another provider.
pub(crate) fn uses_openai_login(fragment: Option<&Table>) -> bool {
    match fragment
        .and_then(|f| f.get("model_provider"))
        .and_then(Value::as_str)
    {
        None | Some("openai") => true,
        Some(_) => false,
    }
}

/// Writes config.toml, the global memory copy and the enabled skills into the group's
/// codex home, creating the directories the agent needs. Returns the skills installed.
pub fn prepare(
    paths: &Paths,
    folder: &FolderName,
    config: &HomeConfig,
    enabled_skills: &[String],
) -> Result<Vec<String>, HomeError> {
    for dir in [
        paths.agent_tmp_dir(folder),
        paths.agent_home_dir(folder),
        paths.group_dir(folder),
        paths.ipc_dir(folder),
    ] {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    }
    // The codex home is the agent's to write: reached by descriptor from its
    // (owner-made) parent, and everything in it written with `*at()` calls.
    let sessions = paths.sessions_dir(folder);
    let home_path = paths.codex_home(folder);
    let home = SafeDir::open_trusted(&sessions, true)
        .and_then(|d| d.ensure_dir_removing("codex"))
        .map_err(io(&home_path))?;
    home.write_atomic(
        "config.toml",
        render_config(config).as_bytes(),
        Durability::Atomic,
    )
    .map_err(io(&home_path))?;
    match global_memory(paths) {
        Some(bytes) => home
            .write_atomic(MEMORY_FILE, &bytes, Durability::Atomic)
            .map_err(io(&home_path))?,
        None => home.remove(MEMORY_FILE),
    }
    install_skills(paths, folder, &home, enabled_skills)
}

const MEMORY_FILE: &str = "AGENTS.md";
/// The largest memory file copied into a codex home.
const MAX_MEMORY_BYTES: u64 = 1024 * 1024;

/// `groups/global/AGENTS.md`, which main's agent may write: read by descriptor, a
/// link, FIFO or oversized file counts as no memory (and is said in the log).
fn global_memory(paths: &Paths) -> Option<Vec<u8>> {
    let groups = SafeDir::open_trusted(&paths.groups_dir(), false).ok()?;
    let Ok(Lookup::Dir(global)) = groups.open_dir("global") else {
        return None;
    };
    match global.read_file(MEMORY_FILE, MAX_MEMORY_BYTES) {
        Ok(bytes) => Some(bytes),
        Err(ReadError::Gone) => None,
        Err(ReadError::Refused(reason)) => {
            tracing::warn!(%reason, "groups/global/AGENTS.md is not used");
            None
        }
        Err(ReadError::Io(e)) => {
            tracing::warn!(error = %e, "cannot read groups/global/AGENTS.md");
            None
        }
    }
}

/// Makes `home/skills` hold exactly the enabled skills. A `.system/` left by an
/// earlier codex run (bundled skills, now switched off in config.toml) goes too.
fn install_skills(
    paths: &Paths,
    folder: &FolderName,
    home: &SafeDir,
    enabled: &[String],
) -> Result<Vec<String>, HomeError> {
    let at = home.path().join("skills");
    let skills_dir = home.ensure_dir_removing("skills").map_err(io(&at))?;
    for (name, _) in skills_dir.entries().map_err(io(&at))? {
        skills_dir.remove(&name);
    }
    let mut installed = Vec::new();
    for name in enabled {
        match skills::source(paths, folder, name) {
            Some(src) => {
                // Links and special files are skipped, so a skill cannot smuggle a
                // link to a file outside its folder into the codex home.
                let dst = skills_dir.ensure_dir_removing(name).map_err(io(&at))?;
                src.copy_tree(&dst).map_err(io(src.path()))?;
                installed.push(name.clone());
            }
            None => {
                tracing::warn!(group = %folder, skill = %name, "enabled skill not found on disk; skipped")
            }
        }
    }
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(fragment: Option<&str>) -> HomeConfig {
        HomeConfig {
            model: Some("gpt-x".into()),
            reasoning_effort: Some("high".into()),
            approval_policy: "never".into(),
            sandbox_mode: "workspace-write".into(),
            tools_exe: "/opt/rust_claw".into(),
            ipc_dir: "/root/data/ipc/team".into(),
            chat_jid: Some("1@discord".into()),
            timezone: Some("Asia/Seoul".into()),
            writable_roots: vec!["/root/groups/global".into()],
            user_fragment: fragment.map(|f| f.parse().unwrap()),
        }
    }

    #[test]
    fn config_has_our_defaults_and_tools() {
        let t: Table = render_config(&config(None)).parse().unwrap();
        assert_eq!(t["model"].as_str(), Some("gpt-x"));
        assert_eq!(t["model_reasoning_effort"].as_str(), Some("high"));
        assert_eq!(t["sandbox_mode"].as_str(), Some("workspace-write"));
        for f in [
            "plugins",
            "apps",
            "remote_plugin",
            "unbounded_connection_retries",
            "skill_search",
        ] {
            assert_eq!(t["features"][f].as_bool(), Some(false), "{f}");
        }
        assert_eq!(t["analytics"]["enabled"].as_bool(), Some(false));
        assert_eq!(t["skills"]["bundled"]["enabled"].as_bool(), Some(false));
        assert_eq!(t["project_root_markers"].as_array().map(Vec::len), Some(0));
        let s = &t["mcp_servers"]["rust_claw"];
        assert_eq!(s["command"].as_str(), Some("/opt/rust_claw"));
        assert_eq!(
            s["args"].as_array().unwrap()[0].as_str(),
            Some("agent-tools")
        );
        assert_eq!(
            s["env"]["RUST_CLAW_IPC_DIR"].as_str(),
            Some("/root/data/ipc/team")
        );
        assert_eq!(
            t["sandbox_workspace_write"]["writable_roots"]
                .as_array()
                .unwrap()[0]
                .as_str(),
            Some("/root/groups/global")
        );
    }

    #[test]
    fn user_fragment_merges_but_cannot_replace_our_tools() {
        let frag = r#"
            model = "mock-model"
            model_provider = "mock"
            [features]
            apps = true
            [model_providers.mock]
            base_url = "http://127.0.0.1:1/v1"
            env_key = "MOCK_KEY"
            [mcp_servers.rust_claw]
            command = "/evil"
            [mcp_servers.other]
            command = "/bin/other"
        "#;
        let c = config(Some(frag));
        let t: Table = render_config(&c).parse().unwrap();
        assert_eq!(t["model"].as_str(), Some("mock-model"));
        assert_eq!(t["features"]["apps"].as_bool(), Some(true));
        assert_eq!(t["features"]["plugins"].as_bool(), Some(false));
        assert_eq!(
            t["mcp_servers"]["rust_claw"]["command"].as_str(),
            Some("/opt/rust_claw")
        );
        assert_eq!(
            t["mcp_servers"]["other"]["command"].as_str(),
            Some("/bin/other")
        );
        assert_eq!(provider_env_keys(c.user_fragment.as_ref()), ["MOCK_KEY"]);
        assert!(!uses_openai_login(c.user_fragment.as_ref()));
        assert!(uses_openai_login(None));
    }

    #[test]
    fn prepare_installs_memory_and_exactly_the_enabled_skills() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path());
        let f = FolderName::parse("team").unwrap();
        for name in ["on", "off"] {
            let d = paths.global_skills_dir().join(name);
            std::fs::create_dir_all(d.join("scripts")).unwrap();
            std::fs::write(d.join("SKILL.md"), format!("---\nname: {name}\n---\n")).unwrap();
            std::fs::write(d.join("scripts/run.sh"), "echo hi").unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", paths.global_skills_dir().join("on/leak"))
            .unwrap();
        std::fs::write(paths.global_dir().join("AGENTS.md"), "shared memory").unwrap();
        let home = paths.codex_home(&f);
        let system = home.join("skills/.system/builtin");
        std::fs::create_dir_all(&system).unwrap();

        let installed = prepare(
            &paths,
            &f,
            &config(None),
            &["on".into(), "off".into(), "gone".into()],
        )
        .unwrap();
        assert_eq!(installed, ["on", "off"]);
        assert!(home.join("skills/off/SKILL.md").is_file());
        assert!(home.join("skills/on/scripts/run.sh").is_file());
        assert!(
            !home.join("skills/on/leak").exists(),
            "links are not copied"
        );
        assert_eq!(
            std::fs::read_to_string(home.join("AGENTS.md")).unwrap(),
            "shared memory"
        );

        // Disable one; remove the global memory: both disappear from the home.
        std::fs::remove_file(paths.global_dir().join("AGENTS.md")).unwrap();
        let installed = prepare(&paths, &f, &config(None), &["on".into()]).unwrap();
        assert_eq!(installed, ["on"]);
        assert!(!home.join("skills/off").exists());
        assert!(!home.join("AGENTS.md").exists());
        assert!(
            !system.exists(),
            "a .system left by codex's bundled skills (now off) is removed"
        );
        assert!(paths.agent_tmp_dir(&f).is_dir());
    }
}
