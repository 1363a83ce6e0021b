//! Issue 11: `hearth rotate-key`, against a real relay. A member moves to a new identity
//! key; the others see a signed rotation (not an impostor), the rooms keep working with
//! the same roles, and the old key is refused from then on.

use crate::common;

use std::sync::Arc;

use common::hooked::{Answer, Hook, Hooked};
use common::hostile::Hostile;
use common::{copy_dir, h, room_with, Relay, PASS};
use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{BoxFuture, Link, TransportError};
use hearth_core::{Client, ClientError, ClientEvent, Profile, Role, TrustState};
use hearth_protocol::{ErrorCode, Handle, KeyRotation, Request, Response};

/// Connections whose `RotateKey` reaches the relay but whose answer is lost (the
/// connection drops right then).
struct LosingRotations;

impl Hook for LosingRotations {
    fn call<'a>(&'a self, link: &'a dyn Link, request: Request) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let rotating = matches!(request, Request::RotateKey { .. });
            let answer = link.call(request).await;
            if rotating {
                assert!(matches!(answer, Ok(Ok(Response::Authenticated { .. }))));
                link.close();
                return Err(TransportError::Closed);
            }
            answer
        })
    }
}

fn rotated_or_impostor(e: &ClientEvent) -> bool {
    matches!(
        e,
        ClientEvent::KeyRotated { .. } | ClientEvent::Impostor { .. }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_seen_as_one_rooms_keep_working_and_the_old_key_is_refused() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut carol = relay.user("carol").await;
    // Alice owns one room and is a plain member of another.
    let home = room_with(&alice, &[&bob], "Home").await;
    let garden = room_with(&bob, &[&alice, &carol], "Garden").await;
    bob.c().mark_verified(&h("alice"), true).await.unwrap();
    // Someone copies alice's profile (the old key) before she rotates.
    let stolen = relay.dir.path().join("stolen");
    copy_dir(&alice.dir, &stolen);

    let old_key = alice.c().profile().account();
    let report = alice.c().rotate_key().await.unwrap();
    assert_eq!(report.old, old_key);
    assert_ne!(report.new, old_key);
    assert_eq!(alice.c().profile().account(), report.new);
    assert_eq!((report.rooms_moved, report.rooms_left), (2, 0));

    // Bob sees a rotation (and was told his verification was of the old key).
    let seen = bob.wait_for("alice's rotation", rotated_or_impostor).await;
    match seen {
        ClientEvent::KeyRotated {
            handle,
            from,
            to,
            was_verified,
        } => {
            assert_eq!(handle, h("alice"));
            assert_eq!((from, to), (old_key, report.new));
            assert!(was_verified);
        }
        other => panic!("expected a rotation, got {other:?}"),
    }
    // Carol never verified alice: her pin follows the signed rotation.
    let seen = carol
        .wait_for("alice's rotation", rotated_or_impostor)
        .await;
    assert!(
        matches!(&seen, ClientEvent::KeyRotated { was_verified: false, to, .. } if *to == report.new),
        "{seen:?}"
    );
    let contact_of = |user: &common::User| {
        user.c()
            .contacts()
            .unwrap()
            .into_iter()
            .find(|c| c.handle == h("alice"))
            .unwrap()
    };
    let at_carol = contact_of(&carol);
    assert_eq!(
        (at_carol.account, at_carol.state),
        (report.new, TrustState::Trusted)
    );
    carol.c().send_text(garden, "hi new alice").await.unwrap();
    alice.wait_text("hi new alice").await;

    // Bob had verified the old key in person: whoever holds it could have signed the
    // rotation, so the new key waits for him like a changed key.
    bob.c().sync().await.unwrap();
    let at_bob = contact_of(&bob);
    assert_eq!(at_bob.account, report.new);
    assert!(at_bob.is_changed(), "{at_bob:?}");
    let blocked = bob.c().send_text(garden, "welcome back").await.unwrap_err();
    assert!(
        matches!(blocked, ClientError::KeyChanged { .. }),
        "{blocked}"
    );
    bob.c().mark_verified(&h("alice"), true).await.unwrap();
    assert!(contact_of(&bob).is_verified());

    // Both rooms keep working both ways, with alice's role kept under the new key.
    alice.c().send_text(home, "new key, same me").await.unwrap();
    bob.wait_text("new key, same me").await;
    bob.c().send_text(garden, "welcome back").await.unwrap();
    alice.wait_text("welcome back").await;
    let members = bob.c().members(home).await.unwrap();
    let me = members.iter().find(|m| m.handle == h("alice")).unwrap();
    assert_eq!((me.account, me.role), (report.new, Role::Owner));
    // Alice, still the owner, can act as one: invite carol into Home.
    alice.c().invite(home, &h("carol")).await.unwrap();

    // After a restart alice signs in with the new key.
    alice.restart().await;
    alice.c().send_text(garden, "still here").await.unwrap();
    bob.wait_text("still here").await;

    // The old key is refused by the relay.
    let copy = Profile::open(&stolen, PASS).unwrap();
    match Client::connect(copy).await {
        Err(ClientError::Relay(e)) => assert_eq!(e.code, ErrorCode::AuthFailed),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("the rotated-away key signed in"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_without_a_signed_rotation_is_still_an_impostor() {
    // The relay refuses a rotation not signed by the old key, and one whose new key did
    // not sign it, so no chain the directory lists can vouch for a key swap nobody
    // signed (a member swapping keys in a room without one: impostors.rs).
    let relay = Relay::start().await;
    let mut mallory = relay.user("mallory").await;
    let hostile = Hostile::take_over(&mut mallory).await;
    let thief = hearth_core::Identity::generate();
    let other = hearth_core::Identity::generate();
    let handle = Handle::new("mallory").unwrap();
    let me = hostile.profile.identity();
    let message = hearth_protocol::rotation_message(&handle, &me.account(), &thief.account());
    // Signed by the new key only.
    let forged = KeyRotation {
        from: me.account(),
        to: thief.account(),
        signature: thief.sign(&message),
    };
    let refused = hostile
        .call(Request::RotateKey {
            rotation: forged,
            proof: thief.sign(&message),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::AuthFailed);
    // Signed by the old key, but the new key's proof is someone else's.
    let rotation = KeyRotation {
        from: me.account(),
        to: thief.account(),
        signature: me.sign(&message),
    };
    let refused = hostile
        .call(Request::RotateKey {
            rotation,
            proof: other.sign(&message),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::AuthFailed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_answer_was_lost_is_finished_at_the_next_connection() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let home = room_with(&alice, &[&bob], "Home").await;
    let old_key = alice.c().profile().account();
    alice.client.take().unwrap().close().await;

    // The relay re-binds the account, but alice never hears of it.
    let profile = Profile::open(&alice.dir, PASS).unwrap();
    let connector = Arc::new(Hooked::new(
        QuicConnector::new(profile.relay().clone()),
        Arc::new(LosingRotations),
    ));
    let client = Client::connect_with(profile, connector).await.unwrap();
    let lost = client.rotate_key().await.unwrap_err();
    assert!(matches!(lost, ClientError::NotConnected), "{lost}");
    assert_eq!(
        client.profile().account(),
        old_key,
        "nothing adopted without an answer"
    );
    client.close().await;

    // The next connection finds the old key refused and the pending one accepted, and
    // finishes the rotation: the room moves, bob follows.
    alice.restart().await;
    let new_key = alice.c().profile().account();
    assert_ne!(new_key, old_key);
    let seen = bob.wait_for("alice's rotation", rotated_or_impostor).await;
    assert!(
        matches!(&seen, ClientEvent::KeyRotated { to, .. } if *to == new_key),
        "{seen:?}"
    );
    alice
        .c()
        .send_text(home, "back, with a new key")
        .await
        .unwrap();
    bob.wait_text("back, with a new key").await;
}
