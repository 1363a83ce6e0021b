//! Shell completions and the man page, generated from the clap grammar.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Prints completions for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "hearth", &mut std::io::stdout());
    Ok(())
}

/// Prints the man page (roff) to stdout, or with `out_dir` writes one page per command
/// there (the pages the main page's SEE ALSO names).
pub fn man(out_dir: Option<&std::path::Path>) -> Result<()> {
    match out_dir {
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            let pages = std::fs::read_dir(dir)?.count();
            outln!(
                "Wrote {pages} man pages into {}: e.g. `man -l {}/hearth.1`",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(())
}
