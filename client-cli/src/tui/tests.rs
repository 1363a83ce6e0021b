//! Snapshot tests of the main screens, drawn on ratatui's `TestBackend`. The expected
//! screens are in tests/snapshots/tui-*.txt; set `UPDATE_SNAPSHOTS=1` to rewrite them
//! after a deliberate change (and read the diff).

use std::path::PathBuf;

use crossterm::event::KeyCode;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

use super::app::tests::{ctrl, key, typed};
use super::app::App;
use super::draw;
use super::rows::Zone;
use crossterm::event::{KeyEvent, KeyModifiers};

use super::app::{Focus, Outcome};
use crate::agent::wire::{
    ChatLine, ChatView, InvitationEntry, LineKind, MemberEntry, ReactionCount, RoomEntry,
};

/// 2026-03-01 (a Sunday) 09:00 UTC.
const SUNDAY: u64 = 1_772_355_600;
const DAY: u64 = 86_400;

fn buffer_text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut row = String::new();
        let mut skip = 0;
        for x in 0..buffer.area.width {
            let symbol = buffer[(x, y)].symbol();
            if skip > 0 {
                skip -= 1;
                continue;
            }
            row.push_str(symbol);
            skip = unicode_width::UnicodeWidthStr::width(symbol).saturating_sub(1);
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

fn render(app: &mut App, width: u16, height: u16) -> Buffer {
    app.resize(Rect::new(0, 0, width, height));
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw::draw(frame, app)).unwrap();
    terminal.backend().buffer().clone()
}

fn check(name: &str, buffer: &Buffer) {
    let actual = buffer_text(buffer);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("tui-{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}: run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "screen {name} changed; UPDATE_SNAPSHOTS=1 if deliberate:\n{actual}"
    );
}

fn chat(kind: LineKind, time: u64, seq: u64, sender: &str, text: &str) -> ChatLine {
    ChatLine {
        room: Some("f00d".into()),
        kind,
        time: Some(time),
        seq: Some(seq),
        sender: Some(sender.into()),
        text: text.into(),
        ..ChatLine::default()
    }
}

fn notice(room: Option<&str>, kind: LineKind, text: &str) -> ChatLine {
    ChatLine {
        room: room.map(Into::into),
        kind,
        time: None,
        seq: None,
        sender: None,
        text: text.into(),
        ..ChatLine::default()
    }
}

fn member(name: &str, role: &str, verified: bool, online: bool) -> MemberEntry {
    MemberEntry {
        name: name.into(),
        role: role.into(),
        verified,
        changed: false,
        online,
        me: false,
    }
}

/// Gran's family chat: three rooms, an invitation, four members, a day of messages.
fn family() -> App {
    let mut app = App::new(Rect::new(0, 0, 80, 24), Zone::Utc, true);
    let room = |id: &str, label: &str, direct: bool| RoomEntry {
        id: id.into(),
        label: label.into(),
        direct,
    };
    let mut me = member("Grandma (gran)", "owner", false, true);
    me.me = true;
    let mut bob = member("bob", "member", false, false);
    bob.changed = true;
    app.view(ChatView {
        me: "gran".into(),
        relay: "home.example:4433".into(),
        connected: true,
        queued: 0,
        current: Some("f00d".into()),
        rooms: vec![
            room("f00d", "family", false),
            room("beef", "kids", false),
            room("cafe", "@alice", true),
        ],
        invitations: vec![InvitationEntry {
            id: "dead".into(),
            name: "garden".into(),
            from: "bob".into(),
        }],
        members: vec![
            me,
            member("alice", "admin", true, true),
            bob,
            member("Carol (carol)", "member", true, true),
        ],
        topic: Some("Sunday lunch at noon".into()),
    });
    app.line(notice(
        Some("f00d"),
        LineKind::Header,
        "--- #family: the last 50 messages ---",
    ));
    app.line(chat(
        LineKind::Message,
        SUNDAY,
        1,
        "alice",
        "Who is bringing dessert?",
    ));
    app.line(chat(
        LineKind::Own,
        SUNDAY + 120,
        2,
        "Grandma (gran)",
        "I will make the apple cake.",
    ));
    app.line(chat(
        LineKind::Message,
        SUNDAY + 300,
        3,
        "Carol (carol)",
        "Lovely! The kids want to help with the baking, can they come over early?",
    ));
    app.line(chat(
        LineKind::Message,
        SUNDAY + DAY + 3_600,
        4,
        "alice",
        "Shopping list:\n  | flour\n  | apples\n  | cream",
    ));
    app.line(notice(Some("f00d"), LineKind::Notice, "* bob joined"));
    app.line(chat(
        LineKind::Mention,
        SUNDAY + DAY + 4_000,
        5,
        "Carol (carol)",
        "gran, what time should we come?",
    ));
    app.line(notice(
        Some("f00d"),
        LineKind::Warning,
        "!! bob's key changed: check it with hearth verify bob",
    ));
    app.line(notice(
        None,
        LineKind::Error,
        "! unknown command /frobnicate: try /help",
    ));
    // Other rooms: unread, one with a mention.
    app.line(ChatLine {
        room: Some("beef".into()),
        ..chat(LineKind::Message, SUNDAY + DAY, 1, "carol", "homework done")
    });
    app.line(ChatLine {
        room: Some("beef".into()),
        ..chat(LineKind::Message, SUNDAY + DAY, 2, "carol", "can we play?")
    });
    app.line(ChatLine {
        room: Some("cafe".into()),
        ..chat(LineKind::Private, SUNDAY + DAY, 1, "alice", "psst")
    });
    typed(&mut app, "See you at noon 🍰");
    app
}

