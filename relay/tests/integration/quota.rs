//! Quota holes (issue 13, items 8 and 9), over real QUIC against a relay with a real store:
//! empty objects cost what the relay keeps for them, per-account caps on rooms and public
//! listings, the retention sweep in batches (deleting epoch rows no capability can read
//! with), and a listing squatter who cannot hide another account's listing.

use crate::common;

use common::{cap, new_account, start_relay, Client};
use hearth_protocol::{ErrorCode, Request, Response, RoomId, Seq, WireError};
use hearth_relay::service::unix_now;
use hearth_relay::store::{entry_cost, object_cost, ROOM_OVERHEAD_BYTES};

fn refused(r: Result<Response, WireError>) -> WireError {
    match r {
        Err(e) => e,
        Ok(other) => panic!("expected a refusal, got {other:?}"),
    }
}

async fn create(c: &mut Client, room: RoomId) -> Result<Response, WireError> {
    c.request(Request::CreateRoom {
        room,
        cap_hash: cap(0).hash(),
        retention_secs: None,
        admin: hearth_protocol::AdminKey([0; 32]),
    })
    .await
}

async fn append(
    c: &mut Client,
    room: RoomId,
    n: u8,
    payload: Vec<u8>,
) -> Result<Response, WireError> {
    c.request(Request::Append {
        room,
        cap: cap(n),
        payload,
    })
    .await
}

async fn list(c: &mut Client, room: RoomId, name: &str) -> Result<Response, WireError> {
    c.request(Request::PublishRoom {
        room,
        cap: cap(0),
        public_name: name.into(),
        group_info: vec![1; 100],
        epoch: 0,
        proof: None,
    })
    .await
}

/// Zero-length appends are charged what the relay keeps around them, to their room, so a
/// room's quota runs out after a known number of them; the author pays only for the room
/// itself.
#[tokio::test]
async fn empty_appends_are_charged_to_their_room_and_hit_its_quota() {
    let per_entry = entry_cost(hearth_protocol::EntryKind::Message, 0);
    let (relay, _dir) = start_relay(|c| {
        c.quota_bytes_per_room = 10 * per_entry;
        c.quota_bytes_per_account = ROOM_OVERHEAD_BYTES;
    })
    .await;
    let (mut mallory, mallory_id) = new_account(&relay, "mallory").await;
    let room = RoomId::random();
    create(&mut mallory, room).await.expect("room created");
    for n in 0..10 {
        match append(&mut mallory, room, 0, Vec::new()).await {
            Ok(Response::Appended { .. }) => {}
            other => panic!("empty append {n} refused: {other:?}"),
        }
    }
    let e = refused(append(&mut mallory, room, 0, Vec::new()).await);
    assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e}");
    assert!(e.message.contains("quota_bytes_per_room"), "{e}");
    let record = relay
        .relay()
        .store()
        .account(&mallory_id.account())
        .unwrap()
        .unwrap();
    assert_eq!(record.used_bytes, ROOM_OVERHEAD_BYTES);
    assert_eq!(
        relay.relay().store().room(&room).unwrap().unwrap().bytes,
        10 * per_entry
    );
    // A room alone is charged to its creator: a second one no longer fits.
    let e = refused(create(&mut mallory, RoomId::random()).await);
    assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e}");
    relay.shutdown().await.unwrap();
}

/// Empty deposits fill their recipient's inbox (the relay stores no sender, so whoever
/// deposits meets the same bound), and picking them up makes room again.
#[tokio::test]
async fn empty_deposits_fill_the_recipients_inbox_until_picked_up() {
    // An empty entry is stored as its time (a 5-byte varint) and an empty payload.
    let quota = 3 * object_cost(6);
    let (relay, _dir) = start_relay(|c| c.inbox_bytes_per_account = quota).await;
    let (mut mallory, mallory_id) = new_account(&relay, "mallory").await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut bob, bob_id) = new_account(&relay, "bob").await;
    let deposit = Request::Deposit {
        to: bob_id.account(),
        payload: Vec::new(),
    };
    for _ in 0..3 {
        mallory.request(deposit.clone()).await.expect("deposited");
    }
    for who in [&mut mallory, &mut alice] {
        let e = refused(who.request(deposit.clone()).await);
        assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e}");
        assert!(e.message.contains("inbox_bytes_per_account"), "{e}");
    }
    let store = relay.relay().store();
    assert_eq!(
        store
            .account(&mallory_id.account())
            .unwrap()
            .unwrap()
            .used_bytes,
        0,
        "the depositor pays nothing"
    );
    let ids = match bob
        .request(Request::FetchInbox {
            after: 0,
            limit: 10,
        })
        .await
    {
        Ok(Response::Inbox(entries)) => entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(ids.len(), 3);
    bob.request(Request::AckInbox { ids }).await.expect("acked");
    alice.request(deposit).await.expect("picked up: fits again");
    relay.shutdown().await.unwrap();
}

