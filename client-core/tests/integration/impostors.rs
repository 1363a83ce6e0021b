//! Issue 9: no member or account can pose as another. Each test builds the attacker on
//! openmls and raw requests over the real relay (QUIC on 127.0.0.1:0, real store), and
//! checks that honest members refuse the attack, report it as an impostor naming who
//! tried, and keep talking.
//!
//! Hostile commits here keep the relay's capability ([`CapAfter::Kept`]), so that what is
//! shown is the identity check alone; a hostile commit that also rotates the capability
//! away from the honest members is the lockout of issue 10.

use crate::common;

use common::hostile::{CapAfter, Hostile};
use common::{h, room_with, Relay, User};
use hearth_core::content::{Body, RoomEvent};
use hearth_core::{ClientError, ClientEvent, Impostor, TrustState};
use hearth_protocol::{AccountKey, Handle, RoomId};
use openmls::prelude::*;

/// Waits for the impostor report in `room` and checks who claimed what, brought in by
/// whom, with which key.
async fn assert_impostor(
    user: &mut User,
    room: RoomId,
    claimed: &str,
    by: Option<&str>,
    key: AccountKey,
) {
    let caught = impostor(user, room).await;
    assert_eq!(caught.claimed, h(claimed));
    assert_eq!(caught.by, by.map(h));
    assert_eq!(caught.key, key);
}

async fn impostor(user: &mut User, room: RoomId) -> Impostor {
    match user
        .wait_for(
            "an impostor report",
            |e| matches!(e, ClientEvent::Impostor { room: r, .. } if *r == room),
        )
        .await
    {
        ClientEvent::Impostor { impostor, .. } => impostor,
        _ => unreachable!("wait_for returns a matching event"),
    }
}

async fn rejected(user: &mut User, room: RoomId) -> String {
    match user
        .wait_for(
            "a rejected entry",
            |e| matches!(e, ClientEvent::Rejected { room: r, .. } if *r == room),
        )
        .await
    {
        ClientEvent::Rejected { reason, .. } => reason,
        _ => unreachable!("wait_for returns a matching event"),
    }
}

async fn handles(user: &User, room: RoomId) -> Vec<String> {
    user.c()
        .members(room)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.handle.to_string())
        .collect()
}

/// Waits for `text` in `room` and returns who sent it.
async fn sender_of(user: &mut User, room: RoomId, text: &str) -> Handle {
    let t = text.to_string();
    match user
        .wait_for(
            text,
            move |e| matches!(e, ClientEvent::Message(m) if m.text == t && m.room == room),
        )
        .await
    {
        ClientEvent::Message(m) => m.sender,
        _ => unreachable!("wait_for returns a matching event"),
    }
}

