//! Rooms over the in-process transport (the relay's protocol service, no sockets).

use crate::common;

use std::sync::Arc;

use common::memory::MemoryConnector;
use common::{h, PASS};
use hearth_core::store::{set_test_kdf_params, KdfParams};
use hearth_core::{Client, ClientEvent, Profile};
use hearth_protocol::{Pin, RelayAddress};
use hearth_relay::{RedbStore, Relay, RelayConfig};

async fn user(relay: &Relay, dir: &std::path::Path, name: &str) -> Client {
    let address = RelayAddress {
        host: "in-process".into(),
        port: 1,
        pin: Pin([0; 32]),
    };
    let profile = Profile::create(&dir.join(name), PASS, h(name), address).unwrap();
    let token = relay.mint_invite(1, None).unwrap();
    let connector = Arc::new(MemoryConnector {
        relay: relay.clone(),
    });
    Client::register_with(profile, Some(token), connector)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_talk_in_process() {
    set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        data_dir: dir.path().join("relay"),
        ..RelayConfig::default()
    };
    let relay = Relay::new(config, Arc::new(RedbStore::in_memory().unwrap()));
    let alice = user(&relay, dir.path(), "alice").await;
    let bob = user(&relay, dir.path(), "bob").await;
    let mut bob_events = bob.events();

    let room = alice.create_room("Porch").await.unwrap();
    alice.invite(room, &h("bob")).await.unwrap();
    bob.sync().await.unwrap();
    bob.accept_invitation(room).await.unwrap();
    alice.send_text(room, "in process").await.unwrap();
    loop {
        match bob_events.recv().await.unwrap() {
            ClientEvent::Message(m) if m.text == "in process" => break,
            _ => {}
        }
    }
    let history = bob.history(room, 10, None).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].sender, h("alice"));
}