/// A depositor is rate-limited in memory: past its burst it is refused, whoever it sends
/// to.
#[tokio::test]
async fn deposits_are_rate_limited_per_depositor() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let (mut mallory, _) = new_account(&relay, "mallory").await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (_bob, bob_id) = new_account(&relay, "bob").await;
    let (_carol, carol_id) = new_account(&relay, "carol").await;
    let deposit = |to: &common::Identity| Request::Deposit {
        to: to.account(),
        payload: vec![1; 10],
    };
    let mut refused_at = None;
    for n in 0..hearth_relay::service::DEPOSIT_BURST as usize + 5 {
        let to = if n % 2 == 0 { &bob_id } else { &carol_id };
        if let Err(e) = mallory.request(deposit(to)).await {
            assert_eq!(e.code, ErrorCode::RateLimited, "{e}");
            refused_at = Some(n);
            break;
        }
    }
    let refused_at = refused_at.expect("the burst runs out");
    assert!(refused_at >= hearth_relay::service::DEPOSIT_BURST as usize - 1);
    alice
        .request(deposit(&bob_id))
        .await
        .expect("others still deposit");
    relay.shutdown().await.unwrap();
}

/// One account may create only so many rooms; the refusal says which limit and what to
/// do, and other accounts are not affected.
#[tokio::test]
async fn rooms_per_account_are_capped_with_a_clear_refusal() {
    let (relay, _dir) = start_relay(|c| c.max_rooms_per_account = 3).await;
    let (mut mallory, _) = new_account(&relay, "mallory").await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    for _ in 0..3 {
        create(&mut mallory, RoomId::random())
            .await
            .expect("created");
    }
    let e = refused(create(&mut mallory, RoomId::random()).await);
    assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e}");
    assert!(e.message.contains("max_rooms_per_account"), "{e}");
    assert!(e.message.contains("3 rooms"), "{e}");
    let room = RoomId::random();
    create(&mut alice, room)
        .await
        .expect("others still create rooms");
    append(&mut alice, room, 0, b"hi".to_vec())
        .await
        .expect("and use them");
    relay.shutdown().await.unwrap();
}

/// One account may list only so many rooms a day, counted in memory (a listing names no
/// account in the store): past it, it is refused, whichever room it lists.
#[tokio::test]
async fn public_listings_per_account_are_rate_limited_with_a_clear_refusal() {
    let (relay, _dir) = start_relay(|c| c.max_public_rooms_per_account = 2).await;
    let (mut mallory, _) = new_account(&relay, "mallory").await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let rooms: Vec<RoomId> = (0..3).map(|_| RoomId::random()).collect();
    for room in &rooms {
        create(&mut mallory, *room).await.expect("created");
    }
    list(&mut mallory, rooms[0], "a").await.expect("listed");
    list(&mut mallory, rooms[1], "b").await.expect("listed");
    let e = refused(list(&mut mallory, rooms[2], "c").await);
    assert_eq!(e.code, ErrorCode::RateLimited, "{e}");
    assert!(e.message.contains("max_public_rooms_per_account"), "{e}");
    // Unlisting does not give the day's listings back.
    mallory
        .request(Request::UnpublishRoom {
            room: rooms[0],
            cap: cap(0),
            proof: None,
        })
        .await
        .expect("unlisted");
    let e = refused(list(&mut mallory, rooms[2], "c").await);
    assert_eq!(e.code, ErrorCode::RateLimited, "{e}");
    // Another account is not affected.
    let family = RoomId::random();
    create(&mut alice, family).await.expect("created");
    list(&mut alice, family, "family").await.expect("listed");
    relay.shutdown().await.unwrap();
}

/// A flood of listings from many accounts stops at the directory's size
/// (`max_public_rooms`), with a refusal that names the limit; making one private again
/// makes room. The bound is on the directory, not on anyone's account.
#[tokio::test]
async fn a_listing_flood_stops_at_the_directorys_size() {
    let (relay, _dir) = start_relay(|c| c.max_public_rooms = 3).await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let mut floods = Vec::new();
    for n in 0..3 {
        let (mut mallory, _) = new_account(&relay, &format!("mallory{n}")).await;
        let room = RoomId::random();
        create(&mut mallory, room).await.expect("created");
        list(&mut mallory, room, "aa squat").await.expect("listed");
        floods.push((mallory, room));
    }
    let family = RoomId::random();
    create(&mut alice, family).await.expect("created");
    let e = refused(list(&mut alice, family, "family").await);
    assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e}");
    assert!(e.message.contains("max_public_rooms"), "{e}");
    // Renaming a listed room is no new listing.
    let (mallory, room) = &mut floods[0];
    list(mallory, *room, "aa squat 2").await.expect("renamed");
    mallory
        .request(Request::UnpublishRoom {
            room: *room,
            cap: cap(0),
            proof: None,
        })
        .await
        .expect("unlisted");
    list(&mut alice, family, "family")
        .await
        .expect("room again");
    relay.shutdown().await.unwrap();
}