#[test]
fn the_main_screen_at_80x24() {
    let mut app = family();
    let screen = render(&mut app, 80, 24);
    check("80x24", &screen);
    // The cursor line: the input keeps what is typed while lines arrive.
    assert_eq!(app.input.text(), "See you at noon 🍰");
    let text = buffer_text(&screen);
    let row = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() as u16;
    let col = |needle: &str| {
        let line = text.lines().nth(row(needle).into()).unwrap();
        unicode_width::UnicodeWidthStr::width(&line[..line.find(needle).unwrap()]) as u16
    };
    // The warning stands out; the mention is highlighted; the current room is reversed.
    let warning = &screen[(col("!! bob"), row("!! bob"))];
    assert!(warning
        .modifier
        .contains(Modifier::BOLD | Modifier::REVERSED));
    assert_eq!(
        screen[(col("gran, what"), row("gran, what"))].fg,
        Color::Yellow
    );
    assert_eq!(screen[(col("! unknown"), row("! unknown"))].fg, Color::Red);
    assert!(screen[(1, row("#family "))]
        .modifier
        .contains(Modifier::REVERSED));
    assert_eq!(
        screen[(col("* bob joined"), row("* bob joined"))].fg,
        Color::DarkGray
    );
}

#[test]
fn narrower_screens_drop_the_members_pane_then_the_rooms_pane() {
    let mut app = family();
    check("60x20", &render(&mut app, 60, 20));
    check("40x12", &render(&mut app, 40, 12));
}

#[test]
fn the_rooms_pane_answers_an_invitation() {
    let mut app = family();
    app.key(key(KeyCode::Tab));
    check("invitation", &render(&mut app, 80, 24));
}

#[test]
fn the_search_prompt_highlights_matches() {
    let mut app = family();
    app.key(ctrl('f'));
    typed(&mut app, "BoB");
    let screen = render(&mut app, 80, 24);
    check("search", &screen);
    let text = buffer_text(&screen);
    let at = |needle: &str| {
        let y = text.lines().position(|l| l.contains(needle)).unwrap();
        let row = text.lines().nth(y).unwrap();
        let x = unicode_width::UnicodeWidthStr::width(&row[..row.find(needle).unwrap()]);
        (x as u16, y as u16)
    };
    // The match jumped to (the newest) stands out, the other match is highlighted, the
    // text around them is not.
    let (x, y) = at("bob's key");
    assert_eq!(screen[(x, y)].bg, Color::LightGreen);
    assert_eq!(screen[(x + 2, y)].bg, Color::LightGreen);
    assert_ne!(screen[(x + 3, y)].bg, Color::LightGreen);
    let (x, y) = at("bob joined");
    assert_eq!(screen[(x, y)].bg, Color::Yellow);
    assert_eq!(screen[(x - 1, y)].bg, Color::Reset);
    assert_eq!(screen[(x + 3, y)].bg, Color::Reset);
}

