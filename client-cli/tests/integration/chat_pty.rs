//! The interactive chat driven through a real pseudo-terminal: slash commands, errors, a
//! message arriving while the user is in the middle of typing a line, a hostile message
//! that must reach the terminal inert, and the terminal left usable after quitting.

use crate::common;

/// Waits for `text` in the terminal; the error names what was awaited.
macro_rules! expect {
    ($chat:expr, $text:expr) => {
        $chat
            .expect($text)
            .map(|_| ())
            .map_err(|e| format!("waiting for {:?}: {e}", $text))
    };
}

use std::time::Duration;

use expectrl::{ControlCode, Expect, Regex};

use common::{assert_success, hearth, stdout, Env, PASSPHRASE};

/// A message alice sends while bob is in the chat: escapes, a carriage return, a forged
/// line and a bidi override between two markers.
const HOSTILE: &str =
    "MARK1\x1b[2J\x1b]0;pwned\x07\r[12:50] <carol> x\n[12:51] <carol> forged\u{202e}MARK2";

/// Runs the chat, then prints the terminal's raw-mode flags still set after it ended
/// (`-icanon`, `-echo`, `-isig`) between `TTY:` and `END`; twice, for two ways of quitting.
/// Echo is turned on first, as in a shell (the pseudo-terminal starts without it).
const CHAT_THEN_STTY: &str = r#"stty echo icanon isig
for run in 1 2; do
  "$@"
  echo "TTY:$(stty -a | tr ' ;' '\n\n' | grep -x -e -icanon -e -echo -e -isig | tr '\n' ' ')END"
done"#;

/// Waits for the flags [`CHAT_THEN_STTY`] prints and fails if the chat left any set.
fn expect_cooked(chat: &mut impl Expect, how: &str) -> Result<(), String> {
    let found = chat
        .expect(Regex("TTY:([^\r\n]*)END"))
        .map_err(|e| format!("waiting for the terminal flags after {how}: {e}"))?;
    let flags = String::from_utf8_lossy(found.get(1).unwrap_or_default()).into_owned();
    if flags.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("after {how} the terminal is left with {flags}"))
    }
}

/// Checks what the terminal showed of [`HOSTILE`] (`before`: the bytes up to `MARK2`).
fn check_hostile(before: &[u8]) -> Result<(), String> {
    let start = before
        .windows(5)
        .rposition(|w| w == b"MARK1")
        .ok_or("MARK1 not shown")?;
    let shown = &before[start..];
    let text = String::from_utf8_lossy(shown);
    if shown.contains(&0x1b) || shown.contains(&0x07) || text.contains('\u{202e}') {
        return Err(format!(
            "the hostile message reached the terminal raw: {text:?}"
        ));
    }
    // The terminal turns each newline into CR LF; no other CR may come through.
    if shown
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\r' && shown.get(i + 1) != Some(&b'\n'))
    {
        return Err(format!("a bare carriage return came through: {text:?}"));
    }
    if !text.contains("\n  | [12:51] <carol> forged") {
        return Err(format!("the second line is not a continuation: {text:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_in_a_terminal() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    assert_success(
        &hearth(&alice, &["send", "family", "earlier message"]).await,
        "send",
    );

    let (typing_tx, typing_rx) = tokio::sync::oneshot::channel::<()>();
    let bob_dir = bob.clone();
    let terminal = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", CHAT_THEN_STTY, "sh", env!("CARGO_BIN_EXE_hearth")])
            .arg("--profile")
            .arg(&bob_dir)
            .args(["chat", "--plain", "family"])
            .env("HEARTH_PASSPHRASE", PASSPHRASE)
            .env("HEARTH_TEST_FAST_KDF", "1")
            .env("TERM", "xterm");
        let mut chat = expectrl::Session::spawn(command).map_err(|e| e.to_string())?;
        chat.set_expect_timeout(Some(Duration::from_secs(30)));
        expect!(chat, "Type /help")?;
        // History is shown on entry.
        expect!(chat, "<alice> earlier message")?;
        chat.send_line("/help").map_err(|e| e.to_string())?;
        expect!(chat, "/kick NICK")?;
        chat.send_line("/who").map_err(|e| e.to_string())?;
        expect!(chat, "(you)")?;
        chat.send_line("/frobnicate").map_err(|e| e.to_string())?;
        expect!(chat, "unknown command /frobnicate")?;
        chat.send_line("/kick").map_err(|e| e.to_string())?;
        expect!(chat, "usage: /kick NICK")?;
        // Start typing, then let alice's message arrive before the line is finished.
        chat.send("half-typ").map_err(|e| e.to_string())?;
        expect!(chat, "half-typ")?;
        let _ = typing_tx.send(());
        expect!(chat, "<alice> hello while you type")?;
        let shown = chat
            .expect("MARK2")
            .map_err(|e| format!("waiting for the hostile message: {e}"))?;
        check_hostile(shown.before())?;
        chat.send_line("ed reply").map_err(|e| e.to_string())?;
        // The finished line comes back once the relay stored it (the delivery confirmation).
        expect!(chat, "<bob> half-typed reply")?;
        // A private message shows as one, once stored.
        chat.send_line("/msg alice just for you")
            .map_err(|e| e.to_string())?;
        expect!(chat, "-> alice: just for you")?;
        // Only admins rebuild; bob is told who can.
        chat.send_line("/rebuild").map_err(|e| e.to_string())?;
        expect!(chat, "not an admin")?;
        chat.send_line("/bye").map_err(|e| e.to_string())?;
        expect!(chat, "Bye.")?;
        expect_cooked(&mut chat, "/bye")?;
        // Again, quitting with Ctrl-D once the chat answered a command.
        expect!(chat, "Type /help")?;
        chat.send_line("/who").map_err(|e| e.to_string())?;
        expect!(chat, "(you)")?;
        chat.send(ControlCode::EndOfTransmission)
            .map_err(|e| e.to_string())?;
        expect!(chat, "Bye.")?;
        expect_cooked(&mut chat, "Ctrl-D")?;
        Ok(())
    });

    if typing_rx.await.is_err() {
        // The terminal task gave up before the typing step: show why.
        let outcome = terminal.await.expect("the terminal task finishes");
        panic!("bob's terminal did not reach the typing step: {outcome:?}");
    }
    assert_success(
        &hearth(&alice, &["send", "family", "hello while you type"]).await,
        "send",
    );
    assert_success(&hearth(&alice, &["send", "family", HOSTILE]).await, "send");
    terminal
        .await
        .expect("the terminal task finishes")
        .expect("the chat behaves as expected");

    // The line bob finished after the interruption arrived whole.
    let out = hearth(&alice, &["history", "family", "-n", "10"]).await;
    assert!(
        stdout(&out).contains("<bob> half-typed reply"),
        "alice's history: {}",
        stdout(&out)
    );
    let out = hearth(&alice, &["read", "@bob"]).await;
    assert!(
        stdout(&out).contains("*bob* just for you"),
        "alice's private messages: {}",
        stdout(&out)
    );
}

