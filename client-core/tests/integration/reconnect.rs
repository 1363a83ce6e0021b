//! Issues 12 and 13: after the relay process is killed (SIGKILL: no CONNECTION_CLOSE
//! reaches anyone) and comes straight back on the same port, a connected client notices
//! within its idle timeout and reconnects by itself. The time it took is printed as a
//! figure to report (`cargo nextest run --workspace -E 'binary(reconnect)' --no-capture`),
//! not asserted: performance lives in measurements, not in timed assertions.

use crate::relay_process;

use std::time::{Duration, Instant};

use hearth_core::events::ConnectionState;
use hearth_core::store::{set_test_kdf_params, KdfParams};
use hearth_core::{Client, ClientEvent, Profile};
use hearth_protocol::Handle;
use relay_process::spawn_relay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnects_by_itself_after_the_relay_is_killed_and_restarted() {
    set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let (mut relay, address, invite) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || spawn_relay(&data, "127.0.0.1:0")
    })
    .await
    .unwrap();
    let invite = invite.expect("a fresh relay prints its first invite");
    let profile = Profile::create(
        &dir.path().join("alice"),
        "correct horse",
        Handle::new("alice").unwrap(),
        address.clone(),
    )
    .unwrap();
    let client = Client::register(profile, &invite).await.unwrap();
    let mut events = client.events();
    let room = client.create_room("Home").await.unwrap();

    relay.kill().expect("SIGKILL");
    relay.wait().unwrap();
    let killed = Instant::now();
    let listen = format!("127.0.0.1:{}", address.port);
    let (mut relay, _, _) = tokio::task::spawn_blocking(move || spawn_relay(&data, &listen))
        .await
        .unwrap();
    let restarted = killed.elapsed();

    // The client finds out by itself (no request made meanwhile) and reconnects.
    let mut noticed = None;
    let reconnected = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Some(ClientEvent::Connection(ConnectionState::Reconnecting { .. })) => {
                    noticed.get_or_insert_with(|| killed.elapsed());
                }
                Some(ClientEvent::Connection(ConnectionState::Connected)) if noticed.is_some() => {
                    return killed.elapsed();
                }
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .expect("the client reconnects by itself");
    println!(
        "relay killed and restarted in {restarted:?}; the client noticed after {:?} and was connected again after {reconnected:?}",
        noticed.unwrap()
    );
    client.send_text(room, "back").await.unwrap();
    client.close().await;
    relay.kill().ok();
    relay.wait().ok();
}
