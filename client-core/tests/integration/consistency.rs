//! Transcript consistency (DESIGN 7) against a real relay (QUIC on 127.0.0.1:0) that
//! misbehaves towards one member.
//!
//! The relay itself is honest; bob's connections go through a [`View`] (a hook on them)
//! that rewrites what the relay tells him about room logs, exactly what a compromised
//! relay could send: it hides one entry of the log (by its real seq) from the `Entries`
//! pushes and the `Read` answers bob gets, and, when asked to, also renumbers every later
//! entry one down (translating the seqs bob sends in `Read`/`Subscribe` back and the
//! seqs of `Appended`/`SubscriptionEnded`/`last` forward) so that bob's log looks
//! contiguous. MLS does not see seqs, so every entry bob does get still decrypts.
//!
//! - Dropping an entry without renumbering leaves a hole in the seqs: a gap.
//! - Dropping and renumbering gives bob a history different from alice's with no hole:
//!   only the (seq, hash) mark each message carries reveals it, as a fork, on both sides.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::hooked::{Answer, Hook, Hooked};
use common::{h, Relay, User, PASS};
use hearth_core::content::InboxMessage;
use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{BoxFuture, Link};
use hearth_core::{Client, ClientError, ClientEvent, ConsistencyWarning, Profile};
use hearth_protocol::{Entry, Event, InboxEntry, Request, Response, RoomId, Seq};

/// What bob is shown of every room log: the real log minus the hidden entries, with
/// later seqs moved down past them when `renumber` is set.
struct View {
    /// Real seqs of the hidden entries, ascending.
    hidden: Mutex<Vec<u64>>,
    renumber: bool,
    /// How many entries were actually withheld (pushes and reads).
    withheld: AtomicU64,
    /// Rewrites the wrapper of every Welcome in bob's inbox it can read to start him at
    /// this seq with a made-up hash.
    forged_start: Mutex<Option<Seq>>,
    /// How many inbox payloads the relay could read as a Welcome wrapper (sealed ones
    /// it cannot, decision 0013).
    readable_wrappers: AtomicU64,
}

impl View {
    fn new(renumber: bool) -> Arc<View> {
        Arc::new(View {
            hidden: Mutex::new(Vec::new()),
            renumber,
            withheld: AtomicU64::new(0),
            forged_start: Mutex::new(None),
            readable_wrappers: AtomicU64::new(0),
        })
    }

    /// From now on, the entry at real seq `seq` is never shown.
    fn hide(&self, seq: Seq) {
        let mut hidden = self.hidden.lock().unwrap();
        hidden.push(seq.0);
        hidden.sort_unstable();
    }

    fn hidden(&self) -> Vec<u64> {
        self.hidden.lock().unwrap().clone()
    }

    /// A real seq as bob sees it (seqs of hidden entries map to the next shown one).
    fn shown(&self, real: Seq) -> Seq {
        if !self.renumber {
            return real;
        }
        let below = self.hidden().iter().filter(|h| **h < real.0).count() as u64;
        Seq(real.0 - below)
    }

    /// The latest real seq at or before `real` as bob sees it (for "last").
    fn shown_last(&self, real: Seq) -> Seq {
        if !self.renumber {
            return real;
        }
        let upto = self.hidden().iter().filter(|h| **h <= real.0).count() as u64;
        Seq(real.0 - upto)
    }

    /// The real seq of the entry bob calls `shown`.
    fn real(&self, shown: Seq) -> Seq {
        if !self.renumber {
            return shown;
        }
        let mut real = shown.0;
        for h in self.hidden() {
            if h <= real {
                real += 1;
            }
        }
        Seq(real)
    }

    fn entries(&self, entries: Vec<Entry>) -> Vec<Entry> {
        let hidden = self.hidden();
        entries
            .into_iter()
            .filter(|e| {
                let keep = !hidden.contains(&e.seq.0);
                if !keep {
                    self.withheld.fetch_add(1, Ordering::SeqCst);
                }
                keep
            })
            .map(|e| Entry {
                seq: self.shown(e.seq),
                ..e
            })
            .collect()
    }

    fn request(&self, request: Request) -> Request {
        match request {
            Request::Read {
                room,
                cap,
                from,
                limit,
            } => Request::Read {
                room,
                cap,
                from: self.real(from),
                limit,
            },
            Request::Subscribe { room, cap, from } => Request::Subscribe {
                room,
                cap,
                from: self.real(from),
            },
            other => other,
        }
    }

