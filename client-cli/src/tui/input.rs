//! The input line: a one-line editor that moves by grapheme clusters (an accented letter
//! or a family emoji is one step), and the history of typed lines.

use std::collections::VecDeque;

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// How many typed lines the history keeps.
pub const HISTORY: usize = 500;

/// The text being typed and the cursor in it (a byte offset on a grapheme boundary).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LineEditor {
    text: String,
    cursor: usize,
}

impl LineEditor {
    /// The text typed so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor's byte offset.
    #[cfg(test)]
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Replaces the text, cursor at the end.
    pub fn set(&mut self, text: &str) {
        self.text = text.to_owned();
        self.cursor = self.text.len();
    }

    /// Takes the text out, leaving the editor empty.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// Inserts text at the cursor. Control characters (a pasted newline, a tab) become
    /// spaces: one typed line is one chat line.
    pub fn insert(&mut self, text: &str) {
        let clean: String = text
            .chars()
            .filter(|c| *c != '\r')
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
    }

    /// The grapheme boundary before the cursor.
    fn prev(&self) -> usize {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    /// The grapheme boundary after the cursor.
    fn next(&self) -> usize {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map_or(self.cursor, |g| self.cursor + g.len())
    }

    /// One grapheme left.
    pub fn left(&mut self) {
        self.cursor = self.prev();
    }

    /// One grapheme right.
    pub fn right(&mut self) {
        self.cursor = self.next();
    }

    /// To the start of the line.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// To the end of the line.
    pub fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// The start of the word before the cursor (words are separated by whitespace).
    fn word_start(&self) -> usize {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8())
    }

    /// The end of the word after the cursor.
    fn word_end(&self) -> usize {
        let after = &self.text[self.cursor..];
        let skipped = after.len() - after.trim_start().len();
        let rest = &after[skipped..];
        let word = rest.find(char::is_whitespace).unwrap_or(rest.len());
        self.cursor + skipped + word
    }

    /// One word left (Ctrl-Left, Alt-B).
    pub fn word_left(&mut self) {
        self.cursor = self.word_start();
    }

    /// One word right (Ctrl-Right, Alt-F).
    pub fn word_right(&mut self) {
        self.cursor = self.word_end();
    }

    /// Deletes the grapheme before the cursor (Backspace).
    pub fn backspace(&mut self) {
        let from = self.prev();
        self.text.replace_range(from..self.cursor, "");
        self.cursor = from;
    }

    /// Deletes the grapheme under the cursor (Delete, Ctrl-D on a non-empty line).
    pub fn delete(&mut self) {
        let to = self.next();
        self.text.replace_range(self.cursor..to, "");
    }

    /// Deletes from the start of the line to the cursor (Ctrl-U).
    pub fn kill_to_start(&mut self) {
        self.text.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    /// Deletes from the cursor to the end of the line (Ctrl-K).
    pub fn kill_to_end(&mut self) {
        self.text.truncate(self.cursor);
    }

    /// Deletes the word before the cursor and the spaces after it (Ctrl-W).
    pub fn kill_word(&mut self) {
        let from = self.word_start();
        self.text.replace_range(from..self.cursor, "");
        self.cursor = from;
    }

    /// Display column of the cursor.
    pub fn cursor_column(&self) -> usize {
        self.text[..self.cursor].width()
    }

    /// The first column to show in a field `width` columns wide, given the one shown
    /// before: unchanged while the cursor stays in view, else moved just enough (the
    /// cursor needs a column of its own at the end).
    pub fn scroll(&self, width: usize, before: usize) -> usize {
        let width = width.max(1);
        let column = self.cursor_column();
        let offset = if column < before {
            column
        } else if column >= before + width {
            column + 1 - width
        } else {
            before
        };
        // No empty columns on the right while text is hidden on the left (after deleting).
        offset.min((self.text.width() + 1).saturating_sub(width))
    }

    /// The part of the text shown from column `offset` in a field `width` columns wide,
    /// and the cursor's column in that field.
    pub fn visible(&self, offset: usize, width: usize) -> (String, usize) {
        let mut shown = String::new();
        let mut column = 0;
        let mut used = 0;
        for g in self.text.graphemes(true) {
            let w = g.width();
            if column >= offset && used + w <= width {
                shown.push_str(g);
                used += w;
            } else if column < offset && column + w > offset {
                // A wide character cut by the left edge: a space in its place.
                let part = column + w - offset;
                shown.extend(std::iter::repeat_n(' ', part));
                used += part;
            }
            column += w;
        }
        (shown, self.cursor_column().saturating_sub(offset))
    }
}

/// Lines typed before, walked with Up and Down; the line being typed is kept aside
/// while walking and comes back below the newest entry.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<String>,
    /// Where the walk is (an index into `entries`), if walking.
    at: Option<usize>,
    /// What was typed before the walk began.
    draft: String,
}

