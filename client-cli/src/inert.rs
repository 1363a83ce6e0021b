//! Text that other people (or the relay) wrote, made inert before it reaches the terminal.
//!
//! A message, a display name, a room name, a topic, a public room's name, an invitation or
//! an error carrying the relay's words could otherwise drive the terminal: `ESC [2J` clears
//! the screen, `ESC ]0;…BEL` sets the window title, a CR or a newline followed by
//! `[12:50] <alice> …` shows a line that looks like alice's, bidi overrides reorder what is
//! shown and zero-width characters hide text.
//!
//! [`inert`] shows every such character as a visible escape in Rust's form, `\u{HEX}` with
//! lower-case hex digits: ESC becomes `\u{1b}`, CR `\u{d}`, a newline `\u{a}`, RIGHT-TO-LEFT
//! OVERRIDE `\u{202e}`. A tab becomes a space. Everything else passes unchanged, accents,
//! other scripts and emoji included. [`inert_lines`] is for message text: its lines are
//! kept, and every line after the first is set under [`CONTINUATION`], so that no line of a
//! message can pose as a new message or notice.
//!
//! What is escaped ([`escaped`]): control characters (C0, DEL, C1), the bidi embeddings,
//! overrides, isolates and marks, zero-width characters, the other invisible format
//! characters (Unicode category Cf: soft hyphen, tag characters, invisible operators…), the
//! line and paragraph separators and the invisible Hangul fillers. One exception: a
//! ZERO WIDTH JOINER between two emoji is kept, since it is how emoji such as 👩‍👩‍👧 are
//! written; it cannot hide text there.
//!
//! Handles need no pass: a `Handle` holds only `a-z`, `0-9`, `_` and `-`. JSON output needs
//! none either: serde escapes it, and scripts should get the text as it was sent.

use std::borrow::Cow;

/// Put before every line of a message after the first: it starts with spaces, so a
/// continuation line can never start with `[`, `*`, `!` or `<` as a message or notice does.
pub const CONTINUATION: &str = "  | ";

/// `text` as one inert line: every character that could drive the terminal, move the
/// cursor, reorder or hide text, line breaks included, is shown escaped (`\u{1b}`), a tab
/// as a space. Borrowed when nothing had to change.
pub fn inert(text: &str) -> Cow<'_, str> {
    let chars: Vec<char> = text.chars().collect();
    let shown = |i: usize| {
        let prev = i.checked_sub(1).map(|p| chars[p]);
        shown(prev, chars[i], chars.get(i + 1).copied())
    };
    if (0..chars.len()).all(|i| matches!(shown(i), Shown::Kept)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        match shown(i) {
            Shown::Kept => out.push(c),
            Shown::Space => out.push(' '),
            Shown::Escaped => out.extend(c.escape_unicode()),
        }
    }
    Cow::Owned(out)
}

/// Multi-line `text` (a message) made inert: split into lines at `\n` (or `\r\n`), each made
/// [`inert`], joined by a newline and [`CONTINUATION`]. A lone CR is escaped, not a break.
pub fn inert_lines(text: &str) -> Cow<'_, str> {
    if !text.contains('\n') {
        return inert(text);
    }
    let lines: Vec<Cow<'_, str>> = text
        .split('\n')
        .map(|line| inert(line.strip_suffix('\r').unwrap_or(line)))
        .collect();
    Cow::Owned(lines.join(&format!("\n{CONTINUATION}")))
}

/// How one character is shown.
enum Shown {
    /// As it is.
    Kept,
    /// As a space (a tab).
    Space,
    /// As `\u{HEX}`.
    Escaped,
}

fn shown(prev: Option<char>, c: char, next: Option<char>) -> Shown {
    if c == '\t' {
        Shown::Space
    } else if c == '\u{200d}' && prev.is_some_and(joins_from) && next.is_some_and(is_emoji) {
        Shown::Kept
    } else if escaped(c) {
        Shown::Escaped
    } else {
        Shown::Kept
    }
}

