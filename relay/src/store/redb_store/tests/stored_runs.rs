//! Runs of messages stored as one value (decision 0018): what a batch writes, reads from
//! any seq, the sweep ending inside a run, and stores of the formats before and after.

use super::*;

const ROOM: RoomId = RoomId([0x31; 16]);
const C0: CapHash = CapHash([0; 32]);

/// The payload of the message at `seq` in these tests: 1 KiB that says its seq.
fn payload(seq: u64) -> Vec<u8> {
    let mut p = vec![(seq % 251) as u8; 1024];
    p[..8].copy_from_slice(&seq.to_be_bytes());
    p
}

fn message(seq: u64, now: u64) -> WriteOp {
    message_under(C0, seq, now)
}

/// A message to [`ROOM`] under the capability hash `cap`.
fn message_under(cap: CapHash, seq: u64, now: u64) -> WriteOp {
    WriteOp::Append {
        room: ROOM,
        cap_hash: cap,
        payload: payload(seq),
        next_cap_hash: None,
        admins: None,
        now,
        room_quota: u64::MAX,
    }
}

/// A store with [`ROOM`] whose messages `1..=n` came in one batch, the first `old` of
/// them at time 100 and the rest at time 200.
fn store_with_batch(n: u64, old: u64) -> RedbStore {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    create_room(&store, ROOM, C0, alice, None);
    let ops = (1..=n)
        .map(|seq| message(seq, if seq <= old { 100 } else { 200 }))
        .collect();
    for result in store.apply(ops).unwrap() {
        assert!(matches!(result, Ok(Applied::Appended { .. })));
    }
    store
}

/// The keys of `entries`, as seqs of [`ROOM`].
fn stored_keys(store: &RedbStore) -> Vec<u64> {
    let txn = store.db.begin_read().unwrap();
    let table = txn.open_table(ENTRIES).unwrap();
    table
        .iter()
        .unwrap()
        .map(|item| tail_u64(item.unwrap().0.value()))
        .collect()
}

/// Reads `from..=to` (at most `limit` entries) and checks that it gave the messages `expected`.
fn assert_reads(store: &RedbStore, from: u64, to: u64, limit: u32, expected: std::ops::Range<u64>) {
    let read = store.entries(&ROOM, Seq(from), Seq(to), limit).unwrap();
    let seqs: Vec<u64> = read.iter().map(|e| e.seq.0).collect();
    assert_eq!(
        seqs,
        expected.clone().collect::<Vec<_>>(),
        "read {from}..={to} limit {limit}"
    );
    for (entry, seq) in read.iter().zip(expected) {
        assert_eq!(entry.payload, payload(seq));
        assert_eq!(entry.kind, EntryKind::Message);
    }
}

#[test]
fn a_batch_to_one_room_is_stored_as_runs_that_fit_a_64_kib_page() {
    let store = store_with_batch(300, 0);
    // 63 messages of 1 KiB fill a run (each takes 1027 bytes with its time and length):
    // 300 are five values.
    assert_eq!(stored_keys(&store), vec![1, 64, 127, 190, 253]);
    let txn = store.db.begin_read().unwrap();
    let table = txn.open_table(ENTRIES).unwrap();
    for item in table.iter().unwrap() {
        assert!(item.unwrap().1.value().len() <= runs::MAX_RUN_BYTES);
    }
    assert_eq!(store.stats().unwrap().entries, 300);
    let record = store.room(&ROOM).unwrap().unwrap();
    assert_eq!((record.first, record.head), (1, 300));
    assert_eq!(
        record.bytes,
        300 * crate::store::entry_cost(EntryKind::Message, 1024)
    );
}

