//! The command line: parse, dispatch, map errors to exit codes.
//!
//! Exit codes: 0 success; 2 invalid input (the message names the flag and the rule);
//! 1 a runtime failure (database, filesystem, ...).

mod chat;
mod completions;
mod doctor;
mod groups;
mod import;
mod output;
mod service;
mod skills;
mod status;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::actions::ActionError;
use crate::config::Config;
use crate::logging::LogFormat;
use crate::model::ValidationError;
use crate::paths::Paths;
use crate::store::{Store, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "rust_claw",
    version,
    about = "A self-hosted personal AI assistant daemon for Discord"
)]
pub(crate) struct Cli {
    /// The RustClaw root directory (default: the working directory).
    #[arg(long, global = true, env = "RUST_CLAW_ROOT", value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon (channels, IPC watcher, scheduler, agents) until SIGTERM/SIGINT.
    Run,
    /// Register the main group: the chat that answers every message and administers the rest.
    BootstrapMain(groups::BootstrapMainArgs),
    /// Register another chat as a group.
    RegisterGroup(groups::RegisterGroupArgs),
    /// List registered groups.
    ListGroups(ListArgs),
    /// Unregister a chat. Its folder, tasks and history stay on disk; its active tasks are paused.
    UnregisterGroup(groups::UnregisterGroupArgs),
    /// Create a scheduled task.
    CreateTask(tasks::CreateTaskArgs),
    /// List scheduled tasks.
    ListTasks(tasks::ListTasksArgs),
    /// Stop a task's future runs, keeping its schedule.
    PauseTask(tasks::TaskIdArgs),
    /// Resume a paused task; its next run is computed from now.
    ResumeTask(tasks::TaskIdArgs),
    /// Delete a task and its run history.
    CancelTask(tasks::TaskIdArgs),
    /// Show a task's recent runs.
    TaskRuns(tasks::TaskRunsArgs),
    /// List, enable or disable a group's skills.
    Skills(skills::SkillsArgs),
    /// The MCP server (stdio) an agent uses to reach the host (env RUST_CLAW_IPC_DIR).
    AgentTools(AgentToolsArgs),
    /// Chat with a group's assistant in this terminal (runs the whole pipeline here).
    Chat(chat::ChatArgs),
    /// What the daemon on this root is doing: agents, queued work, next runs, errors.
    Status(status::StatusArgs),
    /// Install, remove or inspect RustClaw as a systemd service.
    Service(service::ServiceArgs),
    /// Check that this root can serve (config, store, runtime, login, Discord, disk).
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff) to stdout: `rust_claw man > rust_claw.1`.
    Man,
    /// Import groups, tasks, memory and the sender allowlist from a NanoClaw v1 install.
    ImportNanoclaw(import::ImportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AgentToolsArgs {
    /// Print the IPC protocol version these tools speak and exit (the daemon checks
    /// the agent image's against its own).
    #[arg(long)]
    pub(crate) ipc_version: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// An error as the CLI reports it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The user's input was wrong: exit code 2.
    #[error("{0}")]
    Invalid(String),
    /// Something failed at run time: exit code 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl CliError {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Invalid(_) => ExitCode::from(2),
            CliError::Runtime(_) => ExitCode::from(1),
        }
    }
}

/// `schedule_value` → `--schedule-value`: validation errors name the flag the user typed.
fn flag(field: &str) -> String {
    if field.starts_with("--") {
        field.to_owned()
    } else {
        format!("--{}", field.replace('_', "-"))
    }
}

impl From<ValidationError> for CliError {
    fn from(e: ValidationError) -> Self {
        CliError::Invalid(format!("invalid {}: {}", flag(&e.field), e.reason))
    }
}

impl From<ActionError> for CliError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Invalid(v) => v.into(),
            ActionError::Store(s) => CliError::Runtime(s.into()),
            other => CliError::Invalid(other.to_string()),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Runtime(e.into())
    }
}

/// What every verb gets: the root's paths and its configuration.
pub(crate) struct Context {
    pub(crate) paths: Paths,
    pub(crate) config: Config,
}

impl Context {
    pub(crate) fn open_store(&self) -> Result<Store, CliError> {
        Ok(Store::open(&self.paths.database())?)
    }
}

/// Parses the command line and runs it; the process exit code.
pub fn main() -> ExitCode {
    // Private by construction: the store, .env copies, group folders, IPC files and
    // anything our agents write are readable by this user only (`doctor` checks).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                CliError::Invalid(msg) => eprintln!("error: {msg}"),
                CliError::Runtime(err) => eprintln!("error: {err:#}"),
            }
            e.exit_code()
        }
    }
}

