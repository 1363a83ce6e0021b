//! Shell completions and the man page, generated from the clap grammar.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Prints completions for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut command = Cli::command();
    // Into memory first: clap_complete panics when its writer fails (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "hearth", &mut script);
    write_out(&script)
}

/// Prints the man page (roff) to stdout, or with `out_dir` writes one page per command
/// there (the pages the main page's SEE ALSO names).
pub fn man(out_dir: Option<&std::path::Path>) -> Result<()> {
    match out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            write_out(&page)?;
        }
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

/// Writes `bytes` to standard output; a reader that went away (`| head`) ends the
/// process quietly.
fn write_out(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}
