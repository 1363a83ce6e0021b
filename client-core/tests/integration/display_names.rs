//! Display names against a real relay (QUIC on 127.0.0.1:0).

use crate::common;

use common::{h, Relay};
use hearth_core::ClientEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_name_reaches_the_room_and_survives_a_restart() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = common::room_with(&alice, &[&bob], "Home").await;

    // Invalid names are refused with a clear error, and nothing is stored.
    for bad in ["", "   ", "bad\u{7}name", &"x".repeat(33)] {
        let err = bob.c().set_display_name(bad).await.unwrap_err();
        assert!(err.to_string().contains("display name"), "{err}");
    }
    assert_eq!(bob.c().display_name(&h("bob")), None);

    bob.c().set_display_name("  Uncle Bob ").await.unwrap();
    assert_eq!(
        bob.c().display_name(&h("bob")).as_deref(),
        Some("Uncle Bob")
    );
    let event = alice
        .wait_for("bob's display name", |e| {
            matches!(e, ClientEvent::DisplayNameChanged { .. })
        })
        .await;
    assert_eq!(
        event,
        ClientEvent::DisplayNameChanged {
            handle: h("bob"),
            name: "Uncle Bob".into()
        }
    );
    assert_eq!(
        alice.c().display_name(&h("bob")).as_deref(),
        Some("Uncle Bob")
    );

    // Messages carry the name; the announcement itself is not in the history.
    bob.c().send_text(room, "hello").await.unwrap();
    let event = alice
        .wait_for(
            "hello",
            |e| matches!(e, ClientEvent::Message(m) if m.text == "hello"),
        )
        .await;
    let ClientEvent::Message(item) = event else {
        unreachable!()
    };
    assert_eq!(item.sender, h("bob"));
    assert_eq!(item.sender_name.as_deref(), Some("Uncle Bob"));
    assert_eq!(alice.texts(room).await, ["hello"]);
    bob.c().sync().await.unwrap();
    assert_eq!(bob.texts(room).await, ["hello"]);

    alice.restart().await;
    alice.c().sync().await.unwrap();
    assert_eq!(
        alice.c().display_name(&h("bob")).as_deref(),
        Some("Uncle Bob")
    );
    let history = alice.c().history(room, 10, None).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].sender_name.as_deref(), Some("Uncle Bob"));
    assert_eq!(alice.c().display_name(&h("alice")), None);

    // Bob's own name persists across his restart too.
    bob.restart().await;
    assert_eq!(
        bob.c().display_name(&h("bob")).as_deref(),
        Some("Uncle Bob")
    );
}
