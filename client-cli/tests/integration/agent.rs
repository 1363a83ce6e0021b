//! One agent per profile (issue 12): chats and one-shot commands share a profile through
//! it, messages sent while the relay is down wait in its queue and go once when the relay
//! returns, `hearth lock` forgets the key, and the terminal is restored when a chat ends
//! by `/bye` or by SIGTERM.

use crate::common;

use std::path::Path;
use std::time::Duration;

use expectrl::{Expect, Regex};

use common::{assert_success, hearth, hearth_with, json_lines, stderr, stdout, Env, PASSPHRASE};

/// Waits for `text` in a terminal; the error names what was awaited.
macro_rules! expect {
    ($chat:expr, $text:expr) => {
        $chat
            .expect($text)
            .map(|_| ())
            .map_err(|e| format!("waiting for {:?}: {e}", $text))
    };
}

/// Runs the chat, then prints the raw-mode flags it left set (`-icanon`, `-echo`,
/// `-isig`) between `TTY:` and `END`.
const CHAT_THEN_STTY: &str = r#"stty echo icanon isig rows 24 cols 80
"$@"
echo "TTY:$(stty -a | tr ' ;' '\n\n' | grep -x -e -icanon -e -echo -e -isig | tr '\n' ' ')END""#;

/// A chat window of `profile` in room `room`, in a pseudo-terminal.
fn chat_window(profile: &Path, room: &str) -> Result<expectrl::session::OsSession, String> {
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", CHAT_THEN_STTY, "sh", env!("CARGO_BIN_EXE_hearth")])
        .arg("--profile")
        .arg(profile)
        .args(["chat", "--plain", room])
        .env("HEARTH_PASSPHRASE", PASSPHRASE)
        .env("HEARTH_TEST_FAST_KDF", "1")
        .env_remove("HEARTH_NO_AGENT")
        .env("TERM", "xterm");
    let mut chat = expectrl::Session::spawn(command).map_err(|e| e.to_string())?;
    chat.set_expect_timeout(Some(Duration::from_secs(30)));
    Ok(chat)
}

/// Fails unless the chat left the terminal as it found it.
fn expect_cooked(chat: &mut impl Expect, how: &str) -> Result<(), String> {
    let found = chat
        .expect(Regex("TTY:([^\r\n]*)END"))
        .map_err(|e| format!("waiting for the terminal's state after {how}: {e}"))?;
    let flags = String::from_utf8_lossy(found.get(1).unwrap_or_default()).into_owned();
    if flags.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("after {how} the terminal is left with {flags}"))
    }
}