#[test]
fn a_read_starts_and_ends_anywhere_in_a_run() {
    let store = store_with_batch(300, 0);
    assert_reads(&store, 1, 300, 1000, 1..301);
    assert_reads(&store, 0, 5, 1000, 1..6);
    assert_reads(&store, 2, 3, 1000, 2..4);
    assert_reads(&store, 62, 65, 1000, 62..66);
    assert_reads(&store, 64, 64, 1000, 64..65);
    assert_reads(&store, 100, 400, 1000, 100..301);
    assert_reads(&store, 100, 400, 7, 100..107);
    assert_reads(&store, 300, 300, 1000, 300..301);
    assert_reads(&store, 301, 400, 1000, 1..1);
    // The byte budget counts payloads across runs: 70 KiB hold 70 entries.
    let read = store
        .entries_within(&ROOM, Seq(60), Seq(300), 1000, 70 * 1024)
        .unwrap();
    assert_eq!(read.first().unwrap().seq, Seq(60));
    assert_eq!(read.len(), 70);
}

#[test]
fn messages_and_commits_in_one_batch_keep_their_order_and_commits_stand_alone() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let other = RoomId([0x32; 16]);
    create_room(&store, ROOM, C0, alice, None);
    create_room(&store, other, C0, alice, None);
    let c1 = CapHash([1; 32]);
    let to_other = |n: u8| WriteOp::Append {
        room: other,
        cap_hash: C0,
        payload: vec![n; 10],
        next_cap_hash: None,
        admins: None,
        now: 100,
        room_quota: u64::MAX,
    };
    let commit = WriteOp::Append {
        room: ROOM,
        cap_hash: C0,
        payload: payload(4),
        next_cap_hash: Some(c1),
        admins: None,
        now: 100,
        room_quota: u64::MAX,
    };
    let after_commit = |seq| message_under(c1, seq, 100);
    let ops = vec![
        message(1, 100),
        message(2, 100),
        to_other(1),
        message(3, 100),
        commit,
        after_commit(5),
        after_commit(6),
        // Refused (the ended capability): the run goes on after it.
        message(7, 100),
        after_commit(7),
        to_other(2),
        to_other(3),
    ];
    let results = store.apply(ops).unwrap();
    assert!(results[7].is_err());
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    let read = store.entries(&ROOM, Seq(1), Seq(10), 100).unwrap();
    assert_eq!(
        read.iter().map(|e| (e.seq.0, e.kind)).collect::<Vec<_>>(),
        vec![
            (1, EntryKind::Message),
            (2, EntryKind::Message),
            (3, EntryKind::Message),
            (4, EntryKind::Commit),
            (5, EntryKind::Message),
            (6, EntryKind::Message),
            (7, EntryKind::Message),
        ]
    );
    assert_eq!(read[3].next_cap_hash, Some(c1));
    assert!(read.iter().all(|e| e.payload == payload(e.seq.0)));
    let others = store.entries(&other, Seq(1), Seq(10), 100).unwrap();
    assert_eq!(
        others.iter().map(|e| e.payload[0]).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // ROOM: 1-2, 3 (the other room came between), the commit, 5-7; other: 1, 2-3.
    let txn = store.db.begin_read().unwrap();
    let table = txn.open_table(ENTRIES).unwrap();
    let keys: Vec<(u8, u64)> = table
        .iter()
        .unwrap()
        .map(|item| {
            let k = item.unwrap().0.value().to_vec();
            (k[0], tail_u64(&k))
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            (0x31, 1),
            (0x31, 3),
            (0x31, 4),
            (0x31, 5),
            (0x32, 1),
            (0x32, 2)
        ]
    );
    drop(table);
    drop(txn);
    assert_eq!(store.stats().unwrap().entries, 10);
}

/// A sweep at time 1150 with a retention of 1000 s: what was stored before time 150 goes.
fn sweep_at_1150(store: &RedbStore) -> Applied {
    one(
        store,
        WriteOp::Sweep {
            now: 1150,
            retention_secs: 1000,
            max_deletions: 10_000,
        },
    )
    .unwrap()
}