impl History {
    /// Remembers a typed line (not an empty one, not the same line twice in a row).
    pub fn push(&mut self, line: &str) {
        self.at = None;
        if line.trim().is_empty() || self.entries.back().is_some_and(|l| l == line) {
            return;
        }
        if self.entries.len() == HISTORY {
            self.entries.pop_front();
        }
        self.entries.push_back(line.to_owned());
    }

    /// One line older (Up): puts it in the editor.
    pub fn older(&mut self, editor: &mut LineEditor) {
        let at = match self.at {
            None if self.entries.is_empty() => return,
            None => {
                self.draft = editor.text().to_owned();
                self.entries.len() - 1
            }
            Some(at) => at.saturating_sub(1),
        };
        self.at = Some(at);
        editor.set(&self.entries[at]);
    }

    /// One line newer (Down): the draft again after the newest.
    pub fn newer(&mut self, editor: &mut LineEditor) {
        let Some(at) = self.at else { return };
        if at + 1 < self.entries.len() {
            self.at = Some(at + 1);
            editor.set(&self.entries[at + 1]);
        } else {
            self.at = None;
            let draft = std::mem::take(&mut self.draft);
            editor.set(&draft);
        }
    }

    /// How many lines it holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor(text: &str) -> LineEditor {
        let mut e = LineEditor::default();
        e.insert(text);
        e
    }

    #[test]
    fn moves_and_deletes_by_grapheme() {
        // An e with a combining accent, and a family emoji joined with ZWJs.
        let mut e = editor("ae\u{301}👩\u{200d}👩\u{200d}👧z");
        e.left();
        e.left();
        e.backspace();
        assert_eq!(e.text(), "a👩\u{200d}👩\u{200d}👧z");
        e.delete();
        assert_eq!(e.text(), "az");
        e.home();
        e.delete();
        e.end();
        e.backspace();
        assert_eq!(e.text(), "");
        e.backspace();
        e.delete();
        e.left();
        e.right();
        assert_eq!(e.cursor(), 0);
    }

    #[test]
    fn kills_words_and_line_parts() {
        let mut e = editor("hello big  world");
        e.kill_word();
        assert_eq!(e.text(), "hello big  ");
        e.kill_word();
        assert_eq!(e.text(), "hello ");
        e.insert("there");
        e.word_left();
        assert_eq!(e.cursor(), 6);
        e.kill_to_end();
        assert_eq!(e.text(), "hello ");
        e.home();
        e.word_right();
        assert_eq!(e.cursor(), 5);
        e.kill_to_start();
        assert_eq!((e.text(), e.cursor()), (" ", 0));
    }

    #[test]
    fn pasted_controls_become_spaces() {
        let e = editor("one\r\ntwo\tthree\u{1b}[2J");
        assert_eq!(e.text(), "one two three [2J");
    }

    #[test]
    fn scrolls_horizontally_to_keep_the_cursor_in_view() {
        let mut e = editor("0123456789abcdef");
        let offset = e.scroll(10, 0);
        assert_eq!(offset, 7);
        let (shown, cursor) = e.visible(offset, 10);
        assert_eq!((shown.as_str(), cursor), ("789abcdef", 9));
        // Moving left inside the field does not scroll.
        e.left();
        e.left();
        assert_eq!(e.scroll(10, offset), 7);
        e.home();
        let offset = e.scroll(10, 7);
        assert_eq!(offset, 0);
        assert_eq!(e.visible(offset, 10), ("0123456789".to_owned(), 0));
        // Wide characters are not split at the right edge.
        let e = editor("日本語テキスト");
        let (shown, cursor) = e.visible(e.scroll(6, 0), 6);
        assert_eq!((shown.as_str(), cursor), (" スト", 5));
    }

    #[test]
    fn history_walks_and_keeps_the_draft() {
        let mut h = History::default();
        let mut e = LineEditor::default();
        h.push("first");
        h.push("second");
        h.push("second");
        h.push("   ");
        assert_eq!(h.len(), 2);
        e.insert("draft");
        h.older(&mut e);
        assert_eq!(e.text(), "second");
        h.older(&mut e);
        h.older(&mut e);
        assert_eq!(e.text(), "first");
        h.newer(&mut e);
        assert_eq!(e.text(), "second");
        h.newer(&mut e);
        assert_eq!(e.text(), "draft");
        h.newer(&mut e);
        assert_eq!(e.text(), "draft");
        for i in 0..HISTORY + 5 {
            h.push(&i.to_string());
        }
        assert_eq!(h.len(), HISTORY);
    }
}
