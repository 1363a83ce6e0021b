//! Unit tests of [`super::RedbStore`]: capability rotation, quotas, invites, batches.

use super::*;
use crate::store::{LISTING_OVERHEAD_BYTES, ROTATION_COOLDOWN_SECS};

/// The admin pseudonym rooms are created with in these tests.
const ADMIN: AdminKey = AdminKey([0xad; 32]);

fn handle(s: &str) -> Handle {
    Handle::new(s).expect("test handle is valid")
}

fn one(store: &RedbStore, op: WriteOp) -> OpResult {
    store.apply(vec![op]).expect("store works").remove(0)
}

fn register(store: &RedbStore, key: u8, name: &str) -> AccountKey {
    let account = AccountKey([key; 32]);
    one(
        store,
        WriteOp::Register {
            account,
            handle: handle(name),
            invite: None,
            open: true,
            now: 1,
        },
    )
    .expect("registered");
    account
}

/// Creates `room` at time 1 with the capability hash `cap`, admin [`ADMIN`] and no quota.
fn create_room(
    store: &RedbStore,
    room: RoomId,
    cap: CapHash,
    creator: AccountKey,
    retention_secs: Option<u64>,
) {
    one(
        store,
        WriteOp::CreateRoom {
            room,
            cap_hash: cap,
            retention_secs,
            now: 1,
            creator,
            admin: ADMIN,
            quota: u64::MAX,
            max_rooms: u64::MAX,
        },
    )
    .expect("room created");
}

fn append(
    store: &RedbStore,
    room: RoomId,
    cap: CapHash,
    author: AccountKey,
    next: Option<CapHash>,
    now: u64,
) -> OpResult {
    append_within(store, room, cap, author, next, now, u64::MAX)
}

/// [`append`] under a quota of `quota` bytes.
fn append_within(
    store: &RedbStore,
    room: RoomId,
    cap: CapHash,
    _author: AccountKey,
    next: Option<CapHash>,
    now: u64,
    quota: u64,
) -> OpResult {
    one(
        store,
        WriteOp::Append {
            room,
            cap_hash: cap,
            payload: vec![7; 10],
            next_cap_hash: next,
            admins: None,
            now,
            room_quota: quota,
        },
    )
}

#[test]
fn caps_rotate_and_old_epochs_end_at_their_commit() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let room = RoomId([9; 16]);
    let (c0, c1) = (CapHash([0; 32]), CapHash([1; 32]));
    create_room(&store, room, c0, alice, None);
    assert!(append(&store, room, c0, alice, None, 1).is_ok());
    assert!(append(&store, room, c0, alice, Some(c1), 1).is_ok());
    assert_eq!(
        append(&store, room, c0, alice, None, 1).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    assert_eq!(
        append(&store, room, c0, alice, Some(CapHash([5; 32])), 1)
            .unwrap_err()
            .code,
        ErrorCode::StaleEpoch
    );
    assert_eq!(
        append(&store, room, CapHash([7; 32]), alice, None, 1)
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert!(append(&store, room, c1, alice, None, 1).is_ok());
    let (record, access) = store.access(&room, &c0).unwrap().unwrap();
    assert_eq!(access.unwrap(), Access::Ended { end: Seq(2) });
    assert_eq!(record.head, 3);
    let (_, access) = store.access(&room, &c1).unwrap().unwrap();
    assert_eq!(access.unwrap(), Access::Current);
}

#[test]
fn a_room_is_charged_for_its_log_and_refunded_by_the_sweep() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let room = RoomId([9; 16]);
    let c0 = CapHash([0; 32]);
    create_room(&store, room, c0, alice, Some(10));
    // Each 10-byte message with what the relay keeps around it.
    let per = crate::store::entry_cost(EntryKind::Message, 10);
    let quota = 100 * per;
    for t in 0..100 {
        append_within(&store, room, c0, alice, None, t, quota).unwrap();
    }
    assert_eq!(
        append_within(&store, room, c0, alice, None, 100, quota)
            .unwrap_err()
            .code,
        ErrorCode::QuotaExceeded
    );
    assert_eq!(store.room(&room).unwrap().unwrap().bytes, quota);
    // The author pays for the room's record only, never for what is written in it.
    assert_eq!(
        store.account(&alice).unwrap().unwrap().used_bytes,
        ROOM_OVERHEAD_BYTES
    );
    let swept = one(
        &store,
        WriteOp::Sweep {
            now: 60,
            retention_secs: 1000,
            max_deletions: 10_000,
        },
    )
    .unwrap();
    assert_eq!(
        swept,
        Applied::Swept {
            entries: 50,
            inbox: 0,
            listings: 0,
            epochs: 0,
        }
    );
    assert_eq!(store.room(&room).unwrap().unwrap().bytes, 50 * per);
    let entries = store.entries(&room, Seq(1), Seq(100), 1000).unwrap();
    assert_eq!(entries.first().unwrap().seq, Seq(51));
    assert_eq!(entries.len(), 50);
    assert_eq!(
        append_within(&store, room, c0, alice, None, 100, quota).unwrap(),
        Applied::Appended {
            room,
            entry: Entry {
                seq: Seq(101),
                kind: EntryKind::Message,
                time: 100,
                payload: vec![7; 10],
                next_cap_hash: None,
            },
            ended: None,
        }
    );
}

/// One batch of appends to two rooms in turn, a refusal for the room's quota, a commit
/// and a sweep: each op sees the room as the ops before it in the batch left it (the
/// record of a room taking messages in a row is written once, at the end of the run).
#[test]
fn a_batch_of_appends_to_rooms_in_turn_keeps_every_room_record_right() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let (a, b) = (RoomId([1; 16]), RoomId([2; 16]));
    let (c0, c1) = (CapHash([0; 32]), CapHash([1; 32]));
    for room in [a, b] {
        create_room(&store, room, c0, alice, Some(10));
    }
    let per = crate::store::entry_cost(EntryKind::Message, 10);
    let message = |room, cap, now, quota| WriteOp::Append {
        room,
        cap_hash: cap,
        payload: vec![7; 10],
        next_cap_hash: None,
        admins: None,
        now,
        room_quota: quota,
    };
    let ops = vec![
        message(a, c0, 1, u64::MAX),
        message(a, c0, 1, u64::MAX),
        message(b, c0, 1, u64::MAX),
        message(a, c0, 1, u64::MAX),
        // Room b holds one entry: a second does not fit a quota of one.
        message(b, c0, 1, per),
        WriteOp::Append {
            room: a,
            cap_hash: c0,
            payload: vec![7; 10],
            next_cap_hash: Some(c1),
            admins: None,
            now: 1,
            room_quota: u64::MAX,
        },
        message(a, c0, 1, u64::MAX),
        message(a, c1, 100, u64::MAX),
        // Everything written at time 1 is past retention at 60: the sweep must see the
        // four entries of a (the commit with them) and the one of b, with their charges.
        WriteOp::Sweep {
            now: 60,
            retention_secs: 10,
            max_deletions: 10_000,
        },
        message(b, c0, 100, u64::MAX),
    ];
    let results = store.apply(ops).unwrap();
    let seqs: Vec<Option<u64>> = results
        .iter()
        .map(|r| match r {
            Ok(Applied::Appended { entry, .. }) => Some(entry.seq.0),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        [
            Some(1),
            Some(2),
            Some(1),
            Some(3),
            None,
            Some(4),
            None,
            Some(5),
            None,
            Some(2)
        ]
    );
    assert_eq!(
        results[4].as_ref().unwrap_err().code,
        ErrorCode::QuotaExceeded
    );
    assert_eq!(results[6].as_ref().unwrap_err().code, ErrorCode::StaleEpoch);
    assert!(
        matches!(results[8], Ok(Applied::Swept { entries: 5, .. })),
        "{:?}",
        results[8]
    );
    let (ra, rb) = (
        store.room(&a).unwrap().unwrap(),
        store.room(&b).unwrap().unwrap(),
    );
    assert_eq!((ra.head, ra.first, ra.current), (5, 5, c1));
    assert_eq!((rb.head, rb.first), (2, 2));
    assert_eq!(ra.bytes, per, "only a's message at time 100 is left");
    assert_eq!(rb.bytes, per);
    assert_eq!(store.entries(&a, Seq(1), Seq(10), 100).unwrap().len(), 1);
}

