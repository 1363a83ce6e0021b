//! Issue 11: a profile put back from a file-level copy (an old disk image, a copied
//! directory) would send at ratchet positions it already used. The client notices its
//! own entries it does not remember, and commits a fresh leaf before sending again.

use crate::common;

use common::{copy_dir, room_with, Relay};
use hearth_core::ClientEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_put_back_from_a_copy_updates_its_keys_before_sending() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    alice.c().send_text(room, "before the copy").await.unwrap();
    bob.wait_text("before the copy").await;

    // (A connection commits what is due on connection, the owner's first update, so that
    // afterwards the lost messages are all alice writes.)
    alice.restart().await;
    bob.c().sync().await.unwrap();
    // A copy of alice's profile, taken with her client closed.
    alice.client.take().unwrap().close().await;
    let copy = relay.dir.path().join("alice-copy");
    copy_dir(&alice.dir, &copy);
    alice.restart().await;
    alice.c().send_text(room, "after the copy 1").await.unwrap();
    alice.c().send_text(room, "after the copy 2").await.unwrap();
    bob.wait_text("after the copy 2").await;

    // The copy is put back.
    bob.c().sync().await.unwrap();
    let epoch_before = bob.c().rooms().await.unwrap()[0].epoch;
    alice.client.take().unwrap().close().await;
    std::fs::remove_dir_all(&alice.dir).unwrap();
    copy_dir(&copy, &alice.dir);
    alice.restart().await;
    alice
        .wait_for(
            "told it was put back",
            |e| matches!(e, ClientEvent::RolledBack { room: r } if *r == room),
        )
        .await;

    alice
        .c()
        .send_text(room, "back from the copy")
        .await
        .unwrap();
    bob.wait_text("back from the copy").await;
    bob.c().sync().await.unwrap();
    assert!(
        bob.c().rooms().await.unwrap()[0].epoch > epoch_before,
        "alice committed a fresh leaf before sending"
    );
}
