//! Issue 10, decision 0009: nobody can take a room's capability away from the others. A
//! member's commit, or a public room's joiner's external commit, that announces a
//! capability nobody else can derive is refused by every honest member and undone at the
//! relay by an admin; the room goes on and the offender cannot commit there again. The
//! relay's settings for a room (retention, listing, admins) take an admin it knows.
//! Real relay; the attackers are hostile clients built on openmls and raw requests.

mod common;

use common::hostile::{CapAfter, Hostile};
use common::{h, room_with, Relay, User};
use hearth_core::{ClientError, ClientEvent};
use hearth_protocol::{ErrorCode, Request, RoomId};
use openmls::prelude::LeafNodeParameters;

/// A valid self-update of the hostile member's own leaf, sent with `after` as the next
/// capability.
async fn self_update(
    hostile: &Hostile,
    room: RoomId,
    after: CapAfter,
) -> Result<hearth_protocol::Response, hearth_protocol::WireError> {
    let mut group = hostile.group(room);
    let bundle = group
        .self_update(
            &hostile.engine.provider,
            &hostile.engine.signer,
            LeafNodeParameters::default(),
        )
        .unwrap();
    let (commit, _, _) = bundle.into_messages();
    hostile.send_commit(room, &mut group, &commit, after).await
}

/// The handles of a room's members, as `user` sees them.
async fn member_handles(user: &User, room: RoomId) -> Vec<hearth_protocol::Handle> {
    user.c()
        .members(room)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.handle)
        .collect()
}