#[test]
fn invites_are_single_use_and_expire() {
    let store = RedbStore::in_memory().unwrap();
    let hash = [3; 32];
    one(
        &store,
        WriteOp::MintInvite {
            invite: InviteRecord {
                hash,
                uses_left: 1,
                uses: 1,
                created: 0,
                expires: Some(100),
            },
        },
    )
    .unwrap();
    let reg = |key: u8, name: &str, now: u64| {
        one(
            &store,
            WriteOp::Register {
                account: AccountKey([key; 32]),
                handle: handle(name),
                invite: Some(hash),
                open: false,
                now,
            },
        )
    };
    assert_eq!(reg(1, "a", 200).unwrap_err().code, ErrorCode::InviteExpired);
    assert!(reg(1, "a", 50).is_ok());
    assert_eq!(reg(2, "b", 50).unwrap_err().code, ErrorCode::InviteSpent);
    let no_invite = one(
        &store,
        WriteOp::Register {
            account: AccountKey([4; 32]),
            handle: handle("c"),
            invite: None,
            open: false,
            now: 1,
        },
    );
    assert_eq!(no_invite.unwrap_err().code, ErrorCode::InviteRequired);
}

#[test]
fn a_refused_op_in_a_batch_leaves_the_others() {
    let store = RedbStore::in_memory().unwrap();
    let reg = |key: u8, name: &str| WriteOp::Register {
        account: AccountKey([key; 32]),
        handle: handle(name),
        invite: None,
        open: true,
        now: 1,
    };
    let results = store
        .apply(vec![reg(1, "a"), reg(2, "a"), reg(3, "c")])
        .unwrap();
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().code,
        ErrorCode::HandleTaken
    );
    assert!(results[2].is_ok());
    assert_eq!(store.accounts().unwrap().len(), 2);
}

#[test]
fn key_packages_are_consumed_once_and_a_used_last_resort_is_reported() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    one(
        &store,
        WriteOp::PublishKeyPackages {
            account: alice,
            packages: vec![vec![1], vec![2]],
            last_resort: Some(vec![9]),
            quota: 1000,
            max_stock: u64::MAX,
        },
    )
    .unwrap();
    assert_eq!(store.key_package_stock(&alice).unwrap(), (2, true));
    let take = || match one(
        &store,
        WriteOp::TakeKeyPackage {
            handle: handle("alice"),
        },
    )
    .unwrap()
    {
        Applied::KeyPackage { package, .. } => package,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(take(), vec![1]);
    assert_eq!(take(), vec![2]);
    assert_eq!(take(), vec![9]);
    assert_eq!(take(), vec![9]);
    // Still handed out, but reported as used until its owner publishes a new one.
    assert_eq!(store.key_package_stock(&alice).unwrap(), (0, false));
    one(
        &store,
        WriteOp::PublishKeyPackages {
            account: alice,
            packages: vec![],
            last_resort: Some(vec![8]),
            quota: 1000,
            max_stock: u64::MAX,
        },
    )
    .unwrap();
    assert_eq!(store.key_package_stock(&alice).unwrap(), (0, true));
    assert_eq!(take(), vec![8]);
}

fn listing(_publisher: AccountKey, epoch: u64, published: u64, len: usize) -> ListingRecord {
    ListingRecord {
        public_name: "board".into(),
        group_info: vec![3; len],
        epoch,
        published,
    }
}

fn publish(store: &RedbStore, room: RoomId, cap: CapHash, l: ListingRecord) -> OpResult {
    one(
        store,
        WriteOp::PublishRoom {
            room,
            cap_hash: cap,
            listing: l,
            admin: Some(ADMIN),
            room_quota: u64::MAX,
            max_listings: u64::MAX,
        },
    )
}

fn join(
    store: &RedbStore,
    room: RoomId,
    epoch: u64,
    _author: AccountKey,
    next: CapHash,
) -> OpResult {
    one(
        store,
        WriteOp::JoinPublic {
            room,
            epoch,
            payload: vec![8; 10],
            next_cap_hash: next,
            now: 5,
            room_quota: u64::MAX,
        },
    )
}

