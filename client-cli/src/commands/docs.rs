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
            clap_mangen::Man::new(man_command()).render(&mut page)?;
            write_out(&page)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(man_command(), dir)
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

/// The client's `hearth relay …` pages would be `hearth-relay(1)` and
/// `hearth-relay-set-address(1)`: the relay's own pages, from the hearth-relay package,
/// which one machine may have installed too. They are `hearth-client-relay(1)` and
/// `hearth-client-relay-set-address(1)` instead; what they show to type stays `hearth
/// relay …`.
const RELAY_PAGE: &str = "hearth-client-relay";

/// The grammar the man pages are written from: [`Cli`], with the `relay` command's pages
/// named [`RELAY_PAGE`].
fn man_command() -> clap::Command {
    // No pages for `help` (as clap_mangen::generate_to does it, but before the build).
    let mut command = Cli::command().disable_help_subcommand(true);
    // Builds the tree first, so that usage lines name the real command (`hearth relay`).
    command.build();
    command.mut_subcommand("relay", |relay| {
        // The parent's page names each command's page after the command's name.
        let mut relay = relay
            .name(RELAY_PAGE.trim_start_matches("hearth-"))
            .display_name(RELAY_PAGE);
        let subs: Vec<String> = relay
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for sub in subs {
            relay = relay.mut_subcommand(&sub, |s| s.display_name(format!("{RELAY_PAGE}-{sub}")));
        }
        relay
    })
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
