//! The interactive chat driven through a real pseudo-terminal: slash commands, errors, and
//! a message arriving while the user is in the middle of typing a line.

mod common;

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

use expectrl::Expect;

use common::{assert_success, hearth, stdout, Env, PASSPHRASE};

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
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
        command
            .arg("--profile")
            .arg(&bob_dir)
            .args(["chat", "family"])
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
