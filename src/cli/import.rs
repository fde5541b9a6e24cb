//! `import-nanoclaw`: move a NanoClaw v1 install over (see [`crate::nanoclaw`]).

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::output::finished;
use super::{CliError, Context};
use crate::nanoclaw::{self, Options, Outcome};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The NanoClaw directory (holding store/messages.db, data/ and groups/).
    #[arg(long, value_name = "DIR")]
    pub(crate) from: PathBuf,
    /// NanoClaw's sender allowlist (default: ~/.config/nanoclaw/sender-allowlist.json).
    #[arg(long, value_name = "FILE")]
    pub(crate) allowlist: Option<PathBuf>,
    /// Report what would be imported, changing nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn import(ctx: &Context, args: ImportArgs) -> Result<(), CliError> {
    if !args.from.is_dir() {
        return Err(CliError::Invalid(format!(
            "invalid --from {}: not a directory",
            args.from.display()
        )));
    }
    let report = nanoclaw::run(
        &ctx.paths,
        &ctx.config,
        &Options {
            from: args.from,
            allowlist: args.allowlist,
            allowlist_target: None,
            dry_run: args.dry_run,
        },
    )?;
    let mut out = std::io::stdout().lock();
    if args.json {
        return finished(
            serde_json::to_writer(&mut out, &report)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out)),
        );
    }
    let written = (|| {
        if report.dry_run {
            writeln!(out, "dry run: nothing was changed")?;
        }
        for i in &report.items {
            let what = match (i.outcome, report.dry_run) {
                (Outcome::Imported, false) => "imported",
                (Outcome::Imported, true) => "would import",
                (Outcome::Mapped, false) => "mapped",
                (Outcome::Mapped, true) => "would map",
                (Outcome::Present, _) => "present",
                (Outcome::Skipped, _) => "skipped",
            };
            writeln!(out, "{what:<12} {:<9} {}: {}", i.kind, i.source, i.detail)?;
        }
        let count = |o| report.items.iter().filter(|i| i.outcome == o).count();
        writeln!(
            out,
            "\n{} imported, {} mapped, {} already present, {} skipped",
            count(Outcome::Imported),
            count(Outcome::Mapped),
            count(Outcome::Present),
            count(Outcome::Skipped)
        )
    })();
    finished(written)
}