/// Only `bootstrap-main`, `run`, `chat` and `import-nanoclaw` may start a new root; they
/// say so, and make its `data/` and `groups/` private. Any other verb on a directory
/// without a store is a mistake (a typo in --root): exit 2 naming the path and the fix.
fn check_root(root: &std::path::Path, command: &Command) -> Result<(), CliError> {
    let paths = Paths::new(root);
    let exists = paths.database().exists();
    let creates = matches!(
        command,
        Command::Run | Command::Chat(_) | Command::BootstrapMain(_) | Command::ImportNanoclaw(_)
    );
    if !creates {
        if exists {
            return Ok(());
        }
        return Err(CliError::Invalid(format!(
            "{} is not a RustClaw root (no {}); pass the right --root (or RUST_CLAW_ROOT), or create one with `rust_claw --root {} bootstrap-main --jid <channel id>@discord`",
            root.display(),
            paths.database().display(),
            root.display()
        )));
    }
    if !exists {
        eprintln!("creating a new RustClaw root at {}", root.display());
    }
    for dir in [paths.root().join("data"), paths.groups_dir()] {
        crate::safe_dir::ensure_private_dir(&dir).map_err(|e| {
            CliError::Runtime(anyhow::anyhow!("cannot create {}: {e}", dir.display()))
        })?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), CliError> {
    // Runs on the agent's side: it needs no root, configuration or store.
    if let Command::AgentTools(a) = &cli.command {
        if a.ipc_version {
            println!("{}", crate::agent_tools::IPC_VERSION);
            return Ok(());
        }
        let format = std::env::var("LOG_FORMAT").ok();
        let format = format
            .as_deref()
            .and_then(LogFormat::parse)
            .unwrap_or_default();
        crate::logging::init(false, format);
        // A bad environment is a configuration error (exit 2), not a runtime failure.
        let tools = crate::agent_tools::AgentTools::from_env()
            .map_err(|e| CliError::Invalid(format!("agent-tools: {e:#}")))?;
        return crate::agent_tools::serve_stdio(tools).map_err(CliError::Runtime);
    }
    let root = match cli.root {
        Some(r) => r,
        None => std::env::current_dir()
            .map_err(|e| anyhow::anyhow!("cannot read the working directory: {e}"))?,
    };
    // Resolved once: everything later (the watcher's paths included) is absolute, so a
    // relative --root means the same directory whatever the working directory becomes.
    let root = std::path::absolute(&root)
        .map_err(|e| CliError::Invalid(format!("invalid --root {}: {e}", root.display())))?;
    let loaded = Config::load(&root);
    let paths = Paths::new(&root);
    match cli.command {
        // Needs neither a valid configuration nor a root.
        Command::Completions(a) => return completions::completions(a),
        Command::Man => return completions::man(),
        // Reports an invalid configuration instead of stopping at it; needs no store.
        Command::Doctor(a) => {
            let format = loaded.as_ref().map(|c| c.log_format).unwrap_or_default();
            crate::logging::init(false, format);
            return doctor::doctor(&paths, &loaded, a);
        }
        _ => {}
    }
    let config = loaded.map_err(|e| CliError::Invalid(e.to_string()))?;
    crate::logging::init(matches!(cli.command, Command::Run), config.log_format);
    // A unit may be written (or removed) before the root has a store.
    if !matches!(cli.command, Command::Service(_)) {
        check_root(&root, &cli.command)?;
    }
    let ctx = Context { paths, config };
    match cli.command {
        Command::Run => crate::daemon::run(&ctx.paths, &ctx.config).map_err(CliError::Runtime),
        Command::BootstrapMain(a) => groups::bootstrap_main(&ctx, a),
        Command::RegisterGroup(a) => groups::register(&ctx, a),
        Command::ListGroups(a) => groups::list(&ctx, a),
        Command::UnregisterGroup(a) => groups::unregister(&ctx, a),
        Command::CreateTask(a) => tasks::create(&ctx, a),
        Command::ListTasks(a) => tasks::list(&ctx, a),
        Command::PauseTask(a) => tasks::pause(&ctx, a),
        Command::ResumeTask(a) => tasks::resume(&ctx, a),
        Command::CancelTask(a) => tasks::cancel(&ctx, a),
        Command::TaskRuns(a) => tasks::runs(&ctx, a),
        Command::Skills(a) => skills::run(&ctx, a),
        Command::AgentTools(_) | Command::Doctor(_) | Command::Completions(_) | Command::Man => {
            unreachable!("handled above")
        }
        Command::Chat(a) => chat::chat(&ctx, a),
        Command::Status(a) => status::status(&ctx, a),
        Command::Service(a) => service::run(&ctx, a),
        Command::ImportNanoclaw(a) => import::import(&ctx, a),
    }
}
