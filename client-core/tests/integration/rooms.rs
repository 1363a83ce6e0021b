//! Rooms end to end against a real relay (QUIC on 127.0.0.1:0).

use crate::common;

use common::{h, Relay};
use hearth_core::ClientEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_talk() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut carol = relay.user("carol").await;

    let room = alice.c().create_room("Family").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    alice.c().invite(room, &h("carol")).await.unwrap();

    bob.wait_for(
        "invitation",
        |e| matches!(e, ClientEvent::Invited(i) if i.name == "Family"),
    )
    .await;
    let invitations = bob.c().invitations().await.unwrap();
    assert_eq!(invitations.len(), 1);
    assert_eq!(invitations[0].from, h("alice"));
    bob.c().accept_invitation(room).await.unwrap();
    carol.c().sync().await.unwrap();
    carol.c().accept_invitation(room).await.unwrap();

    alice.c().send_text(room, "hello from alice").await.unwrap();
    bob.wait_text("hello from alice").await;
    carol.wait_text("hello from alice").await;
    bob.c().send_text(room, "hi, bob here").await.unwrap();
    carol.c().send_text(room, "carol too").await.unwrap();
    alice.wait_text("carol too").await;
    bob.wait_text("carol too").await;

    for user in [&alice, &bob, &carol] {
        user.c().sync().await.unwrap();
        assert_eq!(
            user.texts(room).await,
            ["hello from alice", "hi, bob here", "carol too"]
        );
        let rooms = user.c().rooms().await.unwrap();
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms[0].name, "Family");
        assert_eq!(rooms[0].members, [h("alice"), h("bob"), h("carol")]);
    }
    let own = alice.c().history(room, 10, None).await.unwrap();
    assert!(own[0].own && !own[1].own);
    assert_eq!(alice.c().find_room("family").await.unwrap(), Some(room));
    assert_eq!(
        alice.c().find_room(&room.to_hex()[..6]).await.unwrap(),
        Some(room)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_converge() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut carol = relay.user("carol").await;
    let mut dave = relay.user("dave").await;

    let room = alice.c().create_room("Race").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    bob.c().accept_invitation(room).await.unwrap();
    // Only admins invite (room policy).
    alice.c().grant_admin(room, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();

    // Both commit for the same epoch: one wins, the other retries invisibly.
    let (carol_h, dave_h) = (h("carol"), h("dave"));
    let (a, b) = tokio::join!(
        alice.c().invite(room, &carol_h),
        bob.c().invite(room, &dave_h)
    );
    a.unwrap();
    b.unwrap();
    for user in [&mut carol, &mut dave] {
        user.wait_for("invitation", |e| matches!(e, ClientEvent::Invited(_)))
            .await;
        user.c().accept_invitation(room).await.unwrap();
    }
    alice.c().sync().await.unwrap();
    bob.c().sync().await.unwrap();
    let expected = [h("alice"), h("bob"), h("carol"), h("dave")];
    for user in [&alice, &bob, &carol, &dave] {
        let members: Vec<_> = user
            .c()
            .members(room)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.handle)
            .collect();
        assert_eq!(members, expected);
    }
    dave.c().send_text(room, "dave made it").await.unwrap();
    carol.wait_text("dave made it").await;
    carol.c().send_text(room, "so did carol").await.unwrap();
    dave.wait_text("so did carol").await;
    bob.wait_text("so did carol").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_member_catches_up_across_epochs_and_restarts() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let carol = relay.user("carol").await;
    let dave = relay.user("dave").await;

    let room = alice.c().create_room("Kitchen").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    bob.c().accept_invitation(room).await.unwrap();
    alice.c().send_text(room, "one").await.unwrap();
    bob.wait_text("one").await;

    // Bob goes offline; the room moves through several epochs.
    bob.client.take().unwrap().close().await;
    alice.c().invite(room, &h("carol")).await.unwrap();
    alice.c().send_text(room, "two").await.unwrap();
    alice.c().invite(room, &h("dave")).await.unwrap();
    alice.c().send_text(room, "three").await.unwrap();
    alice.restart().await; // alice restarts between steps too
    alice.c().remove_member(room, &h("carol")).await.unwrap();
    alice.c().send_text(room, "four").await.unwrap();
    drop(carol);
    drop(dave);

    bob.restart().await;
    bob.c().sync().await.unwrap();
    assert_eq!(bob.texts(room).await, ["one", "two", "three", "four"]);
    let summary = bob.c().rooms().await.unwrap();
    assert_eq!(summary[0].members, [h("alice"), h("bob"), h("dave")]);
    // Caught up to the very epoch alice is at (invites, updates after joining and on
    // schedule, the removal).
    let at_alice = alice.c().rooms().await.unwrap();
    assert_eq!(summary[0].epoch, at_alice[0].epoch);
    assert!(summary[0].epoch >= 4);
    bob.c().send_text(room, "back").await.unwrap();
    alice.wait_text("back").await;
    alice.restart().await;
    assert_eq!(
        alice.texts(room).await,
        ["one", "two", "three", "four", "back"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_loses_access() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut carol = relay.user("carol").await;
    let room = alice.c().create_room("Trio").await.unwrap();
    for (name, user) in [("bob", &bob), ("carol", &carol)] {
        alice.c().invite(room, &h(name)).await.unwrap();
        user.c().sync().await.unwrap();
        user.c().accept_invitation(room).await.unwrap();
    }
    alice.c().send_text(room, "before").await.unwrap();
    carol.wait_text("before").await;

    alice.c().remove_member(room, &h("carol")).await.unwrap();
    carol
        .wait_for(
            "removal",
            |e| matches!(e, ClientEvent::RemovedFromRoom { by, .. } if *by == h("alice")),
        )
        .await;
    bob.wait_for(
        "member removed",
        |e| matches!(e, ClientEvent::MemberRemoved { handle, .. } if *handle == h("carol")),
    )
    .await;
    alice.c().send_text(room, "after").await.unwrap();
    bob.wait_text("after").await;
    bob.c().send_text(room, "bob after").await.unwrap();

    let err = carol.c().send_text(room, "let me in").await.unwrap_err();
    assert!(
        matches!(err, hearth_core::ClientError::RemovedFromRoom(ref r) if r.id == room),
        "{err}"
    );
    carol.c().sync().await.unwrap();
    assert_eq!(carol.texts(room).await, ["before"]);
    assert!(carol.c().rooms().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_replayed_entries_are_rejected() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = alice.c().create_room("Tamper").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    bob.c().accept_invitation(room).await.unwrap();

    alice.c().send_text(room, "genuine").await.unwrap();
    bob.wait_text("genuine").await;
    let genuine = relay.last_payload(room);
    let me = alice.c().profile().account();

    // A flipped byte in the ciphertext.
    let mut tampered = genuine.clone();
    let at = tampered.len() - 20;
    tampered[at] ^= 0x40;
    relay.inject(room, me, tampered);
    // The same envelope again (a replay by the relay).
    relay.inject(room, me, genuine);
    // Garbage.
    relay.inject(room, me, b"not an MLS message".to_vec());
    bob.c().sync().await.unwrap();
    let mut rejected = 0;
    while rejected < 3 {
        bob.wait_for("rejection", |e| matches!(e, ClientEvent::Rejected { .. }))
            .await;
        rejected += 1;
    }
    // Processing continues.
    alice.c().send_text(room, "still fine").await.unwrap();
    bob.wait_text("still fine").await;
    assert_eq!(bob.texts(room).await, ["genuine", "still fine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_is_committed_by_another_member() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let room = alice.c().create_room("Leave").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    bob.c().accept_invitation(room).await.unwrap();
    bob.c().leave(room).await.unwrap();
    alice
        .wait_for(
            "bob left",
            |e| matches!(e, ClientEvent::MemberLeft { handle, .. } if *handle == h("bob")),
        )
        .await;
    let members = alice.c().members(room).await.unwrap();
    assert_eq!(members.len(), 1);
    assert!(bob.c().rooms().await.unwrap().is_empty());
    alice.c().send_text(room, "alone now").await.unwrap();
}