fn no_key_changes(user: &User) {
    for contact in user.c().contacts().unwrap() {
        assert!(
            !contact.is_changed(),
            "{} shows a key change: {contact:?}",
            contact.handle
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_take_another_members_handle_in_a_self_update() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Home").await;
    let mallory_key = mallory.c().profile().account();
    bob.c().mark_verified(&h("alice"), true).await.unwrap();

    // Mallory's own key, but a credential that says "alice".
    let hostile = Hostile::take_over(&mut mallory).await;
    let mut group = hostile.group(room);
    let bundle = group
        .self_update(
            &hostile.engine.provider,
            &hostile.engine.signer,
            LeafNodeParameters::builder()
                .with_credential_with_key(hostile.credential_as("alice"))
                .build(),
        )
        .unwrap();
    hostile
        .send_commit(room, &mut group, bundle.commit(), CapAfter::Kept)
        .await
        .expect("the relay cannot tell: it stores the commit");

    for user in [&mut alice, &mut bob] {
        user.c().sync().await.unwrap();
        assert_impostor(user, room, "alice", Some("mallory"), mallory_key).await;
        no_key_changes(user);
    }
    // The owner's client undoes the refused commit, and its own commit that does so
    // removes mallory (decision 0013 part 5: a revert carries the removal of the refused
    // commit's author; before, she stayed a member and was only barred from committing).
    for user in [&mut alice, &mut bob] {
        user.wait_members(room, &["alice", "bob"]).await;
        no_key_changes(user);
    }
    // Bob's verified badge follows alice's key, and only the real alice has it.
    let members = bob.c().members(room).await.unwrap();
    let alice_badge = members.iter().find(|m| m.handle == h("alice")).unwrap();
    assert_eq!(alice_badge.trust, Some(TrustState::Verified));
    assert_eq!(alice_badge.account, alice.c().profile().account());

    alice.c().send_text(room, "it is really me").await.unwrap();
    assert_eq!(
        sender_of(&mut bob, room, "it is really me").await,
        h("alice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_swap_its_signature_key_and_stays_kickable() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Home").await;

    let hostile = Hostile::take_over(&mut mallory).await;
    let mut group = hostile.group(room);
    let new_signer =
        openmls_basic_credential::SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    let new_key: [u8; 32] = new_signer.public().try_into().unwrap();
    let bundle = group
        .self_update_with_new_signer(
            &hostile.engine.provider,
            &hostile.engine.signer,
            NewSignerBundle {
                signer: &new_signer,
                credential_with_key: CredentialWithKey {
                    credential: BasicCredential::new(b"mallory".to_vec()).into(),
                    signature_key: new_signer.public().into(),
                },
            },
            LeafNodeParameters::default(),
        )
        .unwrap();
    hostile
        .send_commit(room, &mut group, bundle.commit(), CapAfter::Kept)
        .await
        .unwrap();

    for user in [&mut alice, &mut bob] {
        user.c().sync().await.unwrap();
        assert_impostor(user, room, "mallory", Some("mallory"), AccountKey(new_key)).await;
        no_key_changes(user);
    }
    // Her key in the room is still the one the policy lists, so the owner's client can
    // remove her: the revert of her refused commit carries that removal (decision 0013
    // part 5; before, the owner kicked her by hand, which now finds her gone).
    bob.wait_for(
        "mallory removed",
        |e| matches!(e, ClientEvent::MemberRemoved { handle, .. } if *handle == h("mallory")),
    )
    .await;
    assert_eq!(handles(&bob, room).await, ["alice", "bob"]);
    alice.wait_members(room, &["alice", "bob"]).await;
    assert!(matches!(
        alice.c().kick(room, &h("mallory")).await,
        Err(ClientError::NotAMember { .. })
    ));
    alice.c().send_text(room, "she is gone").await.unwrap();
    bob.wait_text("she is gone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_room_from_a_stranger_waits_and_a_forged_one_is_refused() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let eve = relay.user("eve").await;
    let mut eve_forger = relay.user("eve2").await;
    let _home = room_with(&alice, &[&bob], "Home").await;

    // Alice shares a room with bob: her private message arrives without asking.
    let real = alice.c().send_private(&h("bob"), "hi bob").await.unwrap();
    assert_eq!(sender_of(&mut bob, real, "hi bob").await, h("alice"));

    // Eve never shared a room with bob: her private room waits as an invitation.
    let from_eve = eve
        .c()
        .send_private(&h("bob"), "hi, it's eve")
        .await
        .unwrap();
    bob.c().sync().await.unwrap();
    let invitations = bob.c().invitations().await.unwrap();
    assert!(invitations
        .iter()
        .any(|i| i.room == from_eve && i.from == h("eve")));
    assert!(!bob
        .c()
        .rooms()
        .await
        .unwrap()
        .iter()
        .any(|r| r.id == from_eve));

    // A direct room whose creator's credential says "alice": refused as an impostor.
    let hostile = Hostile::take_over(&mut eve_forger).await;
    let settings = hearth_core::mls::RoomSettings::direct("@alice+bob", hostile.profile.account());
    let (forged, mut group) = hostile.create_room("alice", &settings).await;
    let bob_package = hostile.key_package("bob").await;
    let (commit, welcome) = hostile.add_with_join_point(&mut group, bob_package);
    hostile
        .send_commit(forged, &mut group, &commit, CapAfter::Exported)
        .await
        .unwrap();
    let message = hearth_core::content::InboxMessage::Welcome {
        room: forged,
        welcome: welcome.to_bytes().unwrap(),
        start_seq: hearth_protocol::Seq(2),
        transcript_hash: [0; 32],
        from: h("alice"),
    };
    hostile
        .call(hearth_protocol::Request::Deposit {
            to: bob.c().profile().account(),
            payload: hearth_core::sealed::seal(
                &hostile.profile.identity(),
                &bob.c().profile().account(),
                &message.encode(),
            )
            .unwrap(),
        })
        .await
        .unwrap();
    bob.c().sync().await.unwrap();
    assert_impostor(&mut bob, forged, "alice", None, hostile.profile.account()).await;
    assert!(!bob
        .c()
        .invitations()
        .await
        .unwrap()
        .iter()
        .any(|i| i.room == forged));
    no_key_changes(&bob);

    // A room eve merely named "@alice" (bob is invited) does not count either.
    let named = eve.c().create_room("@alice").await.unwrap();
    eve.c().invite(named, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    assert!(bob
        .c()
        .invitations()
        .await
        .unwrap()
        .iter()
        .any(|i| i.room == named));

    // None of these rooms wins over the real conversation.
    assert_eq!(bob.c().find_room("@alice").await.unwrap(), Some(real));
    let mut alice = alice;
    assert_eq!(
        bob.c().send_private(&h("alice"), "answer").await.unwrap(),
        real
    );
    assert_eq!(sender_of(&mut alice, real, "answer").await, h("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_notice_or_an_extension_change_from_a_non_admin_is_refused() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Home").await;
    let hostile = Hostile::take_over(&mut mallory).await;
    let mut group = hostile.group(room);

    // "This room moved to <mallory's room>": only an admin's word counts.
    hostile
        .send_body(
            room,
            &mut group,
            Body::RoomEvent(RoomEvent::Rebuilt {
                room: RoomId::random(),
            }),
        )
        .await
        .unwrap();
    for user in [&mut alice, &mut bob] {
        user.c().sync().await.unwrap();
        let reason = rejected(user, room).await;
        assert!(reason.contains("mallory is not an admin"), "{reason}");
    }

    // A group-context extension only an admin may change: external senders.
    let mut extensions = group.extensions().clone();
    extensions
        .add_or_replace(Extension::ExternalSenders(vec![ExternalSender::new(
            hostile.engine.signer.public().into(),
            BasicCredential::new(b"mallory".to_vec()).into(),
        )]))
        .unwrap();
    let (commit, _, _) = group
        .update_group_context_extensions(
            &hostile.engine.provider,
            extensions,
            &hostile.engine.signer,
        )
        .unwrap();
    hostile
        .send_commit(room, &mut group, &commit, CapAfter::Kept)
        .await
        .unwrap();
    for user in [&mut alice, &mut bob] {
        user.c().sync().await.unwrap();
        let reason = rejected(user, room).await;
        assert!(
            reason.contains("only an admin may change the room's group-context extensions"),
            "{reason}"
        );
    }
    // The room still works.
    alice.c().send_text(room, "still here").await.unwrap();
    bob.wait_text("still here").await;
}

/// A public room of alice's with bob in it; returns it.
async fn public_room(alice: &User, bob: &mut User) -> RoomId {
    let room = room_with(alice, &[&*bob], "Board").await;
    alice.c().publish_room(room, "Family board").await.unwrap();
    bob.c().sync().await.unwrap();
    room
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_refuses_an_external_join_under_someone_elses_handle_or_garbage() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut eve = relay.user("eve").await;
    let room = public_room(&alice, &mut bob).await;
    let head = relay.room_record(room);

    let hostile = Hostile::take_over(&mut eve).await;
    let (epoch, payload, cap) = hostile.external_join(room, "bob").await;
    let refused = hostile
        .call(hearth_protocol::Request::JoinPublic {
            room,
            epoch,
            next_cap_hash: cap.hash(),
            payload,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, hearth_protocol::ErrorCode::Forbidden);
    assert!(refused.message.contains("another identity"), "{refused:?}");

    let garbage = hostile
        .call(hearth_protocol::Request::JoinPublic {
            room,
            epoch,
            next_cap_hash: cap.hash(),
            payload: vec![0x42; 300],
        })
        .await
        .unwrap_err();
    assert_eq!(garbage.code, hearth_protocol::ErrorCode::Forbidden);

    // Nothing was appended and the capability did not move: the members keep talking.
    let after = relay.room_record(room);
    assert_eq!((after.head, after.current), (head.head, head.current));
    alice.c().send_text(room, "nothing happened").await.unwrap();
    bob.wait_text("nothing happened").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_refuse_an_external_joiner_posing_as_a_member_and_trust_cannot_re_pin() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut eve = relay.user("eve").await;
    let room = public_room(&alice, &mut bob).await;
    let real_bob = bob.c().profile().account();

    // A relay that lets the join through anyway (compromised, or an older one): the
    // commit lands in the log without the capability moving.
    let hostile = Hostile::take_over(&mut eve).await;
    let (_, payload, _) = hostile.external_join(room, "bob").await;
    relay.inject_commit(room, hostile.profile.account(), payload);

    for user in [&mut alice, &mut bob] {
        user.c().sync().await.unwrap();
        assert_impostor(user, room, "bob", None, hostile.profile.account()).await;
        assert_eq!(handles(user, room).await, ["alice", "bob"]);
        no_key_changes(user);
    }
    // No key change to accept: bob stays pinned to his own key.
    alice.c().trust(&h("bob")).await.unwrap();
    let pinned = alice.c().contact(&h("bob")).await.unwrap().unwrap();
    assert_eq!(pinned.account, real_bob);
    assert_eq!(pinned.state, TrustState::Trusted);

    alice.c().send_text(room, "bob is bob").await.unwrap();
    assert_eq!(sender_of(&mut bob, room, "bob is bob").await, h("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_add_someone_posing_as_a_registered_person() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let _carol = relay.user("carol").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &mallory], "Home").await;
    alice.c().grant_admin(room, &h("mallory")).await.unwrap();

    // Mallory, an admin, adds a key package of her own making that says "carol", with
    // the settings update the policy wants: only the identity is wrong.
    let hostile = Hostile::take_over(&mut mallory).await;
    let mut group = hostile.group(room);
    let fake = hearth_core::Identity::generate();
    let fake_engine = hearth_core::mls::Engine::new(fake.mls_signer(), "carol");
    let (mut packages, _) = fake_engine.key_packages(1, false).unwrap();
    let package = {
        use openmls::prelude::tls_codec::Deserialize as _;
        KeyPackageIn::tls_deserialize_exact(packages.remove(0).as_slice())
            .unwrap()
            .validate(hostile.engine.provider.crypto(), ProtocolVersion::Mls10)
            .unwrap()
    };
    let before = hearth_core::mls::RoomSettings::read(group.extensions()).unwrap();
    let after = hearth_core::policy::next_membership(&before, &[], &[fake.account()]).unwrap();
    let bundle = group
        .commit_builder()
        .propose_adds([package])
        .propose_group_context_extensions(after.extensions().unwrap())
        .unwrap()
        .load_psks(hostile.engine.provider.storage())
        .unwrap()
        .build(
            hostile.engine.provider.rand(),
            hostile.engine.provider.crypto(),
            &hostile.engine.signer,
            |_| true,
        )
        .unwrap()
        .stage_commit(&hostile.engine.provider)
        .unwrap();
    hostile
        .send_commit(room, &mut group, bundle.commit(), CapAfter::Kept)
        .await
        .unwrap();

    for user in [&mut alice, &mut bob] {
        user.c().sync().await.unwrap();
        assert_impostor(user, room, "carol", Some("mallory"), fake.account()).await;
        // The owner's revert removes the admin who added the impostor (decision 0013
        // part 5), and the impostor never became a member.
        user.wait_members(room, &["alice", "bob"]).await;
        assert!(
            user.c()
                .contact(&h("carol"))
                .await
                .unwrap()
                .unwrap()
                .account
                != fake.account()
        );
    }
    alice.c().send_text(room, "no carol here").await.unwrap();
    bob.wait_text("no carol here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_room_naming_a_member_falsely_is_refused_when_joining() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut eve = relay.user("eve").await;
    let _home = room_with(&alice, &[&bob], "Home").await;

    // Eve publishes a "direct" room whose only member calls itself alice: joining it
    // would pin her key as alice's and make it bob's private room with "alice".
    let hostile = Hostile::take_over(&mut eve).await;
    let mut settings =
        hearth_core::mls::RoomSettings::new("Chat with alice", hostile.profile.account());
    settings.public_name = Some("Alice's corner".into());
    let (room, group) = hostile.create_room("alice", &settings).await;
    let info = group
        .export_group_info(
            hostile.engine.provider.crypto(),
            &hostile.engine.signer,
            true,
        )
        .unwrap()
        .to_bytes()
        .unwrap();
    let cap = hostile.engine.cap(&group).unwrap();
    let action = hearth_protocol::AdminAction::Publish {
        public_name: "Alice's corner".into(),
        epoch: 0,
    };
    let proof = hearth_core::pseudonym::RoomAdminKey::derive(&[0xad; 32], &room)
        .prove(&room, &cap, &action);
    let published = hostile
        .call(hearth_protocol::Request::PublishRoom {
            room,
            cap,
            public_name: "Alice's corner".into(),
            group_info: info,
            epoch: 0,
            proof: Some(proof),
        })
        .await;
    assert!(published.is_ok(), "{published:?}");

    let refused = bob.c().join_public(room).await.unwrap_err();
    assert!(
        matches!(refused, hearth_core::ClientError::Impostor(_)),
        "{refused:?}"
    );
    let caught = impostor(&mut bob, room).await;
    assert_eq!(caught.claimed, h("alice"));
    assert_eq!(caught.key, hostile.profile.account());
    no_key_changes(&bob);
    assert!(!bob.c().rooms().await.unwrap().iter().any(|r| r.id == room));
    assert_eq!(
        bob.c().contact(&h("alice")).await.unwrap().unwrap().account,
        alice.c().profile().account()
    );
}
