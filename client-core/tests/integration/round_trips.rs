//! Issue 15 (the client side): how many times a send asks the relay for the room's log.
//! Every read is a round trip before `send_text` returns, and a request counted against
//! the room connection's rate.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::hooked::{Answer, Hook, Hooked};
use common::{room_with, Relay, PASS};
use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{BoxFuture, Link};
use hearth_protocol::Request;

/// Counts the `Read` requests of every connection it opens.
struct CountingReads(AtomicUsize);

impl Hook for CountingReads {
    fn call<'a>(&'a self, link: &'a dyn Link, request: Request) -> BoxFuture<'a, Answer> {
        if matches!(request, Request::Read { .. }) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        link.call(request)
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
    let reads = Arc::new(CountingReads(AtomicUsize::new(0)));
    let connector = Arc::new(Hooked::new(
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
    reads.0.store(0, Ordering::SeqCst);
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
    let counted = reads.0.load(Ordering::SeqCst);
    assert!(counted <= 2 * SENDS, "{counted} reads for {SENDS} sends");
    alice.close().await;
}