/// The retention sweep deletes a room's expired entries and the rows of its ended epochs,
/// in several small batches; the room's members (holding the current capability) go on
/// writing with contiguous sequence numbers, an old epoch's capability is refused, and
/// everyone else is served as before.
#[tokio::test]
async fn the_sweep_empties_rooms_and_their_epochs_in_batches_and_the_relay_works_on() {
    let (relay, _dir) = start_relay(|c| {
        c.rate_per_second = 100_000.0;
        c.rate_burst = 100_000;
    })
    .await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut bob, _) = new_account(&relay, "bob").await;
    // Enough rooms that one scan cannot cover them all.
    let rooms: Vec<RoomId> = (0..(hearth_relay::service::SWEEP_SCAN_ROWS / 4))
        .map(|_| RoomId::random())
        .collect();
    let mut pending = Vec::new();
    for room in &rooms {
        pending.push(
            alice
                .send(Request::CreateRoom {
                    room: *room,
                    cap_hash: cap(0).hash(),
                    retention_secs: None,
                    admin: hearth_protocol::AdminKey([0; 32]),
                })
                .await,
        );
        for n in 0..2u8 {
            pending.push(
                alice
                    .send(Request::Commit {
                        room: *room,
                        cap: cap(n),
                        next_cap_hash: cap(n + 1).hash(),
                        payload: vec![n],
                        admins: None,
                    })
                    .await,
            );
        }
        pending.push(
            alice
                .send(Request::Append {
                    room: *room,
                    cap: cap(2),
                    payload: b"old news".to_vec(),
                })
                .await,
        );
    }
    for id in pending {
        alice.response(id).await.expect("stored");
    }
    let store = relay.relay().store().clone();
    let room_full = store.room(&rooms[0]).unwrap().unwrap().bytes;
    assert!(store
        .access(&rooms[0], &cap(0).hash())
        .unwrap()
        .unwrap()
        .1
        .is_ok());

    // Bob's room is written after the relay's retention has passed for alice's.
    let later = unix_now() + relay.relay().config().retention_secs + 60;
    let totals = relay.relay().sweep(later).await.expect("sweep ran");
    assert_eq!(totals.entries, rooms.len() as u64 * 3);
    assert_eq!(totals.epochs, rooms.len() as u64 * 2);
    assert!(totals.batches > 1, "one batch did everything: {totals:?}");
    // Nothing left to do.
    let again = relay.relay().sweep(later).await.expect("sweep ran");
    assert_eq!((again.entries, again.epochs, again.batches), (0, 0, 0));

    // The rooms got back what their entries took; alice was only ever charged for the
    // rooms themselves.
    let alice_record = store
        .account_by_handle(&hearth_protocol::Handle::new("alice").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        alice_record.used_bytes,
        rooms.len() as u64 * ROOM_OVERHEAD_BYTES
    );
    assert!(room_full > 0);
    for room in &rooms {
        let record = store.room(room).unwrap().unwrap();
        assert_eq!(
            (record.first, record.head, record.bytes),
            (4, 3, 0),
            "emptied"
        );
        for n in 0..2 {
            let (_, access) = store.access(room, &cap(n).hash()).unwrap().unwrap();
            assert_eq!(access.unwrap_err().code, ErrorCode::Forbidden);
        }
    }
    // An old epoch's capability reads nothing and is told so.
    let e = refused(
        alice
            .request(Request::Read {
                room: rooms[0],
                cap: cap(0),
                from: Seq(1),
                limit: 10,
            })
            .await,
    );
    assert_eq!(e.code, ErrorCode::Forbidden);
    // The members go on where the log stopped.
    match append(&mut alice, rooms[0], 2, b"back".to_vec()).await {
        Ok(Response::Appended { seq }) => assert_eq!(seq, Seq(4)),
        other => panic!("unexpected {other:?}"),
    }
    // And the relay serves everyone else.
    let room = RoomId::random();
    create(&mut bob, room).await.expect("created");
    append(&mut bob, room, 0, b"hello".to_vec())
        .await
        .expect("appended");
    relay.shutdown().await.unwrap();
}
