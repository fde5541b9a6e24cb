//! The command line: parse, dispatch, map errors to exit codes.
//!
//! Exit codes: 0 success; 2 invalid input (the message names the flag and the rule);
//! 1 a runtime failure (database, filesystem, ...).

mod chat;
mod groups;
mod output;
mod skills;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::actions::ActionError;
use crate::config::Config;
use crate::model::ValidationError;
use crate::paths::Paths;
use crate::store::{Store, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "rust_claw",
    version,
    about = "A self-hosted personal AI assistant daemon for Discord"
)]
pub struct Cli {
    /// The RustClaw root directory (default: the working directory).
    #[arg(long, global = true, env = "RUST_CLAW_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
}

#[derive(Debug, Args)]
pub struct AgentToolsArgs {
    /// Print the IPC protocol version these tools speak and exit (the daemon checks
    /// the agent image's against its own).
    #[arg(long)]
    pub ipc_version: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// An error as the CLI reports it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The user's input was wrong: exit code 2.
    #[error("{0}")]
    Invalid(String),
    /// Something failed at run time: exit code 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
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
pub struct Context {
    pub paths: Paths,
    pub config: Config,
}

impl Context {
    pub fn open_store(&self) -> Result<Store, CliError> {
        Ok(Store::open(&self.paths.database())?)
    }
}

/// Parses the command line and runs it; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Run));
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

/// Human-readable logs on stderr (journald keeps them). `RUST_LOG` tunes them; the
/// default is `info` for the daemon and `warn` for one-shot admin verbs.
fn init_logging(daemon: bool) {
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Only `bootstrap-main`, `run` and `chat` may start a new root; they say so, and make
/// its `data/` and `groups/` private. Any other verb on a directory without a store
/// is a mistake (a typo in --root): exit 2 naming the path and the fix.
fn check_root(root: &std::path::Path, command: &Command) -> Result<(), CliError> {
    let paths = Paths::new(root);
    let exists = paths.database().exists();
    let creates = matches!(
        command,
        Command::Run | Command::Chat(_) | Command::BootstrapMain(_)
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
    let config = Config::load(&root).map_err(|e| CliError::Invalid(e.to_string()))?;
    check_root(&root, &cli.command)?;
    let ctx = Context {
        paths: Paths::new(root),
        config,
    };
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
        Command::AgentTools(_) => unreachable!("handled above"),
        Command::Chat(a) => chat::chat(&ctx, a),
    }
}
