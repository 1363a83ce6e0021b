//! Issue 10, decision 0009: nobody can take a room's capability away from the others. A
//! member's commit, or a public room's joiner's external commit, that announces a
//! capability nobody else can derive is refused by every honest member and undone at the
//! relay by an admin, whose own commit (removing the offender when it may) is appended in
//! the same transaction: the room goes on and the offender's capability ends there
//! (decision 0013, part 5: the relay keeps no list of barred accounts). The relay's
//! settings for a room (retention, listing, admins) take a signature from an admin
//! pseudonym it lists.
//! Real relay; the attackers are hostile clients built on openmls and raw requests.

use crate::common;

use common::hostile::{CapAfter, Hostile};
use common::{h, room_with, Relay, User};
use hearth_core::pseudonym::RoomAdminKey;
use hearth_core::{ClientError, ClientEvent};
use hearth_protocol::{AdminAction, AdminKey, Cap, ErrorCode, Request, RoomId};
use openmls::prelude::LeafNodeParameters;

/// `user`'s admin pseudonym key for `room` (what its client derives).
fn admin_key(user: &User, room: RoomId) -> RoomAdminKey {
    RoomAdminKey::for_identity(&user.c().profile().identity().mls_signer(), &room)
}

/// The pseudonym of `user` for `room`.
fn pseudonym(user: &User, room: RoomId) -> AdminKey {
    admin_key(user, room).public()
}

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
    let held = hostile.engine.cap(&hostile.group(room)).unwrap();
    self_update(&hostile, room, CapAfter::Foreign)
        .await
        .unwrap();

    // Alice, the owner, sees it first (live, or when she syncs) and undoes it: the relay
    // takes the capability from before again. Bob finds the room usable again.
    alice.c().sync().await.unwrap();
    wait_undone(&mut alice, "mallory").await;
    bob.c().sync().await.unwrap();
    alice.c().send_text(room, "still talking").await.unwrap();
    bob.wait_text("still talking").await;
    bob.c().send_text(room, "me too").await.unwrap();
    alice.wait_text("me too").await;

    // Alice's commit appended with the revert removed mallory: the capability mallory
    // held before its commit (the restored epoch's) ended there, so it can no longer
    // commit, whatever it announces, nor send.
    assert_ne!(relay.room_record(room).current, before);
    let members = member_handles(&alice, room).await;
    assert!(!members.contains(&h("mallory")), "{members:?}");
    let members = member_handles(&bob, room).await;
    assert!(!members.contains(&h("mallory")), "{members:?}");
    let refused = hostile
        .call(Request::Commit {
            room,
            cap: held.clone(),
            next_cap_hash: Cap([0x77; 32]).hash(),
            payload: vec![0x42; 64],
            admins: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::StaleEpoch, "{refused:?}");
    let refused = hostile
        .call(Request::Append {
            room,
            cap: held,
            payload: vec![0x42; 64],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::StaleEpoch, "{refused:?}");
}

/// A joiner's external commit announcing a capability nobody else can derive is undone:
/// the admin's commit appended with the revert (a self-update: the joiner never was a
/// member of the restored epoch) ends the only capability the joiner held. The relay keeps
/// no bar; an admin bans the identity, so a later join, however valid, is refused by the
/// members and undone as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_announcing_a_foreign_capability_is_undone_and_a_banned_joiner_stays_out() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut eve = relay.user("eve").await;
    let room = room_with(&alice, &[&bob], "Board").await;
    alice.c().publish_room(room, "Family board").await.unwrap();
    bob.c().sync().await.unwrap();

    // A valid external commit under eve's own name, with a capability hash nobody else
    // can derive (eve knows its preimage).
    let hostile = Hostile::take_over(&mut eve).await;
    let (epoch, payload, _) = hostile.external_join(room, "eve").await;
    let foreign = Cap([0x66; 32]);
    let join = Request::JoinPublic {
        room,
        epoch,
        next_cap_hash: foreign.hash(),
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
    // The capability eve's join announced ended at the revert's commit.
    let ended = hostile
        .call(Request::Append {
            room,
            cap: foreign,
            payload: vec![0x42; 64],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(ended.code, ErrorCode::StaleEpoch | ErrorCode::Forbidden),
        "{ended:?}"
    );

    // Alice bans eve, who is not a member: her identity goes on the room's ban list.
    alice.c().ban(room, &h("eve")).await.unwrap();
    alice.c().publish_room(room, "Family board").await.unwrap();
    bob.c().sync().await.unwrap();

    // Eve joins again with a perfectly valid external commit and the capability it really
    // exports. The relay cannot read the ban list and takes it; every member refuses it
    // by policy, and alice undoes it.
    let (epoch, payload, cap) = hostile.external_join(room, "eve").await;
    let joined = hostile
        .call(Request::JoinPublic {
            room,
            epoch,
            next_cap_hash: cap.hash(),
            payload,
        })
        .await;
    match joined {
        Ok(_) => {
            alice.c().sync().await.unwrap();
            wait_undone(&mut alice, "eve").await;
        }
        // Refusing it at the door would do as well.
        Err(e) => assert_eq!(e.code, ErrorCode::Forbidden, "{e:?}"),
    }
    bob.c().sync().await.unwrap();
    alice.c().send_text(room, "still ours").await.unwrap();
    bob.wait_text("still ours").await;
    for user in [&alice, &bob] {
        let members = member_handles(user, room).await;
        assert!(!members.contains(&h("eve")), "{members:?}");
    }
    let ended = hostile
        .call(Request::Append {
            room,
            cap,
            payload: vec![0x42; 64],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(ended.code, ErrorCode::StaleEpoch | ErrorCode::Forbidden),
        "{ended:?}"
    );
}

/// The relay knows a room's admins by pseudonyms they announced in the room: a granted
/// admin counts at the relay once its client announced its pseudonym and the owner's client
/// set the relay's list; it then changes the room's settings there. A plain member, even
/// signing correctly with a pseudonym of its own, cannot. A kicked admin cannot undo its
/// kick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_settings_for_a_room_take_an_admin_and_a_kicked_admin_cannot_undo_the_kick() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Board").await;
    alice.c().publish_room(room, "Family board").await.unwrap();
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    assert_eq!(
        store.room_admins(&room).unwrap(),
        vec![pseudonym(&alice, room)]
    );

    // Mallory is made an admin; her client announces her pseudonym in the room, and the
    // owner's client puts it on the relay's list.
    alice.c().grant_admin(room, &h("mallory")).await.unwrap();
    mallory.c().sync().await.unwrap();
    alice.c().sync().await.unwrap();
    bob.c().sync().await.unwrap();
    // The owner first, then the other admins.
    assert_eq!(
        store.room_admins(&room).unwrap(),
        vec![pseudonym(&alice, room), pseudonym(&mallory, room)],
        "announced, then set by the owner"
    );
    assert!(!store
        .room_admins(&room)
        .unwrap()
        .contains(&AdminKey(mallory.c().profile().account().0)));

    // The granted admin changes the room's retention at the relay, through her client.
    mallory
        .c()
        .set_expiry(room, Some(std::time::Duration::from_secs(7200)))
        .await
        .unwrap();
    assert_eq!(relay.room_record(room).retention_secs, Some(7200));

    // Bob, a plain member with the current capability, can neither unpublish the room,
    // nor change its retention, nor make himself an admin at the relay: not without a
    // proof, not with a valid signature from a pseudonym of his own, not with alice's
    // pseudonym and a signature he made.
    let bob_key = admin_key(&bob, room);
    let bob_hostile = Hostile::take_over(&mut bob).await;
    let cap = bob_hostile.engine.cap(&bob_hostile.group(room)).unwrap();
    let retention = AdminAction::SetRetention {
        retention_secs: Some(3600),
    };
    let mine = vec![bob_key.public()];
    let set_admins = AdminAction::SetAdmins {
        admins: mine.clone(),
    };
    let mut posing = bob_key.prove(&room, &cap, &AdminAction::Unpublish);
    posing.admin = pseudonym(&alice, room);
    for request in [
        Request::UnpublishRoom {
            room,
            cap: cap.clone(),
            proof: None,
        },
        Request::UnpublishRoom {
            room,
            cap: cap.clone(),
            proof: Some(bob_key.prove(&room, &cap, &AdminAction::Unpublish)),
        },
        Request::UnpublishRoom {
            room,
            cap: cap.clone(),
            proof: Some(posing),
        },
        Request::SetRetention {
            room,
            cap: cap.clone(),
            retention_secs: Some(3600),
            proof: None,
        },
        Request::SetRetention {
            room,
            cap: cap.clone(),
            retention_secs: Some(3600),
            proof: Some(bob_key.prove(&room, &cap, &retention)),
        },
        Request::SetRoomAdmins {
            room,
            cap: cap.clone(),
            admins: mine.clone(),
            proof: Some(bob_key.prove(&room, &cap, &set_admins)),
        },
        Request::SetRoomAdmins {
            room,
            cap: cap.clone(),
            admins: mine.clone(),
            proof: None,
        },
    ] {
        let refused = bob_hostile.call(request).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden, "{refused:?}");
    }
    assert!(store.listing(&room).unwrap().is_some());
    assert_eq!(relay.room_record(room).retention_secs, Some(7200));

    // The owner removes mallory: the relay's list follows in the same transaction, so
    // mallory cannot undo it with the old capability and her signature.
    let mallory_key = admin_key(&mallory, room);
    let mallory_hostile = Hostile::take_over(&mut mallory).await;
    let before = mallory_hostile
        .engine
        .cap(&mallory_hostile.group(room))
        .unwrap();
    alice.c().kick(room, &h("mallory")).await.unwrap();
    assert_eq!(
        store.room_admins(&room).unwrap(),
        vec![pseudonym(&alice, room)]
    );
    let kick = hearth_protocol::Seq(relay.room_record(room).head);
    let (payload, next_cap_hash) = (vec![0x42; 64], Cap([0x77; 32]).hash());
    let proof = mallory_key.prove(
        &room,
        &before,
        &AdminAction::Revert {
            seq: kick,
            next_cap_hash,
            removal: <sha2::Sha256 as sha2::Digest>::digest(&payload).into(),
        },
    );
    let refused = mallory_hostile
        .call(Request::RevertCommit {
            room,
            cap: before,
            seq: kick,
            next_cap_hash,
            payload,
            proof,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused:?}");
    assert_eq!(member_handles(&alice, room).await, [h("alice"), h("bob")]);
}

/// An admin the owner granted, once its client announced its pseudonym and the owner's
/// client put it on the relay's list, undoes a refused commit through its own client
/// while the owner is away; its commit removes the offender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_admin_undoes_a_refused_commit_while_the_owner_is_away() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut carol = relay.user("carol").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &carol, &mallory], "Home").await;
    alice.c().grant_admin(room, &h("carol")).await.unwrap();
    carol.c().sync().await.unwrap();
    alice.c().sync().await.unwrap();
    bob.c().sync().await.unwrap();
    mallory.c().sync().await.unwrap();
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    assert_eq!(
        store.room_admins(&room).unwrap(),
        vec![pseudonym(&alice, room), pseudonym(&carol, room)]
    );
    alice.client.take().unwrap().close().await; // the owner is away

    let hostile = Hostile::take_over(&mut mallory).await;
    let held = hostile.engine.cap(&hostile.group(room)).unwrap();
    self_update(&hostile, room, CapAfter::Foreign)
        .await
        .unwrap();
    carol.c().sync().await.unwrap();
    wait_undone(&mut carol, "mallory").await;
    bob.c().sync().await.unwrap();
    carol.c().send_text(room, "back to normal").await.unwrap();
    bob.wait_text("back to normal").await;
    let members = member_handles(&bob, room).await;
    assert!(!members.contains(&h("mallory")), "{members:?}");
    let refused = hostile
        .call(Request::Append {
            room,
            cap: held,
            payload: vec![0x42; 64],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::StaleEpoch, "{refused:?}");
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
    // Bob's client announces his pseudonym as the new owner and sets the relay's list.
    bob.c().sync().await.unwrap();
    assert_eq!(
        store.room_admins(&room).unwrap(),
        vec![pseudonym(&bob, room)]
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
    // Nobody can tell who wrote bytes that are no commit (the relay keeps no authors), so
    // the revert's commit only renews alice's keys: mallory is still a member, and a
    // capability of the refused chain no longer works.
    let ended = hostile
        .call(Request::Append {
            room,
            cap: x,
            payload: vec![0x42; 64],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(ended.code, ErrorCode::StaleEpoch | ErrorCode::Forbidden),
        "{ended:?}"
    );
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
    let key = hostile.engine.room_admin_key(&hostile.group(room));
    let admins = vec![key.public()];
    let action = AdminAction::SetAdmins {
        admins: admins.clone(),
    };
    let refused = hostile
        .call(Request::SetRoomAdmins {
            room,
            proof: Some(key.prove(&room, &cap, &action)),
            cap,
            admins,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused:?}");
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    assert_eq!(
        store.room_admins(&room).unwrap()[0],
        pseudonym(&alice, room)
    );
}
