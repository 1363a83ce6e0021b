//! The QUIC transport against a real relay: pinning and reconnecting.

mod common;

use common::{h, Relay, PASS};
use hearth_core::{Client, ClientError, ClientEvent, ConnectionState, Profile};
use hearth_protocol::{Invite, Pin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_refused_with_a_clear_error() {
    let relay = Relay::start().await;
    let mut address = relay.address();
    address.pin = Pin([1; 32]);
    let invite = Invite {
        relay: address.clone(),
        token: relay.invite().token,
    };
    let dir = relay.profile_dir("mallory");
    let profile = Profile::create(&dir, PASS, h("mallory"), address).unwrap();
    let err = match Client::register(profile, &invite).await {
        Err(e) => e,
        Ok(_) => panic!("connected despite a wrong pin"),
    };
    assert!(matches!(err, ClientError::PinMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("different key than the pinned one"), "{text}");
    assert!(text.contains("new invite"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_and_miss_nothing() {
    let mut relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = alice.c().create_room("Resilient").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    bob.c().accept_invitation(room).await.unwrap();
    alice
        .c()
        .send_text(room, "before the outage")
        .await
        .unwrap();
    bob.wait_text("before the outage").await;

    relay.restart().await;
    for user in [&mut alice, &mut bob] {
        user.wait_for("reconnecting", |e| {
            matches!(
                e,
                ClientEvent::Connection(ConnectionState::Reconnecting { .. })
            )
        })
        .await;
        user.wait_for("reconnected", |e| {
            matches!(e, ClientEvent::Connection(ConnectionState::Connected))
        })
        .await;
    }
    alice.c().send_text(room, "after the outage").await.unwrap();
    bob.wait_text("after the outage").await;
    assert_eq!(
        bob.texts(room).await,
        ["before the outage", "after the outage"]
    );
}
