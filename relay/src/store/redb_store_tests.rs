//! Unit tests of [`super::RedbStore`]: capability rotation, quotas, invites, batches.

use super::*;

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

fn append(
    store: &RedbStore,
    room: RoomId,
    cap: CapHash,
    author: AccountKey,
    next: Option<CapHash>,
    now: u64,
) -> OpResult {
    one(
        store,
        WriteOp::Append {
            room,
            cap_hash: cap,
            author,
            payload: vec![7; 10],
            next_cap_hash: next,
            now,
            quota: 1000,
        },
    )
}

#[test]
fn caps_rotate_and_old_epochs_end_at_their_commit() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let room = RoomId([9; 16]);
    let (c0, c1) = (CapHash([0; 32]), CapHash([1; 32]));
    one(
        &store,
        WriteOp::CreateRoom {
            room,
            cap_hash: c0,
            retention_secs: None,
            now: 1,
        },
    )
    .unwrap();
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
fn quota_is_charged_and_refunded_by_the_sweep() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    let room = RoomId([9; 16]);
    let c0 = CapHash([0; 32]);
    one(
        &store,
        WriteOp::CreateRoom {
            room,
            cap_hash: c0,
            retention_secs: Some(10),
            now: 1,
        },
    )
    .unwrap();
    for t in 0..100 {
        append(&store, room, c0, alice, None, t).unwrap();
    }
    assert_eq!(
        append(&store, room, c0, alice, None, 100).unwrap_err().code,
        ErrorCode::QuotaExceeded
    );
    assert_eq!(store.account(&alice).unwrap().unwrap().used_bytes, 1000);
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
            inbox: 0
        }
    );
    assert_eq!(store.account(&alice).unwrap().unwrap().used_bytes, 500);
    let entries = store.entries(&room, Seq(1), Seq(100), 1000).unwrap();
    assert_eq!(entries.first().unwrap().seq, Seq(51));
    assert_eq!(entries.len(), 50);
    assert_eq!(
        append(&store, room, c0, alice, None, 100).unwrap(),
        Applied::Appended {
            room,
            entry: Entry {
                seq: Seq(101),
                kind: EntryKind::Message,
                time: 100,
                payload: vec![7; 10]
            },
            ended: None,
        }
    );
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
fn key_packages_are_consumed_once_and_last_resort_stays() {
    let store = RedbStore::in_memory().unwrap();
    let alice = register(&store, 1, "alice");
    one(
        &store,
        WriteOp::PublishKeyPackages {
            account: alice,
            packages: vec![vec![1], vec![2]],
            last_resort: Some(vec![9]),
            quota: 1000,
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
    assert_eq!(store.key_package_stock(&alice).unwrap(), (0, true));
}