/// Whether `c` is shown escaped wherever it appears (the one exception, a joiner between
/// emoji, is decided by [`inert`]).
pub fn escaped(c: char) -> bool {
    c.is_control() || FORMAT.iter().any(|range| range.contains(&c))
}

/// Invisible characters that are not control characters: Unicode's format characters
/// (category Cf, as of Unicode 15.1), the line and paragraph separators, and fillers that
/// render as nothing.
const FORMAT: &[std::ops::RangeInclusive<char>] = &[
    '\u{ad}'..='\u{ad}',       // soft hyphen
    '\u{34f}'..='\u{34f}',     // combining grapheme joiner
    '\u{600}'..='\u{605}',     // Arabic number signs
    '\u{61c}'..='\u{61c}',     // ARABIC LETTER MARK (bidi)
    '\u{6dd}'..='\u{6dd}',     // Arabic end of ayah
    '\u{70f}'..='\u{70f}',     // Syriac abbreviation mark
    '\u{890}'..='\u{891}',     // Arabic pound and piastre marks above
    '\u{8e2}'..='\u{8e2}',     // Arabic disputed end of ayah
    '\u{115f}'..='\u{1160}',   // Hangul fillers
    '\u{17b4}'..='\u{17b5}',   // Khmer inherent vowels (invisible)
    '\u{180b}'..='\u{180f}',   // Mongolian variation selectors and vowel separator
    '\u{200b}'..='\u{200f}',   // zero width space, (non-)joiner, LRM, RLM
    '\u{2028}'..='\u{202e}',   // line/paragraph separators, bidi embeddings/overrides
    '\u{2060}'..='\u{206f}',   // word joiner, invisible operators, bidi isolates
    '\u{3164}'..='\u{3164}',   // Hangul filler
    '\u{feff}'..='\u{feff}',   // zero width no-break space (BOM)
    '\u{ffa0}'..='\u{ffa0}',   // halfwidth Hangul filler
    '\u{fff9}'..='\u{fffb}',   // interlinear annotation
    '\u{110bd}'..='\u{110bd}', // Kaithi number sign
    '\u{110cd}'..='\u{110cd}', // Kaithi number sign above
    '\u{13430}'..='\u{1343f}', // Egyptian hieroglyph format controls
    '\u{1bca0}'..='\u{1bca3}', // shorthand format controls
    '\u{1d173}'..='\u{1d17a}', // musical symbol format controls
    '\u{e0000}'..='\u{e007f}', // language tag and tag characters
];

/// Emoji, roughly: the pictographic blocks a ZERO WIDTH JOINER sequence is built from.
fn is_emoji(c: char) -> bool {
    matches!(c, '\u{2190}'..='\u{2bff}' | '\u{1f000}'..='\u{1faff}')
}

