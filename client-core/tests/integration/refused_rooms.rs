//! A room whose own connection the relay refuses for now (its per-address pool full, the
//! account's admission tokens used up) while the account's connection is up: the client
//! connects anyway and follows the room again later. Until it has, what the inbox holds
//! for that room waits.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{h, room_with, Relay, PASS};
use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{BoxFuture, Connection, Connector, TransportError};
use hearth_core::{ClientError, ClientEvent};

/// Lets the first connection (the account's) through, and refuses the next ones while
/// `refusing` is set, as a relay that closes them at once would.
struct RefusingRooms {
    inner: QuicConnector,
    opened: AtomicUsize,
    refusing: Arc<AtomicBool>,
}

impl Connector for RefusingRooms {
    fn connect(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let first = self.opened.fetch_add(1, Ordering::SeqCst) == 0;
            if !first && self.refusing.load(Ordering::SeqCst) {
                return Err(TransportError::Closed);
            }
            self.inner.connect().await
        })
    }

    fn address(&self) -> String {
        self.inner.address()
    }
}

/// Bob, removed from a room and invited back while away, comes back with that room's
/// connection refused. His client still holds the room as joined: taken then, the new
/// Welcome looked like a duplicate of the room he is in and was dropped, and the catch-up
/// that came later read his removal, leaving him out with no invitation. It waits in the
/// inbox until the room is caught up, and bob is invited back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_back_into_a_room_not_caught_up_yet_waits_for_its_catch_up() {
    hearth_core::client::set_room_jitter(std::time::Duration::ZERO);
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    bob.client.take().unwrap().close().await;
    alice.c().remove_member(room, &h("bob")).await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();

    let profile = hearth_core::Profile::open(&bob.dir, PASS).unwrap();
    let refusing = Arc::new(AtomicBool::new(true));
    let connector = Arc::new(RefusingRooms {
        inner: QuicConnector::new(profile.relay().clone()),
        opened: AtomicUsize::new(0),
        refusing: refusing.clone(),
    });
    let client = hearth_core::Client::connect_with(profile, connector)
        .await
        .expect("connecting does not fail for one refused room");
    let mut events = client.events();
    assert!(matches!(
        client.sync().await,
        Err(ClientError::NotConnected)
    ));
    assert!(client.is_connected());
    assert!(
        client.known_invitations().await.unwrap().is_empty(),
        "not taken before the room is caught up"
    );

    refusing.store(false, Ordering::SeqCst);
    let invited = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(event) = events.recv().await {
            if matches!(&event, ClientEvent::Invited(i) if i.room == room) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(invited, Ok(true), "bob is invited back");
    client.accept_invitation(room).await.unwrap();
    alice.c().send_text(room, "welcome back").await.unwrap();
    bob.client = Some(client);
    bob.events = events;
    bob.wait_text("welcome back").await;
}