/// A member removed from the room on screen of a full-screen chat is told so there: the
/// notice must not go to the removed room's lines, which the chat no longer lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_kicked_from_the_room_on_screen_is_told_in_the_full_screen_chat() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    common::room_with(&alice, "kids", &[&bob]).await;
    assert_success(
        &hearth(&alice, &["send", "kids", "kids-marker"]).await,
        "send",
    );

    let (open_tx, open_rx) = tokio::sync::oneshot::channel::<()>();
    let bob_dir = bob.clone();
    let terminal = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "stty rows 24 cols 220; exec \"$@\"", "sh"])
            .arg(env!("CARGO_BIN_EXE_hearth"))
            .arg("--profile")
            .arg(&bob_dir)
            .args(["chat", "kids"])
            .env("HEARTH_PASSPHRASE", PASSPHRASE)
            .env("HEARTH_TEST_FAST_KDF", "1")
            .env("HEARTH_NO_BELL", "1")
            .env("TERM", "xterm");
        let mut chat = expectrl::Session::spawn(command).map_err(|e| e.to_string())?;
        chat.set_expect_timeout(Some(Duration::from_secs(30)));
        expect!(chat, "kids-marker")?;
        let _ = open_tx.send(());
        // The window leaves the room once bob is out, and shows the chat's first line
        // ("hearth: you are bob on …", one row this wide) instead of the room's lines; the
        // notice must come with it. (The full-screen UI writes only the cells that
        // changed; this width puts the notice on the banner's row, where every letter of
        // "kicked" differs from what was there.)
        expect!(chat, "hearth: you are bob")?;
        chat.set_expect_timeout(Some(Duration::from_secs(10)));
        expect!(chat, "kicked")?;
        chat.send(ControlCode::EndOfText)
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    if open_rx.await.is_err() {
        let outcome = terminal.await.expect("the terminal task finishes");
        panic!("bob's chat did not open: {outcome:?}");
    }
    assert_success(
        &hearth(&alice, &["room", "kick", "kids", "bob"]).await,
        "kick",
    );
    terminal
        .await
        .expect("the terminal task finishes")
        .expect("bob is told he was kicked");
}

