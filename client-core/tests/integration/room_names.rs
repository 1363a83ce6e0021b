//! Rooms are named by name in errors (with a short id only where two rooms share one), a
//! rebuilt room's name means the new room, and pending invitations follow renames
//! (issue 12). A real relay on 127.0.0.1:0, real clients.

use crate::common;

use common::{h, room_with, Relay};
use hearth_core::{ClientError, ClientEvent};

/// The first 8 hex digits of a room id.
fn short(room: hearth_protocol::RoomId) -> String {
    room.to_hex()[..8].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_errors_name_the_room_and_tell_rooms_of_one_name_apart() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let _carol = relay.user("carol").await;
    let family = room_with(&alice, &[&bob], "family").await;
    let hex = family.to_hex();

    // Several refusals, each naming the room by its name and never by its id.
    let errors: Vec<ClientError> = vec![
        bob.c().kick(family, &h("alice")).await.unwrap_err(),
        bob.c().rename(family, "mine").await.unwrap_err(),
        bob.c().invite(family, &h("carol")).await.unwrap_err(),
        alice.c().invite(family, &h("bob")).await.unwrap_err(),
        alice.c().unban(family, &h("carol")).await.unwrap_err(),
        alice
            .c()
            .grant_admin(family, &h("carol"))
            .await
            .unwrap_err(),
    ];
    for err in &errors {
        let shown = err.to_string();
        assert!(shown.contains("family"), "{shown}");
        assert!(!shown.contains(&hex[..8]), "no id needed: {shown}");
        let room = err.room().expect("the error is about a room");
        assert_eq!(room.id, family);
        assert_eq!(room.name.as_deref(), Some("family"));
    }
    assert!(
        errors[0]
            .to_string()
            .starts_with("you are not an admin of family: ask an admin (alice)"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[3].to_string(), "bob is already a member of family");
    assert_eq!(errors[4].to_string(), "carol is not banned from family");

    // A second room of that name: now each is named with its short id.
    let other = bob.c().create_room("Family").await.unwrap();
    let err = bob.c().rename(family, "mine").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "you are not an admin of family [{}]: ask an admin (alice) to rename the room",
            short(family)
        )
    );
    let err = bob.c().find_room("family").await.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(&short(family)) && shown.contains(&short(other)),
        "{shown}"
    );

    // Displayed without the client: by id, as the library made it.
    let bare = ClientError::NoSuchRoom(family.into());
    assert!(bare
        .to_string()
        .starts_with(&format!("room {} ", short(family))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rebuild_the_name_means_the_new_room() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let old = room_with(&alice, &[&bob], "family").await;

    let new = alice.c().rebuild(old).await.unwrap();
    // Where the admin rebuilt it: at once.
    assert_eq!(alice.c().find_room("family").await.unwrap(), Some(new));
    assert_eq!(
        alice.c().find_room("family (old)").await.unwrap(),
        Some(old)
    );
    assert_eq!(
        alice.c().find_room(&short(old)).await.unwrap(),
        Some(old),
        "the id still reaches it"
    );
    let rooms = alice.c().rooms().await.unwrap();
    let listed: Vec<_> = rooms.iter().map(|r| (r.id, r.rebuilt_as)).collect();
    assert_eq!(listed, [(new, None), (old, Some(new))], "the old one last");
    let shown = alice.c().room_ref(old).await.to_string();
    assert_eq!(shown, "family (old)");
    assert_eq!(alice.c().room_ref(new).await.to_string(), "family");
    alice.c().send_text(new, "over here").await.unwrap();

    // At a member: once the pointer arrived (with the invitation to the new room).
    bob.wait_for("the rebuild", |e| {
        matches!(e, ClientEvent::RoomRebuilt { room, new: to, .. } if *room == old && *to == new)
    })
    .await;
    bob.c().sync().await.unwrap();
    assert_eq!(bob.c().find_room("family").await.unwrap(), Some(new));
    let invitations = bob.c().invitations().await.unwrap();
    assert_eq!(invitations.len(), 1);
    assert_eq!(
        (invitations[0].room, invitations[0].name.as_str()),
        (new, "family")
    );
    bob.c().accept_invitation(new).await.unwrap();
    assert_eq!(bob.c().find_room("family").await.unwrap(), Some(new));
    assert_eq!(bob.c().room_ref(old).await.to_string(), "family (old)");
    // Kept across a restart.
    bob.restart().await;
    assert_eq!(bob.c().find_room("family").await.unwrap(), Some(new));
    bob.c().send_text(new, "found it").await.unwrap();
    alice.wait_text("found it").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_invitation_shows_the_room_s_current_name() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let carol = relay.user("carol").await;
    let kids = room_with(&alice, &[&bob], "kids").await;
    alice.c().invite(kids, &h("carol")).await.unwrap();
    let invitations = carol.c().invitations().await.unwrap();
    assert_eq!(invitations[0].name, "kids");

    alice.c().rename(kids, "children").await.unwrap();
    let invitations = carol.c().invitations().await.unwrap();
    assert_eq!(invitations.len(), 1);
    assert_eq!(
        (invitations[0].room, invitations[0].name.as_str()),
        (kids, "children")
    );
    assert_eq!(carol.c().room_ref(kids).await.to_string(), "children");
    // The new name finds it; the old one no longer does.
    assert_eq!(carol.c().find_room("children").await.unwrap(), Some(kids));
    assert_eq!(carol.c().find_room("kids").await.unwrap(), None);
    carol.c().accept_invitation(kids).await.unwrap();
    let rooms = carol.c().rooms().await.unwrap();
    assert_eq!(rooms[0].name, "children");
}

/// A room named like the start of another room's id cannot capture what is typed to reach
/// that room by its id (as hearth advises when two rooms share a name): mallory names his
/// room after the short id of the family room, and bob, typing that id, gets an ambiguity
/// error naming both rooms, never mallory's room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_named_like_another_room_s_id_does_not_capture_it() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let mallory = relay.user("mallory").await;
    let family = room_with(&alice, &[&bob], "family").await;
    let trap = room_with(&mallory, &[&bob], &short(family)).await;

    // The name alone, typed as it is shown: not mallory's room.
    match bob.c().find_room(&short(family)).await {
        Ok(found) => assert_eq!(found, Some(family), "the id must not lead to the trap"),
        Err(err @ ClientError::AmbiguousRoom { .. }) => {
            let ClientError::AmbiguousRoom { rooms, .. } = &err else {
                unreachable!()
            };
            let ids: Vec<_> = rooms.iter().map(|r| r.id).collect();
            assert!(ids.contains(&family) && ids.contains(&trap), "{ids:?}");
            // The hint names ids that do not lead back to the same question.
            assert!(err.to_string().contains(&family.to_hex()), "{err}");
        }
        Err(other) => panic!("unexpected {other}"),
    }
    // A room named after the whole id does not capture it either: a whole id names one
    // room.
    let whole = room_with(&mallory, &[&bob], &family.to_hex()).await;
    assert_eq!(
        bob.c().find_room(&family.to_hex()).await.unwrap(),
        Some(family)
    );
    assert_eq!(
        bob.c().find_room(&whole.to_hex()).await.unwrap(),
        Some(whole)
    );
    // The whole id still reaches each room.
    assert_eq!(
        bob.c().find_room(&family.to_hex()).await.unwrap(),
        Some(family)
    );
    assert_eq!(bob.c().find_room(&trap.to_hex()).await.unwrap(), Some(trap));
}