/// The family chat after a reply, an edit, a deletion and reactions came in.
fn changed_family() -> App {
    let mut app = family();
    app.line(ChatLine {
        quote: Some("Carol (carol): gran, what time should we come?".into()),
        own: true,
        ..chat(
            LineKind::Own,
            SUNDAY + DAY + 4_100,
            6,
            "Grandma (gran)",
            "At eleven, the oven needs time",
        )
    });
    // Seq 1 edited, with reactions; seq 4 deleted: they take their old places.
    app.line(ChatLine {
        edited: true,
        reactions: vec![
            ReactionCount {
                emoji: "👍".into(),
                count: 2,
                mine: true,
            },
            ReactionCount {
                emoji: "❤️".into(),
                count: 1,
                mine: false,
            },
        ],
        ..chat(
            LineKind::Message,
            SUNDAY,
            1,
            "alice",
            "Who is bringing the dessert?",
        )
    });
    app.line(ChatLine {
        deleted: true,
        ..chat(LineKind::Message, SUNDAY + DAY + 3_600, 4, "alice", "")
    });
    app.key(ctrl('u'));
    app
}

#[test]
fn replies_edits_deletions_and_reactions_show_in_place() {
    let mut app = changed_family();
    let screen = render(&mut app, 80, 24);
    check("changes", &screen);
    let text = buffer_text(&screen);
    assert!(text.contains("09:00 <alice> Who is bringing the dessert?"));
    assert!(
        text.contains("│          (edited)  "),
        "wrapped under the message"
    );
    assert!(text.contains("👍 2  ❤️ 1"));
    assert!(text.contains("10:00 <alice> (deleted)"));
    assert!(!text.contains("flour"), "a deleted message keeps no text");
    assert!(
        text.contains("┌ Carol (carol): gran, what time sho…"),
        "cut to one row"
    );
    let texts: Vec<_> = app
        .room("f00d")
        .unwrap()
        .lines()
        .iter()
        .filter_map(|l| l.seq)
        .collect();
    assert_eq!(
        texts,
        [1, 2, 3, 4, 5, 6],
        "changed messages keep their places"
    );
    // Our own reaction stands out.
    let y = text.lines().position(|l| l.contains("👍 2")).unwrap();
    let row = text.lines().nth(y).unwrap();
    let x = unicode_width::UnicodeWidthStr::width(&row[..row.find("👍").unwrap()]) as u16;
    assert_eq!(screen[(x, y as u16)].fg, Color::Cyan);
}

