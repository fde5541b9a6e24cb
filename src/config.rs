//! Configuration: the process environment first, then `<root>/.env`.
//!
//! `.env` is read into a private map, never exported into the process environment, so
//! secrets such as `DISCORD_BOT_TOKEN` are not inherited by the agent processes the
//! daemon spawns. Every variable is validated once, here; an invalid value stops the
//! program with a message that names the variable.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;

use crate::logging::LogFormat;
use crate::model::{FolderName, Jid};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {var}={value:?}: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot read {path}: {source}")]
    EnvFile {
        path: PathBuf,
        #[source]
        source: dotenvy::Error,
    },
}

/// A secret value: present, but never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where agent turns run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunnerKind {
    /// `codex app-server` as a child of the daemon, codex's own sandbox as the boundary.
    Host,
    /// `codex app-server` inside a per-group container (podman or docker).
    Container,
}

/// Which container CLI to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerRuntime {
    /// podman if it is on PATH, else docker.
    Auto,
    Podman,
    Docker,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) discord_bot_token: Option<Secret>,
    /// REST base of Discord's API (`https://discord.com/api`, or a proxy / fake).
    pub(crate) discord_api_base: String,
    pub(crate) auto_register_main_jid: Option<Jid>,
    pub(crate) assistant_name: String,
    pub(crate) main_group_folder: FolderName,
    pub(crate) timezone: Tz,
    pub(crate) max_concurrent_agents: usize,
    pub(crate) agent_runner: RunnerKind,
    pub(crate) container_runtime: ContainerRuntime,
    pub(crate) container_image: String,
    /// `--network` for agent containers; `None`: the runtime's default network.
    pub(crate) container_network: Option<String>,
    /// `--pids-limit`, `--memory`, `--cpus` of each agent container.
    pub(crate) container_pids_limit: u64,
    pub(crate) container_memory: String,
    pub(crate) container_cpus: String,
    /// A turn running longer is interrupted, then its agent (container) is stopped.
    pub(crate) agent_turn_timeout_ms: u64,
    pub(crate) codex_bin: PathBuf,
    pub(crate) codex_auth_dir: PathBuf,
    pub(crate) codex_config: Option<PathBuf>,
    pub(crate) codex_model: Option<String>,
    pub(crate) codex_reasoning_effort: Option<String>,
    pub(crate) idle_timeout_ms: u64,
    /// First retry delay after a failed agent turn; doubles with each attempt.
    pub(crate) agent_retry_base_ms: u64,
    /// Retries before the chat is told the agent failed.
    pub(crate) agent_max_retries: u32,
    /// How log lines look (`LOG_FORMAT`).
    pub(crate) log_format: LogFormat,
    /// What one group's agent may make the host do through IPC.
    pub(crate) ipc_limits: crate::ipc::Limits,
    /// How long the growing tables keep their rows (`RETAIN_*_DAYS`).
    pub(crate) retention: crate::store::retention::Retention,
}