/// What may stand before a joiner inside an emoji sequence: an emoji, or the variation
/// selector that asks for emoji presentation (🏳️‍🌈).
fn joins_from(c: char) -> bool {
    is_emoji(c) || c == '\u{fe0f}'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Characters no inert output may hold (a joiner is checked on its own).
    fn hazard(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{202a}'..='\u{202e}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{200e}'
                    | '\u{200f}'
                    | '\u{61c}'
                    | '\u{200b}'
                    | '\u{200c}'
                    | '\u{2060}'
                    | '\u{feff}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{ad}'
                    | '\u{e0001}'
                    | '\u{e0020}'..='\u{e007f}'
            )
    }

    /// Every joiner left in `out` sits between two emoji.
    fn joiners_only_in_emoji(out: &str) -> bool {
        let chars: Vec<char> = out.chars().collect();
        chars.iter().enumerate().all(|(i, &c)| {
            c != '\u{200d}'
                || (i > 0
                    && joins_from(chars[i - 1])
                    && chars.get(i + 1).copied().is_some_and(is_emoji))
        })
    }

    #[test]
    fn terminal_controls_are_shown_escaped() {
        let table = [
            ("\x1b[2J", r"\u{1b}[2J"),
            ("\x1b]0;pwned\x07", r"\u{1b}]0;pwned\u{7}"),
            ("\rfake", r"\u{d}fake"),
            ("a\nb", r"a\u{a}b"),
            ("a\tb", "a b"),
            ("del\x7f", r"del\u{7f}"),
            ("c1\u{9b}2J", r"c1\u{9b}2J"),
            ("nul\0", r"nul\u{0}"),
            ("evil\u{202e}txt.exe", r"evil\u{202e}txt.exe"),
            ("\u{2066}iso\u{2069}", r"\u{2066}iso\u{2069}"),
            ("\u{200e}\u{200f}\u{61c}", r"\u{200e}\u{200f}\u{61c}"),
            ("in\u{200b}vis\u{200c}ible", r"in\u{200b}vis\u{200c}ible"),
            ("a\u{200d}b", r"a\u{200d}b"),
            ("\u{feff}bom\u{2060}", r"\u{feff}bom\u{2060}"),
            ("\u{e0041}tag", r"\u{e0041}tag"),
            ("line\u{2028}sep", r"line\u{2028}sep"),
            ("\u{3164}", r"\u{3164}"),
        ];
        for (raw, shown) in table {
            assert_eq!(inert(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn ordinary_text_passes_unchanged_and_borrowed() {
        for text in [
            "",
            "dinner at 7?",
            "Grüße aus Köln, ça va? ñandú",
            "Ελληνικά, русский, עברית, العربية, 日本語, 한국어",
            "emoji 🎉👍🏽 ❤️ and a family 👩‍👩‍👧‍👦, a flag 🏳️‍🌈, 🧑‍💻",
            "[12:50] <alice> brackets are fine on their own",
            r"a literal \u{1b} stays as typed",
        ] {
            assert!(
                matches!(inert(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
            assert!(
                matches!(inert_lines(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn message_lines_continue_under_a_marker() {
        assert_eq!(
            inert_lines("hi\n[12:50] <alice> fake"),
            "hi\n  | [12:50] <alice> fake"
        );
        assert_eq!(inert_lines("one\r\ntwo\n"), "one\n  | two\n  | ");
        assert_eq!(inert_lines("\rfake\n\x1b[2J"), "\\u{d}fake\n  | \\u{1b}[2J");
    }

    proptest! {
        #[test]
        fn no_hazard_survives(text in any::<String>()) {
            let out = inert(&text);
            prop_assert!(!out.chars().any(hazard), "{out:?}");
            prop_assert!(joiners_only_in_emoji(&out), "{out:?}");
            prop_assert!(!out.contains('\n'));
        }

        #[test]
        fn no_hazard_survives_in_hostile_mixes(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("\x1b".to_string()), Just("\r".into()), Just("\n".into()),
                    Just("\x07".into()), Just("\u{202e}".into()), Just("\u{2067}".into()),
                    Just("\u{200b}".into()), Just("\u{200d}".into()), Just("\u{feff}".into()),
                    Just("🎉".into()), Just("[12:50] <alice> ".into()), "[a-zé ]{0,5}",
                ],
                0..12,
            )
        ) {
            let text = parts.concat();
            let out = inert_lines(&text);
            prop_assert!(!out.chars().any(|c| c != '\n' && hazard(c)), "{out:?}");
            prop_assert!(joiners_only_in_emoji(&out), "{out:?}");
            for line in out.split('\n').skip(1) {
                prop_assert!(line.starts_with(CONTINUATION), "{out:?}");
            }
        }

        #[test]
        fn text_without_hazards_is_unchanged(text in "[a-zA-Z0-9 .,!?éàüßø日本🎉👍<>\\[\\]@#-]{0,40}") {
            prop_assert_eq!(inert(&text), text.as_str());
        }

        #[test]
        fn inert_is_idempotent(text in any::<String>()) {
            let once = inert(&text).into_owned();
            prop_assert_eq!(inert(&once), once.as_str());
        }
    }
}
