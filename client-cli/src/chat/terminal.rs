//! The chat's terminal: a line editor that keeps what the user is typing intact while
//! messages are printed above it (rustyline's external printer), or plain lines when
//! standard input is not a terminal (scripts, tests).
//!
//! The editor puts the terminal in raw mode while it waits for a line, on its own thread,
//! and the chat may end while it waits (`/bye`, an error, a panic): [`Terminal`] saves the
//! terminal's settings before the editor starts and puts them back when it is dropped, and
//! a panic hook does the same before the panic is reported, so the shell gets a working
//! terminal back whichever way the chat ends.

use std::io::{BufRead, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use tokio::sync::mpsc;

/// Prints a line above the input line.
pub type Printer = Box<dyn FnMut(String) + Send>;

/// Lines the user typed, and a printer for everything else. Dropping it restores the
/// terminal.
pub struct Terminal {
    /// Typed lines; closed on end of input (Ctrl-D).
    pub lines: mpsc::UnboundedReceiver<String>,
    /// Prints above the prompt.
    pub print: Printer,
    /// For a full-screen chat in the caller's terminal: where chat lines and views go
    /// instead of `print`.
    pub full_screen: Option<FullScreen>,
    /// Restores the terminal's settings when dropped (after `print`, which it may outlive).
    _restore: Option<Restore>,
}

/// The sinks of a full-screen chat (see [`crate::chat::screen`]).
pub struct FullScreen {
    /// A chat line.
    pub line: Box<dyn FnMut(crate::agent::wire::ChatLine) + Send>,
    /// The view beside the lines.
    pub view: Box<dyn FnMut(crate::agent::wire::ChatView) + Send>,
}

/// Starts reading input on a background thread; inside the agent, the caller's terminal
/// reads it (see [`crate::agent`]).
pub fn start(prompt: String) -> Result<Terminal> {
    if let Some(caller) = crate::console::caller() {
        return Ok(remote(caller, prompt));
    }
    let (sender, lines) = mpsc::unbounded_channel();
    if std::io::stdin().is_terminal() {
        use rustyline::ExternalPrinter as _;
        let restore = Restore::save();
        let mut editor = rustyline::DefaultEditor::new()?;
        let mut printer = editor.create_external_printer()?;
        let waiting = restore.waiting.clone();
        std::thread::spawn(move || loop {
            waiting.store(true, Ordering::SeqCst);
            let read = editor.readline(&prompt);
            waiting.store(false, Ordering::SeqCst);
            match read {
                Ok(line) => {
                    let _ = editor.add_history_entry(line.as_str());
                    // After `/bye` the editor does not wait for another line: out of raw
                    // mode, what the chat prints last ("Bye.") is written at once rather
                    // than queued for an editor that is about to be dropped.
                    let bye = matches!(
                        crate::chat::slash::parse(&line),
                        Ok(crate::chat::slash::Input::Command(
                            crate::chat::slash::Command::Bye
                        ))
                    );
                    if sender.send(line).is_err() || bye {
                        break;
                    }
                }
                // Ctrl-C clears the line, as in a shell; Ctrl-D (or a broken terminal) quits.
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(_) => break,
            }
        });
        Ok(Terminal {
            lines,
            // With its newline: the editor adds one only while it waits for a line.
            print: Box::new(move |line| {
                // Wrapped by us, so the terminal's own wrapping cannot start a row with
                // text a sender chose (see `crate::fit`).
                let line = crate::fit::fit(&line, crate::fit::terminal_width(true));
                if printer.print(format!("{line}\n")).is_err() {
                    println!("{line}");
                }
            }),
            full_screen: None,
            _restore: Some(restore),
        })
    } else {
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Terminal {
            lines,
            print: Box::new(|line| println!("{line}")),
            full_screen: None,
            _restore: None,
        })
    }
}

/// The caller's terminal, for a chat running inside the agent: its line editor starts
/// there, its lines arrive here, and what the chat prints goes back to it.
fn remote(caller: Arc<crate::console::Caller>, prompt: String) -> Terminal {
    use crate::agent::wire::ToCaller;
    let _ = caller.to_caller.send(ToCaller::Chat { prompt });
    let (sender, lines) = mpsc::unbounded_channel();
    let from = caller.clone();
    tokio::spawn(async move {
        let mut typed = from.lines.lock().await;
        while let Some(line) = typed.recv().await {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let to_caller = caller.to_caller.clone();
    let full_screen = caller.full_screen.then(|| {
        let lines_to = caller.to_caller.clone();
        let views_to = caller.to_caller.clone();
        FullScreen {
            line: Box::new(move |line| {
                let _ = lines_to.send(ToCaller::Line(line));
            }),
            view: Box::new(move |view| {
                let _ = views_to.send(ToCaller::View(view));
            }),
        }
    });
    Terminal {
        lines,
        print: Box::new(move |line| {
            let _ = to_caller.send(ToCaller::Out(line));
        }),
        full_screen,
        _restore: None,
    }
}

/// The terminal's settings from before the line editor started, put back on drop.
struct Restore {
    /// Whether the editor is waiting for a line (so its prompt is on the screen).
    waiting: Arc<AtomicBool>,
}

impl Restore {
    /// Saves the settings of the terminal on standard input, and makes sure a panic puts
    /// them back before it is reported.
    fn save() -> Restore {
        saved::save();
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let report = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                saved::restore();
                report(info);
            }));
        });
        Restore {
            waiting: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if saved::restore() && self.waiting.load(Ordering::SeqCst) {
            // The editor's prompt is still on the last line: leave it for the shell's.
            println!();
        }
    }
}

/// The saved settings, shared with the panic hook.
#[cfg(unix)]
mod saved {
    use std::sync::{Mutex, PoisonError};

    use nix::sys::termios::{tcgetattr, tcsetattr, SetArg, Termios};

    static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

    /// Saves the settings of standard input's terminal (nothing if it has none).
    pub fn save() {
        if let Ok(termios) = tcgetattr(std::io::stdin()) {
            *SAVED.lock().unwrap_or_else(PoisonError::into_inner) = Some(termios);
        }
    }

    /// Puts the saved settings back, once; whether there were any.
    pub fn restore() -> bool {
        let saved = SAVED.lock().unwrap_or_else(PoisonError::into_inner).take();
        match saved {
            Some(termios) => {
                let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &termios);
                true
            }
            None => false,
        }
    }
}

/// Elsewhere the line editor restores the console itself when it returns.
#[cfg(not(unix))]
mod saved {
    pub fn save() {}

    pub fn restore() -> bool {
        false
    }
}
