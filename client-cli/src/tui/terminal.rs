//! The terminal under the full-screen chat: raw mode and the alternate screen on the way
//! in, the user's terminal back on the way out (on drop, and from a panic hook before the
//! panic is reported), and a thread that reads keys.

use std::io::{stdout, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use crossterm::event::{
    self, DisableBracketedPaste, DisableFocusChange, EnableBracketedPaste, EnableFocusChange, Event,
};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use tokio::sync::mpsc;

/// Whether the terminal is ours now (raw, alternate screen): what [`restore`] undoes.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// How long stopping waits for the key thread.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// How often the key thread looks whether it should stop.
const POLL: Duration = Duration::from_millis(100);

/// Takes the terminal: raw mode, the alternate screen, bracketed paste, focus reports
/// (for desktop notifications, see [`crate::agent::notify`]). On failure the terminal is
/// put back before the error is returned.
pub fn enter() -> Result<()> {
    ensure!(
        stdout().is_terminal(),
        "the full-screen chat needs a terminal on standard output"
    );
    install_panic_hook();
    ACTIVE.store(true, Ordering::SeqCst);
    let entered = terminal::enable_raw_mode().and_then(|()| {
        execute!(
            stdout(),
            EnterAlternateScreen,
            EnableBracketedPaste,
            EnableFocusChange
        )
    });
    if let Err(err) = entered {
        restore();
        return Err(err).context("cannot set up the terminal");
    }
    Ok(())
}

/// Gives the terminal back as it was: the normal screen, cooked mode, a visible cursor.
/// Does nothing when already done, so every way out may call it.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            stdout(),
            DisableFocusChange,
            DisableBracketedPaste,
            LeaveAlternateScreen,
            cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// A panic while the terminal is ours restores it first, so that the report is readable
/// and the shell works.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Terminal events (keys, pastes, resizes), read on a thread of their own.
pub struct Events {
    /// The events; closed when the terminal cannot be read any more.
    pub receiver: mpsc::UnboundedReceiver<Event>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Closes when the thread ends.
    done: std::sync::mpsc::Receiver<()>,
}

impl Events {
    /// Starts reading.
    pub fn start() -> Events {
        let (sender, receiver) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // Dropped when the thread ends: how `stop` knows without joining.
            let _done = done_tx;
            // Polls with a timeout rather than blocking in read, so that the thread stops
            // (and reads no more of the terminal) soon after the chat ends.
            while !stopped.load(Ordering::SeqCst) {
                match event::poll(POLL) {
                    Ok(false) => {}
                    Ok(true) => match event::read() {
                        Ok(event) => {
                            if sender.send(event).is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                    Err(_) => break,
                }
            }
        });
        Events {
            receiver,
            stop,
            thread: Some(thread),
            done,
        }
    }

    /// Stops reading and waits for the thread, a little: a terminal that hung up (a
    /// closed SSH session) can leave it inside crossterm's read for good, and the chat
    /// must end all the same (the thread dies with the process).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            match self.done.recv_timeout(STOP_WAIT) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => drop(thread),
                _ => {
                    let _ = thread.join();
                }
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop();
    }
}