#[test]
fn a_selected_message_is_replied_to_edited_deleted_and_reacted_to() {
    let mut app = changed_family();
    app.key(KeyEvent::new(KeyCode::Up, KeyModifiers::SHIFT));
    assert_eq!(
        app.focus,
        Focus::Select(9),
        "the newest message: ours, seq 6"
    );
    let screen = render(&mut app, 80, 24);
    check("select", &screen);
    let text = buffer_text(&screen);
    assert!(text.lines().last().unwrap().contains("#6:"));
    assert!(text.contains("e edit · d delete"));
    // The selected line is drawn reversed.
    let y = text.lines().position(|l| l.contains("At eleven")).unwrap() as u16;
    assert!(screen[(20, y)].modifier.contains(Modifier::REVERSED));

    // r: a reply to it, typed at once; Enter sends it and the mark goes.
    app.key(key(KeyCode::Char('r')));
    assert_eq!((app.focus, app.input.text()), (Focus::Input, "/reply 6 "));
    assert_eq!(app.selected(), Some(9));
    typed(&mut app, "or ten");
    assert_eq!(
        app.key(key(KeyCode::Enter)),
        Outcome::Send("/reply 6 or ten".into())
    );
    assert_eq!(app.selected(), None);

    // Up: older messages. Not ours: no edit, no delete.
    app.key(key(KeyCode::F(2)));
    app.key(key(KeyCode::Up));
    assert_eq!(app.focus, Focus::Select(6), "Carol's, seq 5");
    app.key(key(KeyCode::Char('e')));
    app.key(key(KeyCode::Char('d')));
    assert_eq!(app.focus, Focus::Select(6));
    app.key(key(KeyCode::Char('+')));
    assert_eq!(app.input.text(), "/react 5 ");
    // Esc drops the command and the mark.
    app.key(key(KeyCode::Esc));
    assert_eq!((app.input.text(), app.selected()), ("", None));

    // Ours: edit starts from the text, delete waits for Enter.
    app.key(key(KeyCode::F(2)));
    for _ in 0..4 {
        app.key(key(KeyCode::Up));
    }
    assert_eq!(app.focus, Focus::Select(2), "ours, seq 2");
    app.key(key(KeyCode::Char('e')));
    assert_eq!(app.input.text(), "/edit 2 I will make the apple cake.");
    app.key(key(KeyCode::Esc));
    app.key(key(KeyCode::F(2)));
    for _ in 0..4 {
        app.key(key(KeyCode::Up));
    }
    app.key(key(KeyCode::Char('d')));
    assert_eq!(
        app.key(key(KeyCode::Enter)),
        Outcome::Send("/delete 2".into())
    );
    // A deleted message takes nothing; Down past the newest goes back to the input.
    app.key(key(KeyCode::F(2)));
    app.key(key(KeyCode::Up));
    app.key(key(KeyCode::Up));
    assert_eq!(app.focus, Focus::Select(4), "the deleted one, seq 4");
    app.key(key(KeyCode::Char('r')));
    assert_eq!(app.focus, Focus::Select(4));
    for _ in 0..3 {
        app.key(key(KeyCode::Down));
    }
    assert_eq!(app.focus, Focus::Input);
}

#[test]
fn a_typed_search_command_searches_here() {
    let mut app = changed_family();
    typed(&mut app, "/search CAKE");
    assert_eq!(app.key(key(KeyCode::Enter)), Outcome::Redraw, "not sent");
    let screen = render(&mut app, 80, 24);
    check("search-command", &screen);
    let search = app.search.as_ref().unwrap();
    assert_eq!((search.query.text(), search.editing), ("CAKE", false));
    assert_eq!(app.search_matches().len(), 1);
    assert!(buffer_text(&screen).lines().last().unwrap().contains("1/1"));
    // n, N move; Esc closes.
    app.key(key(KeyCode::Char('n')));
    app.key(key(KeyCode::Esc));
    assert!(app.search.is_none());
}

