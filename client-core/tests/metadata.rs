//! Issue 16: what the relay can learn from what it stores. Here: message sizes.

mod common;

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
