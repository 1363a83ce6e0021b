//! The full-screen chat's state and what each key does to it. No terminal here: the
//! agent's lines and views and the user's keys go in, lines for the agent come out, and
//! [`super::draw`] shows the state.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;

use super::draw;
use super::input::{History, LineEditor};
use super::rows::{self, Zone};
use super::scrollback::{Pushed, Scrollback};
use crate::agent::wire::{ChatLine, ChatView, LineKind};

/// The keys, as the help overlay (F1) and the user guide list them.
pub const KEYS: &[(&str, &str)] = &[
    ("Enter", "send the line (a message or a /command)"),
    (
        "Alt-Up, Alt-Down",
        "previous, next room (also Ctrl-P, Ctrl-N)",
    ),
    ("PageUp, PageDown", "scroll the room's messages"),
    (
        "Ctrl-Home, Ctrl-End",
        "oldest, newest message (Esc: newest)",
    ),
    ("Up, Down", "lines typed before"),
    (
        "Left, Right, Home, End",
        "move in the line (Ctrl-A, Ctrl-E)",
    ),
    ("Ctrl-Left, Ctrl-Right", "move by word (Alt-B, Alt-F)"),
    ("Backspace, Delete", "delete a character"),
    (
        "Ctrl-U, Ctrl-K, Ctrl-W",
        "delete to the start, to the end, a word",
    ),
    ("Tab", "rooms and invitations: Up/Down, Enter, a, d"),
    (
        "Shift-Up, F2",
        "select a message: reply, edit, delete, react",
    ),
    ("Ctrl-F", "search the room: Enter or n older, N newer"),
    ("Ctrl-L", "redraw the screen"),
    ("F1", "this help"),
    ("Ctrl-C, Ctrl-D", "quit (Ctrl-D on an empty line); or /bye"),
];

/// What the caller does after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Redraw (the state may have changed).
    Redraw,
    /// Clear the terminal and redraw everything (Ctrl-L).
    Repaint,
    /// Send this line to the agent, and redraw.
    Send(String),
    /// The user quits.
    Quit,
}

/// Where keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The input line.
    Input,
    /// The rooms pane: this entry is selected (rooms, then invitations).
    Rooms(usize),
    /// A message of the room on screen is selected (its index, as
    /// [`Scrollback::first`] gives), to reply to, edit, delete or react to.
    Select(u64),
}

/// A search in the current room.
#[derive(Debug, Default)]
pub struct Search {
    /// What is searched for.
    pub query: LineEditor,
    /// The query is being typed (else n and N move between matches).
    pub editing: bool,
    /// The line jumped to (an index as [`Scrollback::first`] gives).
    pub at: Option<u64>,
    /// The last jump found nothing further.
    pub exhausted: bool,
}

/// Everything the full-screen chat shows.
#[derive(Debug)]
pub struct App {
    /// What the agent last said about rooms, members and the connection.
    pub view: ChatView,
    /// The room on screen (follows the view, and switches at once on a key).
    pub current: Option<String>,
    /// Lines per room; answers to commands when no room is current go under "".
    rooms: HashMap<String, Scrollback>,
    /// The line being typed.
    pub input: LineEditor,
    /// The first column of the input shown (it scrolls when long).
    pub input_offset: usize,
    history: History,
    /// Rows of the room hidden below the bottom of the screen (0: following new lines).
    pub scroll: usize,
    /// Lines that came into the room on screen while scrolled up.
    pub unseen: usize,
    /// Where keys go.
    pub focus: Focus,
    /// The search, while open.
    pub search: Option<Search>,
    /// The key help is shown.
    pub help: bool,
    /// The terminal's size.
    pub size: Rect,
    /// The clock times are shown in.
    pub zone: Zone,
    /// Ring the terminal bell for a mention or private message in another room.
    pub bell: bool,
    /// `/bye` was sent: the next call for input ends the chat.
    pub quitting: bool,
    /// Another room went on screen: the next draw repaints every cell, so that nothing
    /// of the last room's text stays behind where the terminal and ratatui disagree on a
    /// character's width (regional indicators, found by the attack on issue 12).
    pub repaint: bool,
    /// The message a command being typed is about (`/reply 14 …` after `r`), shown
    /// selected until the line is sent or dropped.
    pub marked: Option<u64>,
    /// The terminal window has the focus (as far as the terminal reports it).
    pub focused: bool,
}

