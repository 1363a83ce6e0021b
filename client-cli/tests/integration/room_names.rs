//! Rooms named by name (and a short id only where two share a name) in what the user
//! sees, a rebuilt room's name meaning the new room, and pending invitations following
//! renames (issue 12): the real `hearth` binary against a real relay.

use crate::common;

use std::path::Path;
use std::time::Duration;

use expectrl::Expect;

use common::{assert_success, hearth, json_lines, stderr, stdout, Env, PASSPHRASE};

/// Waits for `text` in a terminal; the error names what was awaited.
macro_rules! expect {
    ($chat:expr, $text:expr) => {
        $chat
            .expect($text)
            .map(|_| ())
            .map_err(|e| format!("waiting for {:?}: {e}", $text))
    };
}

/// The id of the room called `name` in `profile`'s `room list --json`.
async fn room_id(profile: &Path, name: &str) -> String {
    let out = hearth(profile, &["--json", "room", "list"]).await;
    assert_success(&out, "room list");
    json_lines(&out)
        .iter()
        .find(|v| v["type"] == "room" && v["name"] == name && v["rebuilt_as"].is_null())
        .and_then(|v| v["room"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no room {name:?}: {}", stdout(&out)))
}

/// The `error:` line of a failed command (asserting it failed).
fn error_line(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(out));
    stderr(out)
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {}", stderr(out)))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_room_and_tell_rooms_of_one_name_apart() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    env.init("carol").await;
    common::room_with(&alice, "family", &[&bob]).await;
    let family = room_id(&alice, "family").await;
    let short = &family[..8];

    for (who, args, says) in [
        (
            &bob,
            &["room", "kick", "family", "alice"][..],
            "you are not an admin of family: ask an admin (alice) to kick members",
        ),
        (
            &bob,
            &["room", "rename", "family", "mine"][..],
            "you are not an admin of family:",
        ),
        (
            &bob,
            &["room", "invite", "family", "carol"][..],
            "you are not an admin of family:",
        ),
        (
            &alice,
            &["room", "invite", "family", "bob"][..],
            "bob is already a member of family",
        ),
        (
            &alice,
            &["room", "unban", "family", "carol"][..],
            "carol is not banned from family",
        ),
        (
            &alice,
            &["room", "grant", "family", "carol"][..],
            "carol is not a member of family",
        ),
    ] {
        let line = error_line(&hearth(who, args).await);
        assert!(line.contains(says), "{args:?}: {line}");
        assert!(
            !line.contains(short),
            "{args:?} names the room by id: {line}"
        );
    }

    // Under --json the error carries the room's id and name.
    let out = hearth(&bob, &["--json", "room", "kick", "family", "alice"]).await;
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value =
        serde_json::from_str(stderr(&out).trim()).expect("a JSON error object");
    assert_eq!(error["room"], family.as_str());
    assert_eq!(error["room_name"], "family");
    assert_eq!(error["exit_code"], 1);
    assert!(error["error"]
        .as_str()
        .is_some_and(|e| e.contains("not an admin of family")));
    // ... and what a command did, too.
    let out = hearth(&bob, &["--json", "send", "family", "hi"]).await;
    assert_success(&out, "send");
    assert_eq!(json_lines(&out)[0]["room"], family.as_str());
    assert_eq!(json_lines(&out)[0]["room_name"], "family");

    // Another room of the same name: by name is refused, and each is named with its id.
    assert_success(&hearth(&bob, &["room", "create", "Family"]).await, "create");
    let line = error_line(&hearth(&bob, &["send", "family", "hi"]).await);
    assert!(
        line.contains("2 rooms are called family") && line.contains(short),
        "{line}"
    );
    let line = error_line(&hearth(&bob, &["room", "rename", short, "mine"]).await);
    assert!(
        line.contains(&format!("you are not an admin of family [{short}]")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_room_s_name_means_the_new_room_and_invitations_follow_renames() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    let carol = env.init("carol").await;
    common::room_with(&alice, "family", &[&bob]).await;
    let old = room_id(&alice, "family").await;

    let out = hearth(&alice, &["room", "rebuild", "family"]).await;
    assert_success(&out, "rebuild");
    assert!(
        stdout(&out).contains("listed as family (old) now"),
        "{}",
        stdout(&out)
    );
    let new = room_id(&alice, "family").await;
    assert_ne!(new, old);
    let out = hearth(&alice, &["room", "list"]).await;
    assert!(
        stdout(&out).contains(&format!("family (old)         {}", &old[..8])),
        "{}",
        stdout(&out)
    );
    // `send`, `read`, `history` by name: the new room, never the old one.
    let out = hearth(&alice, &["--json", "send", "family", "in the new room"]).await;
    assert_success(&out, "send");
    assert_eq!(json_lines(&out)[0]["room"], new.as_str());
    let out = hearth(&alice, &["--json", "history", "family"]).await;
    assert!(json_lines(&out)
        .iter()
        .all(|m| m["room"] == new.as_str() && m["text"] == "in the new room"));
    // The old one by its new label or its id.
    let out = hearth(&alice, &["--json", "room", "info", "family (old)"]).await;
    assert_eq!(json_lines(&out)[0]["room"], old.as_str());
    assert_eq!(json_lines(&out)[0]["room_old"], true);

    // bob joins the new room by the name, and reads it there. (A fresh agent: it reads
    // every room up to now before it answers, so the pointer in the old room is seen.)
    assert_success(&hearth(&bob, &["lock"]).await, "lock");
    let out = hearth(&bob, &["room", "join", "family"]).await;
    assert_success(&out, "join");
    assert_eq!(stdout(&out).trim(), "Joined family (invited by alice).");
    // What was said before bob accepted is not shown to him; what follows is.
    let out = hearth(&alice, &["send", "family", "welcome back"]).await;
    assert_success(&out, "send after the join");
    let out = hearth(&bob, &["--json", "read", "family"]).await;
    assert_success(&out, "read");
    let read = json_lines(&out);
    assert!(
        read.iter()
            .any(|m| m["room"] == new.as_str() && m["text"] == "welcome back"),
        "{read:?}"
    );
    assert!(
        !read.iter().any(|m| m["text"] == "in the new room"),
        "{read:?}"
    );
    let out = hearth(&bob, &["--json", "send", "family", "from bob"]).await;
    assert_eq!(json_lines(&out)[0]["room"], new.as_str());

    // An invitation, then a rename: carol sees the current name and accepts by it.
    assert_success(
        &hearth(&alice, &["room", "invite", "family", "carol"]).await,
        "invite",
    );
    assert_success(
        &hearth(&alice, &["room", "rename", "family", "the clan"]).await,
        "rename",
    );
    let out = hearth(&carol, &["room", "list"]).await;
    assert!(
        stdout(&out).contains("the clan") && stdout(&out).contains("pending invitation"),
        "{}",
        stdout(&out)
    );
    let out = hearth(&carol, &["--json", "room", "list"]).await;
    assert!(json_lines(&out).iter().any(|v| v["type"] == "invitation"
        && v["name"] == "the clan"
        && v["room"] == new.as_str()));
    let out = hearth(&carol, &["room", "join", "the clan"]).await;
    assert_success(&out, "join by the new name");
    assert_eq!(stdout(&out).trim(), "Joined the clan (invited by alice).");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_mode_chat_names_rooms_in_notices() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    common::room_with(&alice, "kids", &[&bob]).await;
    let family = room_id(&alice, "family").await;

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let (step_tx, step_rx) = std::sync::mpsc::channel::<()>();
    let bob_dir = bob.clone();
    let short = family[..8].to_string();
    let terminal = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
        command
            .arg("--profile")
            .arg(&bob_dir)
            .args(["chat", "--plain", "kids"])
            .env("HEARTH_PASSPHRASE", PASSPHRASE)
            .env("HEARTH_TEST_FAST_KDF", "1")
            .env("TERM", "xterm");
        let mut chat = expectrl::Session::spawn(command).map_err(|e| e.to_string())?;
        chat.set_expect_timeout(Some(Duration::from_secs(30)));
        expect!(chat, "-- kids --")?;
        let _ = ready_tx.send(());
        // Something in another room: prefixed with that room's name, not its id.
        expect!(chat, "* [family] topic: dinner at 7")?;
        chat.send_line("/current").map_err(|e| e.to_string())?;
        expect!(chat, "* current room: kids")?;
        let _ = step_tx.send(());
        let rebuilt = chat
            .expect("as a new room")
            .map_err(|e| format!("waiting for the rebuild: {e}"))?;
        let before = String::from_utf8_lossy(rebuilt.before()).into_owned();
        if !before.contains("* alice rebuilt family (old)") || before.contains(&short) {
            return Err(format!("the rebuild is not told by name: {before:?}"));
        }
        // By its name: the new room, not the old one.
        chat.send_line("/join family").map_err(|e| e.to_string())?;
        expect!(chat, "* you joined family (invited by alice)")?;
        chat.send_line("/list").map_err(|e| e.to_string())?;
        expect!(chat, "family (old)")?;
        chat.send_line("/bye").map_err(|e| e.to_string())?;
        expect!(chat, "Bye.")?;
        Ok(())
    });
    if ready_rx.await.is_err() {
        panic!("bob's chat did not open: {:?}", terminal.await);
    }
    assert_success(
        &hearth(&alice, &["room", "topic", "family", "dinner at 7"]).await,
        "topic",
    );
    let stepped =
        tokio::task::spawn_blocking(move || step_rx.recv_timeout(Duration::from_secs(60)))
            .await
            .expect("waiting for the chat");
    if stepped.is_err() {
        panic!("bob's chat did not show the topic: {:?}", terminal.await);
    }
    assert_success(
        &hearth(&alice, &["room", "rebuild", "family"]).await,
        "rebuild",
    );
    terminal
        .await
        .expect("the terminal task finishes")
        .expect("the chat names rooms as expected");
}
