//! The store's CPU per commit, without the disk: batches of appends to one room applied
//! to a redb store kept in memory (`RedbStore::in_memory`, with redb's default cache, not
//! the relay's 2 MiB), so no `fdatasync` is timed. A household's relay commits one
//! message at a time most of the time; that commit's CPU is on the path of every
//! acknowledgement (issue 15).
//!
//! Run: `cargo bench -p hearth-relay --bench store-commit`
//! Prints the median µs per commit of 1, 10 and 100 appends of 1 KiB over 7 rounds, each
//! on a new store and of 10,000 appends (about 10 MiB), so every round starts from the same
//! tree. For counts of instructions that do not depend on the machine's load, run the
//! binary under `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*RedbStore*apply*'` with `STORE_COMMIT_QUICK=1` (one round of 200
//! commits) and `STORE_COMMIT_APPENDS=1` (only commits of that many appends), and divide
//! the instructions by the commits it prints (the two commits that set the store up are
//! counted too).

use std::time::Instant;

use hearth_protocol::{AccountKey, AdminKey, CapHash, Handle, RoomId};
use hearth_relay::store::WriteOp;
use hearth_relay::{RedbStore, Store};

const ROOM: RoomId = RoomId([0x31; 16]);
const CAP: CapHash = CapHash([0; 32]);
const PAYLOAD: usize = 1024;

/// Appends per round (each round on a new store).
const APPENDS_PER_ROUND: usize = 10_000;

fn main() {
    let quick = std::env::var_os("STORE_COMMIT_QUICK").is_some();
    let rounds = if quick { 1 } else { 7 };
    let sizes = match std::env::var("STORE_COMMIT_APPENDS") {
        Ok(n) => vec![n
            .parse()
            .expect("STORE_COMMIT_APPENDS is a number of appends")],
        Err(_) => vec![1usize, 10, 100],
    };
    println!("store commit CPU (redb in memory, no fsync), {PAYLOAD} B appends to one room");
    for per_commit in sizes {
        let commits = if quick {
            200
        } else {
            (APPENDS_PER_ROUND / per_commit).max(1)
        };
        let mut per_round = Vec::new();
        for _ in 0..rounds {
            let store = store_with_room();
            let started = Instant::now();
            for _ in 0..commits {
                let ops = (0..per_commit).map(|_| append()).collect();
                let results = store.apply(ops).expect("the in-memory store works");
                assert!(results.iter().all(Result::is_ok), "an append was refused");
            }
            per_round.push(started.elapsed().as_secs_f64() * 1e6 / commits as f64);
        }
        per_round.sort_by(f64::total_cmp);
        let median = per_round[per_round.len() / 2];
        println!(
            "{per_commit:>4} append(s) per commit: median {median:8.1} µs per commit, {:6.2} µs per append ({} commits)",
            median / per_commit as f64,
            rounds * commits
        );
    }
}

/// A store with one account and [`ROOM`], created with no quota.
fn store_with_room() -> RedbStore {
    let store = RedbStore::in_memory().expect("an in-memory store opens");
    let account = AccountKey([1; 32]);
    let handle = Handle::new("alice").expect("a valid handle");
    let created = store
        .apply(vec![
            WriteOp::Register {
                account,
                handle,
                invite: None,
                open: true,
                now: 1,
            },
            WriteOp::CreateRoom {
                room: ROOM,
                cap_hash: CAP,
                retention_secs: None,
                now: 1,
                creator: account,
                admin: AdminKey([0xad; 32]),
                quota: u64::MAX,
                max_rooms: u64::MAX,
            },
        ])
        .expect("the in-memory store works");
    assert!(created.iter().all(Result::is_ok), "set-up refused");
    store
}

fn append() -> WriteOp {
    WriteOp::Append {
        room: ROOM,
        cap_hash: CAP,
        payload: vec![7; PAYLOAD],
        next_cap_hash: None,
        admins: None,
        now: 2,
        room_quota: u64::MAX,
    }
}