    fn response(&self, response: Response) -> Response {
        match response {
            Response::Entries { entries, last } => Response::Entries {
                entries: self.entries(entries),
                last: self.shown_last(last),
            },
            Response::Appended { seq } => Response::Appended {
                seq: self.shown(seq),
            },
            Response::Inbox(entries) => {
                let Some(start) = *self.forged_start.lock().unwrap() else {
                    return Response::Inbox(entries);
                };
                let forge = |payload: &[u8]| match InboxMessage::decode(payload) {
                    Ok(InboxMessage::Welcome {
                        room,
                        welcome,
                        from,
                        ..
                    }) => {
                        self.readable_wrappers.fetch_add(1, Ordering::Relaxed);
                        InboxMessage::Welcome {
                            room,
                            welcome,
                            start_seq: start,
                            transcript_hash: [0xee; 32],
                            from,
                        }
                        .encode()
                    }
                    _ => payload.to_vec(),
                };
                Response::Inbox(
                    entries
                        .into_iter()
                        .map(|e| InboxEntry {
                            payload: forge(&e.payload),
                            ..e
                        })
                        .collect(),
                )
            }
            other => other,
        }
    }

    /// A pushed event as bob gets it; a push left empty is not sent at all.
    fn event(&self, event: Event) -> Option<Event> {
        match event {
            Event::Entries { room, entries } => {
                let entries = self.entries(entries);
                (!entries.is_empty()).then_some(Event::Entries { room, entries })
            }
            Event::SubscriptionEnded { room, next } => Some(Event::SubscriptionEnded {
                room,
                next: self.shown(next),
            }),
            other => Some(other),
        }
    }
}

/// What bob's connections exchange with the relay: the seqs he asks for translated to
/// the real ones, the relay's answers and pushes rewritten by the view.
impl Hook for View {
    fn call<'a>(&'a self, link: &'a dyn Link, request: Request) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let request = self.request(request);
            let answer = link.call(request).await?;
            Ok(answer.map(|response| self.response(response)))
        })
    }

    fn pushed(&self, event: Event) -> Option<Event> {
        self.event(event)
    }
}

/// Registers `handle` with every connection going through `view`.
async fn user_through(relay: &Relay, handle: &str, view: Arc<View>) -> User {
    let dir = relay.profile_dir(handle);
    let profile = Profile::create(&dir, PASS, h(handle), relay.address()).unwrap();
    let connector = Arc::new(Hooked::new(QuicConnector::new(relay.address()), view));
    let client = Client::register_with(profile, Some(relay.invite().token), connector)
        .await
        .unwrap();
    let events = client.events();
    User {
        client: Some(client),
        events,
        dir,
    }
}

/// Collects events until (and including) the first that matches `pred`.
async fn events_until(
    user: &mut User,
    what: &str,
    mut pred: impl FnMut(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    user.wait_for(what, |e| {
        seen.push(e.clone());
        pred(e)
    })
    .await;
    seen
}

fn is_text(e: &ClientEvent, text: &str) -> bool {
    matches!(e, ClientEvent::Message(m) if m.text == text)
}

fn warnings(events: &[ClientEvent]) -> Vec<ConsistencyWarning> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Consistency { warning, .. } => Some(warning.clone()),
            _ => None,
        })
        .collect()
}

/// alice creates a room with bob (who is behind `view`) and both see "one".
async fn room_with_bob(view: Arc<View>) -> (Relay, User, User, RoomId, Seq) {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = user_through(&relay, "bob", view).await;
    let room = alice.c().create_room("Family").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.wait_for("invitation", |e| matches!(e, ClientEvent::Invited(_)))
        .await;
    bob.c().accept_invitation(room).await.unwrap();
    let one = alice.c().send_text(room, "one").await.unwrap();
    let seen = events_until(&mut bob, "one", |e| is_text(e, "one")).await;
    assert_eq!(warnings(&seen), [], "an honest relay raises nothing");
    // The room's code, to compare in person, is the same on both sides.
    let code = alice.c().room_code(room).await.unwrap();
    assert_eq!(bob.c().room_code(room).await.unwrap(), code);
    assert_eq!(code.epoch, 2, "the invite, then bob's update after joining");
    (relay, alice, bob, room, one)
}