#[test]
fn listings_follow_the_epoch_and_charge_their_room() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let dave = register(&store, 2, "dave");
    let room = RoomId([9; 16]);
    let (c0, c1, c2) = (CapHash([0; 32]), CapHash([1; 32]), CapHash([2; 32]));
    create_room(&store, room, c0, alice, None);
    // Not listed: joining is refused as for an unknown room.
    assert_eq!(
        join(&store, room, 0, dave, c1).unwrap_err().code,
        ErrorCode::UnknownRoom
    );
    assert_eq!(
        publish(&store, room, c0, listing(alice, 1, 1, 100))
            .unwrap_err()
            .code,
        ErrorCode::StaleEpoch,
        "the epoch index must be the current one"
    );
    assert_eq!(
        publish(&store, room, CapHash([7; 32]), listing(alice, 0, 1, 100))
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    // Not an admin the relay lists: refused.
    let mut other = listing(alice, 0, 1, 100);
    other.public_name = "other".into();
    let refused = one(
        &store,
        WriteOp::PublishRoom {
            room,
            cap_hash: c0,
            listing: other,
            admin: Some(AdminKey([1; 32])),
            room_quota: u64::MAX,
            max_listings: u64::MAX,
        },
    );
    assert_eq!(refused.unwrap_err().code, ErrorCode::Forbidden);
    publish(&store, room, c0, listing(alice, 0, 1, 100)).unwrap();
    // The room pays for the listing ("board" is 5 bytes); its creator only for the room.
    let used = |account| store.account(&account).unwrap().unwrap().used_bytes;
    let room_bytes = || store.room(&room).unwrap().unwrap().bytes;
    assert_eq!(used(alice), ROOM_OVERHEAD_BYTES);
    assert_eq!(room_bytes(), 105 + LISTING_OVERHEAD_BYTES);
    publish(&store, room, c0, listing(alice, 0, 2, 50)).unwrap();
    assert_eq!(room_bytes(), 55 + LISTING_OVERHEAD_BYTES);
    let (l, index) = store.listing(&room).unwrap().unwrap();
    assert_eq!((l.published, index), (2, 0));

    // A member's commit makes the listing stale.
    append(&store, room, c0, alice, Some(c1), 3).unwrap();
    assert_eq!(store.listing(&room).unwrap().unwrap().1, 1);
    assert_eq!(
        join(&store, room, 0, dave, c2).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    assert_eq!(
        join(&store, room, 1, dave, c2).unwrap_err().code,
        ErrorCode::StaleEpoch,
        "the listing is of an older epoch"
    );
    assert_eq!(
        publish(&store, room, c0, listing(alice, 1, 4, 50))
            .unwrap_err()
            .code,
        ErrorCode::StaleEpoch
    );
    publish(&store, room, c1, listing(alice, 1, 4, 50)).unwrap();
    match join(&store, room, 1, dave, c2).unwrap() {
        Applied::Appended { entry, ended, .. } => {
            assert_eq!(entry.kind, EntryKind::Commit);
            assert_eq!(ended, Some(c1));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The room pays for the joiner's commit, not the joiner.
    assert_eq!(used(dave), 0);
    assert!(store.room(&room).unwrap().unwrap().bytes >= entry_cost(EntryKind::Commit, 10));
    assert_eq!(
        append(&store, room, c1, alice, None, 5).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    assert!(append(&store, room, c2, dave, None, 5).is_ok());
    assert_eq!(store.listing(&room).unwrap().unwrap().1, 2);

    // Unpublishing needs the current cap and refunds.
    assert_eq!(
        one(
            &store,
            WriteOp::UnpublishRoom {
                room,
                cap_hash: c1,
                admin: Some(ADMIN),
            }
        )
        .unwrap_err()
        .code,
        ErrorCode::StaleEpoch
    );
    one(
        &store,
        WriteOp::UnpublishRoom {
            room,
            cap_hash: c2,
            admin: Some(ADMIN),
        },
    )
    .unwrap();
    assert!(store.listing(&room).unwrap().is_none());
    // Only the room is left on her account; the room has only its log left.
    assert_eq!(used(alice), ROOM_OVERHEAD_BYTES);
    assert_eq!(
        room_bytes(),
        2 * entry_cost(EntryKind::Commit, 10) + entry_cost(EntryKind::Message, 10)
    );
}

#[test]
fn listings_expire_with_their_room() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let c0 = CapHash([0; 32]);
    for (n, retention) in [(1u8, Some(10)), (2, None)] {
        let room = RoomId([n; 16]);
        one(
            &store,
            WriteOp::CreateRoom {
                room,
                cap_hash: c0,
                retention_secs: retention,
                now: 1,
                creator: alice,
                admin: ADMIN,
                quota: u64::MAX,
                max_rooms: u64::MAX,
            },
        )
        .unwrap();
        publish(&store, room, c0, listing(alice, 0, 1, 10)).unwrap();
    }
    assert_eq!(store.listings(10).unwrap().len(), 2);
    let swept = one(
        &store,
        WriteOp::Sweep {
            now: 100,
            retention_secs: 1000,
            max_deletions: 100,
        },
    )
    .unwrap();
    assert_eq!(
        swept,
        Applied::Swept {
            entries: 0,
            inbox: 0,
            listings: 1,
            epochs: 0,
        }
    );
    let left = store.listings(10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, RoomId([2; 16]));
    // Listings are their rooms' to pay: the swept one's room has its bytes back.
    assert_eq!(
        store.account(&alice).unwrap().unwrap().used_bytes,
        2 * ROOM_OVERHEAD_BYTES
    );
    assert_eq!(store.room(&RoomId([1; 16])).unwrap().unwrap().bytes, 0);
    assert_eq!(
        store.room(&RoomId([2; 16])).unwrap().unwrap().bytes,
        15 + LISTING_OVERHEAD_BYTES
    );
}

#[test]
fn old_rooms_count_their_epochs() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let room = RoomId([9; 16]);
    create_room(&store, room, CapHash([0; 32]), alice, None);
    for n in 0..3u8 {
        append(
            &store,
            room,
            CapHash([n; 32]),
            alice,
            Some(CapHash([n + 1; 32])),
            1,
        )
        .unwrap();
    }
    // Forget the counter, as in a store written before it existed.
    let txn = store.db.begin_write().unwrap();
    txn.open_table(COMMITS)
        .unwrap()
        .remove(room.0.as_slice())
        .unwrap();
    txn.commit().unwrap();
    publish(&store, room, CapHash([3; 32]), listing(alice, 3, 1, 10)).unwrap();
    append(
        &store,
        room,
        CapHash([3; 32]),
        alice,
        Some(CapHash([4; 32])),
        1,
    )
    .unwrap();
    assert_eq!(store.listing(&room).unwrap().unwrap().1, 4);
}

#[test]
fn a_rotation_moves_the_account_and_retires_the_old_key() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let bob = register(&store, 2, "bob");
    for payload in [vec![1; 10], vec![2; 20]] {
        one(
            &store,
            WriteOp::Deposit {
                to: alice,
                payload,
                now: 5,
                inbox_quota: 1000,
            },
        )
        .expect("deposited");
    }
    one(
        &store,
        WriteOp::PublishKeyPackages {
            account: alice,
            packages: vec![vec![3; 30]],
            last_resort: Some(vec![4; 40]),
            quota: 1000,
            max_stock: u64::MAX,
        },
    )
    .expect("published");
    let used_before = store.account(&alice).unwrap().unwrap().used_bytes;

    let new = AccountKey([7; 32]);
    let rotation = KeyRotation {
        from: alice,
        to: new,
        signature: hearth_protocol::Signature([0; 64]),
    };
    let Ok(Applied::Account(record)) = one(&store, WriteOp::RotateKey { rotation, now: 10 }) else {
        panic!("rotation refused");
    };
    assert_eq!((record.account, record.handle.as_str()), (new, "alice"));
    assert_eq!(
        store
            .account_by_handle(&handle("alice"))
            .unwrap()
            .unwrap()
            .account,
        new
    );
    assert!(store.account(&alice).unwrap().is_none());
    // The inbox moved with its ids; the KeyPackages (70 bytes) were dropped and freed.
    let inbox = store.inbox(&new, 0, 10).unwrap();
    assert_eq!(
        inbox.iter().map(|e| e.payload.len()).collect::<Vec<_>>(),
        [10, 20]
    );
    assert!(store.inbox(&alice, 0, 10).unwrap().is_empty());
    assert_eq!(store.key_package_stock(&new).unwrap(), (0, false));
    assert_eq!(
        record.used_bytes,
        used_before - object_cost(30) - object_cost(40)
    );
    assert_eq!(store.rotations(&handle("alice")).unwrap().len(), 1);

    // The old key can neither sign in nor register again; nobody else can take the new.
    let refused = one(
        &store,
        WriteOp::Authenticate {
            account: alice,
            now: 9,
        },
    )
    .unwrap_err();
    assert_eq!(refused.code, ErrorCode::AuthFailed);
    assert!(refused.message.contains("rotation"), "{}", refused.message);
    let again = one(
        &store,
        WriteOp::Register {
            account: alice,
            handle: handle("mallory"),
            invite: None,
            open: true,
            now: 9,
        },
    );
    assert_eq!(again.unwrap_err().code, ErrorCode::AlreadyRegistered);
    let taken = KeyRotation {
        from: bob,
        to: new,
        signature: hearth_protocol::Signature([0; 64]),
    };
    let refused = one(
        &store,
        WriteOp::RotateKey {
            rotation: taken,
            now: 10,
        },
    )
    .unwrap_err();
    assert_eq!(refused.code, ErrorCode::AlreadyRegistered);

    // One rotation an hour per account; the next one after that.
    let again = |now| {
        let rotation = KeyRotation {
            from: new,
            to: AccountKey([8; 32]),
            signature: hearth_protocol::Signature([0; 64]),
        };
        one(&store, WriteOp::RotateKey { rotation, now })
    };
    assert_eq!(
        again(10 + ROTATION_COOLDOWN_SECS - 1).unwrap_err().code,
        ErrorCode::RateLimited
    );
    assert!(again(10 + ROTATION_COOLDOWN_SECS).is_ok());
    assert_eq!(store.rotations(&handle("alice")).unwrap().len(), 2);
}

/// Issue 13, item 7: a flood of refusals from many addresses cannot push older audit rows
/// out, fills a bounded number of rows of its window, and every event is counted.
#[test]
fn the_audit_feed_counts_a_flood_without_losing_older_rows() {
    use crate::store::{AuditRecord, AUDIT_OTHER_ADDRESSES, AUDIT_ROWS_PER_WINDOW};
    let store = RedbStore::in_memory().unwrap();
    let hour = crate::store::AUDIT_WINDOW_SECS;
    let t0 = 1_000 * hour;
    let early = AuditRecord::once(
        t0 + 5,
        "ip-blocked",
        Some("192.0.2.1".into()),
        None,
        "20 failed",
    );
    store.apply(vec![WriteOp::Audit(early.clone())]).unwrap();
    // The next hour: 3,000 refusals from 1,500 addresses, in batches.
    let flood: Vec<WriteOp> = (0..3_000u32)
        .map(|i| {
            let ip = format!("10.0.{}.{}", (i % 1_500) / 256, (i % 1_500) % 256);
            WriteOp::Audit(AuditRecord::once(
                t0 + hour + u64::from(i % 60),
                "malformed-hello",
                Some(ip),
                None,
                "garbage",
            ))
        })
        .collect();
    for batch in flood.chunks(500) {
        store.apply(batch.to_vec()).unwrap();
    }
    let rows = store.audit(u32::MAX).unwrap();
    assert_eq!(rows[0], early, "the earlier row is intact");
    let flooded: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == "malformed-hello")
        .collect();
    assert_eq!(
        flooded.len(),
        AUDIT_ROWS_PER_WINDOW + 1,
        "bounded rows per window, plus one for other addresses"
    );
    assert_eq!(
        flooded.iter().map(|r| r.count).sum::<u64>(),
        3_000,
        "every event counted"
    );
    assert!(flooded
        .iter()
        .any(|r| r.ip.as_deref() == Some(AUDIT_OTHER_ADDRESSES) && r.count > 1_000));
    // Rows of one address merge their count and times.
    let one_address: Vec<_> = flooded
        .iter()
        .filter(|r| r.ip.as_deref() == Some("10.0.0.0"))
        .collect();
    assert_eq!(one_address.len(), 1);
    assert_eq!(one_address[0].count, 2);
    assert!(one_address[0].last >= one_address[0].time);
}

