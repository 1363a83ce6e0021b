//! Shell completions and the man page, generated from the clap grammar.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;

/// Prints completions for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "hearth", &mut std::io::stdout());
    Ok(())
}

/// Prints the man page (roff) to stdout.
pub fn man() -> Result<()> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(())
}