/// The relay drops alice's second message for bob: bob is told about the hole, and the
/// room keeps working both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_entry_is_a_gap() {
    let view = View::new(false);
    let (relay, mut alice, mut bob, room, one) = room_with_bob(view.clone()).await;

    view.hide(one.next());
    let two = alice.c().send_text(room, "two").await.unwrap();
    assert_eq!(two, one.next(), "nobody else wrote to the room");
    let three = alice.c().send_text(room, "three").await.unwrap();

    let seen = events_until(&mut bob, "three", |e| is_text(e, "three")).await;
    assert_eq!(
        warnings(&seen),
        [ConsistencyWarning::Gap {
            expected: two,
            got: three
        }]
    );
    assert!(
        seen.iter().any(|e| matches!(
            e,
            ClientEvent::Consistency { room: r, .. } if *r == room
        )),
        "the warning names the room"
    );
    assert!(view.withheld.load(Ordering::SeqCst) >= 1);
    assert_eq!(bob.texts(room).await, ["one", "three"]);
    assert_eq!(
        relay.room_record(room).head,
        three.0,
        "the relay stored all"
    );

    // The room keeps working. bob's hash from `three` on lacks "two", so his messages
    // vouch only for his history before the gap: alice is shown no false fork, and
    // nobody's messages are held (bob was told about the hole).
    bob.c().send_text(room, "four").await.unwrap();
    let seen = events_until(&mut alice, "four", |e| is_text(e, "four")).await;
    assert_eq!(warnings(&seen), []);
    alice.c().send_text(room, "five").await.unwrap();
    bob.wait_text("five").await;
    assert_eq!(alice.c().fork(room).await.unwrap(), None);
    assert_eq!(bob.c().fork(room).await.unwrap(), None);
    assert_eq!(bob.texts(room).await, ["one", "three", "four", "five"]);
    assert_eq!(
        alice.texts(room).await,
        ["one", "two", "three", "four", "five"]
    );
}

/// The relay drops alice's second message for bob and renumbers the rest, so bob's log
/// has no hole: alice and bob have different histories at the same seqs. alice's next
/// message carries her hash at the seq bob now uses for it, and bob's first message
/// afterwards carries his: both detect the fork, and nobody sees a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renumbered_history_is_a_fork() {
    let view = View::new(true);
    let (relay, mut alice, mut bob, room, one) = room_with_bob(view.clone()).await;

    view.hide(one.next());
    let two = alice.c().send_text(room, "two").await.unwrap();
    assert_eq!(two, one.next(), "nobody else wrote to the room");
    let three = alice.c().send_text(room, "three").await.unwrap();

    // bob gets "three" at seq `two`; its mark is alice's hash at `two` (after "two").
    let seen = events_until(&mut bob, "three", |e| is_text(e, "three")).await;
    assert_eq!(warnings(&seen), [ConsistencyWarning::Fork { seq: two }]);
    assert_eq!(bob.texts(room).await, ["one", "three"]);
    let at_bob = bob.c().rooms().await.unwrap();
    assert_eq!(at_bob[0].last_seq, two, "bob's log looks contiguous");
    assert_eq!(relay.room_record(room).head, three.0);

    // bob's message carries his hash at `two` (after "three"): alice sees the fork too,
    // once bob has acknowledged his.
    assert!(matches!(
        bob.c().send_text(room, "four").await,
        Err(ClientError::Forked { .. })
    ));
    bob.c().acknowledge_fork(room).await.unwrap();
    let four = bob.c().send_text(room, "four").await.unwrap();
    assert_eq!(four, three, "bob is told the renumbered seq");
    let seen = events_until(&mut alice, "four", |e| is_text(e, "four")).await;
    assert_eq!(warnings(&seen), [ConsistencyWarning::Fork { seq: two }]);
    assert_eq!(alice.texts(room).await, ["one", "two", "three", "four"]);
}

/// Hiding two entries and renumbering puts alice's mark beyond anything bob has seen at
/// that point of his log: a sender cannot have seen more of the log than the entry that
/// carries its message, so that too is a fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_from_the_future_is_a_fork() {
    let view = View::new(true);
    let (_relay, alice, mut bob, room, one) = room_with_bob(view.clone()).await;

    view.hide(one.next());
    view.hide(one.next().next());
    alice.c().send_text(room, "two").await.unwrap();
    let three = alice.c().send_text(room, "three").await.unwrap();
    alice.c().send_text(room, "four").await.unwrap();

    // bob gets "four" at seq `two`; its mark is alice's (three, hash).
    let seen = events_until(&mut bob, "four", |e| is_text(e, "four")).await;
    assert_eq!(warnings(&seen), [ConsistencyWarning::Fork { seq: three }]);
    assert_eq!(bob.texts(room).await, ["one", "four"]);
}

