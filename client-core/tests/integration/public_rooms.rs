//! Public rooms against a real relay: listed, joined by people nobody invited (an MLS
//! external commit), and new-account notices.

use crate::common;

use common::{h, Relay, User};
use hearth_core::{ClientError, ClientEvent};

/// Waits like [`User::wait_for`], failing on any refused entry or transcript warning on
/// the way: joining must look like any other membership change to everyone.
async fn wait_clean(user: &mut User, what: &str, pred: impl Fn(&ClientEvent) -> bool) {
    user.wait_for(what, |e| {
        assert!(
            !matches!(
                e,
                ClientEvent::Rejected { .. } | ClientEvent::Consistency { .. }
            ),
            "while waiting for {what}: {e:?}"
        );
        pred(e)
    })
    .await;
}

async fn text_clean(user: &mut User, text: &str) {
    wait_clean(
        user,
        text,
        |e| matches!(e, ClientEvent::Message(m) if m.text == text),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_room_is_joined_by_someone_not_invited() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut dave = relay.user("dave").await;
    let mut erin = relay.user("erin").await;

    let room = alice.c().create_room("Family").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.wait_for("invitation", |e| matches!(e, ClientEvent::Invited(_)))
        .await;
    bob.c().accept_invitation(room).await.unwrap();
    assert!(dave.c().public_rooms().await.unwrap().is_empty());

    // Only admins make a room public.
    let refused = bob.c().publish_room(room, "Bob's board").await.unwrap_err();
    assert!(
        matches!(refused, ClientError::NotAdmin { .. }),
        "{refused:?}"
    );
    alice.c().publish_room(room, "Family board").await.unwrap();

    let listed = dave.c().public_rooms().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].room, room);
    assert_eq!(listed[0].public_name, "Family board");
    assert!(!listed[0].joined);
    assert!(alice.c().public_rooms().await.unwrap()[0].joined);

    dave.c().join_public(room).await.unwrap();
    for user in [&mut alice, &mut bob] {
        wait_clean(
            user,
            "dave joining",
            |e| matches!(e, ClientEvent::MemberJoined { handle, .. } if *handle == h("dave")),
        )
        .await;
    }
    dave.c()
        .send_text(room, "hello, I found the board")
        .await
        .unwrap();
    text_clean(&mut alice, "hello, I found the board").await;
    text_clean(&mut bob, "hello, I found the board").await;
    alice.c().send_text(room, "welcome dave").await.unwrap();
    text_clean(&mut dave, "welcome dave").await;
    assert!(dave.c().public_rooms().await.unwrap()[0].joined);
    let rooms = dave.c().rooms().await.unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].name, "Family");
    assert_eq!(rooms[0].members, [h("alice"), h("bob"), h("dave")]);

    // Dave's join record re-published the room at its new epoch: erin joins next, and
    // dave, a member who joined by himself, can be kicked like anyone else.
    erin.c().join_public(room).await.unwrap();
    erin.c().send_text(room, "erin here").await.unwrap();
    for user in [&mut alice, &mut bob, &mut dave] {
        text_clean(user, "erin here").await;
    }
    alice.c().kick(room, &h("dave")).await.unwrap();
    dave.wait_for("being kicked", |e| {
        matches!(e, ClientEvent::RemovedFromRoom { .. })
    })
    .await;
    bob.c().send_text(room, "after the kick").await.unwrap();
    text_clean(&mut erin, "after the kick").await;

    // Private again: the listing is gone and nobody else gets in.
    alice.c().unpublish_room(room).await.unwrap();
    assert!(dave.c().public_rooms().await.unwrap().is_empty());
    let frank = relay.user("frank").await;
    assert!(matches!(
        frank.c().join_public(room).await.unwrap_err(),
        ClientError::NoSuchRoom(ref r) if r.id == room
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_room_cannot_be_joined_from_outside() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let dave = relay.user("dave").await;
    let room = alice.c().create_room("Private").await.unwrap();
    // The relay refuses: the room is not listed.
    let refused = dave.c().join_public(room).await.unwrap_err();
    assert!(
        matches!(refused, ClientError::NoSuchRoom(ref r) if r.id == room),
        "{refused:?}"
    );
    assert!(dave.c().rooms().await.unwrap().is_empty());
    assert!(dave.c().public_rooms().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_about_new_accounts() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    alice.c().watch_registrations(true).await.unwrap();
    let _gran = relay.user("gran").await;
    alice
        .wait_for(
            "gran's registration",
            |e| matches!(e, ClientEvent::AccountRegistered { handle } if *handle == h("gran")),
        )
        .await;
}
