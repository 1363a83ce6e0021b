//! Contacts, safety numbers and key changes against a real relay (QUIC on 127.0.0.1:0).
//!
//! A handle is unique on a relay and nothing re-registers it with another key, so an
//! honest relay never shows a changed key. The case TOFU guards against is a relay (or
//! whoever controls it) that hands out an impostor's key for a known handle. The test
//! plays that relay: alice's connection goes through a [`Lying`] hook that answers
//! `FetchKeyPackage` and `LookupAccount` for bob with a key package and key of a fresh
//! identity calling itself bob, exactly what a compromised relay would send.

use crate::common;

use std::sync::Arc;

use common::hooked::{Answer, Hook, Hooked};
use common::{h, Relay, PASS};
use hearth_core::contacts::TrustState;
use hearth_core::mls::Engine;
use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{BoxFuture, Link};
use hearth_core::{safety_number, Client, ClientError, ClientEvent, Identity, Profile};
use hearth_protocol::{AccountInfo, Handle, Request, Response};

/// Relay connections that substitute an impostor's key for one handle.
struct Lying {
    victim: Handle,
    impostor: Identity,
    package: Vec<u8>,
}

impl Hook for Lying {
    fn call<'a>(&'a self, link: &'a dyn Link, request: Request) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            match &request {
                Request::FetchKeyPackage { handle } if *handle == self.victim => {
                    Ok(Ok(Response::KeyPackage {
                        account: self.impostor.account(),
                        package: self.package.clone(),
                    }))
                }
                Request::LookupAccount { handle } if *handle == self.victim => {
                    Ok(Ok(Response::Account(AccountInfo {
                        handle: handle.clone(),
                        account: self.impostor.account(),
                        created: 0,
                        rotations: Vec::new(),
                    })))
                }
                _ => link.call(request).await,
            }
        })
    }
}

