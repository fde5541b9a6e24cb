//! `completions` and `man`: generated from the same clap definitions as the parser,
//! so they never drift from the real flags.

use clap::{Args, CommandFactory as _, ValueEnum};

use super::output::finished;
use super::{Cli, CliError};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    pub(crate) shell: Shell,
}

/// Writes the completion script for `args.shell` to stdout.
///
/// bash: `rust_claw completions bash > /etc/bash_completion.d/rust_claw`;
/// zsh: into a directory on `$fpath` as `_rust_claw`;
/// fish: `~/.config/fish/completions/rust_claw.fish`.
pub(crate) fn completions(args: CompletionsArgs) -> Result<(), CliError> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rust_claw", &mut out);
    finished(std::io::Write::write_all(
        &mut std::io::stdout().lock(),
        &out,
    ))
}

/// Writes the man page (section 1, roff) to stdout.
pub(crate) fn man() -> Result<(), CliError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| CliError::Runtime(e.into()))?;
    finished(std::io::Write::write_all(
        &mut std::io::stdout().lock(),
        &out,
    ))
}
