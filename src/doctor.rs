//! `rust_claw doctor`: checks that a root can serve, each with the fix when it cannot.
//!
//! Read-only: nothing here creates, migrates or repairs anything, so it is safe while
//! the daemon runs and useful while it is down. Secrets are looked at, never printed.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::agent::protocol::CODEX_VERSION;
use crate::config::{Config, ConfigError, RunnerKind};
use crate::paths::Paths;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Ok,
    /// Not wrong, or not checkable now (e.g. Discord unreachable); does not fail doctor.
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) level: Level,
    pub(crate) detail: String,
    /// What to do about it (absent when all is well).
    pub(crate) fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Runs every check for the root at `paths`.
pub(crate) fn run_all(paths: &Paths, config: &Result<Config, ConfigError>) -> Vec<Check> {
    let mut checks = vec![check_root(paths)];
    let config = match config {
        Ok(c) => {
            checks.push(ok(
                "config",
                format!(
                    "valid; timezone {}, agents run on the {} runner",
                    c.timezone,
                    runner_name(c)
                ),
            ));
            c
        }
        Err(e) => {
            checks.push(fail(
                "config",
                e.to_string(),
                format!(
                    "fix the variable in {} or the environment",
                    paths.env_file().display()
                ),
            ));
            checks.extend(check_store(paths));
            checks.push(check_daemon(paths));
            return checks;
        }
    };
    checks.extend(check_store(paths));
    checks.extend(check_modes(paths));
    match config.agent_runner {
        RunnerKind::Container => checks.extend(check_container(config)),
        RunnerKind::Host => checks.push(check_host_codex(config)),
    }
    checks.push(check_login(config));
    checks.extend(check_discord(config));
    checks.push(check_disk(paths));
    checks.push(check_daemon(paths));
    checks
}

fn runner_name(c: &Config) -> &'static str {
    match c.agent_runner {
        RunnerKind::Host => "host",
        RunnerKind::Container => "container",
    }
}

fn check_root(paths: &Paths) -> Check {
    match std::fs::metadata(paths.root()) {
        Ok(m) if m.is_dir() => ok("root", paths.root().display().to_string()),
        Ok(_) => fail(
            "root",
            format!("{} is not a directory", paths.root().display()),
            "pass --root <dir> (or set RUST_CLAW_ROOT)",
        ),
        Err(e) => fail(
            "root",
            format!("{}: {e}", paths.root().display()),
            "create it, or pass --root <dir>",
        ),
    }
}

