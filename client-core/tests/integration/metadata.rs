//! Issue 16: what the relay can learn from what it stores. Here: message sizes.

use crate::common;

use common::{room_with, Relay};

/// Texts of different lengths are stored as ciphertexts of the same size up to a
/// padding block (`hearth_core::mls::config::PADDING_BLOCK`): the relay learns sizes
/// to the nearest block, not the length of what was said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sizes_are_padded_to_blocks() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    let block = hearth_core::mls::config::PADDING_BLOCK;

    let mut sizes = Vec::new();
    for text in [
        "ok",
        "dinner is at six, bring the salad please",
        &"x".repeat(400),
    ] {
        alice.c().send_text(room, text).await.unwrap();
        bob.wait_text(text).await;
        sizes.push(relay.last_payload(room).len());
    }
    assert_eq!(sizes[0], sizes[1], "two short texts look alike: {sizes:?}");
    assert!(sizes[2] > sizes[1], "{sizes:?}");
    assert_eq!((sizes[2] - sizes[1]) % block, 0, "{sizes:?}");
}

/// The relay's owner bans an account (a stolen device): the relay closes its signed-in
/// connection, and the client closes its rooms' connections too, which never signed in
/// and which the ban cannot reach at the relay (decision 0013). Only the other members'
/// connections stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_accounts_client_closes_its_rooms_connections_too() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "family").await;
    alice.c().send_text(room, "before").await.unwrap();
    bob.wait_text("before").await;
    let running = relay.running.as_ref().unwrap();
    // Alice's and Bob's signed-in connections and their room's connections.
    let before = running.relay().metrics().connections;
    assert_eq!(before, 4);
    common::ban(running, "bob").await;
    bob.wait_for("the ban", |e| {
        matches!(
            e,
            hearth_core::ClientEvent::Connection(hearth_core::ConnectionState::Reconnecting {
                reason,
                ..
            }) if reason.contains("banned")
        )
    })
    .await;
    // No event tells when the relay has seen the room connection go: look until it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while running.relay().metrics().connections != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} connections still open: Bob's room connection outlived his ban",
            running.relay().metrics().connections
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Decision 0016: a ban replaces the relay's admission key, and every room connection
/// must show a token of the new one. The family's clients do that on the connections
/// they have (`Readmit`), taking new tokens on their signed-in connections: nothing is
/// reopened, and the room goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_of_someone_else_readmits_the_familys_room_connections_where_they_are() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut carol = relay.user("carol").await;
    let room = room_with(&alice, &[&bob], "family").await;
    alice.c().send_text(room, "before").await.unwrap();
    bob.wait_text("before").await;
    carol.client.take().unwrap().close().await;
    let running = relay.running.as_ref().unwrap();
    let before = running.relay().metrics();
    common::ban(running, "carol").await;
    // No event tells when the relay has taken the new tokens: look until it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while running.relay().metrics().admitted < before.admitted + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the room connections were not admitted again: {:?}",
            running.relay().metrics()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = running.relay().metrics();
    assert_eq!(
        after.connections_total, before.connections_total,
        "admitted again on the connections they had, none reopened"
    );
    assert_eq!(after.readmit_timeouts, 0);
    alice.c().send_text(room, "after").await.unwrap();
    bob.wait_text("after").await;
}
