//! `doctor`: is this root ready to serve? One line per check, each failure with its fix.

use std::io::Write as _;

use clap::Args;

use super::CliError;
use super::output::finished;
use crate::config::{Config, ConfigError};
use crate::doctor::{self, Level};
use crate::paths::Paths;

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Print one JSON object (`{"ok", "checks": [{"name","level","detail","fix"}]}`).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs the checks; exit code 0 only when none failed.
pub(crate) fn doctor(
    paths: &Paths,
    config: &Result<Config, ConfigError>,
    args: DoctorArgs,
) -> Result<(), CliError> {
    let checks = doctor::run_all(paths, config);
    let all_ok = checks.iter().all(|c| c.level != Level::Fail);
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "ok": all_ok, "checks": checks }),
        )
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
    } else {
        (|| {
            for c in &checks {
                let tag = match c.level {
                    Level::Ok => "ok  ",
                    Level::Warn => "warn",
                    Level::Fail => "FAIL",
                };
                writeln!(out, "{tag}  {:<17} {}", c.name, c.detail)?;
                if let Some(fix) = &c.fix {
                    writeln!(out, "      {:<17} fix: {fix}", "")?;
                }
            }
            Ok(())
        })()
    };
    finished(written.and_then(|()| out.flush()))?;
    if all_ok {
        Ok(())
    } else {
        let failed = checks.iter().filter(|c| c.level == Level::Fail).count();
        Err(CliError::Runtime(anyhow::anyhow!(
            "{failed} check(s) failed"
        )))
    }
}
