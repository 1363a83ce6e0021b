//! `hearth`: the command-line client of the hearth family messenger.
//!
//! Map: [`cli`] is the grammar, [`commands`] carries each command out over `hearth-core`,
//! [`chat`] is the interactive mode, [`demo`] the one-process demonstration, [`error`]
//! turns failures into one-line messages that say what to do, [`inert`] makes what others
//! wrote safe to print.
#![forbid(unsafe_code)]

#[macro_use]
mod console;
mod agent;
mod chat;
mod cli;
mod commands;
mod demo;
mod error;
mod fit;
mod inert;
mod output;
mod passphrase;
mod session;
mod tui;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `--help` and `--version` are "errors" that print to stdout and succeed.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(error::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let cli = match text_from_stdin(cli) {
        Ok(cli) => cli,
        Err(err) => {
            error::print(false, &error::render(&err), error::EXIT_ERROR);
            return ExitCode::from(error::EXIT_ERROR);
        }
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(error::EXIT_ERROR);
        }
    };
    ExitCode::from(runtime.block_on(dispatch(cli)))
}

/// Runs the command here or in the profile's agent; returns the exit code.
async fn dispatch(cli: cli::Cli) -> u8 {
    let json = cli.global.json;
    if let Some(code) = through_agent(&cli).await {
        return code;
    }
    let global = &cli.global;
    let result = match cli.command {
        cli::Command::Agent(command) => commands::agent(global, command).await,
        cli::Command::Lock => commands::lock(global).await,
        _ => commands::run(cli).await,
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            let code = error::exit_code(&err);
            error::print_about(json, &error::render(&err), code, error::room(&err).as_ref());
            code
        }
    }
}

/// Runs the command in the profile's agent when it goes there (see [`agent::route`]);
/// `None` when it runs in this process. A command that needs the store to itself stops
/// the agent first.
async fn through_agent(cli: &cli::Cli) -> Option<u8> {
    let dir = session::profile_dir(&cli.global);
    match agent::route(&cli.command) {
        agent::Route::Here => None,
        agent::Route::HereAfterLock => {
            let _ = agent::caller::lock(&dir).await;
            None
        }
        agent::Route::Agent => {
            let off = cli.global.no_agent
                || std::env::var(agent::NO_AGENT_ENV).is_ok_and(|v| v == "1" || v == "true")
                // Without a profile the command explains how to make one.
                || !hearth_core::Profile::exists(&dir)
                // Unix socket paths are short (108 bytes on Linux).
                || agent::socket_path(&dir).as_os_str().len() > 100;
            if off {
                return None;
            }
            let args: Option<Vec<String>> = std::env::args_os()
                .skip(1)
                .map(|arg| arg.into_string().ok())
                .collect();
            let mut args = args?;
            // `send ROOM -`: the text read here from standard input goes instead.
            if let cli::Command::Send { text, .. } = &cli.command {
                if let Some(dash) = args.iter().rposition(|a| a == "-") {
                    args[dash] = text.clone();
                }
            }
            // The agent runs elsewhere: a file's path is made absolute here.
            let path = match &cli.command {
                cli::Command::SendFile { path, .. } => Some(path.clone()),
                cli::Command::Save { dir, .. } => {
                    Some(dir.clone().unwrap_or_else(|| std::path::PathBuf::from(".")))
                }
                _ => None,
            };
            if let Some(path) = path {
                let absolute = std::path::absolute(&path)
                    .ok()?
                    .into_os_string()
                    .into_string()
                    .ok()?;
                match args.iter().rposition(|a| std::path::Path::new(a) == path) {
                    Some(at) => args[at] = absolute,
                    // `save ID` without a directory: the caller's own.
                    None => args.push(absolute),
                }
            }
            Some(
                match agent::caller::run(&cli.global, args, full_screen(&cli.command)).await {
                    Ok(code) => code,
                    Err(err) => {
                        let code = error::exit_code(&err);
                        error::print(cli.global.json, &error::render(&err), code);
                        code
                    }
                },
            )
        }
    }
}

/// Whether a chat draws the full-screen UI: on a terminal (standard input and output),
/// one that can draw (`TERM` not `dumb`), unless `--plain`.
fn full_screen(command: &cli::Command) -> bool {
    use std::io::IsTerminal;
    matches!(command, cli::Command::Chat { plain: false, .. })
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
}

/// `hearth send ROOM -` sends standard input (a message of several lines, or one made by
/// a script); refused when empty, or when standard input is a terminal (nothing would
/// say when to stop).
fn text_from_stdin(mut cli: cli::Cli) -> anyhow::Result<cli::Cli> {
    use std::io::{IsTerminal, Read};
    if let cli::Command::Send { text, .. } = &mut cli.command {
        if text == "-" {
            if std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "`-` reads the message from standard input: pipe it in, e.g. `echo hi | hearth send ROOM -`"
                );
            }
            let mut read = String::new();
            std::io::stdin()
                .take(MAX_STDIN_MESSAGE as u64 + 1)
                .read_to_string(&mut read)?;
            if read.len() > MAX_STDIN_MESSAGE {
                anyhow::bail!(
                    "the message on standard input is longer than {MAX_STDIN_MESSAGE} bytes"
                );
            }
            let read = read.trim_end_matches(['\r', '\n']);
            if read.trim().is_empty() {
                anyhow::bail!("nothing to send: standard input was empty");
            }
            *text = read.to_string();
        }
    }
    Ok(cli)
}

/// The longest message `send ROOM -` reads, in bytes.
const MAX_STDIN_MESSAGE: usize = 64 * 1024;

/// Logs go to standard error, and only when asked for: `-v` (warnings), `-vv` (more), or
/// `RUST_LOG`. The agent logs at info level into its log file.
fn init_logging(cli: &cli::Cli) {
    let default = match cli.global.verbose {
        0 if matches!(
            cli.command,
            cli::Command::Agent(cli::AgentCommand::Run { .. })
        ) =>
        {
            "info"
        }
        0 => "off",
        1 => "warn",
        2 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}
