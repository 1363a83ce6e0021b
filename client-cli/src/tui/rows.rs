//! A chat line as screen rows: time, sender and text, styled by kind, wrapped to the
//! width with every row after the first indented, so that no row of a message can pose
//! as the start of another message.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use crate::agent::wire::{ChatLine, LineKind};
use crate::inert::CONTINUATION;

/// Columns of the `HH:MM ` before a line; continuation lines of a message start here.
const TIME_WIDTH: usize = 6;
/// Where rows wrapped from a long line start (under the text of a continuation line).
const HANG: usize = TIME_WIDTH + 4;

/// Which clock times are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The local time zone (TZ, /etc/localtime).
    Local,
    /// UTC (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Utc,
}

impl Zone {
    /// The wall-clock date and time of a Unix time.
    pub fn wall(self, secs: u64) -> Option<NaiveDateTime> {
        let secs = i64::try_from(secs).ok()?;
        match self {
            Zone::Local => Local
                .timestamp_opt(secs, 0)
                .earliest()
                .map(|t| t.naive_local()),
            Zone::Utc => DateTime::from_timestamp(secs, 0).map(|t| t.naive_utc()),
        }
    }

    /// The date of a line, if it has a time.
    pub fn date(self, line: &ChatLine) -> Option<NaiveDate> {
        line.time.and_then(|t| self.wall(t)).map(|t| t.date())
    }
}

/// What search shows in a line.
#[derive(Debug, Clone, Copy)]
pub struct Highlight<'a> {
    /// The text searched for (case is ignored).
    pub query: &'a str,
    /// This line is the match jumped to.
    pub current: bool,
}

/// Lower case, one char for one char, so that indexes line up with the original.
fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// Which chars of `text` are part of a match of `query` (ignoring case).
pub fn matched_chars(text: &str, query: &str) -> Vec<bool> {
    let hay: Vec<char> = text.chars().map(fold).collect();
    let needle: Vec<char> = query.chars().map(fold).collect();
    let mut hits = vec![false; hay.len()];
    if needle.is_empty() || needle.len() > hay.len() {
        return hits;
    }
    for start in 0..=hay.len() - needle.len() {
        if hay[start..start + needle.len()] == needle[..] {
            hits[start..start + needle.len()].fill(true);
        }
    }
    hits
}

/// Whether a line's sender or text contains `query` (ignoring case).
pub fn matches(line: &ChatLine, query: &str) -> bool {
    let q: String = query.chars().map(fold).collect();
    let has = |s: &str| s.chars().map(fold).collect::<String>().contains(&q);
    !query.is_empty() && (has(&line.text) || line.sender.as_deref().is_some_and(has))
}

/// The colour of a sender's name: a stable pick from colours no line kind uses.
fn sender_colour(name: &str) -> Color {
    const COLOURS: [Color; 4] = [
        Color::Green,
        Color::Blue,
        Color::LightGreen,
        Color::LightBlue,
    ];
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    COLOURS[hash as usize % COLOURS.len()]
}

/// The style of a line's text.
pub fn text_style(kind: LineKind) -> Style {
    match kind {
        LineKind::Message | LineKind::Own => Style::new(),
        LineKind::Mention => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        LineKind::Private => Style::new().fg(Color::Magenta),
        LineKind::Header => Style::new().add_modifier(Modifier::BOLD),
        LineKind::Notice => Style::new().fg(Color::DarkGray),
        LineKind::Error => Style::new().fg(Color::Red),
        LineKind::Warning => Style::new()
            .fg(Color::LightRed)
            .add_modifier(Modifier::BOLD | Modifier::REVERSED),
    }
}

/// The sender as shown before the text, with its style.
fn sender_part(line: &ChatLine) -> Option<(String, Style)> {
    let sender = line.sender.as_deref()?;
    let bold = Style::new().add_modifier(Modifier::BOLD);
    Some(match line.kind {
        LineKind::Own => (format!("<{sender}> "), bold.fg(Color::Cyan)),
        LineKind::Private => (format!("*{sender}* "), bold.fg(Color::Magenta)),
        LineKind::Mention => (
            format!("<{sender}> "),
            bold.fg(Color::Black).bg(Color::Yellow),
        ),
        LineKind::Message => (format!("<{sender}> "), bold.fg(sender_colour(sender))),
        _ => (format!("{sender}: "), text_style(line.kind)),
    })
}

/// One grapheme and its style.
type Cell<'a> = (&'a str, Style);