async fn wait_undone(user: &mut User, by: &str) {
    let event = user
        .wait_for("the refused commit undone", |e| {
            matches!(e, ClientEvent::CommitReverted { .. })
        })
        .await;
    assert!(
        matches!(&event, ClientEvent::CommitReverted { by: who, .. } if *who == Some(h(by))),
        "{event:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_commit_announcing_a_foreign_capability_is_refused_and_undone() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Home").await;
    bob.c().sync().await.unwrap();
    let hostile = Hostile::take_over(&mut mallory).await;

    // A perfectly valid self-update, but with a capability hash only mallory knows the
    // preimage of: the relay has to take it.
    let before = relay.room_record(room).current;
    self_update(&hostile, room, CapAfter::Foreign)
        .await
        .unwrap();

    // Alice, the owner, sees it first (live, or when she syncs) and undoes it: the relay
    // takes the capability from before again. Bob finds the room usable again.
    alice.c().sync().await.unwrap();
    wait_undone(&mut alice, "mallory").await;
    assert_eq!(relay.room_record(room).current, before);
    bob.c().sync().await.unwrap();
    alice.c().send_text(room, "still talking").await.unwrap();
    bob.wait_text("still talking").await;
    bob.c().send_text(room, "me too").await.unwrap();
    alice.wait_text("me too").await;

    // Mallory cannot commit in this room any more, whatever capability it announces.
    let barred = self_update(&hostile, room, CapAfter::Exported)
        .await
        .unwrap_err();
    assert_eq!(barred.code, ErrorCode::Forbidden, "{barred:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_announcing_a_foreign_capability_is_undone_and_cannot_join_again() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut eve = relay.user("eve").await;
    let room = room_with(&alice, &[&bob], "Board").await;
    alice.c().publish_room(room, "Family board").await.unwrap();
    bob.c().sync().await.unwrap();

    // A valid external commit under eve's own name, with a capability hash nobody else
    // can derive.
    let hostile = Hostile::take_over(&mut eve).await;
    let (epoch, payload, _) = hostile.external_join(room, "eve").await;
    let join = Request::JoinPublic {
        room,
        epoch,
        next_cap_hash: hearth_protocol::Cap([0x66; 32]).hash(),
        payload: payload.clone(),
    };
    hostile.call(join).await.unwrap();

    alice.c().sync().await.unwrap();
    wait_undone(&mut alice, "eve").await;
    bob.c().sync().await.unwrap();
    alice.c().send_text(room, "nothing happened").await.unwrap();
    bob.wait_text("nothing happened").await;
    let members = member_handles(&alice, room).await;
    assert!(!members.contains(&h("eve")), "{members:?}");

    // Eve is barred from joining this room by external commit.
    alice.c().publish_room(room, "Family board").await.unwrap();
    let (epoch, payload, cap) = hostile.external_join(room, "eve").await;
    let barred = hostile
        .call(Request::JoinPublic {
            room,
            epoch,
            next_cap_hash: cap.hash(),
            payload,
        })
        .await
        .unwrap_err();
    assert_eq!(barred.code, ErrorCode::Forbidden, "{barred:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_settings_for_a_room_take_an_admin_and_a_kicked_admin_cannot_undo_the_kick() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Board").await;
    alice.c().publish_room(room, "Family board").await.unwrap();
    alice.c().grant_admin(room, &h("mallory")).await.unwrap();
    bob.c().sync().await.unwrap();
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    // The owner first, then the other admins.
    let admins = vec![
        alice.c().profile().account(),
        mallory.c().profile().account(),
    ];
    assert_eq!(
        store.room_admins(&room).unwrap(),
        admins,
        "told with the commit"
    );

    // Bob, a plain member with the current capability, can neither unpublish the room,
    // nor change its retention, nor make himself an admin at the relay.
    let bob_hostile = Hostile::take_over(&mut bob).await;
    let cap = bob_hostile.engine.cap(&bob_hostile.group(room)).unwrap();
    for request in [
        Request::UnpublishRoom {
            room,
            cap: cap.clone(),
        },
        Request::SetRetention {
            room,
            cap: cap.clone(),
            retention_secs: Some(3600),
        },
        Request::SetRoomAdmins {
            room,
            cap: cap.clone(),
            admins: vec![bob_hostile.profile.account()],
        },
    ] {
        let refused = bob_hostile.call(request).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden, "{refused:?}");
    }
    assert!(store.listing(&room).unwrap().is_some());

    // The owner removes mallory's admin role and mallory: the relay's list follows in
    // the same transaction, so mallory cannot undo either with the old capability.
    let mallory_hostile = Hostile::take_over(&mut mallory).await;
    let before = mallory_hostile
        .engine
        .cap(&mallory_hostile.group(room))
        .unwrap();
    alice.c().kick(room, &h("mallory")).await.unwrap();
    assert_eq!(
        store.room_admins(&room).unwrap(),
        vec![alice.c().profile().account()]
    );
    let kick = relay.room_record(room).head;
    let refused = mallory_hostile
        .call(Request::RevertCommit {
            room,
            cap: before,
            seq: hearth_protocol::Seq(kick),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused:?}");
    assert_eq!(member_handles(&alice, room).await, [h("alice"), h("bob")]);
}

/// While a refused commit is not undone (no admin online), members are told why they
/// cannot send, and nothing loops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stuck_behind_a_refused_commit_is_told_why() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut mallory = relay.user("mallory").await;
    let room: RoomId = room_with(&alice, &[&bob, &mallory], "Home").await;
    bob.c().sync().await.unwrap();
    alice.client.take().unwrap().close().await; // the only admin is away
    let hostile = Hostile::take_over(&mut mallory).await;
    self_update(&hostile, room, CapAfter::Foreign)
        .await
        .unwrap();

    bob.c().sync().await.unwrap();
    let err = bob.c().send_text(room, "hello?").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::CommitRefused { by, .. } if *by == Some(h("mallory"))),
        "{err:?}"
    );

    // The admin comes back: the commit is undone and bob's room works again by itself.
    alice.restart().await;
    wait_undone(&mut alice, "mallory").await;
    alice.c().send_text(room, "back").await.unwrap();
    bob.wait_text("back").await;
    bob.c().send_text(room, "hello again").await.unwrap();
    alice.wait_text("hello again").await;
}