#[test]
fn scrolled_up_shows_more_below_and_new_lines_do_not_yank_the_view() {
    let mut app = family();
    for seq in 10..40 {
        app.line(chat(
            LineKind::Message,
            SUNDAY + DAY + 5_000 + seq,
            seq,
            "alice",
            &format!("line {seq}"),
        ));
    }
    app.key(key(KeyCode::PageUp));
    let before = buffer_text(&render(&mut app, 80, 24));
    app.line(chat(
        LineKind::Message,
        SUNDAY + DAY + 6_000,
        40,
        "alice",
        "newest",
    ));
    let after = render(&mut app, 80, 24);
    check("scrolled", &after);
    let after = buffer_text(&after);
    let body = |s: &str| {
        s.lines()
            .skip(1)
            .take(21)
            .map(|l| l.get(18..62).unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(body(&before), body(&after));
    assert!(after.contains("1 new below"));
}

#[test]
fn hostile_looking_text_is_drawn_as_it_is() {
    let mut app = family();
    // Inert already: the agent escaped the ESC and the line break.
    app.line(chat(
        LineKind::Message,
        SUNDAY + DAY + 7_000,
        50,
        "mallory",
        "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}[12:50] <alice> send me the PIN",
    ));
    let screen = render(&mut app, 80, 24);
    check("hostile", &screen);
    let text = buffer_text(&screen);
    assert!(text.contains("\\u{1b}[2J"));
    // The continuation of the long line is indented: nothing starts at the message column.
    for line in text.lines() {
        assert!(!line.get(18..).unwrap_or("").starts_with("[12:50]"));
    }
}

#[test]
fn the_help_overlay_lists_the_keys() {
    let mut app = family();
    app.key(key(KeyCode::F(1)));
    check("help", &render(&mut app, 80, 24));
    app.key(key(KeyCode::Char('x')));
    assert!(!app.help);
    assert_eq!(
        app.input.text(),
        "See you at noon 🍰",
        "the key that closes help is not typed"
    );
}

#[test]
fn reconnecting_and_queued_show_in_the_top_bar() {
    let mut app = family();
    let mut view = app.view.clone();
    view.connected = false;
    view.queued = 2;
    app.view(view);
    let text = buffer_text(&render(&mut app, 80, 24));
    let top = text.lines().next().unwrap();
    assert!(
        top.contains("reconnecting") && top.contains("2 queued"),
        "{top}"
    );
}

#[test]
fn the_cursor_sits_after_the_typed_text() {
    let mut app = family();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    app.resize(Rect::new(0, 0, 80, 24));
    terminal.draw(|frame| draw::draw(frame, &app)).unwrap();
    let prompt = "[#family] ".len() as u16;
    let typed = unicode_width::UnicodeWidthStr::width("See you at noon 🍰") as u16;
    assert_eq!(
        terminal.get_cursor_position().unwrap(),
        Position::new(prompt + typed, 23)
    );
}

/// Set for the copy of this test binary that [`the_real_terminal_is_taken_and_given_back`]
/// runs in a pseudo-terminal: the file to write the lines the chat returned to.
const CHILD: &str = "HEARTH_TUI_TEST_CHILD";

/// The chat on a real (pseudo-)terminal; only does something when run by the test below.
#[test]
#[ignore = "run in a pseudo-terminal by the_real_terminal_is_taken_and_given_back"]
fn live_chat_in_a_pseudo_terminal() {
    let Some(out) = std::env::var_os(CHILD) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = runtime.block_on(async {
        let mut tui = super::Tui::start().unwrap();
        let app = family();
        tui.view(app.view.clone());
        tui.line(chat(LineKind::Message, SUNDAY, 1, "alice", "READY"));
        // A mention in another room rings the bell.
        tui.line(ChatLine {
            room: Some("beef".into()),
            ..chat(LineKind::Mention, SUNDAY, 2, "carol", "gran?")
        });
        let mut got = Vec::new();
        while let Some(typed) = tui.next_input().await {
            if let super::Typed::Line(line) = typed {
                got.push(line);
            }
        }
        got
    });
    std::fs::write(out, got.join("\n")).unwrap();
}

#[test]
fn the_real_terminal_is_taken_and_given_back() {
    use expectrl::Expect;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lines");
    let mut command = std::process::Command::new("sh");
    command
        .args([
            "-c",
            r#"stty echo icanon isig
"$@" --nocapture
echo "TTY:$(stty -a | tr ' ;' '\n\n' | grep -x -e -icanon -e -echo -e -isig | tr '\n' ' ')END""#,
            "sh",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tui::tests::live_chat_in_a_pseudo_terminal",
            "--ignored",
        ])
        .env(CHILD, &out)
        .env_remove("HEARTH_NO_BELL")
        .env("TERM", "xterm");
    let mut term = expectrl::Session::spawn(command).unwrap();
    term.set_expect_timeout(Some(std::time::Duration::from_secs(30)));
    let start = term.expect("READY").unwrap();
    assert!(
        start.before().windows(8).any(|w| w == b"\x1b[?1049h"),
        "the alternate screen is entered"
    );
    term.expect("\x07").unwrap();
    term.send("hello\r").unwrap();
    // Ctrl-N: the next room, on screen at once (ratatui redraws only what changed).
    term.send("\x0e").unwrap();
    term.expect("kids]").unwrap();
    term.send("/bye\r").unwrap();
    let end = term.expect(expectrl::Regex("TTY:([^\r\n]*)END")).unwrap();
    let flags = String::from_utf8_lossy(end.get(1).unwrap()).into_owned();
    assert!(
        end.before().windows(8).any(|w| w == b"\x1b[?1049l"),
        "the alternate screen is left"
    );
    assert_eq!(flags.trim(), "", "the terminal is left with {flags}");
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines, "hello\n/current beef\n/bye");
}