/// Issue 13, item 10: bounded reads stop at the byte budget (always giving one entry), for
/// room logs and inboxes alike, and agree with the unbounded reads on what they return.
#[test]
fn reads_stop_at_their_byte_budget() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let bob = register(&store, 2, "bob");
    let room = RoomId([9; 16]);
    let cap = CapHash([0; 32]);
    create_room(&store, room, cap, alice, None);
    for i in 0..10u8 {
        let appended = one(
            &store,
            WriteOp::Append {
                room,
                cap_hash: cap,
                payload: vec![i; 1_000],
                next_cap_hash: None,
                admins: None,
                now: 2,
                room_quota: 1 << 30,
            },
        );
        assert!(appended.is_ok());
        let deposited = one(
            &store,
            WriteOp::Deposit {
                to: bob,
                payload: vec![i; 1_000],
                now: 2,
                inbox_quota: 1 << 30,
            },
        );
        assert!(deposited.is_ok());
    }
    let all = store.entries(&room, Seq(1), Seq(10), 100).unwrap();
    assert_eq!(all.len(), 10);
    let some = store
        .entries_within(&room, Seq(1), Seq(10), 100, 3_500)
        .unwrap();
    assert_eq!(some.len(), 3, "3,000 bytes fit, a fourth entry would not");
    assert_eq!(some[..], all[..3]);
    let one_entry = store
        .entries_within(&room, Seq(4), Seq(10), 100, 10)
        .unwrap();
    assert_eq!(one_entry.len(), 1, "at least one entry");
    assert_eq!(one_entry[0].seq, Seq(4));

    let inbox = store.inbox(&bob, 0, 100).unwrap();
    assert_eq!(inbox.len(), 10);
    let some = store.inbox_within(&bob, 0, 100, 3_500).unwrap();
    assert_eq!(some.len(), 3);
    assert_eq!(some[..], inbox[..3]);
    assert_eq!(store.inbox_within(&bob, 0, 100, 1).unwrap().len(), 1);
}

#[test]
fn key_packages_per_account_are_capped_and_empty_ones_are_charged() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let publish = |n: usize| {
        one(
            &store,
            WriteOp::PublishKeyPackages {
                account: alice,
                packages: vec![Vec::new(); n],
                last_resort: None,
                quota: u64::MAX,
                max_stock: 25,
            },
        )
    };
    publish(21).unwrap();
    assert_eq!(
        store.account(&alice).unwrap().unwrap().used_bytes,
        21 * object_cost(0)
    );
    let refused = publish(5).unwrap_err();
    assert_eq!(refused.code, ErrorCode::QuotaExceeded);
    assert!(
        refused.message.contains("max_key_packages_per_account"),
        "{refused}"
    );
    assert!(refused.message.contains("21 key packages"), "{refused}");
    // Refused: nothing stored, nothing charged.
    assert_eq!(store.key_package_stock(&alice).unwrap().0, 21);
    publish(4).unwrap();
    assert_eq!(store.key_package_stock(&alice).unwrap().0, 25);
}

#[test]
fn the_directory_holds_at_most_its_size_whoever_lists() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let mut rooms = Vec::new();
    for n in 0u8..3 {
        let room = RoomId([n; 16]);
        one(
            &store,
            WriteOp::CreateRoom {
                room,
                cap_hash: CapHash([0; 32]),
                retention_secs: None,
                now: 1,
                creator: alice,
                admin: ADMIN,
                quota: u64::MAX,
                max_rooms: u64::MAX,
            },
        )
        .unwrap();
        rooms.push(room);
    }
    let list = |room: RoomId, name: &str| {
        let mut l = listing(alice, 0, 1, 10);
        l.public_name = name.into();
        one(
            &store,
            WriteOp::PublishRoom {
                room,
                cap_hash: CapHash([0; 32]),
                listing: l,
                admin: Some(ADMIN),
                room_quota: u64::MAX,
                max_listings: 2,
            },
        )
    };
    list(rooms[0], "a").unwrap();
    list(rooms[1], "b").unwrap();
    let e = list(rooms[2], "c").unwrap_err();
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert!(e.message.contains("max_public_rooms"), "{e}");
    // A listed room renames itself whatever the count.
    list(rooms[1], "b2").unwrap();
    let names: Vec<String> = store
        .listings(10)
        .unwrap()
        .into_iter()
        .map(|(_, l)| l.public_name)
        .collect();
    assert_eq!(names, ["a", "b2"]);
    assert_eq!(store.listings(1).unwrap().len(), 1);
}

