//! Replies, edits, deletions, reactions and search through the real `hearth` binary and
//! its agents, against a real relay: alice does them in a line-mode chat, bob follows
//! with `hearth read --follow` and reads the result with `hearth history`.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{assert_success, hearth, json_lines, stdout, Env, PASSPHRASE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn command(profile: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
    command
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env_remove("HEARTH_PROFILE")
        .env_remove("HEARTH_NO_AGENT")
        .env("HEARTH_PASSPHRASE", PASSPHRASE)
        .env("HEARTH_TEST_FAST_KDF", "1")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    command
}

async fn sent_seq(profile: &std::path::Path, text: &str) -> u64 {
    let out = hearth(profile, &["--json", "send", "family", text]).await;
    assert_success(&out, "send");
    json_lines(&out)[0]["seq"].as_u64().expect("a seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_an_edit_a_deletion_and_reactions_reach_the_other_side() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;

    let question = sent_seq(&bob, "who brings dessert?").await;
    let cake = sent_seq(&alice, "the cake is ready").await;
    let oops = sent_seq(&alice, "oops, wrong room").await;

    // Bob follows the room: every change shows up there as it arrives.
    let mut follow = command(&bob, &["--json", "read", "family", "--follow", "--all"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("hearth read --follow runs");
    let mut followed = BufReader::new(follow.stdout.take().expect("its output")).lines();
    // What was there before is printed first: the follow is under way after it.
    loop {
        let line = followed.next_line().await.unwrap().expect("a line");
        if line.contains("oops, wrong room") {
            break;
        }
    }

    let mut chat = command(&alice, &["chat", "--plain", "family"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hearth chat runs");
    let script = format!(
        "/reply {question} me, the apple cake\n\
         /edit {cake} the apple cake is ready\n\
         /react {question} 👍\n\
         /react {question} \u{202e}👍\n\
         /edit {question} not mine to edit\n\
         /delete {oops}\n\
         /search DESSERT\n\
         /bye\n"
    );
    let mut stdin = chat.stdin.take().expect("its input");
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), chat.wait_with_output())
        .await
        .expect("the chat ends within a minute")
        .expect("the chat runs");
    assert_success(&out, "chat");
    let said = stdout(&out);
    // Messages carry their numbers; the refused ones say why; search finds bob's question.
    assert!(
        said.contains(&format!("#{question} <bob> who brings dessert?")),
        "{said}"
    );
    assert!(said.contains("! not sent: a reaction is"), "{said}");
    assert!(
        said.contains(&format!(
            "! not sent: message #{question} is bob's: you can only edit your own messages"
        )),
        "{said}"
    );
    assert!(
        said.contains("* 1 message with \"DESSERT\" in family"),
        "{said}"
    );

    // Bob's follow sees the reply, then the changes, the deletion last.
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = followed.next_line().await.unwrap() {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            let done = value["type"] == "changed" && value["deleted"] == true;
            seen.push(value);
            if done {
                break;
            }
        }
    })
    .await
    .expect("bob sees the deletion within a minute");
    let _ = follow.kill().await;
    let reply = seen
        .iter()
        .find(|v| v["type"] == "message" && v["text"] == "me, the apple cake")
        .expect("the reply");
    assert_eq!(reply["reply_to"], question);
    assert!(seen
        .iter()
        .any(|v| v["type"] == "changed" && v["seq"] == cake && v["edited"] == true));
    assert!(seen.iter().any(|v| v["type"] == "changed"
        && v["seq"] == question
        && v["reactions"][0]["emoji"] == "👍"
        && v["reactions"][0]["by"][0] == "alice"));

    let out = hearth(&bob, &["history", "family", "-n", "10"]).await;
    assert_success(&out, "history");
    let history = stdout(&out);
    for expected in [
        format!("#{question} <bob> who brings dessert? [👍 1]"),
        format!("#{cake} <alice> the apple cake is ready (edited)"),
        format!("#{oops} <alice> (deleted)"),
        "<alice> (re bob: who brings dessert?) me, the apple cake".to_string(),
    ] {
        assert!(history.contains(&expected), "{expected:?} in:\n{history}");
    }
    assert!(!history.contains("oops, wrong room"));
    assert!(!history.contains('\u{202e}'));
}