impl App {
    /// A chat with nothing in it yet, on a terminal of this size.
    pub fn new(size: Rect, zone: Zone, bell: bool) -> App {
        App {
            view: ChatView::default(),
            current: None,
            rooms: HashMap::new(),
            input: LineEditor::default(),
            input_offset: 0,
            history: History::default(),
            scroll: 0,
            unseen: 0,
            focus: Focus::Input,
            search: None,
            help: false,
            size,
            zone,
            bell,
            quitting: false,
            repaint: false,
            marked: None,
            focused: true,
        }
    }

    /// The lines of a room, if any came.
    pub fn room(&self, id: &str) -> Option<&Scrollback> {
        self.rooms.get(id)
    }

    /// The lines of the room on screen.
    pub fn screen(&self) -> Option<&Scrollback> {
        self.rooms.get(self.current.as_deref().unwrap_or(""))
    }

    /// Files a line from the agent. Returns whether to ring the bell.
    pub fn line(&mut self, mut line: ChatLine) -> bool {
        let on_screen_key = self.current.clone().unwrap_or_default();
        let key = line.room.clone().unwrap_or_else(|| on_screen_key.clone());
        let on_screen = key == on_screen_key;
        if on_screen && line.room.is_none() {
            line.room = self.current.clone();
        }
        let kind = line.kind;
        let buffer = self.rooms.entry(key.clone()).or_default();
        if buffer.push(line, on_screen) != Pushed::Kept {
            return false;
        }
        if on_screen {
            if kind == LineKind::Header {
                self.scroll = 0;
                self.unseen = 0;
                self.search_reset();
            } else if self.scroll > 0 {
                // Keep the view where it is: the new rows are below it.
                let buffer = &self.rooms[&key];
                let last = buffer.first() + buffer.lines().len() as u64 - 1;
                self.scroll += self.line_height(buffer, last);
                self.unseen += 1;
            }
        }
        // A bell for what names us or is private, unless it is before our eyes.
        self.bell
            && (!on_screen || !self.focused)
            && matches!(kind, LineKind::Mention | LineKind::Private)
    }

    /// Takes a new view from the agent.
    pub fn view(&mut self, view: ChatView) {
        let moved = view.current != self.current;
        self.current = view.current.clone();
        self.view = view;
        if moved {
            self.entered();
        }
        if let Focus::Rooms(selected) = self.focus {
            let entries = self.view.rooms.len() + self.view.invitations.len();
            self.focus = match entries {
                0 => Focus::Input,
                n => Focus::Rooms(selected.min(n - 1)),
            };
        }
    }

    /// The terminal changed size.
    pub fn resize(&mut self, size: Rect) {
        self.size = size;
        self.clamp_scroll();
        self.fix_input();
    }

    /// A room was entered: start at its bottom, nothing unread.
    fn entered(&mut self) {
        self.scroll = 0;
        self.unseen = 0;
        self.search = None;
        self.marked = None;
        if let Focus::Select(_) = self.focus {
            self.focus = Focus::Input;
        }
        if let Some(current) = &self.current {
            if let Some(buffer) = self.rooms.get_mut(current) {
                buffer.seen();
            }
        }
    }

    /// Puts a room on screen now, and asks the agent to make it current.
    fn switch(&mut self, id: String) -> Outcome {
        if self.current.as_ref() == Some(&id) {
            return Outcome::Redraw;
        }
        self.current = Some(id.clone());
        self.entered();
        self.repaint = true;
        Outcome::Send(format!("/current {id}"))
    }

    /// Switches to the room after (or before) the current one in the list, round.
    fn cycle(&mut self, forward: bool) -> Outcome {
        let rooms = &self.view.rooms;
        if rooms.is_empty() {
            return Outcome::Redraw;
        }
        let at = self
            .current
            .as_ref()
            .and_then(|c| rooms.iter().position(|r| &r.id == c));
        let next = match (at, forward) {
            (None, _) => 0,
            (Some(i), true) => (i + 1) % rooms.len(),
            (Some(i), false) => (i + rooms.len() - 1) % rooms.len(),
        };
        let id = rooms[next].id.clone();
        self.switch(id)
    }

    /// Where the room's lines go on screen.
    fn messages_area(&self) -> Rect {
        draw::layout(self.size).messages
    }

    /// Rows one line takes, with the day separator before it if the date changes there.
    fn line_height(&self, buffer: &Scrollback, index: u64) -> usize {
        let width = self.messages_area().width;
        let Some(line) = buffer.get(index) else {
            return 0;
        };
        let separator = usize::from(draw::separator_before(buffer, index, self.zone).is_some());
        separator + rows::line_rows(line, width, self.zone, None, false).len()
    }

