//! Attacks on runs of messages (decision 0018): the same ops applied in batches (runs)
//! and one op per batch (single values only) must read, sweep, scan, charge and count
//! alike; rooms whose ids are next to each other bytewise never see each other's values;
//! hostile stored bytes are answered or refused, never a panic.

use super::*;
use crate::store::{SweepCursor, SweepItem};
use proptest::prelude::*;

/// The id of a room that differs from `[0x31; 16]` in its last byte only: `0x31` itself,
/// `0x30` just before it bytewise, `0x32` just after.
fn adjacent(last: u8) -> RoomId {
    let mut id = [0x31; 16];
    id[15] = last;
    RoomId(id)
}

/// The rooms of these tests, in the order of their keys: each next to the other.
fn rooms() -> [RoomId; 3] {
    [adjacent(0x30), adjacent(0x31), adjacent(0x32)]
}

/// The capability hash of a room's epoch `k` (epoch 0 is the one it is created with).
fn cap(k: u8) -> CapHash {
    CapHash([k; 32])
}

/// A capability hash no room ever has.
const NEVER: CapHash = CapHash([0xee; 32]);

/// A payload of `len` bytes saying which op wrote it.
fn payload(op: usize, len: usize) -> Vec<u8> {
    let mut p = vec![(op % 251) as u8; len];
    for (b, x) in p.iter_mut().zip((op as u64).to_be_bytes()) {
        *b = x;
    }
    p
}

/// A fresh store with [`rooms`], each created at time 1 with capability [`cap`]`(0)`.
fn fresh() -> RedbStore {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    for room in rooms() {
        create_room(&store, room, cap(0), alice, None);
    }
    store
}

/// An op of the generated histories, before the capabilities are filled in.
#[derive(Debug, Clone)]
enum Op {
    Message {
        room: usize,
        len: usize,
        time: u64,
    },
    Commit {
        room: usize,
        len: usize,
        time: u64,
    },
    /// A message under an ended capability (or one the room never had): refused.
    Stale {
        room: usize,
        len: usize,
    },
    /// A message over the room's quota: refused.
    Full {
        room: usize,
        len: usize,
    },
    Sweep {
        now: u64,
        retention: u64,
        max_deletions: usize,
    },
    Items {
        room: usize,
        through: u64,
        now: u64,
        retention: u64,
    },
    Retention {
        room: usize,
        secs: Option<u64>,
    },
    /// A message signed by the room's owner with the list of admins it already has (no
    /// commit: the list is not changed, and the batch is written out before it).
    Signed {
        room: usize,
        len: usize,
        time: u64,
    },
}

/// The store ops of `ops`, with each room's current capability (a commit under the current
/// capability with no quota is never refused, so the current one is known in advance).
fn writes(ops: &[Op]) -> Vec<WriteOp> {
    let mut epoch = [0u8; 3];
    let rooms = rooms();
    ops.iter()
        .enumerate()
        .map(|(i, op)| match *op {
            Op::Message { room, len, time } => WriteOp::Append {
                room: rooms[room],
                cap_hash: cap(epoch[room]),
                payload: payload(i, len),
                next_cap_hash: None,
                admins: None,
                now: time,
                room_quota: u64::MAX,
            },
            Op::Commit { room, len, time } => {
                let current = cap(epoch[room]);
                epoch[room] += 1;
                WriteOp::Append {
                    room: rooms[room],
                    cap_hash: current,
                    payload: payload(i, len),
                    next_cap_hash: Some(cap(epoch[room])),
                    admins: None,
                    now: time,
                    room_quota: u64::MAX,
                }
            }
            Op::Stale { room, len } => WriteOp::Append {
                room: rooms[room],
                cap_hash: epoch[room].checked_sub(1).map_or(NEVER, cap),
                payload: payload(i, len),
                next_cap_hash: None,
                admins: None,
                now: 100,
                room_quota: u64::MAX,
            },
            Op::Full { room, len } => WriteOp::Append {
                room: rooms[room],
                cap_hash: cap(epoch[room]),
                payload: payload(i, len),
                next_cap_hash: None,
                admins: None,
                now: 100,
                room_quota: 0,
            },
            Op::Sweep {
                now,
                retention,
                max_deletions,
            } => WriteOp::Sweep {
                now,
                retention_secs: retention,
                max_deletions,
            },
            Op::Items {
                room,
                through,
                now,
                retention,
            } => WriteOp::SweepItems {
                now,
                retention_secs: retention,
                items: vec![SweepItem::Entries {
                    room: rooms[room],
                    through,
                }],
            },
            Op::Signed { room, len, time } => WriteOp::Append {
                room: rooms[room],
                cap_hash: cap(epoch[room]),
                payload: payload(i, len),
                next_cap_hash: None,
                admins: Some((ADMIN, vec![ADMIN])),
                now: time,
                room_quota: u64::MAX,
            },
            Op::Retention { room, secs } => WriteOp::SetRetention {
                room: rooms[room],
                cap_hash: cap(epoch[room]),
                retention_secs: secs,
                admin: Some(ADMIN),
            },
        })
        .collect()
}

