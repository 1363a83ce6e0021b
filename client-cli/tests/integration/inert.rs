//! Nothing another member writes can forge the screen: mallory, a member and admin of
//! alice's room, sends terminal escapes, carriage returns, a forged line and bidi
//! overrides, and renames the room and sets its topic with escapes; what alice's
//! `read`, `history`, `room info` and `room list` print holds none of it raw, and the
//! forged line shows as a continuation of mallory's message.

use crate::common;

use std::process::Output;

use common::{assert_success, hearth, json_lines, stderr, stdout, Env};

/// What mallory sends, each as one message.
const HOSTILE: &[&str] = &[
    "clear\x1b[2J",
    "title\x1b]0;pwned\x07",
    "\rfake",
    "hi\n[12:50] <alice> fake",
    "evil\u{202e}txt.exe",
    "csi\u{9b}2J and a zero\u{200b}width",
];

/// Characters that must never reach alice's terminal from others: controls (but the
/// newline ending each line), bidi controls and zero-width characters.
fn hazard(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(
            c,
            '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200b}'..='\u{200f}'
                | '\u{61c}'
                | '\u{2060}'
                | '\u{feff}'
        )
}

/// Asserts that `out` (stdout and stderr) holds no [`hazard`] and no raw ESC, CR or BEL.
fn assert_inert(out: &Output, what: &str) {
    assert_success(out, what);
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        for byte in [0x1b, b'\r', 0x07] {
            assert!(
                !bytes.contains(&byte),
                "{what}: {stream} holds byte {byte:#04x}:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let text = String::from_utf8(bytes.clone()).expect("output is UTF-8");
        let found: Vec<char> = text.chars().filter(|c| hazard(*c)).collect();
        assert!(
            found.is_empty(),
            "{what}: {stream} holds {found:?}:\n{text}"
        );
    }
}

/// Asserts that the forged line shows only as a continuation line under mallory's.
fn assert_not_forged(out: &Output, what: &str) {
    let text = stdout(out);
    assert!(
        text.contains("<mallory> hi\n  | [12:50] <alice> fake\n"),
        "{what}: the forged line is not a continuation:\n{text}"
    );
    assert!(
        !text.lines().any(|line| line.starts_with("[12:50]")),
        "{what}: a line poses as alice's:\n{text}"
    );
    assert!(
        text.contains(r"<mallory> \u{d}fake"),
        "{what}: the carriage return is not shown escaped:\n{text}"
    );
    assert!(
        text.contains(r"<mallory> evil\u{202e}txt.exe"),
        "{what}: the override is not shown escaped:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_member_writes_cannot_drive_the_terminal() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let mallory = env.init("mallory").await;
    common::room_with(&alice, "family", &[&mallory]).await;
    let out = hearth(&alice, &["--json", "room", "list"]).await;
    assert_success(&out, "room list");
    let family = json_lines(&out)
        .into_iter()
        .find(|v| v["name"] == "family")
        .and_then(|v| v["room"].as_str().map(str::to_string))
        .expect("alice lists the family room");
    assert_success(
        &hearth(&alice, &["room", "grant", "family", "mallory"]).await,
        "grant",
    );

    for text in HOSTILE {
        assert_success(&hearth(&mallory, &["send", "family", text]).await, "send");
    }
    assert_success(
        &hearth(&mallory, &["room", "topic", "family", "\x1b]0;topic\x07"]).await,
        "topic",
    );
    assert_success(
        &hearth(
            &mallory,
            &["room", "rename", "family", "fam\x1b[2Jily\u{2067}"],
        )
        .await,
        "rename",
    );
    // A room to invite alice to, and one listed on the relay, both with hostile names.
    let out = hearth(&mallory, &["--json", "room", "create", "tr\rap\x1b[5m"]).await;
    assert_success(&out, "room create");
    let trap = json_lines(&out)[0]["room"]
        .as_str()
        .expect("the new room's id")
        .to_string();
    assert_success(
        &hearth(&mallory, &["room", "invite", &trap, "alice"]).await,
        "invite",
    );
    assert_success(
        &hearth(&mallory, &["room", "create", "lobby"]).await,
        "room create",
    );
    assert_success(
        &hearth(&mallory, &["room", "publish", "lobby", "pub\u{202e}lic"]).await,
        "publish",
    );

    // The hostile bytes reached alice as they were sent: JSON keeps them for scripts.
    let out = hearth(&alice, &["--json", "read", &family]).await;
    assert_success(&out, "read --json");
    let texts: Vec<String> = json_lines(&out)
        .iter()
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(texts, HOSTILE, "alice's messages as JSON");

    // Read once (above), the messages are not new any more: --all shows them again.
    let out = hearth(&alice, &["read", &family]).await;
    assert_success(&out, "read");
    assert!(!stdout(&out).contains("mallory"), "{}", stdout(&out));
    let out = hearth(&alice, &["read", "--all", &family]).await;
    assert_inert(&out, "read");
    assert_not_forged(&out, "read");
    assert!(stdout(&out).contains(r"clear\u{1b}[2J"), "{}", stdout(&out));

    let out = hearth(&alice, &["history", &family, "-n", "50"]).await;
    assert_inert(&out, "history");
    assert_not_forged(&out, "history");

    let out = hearth(&alice, &["room", "info", &family]).await;
    assert_inert(&out, "room info");
    let info = stdout(&out);
    assert!(info.contains(r"name:    fam\u{1b}[2Jily\u{2067}"), "{info}");
    assert!(info.contains(r"topic:   \u{1b}]0;topic\u{7}"), "{info}");

    let out = hearth(&alice, &["room", "list"]).await;
    assert_inert(&out, "room list");
    let list = stdout(&out);
    assert!(list.contains(r"pub\u{202e}lic"), "{list}");
    assert!(
        list.contains(r"tr\u{d}ap\u{1b}[5m") && list.contains("pending invitation from mallory"),
        "{list}"
    );

    // A display name with a bidi override or a zero-width character is refused.
    for name in ["\u{202e}ecila", "al\u{200b}ice"] {
        let out = hearth(&mallory, &["nick", name]).await;
        assert!(
            !out.status.success(),
            "nick {name:?} was accepted: {}",
            stdout(&out)
        );
        assert!(stderr(&out).contains("invisible"), "{}", stderr(&out));
    }
}
