//! Issue 11: a device whose clock is a day ahead or behind sees disappearing messages
//! expire exactly as everyone else does (by the relay's clock, which stamps every entry),
//! keeps processing commits, and is told its clock is off. Real relay on 127.0.0.1:0.

use crate::common;

use std::time::Duration;

use common::{h, room_with, Relay};
use hearth_core::clock::{device_now, set_test_clock_offset};
use hearth_core::ClientEvent;

async fn with_clock_off_by(offset_secs: i64) {
    set_test_clock_offset(offset_secs);
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let carol = relay.user("carol").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    match bob
        .wait_for("clock warning", |e| {
            matches!(e, ClientEvent::ClockSkewed { .. })
        })
        .await
    {
        ClientEvent::ClockSkewed { secs } => {
            assert!((secs + offset_secs).abs() < 60, "{secs} vs {offset_secs}")
        }
        _ => unreachable!("wait_for returns a matching event"),
    }

    // Commits keep flowing: a new member (a fresh KeyPackage) and a timer.
    alice.c().invite(room, &h("carol")).await.unwrap();
    carol.c().sync().await.unwrap();
    carol.c().accept_invitation(room).await.unwrap();
    alice
        .c()
        .set_expiry(room, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    alice.c().send_text(room, "fresh").await.unwrap();
    bob.wait_text("fresh").await;

    // Shown while fresh by the relay's clock, whatever the device's says...
    assert_eq!(bob.texts(room).await, ["fresh"], "offset {offset_secs}");
    let half_an_hour = device_now() + Duration::from_secs(1800);
    assert_eq!(bob.c().purge_expired(half_an_hour).await.unwrap(), 0);
    // ...and gone an hour after the relay stored it.
    let two_hours = device_now() + Duration::from_secs(7200);
    assert_eq!(bob.c().purge_expired(two_hours).await.unwrap(), 1);
    assert!(bob.texts(room).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_a_day_ahead_expires_messages_by_the_relays_clock() {
    with_clock_off_by(86_400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_a_day_behind_expires_messages_by_the_relays_clock() {
    with_clock_off_by(-86_400).await;
}