/// The agent's process id, from `hearth agent status --json`.
async fn agent_pid(profile: &Path) -> Option<u32> {
    let out = hearth(profile, &["--json", "agent", "status"]).await;
    assert_success(&out, "agent status");
    json_lines(&out)[0]["agent"]["pid"]
        .as_u64()
        .map(|pid| pid as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chat_windows_and_one_shot_commands_share_one_profile() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    // The commands so far started one agent for each, which holds the profile.
    let pid = agent_pid(&alice).await.expect("alice's agent runs");
    let socket = alice.join("agent.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket)
            .expect("the socket exists")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the socket is the user's alone");

    let (open_tx, open_rx) = tokio::sync::oneshot::channel::<()>();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
    let alice_dir = alice.clone();
    let windows = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut first = chat_window(&alice_dir, "family")?;
        let mut second = chat_window(&alice_dir, "family")?;
        expect!(first, "Type /help")?;
        expect!(second, "Type /help")?;
        let _ = open_tx.send(());
        sent_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| format!("the one-shot commands did not run: {e}"))?;
        // Both windows show what a one-shot command of the same profile sent, and what
        // bob sent.
        for window in [&mut first, &mut second] {
            expect!(window, "<alice> sent from a one-shot command")?;
            expect!(window, "<bob> hello to both windows")?;
        }
        // One window quits with /bye, the other is ended by SIGTERM: both leave the
        // terminal usable.
        first.send_line("/bye").map_err(|e| e.to_string())?;
        expect!(first, "Bye.")?;
        expect_cooked(&mut first, "/bye")?;
        let shell = second.get_process().pid();
        let chat = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .map_err(|e| e.to_string())?;
        let chat = chat.split_whitespace().next().ok_or("no chat process")?;
        let killed = std::process::Command::new("kill")
            .args(["-TERM", chat])
            .status()
            .map_err(|e| e.to_string())?;
        if !killed.success() {
            return Err("kill failed".into());
        }
        expect_cooked(&mut second, "SIGTERM")?;
        Ok(())
    });
    if open_rx.await.is_err() {
        let outcome = windows.await.expect("the terminal task finishes");
        panic!("the chat windows did not open: {outcome:?}");
    }
    // While both windows are open, a one-shot command on the same profile works.
    assert_success(
        &hearth(&alice, &["send", "family", "sent from a one-shot command"]).await,
        "send while a chat is open",
    );
    assert_success(
        &hearth(&bob, &["send", "family", "hello to both windows"]).await,
        "bob's send",
    );
    let out = hearth(&alice, &["history", "family"]).await;
    assert_success(&out, "history while a chat is open");
    assert!(
        stdout(&out).contains("<bob> hello to both windows"),
        "{}",
        stdout(&out)
    );
    let _ = sent_tx.send(());
    windows
        .await
        .expect("the terminal task finishes")
        .expect("the chat windows behave as expected");
    // Still the same agent: nothing was unlocked again.
    assert_eq!(agent_pid(&alice).await, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_the_relay_is_down_go_once_when_it_returns() {
    let mut env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    let addr = env.stop().await;

    // With the relay down, the stored history still reads, and messages wait.
    let out = hearth(&alice, &["history", "family"]).await;
    assert_success(&out, "history with the relay down");
    for text in ["first while down", "second while down"] {
        let out = hearth(&alice, &["--json", "send", "family", text]).await;
        assert_success(&out, "send with the relay down");
        assert_eq!(json_lines(&out)[0]["queued"], true, "{}", stdout(&out));
    }
    let out = hearth(&alice, &["room", "list"]).await;
    assert_success(&out, "room list with the relay down");
    assert!(stdout(&out).contains("family"), "{}", stdout(&out));
    // The history shows what waits, marked as pending, in order.
    let out = hearth(&alice, &["--json", "history", "family"]).await;
    assert_success(&out, "history with messages waiting");
    let pending: Vec<_> = json_lines(&out)
        .into_iter()
        .filter(|v| v["type"] == "pending")
        .map(|v| v["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(pending, ["first while down", "second while down"]);

    // The agent's connection comes back by itself and sends the queue, in order. Bob's
    // `read --follow` sees both arrive (it waits on them, not on a clock).
    env.restart(addr).await;
    let mut follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
    follow
        .arg("--profile")
        .arg(&bob)
        .args(["read", "--follow", "family"])
        .env("HEARTH_PASSPHRASE", PASSPHRASE)
        .env("HEARTH_TEST_FAST_KDF", "1")
        .env_remove("HEARTH_NO_AGENT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut follow = follow.spawn().expect("read --follow starts");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        follow.stdout.take().expect("stdout"),
    ));
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("second while down"))
    {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the queued messages did not arrive within a minute; seen {seen:?}\nalice's agent: {}\nbob's agent: {}",
                    std::fs::read_to_string(alice.join("agent.log")).unwrap_or_default(),
                    std::fs::read_to_string(bob.join("agent.log")).unwrap_or_default()
                )
            })
            .expect("read")
            .expect("read --follow keeps running");
        seen.push(line);
    }
    let _ = follow.kill().await;
    let first = seen.iter().position(|l| l.contains("first while down"));
    let second = seen.iter().position(|l| l.contains("second while down"));
    assert!(first.is_some() && first < second, "in order: {seen:?}");

    // Exactly once each, in alice's history too.
    let out = hearth(&bob, &["history", "family", "-n", "50"]).await;
    let text = stdout(&out);
    assert_eq!(text.matches("first while down").count(), 1, "{text}");
    assert_eq!(text.matches("second while down").count(), 1, "{text}");
    let out = hearth(&alice, &["history", "family", "-n", "50"]).await;
    assert_eq!(
        stdout(&out).matches("first while down").count(),
        1,
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_forgets_the_key_and_read_shows_only_what_is_new() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    assert_success(&hearth(&bob, &["send", "family", "one"]).await, "send");
    let out = hearth(&alice, &["read", "family"]).await;
    assert!(stdout(&out).contains("<bob> one"), "{}", stdout(&out));
    assert_success(&hearth(&bob, &["send", "family", "two"]).await, "send");
    let out = hearth(&alice, &["read", "family"]).await;
    assert!(
        stdout(&out).contains("<bob> two") && !stdout(&out).contains("<bob> one"),
        "only the new message: {}",
        stdout(&out)
    );
    let out = hearth(&alice, &["read", "--all", "family"]).await;
    assert!(stdout(&out).contains("<bob> one"), "{}", stdout(&out));

    // Locked, the agent is gone and a wrong passphrase opens nothing.
    let pid = agent_pid(&alice).await.expect("alice's agent runs");
    let out = hearth(&alice, &["lock"]).await;
    assert_success(&out, "lock");
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || agent_pid(&alice).await.is_none());
    assert!(!alice.join("agent.sock").exists());
    let out = hearth_with(
        &alice,
        &["history", "family"],
        &[("HEARTH_PASSPHRASE", "wrong passphrase")],
    )
    .await;
    assert!(
        !out.status.success(),
        "a wrong passphrase opened the profile"
    );
    assert!(stderr(&out).contains("passphrase"), "{}", stderr(&out));
    // The right one starts a new agent.
    assert_success(&hearth(&alice, &["history", "family"]).await, "history");
    assert_ne!(agent_pid(&alice).await, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_dash_reads_standard_input_and_every_command_has_a_man_page() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;

    let mut send = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
    send.arg("--profile")
        .arg(&alice)
        .args(["send", "family", "-"])
        .env("HEARTH_PASSPHRASE", PASSPHRASE)
        .env("HEARTH_TEST_FAST_KDF", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut send = send.spawn().expect("hearth starts");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = send.stdin.take().expect("stdin");
        stdin
            .write_all(b"shopping list:\nmilk\neggs\n")
            .await
            .expect("written");
    }
    let out = send.wait_with_output().await.expect("hearth ends");
    assert_success(&out, "send -");
    let out = hearth(&bob, &["--json", "read", "family"]).await;
    let texts: Vec<String> = json_lines(&out)
        .iter()
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(texts, ["shopping list:\nmilk\neggs"]);
    // Nothing on standard input: nothing is sent, and the user is told.
    let out = hearth(&alice, &["send", "family", "-"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("standard input was empty"),
        "{}",
        stderr(&out)
    );

    // One page per command, so the main page's SEE ALSO leads somewhere.
    let pages = env.dir.path().join("man");
    let out = hearth(
        &alice,
        &["man", "--out-dir", pages.to_str().expect("UTF-8")],
    )
    .await;
    assert_success(&out, "man --out-dir");
    let main = std::fs::read_to_string(pages.join("hearth.1")).expect("hearth.1");
    for see_also in ["hearth-init(1)", "hearth-room(1)", "hearth-agent(1)"] {
        // roff writes the hyphen as `\-`.
        let roff = see_also.replace('-', "\\-");
        assert!(main.contains(&roff), "hearth.1 names {see_also}");
        let file = format!("{}.1", see_also.trim_end_matches("(1)"));
        assert!(pages.join(&file).exists(), "{file} is written");
    }
    assert!(pages.join("hearth-room-create.1").exists());
    assert!(main.contains("HEARTH_PASSPHRASE") && main.contains("Exit status"));
    // `hearth relay …` has pages of its own that are not the relay's (hearth-relay(1),
    // from the hearth-relay package, which may be installed beside this one).
    assert!(main.contains("hearth\\-client\\-relay(1)"));
    let relay = std::fs::read_to_string(pages.join("hearth-client-relay.1")).expect("page");
    assert!(relay.contains("hearth\\-client\\-relay\\-set\\-address(1)"));
    assert!(
        relay.contains("hearth relay"),
        "it shows the command to type"
    );
    assert!(pages.join("hearth-client-relay-set-address.1").exists());
    let clashing: Vec<_> = std::fs::read_dir(&pages)
        .expect("pages")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("hearth-relay") || name.contains("-help"))
        .collect();
    assert!(
        clashing.is_empty(),
        "the relay's pages, or help's: {clashing:?}"
    );
}