/// A revert makes the epoch before the refused commit current again and appends the
/// reverting admin's own commit in the same transaction, which starts a new epoch: the
/// refused epoch's capability and the restored one both end. A revert without that
/// commit, one whose commit would not start a new epoch, or one from a pseudonym the
/// relay does not list, is refused and changes nothing.
#[test]
fn a_revert_carries_the_removal_and_ends_every_capability_the_offender_held() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let room = RoomId([9; 16]);
    let (c0, c1, bad, c2) = (
        CapHash([0; 32]),
        CapHash([1; 32]),
        CapHash([0xbb; 32]),
        CapHash([2; 32]),
    );
    create_room(&store, room, c0, alice, None);
    append(&store, room, c0, alice, Some(c1), 2).unwrap();
    // The offender's commit (seq 2) announces a capability nobody else derives.
    append(&store, room, c1, alice, Some(bad), 3).unwrap();
    let revert = |admin: AdminKey, payload: Vec<u8>, next: CapHash| {
        one(
            &store,
            WriteOp::RevertCommit {
                room,
                cap_hash: c1,
                seq: Seq(2),
                admin,
                payload,
                next_cap_hash: next,
                now: 4,
                room_quota: u64::MAX,
            },
        )
    };
    let unchanged = |store: &RedbStore| {
        let (record, access) = store.access(&room, &bad).unwrap().unwrap();
        assert_eq!((record.head, access.unwrap()), (2, Access::Current));
    };
    assert_eq!(
        revert(AdminKey([1; 32]), vec![5; 10], c2).unwrap_err().code,
        ErrorCode::Forbidden,
        "a pseudonym the relay does not list"
    );
    unchanged(&store);
    assert_eq!(
        revert(ADMIN, Vec::new(), c2).unwrap_err().code,
        ErrorCode::BadRequest,
        "no removal"
    );
    unchanged(&store);
    for next in [c1, bad, c0] {
        assert_eq!(
            revert(ADMIN, vec![5; 10], next).unwrap_err().code,
            ErrorCode::Forbidden,
            "a removal that starts no new epoch"
        );
        unchanged(&store);
    }
    match revert(ADMIN, vec![5; 10], c2).unwrap() {
        Applied::Reverted {
            ended,
            entry,
            restored,
            ..
        } => {
            assert_eq!((ended, restored), (bad, c1));
            assert_eq!((entry.seq, entry.next_cap_hash), (Seq(3), Some(c2)));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The refused epoch ended where it was; the restored one at the removal.
    let (record, access) = store.access(&room, &bad).unwrap().unwrap();
    assert_eq!(access.unwrap(), Access::Ended { end: Seq(2) });
    assert_eq!(record.head, 3);
    let (_, access) = store.access(&room, &c1).unwrap().unwrap();
    assert_eq!(access.unwrap(), Access::Ended { end: Seq(3) });
    let (_, access) = store.access(&room, &c2).unwrap().unwrap();
    assert_eq!(access.unwrap(), Access::Current);
    assert_eq!(
        append(&store, room, bad, alice, None, 5).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    // Two commits count: the one before and the removal (the refused one is undone).
    assert_eq!(store.listing(&room).unwrap(), None);
}

/// A store of format 2 (admins and listers as account keys, barred authors) opens as
/// format 3: no account is left with a room, the lists of admins are empty until owners
/// set them, and a listing's bytes move from its publisher to its room.
#[test]
fn a_store_of_format_2_loses_its_account_links_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    let alice = AccountKey([1; 32]);
    let room = RoomId([9; 16]);
    let old_listing;
    {
        let store = RedbStore::open(&path).unwrap();
        register(&store, 1, "alice");
        one(
            &store,
            WriteOp::CreateRoom {
                room,
                cap_hash: CapHash([0; 32]),
                retention_secs: None,
                now: 1,
                creator: alice,
                admin: ADMIN,
                quota: u64::MAX,
                max_rooms: u64::MAX,
            },
        )
        .unwrap();
        old_listing = listing(alice, 0, 1, 40);
        let txn = store.db.begin_write().unwrap();
        {
            let by_account = postcard::to_allocvec(&vec![alice]).unwrap();
            txn.open_table(ROOM_ADMINS)
                .unwrap()
                .insert(room.0.as_slice(), by_account.as_slice())
                .unwrap();
            for name in ["barred", "listers"] {
                let def: TableDefinition<Bytes, Bytes> = TableDefinition::new(name);
                let value = if name == "barred" {
                    by_account.clone()
                } else {
                    alice.0.to_vec()
                };
                txn.open_table(def)
                    .unwrap()
                    .insert(room.0.as_slice(), value.as_slice())
                    .unwrap();
            }
            let listed_by: TableDefinition<Bytes, Bytes> = TableDefinition::new("listed_by");
            let mut key = alice.0.to_vec();
            key.extend_from_slice(&room.0);
            txn.open_table(listed_by)
                .unwrap()
                .insert(key.as_slice(), &[][..])
                .unwrap();
            let v2 = postcard::to_allocvec(&(
                &old_listing.public_name,
                serde_bytes::Bytes::new(&old_listing.group_info),
                old_listing.epoch,
                old_listing.published,
                alice,
            ))
            .unwrap();
            txn.open_table(LISTINGS)
                .unwrap()
                .insert(room.0.as_slice(), v2.as_slice())
                .unwrap();
            let mut accounts = txn.open_table(ACCOUNTS).unwrap();
            let mut rec: AccountRecord =
                decode(accounts.get(alice.0.as_slice()).unwrap().unwrap().value()).unwrap();
            rec.used_bytes += old_listing.bytes();
            accounts
                .insert(alice.0.as_slice(), encode(&rec).unwrap().as_slice())
                .unwrap();
            txn.open_table(META).unwrap().insert("format", 2).unwrap();
        }
        txn.commit().unwrap();
        let report = store.inspect().unwrap();
        let linking: Vec<&str> = report
            .unexpected_links()
            .iter()
            .map(|t| t.table.as_str())
            .collect();
        assert_eq!(linking, ["listings", "room_admins"], "{report:?}");
    }
    let store = RedbStore::open(&path).unwrap();
    assert!(store.room_admins(&room).unwrap().is_empty());
    // The list by account waits for its owner, in the one table left that links.
    assert_eq!(
        store
            .db
            .begin_read()
            .unwrap()
            .open_table(LEGACY_ADMINS)
            .unwrap()
            .get(room.0.as_slice())
            .unwrap()
            .map(|v| v.value().to_vec()),
        Some(postcard::to_allocvec(&vec![alice]).unwrap())
    );
    let (listing, _) = store.listing(&room).unwrap().unwrap();
    assert_eq!(listing, old_listing);
    assert_eq!(
        store.account(&alice).unwrap().unwrap().used_bytes,
        ROOM_OVERHEAD_BYTES
    );
    assert_eq!(
        store.room(&room).unwrap().unwrap().bytes,
        old_listing.bytes()
    );
    let report = store.inspect().unwrap();
    assert!(report.unexpected_links().is_empty(), "{report:?}");
    let remaining: Vec<&str> = report
        .tables
        .iter()
        .filter(|t| t.verdict == crate::inspect::Verdict::Remaining)
        .map(|t| t.table.as_str())
        .collect();
    assert_eq!(remaining, ["legacy_admins"], "{report:?}");
    let tables: Vec<&str> = report.tables.iter().map(|t| t.table.as_str()).collect();
    for gone in ["barred", "listers", "listed_by"] {
        assert!(!tables.contains(&gone), "{tables:?}");
    }
    let txn = store.db.begin_read().unwrap();
    assert!(txn.list_tables().unwrap().all(|t| {
        use redb::TableHandle;
        !["barred", "listers", "listed_by"].contains(&t.name())
    }));
}

/// Every admin's change to `room` under `cap`, signed by `signer` (the service checked the
/// signature; here it is taken as given): each must be refused as Forbidden.
fn every_admin_change_is_refused(store: &RedbStore, room: RoomId, cap: CapHash, signer: AdminKey) {
    // No commit yet in these rooms: epoch 0, and no earlier listing to refresh.
    let listing = listing(AccountKey([0; 32]), 0, 1, 40);
    let ops = [
        WriteOp::SetRoomAdmins {
            room,
            cap_hash: cap,
            admin: Some(signer),
            account: None,
            admins: vec![signer],
        },
        WriteOp::Append {
            room,
            cap_hash: cap,
            payload: vec![1],
            next_cap_hash: Some(CapHash([0xee; 32])),
            admins: Some((signer, vec![signer])),
            now: 5,
            room_quota: u64::MAX,
        },
        WriteOp::SetRetention {
            room,
            cap_hash: cap,
            retention_secs: Some(60),
            admin: Some(signer),
        },
        WriteOp::PublishRoom {
            room,
            cap_hash: cap,
            listing,
            admin: Some(signer),
            room_quota: u64::MAX,
            max_listings: u64::MAX,
        },
        WriteOp::UnpublishRoom {
            room,
            cap_hash: cap,
            admin: Some(signer),
        },
    ];
    for op in ops {
        let name = format!("{op:?}").chars().take(40).collect::<String>();
        assert_eq!(
            one(store, op).err().map(|e| e.code),
            Some(ErrorCode::Forbidden),
            "{name}"
        );
    }
    assert!(store.room_admins(&room).unwrap().is_empty());
    assert_eq!(store.room(&room).unwrap().unwrap().retention_secs, None);
    assert_eq!(store.listing(&room).unwrap(), None);
}

/// The hole of decision 0013 part 5: a room the relay lists no admins for (its list was
/// lost, or the room predates the relay keeping one) is not anybody's to claim. A member
/// holding the current capability, signing with its own pseudonym, cannot set the first
/// list, take it over by a commit, or change anything only an admin may.
#[test]
fn a_room_without_admins_at_the_relay_cannot_be_claimed_by_a_member() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let room = RoomId([3; 16]);
    let cap = CapHash([0; 32]);
    create_room(&store, room, cap, alice, None);
    // The list is gone (as for a room from before the relay kept admins).
    let txn = store.db.begin_write().unwrap();
    txn.open_table(ROOM_ADMINS)
        .unwrap()
        .remove(room.0.as_slice())
        .unwrap();
    txn.commit().unwrap();
    let mallory = AdminKey([0x66; 32]);
    every_admin_change_is_refused(&store, room, cap, mallory);
    // Not even the creator's pseudonym brings it back: only `CreateRoom` sets a first
    // list (the owner rebuilds such a room).
    every_admin_change_is_refused(&store, room, cap, ADMIN);
    // Plain messages and commits still go.
    assert!(append(&store, room, cap, alice, None, 2).is_ok());
}

