//! The full-screen chat (`hearth chat` on a terminal): rooms on the left, the room's
//! messages in the middle, its members on the right, the input line at the bottom.
//!
//! Map: [`app`] is the state and what keys do to it (no terminal), [`draw`] shows it,
//! [`rows`] turns a chat line into styled, wrapped rows, [`scrollback`] keeps each room's
//! lines, [`input`] is the line editor, [`terminal`] takes the terminal and gives it
//! back. [`Tui`] ties them to a real terminal.
//!
//! The agent sends [`ChatLine`]s and [`ChatView`]s (their text already inert); what the
//! user types goes back as plain chat lines, and so do the UI's actions: `/current ID`
//! when switching rooms, `/accept ID` and `/decline ID` for invitations.

mod app;
mod draw;
mod input;
mod preview;
mod rows;
mod scrollback;
mod terminal;
#[cfg(test)]
mod tests;

use std::io::{Stdout, Write};

use anyhow::Result;
use crossterm::event::{Event, KeyEventKind};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;

use crate::agent::wire::{ChatLine, ChatView};
use app::{App, Outcome};
use rows::Zone;

/// The environment variable that turns the bell off.
pub const NO_BELL: &str = "HEARTH_NO_BELL";

/// What the full-screen chat has for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    /// A typed line or a UI action, as a chat line.
    Line(String),
    /// The terminal window gained (`true`) or lost the focus.
    Focus(bool),
}

/// The full-screen chat on the real terminal. Dropping it gives the terminal back.
pub struct Tui {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    app: App,
    events: terminal::Events,
    /// The user quit (or the terminal went away): no more input.
    ended: bool,
    /// A picture is shown over the chat until the next key.
    previewing: bool,
}

impl Tui {
    /// Takes the terminal (raw mode, alternate screen; a panic hook gives it back before
    /// the panic is reported), starts reading keys on a thread and draws an empty chat.
    pub fn start() -> Result<Tui> {
        terminal::enter()?;
        // From here on, dropping `tui` restores the terminal whatever fails.
        let events = terminal::Events::start();
        let backend = CrosstermBackend::new(std::io::stdout());
        let terminal = match Terminal::new(backend) {
            Ok(terminal) => terminal,
            Err(err) => {
                terminal::restore();
                return Err(err.into());
            }
        };
        let bell = std::env::var_os(NO_BELL).is_none();
        let mut tui = Tui {
            terminal,
            app: App::new(Rect::default(), Zone::Local, bell),
            events,
            ended: false,
            previewing: false,
        };
        tui.draw();
        Ok(tui)
    }

    /// Applies a line from the agent and redraws; rings the bell for a mention or a
    /// private message in a room not on screen, or in any room while the window does not
    /// have the focus.
    pub fn line(&mut self, mut line: ChatLine) {
        let preview = line.preview.take();
        if self.app.line(line) {
            let backend = self.terminal.backend_mut();
            let _ = backend.write_all(b"\x07").and_then(|()| backend.flush());
        }
        self.draw();
        if let Some(path) = preview {
            self.preview(std::path::Path::new(&path));
        }
    }

    /// Shows the picture at `path` over the chat until the next key; an error line when
    /// it cannot. The keyboard is not read meanwhile, so that a graphics protocol's
    /// answers reach the printer and not the chat.
    fn preview(&mut self, path: &std::path::Path) {
        let Ok(size) = self.terminal.size() else {
            return;
        };
        self.events.stop();
        let shown = preview::show(path, size.width, size.height.saturating_sub(1));
        self.events = terminal::Events::start();
        match shown {
            Ok(()) => self.previewing = true,
            Err(why) => {
                self.app.line(ChatLine {
                    kind: crate::agent::wire::LineKind::Error,
                    text: format!("! no preview: {why}"),
                    ..ChatLine::default()
                });
                let _ = self.terminal.clear();
                self.draw();
            }
        }
    }

    /// Applies a view from the agent and redraws.
    pub fn view(&mut self, view: ChatView) {
        self.app.view(view);
        self.draw();
    }

    /// The next line for the agent: a typed message or slash command, or a UI action
    /// (`/current ID`, `/accept ID`, `/decline ID`); or a change of the window's focus.
    /// Redraws on keys and resizes meanwhile.
    ///
    /// `None` when the user quits: Ctrl-C, or Ctrl-D on an empty line (nothing is sent;
    /// the caller tells the agent the input ended). A typed `/bye` is returned like any
    /// line, so the agent says goodbye, and the call after it returns `None`. Once `None`
    /// was returned, every later call returns `None` at once.
    ///
    /// Cancel-safe: it only waits on a channel receive, and handles each event fully
    /// before the next await, so dropping the future loses no key.
    pub async fn next_input(&mut self) -> Option<Typed> {
        loop {
            if self.ended || self.app.quitting {
                self.ended = true;
                return None;
            }
            let Some(event) = self.events.receiver.recv().await else {
                self.ended = true;
                return None;
            };
            match event {
                // Any key takes a picture away (and does nothing else).
                Event::Key(key) if self.previewing && key.kind != KeyEventKind::Release => {
                    self.previewing = false;
                    preview::clear();
                    let _ = self.terminal.clear();
                    self.draw();
                }
                Event::Key(key) if key.kind != KeyEventKind::Release => match self.app.key(key) {
                    Outcome::Redraw => self.draw(),
                    Outcome::Repaint => {
                        let _ = self.terminal.clear();
                        self.draw();
                    }
                    Outcome::Send(line) => {
                        self.draw();
                        return Some(Typed::Line(line));
                    }
                    Outcome::Quit => {
                        self.ended = true;
                        return None;
                    }
                },
                Event::Paste(text) => {
                    self.app.paste(&text);
                    self.draw();
                }
                Event::Resize(..) => self.draw(),
                Event::FocusGained | Event::FocusLost => {
                    let focused = matches!(event, Event::FocusGained);
                    if focused != self.app.focused {
                        self.app.focus_changed(focused);
                        return Some(Typed::Focus(focused));
                    }
                }
                _ => {}
            }
        }
    }

    /// Draws the chat (ratatui writes only the cells that changed).
    fn draw(&mut self) {
        if let Ok(size) = self.terminal.size() {
            let area = Rect::new(0, 0, size.width, size.height);
            if area != self.app.size {
                self.app.resize(area);
            }
        }
        if std::mem::take(&mut self.app.repaint) {
            let _ = self.terminal.clear();
        }
        let app = &self.app;
        let _ = self.terminal.draw(|frame| draw::draw(frame, app));
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        // No more reading before the terminal leaves raw mode.
        self.events.stop();
        let _ = self.terminal.show_cursor();
        terminal::restore();
    }
}
