//! Private messages and presence against a real relay (QUIC on 127.0.0.1:0).

use crate::common;

use common::{h, room_with, Relay, User};
use hearth_core::{ClientError, ClientEvent};
use hearth_protocol::RoomId;

/// Waits for a message with `text` and returns its room.
async fn message_room(user: &mut User, text: &str) -> RoomId {
    let t = text.to_string();
    match user
        .wait_for(
            text,
            move |e| matches!(e, ClientEvent::Message(m) if m.text == t),
        )
        .await
    {
        ClientEvent::Message(m) => m.room,
        _ => unreachable!("wait_for returns a matching event"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_message_reaches_only_its_recipient_without_an_invitation_step() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut carol = relay.user("carol").await;
    let home = room_with(&alice, &[&bob, &carol], "Home").await;

    let direct = alice
        .c()
        .send_private(&h("bob"), "psst, bob")
        .await
        .unwrap();
    assert_ne!(direct, home);
    // Bob accepts nothing: the message simply arrives.
    assert_eq!(message_room(&mut bob, "psst, bob").await, direct);
    assert!(bob.c().invitations().await.unwrap().is_empty());
    let listed = bob.c().rooms().await.unwrap();
    let summary = listed.iter().find(|r| r.id == direct).unwrap();
    assert!(summary.direct);
    assert_eq!(summary.name, "@alice+bob");
    assert_eq!(summary.members, vec![h("alice"), h("bob")]);
    assert!(!listed.iter().find(|r| r.id == home).unwrap().direct);
    assert_eq!(bob.c().find_room("@alice").await.unwrap(), Some(direct));
    assert_eq!(alice.c().find_room("@bob").await.unwrap(), Some(direct));
    assert_eq!(alice.c().find_room("@carol").await.unwrap(), None);

    // The second message, and the answer, use the same room.
    assert_eq!(
        alice.c().send_private(&h("bob"), "again").await.unwrap(),
        direct
    );
    assert_eq!(message_room(&mut bob, "again").await, direct);
    assert_eq!(
        bob.c().send_private(&h("alice"), "ok").await.unwrap(),
        direct
    );
    assert_eq!(bob.texts(direct).await, ["psst, bob", "again", "ok"]);

    // A third person cannot be brought in.
    let err = alice.c().invite(direct, &h("carol")).await.unwrap_err();
    assert!(matches!(err, ClientError::PolicyRefused { .. }), "{err:?}");

    // Carol, who shares a room with both, never sees any of it.
    alice.c().send_text(home, "dinner at 7").await.unwrap();
    carol.wait_text("dinner at 7").await;
    carol.c().sync().await.unwrap();
    assert!(carol
        .c()
        .rooms()
        .await
        .unwrap()
        .iter()
        .all(|r| r.id != direct));
    assert!(carol.c().invitations().await.unwrap().is_empty());
    assert_eq!(carol.c().find_room("@alice").await.unwrap(), None);
    assert_eq!(carol.texts(home).await, ["dinner at 7"]);
    while let Ok(event) = carol.events.try_recv() {
        if let ClientEvent::Message(m) = event {
            assert_eq!(m.room, home, "carol got {m:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_message_to_an_unknown_person_leaves_no_room_behind() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let err = alice
        .c()
        .send_private(&h("nobody"), "hello?")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NoSuchUser(_)), "{err:?}");
    assert!(alice.c().rooms().await.unwrap().is_empty());
    let err = alice.c().send_private(&h("alice"), "me").await.unwrap_err();
    assert!(err.to_string().contains("yourself"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_seen_by_members_and_never_stored() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let home = room_with(&alice, &[&bob], "Home").await;
    let head = relay.room_record(home).head;

    bob.c().announce_presence().await;
    alice
        .wait_for("bob online", |e| {
            matches!(e, ClientEvent::Presence { handle, online: true, .. } if *handle == h("bob"))
        })
        .await;
    assert_eq!(alice.c().online(home).await.unwrap(), vec![h("bob")]);
    assert_eq!(bob.c().online(home).await.unwrap(), vec![h("bob")]);
    assert!(
        relay.room_record(home).head > head,
        "presence went through the room"
    );

    alice.c().send_text(home, "hi bob").await.unwrap();
    bob.client.take().unwrap().close().await;
    alice
        .wait_for("bob offline", |e| {
            matches!(e, ClientEvent::Presence { handle, online: false, .. } if *handle == h("bob"))
        })
        .await;
    assert!(alice.c().online(home).await.unwrap().is_empty());
    // Only the text is history.
    assert_eq!(alice.texts(home).await, ["hi bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_of_a_client_that_died_expires_and_old_notices_are_not_news() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let carol = relay.user("carol").await;
    let home = room_with(&alice, &[&bob, &carol], "Home").await;
    // Carol is away: her client closes and comes back later.
    let carol_dir = carol.dir.clone();
    let carol_client = { carol }.client.take().unwrap();
    carol_client.close().await;

    bob.c().announce_presence().await;
    alice
        .wait_for("bob online", |e| {
            matches!(e, ClientEvent::Presence { handle, online: true, .. } if *handle == h("bob"))
        })
        .await;
    // Bob's client dies without a goodbye (dropped, not closed): alice still has him
    // online until his heartbeat is overdue.
    drop(bob.client.take());
    assert_eq!(alice.c().online(home).await.unwrap(), vec![h("bob")]);
    // Time passes, for the relay (which stamps entries) and for every device.
    let later = (hearth_core::PRESENCE_TTL.as_secs() + 60) as i64;
    hearth_core::clock::set_test_clock_offset(later);
    hearth_relay::service::set_test_clock_offset(later);
    assert!(
        alice.c().online(home).await.unwrap().is_empty(),
        "a missed heartbeat means offline"
    );

    // Carol catches up on bob's old "online": history, not news, and not online.
    let profile = hearth_core::Profile::open(&carol_dir, common::PASS).unwrap();
    let carol = hearth_core::Client::connect(profile).await.unwrap();
    let mut events = carol.events();
    carol.send_text(home, "back").await.unwrap();
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, ClientEvent::Presence { .. }),
            "a stale presence notice was told as news: {event:?}"
        );
    }
    assert!(carol.online(home).await.unwrap().is_empty());
    carol.close().await;
}

/// Issue 12: presence reaches rooms entered after announcing it. A room created later
/// is told at once (no wait for the next heartbeat); a member who accepts an invitation
/// is reported (`MemberAccepted`) and, greeted then, sees the others online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_rooms_entered_after_it_was_announced() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    alice.c().announce_presence().await;
    bob.c().announce_presence().await;

    let kitchen = alice.c().create_room("Kitchen").await.unwrap();
    alice.c().invite(kitchen, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    bob.c().accept_invitation(kitchen).await.unwrap();
    // Bob greeted the room he entered; alice hears that he accepted.
    alice
        .wait_for("bob accepted", |e| {
            matches!(e, ClientEvent::MemberAccepted { room, handle } if *room == kitchen && *handle == h("bob"))
        })
        .await;
    alice
        .wait_for("bob online in the new room", |e| {
            matches!(e, ClientEvent::Presence { room, handle, online: true } if *room == kitchen && *handle == h("bob"))
        })
        .await;
    assert_eq!(
        alice.c().online(kitchen).await.unwrap(),
        [h("alice"), h("bob")]
    );
    // Alice's own announcement in the room predates bob: greeted again, bob sees her.
    assert!(bob.c().online(kitchen).await.unwrap().contains(&h("bob")));
    assert!(!bob.c().online(kitchen).await.unwrap().contains(&h("alice")));
    alice.c().greet(kitchen).await;
    bob.wait_for("alice online for bob", |e| {
        matches!(e, ClientEvent::Presence { room, handle, online: true } if *room == kitchen && *handle == h("alice"))
    })
    .await;
    assert_eq!(
        bob.c().online(kitchen).await.unwrap(),
        [h("alice"), h("bob")]
    );

    // A heartbeat (or a reconnect's announcement) while shown online is no news.
    bob.c().heartbeat().await;
    bob.c().send_text(kitchen, "still here").await.unwrap();
    let mut told = Vec::new();
    alice
        .wait_for("still here", |e| {
            if let ClientEvent::Presence { handle, .. } = e {
                told.push(handle.clone());
            }
            matches!(e, ClientEvent::Message(m) if m.text == "still here")
        })
        .await;
    assert_eq!(told, Vec::<hearth_protocol::Handle>::new());
    assert_eq!(
        alice.c().online(kitchen).await.unwrap(),
        [h("alice"), h("bob")]
    );
}
