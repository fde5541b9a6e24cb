//! What can go wrong with an agent, and whether retrying can help.
//!
//! [`AgentError::failure`] sorts every error into a [`Failure`]:
//!
//! | error                                              | failure     | what the chat is told        |
//! |----------------------------------------------------|-------------|------------------------------|
//! | no codex login; provider says 401/403              | `Permanent` | log in on the host           |
//! | provider says 400/404/422 (unknown model, bad request) | `Permanent` | check `CODEX_MODEL`/`CODEX_CONFIG` |
//! | usage limit reached                                | `Permanent` | wait for the reset / raise it |
//! | `CODEX_CONFIG` unreadable or invalid (ours or codex's check) | `Permanent` | fix `CODEX_CONFIG`     |
//! | codex binary missing                               | `Permanent` | set `CODEX_BIN` / install    |
//! | runner cannot start until set up (e.g. no image)   | `Permanent` | the runner's own fix         |
//! | a turn ran past `AGENT_TURN_TIMEOUT_MS`            | `Permanent` | ask for less / raise the limit |
//! | network error, 408/429/5xx, codex crash or timeout | `Transient` | retried with back-off        |
//! | the daemon is shutting down                        | `Shutdown`  | nothing (answered after restart) |
//!
//! codex's own classification of a failed turn (`codexErrorInfo`) decides first; the
//! HTTP status quoted in its message is the fallback.
//!
//! A permanent failure reaches the chat at once (retrying cannot fix it); a transient
//! one keeps the orchestrator's back-off.

use super::auth::AuthError;
use super::home::HomeError;
use super::rpc::RpcError;
use super::runner::RunnerError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Login(#[from] AuthError),
    #[error("cannot prepare the agent's codex home: {0}")]
    Home(#[from] HomeError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error("codex {step} failed: {source}{stderr}")]
    Rpc {
        step: &'static str,
        source: RpcError,
        /// codex's last stderr lines, prefixed with a newline, or empty.
        stderr: String,
    },
    #[error("codex did not answer {step} within {secs} s")]
    Timeout { step: &'static str, secs: u64 },
    #[error("codex turn failed: {message}")]
    TurnFailed {
        message: String,
        /// codex's classification of the failure, when it gave one.
        info: Option<CodexErrorInfo>,
    },
    #[error("codex exited during the turn{stderr}")]
    Exited { stderr: String },
    #[error(
        "the turn ran longer than AGENT_TURN_TIMEOUT_MS ({secs} s): it was interrupted and \
         the agent stopped"
    )]
    TurnTimeout { secs: u64 },
    #[error("no turn is running")]
    NoActiveTurn,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The daemon stopped the turn (or the session's start) because it is shutting down.
    #[error("the daemon is shutting down")]
    Shutdown,
}

/// codex's own classification of a failed turn (`codexErrorInfo` in the app-server
/// protocol): a kind such as `unauthorized`, `badRequest`, `modelNotFound`,
/// `serverOverloaded`, or a connection failure with the provider's HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexErrorInfo {
    pub(crate) kind: String,
    pub(crate) http_status: Option<u16>,
}

impl CodexErrorInfo {
    /// Reads `"unauthorized"` or `{"httpConnectionFailed": {"httpStatusCode": 401}}`.
    pub(crate) fn from_json(v: Option<&serde_json::Value>) -> Option<CodexErrorInfo> {
        match v? {
            serde_json::Value::String(kind) => Some(CodexErrorInfo {
                kind: kind.clone(),
                http_status: None,
            }),
            serde_json::Value::Object(map) => {
                let (kind, detail) = map.iter().next()?;
                let http_status = detail
                    .get("httpStatusCode")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok());
                Some(CodexErrorInfo {
                    kind: kind.clone(),
                    http_status,
                })
            }
            _ => None,
        }
    }
}

/// Whether retrying can help (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Only the owner can fix it: `fix` says how, in a sentence.
    Permanent { fix: String },
    /// Worth retrying with back-off.
    Transient,
    /// Not a failure: the daemon is stopping.
    Shutdown,
}