/// Every variable the daemon reads, its default and what it is for; `.env.example`
/// and the README table are checked against this list by a test.
pub const VARIABLES: &[(&str, &str)] = &[
    (
        "DISCORD_BOT_TOKEN",
        "Discord bot token; without it the daemon runs with no Discord channel",
    ),
    (
        "DISCORD_API_BASE",
        "Discord REST base (the gateway URL comes from its /gateway answer); default https://discord.com/api",
    ),
    (
        "AUTO_REGISTER_MAIN_JID",
        "<channel id>@discord registered as the main group on `run` if none is",
    ),
    (
        "ASSISTANT_NAME",
        "the assistant's name; the default trigger is @<ASSISTANT_NAME>",
    ),
    ("MAIN_GROUP_FOLDER", "folder of the main group"),
    (
        "TIMEZONE",
        "IANA timezone for schedules and prompts (default: the system's)",
    ),
    (
        "MAX_CONCURRENT_AGENTS",
        "agent sessions running at once, across all groups",
    ),
    ("AGENT_RUNNER", "container | host"),
    ("CONTAINER_RUNTIME", "auto | podman | docker"),
    ("CONTAINER_IMAGE", "image the agent containers run"),
    (
        "CONTAINER_NETWORK",
        "network of agent containers: empty (runtime default), none, host or a named network",
    ),
    (
        "CONTAINER_PIDS_LIMIT",
        "processes an agent container may run",
    ),
    (
        "CONTAINER_MEMORY",
        "memory limit of an agent container (e.g. 2g)",
    ),
    ("CONTAINER_CPUS", "CPUs an agent container may use (e.g. 2)"),
    (
        "AGENT_TURN_TIMEOUT_MS",
        "a turn running longer is interrupted and its container stopped",
    ),
    ("CODEX_BIN", "the codex CLI used by the host runner"),
    (
        "CODEX_AUTH_DIR",
        "directory holding your codex login (auth.json)",
    ),
    (
        "CODEX_CONFIG",
        "optional TOML fragment merged into every group's codex config.toml",
    ),
    (
        "CODEX_MODEL",
        "model slug passed to codex (default: codex's own default)",
    ),
    ("CODEX_REASONING_EFFORT", "reasoning effort passed to codex"),
    (
        "IDLE_TIMEOUT_MS",
        "an idle agent session is closed after this many milliseconds",
    ),
    (
        "AGENT_RETRY_BASE_MS",
        "first retry delay after a failed agent turn (doubles each attempt)",
    ),
    (
        "AGENT_MAX_RETRIES",
        "retries of a failed turn before the chat is told",
    ),
    (
        "MIN_TASK_INTERVAL_MS",
        "shortest time between runs of a schedule an agent creates (the CLI's floor is 1000)",
    ),
    (
        "MAX_TASKS_PER_GROUP",
        "active scheduled tasks an agent can give one group",
    ),
    (
        "IPC_QUARANTINE_MAX_FILES",
        "refused IPC requests kept per group in data/ipc/errors/ (oldest dropped)",
    ),
    (
        "IPC_QUARANTINE_MAX_BYTES",
        "bytes of refused IPC requests kept per group (oldest dropped)",
    ),
    (
        "RETAIN_MESSAGES_DAYS",
        "answered chat messages and task run logs older than this are deleted",
    ),
    (
        "RETAIN_RECEIPTS_DAYS",
        "sent replies (outbox) and applied IPC requests (ledger) older than this are deleted",
    ),
    ("RUST_LOG", "log filter, e.g. info or rust_claw=debug"),
    (
        "LOG_FORMAT",
        "text (human-readable, the default) or json (one object per line)",
    ),
];

/// Reads variables from the environment, falling back to a `.env` map.
struct Source {
    /// False in unit tests, so the machine's environment cannot change their outcome.
    use_env: bool,
    file: HashMap<String, String>,
}