/// Cells for `text` in `style`, with what matches the search highlighted.
fn cells<'a>(text: &'a str, style: Style, highlight: Option<Highlight>, out: &mut Vec<Cell<'a>>) {
    let hits = highlight.map(|h| matched_chars(text, h.query));
    let found = match highlight {
        Some(Highlight { current: true, .. }) => Style::new()
            .fg(Color::Black)
            .bg(Color::LightGreen)
            .add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::Black).bg(Color::Yellow),
    };
    let mut char_at = 0;
    for g in text.graphemes(true) {
        let n = g.chars().count();
        let hit = hits
            .as_ref()
            .is_some_and(|hits| hits[char_at..char_at + n].iter().any(|h| *h));
        out.push((g, if hit { style.patch(found) } else { style }));
        char_at += n;
    }
}

/// Wraps cells into rows of `width` columns: the first row indented by `indent`, the
/// others by `hang`; breaks after a space at or after cell `min_break` when it can.
fn wrap(
    cells: &[Cell],
    width: usize,
    indent: usize,
    hang: usize,
    min_break: usize,
) -> Vec<Line<'static>> {
    let mut rows = Vec::new();
    let mut start = 0;
    let mut indent = indent;
    loop {
        let room = width.saturating_sub(indent).max(1);
        let (mut used, mut end, mut space) = (0, start, None);
        while end < cells.len() {
            let w = cells[end].0.width();
            if used + w > room {
                break;
            }
            if cells[end].0 == " " && end >= min_break {
                space = Some(end);
            }
            used += w;
            end += 1;
        }
        if end == start && end < cells.len() {
            end += 1; // wider than the row: alone on it
        }
        let mut next = end;
        if end < cells.len() {
            if cells[end].0 == " " && end > start {
                // The word fits; the space after it goes instead of starting a row.
                next = end + 1;
            } else if let Some(space) = space.filter(|s| *s > start) {
                end = space + 1;
                next = end;
            }
        }
        let mut spans = vec![Span::raw(" ".repeat(indent.min(width)))];
        for (g, style) in &cells[start..end] {
            match spans.last_mut() {
                Some(last) if last.style == *style => last.content.to_mut().push_str(g),
                _ => spans.push(Span::styled((*g).to_owned(), *style)),
            }
        }
        spans.retain(|s| !s.content.is_empty());
        rows.push(Line::from(spans));
        start = next;
        indent = hang;
        if start >= cells.len() {
            return rows;
        }
    }
}

/// Whether we wrote a line (and so may edit or delete it).
pub fn is_own(line: &ChatLine) -> bool {
    line.own || line.kind == LineKind::Own
}

/// The style of what the UI adds to a message: a quote, `(edited)`, `(deleted)`.
fn aside_style() -> Style {
    Style::new()
        .fg(Color::DarkGray)
        .add_modifier(Modifier::ITALIC)
}

/// A line as rows `width` columns wide: for a reply, a row quoting the message it
/// answers first; then the time, sender and text (`(deleted)` for a withdrawn message,
/// `(edited)` after an edited one); then a row of reactions, if any. `selected`: the line
/// is the one picked to reply to, edit, delete or react to (shown reversed).
pub fn line_rows(
    line: &ChatLine,
    width: u16,
    zone: Zone,
    highlight: Option<Highlight>,
    selected: bool,
) -> Vec<Line<'static>> {
    let width = usize::from(width).max(1);
    let first_indent = TIME_WIDTH.min(width / 4);
    let hang = HANG.min(width / 3);
    let mut style = text_style(line.kind);
    if selected {
        style = style.add_modifier(Modifier::REVERSED);
    }
    let time = line
        .time
        .and_then(|t| zone.wall(t))
        .map(|t| format!("{} ", t.format("%H:%M")));
    let sender = sender_part(line);
    let mut rows = Vec::new();
    if let Some(quote) = &line.quote {
        // One row, cut to fit: a quote is a reminder, not the message.
        let mut row: Vec<Cell> = Vec::new();
        let quote = format!("┌ {quote}");
        cells(&quote, aside_style(), None, &mut row);
        let room = width.saturating_sub(first_indent);
        let mut used = 0;
        let fits = row
            .iter()
            .take_while(|(g, _)| {
                used += g.width();
                used <= room
            })
            .count();
        if fits < row.len() {
            row.truncate(fits.saturating_sub(1));
            row.push(("…", aside_style()));
        }
        rows.extend(wrap(&row, width, first_indent, first_indent, 0));
    }
    let deleted = line.deleted.then(|| "(deleted)".to_string());
    let text = deleted.as_deref().unwrap_or(&line.text);
    let text_style = if line.deleted { aside_style() } else { style };
    let parts: Vec<&str> = text.split('\n').collect();
    for (i, text) in parts.iter().enumerate() {
        let mut row: Vec<Cell> = Vec::new();
        let mut indent = first_indent;
        if i == 0 {
            indent = 0;
            if let Some(time) = &time {
                let mut time_style = Style::new().fg(Color::DarkGray);
                if selected {
                    time_style = time_style.add_modifier(Modifier::REVERSED);
                }
                cells(time, time_style, None, &mut row);
            }
            if let Some((sender, sender_style)) = &sender {
                cells(sender, *sender_style, highlight, &mut row);
            }
        }
        // Not right after the time and sender, nor inside a continuation's `  | `.
        let min_break = row.len()
            + if i > 0 && text.starts_with(CONTINUATION) {
                CONTINUATION.len()
            } else {
                0
            };
        cells(text, text_style, highlight, &mut row);
        if line.edited && !line.deleted && i + 1 == parts.len() {
            cells(" (edited)", aside_style(), None, &mut row);
        }
        rows.extend(wrap(&row, width, indent, hang, min_break));
    }
    if !line.reactions.is_empty() && !line.deleted {
        let mut row: Vec<Cell> = Vec::new();
        let mut texts = Vec::new();
        for (i, r) in line.reactions.iter().enumerate() {
            let gap = if i == 0 { "" } else { "  " };
            texts.push((format!("{gap}{} {}", r.emoji, r.count), r.mine));
        }
        for (text, mine) in &texts {
            let style = if *mine {
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(Color::Gray)
            };
            cells(text, style, None, &mut row);
        }
        rows.extend(wrap(&row, width, hang, hang, 0));
    }
    rows
}