const LOGIN_FIX: &str = "log in on the host with `codex login --device-auth` (or set the API key your CODEX_CONFIG provider names in `env_key`)";
const REQUEST_FIX: &str = "the model provider refused the request: check CODEX_MODEL and the provider settings in CODEX_CONFIG";
const CONFIG_FIX: &str = "codex rejected its configuration: fix the file CODEX_CONFIG names (its messages are in the daemon's log)";
const USAGE_FIX: &str =
    "the account's usage limit is reached: wait for it to reset or raise it with the provider";
const TIMEOUT_FIX: &str = "the turn took longer than AGENT_TURN_TIMEOUT_MS allows: ask for a smaller step, or raise the limit";
const BINARY_FIX: &str = "codex is not installed where CODEX_BIN points: install @openai/codex 0.169.0 or set CODEX_BIN to its path";

impl AgentError {
    pub(super) fn rpc(step: &'static str, source: RpcError, stderr: String) -> AgentError {
        AgentError::Rpc {
            step,
            source,
            stderr,
        }
    }

    /// Whether retrying can help, and if not, what the owner should do.
    pub fn failure(&self) -> Failure {
        let permanent = |fix: &str| Failure::Permanent {
            fix: fix.to_owned(),
        };
        match self {
            AgentError::Shutdown => Failure::Shutdown,
            // Retrying a runaway turn would run away again, for as long each time.
            AgentError::TurnTimeout { .. } => permanent(TIMEOUT_FIX),
            AgentError::Login(AuthError::LoginRequired) => permanent(LOGIN_FIX),
            AgentError::Login(AuthError::Io { .. }) => Failure::Transient,
            AgentError::Home(HomeError::Fragment { .. }) => Failure::Permanent {
                fix: format!("fix CODEX_CONFIG: {self}"),
            },
            AgentError::Home(HomeError::Io { .. }) => Failure::Transient,
            AgentError::Runner(RunnerError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                permanent(BINARY_FIX)
            }
            AgentError::Runner(RunnerError::Setup { fix, .. }) => permanent(fix),
            AgentError::Runner(_) => Failure::Transient,
            AgentError::TurnFailed { message, info } => {
                let kind = info.as_ref().map(|i| i.kind.as_str());
                let status = info
                    .as_ref()
                    .and_then(|i| i.http_status)
                    .or_else(|| provider_status(message));
                match (kind, status) {
                    (Some("unauthorized"), _) | (_, Some(401 | 403)) => permanent(LOGIN_FIX),
                    (Some("badRequest" | "modelNotFound"), _) => permanent(REQUEST_FIX),
                    (Some("usageLimitExceeded"), _) => permanent(USAGE_FIX),
                    (_, Some(408 | 409 | 425 | 429)) => Failure::Transient,
                    (_, Some(400..=499)) => permanent(REQUEST_FIX),
                    _ if is_login_message(message) => permanent(LOGIN_FIX),
                    _ => provider_error_body(message),
                }
            }
            // codex checks its config.toml at start and exits with a message saying so.
            AgentError::Rpc { stderr, .. } | AgentError::Exited { stderr }
                if is_config_message(stderr) =>
            {
                permanent(CONFIG_FIX)
            }
            AgentError::Rpc { .. }
            | AgentError::Timeout { .. }
            | AgentError::Exited { .. }
            | AgentError::NoActiveTurn
            | AgentError::Store(_) => Failure::Transient,
        }
    }

    /// True when the user must log in again.
    pub fn is_login_required(&self) -> bool {
        matches!(self.failure(), Failure::Permanent { fix } if fix == LOGIN_FIX)
    }
}

/// The HTTP status codex quotes in a failed turn's message ("unexpected status 400 …",
/// "status: 401"), if any.
fn provider_status(message: &str) -> Option<u16> {
    let lower = message.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("status") {
        rest = &rest[i + "status".len()..];
        let digits: String = rest
            .trim_start_matches([':', ' ', '='])
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if digits.len() == 3
            && let Ok(code) = digits.parse::<u16>()
            && (100..=599).contains(&code)
        {
            return Some(code);
        }
    }
    None
}