/// A quiet room split in two by the relay: bob is shown a history without alice's
/// "two", renumbered, and nobody writes again. One exchange of signed log heads (each
/// side sends one) shows the fork on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_partition_shows_in_an_exchange_of_heads() {
    let view = View::new(true);
    let (_relay, mut alice, mut bob, room, one) = room_with_bob(view.clone()).await;

    view.hide(one.next());
    alice.c().send_text(room, "two").await.unwrap();
    assert_eq!(alice.c().exchange_heads().await, 1);
    let seen = events_until(&mut bob, "a fork", |e| {
        matches!(e, ClientEvent::Consistency { .. })
    })
    .await;
    assert!(matches!(
        warnings(&seen)[..],
        [ConsistencyWarning::Fork { .. }]
    ));
    assert_eq!(bob.texts(room).await, ["one"], "a head is not a message");

    assert_eq!(bob.c().exchange_heads().await, 1);
    let seen = events_until(&mut alice, "a fork", |e| {
        matches!(e, ClientEvent::Consistency { .. })
    })
    .await;
    assert!(matches!(
        warnings(&seen)[..],
        [ConsistencyWarning::Fork { .. }]
    ));
    assert!(alice.c().fork(room).await.unwrap().is_some());
    assert!(bob.c().fork(room).await.unwrap().is_some());
}

/// The relay rewrites where the invitation's plaintext wrapper tells bob to start: past
/// the end of the log, or later than the truth so he would miss messages. Bob starts
/// where alice signed inside the Welcome instead, misses nothing, and his history agrees
/// with hers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cannot_choose_where_a_joiner_starts() {
    for forged in [Seq(u64::MAX), Seq(3)] {
        let view = View::new(false);
        *view.forged_start.lock().unwrap() = Some(forged);
        let relay = Relay::start().await;
        let mut alice = relay.user("alice").await;
        let mut bob = user_through(&relay, "bob", view.clone()).await;
        let room = alice.c().create_room("Family").await.unwrap();
        alice.c().invite(room, &h("bob")).await.unwrap();
        bob.wait_for("invitation", |e| matches!(e, ClientEvent::Invited(_)))
            .await;
        assert_eq!(
            view.readable_wrappers.load(Ordering::Relaxed),
            0,
            "the relay cannot read the Welcome's wrapper (sealed to bob), let alone change it"
        );
        // Sent after the invitation and before bob accepts: the real start is before it
        // (bob's client processes them, and is not shown them: he had not accepted).
        alice.c().send_text(room, "welcome, bob").await.unwrap();
        alice.c().send_text(room, "and hello").await.unwrap();
        bob.c().accept_invitation(room).await.unwrap();
        alice.c().send_text(room, "you are in").await.unwrap();
        let seen = events_until(&mut bob, "in", |e| is_text(e, "you are in")).await;
        assert_eq!(warnings(&seen), [], "forged start {forged:?}");
        assert_eq!(bob.texts(room).await, ["you are in"]);
        // Same history: bob's mark matches alice's log.
        bob.c().send_text(room, "thanks").await.unwrap();
        let seen = events_until(&mut alice, "thanks", |e| is_text(e, "thanks")).await;
        assert_eq!(warnings(&seen), []);
    }
}

/// Commits carry the committer's transcript mark too (in their authenticated data): a
/// history the relay rewrote shows at the next commit, even when nobody sends a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_carries_its_committers_mark() {
    let view = View::new(true);
    let (_relay, alice, mut bob, room, one) = room_with_bob(view.clone()).await;

    view.hide(one.next());
    let two = alice.c().send_text(room, "two").await.unwrap();
    alice
        .c()
        .set_topic(room, "a commit, not a message")
        .await
        .unwrap();
    let seen = events_until(&mut bob, "the topic", |e| {
        matches!(e, ClientEvent::TopicChanged { .. })
    })
    .await;
    assert_eq!(warnings(&seen), [ConsistencyWarning::Fork { seq: two }]);
    assert_eq!(bob.c().fork(room).await.unwrap(), Some(two));
}
