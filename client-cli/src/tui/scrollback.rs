//! The lines kept for one room: bounded, without repeats, with what is unread.

use std::collections::{HashSet, VecDeque};

use crate::agent::wire::{ChatLine, LineKind};

/// How many lines a room keeps; older ones are dropped (the agent's `/history` and
/// `hearth history` still have them).
pub const MAX_LINES: usize = 2_000;

/// One room's lines, oldest first.
#[derive(Debug, Default)]
pub struct Scrollback {
    lines: VecDeque<ChatLine>,
    /// The number of lines dropped from the front since the last reset, so that a line
    /// keeps one index (see [`Scrollback::first`]) while older lines go.
    dropped: u64,
    /// The seqs of the lines held.
    seqs: HashSet<u64>,
    /// The highest seq dropped: a line at or below it is an old repeat.
    floor: Option<u64>,
    /// Messages that arrived while the room was not on screen.
    pub unread: usize,
    /// Of those, how many named us, were private or warned.
    pub mentions: usize,
}

/// What became of a line given to [`Scrollback::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// A repeat of a line already shown: dropped.
    Repeat,
    /// A newer state of a message held (edited, deleted, reacted to): it took the old
    /// line's place.
    Replaced,
    /// Kept.
    Kept,
}

impl Scrollback {
    /// Files a line; `on_screen` says whether the room is the one shown (else it counts
    /// as unread). A [`LineKind::Header`] starts the room afresh.
    pub fn push(&mut self, line: ChatLine, on_screen: bool) -> Pushed {
        if line.kind == LineKind::Header {
            *self = Scrollback {
                dropped: self.dropped + self.lines.len() as u64,
                ..Scrollback::default()
            };
        }
        if let Some(seq) = line.seq {
            if self.seqs.contains(&seq) {
                return match self.lines.iter_mut().find(|l| l.seq == Some(seq)) {
                    Some(held) if *held != line => {
                        *held = line;
                        Pushed::Replaced
                    }
                    _ => Pushed::Repeat,
                };
            }
            if self.floor.is_some_and(|floor| seq <= floor) {
                return Pushed::Repeat;
            }
            self.seqs.insert(seq);
        }
        if !on_screen {
            match line.kind {
                LineKind::Message => self.unread += 1,
                LineKind::Mention | LineKind::Private | LineKind::Warning => {
                    self.unread += 1;
                    self.mentions += 1;
                }
                _ => {}
            }
        }
        self.lines.push_back(line);
        if self.lines.len() > MAX_LINES {
            if let Some(old) = self.lines.pop_front() {
                self.dropped += 1;
                if let Some(seq) = old.seq {
                    self.seqs.remove(&seq);
                    self.floor = Some(self.floor.map_or(seq, |f| f.max(seq)));
                }
            }
        }
        Pushed::Kept
    }

    /// The lines held, oldest first.
    pub fn lines(&self) -> &VecDeque<ChatLine> {
        &self.lines
    }

    /// The index of the oldest line held: indexes (`first()..first() + len`) stay with
    /// their line while older lines are dropped.
    pub fn first(&self) -> u64 {
        self.dropped
    }

    /// The line at an index from [`Scrollback::first`], if still held.
    pub fn get(&self, index: u64) -> Option<&ChatLine> {
        let at = usize::try_from(index.checked_sub(self.dropped)?).ok()?;
        self.lines.get(at)
    }

    /// The room is on screen: nothing is unread.
    pub fn seen(&mut self) {
        self.unread = 0;
        self.mentions = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: LineKind, seq: Option<u64>, text: &str) -> ChatLine {
        ChatLine {
            room: Some("r".into()),
            kind,
            time: None,
            seq,
            sender: None,
            text: text.into(),
            ..ChatLine::default()
        }
    }

    #[test]
    fn drops_repeats_and_counts_unread() {
        let mut s = Scrollback::default();
        assert_eq!(
            s.push(line(LineKind::Message, Some(1), "a"), false),
            Pushed::Kept
        );
        assert_eq!(
            s.push(line(LineKind::Message, Some(1), "a"), false),
            Pushed::Repeat
        );
        s.push(line(LineKind::Mention, Some(2), "b"), false);
        s.push(line(LineKind::Notice, None, "* x joined"), false);
        s.push(line(LineKind::Notice, None, "* x joined"), false);
        assert_eq!((s.unread, s.mentions, s.lines().len()), (2, 1, 4));
        s.push(line(LineKind::Message, Some(3), "c"), true);
        assert_eq!(s.unread, 2);
        s.seen();
        assert_eq!((s.unread, s.mentions), (0, 0));
    }

    #[test]
    fn a_changed_message_takes_its_place() {
        let mut s = Scrollback::default();
        s.push(line(LineKind::Message, Some(1), "a"), false);
        s.push(line(LineKind::Message, Some(2), "b"), false);
        let mut edited = line(LineKind::Message, Some(1), "a2");
        edited.edited = true;
        assert_eq!(s.push(edited.clone(), false), Pushed::Replaced);
        assert_eq!(s.push(edited, false), Pushed::Repeat);
        let texts: Vec<_> = s.lines().iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a2", "b"]);
        assert_eq!(s.unread, 2, "a change is not a new message");
    }

    #[test]
    fn a_header_starts_afresh() {
        let mut s = Scrollback::default();
        s.push(line(LineKind::Message, Some(1), "a"), false);
        s.push(line(LineKind::Header, None, "--- room ---"), true);
        assert_eq!((s.lines().len(), s.unread, s.first()), (1, 0, 1));
        assert_eq!(
            s.push(line(LineKind::Message, Some(1), "a"), true),
            Pushed::Kept
        );
        assert_eq!(s.get(2).map(|l| l.text.as_str()), Some("a"));
        assert_eq!(s.get(0), None);
    }

    #[test]
    fn is_bounded_and_remembers_what_it_dropped() {
        let mut s = Scrollback::default();
        for seq in 0..MAX_LINES as u64 + 10 {
            s.push(line(LineKind::Message, Some(seq), "m"), true);
        }
        assert_eq!(s.lines().len(), MAX_LINES);
        assert_eq!(s.first(), 10);
        assert_eq!(s.get(10).and_then(|l| l.seq), Some(10));
        // An old line coming back is still a repeat.
        assert_eq!(
            s.push(line(LineKind::Message, Some(3), "m"), true),
            Pushed::Repeat
        );
    }
}