/// The provider's error body, which codex passes on verbatim for some failures
/// (`{"error":{"type":"invalid_request_error","code":…}}`, as OpenAI's API writes it).
fn provider_error_body(message: &str) -> Failure {
    let Ok(body) = serde_json::from_str::<serde_json::Value>(message) else {
        return Failure::Transient;
    };
    let error = &body["error"];
    let permanent = |fix: &str| Failure::Permanent {
        fix: fix.to_owned(),
    };
    match (error["type"].as_str(), error["code"].as_str()) {
        (_, Some("invalid_api_key")) | (Some("authentication_error" | "permission_error"), _) => {
            permanent(LOGIN_FIX)
        }
        (_, Some("insufficient_quota")) => permanent(USAGE_FIX),
        (_, Some("model_not_found")) | (Some("invalid_request_error" | "not_found_error"), _) => {
            permanent(REQUEST_FIX)
        }
        _ => Failure::Transient,
    }
}

fn is_login_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("unauthorized") || m.contains("log in again") || m.contains("not logged in")
}

fn is_config_message(stderr: &str) -> bool {
    let m = stderr.to_ascii_lowercase();
    m.contains("error loading config") || m.contains("config.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(message: &str) -> Failure {
        AgentError::TurnFailed {
            message: message.to_owned(),
            info: None,
        }
        .failure()
    }

    fn info(json: serde_json::Value) -> Failure {
        AgentError::TurnFailed {
            message: "whatever codex says".into(),
            info: CodexErrorInfo::from_json(Some(&json)),
        }
        .failure()
    }

    #[test]
    fn codexs_own_classification_decides_first() {
        use serde_json::json;
        assert!(
            matches!(info(json!("unauthorized")), Failure::Permanent { fix } if fix == LOGIN_FIX)
        );
        assert!(
            matches!(info(json!("badRequest")), Failure::Permanent { fix } if fix == REQUEST_FIX)
        );
        assert!(
            matches!(info(json!("modelNotFound")), Failure::Permanent { fix } if fix == REQUEST_FIX)
        );
        assert_eq!(info(json!("serverOverloaded")), Failure::Transient);
        assert_eq!(info(json!("internalServerError")), Failure::Transient);
        assert!(matches!(
            info(json!({"responseStreamConnectionFailed": {"httpStatusCode": 403}})),
            Failure::Permanent { fix } if fix == LOGIN_FIX
        ));
        assert_eq!(
            info(json!({"httpConnectionFailed": {"httpStatusCode": 503}})),
            Failure::Transient
        );
        assert_eq!(
            info(json!({"httpConnectionFailed": {"httpStatusCode": null}})),
            Failure::Transient
        );
    }

    #[test]
    fn provider_statuses_sort_into_permanent_and_transient() {
        assert!(
            matches!(turn("unexpected status 401 Unauthorized: {}"), Failure::Permanent { fix } if fix == LOGIN_FIX)
        );
        assert!(
            matches!(turn("unexpected status 400 Bad Request: unknown model"), Failure::Permanent { fix } if fix == REQUEST_FIX)
        );
        assert!(matches!(
            turn("http status: 404"),
            Failure::Permanent { .. }
        ));
        assert_eq!(
            turn("unexpected status 429 Too Many Requests"),
            Failure::Transient
        );
        assert_eq!(
            turn("unexpected status 500 Internal Server Error"),
            Failure::Transient
        );
        assert_eq!(
            turn("stream disconnected before completion"),
            Failure::Transient
        );
        assert!(matches!(
            turn("401 Unauthorized: log in again"),
            Failure::Permanent { .. }
        ));
    }

    #[test]
    fn setup_errors_are_permanent_and_crashes_transient() {
        let missing = AgentError::Runner(RunnerError::Spawn {
            program: "codex".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert!(matches!(missing.failure(), Failure::Permanent { fix } if fix == BINARY_FIX));
        let setup = AgentError::Runner(RunnerError::Setup {
            message: "image missing".into(),
            fix: "build it".into(),
        });
        assert_eq!(
            setup.failure(),
            Failure::Permanent {
                fix: "build it".into()
            }
        );
        let crash = AgentError::Exited {
            stderr: "\ncodex stderr:\nthread 'main' panicked".into(),
        };
        assert_eq!(crash.failure(), Failure::Transient);
        let bad_config = AgentError::Exited {
            stderr: "\ncodex stderr:\nError loading config.toml: unknown variant".into(),
        };
        assert!(matches!(bad_config.failure(), Failure::Permanent { fix } if fix == CONFIG_FIX));
        assert_eq!(AgentError::Shutdown.failure(), Failure::Shutdown);
        assert!(AgentError::Login(AuthError::LoginRequired).is_login_required());
    }
}