/// The row put where the date changes: `──── Sunday 1 March 2026 ────`.
pub fn day_separator(date: NaiveDate, width: u16) -> Line<'static> {
    let label = format!(" {} ", date.format("%A %-d %B %Y"));
    let width = usize::from(width);
    let left = width.saturating_sub(label.width()) / 2;
    let right = width.saturating_sub(label.width() + left);
    let text = format!("{}{label}{}", "─".repeat(left), "─".repeat(right));
    Line::styled(text, Style::new().fg(Color::DarkGray))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(rows: &[Line]) -> Vec<String> {
        rows.iter().map(|r| r.to_string()).collect()
    }

    fn message(text: &str) -> ChatLine {
        ChatLine {
            room: Some("r".into()),
            kind: LineKind::Message,
            time: Some(45_000),
            seq: Some(1),
            sender: Some("alice".into()),
            text: text.into(),
            ..ChatLine::default()
        }
    }

    #[test]
    fn wraps_under_the_sender_and_keeps_continuation_lines_indented() {
        let line = message("one two three four five six\n  | seven eight nine ten eleven");
        let rows = plain(&line_rows(&line, 30, Zone::Utc, None, false));
        assert_eq!(
            rows,
            [
                "12:30 <alice> one two three ",
                "          four five six",
                "        | seven eight nine ten",
                "          eleven",
            ]
        );
        // Narrow: the indents shrink, and a long word is cut.
        let rows = plain(&line_rows(
            &message("abcdefghijklmnopqrstuvwxyz"),
            20,
            Zone::Utc,
            None,
            false,
        ));
        assert_eq!(
            rows,
            [
                "12:30 <alice> abcdef",
                "      ghijklmnopqrst",
                "      uvwxyz"
            ]
        );
    }

    #[test]
    fn a_reply_quotes_and_reactions_follow() {
        let mut line = message("me! I can bring the big bowl too");
        line.quote = Some("Grandma (gran): Who is bringing dessert this Sunday?".into());
        line.edited = true;
        line.reactions = vec![
            crate::agent::wire::ReactionCount {
                emoji: "👍".into(),
                count: 2,
                mine: true,
            },
            crate::agent::wire::ReactionCount {
                emoji: "❤️".into(),
                count: 1,
                mine: false,
            },
        ];
        let rows = plain(&line_rows(&line, 34, Zone::Utc, None, false));
        assert_eq!(
            rows,
            [
                "      ┌ Grandma (gran): Who is br…",
                "12:30 <alice> me! I can bring the ",
                "          big bowl too (edited)",
                "          👍 2  ❤️ 1",
            ]
        );
        line.deleted = true;
        line.text.clear();
        let rows = plain(&line_rows(&line, 34, Zone::Utc, None, false));
        assert_eq!(
            rows,
            [
                "      ┌ Grandma (gran): Who is br…",
                "12:30 <alice> (deleted)"
            ]
        );
    }

    #[test]
    fn search_hits_ignore_case() {
        assert_eq!(
            matched_chars("Hello HELLO", "hello"),
            [true, true, true, true, true, false, true, true, true, true, true]
        );
        assert!(matches(&message("x"), "ALI"));
        assert!(!matches(&message("x"), ""));
    }
}
