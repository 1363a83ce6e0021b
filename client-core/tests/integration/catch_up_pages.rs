//! Issue 15: catching up processes a page of entries in one store transaction. A commit
//! that fails (as a crash before it would) must leave the state before the page, on
//! disk and in memory: reading the page again takes every entry exactly once, and the
//! MLS state and the stored transcript stay together (a group state stored ahead of the
//! transcript would fail to decrypt the page the second time; one behind it would lose
//! messages). And at a connect, where every room catches up side by side, only a bounded
//! number of pages is read and held at once.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::hooked::{Answer, Hook, Hooked};
use common::*;
use hearth_core::store::Table;
use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{BoxFuture, Link};
use hearth_core::{ClientEvent, Profile};
use hearth_protocol::limits::MAX_READ_ENTRIES;
use hearth_protocol::Request;
use tokio::sync::Notify;

/// Messages bob misses while away: a page of them (fewer than a page's limit).
const MISSED: usize = 40;

fn drain(user: &mut User) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    while let Ok(event) = user.events.try_recv() {
        events.push(event);
    }
    events
}

fn texts_of(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

fn trouble(events: &[ClientEvent]) -> Vec<&ClientEvent> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClientEvent::Rejected { .. } | ClientEvent::Consistency { .. }
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_commit_fails_is_taken_again_exactly_once() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "pages").await;
    alice.c().send_text(room, "before").await.unwrap();
    bob.wait_text("before").await;
    bob.client.take().unwrap().close().await;

    let missed: Vec<String> = (0..MISSED).map(|i| format!("missed {i}")).collect();
    for text in &missed {
        alice.c().send_text(room, text).await.unwrap();
    }

    // Bob comes back; the commit of the page he reads fails (the first to write
    // history).
    let profile = Profile::open(&bob.dir, PASS).unwrap();
    profile.store().fail_commits_touching(&[Table::History], 1);
    let client = hearth_core::Client::connect(profile).await.unwrap();
    bob.events = client.events();
    bob.client = Some(client);
    // Nothing of the page was kept or reported.
    assert_eq!(bob.texts(room).await, ["before"]);
    let events = drain(&mut bob);
    assert!(texts_of(&events).is_empty(), "{events:?}");

    // Reading it again takes every entry once, in order.
    bob.c().sync().await.unwrap();
    let mut expected = vec!["before".to_string()];
    expected.extend(missed.iter().cloned());
    assert_eq!(bob.texts(room).await, expected);
    let events = drain(&mut bob);
    assert_eq!(texts_of(&events), missed);
    assert!(trouble(&events).is_empty(), "{:?}", trouble(&events));

    // The group state went with the transcript: live messages still decrypt, before
    // and after a restart from what is on disk.
    alice.c().send_text(room, "live").await.unwrap();
    bob.wait_text("live").await;
    bob.restart().await;
    alice.c().send_text(room, "after restart").await.unwrap();
    bob.wait_text("after restart").await;
    expected.extend(["live".to_string(), "after restart".to_string()]);
    assert_eq!(bob.texts(room).await, expected);
    let events = drain(&mut bob);
    assert!(trouble(&events).is_empty(), "{:?}", trouble(&events));
    // And alice sees bob's answer (his own sending state is whole too).
    bob.c().send_text(room, "got them").await.unwrap();
    alice.wait_text("got them").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_page_commits_loses_and_repeats_nothing() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "crash").await;
    bob.client.take().unwrap().close().await;
    let missed: Vec<String> = (0..MISSED).map(|i| format!("missed {i}")).collect();
    for text in &missed {
        alice.c().send_text(room, text).await.unwrap();
    }

    // The page is processed and its commit never happens, nor any later one: the
    // process might as well have died there.
    let profile = Profile::open(&bob.dir, PASS).unwrap();
    profile.store().fail_commits(u32::MAX);
    let client = hearth_core::Client::connect(profile).await.unwrap();
    assert!(client.history(room, 1000, None).await.unwrap().is_empty());
    client.close().await;

    // Opened again from disk: the state before the page, and the page read once.
    let profile = Profile::open(&bob.dir, PASS).unwrap();
    let client = hearth_core::Client::connect(profile).await.unwrap();
    bob.events = client.events();
    bob.client = Some(client);
    bob.c().sync().await.unwrap();
    assert_eq!(bob.texts(room).await, missed);
    let events = drain(&mut bob);
    assert!(trouble(&events).is_empty(), "{:?}", trouble(&events));
}

/// Rooms bob misses messages in while away, caught up side by side when he connects.
const ROOMS: usize = 6;

/// Holds the first `Read`s on their way to the relay until [`ROOMS`] of them are in
/// flight at once (so that the reads of rooms catching up side by side overlap), for at
/// most [`GatedReads::PATIENCE`], and keeps the most reads in flight at once: all reads,
/// and full pages (`limit` of [`MAX_READ_ENTRIES`]).
#[derive(Default)]
struct GatedReads {
    reads: InFlight,
    pages: InFlight,
    /// Reads neither of a full page nor of the short first read (2 entries).
    other_limits: AtomicUsize,
    /// Plays a relay that ignores a read's limit: short reads are sent on as full pages.
    ignore_limits: bool,
    open: AtomicBool,
    opened: Notify,
}

