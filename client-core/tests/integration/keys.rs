//! Issue 11: KeyPackages that age well, against a real relay.

use crate::common;

use common::hostile::Hostile;
use common::{h, Relay};
use hearth_protocol::{Handle, Request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_stock_falls_back_to_the_last_resort_which_is_then_replaced() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let bob_key = bob.c().profile().account();
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    let (available, last_resort) = store.key_package_stock(&bob_key).unwrap();
    assert!(available >= 20 && last_resort);

    // Several accounts together take every one-use package bob has (each alone is
    // limited, see the relay's tests).
    let mut taken = 0;
    for name in ["t1", "t2", "t3", "t4"] {
        let mut user = relay.user(name).await;
        let hostile = Hostile::take_over(&mut user).await;
        for _ in 0..5 {
            hostile
                .call(Request::FetchKeyPackage {
                    handle: Handle::new("bob").unwrap(),
                })
                .await
                .unwrap();
            taken += 1;
        }
    }
    assert_eq!(taken, available);
    assert_eq!(store.key_package_stock(&bob_key).unwrap(), (0, true));

    // Inviting bob now uses his last-resort package: it must be one the inviter accepts.
    let room = alice.c().create_room("Home").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    bob.c().accept_invitation(room).await.unwrap();
    alice.c().send_text(room, "hello bob").await.unwrap();
    bob.wait_text("hello bob").await;
    assert_eq!(
        store.key_package_stock(&bob_key).unwrap(),
        (0, false),
        "a used last-resort package is reported as such"
    );

    // Bob's client replaces it (and refills the stock) the next time it tops up.
    bob.restart().await;
    let (available, last_resort) = store.key_package_stock(&bob_key).unwrap();
    assert!(available >= 20, "{available}");
    assert!(last_resort);
}