/// The owner leaves: whoever commits the leaving, the heir can change the room's settings
/// at the relay (the leaving owner hands the relay's list over first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heir_of_an_owner_who_left_is_an_admin_at_the_relay() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let carol = relay.user("carol").await;
    let room = room_with(&alice, &[&bob, &carol], "Home").await;
    bob.c().sync().await.unwrap();
    alice.c().leave(room).await.unwrap();
    bob.wait_for("alice left", |e| {
        matches!(e, ClientEvent::MemberRemoved { handle, .. } | ClientEvent::MemberLeft { handle, .. } if *handle == h("alice"))
    })
    .await;
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    assert_eq!(
        store.room_admins(&room).unwrap(),
        vec![bob.c().profile().account()]
    );
    bob.c()
        .set_expiry(room, Some(std::time::Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(relay.room_record(room).retention_secs, Some(3600));
}

/// A banned person who moves to a new key is still banned from a public room: their
/// external join is refused by the members (by handle) and undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_person_with_a_rotated_key_cannot_rejoin_a_public_room() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Board").await;
    alice.c().publish_room(room, "Family board").await.unwrap();
    alice.c().ban(room, &h("mallory")).await.unwrap();
    bob.c().sync().await.unwrap();

    mallory.c().rotate_key().await.unwrap();
    // Her client no longer finds its key on the ban list, so it tries.
    let _ = mallory.c().join_public(room).await;
    alice.c().sync().await.unwrap();
    wait_undone(&mut alice, "mallory").await;
    bob.c().sync().await.unwrap();
    alice.c().send_text(room, "still ours").await.unwrap();
    bob.wait_text("still ours").await;
    let members = member_handles(&bob, room).await;
    assert!(!members.contains(&h("mallory")), "{members:?}");
}

/// Bytes that are no commit at all, and a second commit made under the refused
/// capability (which only its author knows) before anyone could react: both are undone
/// in one go, and the room goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_commits_and_commits_on_top_of_a_refused_one_are_undone_too() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Home").await;
    bob.c().sync().await.unwrap();
    let hostile = Hostile::take_over(&mut mallory).await;
    let cap = hostile.engine.cap(&hostile.group(room)).unwrap();
    let (x, y) = (
        hearth_protocol::Cap([0x66; 32]),
        hearth_protocol::Cap([0x77; 32]),
    );
    // The admin is away, so both land before anyone can react.
    alice.client.take().unwrap().close().await;
    for (cap, next) in [(cap, x.hash()), (x.clone(), y.hash())] {
        hostile
            .call(Request::Commit {
                room,
                cap,
                next_cap_hash: next,
                payload: vec![0x42; 64],
                admins: None,
            })
            .await
            .unwrap();
    }
    alice.restart().await;
    let event = alice
        .wait_for("the garbage undone", |e| {
            matches!(e, ClientEvent::CommitReverted { .. })
        })
        .await;
    assert!(
        matches!(&event, ClientEvent::CommitReverted { by: None, .. }),
        "{event:?}"
    );
    bob.c().sync().await.unwrap();
    alice.c().send_text(room, "still here").await.unwrap();
    bob.wait_text("still here").await;
    // Mallory, the author of both, is barred: even with the room's current capability
    // again, it cannot commit.
    let current = hostile.engine.cap(&hostile.group(room)).unwrap();
    let barred = hostile
        .call(Request::Commit {
            room,
            cap: current,
            next_cap_hash: y.hash(),
            payload: vec![0x42; 64],
            admins: None,
        })
        .await
        .unwrap_err();
    assert_eq!(barred.code, ErrorCode::Forbidden, "{barred:?}");
}

/// Only the owner changes who administers the room at the relay: another admin cannot
/// take the list over (and then undo the owner's commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_who_is_not_the_owner_cannot_change_the_relays_list() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&mallory], "Home").await;
    alice.c().grant_admin(room, &h("mallory")).await.unwrap();
    mallory.c().sync().await.unwrap();
    let hostile = Hostile::take_over(&mut mallory).await;
    let cap = hostile.engine.cap(&hostile.group(room)).unwrap();
    let refused = hostile
        .call(Request::SetRoomAdmins {
            room,
            cap,
            admins: vec![hostile.profile.account()],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused:?}");
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    assert_eq!(
        store.room_admins(&room).unwrap()[0],
        alice.c().profile().account()
    );
}