#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    fn enter(&self) -> usize {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        now
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GatedReads {
    /// How long the first reads wait for one another before they go on anyway.
    const PATIENCE: Duration = Duration::from_secs(30);

    async fn gate(&self, in_flight: usize) {
        if in_flight >= ROOMS {
            self.open.store(true, Ordering::SeqCst);
            self.opened.notify_waiters();
        }
        let opened = self.opened.notified();
        if !self.open.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(Self::PATIENCE, opened).await;
            self.open.store(true, Ordering::SeqCst);
        }
    }
}

impl Hook for GatedReads {
    fn call<'a>(&'a self, link: &'a dyn Link, request: Request) -> BoxFuture<'a, Answer> {
        let Request::Read { limit, .. } = request else {
            return link.call(request);
        };
        let page = limit == MAX_READ_ENTRIES;
        if !page && limit != 2 {
            self.other_limits.fetch_add(1, Ordering::SeqCst);
        }
        let request = match request {
            Request::Read {
                room, cap, from, ..
            } if self.ignore_limits => Request::Read {
                room,
                cap,
                from,
                limit: MAX_READ_ENTRIES,
            },
            request => request,
        };
        Box::pin(async move {
            let in_flight = self.reads.enter();
            if page {
                self.pages.enter();
            }
            self.gate(in_flight).await;
            let answer = link.call(request).await;
            if page {
                self.pages.leave();
            }
            self.reads.leave();
            answer
        })
    }
}

/// Bob away while alice writes 3 messages in each of [`ROOMS`] rooms they share; then
/// bob connects through `reads`. Returns bob's client, the events of his connect and
/// the texts he missed, sorted.
async fn connect_after_missing(
    relay: &Relay,
    reads: Arc<GatedReads>,
) -> (
    hearth_core::Client,
    tokio::sync::mpsc::UnboundedReceiver<ClientEvent>,
    Vec<ClientEvent>,
    Vec<String>,
) {
    hearth_core::client::set_room_jitter(Duration::ZERO);
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut rooms = Vec::new();
    for n in 0..ROOMS {
        rooms.push(room_with(&alice, &[&bob], &format!("room {n}")).await);
    }
    bob.client.take().unwrap().close().await;
    let mut missed = Vec::new();
    for (n, room) in rooms.iter().enumerate() {
        for i in 0..3 {
            let text = format!("room {n} message {i}");
            alice.c().send_text(*room, &text).await.unwrap();
            missed.push(text);
        }
    }
    missed.sort();
    let profile = Profile::open(&bob.dir, PASS).unwrap();
    let connector = Arc::new(Hooked::new(
        QuicConnector::new(profile.relay().clone()),
        reads,
    ));
    // Connecting catches every room up before it returns.
    let bob = hearth_core::Client::connect_with(profile, connector)
        .await
        .unwrap();
    let mut events = bob.events();
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    (bob, events, seen, missed)
}

/// At a connect every room catches up at once, and each page read is held until it is
/// processed: 100 rooms far behind held 100 pages of up to 1 MiB. The pages read at
/// once are bounded now (4), while every room's first read still goes out at once,
/// short: on a room connection just opened it is the request that shows the room's
/// capability, and the relay closes the oldest of an address's connections that show
/// none. Fails without the bound (6 pages at once) and with a bound that holds back the
/// first reads too (4 reads at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_caught_up_side_by_side_hold_a_bounded_number_of_pages() {
    let relay = Relay::start().await;
    let reads = Arc::new(GatedReads::default());
    let (bob, _events, seen, missed) = connect_after_missing(&relay, reads.clone()).await;
    let mut texts = texts_of(&seen);
    texts.sort();
    assert_eq!(texts, missed, "every room caught up, every message once");
    assert!(trouble(&seen).is_empty(), "{:?}", trouble(&seen));
    let pages = reads.pages.most.load(Ordering::SeqCst);
    let all = reads.reads.most.load(Ordering::SeqCst);
    assert!(pages <= 4, "{pages} pages read at once");
    assert_eq!(
        reads.other_limits.load(Ordering::SeqCst),
        0,
        "every read is a full page or a short first read of 2 entries"
    );
    assert_eq!(all, ROOMS, "every room's first read went out at once");
    bob.close().await;
}

/// A relay that answers the short first reads with full pages (it ignores the limit) to
/// make the client hold a page per room after all: those answers are refused, so the
/// rooms that got them are not caught up at the connect (4 of the 6 are, on the 4
/// pages), and are at the next sync, whose reads come one room at a time as full pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_answering_a_short_read_with_a_full_page_is_refused() {
    let relay = Relay::start().await;
    let reads = Arc::new(GatedReads {
        ignore_limits: true,
        ..GatedReads::default()
    });
    let (bob, mut events, mut seen, missed) = connect_after_missing(&relay, reads).await;
    assert_eq!(
        texts_of(&seen).len(),
        4 * 3,
        "only the rooms read under a page caught up"
    );
    bob.sync().await.unwrap();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    let mut texts = texts_of(&seen);
    texts.sort();
    assert_eq!(texts, missed, "every message once, the rest at the sync");
    bob.close().await;
}