impl Source {
    fn get(&self, var: &str) -> Option<String> {
        self.use_env
            .then(|| std::env::var(var).ok())
            .flatten()
            .or_else(|| self.file.get(var).cloned())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

fn invalid(var: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

// The variables that take more than one line to read, one function each, in the
// order `Config::from_source` reads them.

fn assistant_name(src: &Source) -> Result<String, ConfigError> {
    let name = src
        .get("ASSISTANT_NAME")
        .unwrap_or_else(|| "Andy".to_owned());
    if name.chars().any(char::is_whitespace) || name.chars().count() > 64 {
        return Err(invalid(
            "ASSISTANT_NAME",
            &name,
            "must be 1 to 64 characters without spaces (it becomes the @trigger)",
        ));
    }
    Ok(name)
}

fn timezone(src: &Source) -> Result<Tz, ConfigError> {
    match src.get("TIMEZONE") {
        Some(v) => v.parse::<Tz>().map_err(|_| {
            invalid(
                "TIMEZONE",
                &v,
                "must be an IANA timezone name such as Asia/Seoul or UTC",
            )
        }),
        None => Ok(system_timezone()),
    }
}

/// `MIN_TASK_INTERVAL_MS`, `MAX_TASKS_PER_GROUP`, `IPC_QUARANTINE_MAX_*`.
fn ipc_limits(src: &Source) -> Result<crate::ipc::Limits, ConfigError> {
    Ok(crate::ipc::Limits {
        min_task_interval_ms: parse_number(src, "MIN_TASK_INTERVAL_MS", 60_000, 1_000, 86_400_000)?,
        max_tasks_per_group: parse_number(src, "MAX_TASKS_PER_GROUP", 200, 1, 100_000)? as usize,
        quarantine: crate::ipc::QuarantineLimits {
            max_files: parse_number(src, "IPC_QUARANTINE_MAX_FILES", 1_000, 1, 1_000_000)? as usize,
            max_bytes: parse_number(
                src,
                "IPC_QUARANTINE_MAX_BYTES",
                64 * 1024 * 1024,
                1024 * 1024,
                1 << 40,
            )?,
        },
    })
}

/// `RETAIN_MESSAGES_DAYS` (messages, task runs) and `RETAIN_RECEIPTS_DAYS` (sent
/// outbox rows, the IPC ledger).
fn retention(src: &Source) -> Result<crate::store::retention::Retention, ConfigError> {
    let day = std::time::Duration::from_secs(86_400);
    let history = day * parse_number(src, "RETAIN_MESSAGES_DAYS", 90, 1, 36_500)? as u32;
    let receipts = day * parse_number(src, "RETAIN_RECEIPTS_DAYS", 7, 1, 36_500)? as u32;
    Ok(crate::store::retention::Retention {
        messages: history,
        task_runs: history,
        outbox: receipts,
        ipc_ledger: receipts,
    })
}

fn container_runtime(src: &Source) -> Result<ContainerRuntime, ConfigError> {
    match src.get("CONTAINER_RUNTIME").as_deref() {
        None | Some("auto") => Ok(ContainerRuntime::Auto),
        Some("podman") => Ok(ContainerRuntime::Podman),
        Some("docker") => Ok(ContainerRuntime::Docker),
        Some(v) => Err(invalid(
            "CONTAINER_RUNTIME",
            v,
            "must be auto, podman or docker",
        )),
    }
}

fn container_memory(src: &Source) -> Result<String, ConfigError> {
    let memory = src
        .get("CONTAINER_MEMORY")
        .unwrap_or_else(|| "2g".to_owned());
    if !is_size(&memory) {
        return Err(invalid(
            "CONTAINER_MEMORY",
            &memory,
            "must be a number with an optional unit b, k, m or g (e.g. 2g)",
        ));
    }
    Ok(memory)
}

fn container_cpus(src: &Source) -> Result<String, ConfigError> {
    let cpus = src.get("CONTAINER_CPUS").unwrap_or_else(|| "2".to_owned());
    if !cpus.parse::<f64>().is_ok_and(|c| c > 0.0 && c <= 1024.0) {
        return Err(invalid(
            "CONTAINER_CPUS",
            &cpus,
            "must be a positive number of CPUs (e.g. 1.5)",
        ));
    }
    Ok(cpus)
}

fn container_network(src: &Source) -> Result<Option<String>, ConfigError> {
    let network = src.get("CONTAINER_NETWORK");
    if let Some(n) = &network
        && !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(invalid(
            "CONTAINER_NETWORK",
            n,
            "must be none, host or a network name (letters, digits, _ . -)",
        ));
    }
    Ok(network)
}

fn reasoning_effort(src: &Source) -> Result<Option<String>, ConfigError> {
    let effort = src.get("CODEX_REASONING_EFFORT");
    if let Some(v) = &effort
        && !["minimal", "low", "medium", "high", "xhigh"].contains(&v.as_str())
    {
        return Err(invalid(
            "CODEX_REASONING_EFFORT",
            v,
            "must be minimal, low, medium, high or xhigh",
        ));
    }
    Ok(effort)
}

impl Config {
    /// Loads the configuration for `root` (environment first, then `root/.env`).
    pub fn load(root: &Path) -> Result<Config, ConfigError> {
        let path = root.join(".env");
        let mut file = HashMap::new();
        if path.exists() {
            let iter = dotenvy::from_path_iter(&path).map_err(|source| ConfigError::EnvFile {
                path: path.clone(),
                source,
            })?;
            for item in iter {
                let (k, v) = item.map_err(|source| ConfigError::EnvFile {
                    path: path.clone(),
                    source,
                })?;
                file.insert(k, v);
            }
        }
        Config::from_source(&Source {
            use_env: true,
            file,
        })
    }

    fn from_source(src: &Source) -> Result<Config, ConfigError> {
        let auto_register_main_jid = match src.get("AUTO_REGISTER_MAIN_JID") {
            None => None,
            Some(v) => {
                Some(Jid::parse(&v).map_err(|e| invalid("AUTO_REGISTER_MAIN_JID", &v, e.reason))?)
            }
        };
        let assistant_name = assistant_name(src)?;
        let main_group_folder = {
            let v = src
                .get("MAIN_GROUP_FOLDER")
                .unwrap_or_else(|| "main".to_owned());
            FolderName::parse(&v).map_err(|e| invalid("MAIN_GROUP_FOLDER", &v, e.reason))?
        };
        let timezone = timezone(src)?;
        let max_concurrent_agents = parse_number(src, "MAX_CONCURRENT_AGENTS", 5, 1, 64)? as usize;
        let idle_timeout_ms = parse_number(src, "IDLE_TIMEOUT_MS", 300_000, 1_000, 86_400_000)?;
        let agent_retry_base_ms = parse_number(src, "AGENT_RETRY_BASE_MS", 5_000, 1, 600_000)?;
        let agent_max_retries = parse_number(src, "AGENT_MAX_RETRIES", 5, 0, 20)? as u32;
        let ipc_limits = ipc_limits(src)?;
        let retention = retention(src)?;
        let agent_runner = match src.get("AGENT_RUNNER").as_deref() {
            None | Some("container") => RunnerKind::Container,
            Some("host") => RunnerKind::Host,
            Some(v) => return Err(invalid("AGENT_RUNNER", v, "must be container or host")),
        };
        let container_runtime = container_runtime(src)?;
        let container_pids_limit = parse_number(src, "CONTAINER_PIDS_LIMIT", 512, 16, 65_536)?;
        let container_memory = container_memory(src)?;
        let container_cpus = container_cpus(src)?;
        let container_network = container_network(src)?;
        let agent_turn_timeout_ms = parse_number(
            src,
            "AGENT_TURN_TIMEOUT_MS",
            30 * 60 * 1000,
            1_000,
            7 * 86_400_000,
        )?;
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        let codex_effort = reasoning_effort(src)?;
        let log_format = match src.get("LOG_FORMAT") {
            None => LogFormat::Text,
            Some(v) => LogFormat::parse(&v)
                .ok_or_else(|| invalid("LOG_FORMAT", &v, "must be text or json"))?,
        };
        let discord_api_base = match src.get("DISCORD_API_BASE") {
            None => crate::channels::discord::DEFAULT_API_BASE.to_owned(),
            Some(v) => crate::channels::discord::parse_api_base(&v)
                .map_err(|reason| invalid("DISCORD_API_BASE", &v, reason))?,
        };
        Ok(Config {
            log_format,
            discord_bot_token: src.get("DISCORD_BOT_TOKEN").map(Secret),
            discord_api_base,
            auto_register_main_jid,
            assistant_name,
            main_group_folder,
            timezone,
            max_concurrent_agents,
            agent_runner,
            container_runtime,
            container_image: src
                .get("CONTAINER_IMAGE")
                .unwrap_or_else(|| "rust-claw-codex-agent:latest".to_owned()),
            container_network,
            container_pids_limit,
            container_memory,
            container_cpus,
            agent_turn_timeout_ms,
            codex_bin: src
                .get("CODEX_BIN")
                .map(|v| expand_home(&v, &home))
                .unwrap_or_else(|| PathBuf::from("codex")),
            codex_auth_dir: src
                .get("CODEX_AUTH_DIR")
                .map(|v| expand_home(&v, &home))
                .unwrap_or_else(|| home.join(".codex")),
            codex_config: src.get("CODEX_CONFIG").map(|v| expand_home(&v, &home)),
            codex_model: src.get("CODEX_MODEL"),
            codex_reasoning_effort: codex_effort,
            idle_timeout_ms,
            agent_retry_base_ms,
            agent_max_retries,
            ipc_limits,
            retention,
        })
    }

    /// The default trigger of non-main groups: `@<ASSISTANT_NAME>`.
    pub(crate) fn default_trigger(&self) -> String {
        format!("@{}", self.assistant_name)
    }
}

fn parse_number(
    src: &Source,
    var: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match src.get(var) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(invalid(
                var,
                &v,
                format!("must be a whole number from {min} to {max}"),
            )),
        },
    }
}

