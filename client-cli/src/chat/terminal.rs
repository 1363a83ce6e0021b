//! The chat's terminal: a line editor that keeps what the user is typing intact while
//! messages are printed above it (rustyline's external printer), or plain lines when
//! standard input is not a terminal (scripts, tests).

use std::io::{BufRead, IsTerminal};

use anyhow::Result;
use tokio::sync::mpsc;

/// Prints a line above the input line.
pub type Printer = Box<dyn FnMut(String) + Send>;

/// Lines the user typed, and a printer for everything else.
pub struct Terminal {
    /// Typed lines; closed on end of input (Ctrl-D).
    pub lines: mpsc::UnboundedReceiver<String>,
    /// Prints above the prompt.
    pub print: Printer,
}

/// Starts reading input on a background thread.
pub fn start(prompt: String) -> Result<Terminal> {
    let (sender, lines) = mpsc::unbounded_channel();
    if std::io::stdin().is_terminal() {
        use rustyline::ExternalPrinter as _;
        let mut editor = rustyline::DefaultEditor::new()?;
        let mut printer = editor.create_external_printer()?;
        std::thread::spawn(move || loop {
            match editor.readline(&prompt) {
                Ok(line) => {
                    let _ = editor.add_history_entry(line.as_str());
                    if sender.send(line).is_err() {
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
            print: Box::new(move |line| {
                if printer.print(line.clone()).is_err() {
                    println!("{line}");
                }
            }),
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
        })
    }
}