/// What alice sends to bob's full-screen chat: a window-title escape before a marker.
const TITLE_ATTACK: &str = "\x1b]0;pwned\x07T-MARK";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_screen_chat_shows_messages_inert_and_gives_the_terminal_back() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;

    let (open_tx, open_rx) = tokio::sync::oneshot::channel::<()>();
    let open_tx = std::sync::Mutex::new(Some(open_tx));
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
    let bob_dir = bob.clone();
    let window = tokio::task::spawn_blocking(move || -> Result<(), String> {
        for how in ["/bye", "SIGTERM"] {
            let mut command = std::process::Command::new("sh");
            command
                .args(["-c", CHAT_THEN_STTY, "sh", env!("CARGO_BIN_EXE_hearth")])
                .arg("--profile")
                .arg(&bob_dir)
                .args(["chat", "family"])
                .env("HEARTH_PASSPHRASE", PASSPHRASE)
                .env("HEARTH_TEST_FAST_KDF", "1")
                .env("HEARTH_NO_BELL", "1")
                .env_remove("HEARTH_NO_AGENT")
                .env("TERM", "xterm");
            let mut chat = expectrl::Session::spawn(command).map_err(|e| e.to_string())?;
            chat.set_expect_timeout(Some(Duration::from_secs(30)));
            // The alternate screen: the full-screen UI, not the line mode.
            expect!(chat, "\x1b[?1049h")?;
            expect!(chat, "connected")?;
            if how == "/bye" {
                let _ = open_tx_take(&open_tx);
                sent_rx
                    .recv_timeout(Duration::from_secs(60))
                    .map_err(|e| format!("alice did not send: {e}"))?;
                expect!(chat, "FULLSCREEN-MARK")?;
                let shown = chat
                    .expect("T-MARK")
                    .map_err(|e| format!("waiting for the hostile message: {e}"))?;
                let before = String::from_utf8_lossy(shown.before()).into_owned();
                if before.contains("\x1b]0;") {
                    return Err("the window-title escape reached the terminal".into());
                }
                chat.send("/bye\r").map_err(|e| e.to_string())?;
            } else {
                let shell = chat.get_process().pid();
                let children =
                    std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
                        .map_err(|e| e.to_string())?;
                let hearth = children
                    .split_whitespace()
                    .next()
                    .ok_or("no chat process")?;
                let killed = std::process::Command::new("kill")
                    .args(["-TERM", hearth])
                    .status()
                    .map_err(|e| e.to_string())?;
                if !killed.success() {
                    return Err("kill failed".into());
                }
            }
            // The alternate screen is left and the terminal is cooked again.
            expect!(chat, "\x1b[?1049l")?;
            expect_cooked(&mut chat, how)?;
        }
        Ok(())
    });
    if open_rx.await.is_err() {
        let outcome = window.await.expect("the terminal task finishes");
        panic!("bob's full-screen chat did not open: {outcome:?}");
    }
    for text in ["FULLSCREEN-MARK", TITLE_ATTACK] {
        assert_success(&hearth(&alice, &["send", "family", text]).await, "send");
    }
    let _ = sent_tx.send(());
    window
        .await
        .expect("the terminal task finishes")
        .expect("the full-screen chat behaves as expected");
}

/// Sends on a oneshot held in a shared slot (the closure runs twice).
fn open_tx_take(slot: &std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>) -> bool {
    slot.lock()
        .ok()
        .and_then(|mut s| s.take())
        .is_some_and(|tx| tx.send(()).is_ok())
}
