//! Hostile clients (issue 13): readers that stop reading, too many sessions of one
//! account. Each test runs the real relay on 127.0.0.1:0 with a real store and speaks
//! raw frames over real QUIC, then checks that an honest client is still served.

mod common;

use common::{cap, close_of, eventually, new_account, payload, Client, Identity, WAIT};
use hearth_protocol::{ErrorCode, Request, Response, RoomId, Seq};
use hearth_relay::server::close;
use hearth_relay::RunningRelay;

/// Entries in the large room, and their payload size: 6 MB, more than any queue, window
/// and socket buffer on the way.
const ENTRIES: u32 = 100;
const ENTRY_BYTES: usize = 60 * 1024;

/// A room of [`ENTRIES`] entries of [`ENTRY_BYTES`] each, written by `alice` (pipelined).
async fn large_room(alice: &mut Client) -> RoomId {
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    let mut ids = Vec::new();
    for tag in 0..ENTRIES {
        ids.push(
            alice
                .send(Request::Append {
                    room,
                    cap: cap(0),
                    payload: payload(tag, ENTRY_BYTES),
                })
                .await,
        );
    }
    for id in ids {
        assert!(matches!(
            alice.response(id).await,
            Ok(Response::Appended { .. })
        ));
    }
    room
}

/// A member whose QUIC stack grants the relay only a few KiB of flow credit: once that
/// is used, nothing more gets through until it reads (and it never does).
async fn stingy_member(relay: &RunningRelay, handle: &str) -> (Client, Identity) {
    let token = relay.relay().mint_invite(1, None).expect("invite");
    let id = Identity::new();
    let mut client = Client::connect_with(&relay.address(), |t| {
        t.stream_receive_window(16_384u32.into());
        t.receive_window(32_768u32.into());
    })
    .await;
    client
        .register(&id, Some(token), handle)
        .await
        .expect("registration");
    (client, id)
}

