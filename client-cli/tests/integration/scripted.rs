//! Two and three people using the scriptable commands against a real relay.

use crate::common;

use common::{assert_success, hearth, json_lines, stderr, stdout, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_talk_through_scriptable_commands() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;

    let out = hearth(&alice, &["--json", "room", "create", "family"]).await;
    assert_success(&out, "room create");
    let created = &json_lines(&out)[0];
    assert_eq!(created["name"], "family");

    assert_success(
        &hearth(&alice, &["room", "invite", "family", "bob"]).await,
        "invite",
    );

    // bob sees the invitation as pending until he joins.
    let out = hearth(&bob, &["--json", "room", "list"]).await;
    assert_success(&out, "room list");
    let listed = json_lines(&out);
    assert!(listed
        .iter()
        .any(|v| v["type"] == "invitation" && v["name"] == "family" && v["from"] == "alice"));
    assert_success(&hearth(&bob, &["room", "join", "family"]).await, "join");
    let out = hearth(&bob, &["--json", "room", "list"]).await;
    assert!(json_lines(&out)
        .iter()
        .any(|v| v["type"] == "room" && v["name"] == "family"));

    assert_success(
        &hearth(&alice, &["send", "family", "dinner at 7?"]).await,
        "send",
    );
    let out = hearth(&bob, &["--json", "read", "family"]).await;
    assert_success(&out, "read");
    let messages = json_lines(&out);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["sender"], "alice");
    assert_eq!(messages[0]["text"], "dinner at 7?");

    assert_success(&hearth(&bob, &["send", "family", "yes!"]).await, "send");
    let out = hearth(&alice, &["history", "family", "-n", "10"]).await;
    assert_success(&out, "history");
    let text = stdout(&out);
    let first = text
        .find("<alice> dinner at 7?")
        .expect("alice's message in history");
    let second = text.find("<bob> yes!").expect("bob's reply in history");
    assert!(first < second, "history is in order:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_people_and_a_removal() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    let carol = env.init("carol").await;
    common::room_with(&alice, "family", &[&bob, &carol]).await;
    assert_success(
        &hearth(&carol, &["send", "family", "hello from carol"]).await,
        "send",
    );
    let out = hearth(&alice, &["--json", "room", "members", "family"]).await;
    assert_eq!(json_lines(&out).len(), 3);

    assert_success(
        &hearth(&alice, &["room", "kick", "family", "carol"]).await,
        "kick",
    );
    assert_success(
        &hearth(&alice, &["send", "family", "only for bob"]).await,
        "send",
    );

    let out = hearth(&bob, &["--json", "history", "family", "-n", "10"]).await;
    let texts: Vec<String> = json_lines(&out)
        .iter()
        .map(|v| v["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts, vec!["hello from carol", "only for bob"]);

    // carol's client learns she was removed; she never gets the later message.
    let out = hearth(&carol, &["--json", "history", "family", "-n", "10"]).await;
    assert!(!stdout(&out).contains("only for bob"), "{}", stdout(&out));
    let out = hearth(&alice, &["--json", "room", "members", "family"]).await;
    assert_eq!(json_lines(&out).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_room_is_joined_without_an_invitation() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let dave = env.init("dave").await;
    assert_success(
        &hearth(&alice, &["room", "create", "board"]).await,
        "create",
    );
    let out = hearth(&alice, &["room", "publish", "board", "Family board"]).await;
    assert_success(&out, "publish");
    assert!(
        stdout(&out).contains("visible to the relay"),
        "the user is told: {}",
        stdout(&out)
    );

    let out = hearth(&dave, &["--json", "room", "list"]).await;
    assert!(
        json_lines(&out)
            .iter()
            .any(|v| v["type"] == "public" && v["name"] == "Family board"),
        "{}",
        stdout(&out)
    );
    assert_success(
        &hearth(&dave, &["room", "join", "Family board"]).await,
        "join public",
    );
    assert_success(
        &hearth(&dave, &["send", "board", "hi all, dave here"]).await,
        "send",
    );
    let out = hearth(&alice, &["--json", "history", "board", "-n", "5"]).await;
    assert!(
        json_lines(&out)
            .iter()
            .any(|v| v["sender"] == "dave" && v["text"] == "hi all, dave here"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_need_no_invitation_between_people_who_share_a_room() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    let carol = env.init("carol").await;
    let dave = env.init("dave").await;
    common::room_with(&alice, "family", &[&bob, &carol]).await;

    assert_success(&hearth(&alice, &["send", "@bob", "hi"]).await, "send @bob");
    let out = hearth(&bob, &["read", "@alice"]).await;
    assert_success(&out, "read @alice");
    assert!(stdout(&out).contains("*alice* hi"), "{}", stdout(&out));
    let out = hearth(&alice, &["read", "@bob"]).await;
    assert!(stdout(&out).contains("-> bob: hi"), "{}", stdout(&out));

    // Listed apart from rooms, nothing pending.
    let out = hearth(&bob, &["--json", "room", "list"]).await;
    let listed = json_lines(&out);
    let kinds: Vec<&str> = listed.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["direct", "room"], "{listed:?}");
    assert_eq!(listed[0]["with"], "alice");

    // Dave shares no room with bob: his private room waits as an invitation.
    assert_success(
        &hearth(&dave, &["send", "@bob", "hello"]).await,
        "send @bob",
    );
    let out = hearth(&bob, &["--json", "room", "list"]).await;
    let pending: Vec<_> = json_lines(&out)
        .into_iter()
        .filter(|v| v["type"] == "invitation")
        .collect();
    assert_eq!(pending.len(), 1, "{}", stdout(&out));
    assert_eq!(pending[0]["from"], "dave");

    // Several at once, each in their own conversation.
    let out = hearth(&alice, &["--json", "send", "@bob;carol", "x"]).await;
    assert_success(&out, "send to two");
    let sent = json_lines(&out);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_ne!(sent[0]["room"], sent[1]["room"]);
    for (who, from) in [(&bob, "@alice"), (&carol, "@alice")] {
        let out = hearth(who, &["--json", "read", from]).await;
        assert_success(&out, "read");
        let texts: Vec<String> = json_lines(&out)
            .iter()
            .map(|v| v["text"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(texts.last().map(String::as_str), Some("x"), "{texts:?}");
    }
    // Carol's conversation with alice holds only what was sent to her.
    let out = hearth(&carol, &["--json", "history", "@alice"]).await;
    assert_eq!(json_lines(&out).len(), 1, "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_name_shows_next_to_the_handle() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    assert_success(
        &hearth(&alice, &["room", "create", "family"]).await,
        "room create",
    );
    assert_success(
        &hearth(&alice, &["room", "invite", "family", "bob"]).await,
        "invite",
    );
    assert_success(&hearth(&bob, &["room", "join", "family"]).await, "join");

    let out = hearth(&bob, &["nick", "bad\u{1b}[2Jname"]).await;
    assert!(!out.status.success(), "a control character is refused");
    assert!(
        stderr(&out).contains("control characters"),
        "{}",
        stderr(&out)
    );

    let out = hearth(&bob, &["nick", "Uncle Bob"]).await;
    assert_success(&out, "nick");
    assert!(stdout(&out).contains("Uncle Bob (bob)"), "{}", stdout(&out));
    assert_success(&hearth(&bob, &["send", "family", "hi all"]).await, "send");
    assert_success(
        &hearth(&alice, &["send", "family", "hello bob"]).await,
        "send",
    );

    let out = hearth(&alice, &["history", "family"]).await;
    assert_success(&out, "history");
    let text = stdout(&out);
    assert!(text.contains("<Uncle Bob (bob)> hi all"), "{text}");
    assert!(text.contains("<alice> hello bob"), "{text}");
    let out = hearth(&alice, &["--json", "read", "family"]).await;
    assert_success(&out, "read");
    let messages = json_lines(&out);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0]["sender"], "bob");
    assert_eq!(messages[0]["sender_name"], "Uncle Bob");
    assert!(messages[1]["sender_name"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_the_same_room_code_and_nothing_to_acknowledge() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    let code_of = |out: &std::process::Output| {
        let line = &json_lines(out)[0];
        (
            line["epoch"].clone(),
            line["code"].clone(),
            line["fork_at"].clone(),
        )
    };
    let at_alice = hearth(&alice, &["--json", "room", "verify", "family"]).await;
    assert_success(&at_alice, "room verify");
    let at_bob = hearth(&bob, &["--json", "room", "verify", "family"]).await;
    assert_success(&at_bob, "room verify");
    assert_eq!(code_of(&at_alice), code_of(&at_bob));
    assert_eq!(code_of(&at_alice).2, serde_json::Value::Null, "no fork");
    let out = hearth(&bob, &["room", "verify", "family"]).await;
    assert!(
        stdout(&out).contains("room code at epoch"),
        "{}",
        stdout(&out)
    );
    assert_success(&hearth(&bob, &["room", "ack", "family"]).await, "room ack");
}
