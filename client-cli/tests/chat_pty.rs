//! The interactive chat driven through a real pseudo-terminal: slash commands, errors, and
//! a message arriving while the user is in the middle of typing a line.

mod common;

use std::time::Duration;

use expectrl::Expect;

use common::{assert_success, hearth, stdout, Env, PASSPHRASE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_in_a_terminal() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    assert_success(
        &hearth(&alice, &["room", "create", "family"]).await,
        "create",
    );
    assert_success(
        &hearth(&alice, &["room", "invite", "family", "bob"]).await,
        "invite",
    );
    assert_success(&hearth(&bob, &["room", "join", "family"]).await, "join");
    assert_success(
        &hearth(&alice, &["send", "family", "earlier message"]).await,
        "send",
    );

    let (typing_tx, typing_rx) = tokio::sync::oneshot::channel::<()>();
    let bob_dir = bob.clone();
    let terminal = tokio::task::spawn_blocking(move || -> Result<(), expectrl::Error> {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
        command
            .arg("--profile")
            .arg(&bob_dir)
            .args(["chat", "family"])
            .env("HEARTH_PASSPHRASE", PASSPHRASE)
            .env("HEARTH_TEST_FAST_KDF", "1")
            .env("TERM", "xterm");
        let mut chat = expectrl::Session::spawn(command)?;
        chat.set_expect_timeout(Some(Duration::from_secs(30)));
        chat.expect("Type /help")?;
        // History is shown on entry.
        chat.expect("<alice> earlier message")?;
        chat.send_line("/help")?;
        chat.expect("/kick NICK")?;
        chat.send_line("/who")?;
        chat.expect("alice")?;
        chat.send_line("/frobnicate")?;
        chat.expect("unknown command /frobnicate")?;
        chat.send_line("/kick")?;
        chat.expect("usage: /kick NICK")?;
        // Start typing, then let alice's message arrive before the line is finished.
        chat.send("half-typ")?;
        chat.expect("half-typ")?;
        let _ = typing_tx.send(());
        chat.expect("<alice> hello while you type")?;
        chat.send_line("ed reply")?;
        // The finished line comes back once the relay stored it (the delivery confirmation).
        chat.expect("<bob> half-typed reply")?;
        chat.send_line("/bye")?;
        chat.expect("Bye.")?;
        Ok(())
    });

    typing_rx
        .await
        .expect("bob's terminal reached the typing step");
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
}