/// The terminal wraps a long line by itself, and the row it starts then begins with
/// whatever the sender put there: mallory pads a message to the width of the terminal and
/// follows it with `[HH:MM] #N <alice> …`, which the line-mode chat shows on a row of its
/// own, as if alice had said it. Every row the line mode writes to an 80-column terminal
/// must fit in it (wrapped by hearth under an indent), so that none starts with text
/// another person chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_cannot_start_a_row_of_its_own_in_the_line_mode() {
    /// What a row shows: the text after the line editor's last carriage return, without
    /// escape sequences (the prompt it redraws) and bells.
    fn visible(row: &str) -> String {
        let row = row.trim_end_matches('\r');
        let row = row.rsplit('\r').next().unwrap_or(row);
        let mut shown = String::new();
        let mut chars = row.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\u{1b}' => {
                    // CSI: ESC [ parameters, then one final byte in @..~.
                    if chars.peek() == Some(&'[') {
                        chars.next();
                        for c in chars.by_ref() {
                            if ('@'..='~').contains(&c) {
                                break;
                            }
                        }
                    }
                }
                '\u{7}' => {}
                c => shown.push(c),
            }
        }
        shown
    }

    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    let mallory = env.init("mallory").await;
    common::room_with(&alice, "family", &[&bob, &mallory]).await;

    let (open_tx, open_rx) = tokio::sync::oneshot::channel::<()>();
    let bob_dir = bob.clone();
    let terminal = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "stty rows 24 cols 80; exec \"$@\"", "sh"])
            .arg(env!("CARGO_BIN_EXE_hearth"))
            .arg("--profile")
            .arg(&bob_dir)
            .args(["chat", "--plain", "family"])
            .env("HEARTH_PASSPHRASE", PASSPHRASE)
            .env("HEARTH_TEST_FAST_KDF", "1")
            .env("TERM", "xterm");
        let mut chat = expectrl::Session::spawn(command).map_err(|e| e.to_string())?;
        chat.set_expect_timeout(Some(Duration::from_secs(30)));
        expect!(chat, "Type /help")?;
        let _ = open_tx.send(());
        let shown = chat
            .expect("END-MARK")
            .map_err(|e| format!("waiting for mallory's message: {e}"))?;
        let text = String::from_utf8_lossy(shown.before()).into_owned();
        let start = text
            .rfind("<mallory>")
            .ok_or("mallory's message not shown")?;
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let mut rows = text[line_start..].split('\n').map(visible);
        let row = rows.next().unwrap_or_default();
        if row.chars().count() > 80 {
            return Err(format!(
                "a line wider than the terminal, which wraps it where mallory chose: {row:?}"
            ));
        }
        let next = rows.next().unwrap_or_default();
        if !next.starts_with("  | ") {
            return Err(format!(
                "the row after it is not marked as continued: {next:?}"
            ));
        }
        chat.send_line("/bye").map_err(|e| e.to_string())?;
        Ok(())
    });
    if open_rx.await.is_err() {
        let outcome = terminal.await.expect("the terminal task finishes");
        panic!("bob's chat did not open: {outcome:?}");
    }
    let shown = "[00:00] #9 <mallory> ok";
    let forged = format!(
        "ok{}[12:50] #10 <alice> bob, tell me the door code END-MARK",
        " ".repeat(80 - shown.len())
    );
    assert_success(
        &hearth(&mallory, &["send", "family", &forged]).await,
        "send",
    );
    terminal
        .await
        .expect("the terminal task finishes")
        .expect("no row of mallory's message starts where he chose");
}

/// Files in the line-mode chat: a file alice sends shows as a file line with its id;
/// `/preview` of a picture says it shows only in the full-screen chat; `/save ID DIR`
/// saves it checked, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_previewed_and_saved_from_the_line_mode_chat() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    let work = tempfile::tempdir().unwrap();
    let photo = work.path().join("beach.png");
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&photo, &bytes).unwrap();
    let saved_dir = work.path().join("saved");
    std::fs::create_dir(&saved_dir).unwrap();

    let (open_tx, open_rx) = tokio::sync::oneshot::channel::<()>();
    let bob_dir = bob.clone();
    let dir = saved_dir.clone();
    let terminal = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
        command
            .arg("--profile")
            .arg(&bob_dir)
            .args(["chat", "--plain", "family"])
            .env("HEARTH_PASSPHRASE", PASSPHRASE)
            .env("HEARTH_TEST_FAST_KDF", "1")
            .env("TERM", "xterm");
        let mut chat = expectrl::Session::spawn(command).map_err(|e| e.to_string())?;
        chat.set_expect_timeout(Some(Duration::from_secs(30)));
        expect!(chat, "Type /help")?;
        let _ = open_tx.send(());
        let line = chat
            .expect(Regex(r"\[file ([0-9a-f]{8})\] beach\.png"))
            .map_err(|e| format!("waiting for the file line: {e}"))?;
        let id = String::from_utf8_lossy(line.get(1).ok_or("no id")?).into_owned();
        chat.send_line(format!("/preview {id}"))
            .map_err(|e| e.to_string())?;
        expect!(chat, "no preview here")?;
        chat.send_line(format!("/save {id} {}", dir.display()))
            .map_err(|e| e.to_string())?;
        expect!(chat, "checked)")?;
        chat.send_line("/bye").map_err(|e| e.to_string())?;
        expect!(chat, "Bye.")?;
        Ok(())
    });
    if open_rx.await.is_err() {
        let outcome = terminal.await.expect("the terminal task finishes");
        panic!("bob's chat did not open: {outcome:?}");
    }
    assert_success(
        &hearth(&alice, &["send-file", "family", photo.to_str().unwrap()]).await,
        "send-file",
    );
    terminal
        .await
        .expect("the terminal task finishes")
        .expect("the file is previewed and saved from the chat");
    assert_eq!(
        std::fs::read(saved_dir.join("beach.png")).unwrap(),
        bytes,
        "saved byte for byte"
    );
}
