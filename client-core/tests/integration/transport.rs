//! The QUIC transport against a real relay: pinning and reconnecting.

use crate::common;

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

/// Waits for the client to report a lost connection; returns the reason and the delay.
async fn reconnecting(user: &mut common::User) -> (String, std::time::Duration) {
    match user
        .wait_for("reconnecting", |e| {
            matches!(
                e,
                ClientEvent::Connection(ConnectionState::Reconnecting { .. })
            )
        })
        .await
    {
        ClientEvent::Connection(ConnectionState::Reconnecting { reason, retry_in }) => {
            (reason, retry_in)
        }
        _ => unreachable!("matched above"),
    }
}

/// Issue 13: the relay closes a banned account's connection with a reason; the client
/// reports it in its own words (not as a lost connection, and not the relay's text) and
/// does not reconnect in a tight loop: a ban does not pass by retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_client_is_told_why_and_backs_off() {
    use hearth_relay::admin::{request, AdminRequest};
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let config = relay.running.as_ref().unwrap().relay().config().clone();
    request(&config, AdminRequest::Ban { handle: h("alice") })
        .await
        .unwrap();
    let (reason, retry_in) = reconnecting(&mut alice).await;
    assert_eq!(
        reason,
        "the relay closed the connection: this account is banned from the relay: ask the relay's owner"
    );
    assert!(
        retry_in >= std::time::Duration::from_secs(300),
        "{retry_in:?}"
    );
    assert!(!alice.c().is_connected());
}

/// Issue 13: an account at the relay's session limit (1 here) that signs in once more
/// replaces its least recently heard session; the client of the replaced one is told why,
/// with the limit, and waits before coming back instead of taking the place back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_replaced_at_the_account_limit_is_told_why() {
    use hearth_core::transport::quic::QuicConnector;
    use hearth_core::transport::Connector;
    use hearth_protocol::auth::auth_message;
    use hearth_protocol::{Request, Response};
    let relay = Relay::start_with(|c| c.max_sessions_per_account = 1).await;
    let mut alice = relay.user("alice").await;
    // The same account signs in elsewhere (another window of the same person).
    let identity = alice.c().profile().identity();
    let account = identity.account();
    let other = QuicConnector::new(relay.address()).connect().await.unwrap();
    let signature = identity.sign(&auth_message(&other.challenge, &other.exporter, &account));
    let answer = other
        .link
        .call(Request::Auth { account, signature })
        .await
        .unwrap();
    assert!(
        matches!(answer, Ok(Response::Authenticated { .. })),
        "{answer:?}"
    );
    let (reason, retry_in) = reconnecting(&mut alice).await;
    assert_eq!(
        reason,
        "the relay closed the connection: this account has the most sessions the relay allows (1) and a newer one took this one's place: close other hearth windows"
    );
    assert!(
        retry_in >= std::time::Duration::from_secs(30),
        "{retry_in:?}"
    );
    assert_eq!(
        other.link.call(Request::Ping).await.unwrap(),
        Ok(Response::Pong),
        "the newer session is served"
    );
}

/// Issue 13 (item 12's "refused users are told why"): connecting from an address the relay
/// blocked after many failed logins fails with the reason, not "cannot reach the relay".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_from_a_blocked_address_says_why() {
    use hearth_core::transport::quic::QuicConnector;
    use hearth_core::transport::{Connector, TransportError};
    use hearth_protocol::{CloseReason, ErrorCode, Request, Signature};
    let relay = Relay::start_with(|c| c.max_failed_logins_per_address = 3).await;
    let connector = QuicConnector::new(relay.address());
    let stranger = hearth_core::Identity::generate();
    for _ in 0..3 {
        let conn = connector.connect().await.unwrap();
        let refused = conn
            .link
            .call(Request::Auth {
                account: stranger.account(),
                signature: Signature([7; 64]),
            })
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::AuthFailed);
        conn.link.close();
    }
    let err = match connector.connect().await {
        Err(e) => e,
        Ok(_) => panic!("a blocked address was served"),
    };
    assert_eq!(
        err,
        TransportError::ClosedByRelay(CloseReason::AddressBlocked { secs: 300 })
    );
    let dir = relay.profile_dir("carol");
    let profile = Profile::create(&dir, PASS, h("carol"), relay.address()).unwrap();
    let err = match Client::connect(profile).await {
        Err(e) => e,
        Ok(_) => panic!("a blocked address was served"),
    };
    assert_eq!(
        err.to_string(),
        "the relay closed the connection: this address is blocked for up to 300 s after many failed logins from it"
    );
}