/// A byte size as podman and docker take it: digits, optionally one unit letter.
fn is_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['b', 'k', 'm', 'g', 'B', 'K', 'M', 'G']);
    !digits.is_empty()
        && v.len() - digits.len() <= 1
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|n| n > 0)
}

/// `~/x` → `$HOME/x`, as a shell would (`.env` files are not read by a shell).
fn expand_home(value: &str, home: &Path) -> PathBuf {
    match value.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if value == "~" => home.to_owned(),
        None => PathBuf::from(value),
    }
}

/// The system's timezone: `$TZ`, then `/etc/timezone`, then the `/etc/localtime` link,
/// else UTC.
fn system_timezone() -> Tz {
    let from_tz = std::env::var("TZ")
        .ok()
        .map(|v| v.trim_start_matches(':').to_owned());
    let from_file = || {
        std::fs::read_to_string("/etc/timezone")
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let from_link = || {
        std::fs::read_link("/etc/localtime").ok().and_then(|p| {
            let s = p.to_string_lossy().into_owned();
            s.split_once("zoneinfo/").map(|(_, name)| name.to_owned())
        })
    };
    [from_tz, from_file(), from_link()]
        .into_iter()
        .flatten()
        .find_map(|name| name.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &[(&str, &str)]) -> Source {
        Source {
            use_env: false,
            file: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    // These tests only use variables unlikely to be set in a test environment; the
    // file map stands in for the environment.
    #[test]
    fn defaults() {
        let c = Config::from_source(&src(&[])).unwrap();
        assert_eq!(c.assistant_name, "Andy");
        assert_eq!(c.default_trigger(), "@Andy");
        assert_eq!(c.main_group_folder.as_str(), "main");
        assert_eq!(c.max_concurrent_agents, 5);
        assert_eq!(c.agent_runner, RunnerKind::Container);
        assert!(c.discord_bot_token.is_none());
        assert_eq!(c.agent_turn_timeout_ms, 1_800_000);
        assert_eq!(
            (c.container_memory.as_str(), c.container_cpus.as_str()),
            ("2g", "2")
        );
        assert_eq!(c.container_network, None);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("TIMEZONE", "Mars/Olympus"),
            ("MAX_CONCURRENT_AGENTS", "five"),
            ("MAX_CONCURRENT_AGENTS", "0"),
            ("IDLE_TIMEOUT_MS", "-1"),
            ("AGENT_RUNNER", "vm"),
            ("CONTAINER_RUNTIME", "lxc"),
            ("MAIN_GROUP_FOLDER", "../x"),
            ("AUTO_REGISTER_MAIN_JID", "123"),
            ("ASSISTANT_NAME", "Andy Bot"),
            ("CODEX_REASONING_EFFORT", "max"),
            ("DISCORD_API_BASE", "https://discord.com"),
            ("CONTAINER_MEMORY", "lots"),
            ("CONTAINER_CPUS", "-1"),
            ("CONTAINER_NETWORK", "host;rm"),
            ("CONTAINER_PIDS_LIMIT", "1"),
            ("AGENT_TURN_TIMEOUT_MS", "5"),
            ("LOG_FORMAT", "xml"),
        ] {
            let e = Config::from_source(&src(&[(var, value)])).unwrap_err();
            assert!(e.to_string().starts_with(&format!("invalid {var}=")), "{e}");
        }
    }

    #[test]
    fn env_example_documents_every_variable() {
        let example = include_str!("../.env.example");
        for (var, _) in VARIABLES {
            assert!(
                example.contains(&format!("\n{var}=")),
                ".env.example lacks {var}"
            );
        }
        // And it is itself a valid configuration.
        let file = example
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| !k.starts_with('#'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let c = Config::from_source(&Source {
            use_env: false,
            file,
        })
        .unwrap();
        assert!(c.codex_auth_dir.ends_with(".codex") && !c.codex_auth_dir.starts_with("~"));
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Config::from_source(&src(&[("DISCORD_BOT_TOKEN", "very-secret")])).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
        assert_eq!(c.discord_bot_token.unwrap().expose(), "very-secret");
    }
}