    /// Rows below the top of a line (the line's own rows and all after it).
    fn rows_from(&self, buffer: &Scrollback, index: u64) -> usize {
        let end = buffer.first() + buffer.lines().len() as u64;
        (index..end).map(|i| self.line_height(buffer, i)).sum()
    }

    /// How far up the room can scroll.
    fn max_scroll(&self) -> usize {
        let height = usize::from(self.messages_area().height);
        self.screen()
            .map_or(0, |b| self.rows_from(b, b.first()))
            .saturating_sub(height)
    }

    fn clamp_scroll(&mut self) {
        self.scroll = self.scroll.min(self.max_scroll());
        if self.scroll == 0 {
            self.unseen = 0;
        }
    }

    fn scroll_by(&mut self, up: bool) {
        let page = usize::from(self.messages_area().height.saturating_sub(1)).max(1);
        self.scroll = if up {
            self.scroll + page
        } else {
            self.scroll.saturating_sub(page)
        };
        self.clamp_scroll();
    }

    /// Keeps the input's cursor in view.
    fn fix_input(&mut self) {
        let (editor, width) = self.input_field();
        self.input_offset = editor.scroll(width, self.input_offset);
    }

    /// The editor being typed in (the search's or the input's) and the field's width.
    pub fn input_field(&self) -> (&LineEditor, usize) {
        let width = usize::from(draw::input_width(self));
        match &self.search {
            Some(search) => (&search.query, width),
            None => (&self.input, width),
        }
    }

    /// Applies a key.
    pub fn key(&mut self, key: KeyEvent) -> Outcome {
        let outcome = self.dispatch(key);
        self.fix_input();
        outcome
    }

    /// Pasted text goes into the line being typed.
    pub fn paste(&mut self, text: &str) {
        match &mut self.search {
            Some(search) => {
                search.query.insert(text);
                search.editing = true;
                self.search_jump(true, true);
            }
            None => self.input.insert(text),
        }
        self.fix_input();
    }

    fn dispatch(&mut self, key: KeyEvent) -> Outcome {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if self.help {
            self.help = false;
            return Outcome::Redraw;
        }
        match key.code {
            KeyCode::Char('c') if ctrl => return Outcome::Quit,
            KeyCode::Char('l') if ctrl => return Outcome::Repaint,
            KeyCode::F(1) => {
                self.help = true;
                return Outcome::Redraw;
            }
            KeyCode::Up if alt => return self.cycle(false),
            KeyCode::Down if alt => return self.cycle(true),
            KeyCode::Char('p') if ctrl => return self.cycle(false),
            KeyCode::Char('n') if ctrl => return self.cycle(true),
            KeyCode::PageUp => {
                self.scroll_by(true);
                return Outcome::Redraw;
            }
            KeyCode::PageDown => {
                self.scroll_by(false);
                return Outcome::Redraw;
            }
            KeyCode::Home if ctrl => {
                self.scroll = self.max_scroll();
                return Outcome::Redraw;
            }
            KeyCode::End if ctrl => {
                self.scroll = 0;
                self.clamp_scroll();
                return Outcome::Redraw;
            }
            _ => {}
        }
        if self.search.is_some() {
            return self.search_key(key);
        }
        match self.focus {
            Focus::Rooms(selected) => self.rooms_key(key, selected),
            Focus::Select(index) => self.select_key(key, index),
            Focus::Input => self.input_key(key),
        }
    }

    /// The line selected or marked, if any.
    pub fn selected(&self) -> Option<u64> {
        match self.focus {
            Focus::Select(index) => Some(index),
            _ => self.marked,
        }
    }

    /// The message lines of the room on screen, oldest first (their indexes).
    fn messages(&self) -> Vec<u64> {
        let Some(buffer) = self.screen() else {
            return Vec::new();
        };
        (buffer.first()..)
            .zip(buffer.lines())
            .filter(|(_, line)| line.seq.is_some() && line.sender.is_some())
            .map(|(i, _)| i)
            .collect()
    }

    /// Starts selecting messages, at the newest one (if there is one).
    fn start_selecting(&mut self) {
        if let Some(newest) = self.messages().last().copied() {
            self.focus = Focus::Select(newest);
            self.marked = None;
            self.show_line(newest);
        }
    }