/// An honest member is served: reads the whole room from the store and appends.
async fn honest_member_is_served(relay: &RunningRelay, room: RoomId, handle: &str) {
    let (mut bob, _) = new_account(relay, handle).await;
    assert_eq!(bob.request(Request::Ping).await.unwrap(), Response::Pong);
    let mut from = Seq(1);
    let mut read = 0;
    while read < ENTRIES {
        match bob
            .request(Request::Read {
                room,
                cap: cap(0),
                from,
                limit: 1000,
            })
            .await
            .unwrap()
        {
            Response::Entries { entries, .. } => {
                assert!(!entries.is_empty());
                read += entries.len() as u32;
                from = entries.last().unwrap().seq.next();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    bob.append(room, cap(0), payload(7, 10)).await.unwrap();
}

/// A member subscribes to a large room, never reads, and keeps asking for more (reads
/// whose answers pile up behind the catch-up): its queue passes the bound, and the relay
/// closes it with the "not reading" code at once (the stall timer is an hour, so it is
/// the byte bound that acts). The bytes it held are given back, and others are served.
#[tokio::test]
async fn a_member_who_asks_without_reading_is_closed_at_the_byte_bound() {
    let (relay, _dir) = start(|c| {
        c.max_queued_bytes_per_connection = 256 * 1024;
        c.write_stall_secs = 3600;
    })
    .await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = large_room(&mut alice).await;

    let (mut mallory, _) = stingy_member(&relay, "mallory").await;
    let subscribe = mallory
        .send(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await;
    for _ in 0..8 {
        mallory
            .send(Request::Read {
                room,
                cap: cap(0),
                from: Seq(1),
                limit: 1000,
            })
            .await;
    }
    let _ = subscribe;
    let (code, reason) = close_of(&mallory.raw.conn).await;
    assert_eq!(code, close::NOT_READING, "{reason}");
    assert!(reason.contains("not reading"), "{reason}");

    honest_member_is_served(&relay, room, "bob").await;
    let metrics = relay.relay().metrics();
    assert!(metrics.slow_readers >= 1, "{metrics:?}");
    // Everything queued for mallory is released with the connection (alice and bob hold
    // nothing: they read everything).
    eventually("queued bytes released", || {
        relay.relay().metrics().queued_bytes == 0
    })
    .await;
    relay.shutdown().await.unwrap();
}

/// A member subscribes to a large room and never reads anything more, asking nothing:
/// the catch-up waits for room, so its queue stays bounded, and once it has read nothing
/// for `write_stall_secs` it is closed as not reading.
#[tokio::test]
async fn a_member_who_stops_reading_is_closed_after_the_stall_time() {
    let (relay, _dir) = start(|c| c.write_stall_secs = 1).await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = large_room(&mut alice).await;

    let (mut mallory, _) = stingy_member(&relay, "mallory").await;
    mallory
        .send(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await;
    let (code, reason) = close_of(&mallory.raw.conn).await;
    assert_eq!(code, close::NOT_READING, "{reason}");
    assert!(reason.contains("nothing read in time"), "{reason}");
    let max = relay.relay().config().max_queued_bytes_per_connection as u64;
    assert!(
        relay.relay().metrics().queued_bytes <= max,
        "never more than the bound queued"
    );

    honest_member_is_served(&relay, room, "bob").await;
    eventually("queued bytes released", || {
        relay.relay().metrics().queued_bytes == 0
    })
    .await;
    relay.shutdown().await.unwrap();
}

/// The re-authentication deadline fires while the relay's write to the connection is
/// blocked (the client grants no flow credit and reads nothing): the connection is
/// closed for not answering, not kept open by the blocked write.
#[tokio::test]
async fn re_authentication_is_enforced_while_a_write_is_blocked() {
    let (relay, _dir) = start(|c| {
        c.write_stall_secs = 3600;
        c.reauth_interval_secs = 1;
        c.reauth_grace_secs = 1;
    })
    .await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = large_room(&mut alice).await;

    let (mut mallory, _) = stingy_member(&relay, "mallory").await;
    mallory
        .send(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await;
    let (code, reason) = close_of(&mallory.raw.conn).await;
    assert_eq!(code, close::TIMEOUT, "{reason}");
    assert_eq!(reason, "re-authentication not answered in time");
    honest_member_is_served(&relay, room, "bob").await;
    relay.shutdown().await.unwrap();
}

/// One account may hold `max_sessions_per_account` connections; the next is refused at
/// `Auth` with a reason and closed, the open ones keep working, another account at the
/// same address is not affected, and a slot freed by a close can be used again.
#[tokio::test]
async fn an_account_over_its_session_limit_is_refused_and_told_why() {
    let (relay, _dir) = start(|c| c.max_sessions_per_account = 3).await;
    let address = relay.address();
    let (first, alice) = new_account(&relay, "alice").await;
    let mut open = vec![first];
    for _ in 1..3 {
        let mut c = Client::connect(&address).await;
        c.auth(&alice).await.expect("within the limit");
        open.push(c);
    }
    let mut extra = Client::connect(&address).await;
    let refused = extra.auth(&alice).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited);
    assert!(
        refused.message.contains("3 connections open"),
        "{}",
        refused.message
    );
    let (code, reason) = close_of(&extra.raw.conn).await;
    assert_eq!(code, close::REFUSED);
    assert!(reason.contains("too many connections"), "{reason}");
    assert_eq!(relay.relay().metrics().sessions_refused, 1);

    for c in &mut open {
        assert_eq!(c.request(Request::Ping).await.unwrap(), Response::Pong);
    }
    // Another account from the same address is not affected.
    let (mut bob, _) = new_account(&relay, "bob").await;
    assert_eq!(bob.request(Request::Ping).await.unwrap(), Response::Pong);

    // A session that ends frees its slot.
    let gone = open.pop().unwrap();
    gone.raw.conn.close(0u32.into(), b"done");
    drop(gone);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut again = Client::connect(&address).await;
        match again.auth(&alice).await {
            Ok(_) => break,
            Err(e) if e.code == ErrorCode::RateLimited => {
                // The relay has not noticed the close yet: wait for that, then retry.
                close_of(&again.raw.conn).await;
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    relay.shutdown().await.unwrap();
}

async fn start(
    tweak: impl FnOnce(&mut hearth_relay::RelayConfig),
) -> (RunningRelay, tempfile::TempDir) {
    common::start_relay(|c| {
        c.rate_burst = 10_000;
        c.rate_per_second = 10_000.0;
        tweak(c);
    })
    .await
}