/// A room of a store migrated from format 2 keeps its list by account as a legacy list:
/// a member with the capability (signed in or not) cannot set the first list of
/// pseudonyms, nor can the owner's account name another pseudonym as owner than the one
/// that signs; the owner's account, signed in, sets it once (after a key rotation too),
/// the account row goes, and from then on only the owner's pseudonym changes the list.
#[test]
fn a_migrated_room_takes_its_first_admins_only_from_its_owner_account() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    let (room, cap) = (RoomId([9; 16]), CapHash([0; 32]));
    let (alice, bob, mallory);
    {
        let store = RedbStore::open(&path).unwrap();
        alice = register(&store, 1, "alice");
        bob = register(&store, 2, "bob");
        mallory = register(&store, 3, "mallory");
        one(
            &store,
            WriteOp::CreateRoom {
                room,
                cap_hash: cap,
                retention_secs: None,
                now: 1,
                creator: alice,
                admin: ADMIN,
                quota: u64::MAX,
                max_rooms: u64::MAX,
            },
        )
        .unwrap();
        // As format 2 kept it: accounts, owner first.
        let txn = store.db.begin_write().unwrap();
        {
            let by_account = postcard::to_allocvec(&vec![alice, bob]).unwrap();
            txn.open_table(ROOM_ADMINS)
                .unwrap()
                .insert(room.0.as_slice(), by_account.as_slice())
                .unwrap();
            txn.open_table(META).unwrap().insert("format", 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    assert!(store.room_admins(&room).unwrap().is_empty());
    // Nobody is an admin at the relay meanwhile.
    let pseudo_mallory = AdminKey([0x66; 32]);
    every_admin_change_is_refused(&store, room, cap, pseudo_mallory);
    let claim = |account: Option<AccountKey>, signer: AdminKey, admins: Vec<AdminKey>| {
        one(
            &store,
            WriteOp::SetRoomAdmins {
                room,
                cap_hash: cap,
                admin: Some(signer),
                account,
                admins,
            },
        )
        .err()
        .map(|e| e.code)
    };
    // A member signed in as itself, or on a connection that never signed in.
    assert_eq!(
        claim(Some(mallory), pseudo_mallory, vec![pseudo_mallory]),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        claim(None, pseudo_mallory, vec![pseudo_mallory]),
        Some(ErrorCode::Forbidden)
    );
    // Another admin of the old list is not its owner.
    let pseudo_bob = AdminKey([0xb0; 32]);
    assert_eq!(
        claim(Some(bob), pseudo_bob, vec![pseudo_bob]),
        Some(ErrorCode::Forbidden)
    );
    // The owner's account must name the signing pseudonym as owner (not a member's).
    assert_eq!(
        claim(Some(alice), ADMIN, vec![pseudo_mallory, ADMIN]),
        Some(ErrorCode::Forbidden)
    );
    assert!(store.room_admins(&room).unwrap().is_empty());
    // Alice rotates her key before her client comes back: the rotation leads to her.
    let alice_now = AccountKey([0xa2; 32]);
    let txn = store.db.begin_write().unwrap();
    {
        let mut tx = Tx::open(&txn);
        let mut record = tx.account(&alice).unwrap().unwrap();
        tx.accounts
            .write()
            .unwrap()
            .remove(alice.0.as_slice())
            .unwrap();
        record.account = alice_now;
        tx.put_account(&record).unwrap();
        tx.retired
            .write()
            .unwrap()
            .insert(alice.0.as_slice(), alice_now.0.as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    assert_eq!(
        claim(Some(alice), ADMIN, vec![ADMIN]),
        Some(ErrorCode::Forbidden),
        "the retired key is nobody's connection"
    );
    assert_eq!(claim(Some(alice_now), ADMIN, vec![ADMIN, pseudo_bob]), None);
    assert_eq!(store.room_admins(&room).unwrap(), vec![ADMIN, pseudo_bob]);
    let report = store.inspect().unwrap();
    assert!(report
        .tables
        .iter()
        .all(|t| t.verdict == crate::inspect::Verdict::NoLink));
    // Once: the account no longer counts, only the owner's pseudonym does.
    assert_eq!(
        claim(Some(alice_now), pseudo_mallory, vec![pseudo_mallory]),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(claim(None, ADMIN, vec![ADMIN]), None);
    assert_eq!(store.room_admins(&room).unwrap(), vec![ADMIN]);
}

#[test]
fn a_sweep_scan_reads_a_bounded_number_of_rows_and_goes_on_from_its_cursor() {
    // Inbox entries keep their day and are judged by its end.
    const DAY: u64 = 86_400;
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let bob = register(&store, 2, "bob");
    for _ in 0..30 {
        one(
            &store,
            WriteOp::Deposit {
                to: bob,
                payload: Vec::new(),
                now: 1,
                inbox_quota: u64::MAX,
            },
        )
        .unwrap();
    }
    // A fresh one is kept.
    one(
        &store,
        WriteOp::Deposit {
            to: bob,
            payload: Vec::new(),
            now: 3 * DAY,
            inbox_quota: u64::MAX,
        },
    )
    .unwrap();
    let mut cursor = crate::store::SweepCursor::default();
    let (mut scans, mut deleted) = (0, 0);
    loop {
        let found = store.sweep_scan(&cursor, 3 * DAY + 100, 600, 8).unwrap();
        assert!(found.items.len() <= 8, "{} items", found.items.len());
        scans += 1;
        let Ok(Applied::Swept { inbox, .. }) = one(
            &store,
            WriteOp::SweepItems {
                now: 3 * DAY + 100,
                retention_secs: 600,
                items: found.items,
            },
        ) else {
            panic!("sweep refused");
        };
        deleted += inbox;
        match found.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert!(scans >= 4, "{scans} scans");
    assert_eq!(deleted, 30);
    assert_eq!(store.inbox(&bob, 0, 100).unwrap().len(), 1);
    // The depositor pays nothing (the inbox is its recipient's).
    assert_eq!(store.account(&alice).unwrap().unwrap().used_bytes, 0);
}

#[test]
fn the_history_of_epochs_goes_with_their_expired_commits() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let room = RoomId([9; 16]);
    let caps: Vec<CapHash> = (0..3u8).map(|n| CapHash([n; 32])).collect();
    create_room(&store, room, caps[0], alice, None);
    append(&store, room, caps[0], alice, Some(caps[1]), 10).unwrap();
    append(&store, room, caps[1], alice, Some(caps[2]), 20).unwrap();
    append(&store, room, caps[2], alice, None, 30).unwrap();
    let retention = 100;
    let sweep = |now| {
        one(
            &store,
            WriteOp::Sweep {
                now,
                retention_secs: retention,
                max_deletions: 10_000,
            },
        )
        .unwrap()
    };
    // Within retention a member away since the first epoch catches up through both
    // commits: nothing goes.
    assert_eq!(
        sweep(105),
        Applied::Swept {
            entries: 0,
            inbox: 0,
            listings: 0,
            epochs: 0
        }
    );
    let (_, access) = store.access(&room, &caps[0]).unwrap().unwrap();
    assert_eq!(access.unwrap(), Access::Ended { end: Seq(1) });
    let caught_up = store.entries(&room, Seq(1), Seq(3), 10).unwrap();
    assert_eq!(caught_up[0].next_cap_hash, Some(caps[1]));
    // The first commit expired: its epoch's row and the hash it announced go with it.
    assert_eq!(
        sweep(115),
        Applied::Swept {
            entries: 1,
            inbox: 0,
            listings: 0,
            epochs: 1
        }
    );
    let (_, access) = store.access(&room, &caps[0]).unwrap().unwrap();
    assert_eq!(access.unwrap_err().code, ErrorCode::Forbidden);
    let (_, access) = store.access(&room, &caps[1]).unwrap().unwrap();
    assert_eq!(access.unwrap(), Access::Ended { end: Seq(2) });
    // Everything expired: only the current epoch's capability is left.
    assert_eq!(
        sweep(1000),
        Applied::Swept {
            entries: 2,
            inbox: 0,
            listings: 0,
            epochs: 1
        }
    );
    let (record, access) = store.access(&room, &caps[1]).unwrap().unwrap();
    assert_eq!(access.unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!((record.first, record.head, record.bytes), (4, 3, 0));
    let (_, access) = store.access(&room, &caps[2]).unwrap().unwrap();
    assert_eq!(access.unwrap(), Access::Current);
    let txn = store.db.begin_read().unwrap();
    assert!(txn.open_table(EPOCHS).unwrap().is_empty().unwrap());
    assert!(txn.open_table(COMMIT_CAPS).unwrap().is_empty().unwrap());
    assert!(txn.open_table(ENTRIES).unwrap().is_empty().unwrap());
    drop(txn);
    // The room's commit count stays (the directory compares epochs by it).
    assert!(append(&store, room, caps[2], alice, Some(CapHash([3; 32])), 1000).is_ok());
}

#[test]
fn inboxes_are_charged_to_their_recipient_and_name_no_sender() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let bob = register(&store, 2, "bob");
    let deposit = |len: usize, quota: u64| {
        one(
            &store,
            WriteOp::Deposit {
                to: bob,
                payload: vec![5; len],
                now: 1,
                inbox_quota: quota,
            },
        )
    };
    // What one stored entry of 100 bytes counts (its record is the time and the payload's
    // length besides: 2 bytes more).
    let cost = object_cost(100 + 2);
    for _ in 0..3 {
        deposit(100, 3 * cost).unwrap();
    }
    assert_eq!(
        deposit(100, 3 * cost).unwrap_err().code,
        ErrorCode::QuotaExceeded
    );
    for who in [alice, bob] {
        assert_eq!(store.account(&who).unwrap().unwrap().used_bytes, 0);
    }
    let ids: Vec<u64> = store
        .inbox(&bob, 0, 10)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    one(&store, WriteOp::AckInbox { account: bob, ids }).unwrap();
    deposit(100, 3 * cost).unwrap();
    let report = store.inspect().unwrap();
    let inbox = report.tables.iter().find(|t| t.table == "inbox").unwrap();
    // The recipient's key is the row's key; nothing else names an account.
    assert_eq!((inbox.records, inbox.with_account), (1, 1));
    let txn = store.db.begin_read().unwrap();
    let table = txn.open_table(INBOX).unwrap();
    let (_, v) = table.iter().unwrap().next().unwrap().unwrap();
    assert_eq!(v.value().len(), 100 + 2, "time and payload, no depositor");
}

/// A store written by the relay before decision 0013 (format 1: entries with their
/// author, inbox entries with their depositor, charged to them) opens, reads the same,
/// and keeps no account with an entry.
#[test]
fn a_store_of_the_old_format_is_migrated_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    let (alice, bob) = (AccountKey([1; 32]), AccountKey([2; 32]));
    let room = RoomId([9; 16]);
    let (c0, c1) = (CapHash([0xc0; 32]), CapHash([0xc1; 32]));
    {
        let store = RedbStore::open(&path).unwrap();
        register(&store, 1, "alice");
        register(&store, 2, "bob");
        one(
            &store,
            WriteOp::CreateRoom {
                room,
                cap_hash: c0,
                retention_secs: None,
                now: 1,
                creator: alice,
                admin: ADMIN,
                quota: u64::MAX,
                max_rooms: u64::MAX,
            },
        )
        .unwrap();
        append(&store, room, c0, alice, Some(c1), 2).unwrap();
        // Rewrite what was stored as format 1 did, with its charges.
        let txn = store.db.begin_write().unwrap();
        {
            let mut entries = txn.open_table(ENTRIES).unwrap();
            let mut inbox = txn.open_table(INBOX).unwrap();
            let mut accounts = txn.open_table(ACCOUNTS).unwrap();
            let old_entry = |kind: EntryKind, time: u64, author: AccountKey, payload: &[u8]| {
                postcard::to_allocvec(&(kind, time, author, serde_bytes::Bytes::new(payload)))
                    .unwrap()
            };
            entries
                .insert(
                    key2(&room.0, 1).as_slice(),
                    old_entry(EntryKind::Commit, 2, alice, &[7; 10]).as_slice(),
                )
                .unwrap();
            entries
                .insert(
                    key2(&room.0, 2).as_slice(),
                    old_entry(EntryKind::Message, 3, bob, &[8; 20]).as_slice(),
                )
                .unwrap();
            let mut record: RoomRecord = decode(
                txn.open_table(ROOMS)
                    .unwrap()
                    .get(room.0.as_slice())
                    .unwrap()
                    .unwrap()
                    .value(),
            )
            .unwrap();
            record.head = 2;
            record.bytes = 30; // format 1 counted payloads
            txn.open_table(ROOMS)
                .unwrap()
                .insert(room.0.as_slice(), encode(&record).unwrap().as_slice())
                .unwrap();
            let welcome =
                postcard::to_allocvec(&(4u64, alice, serde_bytes::Bytes::new(&[6; 50]))).unwrap();
            inbox
                .insert(key2(&bob.0, 1).as_slice(), welcome.as_slice())
                .unwrap();
            for (who, charged) in [
                (
                    alice,
                    ROOM_OVERHEAD_BYTES + entry_cost(EntryKind::Commit, 10) + object_cost(50),
                ),
                (bob, entry_cost(EntryKind::Message, 20)),
            ] {
                let mut rec: AccountRecord =
                    decode(accounts.get(who.0.as_slice()).unwrap().unwrap().value()).unwrap();
                rec.used_bytes = charged;
                if who == bob {
                    rec.next_inbox_id = 1;
                }
                accounts
                    .insert(who.0.as_slice(), encode(&rec).unwrap().as_slice())
                    .unwrap();
            }
            txn.open_table(META).unwrap().remove("format").unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let entries = store.entries(&room, Seq(1), Seq(2), 10).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].next_cap_hash, Some(c1));
    assert_eq!(entries[1].payload, vec![8; 20]);
    let inbox = store.inbox(&bob, 0, 10).unwrap();
    assert_eq!((inbox[0].time, &inbox[0].payload), (4, &vec![6; 50]));
    // The authors got back what their entries cost; the room pays now.
    assert_eq!(
        store.account(&alice).unwrap().unwrap().used_bytes,
        ROOM_OVERHEAD_BYTES
    );
    assert_eq!(store.account(&bob).unwrap().unwrap().used_bytes, 0);
    assert_eq!(
        store.room(&room).unwrap().unwrap().bytes,
        entry_cost(EntryKind::Commit, 10) + entry_cost(EntryKind::Message, 20)
    );
    let report = store.inspect().unwrap();
    let entries = report.tables.iter().find(|t| t.table == "entries").unwrap();
    assert_eq!((entries.records, entries.with_account), (2, 0));
    assert!(report.unexpected_links().is_empty(), "{report:?}");
    // Opened again, nothing changes.
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.entries(&room, Seq(1), Seq(2), 10).unwrap().len(), 2);
    assert_eq!(store.account(&bob).unwrap().unwrap().used_bytes, 0);
}

/// Attack 16: the migration to entries without authors rewrote every entry, but redb
/// leaves the pages a transaction freed as they were: the old entries, each a room id
/// beside its author's account key, stayed in the store file where `inspect` (which
/// reads tables) never looks, for whoever reads the file or a backup of it. The store is
/// compacted after a migration, and the file holds no trace of the authors.
#[test]
fn a_migrated_store_keeps_no_old_author_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    // An author the store has no account for, so any copy of its key in the file is one
    // the old entries left.
    let author = AccountKey([0x5a; 32]);
    let room = RoomId([9; 16]);
    {
        let store = RedbStore::open(&path).unwrap();
        register(&store, 1, "alice");
        one(
            &store,
            WriteOp::CreateRoom {
                room,
                cap_hash: CapHash([0xc0; 32]),
                retention_secs: None,
                now: 1,
                creator: AccountKey([1; 32]),
                admin: ADMIN,
                quota: u64::MAX,
                max_rooms: u64::MAX,
            },
        )
        .unwrap();
        // What format 1 stored: entries with their author.
        let txn = store.db.begin_write().unwrap();
        {
            let mut entries = txn.open_table(ENTRIES).unwrap();
            for seq in 1..=50u64 {
                let old = postcard::to_allocvec(&(
                    EntryKind::Message,
                    seq,
                    author,
                    serde_bytes::Bytes::new(&[8; 200]),
                ))
                .unwrap();
                entries
                    .insert(key2(&room.0, seq).as_slice(), old.as_slice())
                    .unwrap();
            }
            let mut rooms = txn.open_table(ROOMS).unwrap();
            let mut record: RoomRecord =
                decode(rooms.get(room.0.as_slice()).unwrap().unwrap().value()).unwrap();
            record.head = 50;
            rooms
                .insert(room.0.as_slice(), encode(&record).unwrap().as_slice())
                .unwrap();
            drop(rooms);
            txn.open_table(META).unwrap().remove("format").unwrap();
        }
        txn.commit().unwrap();
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.windows(32).any(|w| w == author.0),
            "the old format's authors are in the file before the migration"
        );
    }
    let store = RedbStore::open(&path).unwrap();
    let entries = store.entries(&room, Seq(1), Seq(50), 100).unwrap();
    assert_eq!(entries.len(), 50);
    assert_eq!(entries[49].payload, vec![8; 200]);
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    let left = bytes.windows(32).filter(|w| *w == author.0).count();
    assert_eq!(left, 0, "an old author is still in the file {left} times");
}

#[test]
fn an_inbox_entry_keeps_only_its_day() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let noon = 20_000 * 86_400 + 12 * 3600 + 34;
    one(
        &store,
        WriteOp::Deposit {
            to: alice,
            payload: vec![1; 10],
            now: noon,
            inbox_quota: 1000,
        },
    )
    .expect("deposited");
    let entries = store.inbox_within(&alice, 0, 10, 1 << 20).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].time, 20_000 * 86_400);
}