/// The store opens read-only, passes SQLite's quick check, and its schema is current.
fn check_store(paths: &Paths) -> Vec<Check> {
    use rusqlite::OpenFlags;
    let db = paths.database();
    if !db.exists() {
        return vec![warn(
            "store",
            format!("{} does not exist yet", db.display()),
            "it is created by `rust_claw run` or any admin verb, e.g. `rust_claw bootstrap-main`",
        )];
    }
    let conn = match rusqlite::Connection::open_with_flags(
        &db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        Err(e) => {
            return vec![fail(
                "store",
                format!("cannot open {}: {e}", db.display()),
                "check the file's owner and mode (the daemon's user must read and write it)",
            )];
        }
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let quick: Result<String, _> = conn.query_row("PRAGMA quick_check", [], |r| r.get(0));
    let store = match quick {
        Ok(s) if s == "ok" => ok(
            "store",
            format!("{} opens and passes SQLite's quick check", db.display()),
        ),
        Ok(s) => fail(
            "store",
            format!("{} is damaged: {s}", db.display()),
            "stop the daemon, keep a copy, and restore from a backup (or `sqlite3 messages.db .recover`)",
        ),
        Err(e) => fail(
            "store",
            format!("cannot read {}: {e}", db.display()),
            "check the file's owner and mode",
        ),
    };
    let version: rusqlite::Result<i64> = conn.query_row("PRAGMA user_version", [], |r| r.get(0));
    let migrations = match version {
        Ok(v) if v == crate::store::SCHEMA_VERSION => {
            ok("migrations", format!("schema version {v} (current)"))
        }
        Ok(v) if v < crate::store::SCHEMA_VERSION => warn(
            "migrations",
            format!(
                "schema version {v}; this build writes {}",
                crate::store::SCHEMA_VERSION
            ),
            "applied automatically on the next `rust_claw run`",
        ),
        Ok(v) => fail(
            "migrations",
            format!(
                "schema version {v} is newer than this build ({})",
                crate::store::SCHEMA_VERSION
            ),
            "upgrade rust_claw to the version that wrote this store",
        ),
        Err(e) => fail(
            "migrations",
            format!("cannot read the schema version: {e}"),
            "check the store file",
        ),
    };
    vec![store, migrations]
}

/// Secrets and history stay private to the daemon's user.
fn check_modes(paths: &Paths) -> Vec<Check> {
    let mut open = Vec::new();
    let candidates = [
        (paths.env_file(), 0o600),
        (paths.store_dir(), 0o700),
        (paths.database(), 0o600),
        (paths.root().join("data"), 0o700),
    ];
    for (path, want) in candidates {
        // lstat: a symlink here is reported as what it is, not followed.
        if let Ok(m) = std::fs::symlink_metadata(&path)
            && m.permissions().mode() & 0o077 != 0
        {
            open.push(format!("chmod {want:o} {}", path.display()));
        }
    }
    if open.is_empty() {
        vec![ok(
            "file modes",
            ".env, store/ and data/ are private to their owner",
        )]
    } else {
        vec![fail(
            "file modes",
            "readable by other users: the token, login and chat history would leak",
            open.join("; "),
        )]
    }
}

/// Runs `program args` with a timeout; (exit ok, stdout+stderr).
fn output(program: &str, args: &[&str], within: Duration) -> Result<(bool, String), String> {
    use std::io::Read as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{program} {}` did not finish within {}s",
                    args.join(" "),
                    within.as_secs()
                ));
            }
        }
    };
    let mut text = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut text);
    }
    Ok((status.success(), text.trim().to_owned()))
}

fn version_matches(text: &str) -> bool {
    text.split_whitespace().any(|w| w == CODEX_VERSION)
}

/// The container CLI `CONTAINER_RUNTIME` resolves to on this machine.
pub(crate) fn resolve_runtime(config: &Config) -> Option<&'static str> {
    use crate::config::ContainerRuntime;
    match config.container_runtime {
        ContainerRuntime::Podman => Some("podman"),
        ContainerRuntime::Docker => Some("docker"),
        ContainerRuntime::Auto => ["podman", "docker"].into_iter().find(|c| on_path(c)),
    }
}

/// Whether `name` is an executable file in a PATH directory.
fn on_path(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).map(|d| d.join(name)).any(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn check_host_codex(c: &Config) -> Check {
    let bin = c.codex_bin.display().to_string();
    match output(&bin, &["--version"], Duration::from_secs(20)) {
        Ok((true, v)) if version_matches(&v) => ok("codex", format!("{bin}: {v}")),
        Ok((true, v)) => warn(
            "codex",
            format!("{bin} is {v:?}, RustClaw is tested with {CODEX_VERSION}"),
            format!("npm install -g @openai/codex@{CODEX_VERSION} (or point CODEX_BIN at it)"),
        ),
        Ok((false, v)) | Err(v) => fail(
            "codex",
            format!("{bin} --version failed: {v}"),
            format!("npm install -g @openai/codex@{CODEX_VERSION}, or set CODEX_BIN to its path"),
        ),
    }
}

fn check_container(c: &Config) -> Vec<Check> {
    let Some(rt) = resolve_runtime(c) else {
        return vec![fail(
            "container runtime",
            "neither podman nor docker is on PATH",
            "apt-get install podman (or set AGENT_RUNNER=host)",
        )];
    };
    let runtime = match output(rt, &["--version"], Duration::from_secs(20)) {
        Ok((true, v)) => ok("container runtime", v),
        Ok((false, v)) | Err(v) => {
            return vec![fail(
                "container runtime",
                format!("{rt} --version failed: {v}"),
                format!("repair the {rt} installation"),
            )];
        }
    };
    let image = &c.container_image;
    let exists = match rt {
        "podman" => output(rt, &["image", "exists", image], Duration::from_secs(20)),
        _ => output(rt, &["image", "inspect", image], Duration::from_secs(20)),
    };
    let build = "build it: see container/ (or set CONTAINER_IMAGE)".to_owned();
    match exists {
        Ok((true, _)) => {}
        Ok((false, _)) => {
            return vec![
                runtime,
                fail("image", format!("{image} is not present in {rt}"), build),
            ];
        }
        Err(e) => return vec![runtime, fail("image", e, build)],
    }
    let codex = match output(
        rt,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "codex",
            "--version",
        ],
        Duration::from_secs(60),
    ) {
        Ok((true, v)) if version_matches(&v) => {
            ok("image", format!("{image} runs codex {CODEX_VERSION}"))
        }
        Ok((true, v)) => fail(
            "image",
            format!("{image} has codex {v:?}, not the pinned {CODEX_VERSION}"),
            format!("rebuild the image with @openai/codex@{CODEX_VERSION}"),
        ),
        Ok((false, v)) | Err(v) => fail(
            "image",
            format!("`{rt} run --rm {image} codex --version` failed: {v}"),
            format!("check that {rt} can run containers here (`{rt} run --rm {image} true`)"),
        ),
    };
    vec![runtime, codex]
}

/// The provider named by `CODEX_CONFIG`, when it is not OpenAI's (no login needed).
fn custom_provider(c: &Config) -> Option<String> {
    let text = std::fs::read_to_string(c.codex_config.as_ref()?).ok()?;
    let toml: toml::Table = text.parse().ok()?;
    let p = toml.get("model_provider")?.as_str()?;
    (p != "openai").then(|| p.to_owned())
}

fn check_login(c: &Config) -> Check {
    if let Some(p) = custom_provider(c) {
        return ok(
            "codex login",
            format!("custom model provider {p:?} configured in CODEX_CONFIG"),
        );
    }
    let fix = crate::agent::auth::LOGIN_REQUIRED.to_owned();
    let path = c.codex_auth_dir.join("auth.json");
    if crate::agent::auth::check_login(&c.codex_auth_dir).is_err() {
        return fail(
            "codex login",
            format!("no usable login in {}", path.display()),
            fix,
        );
    }
    let json: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let expiry = json
        .pointer("/tokens/access_token")
        .and_then(|t| t.as_str())
        .and_then(jwt_expiry);
    match expiry {
        Some(exp) if exp < chrono::Utc::now() => warn(
            "codex login",
            format!(
                "the access token in {} expired at {exp}; codex renews it on the next turn with the refresh token",
                path.display()
            ),
            format!("if turns then fail with \"login required\": {fix}"),
        ),
        Some(exp) => ok(
            "codex login",
            format!("{} (access token valid until {exp})", path.display()),
        ),
        None => ok(
            "codex login",
            format!("{} holds credentials", path.display()),
        ),
    }
}

/// The `exp` claim of a JWT, read without verifying it (we only report it).
fn jwt_expiry(token: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64url(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    chrono::DateTime::from_timestamp(claims.get("exp")?.as_i64()?, 0)
}

fn base64url(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes().filter(|&b| b != b'=') {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn check_discord(c: &Config) -> Vec<Check> {
    let Some(token) = &c.discord_bot_token else {
        return vec![warn(
            "discord",
            "DISCORD_BOT_TOKEN is not set: the daemon runs without Discord",
            "set DISCORD_BOT_TOKEN in .env (Discord Developer Portal → your app → Bot → Reset Token)",
        )];
    };
    let base = c.discord_api_base.as_str();
    match probe_discord(base, token.expose()) {
        Err(ProbeError::Unreachable(e)) => vec![warn(
            "discord",
            format!("cannot reach {base}: {e}"),
            "check the network; the token could not be verified",
        )],
        Err(ProbeError::Rejected(status)) => vec![fail(
            "discord",
            format!("{base} refused the token ({status})"),
            "reset the bot token in the Developer Portal and update DISCORD_BOT_TOKEN",
        )],
        Ok(p) => {
            let token_check = ok("discord", format!("token accepted: bot {:?}", p.bot_name));
            let intent = match p.app_flags {
                Some(f) if f & (MESSAGE_CONTENT | MESSAGE_CONTENT_LIMITED) != 0 => {
                    ok("discord intent", "MESSAGE_CONTENT is enabled")
                }
                Some(_) => fail(
                    "discord intent",
                    "the MESSAGE_CONTENT intent is off: the bot would see empty messages",
                    "Developer Portal → your app → Bot → Privileged Gateway Intents → Message Content Intent",
                ),
                None => warn(
                    "discord intent",
                    "cannot read the application's flags",
                    "check Message Content Intent in the Developer Portal",
                ),
            };
            vec![token_check, intent]
        }
    }
}

/// Application flags: the message-content intent, full or (under 100 servers) limited.
const MESSAGE_CONTENT: u64 = 1 << 18;
const MESSAGE_CONTENT_LIMITED: u64 = 1 << 19;

pub(crate) struct DiscordProbe {
    pub(crate) bot_name: String,
    pub(crate) app_flags: Option<u64>,
}

pub(crate) enum ProbeError {
    Unreachable(String),
    Rejected(u16),
}

/// `GET users/@me` (is the token accepted?) and `GET applications/@me` (its flags).
pub(crate) fn probe_discord(base: &str, token: &str) -> Result<DiscordProbe, ProbeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProbeError::Unreachable(e.to_string()))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ProbeError::Unreachable(e.to_string()))?;
        let get = |path: &str| {
            client
                .get(format!("{base}/v10/{path}"))
                .header("Authorization", format!("Bot {token}"))
                .send()
        };
        let me = get("users/@me")
            .await
            .map_err(|e| ProbeError::Unreachable(e.without_url().to_string()))?;
        if !me.status().is_success() {
            return Err(ProbeError::Rejected(me.status().as_u16()));
        }
        let me = me
            .bytes()
            .await
            .map_err(|e| ProbeError::Unreachable(e.to_string()))?;
        let me: serde_json::Value = serde_json::from_slice(&me).unwrap_or_default();
        let app_flags = match get("applications/@me").await {
            Ok(r) if r.status().is_success() => r
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|a| a.get("flags")?.as_u64()),
            _ => None,
        };
        Ok(DiscordProbe {
            bot_name: me
                .get("username")
                .and_then(|u| u.as_str())
                .unwrap_or("?")
                .to_owned(),
            app_flags,
        })
    })
}

fn check_disk(paths: &Paths) -> Check {
    const LOW: u64 = 1 << 30;
    const CRITICAL: u64 = 200 << 20;
    match nix::sys::statvfs::statvfs(paths.root()) {
        Ok(s) => {
            let free = s.blocks_available() * s.fragment_size();
            let text = format!("{} MiB free on the root's file system", free >> 20);
            if free < CRITICAL {
                fail(
                    "disk space",
                    text,
                    "free space: SQLite and agent containers need room to write",
                )
            } else if free < LOW {
                warn(
                    "disk space",
                    text,
                    "free some space soon (`podman image prune`, old logs)",
                )
            } else {
                ok("disk space", text)
            }
        }
        Err(e) => warn(
            "disk space",
            format!("cannot read: {e}"),
            "check the root's file system",
        ),
    }
}

fn check_daemon(paths: &Paths) -> Check {
    match crate::status::daemon_pid(paths) {
        Some(pid) => ok("daemon", format!("running on this root (pid {pid})")),
        None => ok("daemon", "not running on this root"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_expiry_is_read_from_the_payload() {
        // {"exp":1700000000}
        let payload = "eyJleHAiOjE3MDAwMDAwMDB9";
        let t = jwt_expiry(&format!("h.{payload}.s")).unwrap();
        assert_eq!(t.timestamp(), 1_700_000_000);
        assert!(jwt_expiry("not-a-jwt").is_none());
    }

    #[test]
    fn private_modes_pass_and_open_ones_are_named_with_their_fix() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::write(paths.env_file(), "X=1\n").unwrap();
        std::fs::set_permissions(paths.env_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(check_modes(&paths)[0].level, Level::Ok);
        std::fs::set_permissions(paths.env_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = &check_modes(&paths)[0];
        assert_eq!(c.level, Level::Fail);
        assert!(c.fix.as_deref().unwrap().contains("chmod 600"), "{c:?}");
    }
}