/// Applies `ops` to `store` in batches of the sizes `sizes` (taken in turn), returning each
/// op's result and the most entries one value held after any batch.
fn apply_in_batches(store: &RedbStore, ops: &[WriteOp], sizes: &[usize]) -> (Vec<OpResult>, u64) {
    let mut results = Vec::new();
    let mut longest = 0;
    let mut rest = ops;
    let mut sizes = sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
        let (batch, after) = rest.split_at(n);
        results.extend(store.apply(batch.to_vec()).unwrap());
        rest = after;
        let most = rooms()
            .iter()
            .flat_map(|r| values_of(store, r))
            .map(|(_, v)| runs::entries_in(&v).unwrap())
            .max()
            .unwrap_or(0);
        longest = longest.max(most);
    }
    (results, longest)
}

/// One stored entry, owned: seq, kind, time, payload.
type Flat = (u64, EntryKind, u64, Vec<u8>);

/// Every value of `room` in `entries` (key seq, raw value), in key order.
fn values_of(store: &RedbStore, room: &RoomId) -> Vec<(u64, Vec<u8>)> {
    let txn = store.db.begin_read().unwrap();
    let table = txn.open_table(ENTRIES).unwrap();
    let lo = key2(&room.0, 0);
    let hi = key2(&room.0, u64::MAX);
    table
        .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (tail_u64(k.value()), v.value().to_vec())
        })
        .collect()
}

