//! Issue 15 (the client side): how many times a send asks the relay for the room's log.
//! Every read is a round trip before `send_text` returns, and a request counted against
//! the room connection's rate.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{room_with, Relay, PASS};
use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{BoxFuture, Connection, Connector, Link, TransportError};
use hearth_protocol::{Request, Response, WireError};

/// Counts the `Read` requests of every connection it opens.
struct CountingReads(QuicConnector, Arc<AtomicUsize>);

struct CountingLink(Arc<dyn Link>, Arc<AtomicUsize>);

impl Link for CountingLink {
    fn call(
        &self,
        request: Request,
    ) -> BoxFuture<'_, Result<Result<Response, WireError>, TransportError>> {
        if matches!(request, Request::Read { .. }) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
        self.0.call(request)
    }

    fn close(&self) {
        self.0.close();
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close_reason(&self) -> Option<hearth_protocol::close::CloseReason> {
        self.0.close_reason()
    }
}

impl Connector for CountingReads {
    fn connect(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let mut conn = self.0.connect().await?;
            conn.link = Arc::new(CountingLink(conn.link, self.1.clone()));
            Ok(conn)
        })
    }

    fn address(&self) -> String {
        self.0.address()
    }
}

/// A send in a room that is up to date reads the log once before its append (anything
/// new to process first?) and once after it (its own entry, and what came before it):
/// the answer to that read names the relay's head, so no third read follows. And its
/// entry pushed back on the room's subscription costs no read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_reads_the_log_once_before_and_once_after_its_append_not_three_times() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    alice.client.take().unwrap().close().await;
    let profile = hearth_core::Profile::open(&alice.dir, PASS).unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let connector = Arc::new(CountingReads(
        QuicConnector::new(profile.relay().clone()),
        reads.clone(),
    ));
    let alice = hearth_core::Client::connect_with(profile, connector)
        .await
        .unwrap();
    // The first send opens the room's connection and catches up on it; bob's answer,
    // once pushed, says that everything before it (the epochs of the set-up) was read.
    let mut events = alice.events();
    alice.send_text(room, "first").await.unwrap();
    bob.c().send_text(room, "got it").await.unwrap();
    loop {
        match events.recv().await {
            Some(hearth_core::ClientEvent::Message(m)) if m.text == "got it" => break,
            Some(_) => {}
            None => panic!("alice's events ended"),
        }
    }
    // Nobody else writes meanwhile (bob's client would mark what it read, say).
    bob.client.take().unwrap().close().await;
    const SENDS: usize = 10;
    reads.store(0, Ordering::SeqCst);
    for n in 0..SENDS {
        alice
            .send_text(room, &format!("message {n}"))
            .await
            .unwrap();
    }
    // Two per send. Before, three of its own (a third read to find nothing more), and
    // one more after each push: the late end of the set-up's subscriptions (bob's join
    // moved the epoch) was taken for the current one's, so the client thought itself
    // unsubscribed and read the log after every entry it was pushed.
    let counted = reads.load(Ordering::SeqCst);
    assert!(counted <= 2 * SENDS, "{counted} reads for {SENDS} sends");
    alice.close().await;
}