    fn select_key(&mut self, key: KeyEvent, index: u64) -> Outcome {
        let messages = self.messages();
        let Some(at) = messages.iter().position(|i| *i == index) else {
            // The line went (the room was reloaded): start again at the newest.
            self.focus = Focus::Input;
            return Outcome::Redraw;
        };
        let Some(line) = self.screen().and_then(|b| b.get(index)).cloned() else {
            self.focus = Focus::Input;
            return Outcome::Redraw;
        };
        let seq = line.seq.unwrap_or_default();
        let compose = |app: &mut App, text: String| {
            app.focus = Focus::Input;
            app.marked = Some(index);
            app.input = LineEditor::default();
            app.input.insert(&text);
            Outcome::Redraw
        };
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                let to = messages[at.saturating_sub(1)];
                self.focus = Focus::Select(to);
                self.show_line(to);
            }
            KeyCode::Down | KeyCode::Char('j') => match messages.get(at + 1) {
                Some(&to) => {
                    self.focus = Focus::Select(to);
                    self.show_line(to);
                }
                None => self.focus = Focus::Input,
            },
            KeyCode::Esc => self.focus = Focus::Input,
            KeyCode::Char('r') | KeyCode::Enter if !line.deleted => {
                return compose(self, format!("/reply {seq} "));
            }
            KeyCode::Char('e') if rows::is_own(&line) && !line.deleted => {
                // The text as shown (inert, continuation lines joined): editing starts
                // from what the screen shows.
                let text = line
                    .text
                    .replace(&format!("\n{}", crate::inert::CONTINUATION), " ");
                return compose(self, format!("/edit {seq} {text}"));
            }
            KeyCode::Char('d') | KeyCode::Delete if rows::is_own(&line) && !line.deleted => {
                return compose(self, format!("/delete {seq}"));
            }
            KeyCode::Char('+') if !line.deleted => {
                return compose(self, format!("/react {seq} "));
            }
            _ => {}
        }
        Outcome::Redraw
    }

    /// Scrolls as little as needed to show a whole line (or its top, if taller than the
    /// screen).
    fn show_line(&mut self, index: u64) {
        let Some(buffer) = self.screen() else { return };
        let height = usize::from(self.messages_area().height);
        let top = self.rows_from(buffer, index);
        let bottom = top - self.line_height(buffer, index);
        if bottom < self.scroll {
            self.scroll = bottom;
        } else if top > self.scroll + height {
            self.scroll = top - height;
        }
        self.clamp_scroll();
    }

    /// The room on screen searched for `query` (`/search TEXT`), at its newest match.
    fn search_for(&mut self, query: &str) {
        let mut search = Search::default();
        search.query.insert(query);
        self.search = Some(search);
        self.search_jump(true, true);
        if let Some(search) = &mut self.search {
            search.editing = false;
        }
    }

    fn input_key(&mut self, key: KeyEvent) -> Outcome {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let e = &mut self.input;
        match key.code {
            KeyCode::Enter => {
                let line = e.take();
                self.input_offset = 0;
                if line.trim().is_empty() {
                    return Outcome::Redraw;
                }
                self.history.push(&line);
                self.marked = None;
                if line.trim() == "/bye" {
                    self.quitting = true;
                }
                // Searched here, in the lines this window holds (line mode asks the
                // agent, which looks in the stored history).
                if let Some(query) = search_command(&line) {
                    self.search_for(query);
                    return Outcome::Redraw;
                }
                // What we send shows at the bottom.
                self.scroll = 0;
                self.unseen = 0;
                return Outcome::Send(line);
            }
            KeyCode::Char('d') if ctrl => {
                if e.is_empty() {
                    return Outcome::Quit;
                }
                e.delete();
            }
            KeyCode::Char('f') if ctrl => {
                self.search = Some(Search {
                    editing: true,
                    ..Search::default()
                });
                self.input_offset = 0;
            }
            KeyCode::Tab => {
                let entries = self.view.rooms.len() + self.view.invitations.len();
                if entries > 0 && draw::layout(self.size).rooms.is_some() {
                    let at = self
                        .current
                        .as_ref()
                        .and_then(|c| self.view.rooms.iter().position(|r| &r.id == c))
                        .unwrap_or(0);
                    // Invitations first when there are some: they wait for an answer.
                    let at = if self.view.invitations.is_empty() {
                        at
                    } else {
                        self.view.rooms.len()
                    };
                    self.focus = Focus::Rooms(at);
                }
            }
            KeyCode::Esc => {
                self.scroll = 0;
                self.unseen = 0;
                if self.marked.take().is_some() {
                    // Dropping the command about a message.
                    e.take();
                }
            }
            KeyCode::Up if key.modifiers.contains(KeyModifiers::SHIFT) => self.start_selecting(),
            KeyCode::F(2) => self.start_selecting(),
            KeyCode::Up => self.history.older(e),
            KeyCode::Down => self.history.newer(e),
            KeyCode::Char('a') if ctrl => e.home(),
            KeyCode::Char('e') if ctrl => e.end(),
            KeyCode::Char('u') if ctrl => e.kill_to_start(),
            KeyCode::Char('k') if ctrl => e.kill_to_end(),
            KeyCode::Char('w') if ctrl => e.kill_word(),
            KeyCode::Char('h') if ctrl => e.backspace(),
            KeyCode::Char('b') if alt => e.word_left(),
            KeyCode::Char('f') if alt => e.word_right(),
            KeyCode::Left if ctrl || alt => e.word_left(),
            KeyCode::Right if ctrl || alt => e.word_right(),
            KeyCode::Backspace if ctrl || alt => e.kill_word(),
            KeyCode::Left => e.left(),
            KeyCode::Right => e.right(),
            KeyCode::Home => e.home(),
            KeyCode::End => e.end(),
            KeyCode::Backspace => e.backspace(),
            KeyCode::Delete => e.delete(),
            KeyCode::Char(c) if !ctrl && !alt => {
                let mut buf = [0; 4];
                e.insert(c.encode_utf8(&mut buf));
            }
            _ => {}
        }
        Outcome::Redraw
    }

    fn rooms_key(&mut self, key: KeyEvent, selected: usize) -> Outcome {
        let rooms = self.view.rooms.len();
        let entries = rooms + self.view.invitations.len();
        let invitation = selected
            .checked_sub(rooms)
            .and_then(|i| self.view.invitations.get(i))
            .map(|i| i.id.clone());
        match key.code {
            KeyCode::Up => self.focus = Focus::Rooms(selected.saturating_sub(1)),
            KeyCode::Down => {
                self.focus = Focus::Rooms((selected + 1).min(entries.saturating_sub(1)))
            }
            KeyCode::Esc | KeyCode::Tab => self.focus = Focus::Input,
            KeyCode::Enter | KeyCode::Char('a') if invitation.is_some() => {
                self.focus = Focus::Input;
                return Outcome::Send(format!("/accept {}", invitation.unwrap_or_default()));
            }
            KeyCode::Char('d') if invitation.is_some() => {
                self.focus = Focus::Input;
                return Outcome::Send(format!("/decline {}", invitation.unwrap_or_default()));
            }
            KeyCode::Enter if selected < rooms => {
                self.focus = Focus::Input;
                let id = self.view.rooms[selected].id.clone();
                return self.switch(id);
            }
            _ => {}
        }
        Outcome::Redraw
    }

    fn search_key(&mut self, key: KeyEvent) -> Outcome {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        let Some(search) = &mut self.search else {
            return Outcome::Redraw;
        };
        match key.code {
            KeyCode::Esc => {
                self.search = None;
                self.input_offset = 0;
                self.fix_input();
            }
            KeyCode::Enter if shift => self.search_jump(false, false),
            KeyCode::Enter | KeyCode::Up => self.search_jump(true, false),
            KeyCode::Down => self.search_jump(false, false),
            KeyCode::Char('n') if !search.editing => self.search_jump(true, false),
            KeyCode::Char('N') if !search.editing => self.search_jump(false, false),
            KeyCode::Char('f') if ctrl => search.editing = true,
            KeyCode::Char('/') if !search.editing => search.editing = true,
            _ if !search.editing => {}
            KeyCode::Backspace => {
                search.query.backspace();
                self.search_jump(true, true);
            }
            KeyCode::Delete => {
                search.query.delete();
                self.search_jump(true, true);
            }
            KeyCode::Left => search.query.left(),
            KeyCode::Right => search.query.right(),
            KeyCode::Home => search.query.home(),
            KeyCode::End => search.query.end(),
            KeyCode::Char('a') if ctrl => search.query.home(),
            KeyCode::Char('e') if ctrl => search.query.end(),
            KeyCode::Char('u') if ctrl => {
                search.query.kill_to_start();
                self.search_jump(true, true);
            }
            KeyCode::Char('w') if ctrl => {
                search.query.kill_word();
                self.search_jump(true, true);
            }
            KeyCode::Char(c) if !ctrl => {
                let mut buf = [0; 4];
                search.query.insert(c.encode_utf8(&mut buf));
                self.search_jump(true, true);
            }
            _ => {}
        }
        Outcome::Redraw
    }

    /// The lines of the room on screen that match the search, oldest first.
    pub fn search_matches(&self) -> Vec<u64> {
        let (Some(search), Some(buffer)) = (&self.search, self.screen()) else {
            return Vec::new();
        };
        let query = search.query.text();
        (buffer.first()..)
            .zip(buffer.lines())
            .filter(|(_, line)| rows::matches(line, query))
            .map(|(i, _)| i)
            .collect()
    }

    /// Jumps to the next match older (or newer) than the one shown; `restart` searches
    /// afresh from the newest line (the query changed). Stops editing the query unless
    /// restarting.
    fn search_jump(&mut self, older: bool, restart: bool) {
        let matches = self.search_matches();
        let Some(search) = &mut self.search else {
            return;
        };
        if !restart {
            search.editing = false;
        }
        let from = if restart { None } else { search.at };
        let found = match (from, older) {
            (None, _) => matches.last().copied(),
            (Some(at), true) => matches.iter().rev().find(|i| **i < at).copied(),
            (Some(at), false) => matches.iter().find(|i| **i > at).copied(),
        };
        search.exhausted = found.is_none();
        match found {
            Some(index) => {
                search.at = Some(index);
                self.scroll_to(index);
            }
            None if restart => search.at = None,
            None => {}
        }
    }

    /// The terminal window gained or lost the focus.
    pub fn focus_changed(&mut self, focused: bool) {
        self.focused = focused;
    }

    fn search_reset(&mut self) {
        if let Some(search) = &mut self.search {
            search.at = None;
        }
    }

    /// Scrolls so that a line is in the middle of the screen (or as near as it gets).
    fn scroll_to(&mut self, index: u64) {
        let Some(buffer) = self.screen() else { return };
        let height = usize::from(self.messages_area().height);
        let below = self.rows_from(buffer, index);
        let own = self.line_height(buffer, index);
        self.scroll = below.saturating_sub(own / 2 + height / 2);
        self.clamp_scroll();
    }
}

