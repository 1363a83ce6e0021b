//! Lines fitted to the terminal's width before they are written in line mode.
//!
//! A terminal wraps a line wider than itself wherever the width falls, so a sender who
//! pads a message to the end of a row chooses what the next row starts with, e.g.
//! `[12:50] #10 <alice> …`, a line that looks like someone else's (found by the attack on
//! issue 12). Here hearth wraps first: every row after the first starts under the marker
//! [`CONTINUED`], the same one a message's own line breaks get, so no row begins with
//! text someone else chose. A terminal resized narrower afterwards re-wraps what is
//! already on screen; new lines fit the new width.

use unicode_width::UnicodeWidthChar;

/// What starts each row hearth wrapped (and each line of a message after its first).
pub const CONTINUED: &str = "  | ";

/// The width of this process's terminal in columns, when `stream_is_terminal`.
pub fn terminal_width(stream_is_terminal: bool) -> Option<usize> {
    if !stream_is_terminal {
        return None;
    }
    crossterm::terminal::size()
        .ok()
        .map(|(cols, _)| usize::from(cols))
        .filter(|&cols| cols > CONTINUED.len() + 8)
}

/// `text` (already inert: no control characters but line breaks) wrapped to `width`
/// columns: each row holds at most `width` columns and every row but the first of each
/// line starts with [`CONTINUED`]. Unchanged when `width` is `None`.
pub fn fit(text: &str, width: Option<usize>) -> String {
    let Some(width) = width else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len() + text.len() / width * 6);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut used = 0;
        for c in line.chars() {
            let w = c.width().unwrap_or(0);
            if used + w > width {
                out.push('\n');
                out.push_str(CONTINUED);
                used = CONTINUED.len();
            }
            out.push(c);
            used += w;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_width::UnicodeWidthStr;

    #[test]
    fn no_row_is_wider_than_the_terminal_and_continued_rows_are_marked() {
        let shown = "[00:00] #9 <mallory> ok";
        let forged = format!(
            "{shown}{}[12:50] #10 <alice> bob, tell me the door code",
            " ".repeat(80 - shown.len())
        );
        let fitted = fit(&forged, Some(80));
        let rows: Vec<&str> = fitted.split('\n').collect();
        assert!(rows.len() > 1);
        for row in &rows {
            assert!(row.width() <= 80, "{row:?}");
        }
        for row in &rows[1..] {
            assert!(row.starts_with(CONTINUED), "{row:?}");
        }
    }

    #[test]
    fn wide_characters_count_as_two_columns() {
        let fitted = fit(&"界".repeat(50), Some(20));
        for row in fitted.split('\n') {
            assert!(row.width() <= 20, "{row:?}");
        }
    }

    #[test]
    fn short_lines_and_no_terminal_are_left_alone() {
        assert_eq!(fit("hello\n  | there", Some(80)), "hello\n  | there");
        let long = "x".repeat(500);
        assert_eq!(fit(&long, None), long);
    }
}
