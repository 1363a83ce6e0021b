//! Where a command's output goes and where its questions are answered: this process's
//! terminal, or, when the command runs inside the agent ([`crate::agent`]), the `hearth`
//! process that asked for it, over the agent's socket.
//!
//! Commands print with [`outln!`] and [`errln!`] instead of `println!`, ask with [`ask`],
//! and never look at standard input themselves. A closed standard output (`hearth … |
//! head`) ends the process quietly instead of panicking.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::{bail, Result};
use tokio::sync::{mpsc, Mutex};

use crate::agent::wire::ToCaller;

tokio::task_local! {
    /// Set while a command runs inside the agent for a caller.
    static CALLER: Arc<Caller>;
}

/// The far end of one agent connection, as a command running inside the agent sees it.
pub struct Caller {
    /// What goes back to the caller (bounded in bytes: a caller that stops reading is
    /// cut off, see [`crate::agent::outbox`]).
    pub to_caller: crate::agent::outbox::CallerTx,
    /// Lines the caller sends: answers to [`ask`], and a chat's typed lines.
    pub lines: Mutex<mpsc::UnboundedReceiver<String>>,
    /// Whether the caller's standard input is a terminal.
    pub terminal: bool,
    /// The caller draws a full-screen chat (see [`crate::chat::screen`]).
    pub full_screen: bool,
    /// Becomes true when the caller has gone (its end of the socket closed).
    pub gone: tokio::sync::watch::Receiver<bool>,
    /// The client the agent holds, shared by every command it runs.
    pub session: crate::session::Shared,
}

/// Runs `command` with its output and questions going to `caller`.
pub async fn serve<F: std::future::Future>(caller: Arc<Caller>, command: F) -> F::Output {
    CALLER.scope(caller, command).await
}

/// The caller, when running inside the agent.
pub fn caller() -> Option<Arc<Caller>> {
    CALLER.try_with(Arc::clone).ok()
}

/// Prints one line of output (standard output, or the caller's).
pub fn out(line: String) {
    match caller() {
        Some(caller) => {
            let _ = caller.to_caller.send(ToCaller::Out(line));
        }
        None => {
            let width = crate::fit::terminal_width(std::io::stdout().is_terminal());
            write_line(
                &mut std::io::stdout().lock(),
                &crate::fit::fit(&line, width),
            )
        }
    }
}

/// Prints one line of diagnostics (standard error, or the caller's).
pub fn err(line: String) {
    match caller() {
        Some(caller) => {
            let _ = caller.to_caller.send(ToCaller::Err(line));
        }
        None => {
            let width = crate::fit::terminal_width(std::io::stderr().is_terminal());
            write_line(
                &mut std::io::stderr().lock(),
                &crate::fit::fit(&line, width),
            )
        }
    }
}

/// Writes `line` and a newline; a reader that went away (`| head`) ends the process
/// quietly, as a pipe's writer should, instead of a panic.
pub fn write_line(to: &mut impl Write, line: &str) {
    if let Err(e) = writeln!(to, "{line}").and_then(|()| to.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Whether questions can be asked: standard input (the caller's) is a terminal.
pub fn is_terminal() -> bool {
    match caller() {
        Some(caller) => caller.terminal,
        None => std::io::stdin().is_terminal(),
    }
}

/// Resolves when the user wants the command to stop: Ctrl-C in this process, or the
/// caller of the agent gone (it was interrupted).
pub async fn interrupted() {
    match caller() {
        Some(caller) => {
            let mut gone = caller.gone.clone();
            let _ = gone.wait_for(|gone| *gone).await;
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Asks `question` on the terminal and returns the answer line (without its newline).
/// Fails when there is no terminal to ask on.
pub async fn ask(question: &str) -> Result<String> {
    if !is_terminal() {
        bail!("cannot ask {question:?}: standard input is not a terminal");
    }
    match caller() {
        Some(caller) => {
            let _ = caller.to_caller.send(ToCaller::Ask(question.to_string()));
            let mut lines = caller.lines.lock().await;
            match lines.recv().await {
                Some(line) => Ok(line),
                None => bail!("the question went unanswered: the terminal closed"),
            }
        }
        None => {
            let question = question.to_string();
            tokio::task::spawn_blocking(move || read_answer(&question)).await?
        }
    }
}

/// Asks on this process's terminal.
pub fn read_answer(question: &str) -> Result<String> {
    use std::io::BufRead;
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{question} ")?;
    stdout.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `println!` for commands: see the module documentation.
macro_rules! outln {
    () => {
        $crate::console::out(String::new())
    };
    ($($arg:tt)*) => {
        $crate::console::out(format!($($arg)*))
    };
}

/// `eprintln!` for commands: see the module documentation.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::err(format!($($arg)*))
    };
}