/// The query of a typed `/search TEXT` (or `/find TEXT`), if the line is one.
fn search_command(line: &str) -> Option<&str> {
    let line = line.trim();
    let (name, rest) = line.split_once(char::is_whitespace)?;
    let rest = rest.trim();
    (matches!(name.to_ascii_lowercase().as_str(), "/search" | "/find") && !rest.is_empty())
        .then_some(rest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::agent::wire::{InvitationEntry, RoomEntry};

    pub fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    pub fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    pub fn alt(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::ALT)
    }

    pub fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            app.key(key(KeyCode::Char(c)));
        }
    }

    pub fn line(room: &str, kind: LineKind, seq: u64, sender: &str, text: &str) -> ChatLine {
        ChatLine {
            room: Some(room.into()),
            kind,
            time: Some(1_772_000_000 + seq * 60),
            seq: Some(seq),
            sender: Some(sender.into()),
            text: text.into(),
            ..ChatLine::default()
        }
    }

    pub fn three_rooms() -> App {
        let mut app = App::new(Rect::new(0, 0, 80, 24), Zone::Utc, true);
        let room = |id: &str, label: &str| RoomEntry {
            id: id.into(),
            label: label.into(),
            direct: label.starts_with('@'),
        };
        app.view(ChatView {
            me: "gran".into(),
            relay: "relay.example".into(),
            connected: true,
            current: Some("aa".into()),
            rooms: vec![
                room("aa", "family"),
                room("bb", "kids"),
                room("cc", "@alice"),
            ],
            invitations: vec![InvitationEntry {
                id: "dd".into(),
                name: "garden".into(),
                from: "bob".into(),
            }],
            ..ChatView::default()
        });
        app
    }

    #[test]
    fn enter_sends_and_bye_ends() {
        let mut app = three_rooms();
        assert_eq!(app.key(key(KeyCode::Enter)), Outcome::Redraw);
        typed(&mut app, "hello");
        assert_eq!(app.key(key(KeyCode::Enter)), Outcome::Send("hello".into()));
        assert!(app.input.is_empty());
        typed(&mut app, "/bye");
        assert_eq!(app.key(key(KeyCode::Enter)), Outcome::Send("/bye".into()));
        assert!(app.quitting);
        app.key(key(KeyCode::Up));
        assert_eq!(app.input.text(), "/bye");
        assert_eq!(
            app.key(ctrl('d')),
            Outcome::Redraw,
            "Ctrl-D deletes on a non-empty line"
        );
        app.key(ctrl('u'));
        assert_eq!(app.key(ctrl('d')), Outcome::Quit);
        assert_eq!(app.key(ctrl('c')), Outcome::Quit);
    }

    #[test]
    fn editing_keys_reach_the_line_editor() {
        let mut app = three_rooms();
        typed(&mut app, "good morning all");
        app.key(ctrl('w'));
        app.key(ctrl('a'));
        app.key(key(KeyCode::Delete));
        typed(&mut app, "G");
        app.key(ctrl('e'));
        app.key(key(KeyCode::Backspace));
        app.key(KeyEvent::new(KeyCode::Left, KeyModifiers::CONTROL));
        typed(&mut app, "sunny ");
        assert_eq!(app.input.text(), "Good sunny morning");
        app.key(key(KeyCode::End));
        app.key(ctrl('u'));
        assert!(app.input.is_empty());
        app.paste("two\nlines");
        assert_eq!(app.input.text(), "two lines");
        // A line longer than the field scrolls; the cursor stays in view.
        typed(&mut app, &"x".repeat(200));
        assert!(app.input_offset > 0);
        app.key(key(KeyCode::Home));
        assert_eq!(app.input_offset, 0);
    }

    #[test]
    fn room_keys_switch_at_once_and_wrap_around() {
        let mut app = three_rooms();
        assert_eq!(
            app.key(alt(KeyCode::Down)),
            Outcome::Send("/current bb".into())
        );
        assert_eq!(app.current.as_deref(), Some("bb"));
        assert_eq!(app.key(ctrl('n')), Outcome::Send("/current cc".into()));
        assert_eq!(app.key(ctrl('n')), Outcome::Send("/current aa".into()));
        assert_eq!(
            app.key(alt(KeyCode::Up)),
            Outcome::Send("/current cc".into())
        );
        assert_eq!(app.key(ctrl('p')), Outcome::Send("/current bb".into()));
    }

    #[test]
    fn unread_and_mentions_count_for_rooms_not_on_screen() {
        let mut app = three_rooms();
        assert!(!app.line(line("bb", LineKind::Message, 1, "bob", "hi")));
        assert!(app.line(line("bb", LineKind::Mention, 2, "bob", "gran?")));
        assert!(
            !app.line(line("bb", LineKind::Mention, 2, "bob", "gran?")),
            "a repeat"
        );
        assert!(
            !app.line(line("aa", LineKind::Mention, 3, "bob", "gran?")),
            "on screen"
        );
        let kids = app.room("bb").unwrap();
        assert_eq!((kids.unread, kids.mentions), (2, 1));
        assert_eq!(app.room("aa").unwrap().unread, 0);
        app.bell = false;
        assert!(!app.line(line("cc", LineKind::Private, 4, "alice", "psst")));
        app.key(ctrl('n'));
        assert_eq!(app.room("bb").unwrap().unread, 0);
    }

    #[test]
    fn without_the_focus_a_mention_on_screen_rings_too() {
        let mut app = three_rooms();
        assert!(!app.line(line("aa", LineKind::Mention, 1, "bob", "gran?")));
        app.focus_changed(false);
        assert!(app.line(line("aa", LineKind::Mention, 2, "bob", "gran?")));
        assert!(!app.line(line("aa", LineKind::Message, 3, "bob", "hi")));
        app.focus_changed(true);
        assert!(!app.line(line("aa", LineKind::Mention, 4, "bob", "gran?")));
    }

    #[test]
    fn search_commands_are_recognised() {
        assert_eq!(search_command("/search apple cake "), Some("apple cake"));
        assert_eq!(search_command(" /FIND x"), Some("x"));
        assert_eq!(search_command("/search"), None);
        assert_eq!(search_command("/searching x"), None);
        assert_eq!(search_command("search x"), None);
    }

    #[test]
    fn command_answers_go_to_the_room_on_screen() {
        let mut app = three_rooms();
        app.line(ChatLine {
            room: None,
            kind: LineKind::Notice,
            time: None,
            seq: None,
            sender: None,
            text: "members: gran".into(),
            ..ChatLine::default()
        });
        assert_eq!(app.room("aa").unwrap().lines().len(), 1);
    }

    #[test]
    fn new_lines_do_not_move_a_scrolled_view() {
        let mut app = three_rooms();
        for seq in 0..60 {
            app.line(line("aa", LineKind::Message, seq, "bob", "a line"));
        }
        app.key(key(KeyCode::PageUp));
        let scrolled = app.scroll;
        assert_eq!(scrolled, 21);
        app.line(line("aa", LineKind::Message, 60, "bob", "one more"));
        assert_eq!((app.scroll, app.unseen), (scrolled + 1, 1));
        app.key(key(KeyCode::PageDown));
        app.key(key(KeyCode::PageDown));
        assert_eq!((app.scroll, app.unseen), (0, 0));
        app.key(KeyEvent::new(KeyCode::Home, KeyModifiers::CONTROL));
        assert_eq!(
            app.scroll,
            61 + 1 - 22,
            "61 lines and a day separator on 22 rows"
        );
        app.key(key(KeyCode::Esc));
        assert_eq!(app.scroll, 0);
    }

    #[test]
    fn the_rooms_pane_accepts_declines_and_switches() {
        let mut app = three_rooms();
        app.key(key(KeyCode::Tab));
        assert_eq!(app.focus, Focus::Rooms(3), "the invitation first");
        assert_eq!(
            app.key(key(KeyCode::Char('a'))),
            Outcome::Send("/accept dd".into())
        );
        assert_eq!(app.focus, Focus::Input);
        app.key(key(KeyCode::Tab));
        assert_eq!(
            app.key(key(KeyCode::Char('d'))),
            Outcome::Send("/decline dd".into())
        );
        app.key(key(KeyCode::Tab));
        app.key(key(KeyCode::Up));
        app.key(key(KeyCode::Up));
        assert_eq!(
            app.key(key(KeyCode::Char('d'))),
            Outcome::Redraw,
            "not an invitation"
        );
        assert_eq!(
            app.key(key(KeyCode::Enter)),
            Outcome::Send("/current bb".into())
        );
        assert_eq!(app.focus, Focus::Input);
        // Narrow: no rooms pane, no focus.
        app.resize(Rect::new(0, 0, 40, 20));
        app.key(key(KeyCode::Tab));
        assert_eq!(app.focus, Focus::Input);
    }

    #[test]
    fn search_jumps_between_matches() {
        let mut app = three_rooms();
        for seq in 0..100 {
            let text = if seq % 30 == 5 {
                "the cake is ready"
            } else {
                "nothing"
            };
            app.line(line("aa", LineKind::Message, seq, "bob", text));
        }
        app.key(ctrl('f'));
        typed(&mut app, "CAKE");
        assert_eq!(app.search.as_ref().unwrap().at, Some(95));
        assert_eq!(app.scroll, 0, "in view already");
        // Enter: to the next older match, and n, N move on.
        app.key(key(KeyCode::Enter));
        assert_eq!(app.search.as_ref().unwrap().at, Some(65));
        app.key(key(KeyCode::Char('n')));
        assert_eq!(app.search.as_ref().unwrap().at, Some(35));
        app.key(key(KeyCode::Char('n')));
        app.key(key(KeyCode::Char('n')));
        assert_eq!(app.search.as_ref().unwrap().at, Some(5));
        assert!(app.search.as_ref().unwrap().exhausted);
        // Line 5 of 100 (and a day separator): as far up as it goes on 22 rows.
        assert_eq!(app.scroll, 101 - 22);
        app.key(key(KeyCode::Char('N')));
        assert_eq!(app.search.as_ref().unwrap().at, Some(35));
        // Line 35 in the middle: 65 rows from its top to the bottom, 11 below the middle.
        assert_eq!(app.scroll, 65 - 11);
        app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::SHIFT));
        assert_eq!(app.search.as_ref().unwrap().at, Some(65));
        assert_eq!(app.search_matches(), [5, 35, 65, 95]);
        app.key(key(KeyCode::Esc));
        assert!(app.search.is_none());
        assert!(
            app.input.is_empty(),
            "search typing does not reach the input"
        );
    }

    #[test]
    fn a_header_resets_the_room() {
        let mut app = three_rooms();
        app.line(line("aa", LineKind::Message, 1, "bob", "old"));
        app.line(line("aa", LineKind::Header, 0, "", "--- family ---"));
        app.line(line("aa", LineKind::Message, 1, "bob", "old"));
        let texts: Vec<_> = app
            .room("aa")
            .unwrap()
            .lines()
            .iter()
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(texts, ["--- family ---", "old"]);
    }
}