/// Every entry of `room` as stored, in key order.
fn flat(store: &RedbStore, room: &RoomId) -> Vec<Flat> {
    values_of(store, room)
        .iter()
        .flat_map(|(seq, value)| {
            runs::entries_of(*seq, value)
                .unwrap()
                .into_iter()
                .map(|e| (e.seq, e.kind, e.time, e.payload.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What the layout of runs must keep whatever happened: values in order without overlap,
/// runs of messages only within [`runs::MAX_RUN_BYTES`] (a single message may be larger),
/// every entry between the room's first and head, its bytes what its entries cost, the
/// stats counting every entry.
fn check_layout(store: &RedbStore) {
    let mut total = 0u64;
    for room in rooms() {
        let record = store.room(&room).unwrap().unwrap();
        let mut next = 0u64;
        let mut bytes = 0u64;
        for (key, value) in values_of(store, &room) {
            let entries = runs::entries_of(key, &value).unwrap();
            assert!(!entries.is_empty(), "an empty value at {key}");
            assert_eq!(runs::entries_in(&value).unwrap(), entries.len() as u64);
            assert!(key >= next, "value at {key} overlaps the one before");
            if entries.len() > 1 {
                assert!(
                    value.len() <= runs::MAX_RUN_BYTES,
                    "a run of {} entries takes {} bytes",
                    entries.len(),
                    value.len()
                );
                assert!(entries.iter().all(|e| e.kind == EntryKind::Message));
            }
            for e in &entries {
                assert!(
                    e.seq >= record.first && e.seq <= record.head,
                    "seq {} outside {}..={}",
                    e.seq,
                    record.first,
                    record.head
                );
                bytes += crate::store::entry_cost(e.kind, e.payload.len());
            }
            next = key + entries.len() as u64;
            total += entries.len() as u64;
        }
        assert_eq!(record.bytes, bytes, "the room's bytes are what it holds");
    }
    assert_eq!(store.stats().unwrap().entries, total);
}

/// A read both stores must answer alike: room, from, to, limit, byte budget.
type Read = (usize, u64, u64, u32, usize);

/// Asserts that the batched store `runs` and the model `singles` hold and read the same.
fn assert_same(runs: &RedbStore, singles: &RedbStore, reads: &[Read]) {
    check_layout(runs);
    check_layout(singles);
    for room in rooms() {
        let record = runs.room(&room).unwrap().unwrap();
        assert_eq!(Some(&record), singles.room(&room).unwrap().as_ref());
        assert_eq!(flat(runs, &room), flat(singles, &room), "{room:?}");
        assert!(
            values_of(singles, &room)
                .iter()
                .all(|(_, v)| runs::entries_in(v).unwrap() == 1),
            "the model holds single entries only"
        );
        let read = |store: &RedbStore, from: u64, to: u64, limit: u32, max: usize| {
            store
                .entries_within(&room, Seq(from), Seq(to), limit, max)
                .unwrap()
        };
        for from in (0..=record.head.saturating_add(2)).chain([u64::MAX - 1, u64::MAX]) {
            for (to, limit, max) in [
                (u64::MAX, 10_000, usize::MAX),
                (from, 10_000, usize::MAX),
                (from.saturating_add(3), 2, usize::MAX),
                (u64::MAX, 10_000, 0),
                (u64::MAX, 10_000, 40_000),
                (record.head, 1, usize::MAX),
            ] {
                assert_eq!(
                    read(runs, from, to, limit, max),
                    read(singles, from, to, limit, max),
                    "{room:?} {from}..={to} limit {limit} budget {max}"
                );
            }
        }
    }
    for &(room, from, to, limit, max) in reads {
        let room = rooms()[room];
        assert_eq!(
            runs.entries_within(&room, Seq(from), Seq(to), limit, max)
                .unwrap(),
            singles
                .entries_within(&room, Seq(from), Seq(to), limit, max)
                .unwrap(),
            "{room:?} {from}..={to} limit {limit} budget {max}"
        );
    }
    let (a, b) = (runs.stats().unwrap(), singles.stats().unwrap());
    assert_eq!((a.entries, a.bytes), (b.entries, b.bytes));
    // The sweeper's scans, followed from cursor to cursor (a few: without deleting what
    // they find, a scan cut short inside a room names that room again), find the same.
    for (now, retention) in [(250, 100), (1_200, 1_000), (u64::MAX, 0), (5_000, 60)] {
        for max_rows in [1, 2, 3, 7, 4096] {
            let mut cursor = Some(SweepCursor::default());
            for _ in 0..8 {
                let Some(c) = cursor else { break };
                let x = runs.sweep_scan(&c, now, retention, max_rows).unwrap();
                let y = singles.sweep_scan(&c, now, retention, max_rows).unwrap();
                assert_eq!(
                    x, y,
                    "scan at {now}, retention {retention}, {max_rows} rows"
                );
                cursor = x.next;
            }
        }
    }
}

/// Applies `ops` in batches of `sizes` to one store and one op per batch to another, and
/// checks they answered, hold and read alike; then sweeps both in the same steps. Returns
/// the most entries one value of the batched store held after any of its batches.
fn compare(ops: &[Op], sizes: &[usize], reads: &[Read]) -> u64 {
    let ops = writes(ops);
    let (runs, singles) = (fresh(), fresh());
    let (a, longest) = apply_in_batches(&runs, &ops, sizes);
    let (b, _) = apply_in_batches(&singles, &ops, &[1]);
    assert_eq!(a, b, "the ops answered alike");
    assert_same(&runs, &singles, reads);
    // Sweep both by items up to each seq in turn, then all that is left.
    let head = rooms()
        .iter()
        .map(|r| runs.room(r).unwrap().unwrap().head)
        .max()
        .unwrap_or(0);
    for through in (0..=head).step_by(7) {
        let items = rooms()
            .iter()
            .map(|&room| SweepItem::Entries { room, through })
            .collect::<Vec<_>>();
        let op = WriteOp::SweepItems {
            now: 1_200,
            retention_secs: 1_000,
            items,
        };
        assert_eq!(one(&runs, op.clone()), one(&singles, op));
    }
    assert_same(&runs, &singles, reads);
    let op = WriteOp::Sweep {
        now: u64::MAX,
        retention_secs: 0,
        max_deletions: usize::MAX,
    };
    assert_eq!(one(&runs, op.clone()), one(&singles, op));
    assert_same(&runs, &singles, reads);
    longest
}

fn lengths() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..40,
        2 => Just(1_000usize),
        1 => prop::sample::select(vec![
            20_000usize,
            32_740,
            65_470,
            65_488,
            65_489,
            65_490,
            runs::MAX_RUN_BYTES,
            70_000,
        ]),
    ]
}

fn times() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![0u64, 100, 150, 200, 1_000, u64::MAX])
}

fn ops() -> impl Strategy<Value = Op> {
    let room = 0usize..3;
    prop_oneof![
        12 => (room.clone(), lengths(), times())
            .prop_map(|(room, len, time)| Op::Message { room, len, time }),
        2 => (room.clone(), 0usize..50, times())
            .prop_map(|(room, len, time)| Op::Commit { room, len, time }),
        1 => (room.clone(), 0usize..50).prop_map(|(room, len)| Op::Stale { room, len }),
        1 => (room.clone(), 0usize..50).prop_map(|(room, len)| Op::Full { room, len }),
        1 => (room.clone(), 0usize..50, times())
            .prop_map(|(room, len, time)| Op::Signed { room, len, time }),
        1 => (
            prop::sample::select(vec![150u64, 250, 1_200, 5_000, u64::MAX]),
            prop::sample::select(vec![0u64, 60, 1_000, u64::MAX]),
            prop::sample::select(vec![0usize, 1, 5, 10_000]),
        )
            .prop_map(|(now, retention, max_deletions)| Op::Sweep {
                now,
                retention,
                max_deletions
            }),
        1 => (
            room.clone(),
            prop_oneof![0u64..60, Just(u64::MAX)],
            prop::sample::select(vec![150u64, 250, 1_200, u64::MAX]),
            prop::sample::select(vec![0u64, 60, 1_000]),
        )
            .prop_map(|(room, through, now, retention)| Op::Items {
                room,
                through,
                now,
                retention
            }),
        1 => (
            room,
            prop::sample::select(vec![None, Some(0u64), Some(50), Some(1_000)])
        )
            .prop_map(|(room, secs)| Op::Retention { room, secs }),
    ]
}

fn reads() -> impl Strategy<Value = Vec<Read>> {
    let seq = || prop_oneof![0u64..70, Just(u64::MAX)];
    prop::collection::vec(
        (
            0usize..3,
            seq(),
            seq(),
            prop_oneof![Just(u32::MAX), 0u32..8],
            prop_oneof![Just(usize::MAX), 0usize..3_000, Just(65_489usize)],
        ),
        0..16,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any history of messages, commits, refusals, retention changes and sweeps, in any
    /// batches: the store of runs answers as the store of single entries.
    #[test]
    fn batches_of_runs_hold_and_read_as_single_entries(
        ops in prop::collection::vec(ops(), 1..120),
        sizes in prop::collection::vec(1usize..16, 1..6),
        reads in reads(),
    ) {
        compare(&ops, &sizes, &reads);
    }
}

/// Messages at the cap of a run: values filled to the byte, a time that takes 10 bytes, a
/// message larger than the cap between smaller ones, empty payloads.
#[test]
fn runs_at_the_cap_and_messages_past_it_read_as_single_entries() {
    let m = |len, time| Op::Message { room: 1, len, time };
    let ops = vec![
        m(65_480, 1),
        m(0, 1),
        m(0, 1),
        m(0, 1),
        m(0, 1),
        m(runs::MAX_RUN_BYTES, 100),
        m(1, 100),
        m(70_000, u64::MAX),
        m(70_000, 0),
        m(0, u64::MAX),
        m(65_470, u64::MAX),
        m(1, u64::MAX),
        m(65_489, 200),
        m(1, 200),
        m(1, 200),
        Op::Message {
            room: 2,
            len: 3,
            time: 200,
        },
        m(2, 200),
    ];
    assert!(compare(&ops, &[ops.len()], &[]) > 1);
    let ops = writes(&ops);
    let store = fresh();
    assert!(store.apply(ops).unwrap().iter().all(Result::is_ok));
    let values = values_of(&store, &rooms()[1]);
    assert!(values.iter().any(|(_, v)| v.len() == 70_000 + 1 + 10 + 3));
    assert!(values
        .iter()
        .any(|(_, v)| v.len() > 70_000 + 3 && runs::entries_in(v).unwrap() == 1));
}

/// Many empty messages: the count of a run takes more than one byte past 127 entries.
#[test]
fn a_run_of_thousands_of_empty_messages_counts_and_reads_right() {
    let ops: Vec<Op> = (0..3_000)
        .map(|i| Op::Message {
            room: 1,
            len: 0,
            time: if i < 1_500 { 100 } else { 200 },
        })
        .collect();
    let store = fresh();
    let writes = writes(&ops);
    assert!(store
        .apply(writes.clone())
        .unwrap()
        .iter()
        .all(Result::is_ok));
    let values = values_of(&store, &rooms()[1]);
    assert!(values.len() < 5, "{} values", values.len());
    check_layout(&store);
    assert_eq!(store.stats().unwrap().entries, 3_000);
    let read = store
        .entries(&rooms()[1], Seq(2_999), Seq(u64::MAX), 10)
        .unwrap();
    assert_eq!(
        read.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        [2_999, 3_000]
    );
    // A sweep ending inside the run, and the reads after it.
    let swept = one(
        &store,
        WriteOp::Sweep {
            now: 1_150,
            retention_secs: 1_000,
            max_deletions: 10_000,
        },
    );
    assert!(
        matches!(swept, Ok(Applied::Swept { entries: 1_500, .. })),
        "{swept:?}"
    );
    check_layout(&store);
    let record = store.room(&rooms()[1]).unwrap().unwrap();
    assert_eq!((record.first, record.head), (1_501, 3_000));
    assert_eq!(
        record.bytes,
        1_500 * crate::store::entry_cost(EntryKind::Message, 0)
    );
    let read = store
        .entries(&rooms()[1], Seq(0), Seq(u64::MAX), 5)
        .unwrap();
    assert_eq!(read[0].seq, Seq(1_501));
}

/// Rooms whose ids are next to each other bytewise: a read of one, from any seq, never
/// starts in the value of the room before it, nor reads one of the room after it.
#[test]
fn a_read_never_steps_into_a_neighbouring_rooms_values() {
    let [before, middle, after] = rooms();
    let store = fresh();
    let message = |room, n: usize| WriteOp::Append {
        room,
        cap_hash: cap(0),
        payload: vec![n as u8; 100],
        next_cap_hash: None,
        admins: None,
        now: 100,
        room_quota: u64::MAX,
    };
    // The room before: one run of 50; the middle room: nothing yet; the room after: 50.
    store
        .apply((0..50).map(|n| message(before, n)).collect())
        .unwrap();
    store
        .apply((0..50).map(|n| message(after, n)).collect())
        .unwrap();
    for from in [0, 1, 2, 25, 50, 51, u64::MAX - 1, u64::MAX] {
        for to in [0, 1, 50, u64::MAX] {
            assert!(
                store
                    .entries(&middle, Seq(from), Seq(to), u32::MAX)
                    .unwrap()
                    .is_empty(),
                "{from}..={to}"
            );
        }
    }
    // The middle room takes 3 messages: every read of it gives them only.
    store
        .apply((0..3).map(|n| message(middle, 200 + n)).collect())
        .unwrap();
    for from in [0, 1, 2, 3, 4, 25, 50, 51, u64::MAX] {
        let read = store
            .entries(&middle, Seq(from), Seq(u64::MAX), u32::MAX)
            .unwrap();
        let expected: Vec<u64> = (from.max(1)..=3).collect();
        assert_eq!(read.iter().map(|e| e.seq.0).collect::<Vec<_>>(), expected);
        assert!(read.iter().all(|e| e.payload[0] >= 200));
    }
    assert_eq!(
        store
            .entries(&after, Seq(0), Seq(u64::MAX), u32::MAX)
            .unwrap()
            .len(),
        50
    );
    // The ids at the ends of the key space.
    for id in [[0u8; 16], [0xff; 16]] {
        let room = RoomId(id);
        assert!(store
            .entries(&room, Seq(0), Seq(u64::MAX), u32::MAX)
            .unwrap()
            .is_empty());
        assert!(store
            .entries(&room, Seq(u64::MAX), Seq(u64::MAX), u32::MAX)
            .unwrap()
            .is_empty());
    }
    // Sweeping the room before leaves the others whole.
    one(
        &store,
        WriteOp::SweepItems {
            now: 5_000,
            retention_secs: 1_000,
            items: vec![SweepItem::Entries {
                room: before,
                through: u64::MAX,
            }],
        },
    )
    .unwrap();
    check_layout(&store);
    assert_eq!(store.stats().unwrap().entries, 53);
}

/// Each message of one batch to one room at a different time: the sweep keeps the first
/// message not due and everything after it, as it does for single entries.
#[test]
fn times_that_go_back_inside_a_run_sweep_as_single_entries() {
    let m = |time| Op::Message {
        room: 1,
        len: 10,
        time,
    };
    let ops = vec![
        m(100),
        m(200),
        m(100),
        m(1_000),
        m(0),
        Op::Commit {
            room: 1,
            len: 5,
            time: 0,
        },
        m(100),
        m(150),
        m(100),
        Op::Sweep {
            now: 1_180,
            retention: 1_000,
            max_deletions: 10_000,
        },
        m(0),
        m(0),
        Op::Items {
            room: 1,
            through: 9,
            now: 1_250,
            retention: 1_000,
        },
        Op::Sweep {
            now: 2_100,
            retention: 1_000,
            max_deletions: 1,
        },
    ];
    let longest = [vec![ops.len()], vec![3], vec![2, 5], vec![9, 1]]
        .iter()
        .map(|sizes| compare(&ops, sizes, &[(1, 2, 4, 10, usize::MAX)]))
        .max();
    assert!(longest > Some(1), "some batch stored a run");
}

/// Commits the relay still keeps between expired messages (a room's timer shorter than
/// the relay's retention): the messages around them go, the commits stay readable.
#[test]
fn kept_commits_between_expired_runs_sweep_as_single_entries() {
    let m = |time| Op::Message {
        room: 1,
        len: 30,
        time,
    };
    let c = |time| Op::Commit {
        room: 1,
        len: 7,
        time,
    };
    let ops = vec![
        Op::Retention {
            room: 1,
            secs: Some(50),
        },
        m(100),
        m(100),
        c(100),
        m(100),
        m(100),
        m(100),
        c(150),
        m(150),
        m(900),
        m(100),
        Op::Sweep {
            now: 1_000,
            retention: 1_000,
            max_deletions: 10_000,
        },
        m(100),
        Op::Items {
            room: 1,
            through: 5,
            now: 1_120,
            retention: 1_000,
        },
        Op::Sweep {
            now: 1_120,
            retention: 1_000,
            max_deletions: 10_000,
        },
    ];
    let longest = [vec![ops.len()], vec![4], vec![1, 6, 2], vec![11, 1]]
        .iter()
        .map(|sizes| compare(&ops, sizes, &[]))
        .max();
    assert!(longest > Some(1), "some batch stored a run");
    let store = fresh();
    apply_in_batches(&store, &writes(&ops), &[ops.len()]);
    let read = store
        .entries(&rooms()[1], Seq(0), Seq(u64::MAX), u32::MAX)
        .unwrap();
    assert!(read.iter().any(|e| e.kind == EntryKind::Commit));
}

/// Messages then a sweep, a read of the room's record, a commit and more messages, in one
/// batch: the run pending in the transaction is written before any of them reads.
#[test]
fn a_pending_run_is_written_before_any_op_reads_the_log() {
    let m = |room, time| Op::Message {
        room,
        len: 20,
        time,
    };
    let ops = vec![
        m(1, 100),
        m(1, 100),
        m(1, 100),
        Op::Sweep {
            now: 1_150,
            retention: 1_000,
            max_deletions: 10_000,
        },
        m(1, 100),
        m(1, 200),
        Op::Items {
            room: 1,
            through: 4,
            now: 1_150,
            retention: 1_000,
        },
        m(1, 200),
        m(0, 100),
        m(1, 100),
        Op::Items {
            room: 1,
            through: u64::MAX,
            now: 1_150,
            retention: 1_000,
        },
        m(2, 100),
        Op::Commit {
            room: 2,
            len: 3,
            time: 100,
        },
        m(2, 100),
        Op::Retention {
            room: 2,
            secs: Some(10),
        },
        m(2, 100),
        Op::Sweep {
            now: 200,
            retention: 1_000,
            max_deletions: 10_000,
        },
    ];
    assert!(compare(&ops, &[3, 1, 3], &[]) > 1);
    compare(&ops, &[ops.len()], &[]);
    let store = fresh();
    let (results, _) = apply_in_batches(&store, &writes(&ops), &[ops.len()]);
    // The first sweep saw the three messages of the pending run.
    assert!(
        matches!(results[3], Ok(Applied::Swept { entries: 3, .. })),
        "{:?}",
        results[3]
    );
}

/// A sweep op whose `max_deletions` stops it after its first scan, and scans of a few rows
/// that end inside a run: followed to the end they delete what one sweep does.
#[test]
fn a_sweep_cut_short_goes_on_from_inside_a_run() {
    let ops: Vec<Op> = (0..200)
        .map(|i| Op::Message {
            room: i / 10 % 2 + 1,
            len: if i % 7 == 0 { 5_000 } else { 100 },
            time: if i < 150 { 100 } else { 200 },
        })
        .collect();
    let mut ops2 = ops.clone();
    ops2.push(Op::Sweep {
        now: 1_150,
        retention: 1_000,
        max_deletions: 1,
    });
    assert!(compare(&ops2, &[200, 1], &[]) > 1);
    // By the sweeper's scans of 5 rows.
    let (runs, singles) = (fresh(), fresh());
    let w = writes(&ops);
    apply_in_batches(&runs, &w, &[40, 60, 100]);
    apply_in_batches(&singles, &w, &[1]);
    for store in [&runs, &singles] {
        let mut cursor = Some(SweepCursor::default());
        while let Some(c) = cursor {
            let found = store.sweep_scan(&c, 1_150, 1_000, 5).unwrap();
            one(
                store,
                WriteOp::SweepItems {
                    now: 1_150,
                    retention_secs: 1_000,
                    items: found.items,
                },
            )
            .unwrap();
            cursor = found.next;
        }
    }
    assert_same(&runs, &singles, &[]);
    let left: u64 = rooms().iter().map(|r| flat(&runs, r).len() as u64).sum();
    assert_eq!(left, 50);
}

/// Sweep items through seqs before the room's first, at it, past its head, 0 and
/// `u64::MAX`, on a room whose log is runs.
#[test]
fn sweep_items_through_any_seq_delete_only_what_is_due() {
    let mut ops: Vec<Op> = (0..40)
        .map(|i| Op::Message {
            room: 1,
            len: 2_000,
            time: if i < 30 { 100 } else { 200 },
        })
        .collect();
    for through in [0, 1, 5, 3, 5, 31, 64, 64, 200, u64::MAX, 0] {
        ops.push(Op::Items {
            room: 1,
            through,
            now: 1_150,
            retention: 1_000,
        });
    }
    assert!(compare(&ops, &[40, 3], &[]) > 1);
}

/// Writes `value` under `room` ++ `seq` in `entries` as it is, and sets the room's record
/// to `first..=head`.
fn plant(store: &RedbStore, room: &RoomId, values: &[(u64, Vec<u8>)], first: u64, head: u64) {
    let txn = store.db.begin_write().unwrap();
    {
        let mut entries = txn.open_table(ENTRIES).unwrap();
        for (seq, value) in values {
            entries
                .insert(key2(&room.0, *seq).as_slice(), value.as_slice())
                .unwrap();
        }
        let mut table = txn.open_table(ROOMS).unwrap();
        let mut record: RoomRecord =
            decode(table.get(room.0.as_slice()).unwrap().unwrap().value()).unwrap();
        record.first = first;
        record.head = head;
        table
            .insert(room.0.as_slice(), encode(&record).unwrap().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

/// Every read and write that touches a room's log, on whatever it holds: each may answer
/// or refuse, none may panic.
fn touch_everything(store: &RedbStore, room: &RoomId) {
    for from in [0, 1, 2, 3, 1 << 60, u64::MAX - 2, u64::MAX - 1, u64::MAX] {
        for (to, limit, max) in [
            (u64::MAX, u32::MAX, usize::MAX),
            (from, 1, 0),
            (from.saturating_add(2), 3, 10),
        ] {
            let _ = store.entries_within(room, Seq(from), Seq(to), limit, max);
        }
    }
    let _ = store.stats();
    let _ = store.inspect();
    for max_rows in [1, 3, 4096] {
        let _ = store.sweep_scan(&SweepCursor::default(), u64::MAX, 0, max_rows);
    }
    for through in [0, 1, 5, u64::MAX - 1, u64::MAX] {
        let _ = store.apply(vec![WriteOp::SweepItems {
            now: u64::MAX,
            retention_secs: 0,
            items: vec![SweepItem::Entries {
                room: *room,
                through,
            }],
        }]);
    }
    let _ = store.apply(vec![WriteOp::Sweep {
        now: u64::MAX,
        retention_secs: 0,
        max_deletions: usize::MAX,
    }]);
    let _ = store.apply(vec![WriteOp::Append {
        room: *room,
        cap_hash: cap(0),
        payload: vec![1; 3],
        next_cap_hash: None,
        admins: None,
        now: 5,
        room_quota: u64::MAX,
    }]);
    let _ = store.entries(room, Seq(0), Seq(u64::MAX), u32::MAX);
}

/// The postcard varint of `n`.
fn varint(n: u64) -> Vec<u8> {
    postcard::to_allocvec(&n).unwrap()
}

/// Values that are no stored value, or stored values of counts no relay writes: a run
/// header claiming 2^60 or 2^64 - 1 entries (postcard must not allocate for the count),
/// a run of none or of one, lengths past the value, variants past the last.
fn hostile_values() -> Vec<Vec<u8>> {
    let mut values = vec![
        vec![],
        vec![2],
        vec![2, 0],
        vec![2, 1, 5, 1, 9],
        vec![3, 0, 0],
        vec![0xff; 12],
        vec![1, 0, 0],
        vec![0, 1],
    ];
    for count in [1u64 << 60, u64::MAX, u64::from(u32::MAX), 1 << 20] {
        let mut v = vec![2];
        v.extend(varint(count));
        v.extend([5, 1, 9, 5, 1, 9]);
        values.push(v);
    }
    // A message whose payload length says 2^60.
    let mut v = vec![0];
    v.extend(varint(5));
    v.extend(varint(1 << 60));
    v.extend([1, 2, 3]);
    values.push(v);
    // A valid run of 5 (it overlaps whatever is planted after it).
    let mut run = runs::PendingRun::new(rooms()[1], 0);
    for t in 0..5 {
        run.push(t, &[t as u8; 4]).unwrap();
    }
    values.push(run.value().unwrap());
    values
}

#[test]
fn hostile_values_in_the_log_are_refused_or_read_never_a_panic() {
    for value in hostile_values() {
        for (seqs, first, head) in [
            (vec![1, 3], 1, 10),
            (vec![0], 0, 3),
            (vec![2], 3, 4),
            (vec![u64::MAX - 3, u64::MAX - 1], 1, u64::MAX - 1),
        ] {
            let store = fresh();
            let room = rooms()[1];
            let values: Vec<(u64, Vec<u8>)> = seqs.iter().map(|&s| (s, value.clone())).collect();
            plant(&store, &room, &values, first, head);
            touch_everything(&store, &room);
        }
    }
}

/// A store whose room [`rooms`]`[1]` (returned) holds a run of two messages at time 5 at
/// seqs `u64::MAX - 1` and `u64::MAX`, its record saying so (a damaged store).
fn a_log_at_the_end_of_the_seq_space() -> (RedbStore, RoomId) {
    let store = fresh();
    let room = rooms()[1];
    let mut run = runs::PendingRun::new(room, u64::MAX - 1);
    run.push(5, b"a").unwrap();
    run.push(5, b"b").unwrap();
    plant(
        &store,
        &room,
        &[(u64::MAX - 1, run.value().unwrap())],
        u64::MAX - 1,
        u64::MAX,
    );
    (store, room)
}

/// A run whose last seqs are at the end of the seq space, in a room whose head is
/// `u64::MAX` (a corrupt record): the scan and the sweep compute the seq after the last
/// one they delete, `u64::MAX + 1`.
#[test]
fn a_log_ending_at_the_last_seq_sweeps_without_overflow() {
    let (store, room) = a_log_at_the_end_of_the_seq_space();
    let scan = store
        .sweep_scan(&SweepCursor::default(), 1_000, 10, 4096)
        .unwrap();
    assert!(scan
        .items
        .iter()
        .any(|i| matches!(i, SweepItem::Entries { through, .. } if *through == u64::MAX)));
    let swept = store
        .apply(vec![WriteOp::Sweep {
            now: 1_000,
            retention_secs: 10,
            max_deletions: 100,
        }])
        .unwrap();
    assert!(matches!(swept[0], Ok(Applied::Swept { entries: 2, .. })));
    assert_eq!(store.room(&room).unwrap().unwrap().first, u64::MAX);
}

/// The same log swept by an item through `u64::MAX` (no scan): the sweep of the room's
/// entries computes the seq after the last it deletes.
#[test]
fn sweep_items_through_the_last_seq_do_not_overflow() {
    let (store, room) = a_log_at_the_end_of_the_seq_space();
    let swept = store
        .apply(vec![WriteOp::SweepItems {
            now: 1_000,
            retention_secs: 10,
            items: vec![SweepItem::Entries {
                room,
                through: u64::MAX,
            }],
        }])
        .unwrap();
    assert!(matches!(swept[0], Ok(Applied::Swept { entries: 2, .. })));
    assert!(store
        .entries(&room, Seq(0), Seq(u64::MAX), 10)
        .unwrap()
        .is_empty());
}

/// A room whose record starts its log at seq 3 while a run under seq 1 still holds seqs 1
/// and 2 (a damaged store: a sweep always rewrites a run from its first kept entry). The
/// sweep counts and weighs only the entries from the record's first on, and the two
/// below it, although recent, neither stop it nor move the log's start back: they go
/// with their run.
#[test]
fn entries_below_the_records_first_are_neither_counted_nor_kept_by_a_sweep() {
    let store = fresh();
    let room = rooms()[0];
    let mut run = runs::PendingRun::new(room, 1);
    for (time, text) in [(995, "a"), (995, "b"), (5, "c"), (5, "d"), (5, "e")] {
        run.push(time, text.as_bytes()).unwrap();
    }
    plant(&store, &room, &[(1, run.value().unwrap())], 3, 5);
    let swept = store
        .apply(vec![WriteOp::SweepItems {
            now: 1_000,
            retention_secs: 10,
            items: vec![SweepItem::Entries { room, through: 5 }],
        }])
        .unwrap();
    assert!(
        matches!(swept[0], Ok(Applied::Swept { entries: 3, .. })),
        "{swept:?}"
    );
    assert_eq!(store.room(&room).unwrap().unwrap().first, 6);
    assert!(values_of(&store, &room).is_empty());
}

/// A room record with head `u64::MAX` (corrupt): an append must be refused, not overflow.
#[test]
fn an_append_to_a_room_at_the_last_seq_does_not_overflow() {
    let store = fresh();
    let room = rooms()[1];
    plant(&store, &room, &[], 1, u64::MAX);
    let results = store
        .apply(vec![WriteOp::Append {
            room,
            cap_hash: cap(0),
            payload: vec![1],
            next_cap_hash: None,
            admins: None,
            now: 5,
            room_quota: u64::MAX,
        }])
        .unwrap();
    let refused = results[0].as_ref().unwrap_err();
    assert_eq!(refused.code, ErrorCode::Internal);
    assert_eq!(store.room(&room).unwrap().unwrap().head, u64::MAX);
}

/// A run header claiming 2^60 entries: refused as corrupt by reads, counted without
/// allocating by stats (saturating), and the sweep refuses it too.
#[test]
fn a_run_header_with_a_huge_count_is_corrupt_not_an_allocation() {
    let store = fresh();
    let room = rooms()[1];
    let mut huge = vec![2];
    huge.extend(varint(1 << 60));
    huge.extend([5, 1, 9]);
    plant(&store, &room, &[(1, huge.clone()), (2, huge)], 1, 2);
    assert!(matches!(
        store.entries(&room, Seq(1), Seq(5), 10),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.entries(&room, Seq(2), Seq(2), 10),
        Err(StoreError::Corrupt(_))
    ));
    // The stats read headers only: the count saturates rather than overflows.
    assert_eq!(store.stats().unwrap().entries, 1 << 61);
    assert!(store
        .sweep_scan(&SweepCursor::default(), u64::MAX, 0, 4096)
        .is_err());
    assert!(store
        .apply(vec![WriteOp::Sweep {
            now: u64::MAX,
            retention_secs: 0,
            max_deletions: 10,
        }])
        .is_err());
    let mut max = vec![2];
    max.extend(varint(u64::MAX));
    plant(&store, &room, &[(3, max.clone()), (4, max)], 1, 4);
    assert_eq!(store.stats().unwrap().entries, u64::MAX);
}

/// A store of format 5 with runs, closed and opened again: it reads the same, stays of
/// format 5 and takes more runs. A store of any newer format is refused and left as is.
#[test]
fn a_store_of_runs_reopens_as_it_was_and_newer_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.redb");
    let ops: Vec<Op> = (0..150)
        .map(|i| Op::Message {
            room: i % 3,
            len: if i % 10 == 0 { 66_000 } else { 900 },
            time: 100 + i as u64,
        })
        .chain([
            Op::Commit {
                room: 1,
                len: 8,
                time: 300,
            },
            Op::Message {
                room: 1,
                len: 8,
                time: 300,
            },
        ])
        .collect();
    let w = writes(&ops);
    let before: Vec<Vec<Flat>>;
    {
        let store = RedbStore::open(&path).unwrap();
        let alice = register(&store, 1, "alice");
        for room in rooms() {
            create_room(&store, room, cap(0), alice, None);
        }
        apply_in_batches(&store, &w, &[50, 52]);
        check_layout(&store);
        before = rooms().iter().map(|r| flat(&store, r)).collect();
    }
    {
        let store = RedbStore::open(&path).unwrap();
        let after: Vec<Vec<Flat>> = rooms().iter().map(|r| flat(&store, r)).collect();
        assert_eq!(before, after);
        check_layout(&store);
        let txn = store.db.begin_write().unwrap();
        assert_eq!(migrate::format_of(&txn).unwrap(), FORMAT);
        drop(txn);
        let more: Vec<WriteOp> = (0..10)
            .map(|i| WriteOp::Append {
                room: rooms()[0],
                cap_hash: cap(0),
                payload: vec![i; 10],
                next_cap_hash: None,
                admins: None,
                now: 400,
                room_quota: u64::MAX,
            })
            .collect();
        assert!(store.apply(more).unwrap().iter().all(Result::is_ok));
        check_layout(&store);
        // A later build marks the store as newer.
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("format", u64::MAX)
            .unwrap();
        txn.commit().unwrap();
    }
    for _ in 0..2 {
        assert!(matches!(
            RedbStore::open(&path),
            Err(StoreError::NewerFormat {
                found: u64::MAX,
                known: FORMAT
            })
        ));
    }
}
