//! Where log lines go and how they look.
//!
//! Always stderr (journald keeps it under systemd). Human-readable by default,
//! one JSON object per line with `LOG_FORMAT=json`; colours only when stderr is a
//! terminal (and `NO_COLOR` is unset), so files, pipes and the journal get plain text.
//! `RUST_LOG` filters; the default is `info` for the daemon and `warn` for one-shot verbs.
//!
//! Lines carry the fields of the spans they were logged in — `turn{group chat through}`,
//! `task_run{task run group}`, `ipc_request{group request}` — so one grep for a chat,
//! a group or a request id follows it from arrival to reply.

use std::io::IsTerminal;

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LogFormat {
    /// `2026-11-28T09:00:00.000Z  INFO turn{group=main chat=1@discord}: starting a turn`
    #[default]
    Text,
    /// One JSON object per line, with the span fields (`span`, `spans`).
    Json,
}

impl LogFormat {
    /// Parses `LOG_FORMAT` (`text` or `json`).
    pub(crate) fn parse(value: &str) -> Option<LogFormat> {
        match value {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Installs the process's log subscriber (once; later calls do nothing).
pub(crate) fn init(daemon: bool, format: LogFormat) {
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Text => builder.with_ansi(colours_wanted()).try_init(),
    };
}

/// Colours only for a person at a terminal (see <https://no-color.org>).
fn colours_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