/// A store migrated to format 3 by a build that did not compact kept what the migrations
/// took apart in freed pages; it is compacted once when this build opens it.
#[test]
fn a_store_migrated_by_an_earlier_build_is_compacted_once() {
    const OLD: TableDefinition<Bytes, Bytes> = TableDefinition::new("old_records");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    let author = AccountKey([0x5b; 32]);
    {
        let store = RedbStore::open(&path).unwrap();
        // What an earlier build's migration left: records holding an account key in a
        // table it then dropped, and the format it wrote.
        let txn = store.db.begin_write().unwrap();
        {
            let mut old = txn.open_table(OLD).unwrap();
            for i in 0..50u64 {
                let mut record = author.0.to_vec();
                record.extend([8; 200]);
                old.insert(i.to_be_bytes().as_slice(), record.as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.delete_table(OLD).unwrap();
        txn.open_table(META).unwrap().insert("format", 3).unwrap();
        txn.commit().unwrap();
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.windows(32).any(|w| w == author.0),
            "the dropped records are still in the file's freed pages"
        );
    }
    drop(RedbStore::open(&path).unwrap());
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !bytes.windows(32).any(|w| w == author.0),
        "compacted once: nothing of them is left"
    );
    let store = RedbStore::open(&path).unwrap();
    let txn = store.db.begin_write().unwrap();
    assert_eq!(migrate::format_of(&txn).unwrap(), FORMAT);
}

mod attack_runs;
mod stored_runs;