#[test]
fn a_sweep_ending_inside_a_run_keeps_the_rest_of_it_under_its_first_seq() {
    let per = crate::store::entry_cost(EntryKind::Message, 1024);
    // Messages 1-100 at time 100, 101-200 at time 200: runs 1-63, 64-126, 127-189, 190-200.
    let store = store_with_batch(200, 100);
    let swept = sweep_at_1150(&store);
    assert!(
        matches!(swept, Applied::Swept { entries: 100, .. }),
        "{swept:?}"
    );
    let record = store.room(&ROOM).unwrap().unwrap();
    assert_eq!(record.first, 101);
    assert_eq!(record.bytes, 100 * per, "the room is refunded exactly");
    assert_eq!(stored_keys(&store), vec![101, 127, 190]);
    assert_reads(&store, 1, 200, 1000, 101..201);
    assert_reads(&store, 101, 101, 1000, 101..102);
    assert_eq!(store.stats().unwrap().entries, 100);
    // Nothing else is due.
    let swept = sweep_at_1150(&store);
    assert!(matches!(swept, Applied::Swept { entries: 0, .. }));
}

#[test]
fn sweep_items_through_a_seq_inside_a_run_delete_up_to_it() {
    let per = crate::store::entry_cost(EntryKind::Message, 1024);
    let store = store_with_batch(100, 100);
    // What a scan found on an older snapshot: through 30 (all 100 are due by now).
    one(
        &store,
        WriteOp::SweepItems {
            now: 2000,
            retention_secs: 1000,
            items: vec![crate::store::SweepItem::Entries {
                room: ROOM,
                through: 30,
            }],
        },
    )
    .unwrap();
    let record = store.room(&ROOM).unwrap().unwrap();
    assert_eq!(record.first, 31);
    assert_eq!(record.bytes, 70 * per);
    assert_eq!(stored_keys(&store), vec![31, 64]);
    assert_reads(&store, 1, 100, 1000, 31..101);
    // The scan of the sweeper finds the rest from the new first seq.
    let scan = store
        .sweep_scan(&crate::store::SweepCursor::default(), 2000, 1000, 1000)
        .unwrap();
    assert!(scan.items.iter().any(|item| matches!(
        item,
        crate::store::SweepItem::Entries {
            room: ROOM,
            through: 100
        }
    )));
}

#[test]
fn a_store_of_format_4_reads_and_takes_runs_after_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        let alice = register(&store, 1, "alice");
        create_room(&store, ROOM, C0, alice, None);
        // What format 4 wrote: each entry alone, as a `StoredEntry`.
        let txn = store.db.begin_write().unwrap();
        {
            let mut entries = txn.open_table(ENTRIES).unwrap();
            let mut rooms = txn.open_table(ROOMS).unwrap();
            for seq in 1..=3u64 {
                let stored = StoredEntry {
                    kind: EntryKind::Message,
                    time: 100,
                    payload: payload(seq),
                };
                entries
                    .insert(
                        key2(&ROOM.0, seq).as_slice(),
                        encode(&stored).unwrap().as_slice(),
                    )
                    .unwrap();
            }
            let mut record: RoomRecord =
                decode(rooms.get(ROOM.0.as_slice()).unwrap().unwrap().value()).unwrap();
            record.head = 3;
            record.bytes = 3 * crate::store::entry_cost(EntryKind::Message, 1024);
            rooms
                .insert(ROOM.0.as_slice(), encode(&record).unwrap().as_slice())
                .unwrap();
            txn.open_table(META).unwrap().insert("format", 4).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let ops = (4..=10).map(|seq| message(seq, 150)).collect();
    assert!(store.apply(ops).unwrap().iter().all(Result::is_ok));
    assert_reads(&store, 1, 10, 100, 1..11);
    assert_reads(&store, 5, 10, 100, 5..11);
    assert_eq!(stored_keys(&store), vec![1, 2, 3, 4]);
    let txn = store.db.begin_write().unwrap();
    assert_eq!(migrate::format_of(&txn).unwrap(), FORMAT);
}

#[test]
fn a_store_of_a_newer_format_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("format", FORMAT + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let refused = RedbStore::open(&path).err().expect("refused");
    assert!(
        matches!(refused, StoreError::NewerFormat { found, known } if found == FORMAT + 1 && known == FORMAT),
        "{refused}"
    );
    assert!(refused.to_string().contains("newer hearth-relay"));
    // Refused twice alike: opening it changed nothing.
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::NewerFormat { .. })
    ));
}