fn lying_about(relay: &Relay, victim: &str) -> (Arc<Hooked<Lying>>, Identity) {
    let impostor = Identity::generate();
    let engine = Engine::new(impostor.mls_signer(), victim);
    let (mut packages, _) = engine.key_packages(1, false).unwrap();
    let lying = Lying {
        victim: h(victim),
        impostor: impostor.clone(),
        package: packages.remove(0),
    };
    let connector = Arc::new(Hooked::new(
        QuicConnector::new(relay.address()),
        Arc::new(lying),
    ));
    (connector, impostor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_numbers_agree_and_contacts_are_pinned() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let carol = relay.user("carol").await;

    let room = alice.c().create_room("Family").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.wait_for("invitation", |e| matches!(e, ClientEvent::Invited(_)))
        .await;
    bob.c().accept_invitation(room).await.unwrap();

    // Pinned on first sight: alice when she invited bob, bob from the Welcome.
    let alice_key = alice.c().profile().account();
    let bob_key = bob.c().profile().account();
    let carol_key = carol.c().profile().account();
    let bob_at_alice = alice.c().contact(&h("bob")).await.unwrap().unwrap();
    assert_eq!(bob_at_alice.account, bob_key);
    assert_eq!(bob_at_alice.state, TrustState::Trusted);
    let alice_at_bob = bob.c().contact(&h("alice")).await.unwrap().unwrap();
    assert_eq!(alice_at_bob.account, alice_key);
    assert_eq!(
        alice.c().contacts().unwrap(),
        vec![bob_at_alice.clone()],
        "only bob so far, never oneself"
    );
    assert_eq!(alice.c().contact(&h("alice")).await.unwrap(), None);

    // Each side computes the number from its own key and the pinned one: the same.
    let at_alice = safety_number(&alice_key, &bob_at_alice.account);
    let at_bob = safety_number(&bob_key, &alice_at_bob.account);
    assert_eq!(at_alice, at_bob);
    // carol is looked up in the directory and pinned; any other pair differs.
    let carol_at_alice = alice.c().contact(&h("carol")).await.unwrap().unwrap();
    assert_eq!(carol_at_alice.account, carol_key);
    let with_carol = safety_number(&alice_key, &carol_at_alice.account);
    assert_ne!(with_carol, at_alice);
    assert_ne!(safety_number(&bob_key, &carol_key), at_alice);
    assert_ne!(safety_number(&bob_key, &carol_key), with_carol);
    assert_eq!(alice.c().contact(&h("nobody")).await.unwrap(), None);

    // The answer to "do the numbers match?" is stored.
    alice.c().mark_verified(&h("bob"), true).await.unwrap();
    let bob_at_alice = alice.c().contact(&h("bob")).await.unwrap().unwrap();
    assert!(bob_at_alice.is_verified());
    alice.c().mark_verified(&h("bob"), false).await.unwrap();
    assert_eq!(
        alice.c().contact(&h("bob")).await.unwrap().unwrap().state,
        TrustState::Trusted
    );
    assert!(matches!(
        alice.c().mark_verified(&h("nobody"), true).await,
        Err(ClientError::NoSuchUser(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_key_blocks_sending_until_accepted() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let _carol = relay.user("carol").await;

    let family = alice.c().create_room("Family").await.unwrap();
    alice.c().invite(family, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    bob.c().accept_invitation(family).await.unwrap();
    alice.c().send_text(family, "before").await.unwrap();
    bob.wait_text("before").await;
    let real_bob = bob.c().profile().account();

    // alice reconnects through a relay that now lies about bob's key.
    alice.client.take().unwrap().close().await;
    let (lying, impostor) = lying_about(&relay, "bob");
    let profile = Profile::open(&alice.dir, PASS).unwrap();
    let client = Client::connect_with(profile, lying).await.unwrap();
    alice.events = client.events();
    alice.client = Some(client);

    // Inviting "bob" anywhere meets the impostor's key: refused, with one loud warning.
    let other = alice.c().create_room("Other").await.unwrap();
    let err = alice.c().invite(other, &h("bob")).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::KeyChanged { handle } if *handle == h("bob")),
        "{err:?}"
    );
    assert!(err.to_string().contains("hearth verify bob"), "{err}");
    assert!(err.to_string().contains("hearth trust bob"), "{err}");
    alice
        .wait_for(
            "key change warning",
            |e| matches!(e, ClientEvent::KeyChanged { handle } if *handle == h("bob")),
        )
        .await;
    let contact = alice.c().contact(&h("bob")).await.unwrap().unwrap();
    assert_eq!(
        contact.state,
        TrustState::Changed {
            old: real_bob,
            new: impostor.account()
        }
    );
    assert_eq!(contact.account, impostor.account());
    assert!(alice.c().members(other).await.unwrap().len() == 1);

    // Sending to a room bob is in waits too; carol's room is unaffected.
    let err = alice.c().send_text(family, "blocked").await.unwrap_err();
    assert!(matches!(err, ClientError::KeyChanged { .. }), "{err:?}");
    alice.c().invite(other, &h("carol")).await.unwrap();
    alice.c().send_text(other, "carol is fine").await.unwrap();
    // Seeing the same new key again does not warn again.
    assert!(alice.c().invite(other, &h("bob")).await.is_err());
    alice.c().sync().await.unwrap();
    while let Ok(event) = alice.events.try_recv() {
        assert!(
            !matches!(event, ClientEvent::KeyChanged { .. }),
            "warned twice: {event:?}"
        );
    }

    // Numbers that do not match leave it blocked; accepting the key unblocks.
    alice.c().mark_verified(&h("bob"), false).await.unwrap();
    assert!(alice.c().send_text(family, "still blocked").await.is_err());
    alice.c().trust(&h("bob")).await.unwrap();
    let contact = alice.c().contact(&h("bob")).await.unwrap().unwrap();
    assert_eq!(contact.state, TrustState::Trusted);
    assert_eq!(contact.account, impostor.account());
    // Trust follows keys, not names: the family room still holds the key bob had
    // before, which is no longer the accepted one, so it stays blocked and says so.
    let err = alice
        .c()
        .send_text(family, "after trust")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::UnacceptedKey { handle, room } if *handle == h("bob") && room.id == family),
        "{err:?}"
    );
    let members = alice.c().members(family).await.unwrap();
    let bob_there = members.iter().find(|m| m.handle == h("bob")).unwrap();
    assert_eq!(
        bob_there.trust,
        Some(TrustState::Changed {
            old: impostor.account(),
            new: real_bob
        })
    );
    assert_eq!(bob.texts(family).await, ["before"]);
}

/// A key change that the relay's directory does not vouch for (a lie told once, or by
/// an earlier relay) can never be accepted: `trust` and `verify --yes` refuse it, and
/// the pinned key stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_directory_does_not_give_cannot_be_trusted() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let real_bob = bob.c().profile().account();
    assert_eq!(
        alice.c().contact(&h("bob")).await.unwrap().unwrap().account,
        real_bob
    );

    // Through a lying relay, "bob" shows another key: a pending change.
    alice.client.take().unwrap().close().await;
    let (lying, impostor) = lying_about(&relay, "bob");
    let client = Client::connect_with(Profile::open(&alice.dir, PASS).unwrap(), lying)
        .await
        .unwrap();
    let room = client.create_room("Other").await.unwrap();
    assert!(matches!(
        client.invite(room, &h("bob")).await,
        Err(ClientError::KeyChanged { .. })
    ));
    client.close().await;

    // Back on the honest relay: its directory gives bob his real key.
    alice.restart().await;
    for accept in [true, false] {
        let refused = if accept {
            alice.c().trust(&h("bob")).await
        } else {
            alice.c().mark_verified(&h("bob"), true).await
        };
        assert!(
            matches!(&refused, Err(ClientError::KeyNotVouched { handle }) if *handle == h("bob")),
            "{refused:?}"
        );
    }
    let contact = alice.c().contact(&h("bob")).await.unwrap().unwrap();
    assert_eq!(
        contact.state,
        TrustState::Changed {
            old: real_bob,
            new: impostor.account()
        }
    );
}
