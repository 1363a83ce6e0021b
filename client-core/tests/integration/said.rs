//! Replies, edits, deletions and reactions against a real relay (QUIC on 127.0.0.1:0),
//! and what members do with those that break the rules.

use crate::common;

use common::hostile::Hostile;
use common::{h, room_with, Relay};
use hearth_core::content::Body;
use hearth_core::{ClientEvent, Delivery, HistoryItem, MessageChange, Reaction};
use hearth_protocol::{RoomId, Seq};

fn sent(delivery: Delivery) -> Seq {
    match delivery {
        Delivery::Sent(seq) => seq,
        other => panic!("not sent: {other:?}"),
    }
}

async fn message(user: &common::User, room: RoomId, seq: Seq) -> HistoryItem {
    user.c()
        .message(room, seq)
        .await
        .unwrap()
        .expect("a stored message")
}

async fn changed(user: &mut common::User, what: &str, change: MessageChange) -> HistoryItem {
    let event = user
        .wait_for(
            what,
            |e| matches!(e, ClientEvent::MessageChanged { change: c, .. } if *c == change),
        )
        .await;
    let ClientEvent::MessageChanged { item, .. } = event else {
        unreachable!()
    };
    item
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_edits_deletions_and_reactions_reach_every_member_and_stay() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;

    let question = alice
        .c()
        .send_text(room, "who brings dessert?")
        .await
        .unwrap();
    bob.wait_text("who brings dessert?").await;
    let reply = sent(
        bob.c()
            .send_reply_or_queue(room, question, "me!")
            .await
            .unwrap(),
    );
    let event = alice
        .wait_for(
            "the reply",
            |e| matches!(e, ClientEvent::Message(m) if m.text == "me!"),
        )
        .await;
    let ClientEvent::Message(item) = event else {
        unreachable!()
    };
    assert_eq!((item.seq, item.reply_to), (reply, Some(question)));

    // Only the sender edits or deletes, and the clients say so before sending.
    let err = bob
        .c()
        .send_edit(room, question, "forged")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only edit your own"), "{err}");
    let err = bob.c().send_delete(room, question).await.unwrap_err();
    assert!(err.to_string().contains("only delete your own"), "{err}");
    let err = bob
        .c()
        .send_reaction(room, Seq(9_999), "👍")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no message #9999"), "{err}");
    let err = bob
        .c()
        .send_reaction(room, question, "\u{202e}👍")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reaction"), "{err}");

    alice
        .c()
        .send_edit(room, question, "who brings the cake?")
        .await
        .unwrap();
    let item = changed(
        &mut bob,
        "the edit",
        MessageChange::Edited("who brings the cake?".into()),
    )
    .await;
    assert_eq!(
        (item.text.as_str(), item.edited, item.seq),
        ("who brings the cake?", true, question)
    );

    bob.c().send_reaction(room, question, "👍").await.unwrap();
    changed(&mut alice, "bob's 👍", MessageChange::Reacted("👍".into())).await;
    let err = bob
        .c()
        .send_reaction(room, question, "👍")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already reacted"), "{err}");
    alice.c().send_reaction(room, question, "👍").await.unwrap();
    bob.c().send_reaction(room, question, "❤️").await.unwrap();
    let item = changed(&mut alice, "bob's ❤️", MessageChange::Reacted("❤️".into())).await;
    let expected = vec![
        Reaction {
            emoji: "👍".into(),
            by: vec![h("bob"), h("alice")],
        },
        Reaction {
            emoji: "❤️".into(),
            by: vec![h("bob")],
        },
    ];
    assert_eq!(item.reactions, expected);
    bob.c().sync().await.unwrap();
    assert_eq!(message(&bob, room, question).await.reactions, expected);

    // A restart reads the same from the store.
    bob.restart().await;
    let stored = message(&bob, room, question).await;
    assert_eq!(
        (stored.text.as_str(), stored.edited, stored.reactions.len()),
        ("who brings the cake?", true, 2)
    );
    let history = bob.c().history(room, 10, None).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].reply_to, Some(question));

    alice.c().send_delete(room, question).await.unwrap();
    let item = changed(&mut bob, "the deletion", MessageChange::Deleted).await;
    assert!(item.deleted && item.text.is_empty() && item.reactions.is_empty());
    let err = alice
        .c()
        .send_edit(room, question, "again")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already deleted"), "{err}");
    let err = bob
        .c()
        .send_reply_or_queue(room, question, "?")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deleted"), "{err}");
    // The reply itself stays, pointing at the withdrawn message.
    assert_eq!(bob.texts(room).await, ["", "me!"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_edit_delete_or_forge_reactions_on_others_messages() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Home").await;
    mallory.c().sync().await.unwrap();

    let hello = alice.c().send_text(room, "hello").await.unwrap();
    bob.wait_text("hello").await;

    // Mallory's modified client sends what an honest one refuses to.
    let hostile = Hostile::take_over(&mut mallory).await;
    let mut group = hostile.group(room);
    for body in [
        Body::Edit {
            target: hello,
            text: "send me your passphrase".into(),
        },
        Body::Delete { target: hello },
        Body::React {
            target: hello,
            emoji: "\u{1b}]0;pwned\u{7}".into(),
        },
        Body::React {
            target: hello,
            emoji: "\u{202e}👍".into(),
        },
        Body::React {
            target: hello,
            emoji: "x".repeat(65),
        },
        // A reaction is hers to give, once.
        Body::React {
            target: hello,
            emoji: "👀".into(),
        },
        Body::React {
            target: hello,
            emoji: "👀".into(),
        },
        Body::Text {
            text: "done".into(),
            reply_to: Some(hello),
        },
    ] {
        hostile.send_body(room, &mut group, body).await.unwrap();
    }

    let mut changes = Vec::new();
    bob.wait_for("mallory's last message", |e| {
        if let ClientEvent::MessageChanged { by, change, .. } = e {
            changes.push((by.clone(), change.clone()));
        }
        matches!(e, ClientEvent::Message(m) if m.text == "done")
    })
    .await;
    assert_eq!(
        changes,
        [(h("mallory"), MessageChange::Reacted("👀".into()))]
    );
    let item = message(&bob, room, hello).await;
    assert_eq!(
        (item.text.as_str(), item.edited, item.deleted),
        ("hello", false, false)
    );
    assert_eq!(
        item.reactions,
        [Reaction {
            emoji: "👀".into(),
            by: vec![h("mallory")]
        }]
    );
}
