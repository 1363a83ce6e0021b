//! What the relay reads back from its store when values on disk are not what it wrote (a
//! damaged SD card, a file restored from elsewhere): every value type the tables hold,
//! decoded by the store's own reads and by the writes that read before they write. The
//! input fills a fresh in-memory store with raw values under a few fixed keys (the ids
//! the operations below use), then runs reads and writes; the store must answer or
//! refuse (`StoreError::Corrupt`), never panic. Room entries are single entries or runs
//! of messages (decision 0018): both come from the raw values and from the ops' batches.
#![no_main]

use arbitrary::Arbitrary;
use hearth_protocol::{AccountKey, AdminKey, CapHash, Handle, KeyRotation, RoomId, Seq, Signature};
use hearth_relay::store::{
    AuditRecord, InviteRecord, ListingRecord, SweepCursor, SweepItem, WriteOp,
};
use hearth_relay::{RedbStore, Store};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_750_000_000;
const ROOM: RoomId = RoomId([0x52; 16]);
const QUOTA: u64 = 1 << 20;

fn account(which: bool) -> AccountKey {
    AccountKey(if which { [0xa1; 32] } else { [0xb2; 32] })
}

fn handle(which: bool) -> Handle {
    Handle::new(if which { "dave" } else { "erin" }).expect("a valid handle")
}

/// One of two admin pseudonyms.
fn admin(which: bool) -> AdminKey {
    AdminKey([if which { 0xa1 } else { 0xa2 }; 32])
}

fn cap(c: u8) -> CapHash {
    CapHash([c; 32])
}

fn key2(a: &[u8], n: u64) -> Vec<u8> {
    let mut key = a.to_vec();
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// Where a value goes: the keys the store's own code uses for the fixed ids.
#[derive(Arbitrary, Debug)]
enum Key {
    Account(bool),
    Handle(bool),
    Room,
    /// Inbox entries, KeyPackages: account ++ big-endian number.
    AccountSeq(bool, u8),
    /// Room entries, commit capabilities: room ++ big-endian seq.
    RoomSeq(u8),
    /// The same, `n` before the last seq there is (a damaged room's log at the end of
    /// the seq space, with a room record whose head is near `u64::MAX`).
    RoomSeqFromEnd(u8),
    /// Ended epochs: room ++ capability hash.
    RoomCap(u8),
    /// A used last-resort marker.
    Used(bool),
    Raw(Vec<u8>),
}

impl Key {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Account(a) => account(*a).0.to_vec(),
            Key::Handle(h) => handle(*h).as_str().as_bytes().to_vec(),
            Key::Room => ROOM.0.to_vec(),
            Key::AccountSeq(a, n) => key2(&account(*a).0, u64::from(*n)),
            Key::RoomSeq(n) => key2(&ROOM.0, u64::from(*n)),
            Key::RoomSeqFromEnd(n) => key2(&ROOM.0, u64::MAX - u64::from(*n)),
            Key::RoomCap(c) => [ROOM.0.as_slice(), &cap(*c).0].concat(),
            Key::Used(a) => [account(*a).0.as_slice(), b"/used"].concat(),
            Key::Raw(bytes) => bytes.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Value {
    table: u8,
    key: Key,
    value: Vec<u8>,
}

/// Operations the relay runs on its own (ids fixed, arguments sane): only the stored
/// values are hostile.
#[derive(Arbitrary, Debug)]
enum Op {
    Register {
        which: bool,
        invite: Option<u8>,
        open: bool,
    },
    Authenticate(bool),
    MintInvite {
        hash: u8,
        uses: u8,
        expires: Option<u32>,
    },
    RevokeInvites(u8),
    SetBanned {
        which: bool,
        banned: bool,
    },
    SetQuota {
        which: bool,
        quota: Option<u32>,
    },
    PublishKeyPackages {
        which: bool,
        count: u8,
        last_resort: bool,
    },
    TakeKeyPackage(bool),
    Deposit {
        // Kept so earlier corpus inputs decode alike; the relay stores no depositor.
        #[allow(dead_code)]
        from: bool,
        to: bool,
        len: u8,
    },
    AckInbox {
        which: bool,
        ids: Vec<u8>,
    },
    CreateRoom {
        cap: u8,
    },
    Append {
        cap: u8,
        author: bool,
        len: u8,
        next: Option<u8>,
        admins: Option<Vec<bool>>,
    },
    PublishRoom {
        cap: u8,
        epoch: u8,
    },
    UnpublishRoom {
        cap: u8,
        author: bool,
    },
    JoinPublic {
        epoch: u8,
        next: u8,
    },
    SetRetention {
        cap: u8,
        secs: Option<u32>,
        author: bool,
    },
    SetRoomAdmins {
        cap: u8,
        author: bool,
        admins: Vec<bool>,
    },
    RevertCommit {
        cap: u8,
        seq: u8,
        author: bool,
    },
    RotateKey {
        from: bool,
        to: u8,
        later: u32,
    },
    Sweep {
        later: u32,
        retention: u32,
        max_deletions: u8,
    },
    SweepItems {
        later: u32,
        retention: u32,
        items: Vec<Item>,
    },
    Audit,
}

/// What a sweep batch deletes (as `sweep_scan` would find it).
#[derive(Arbitrary, Debug)]
enum Item {
    Entries { through: u8 },
    Epochs { caps: Vec<u8> },
    Inbox { which: bool, id: u8 },
    Listing,
}

impl Item {
    fn sweep_item(&self) -> SweepItem {
        match self {
            Item::Entries { through } => SweepItem::Entries {
                room: ROOM,
                through: u64::from(*through),
            },
            Item::Epochs { caps } => SweepItem::Epochs {
                room: ROOM,
                caps: caps.iter().take(8).map(|&c| cap(c)).collect(),
            },
            Item::Inbox { which, id } => SweepItem::Inbox {
                account: account(*which),
                id: u64::from(*id),
            },
            Item::Listing => SweepItem::Listing { room: ROOM },
        }
    }
}

impl Op {
    fn write_op(&self) -> WriteOp {
        let payload = |len: &u8| vec![0x5a; usize::from(*len)];
        match self {
            Op::Register {
                which,
                invite,
                open,
            } => WriteOp::Register {
                account: account(*which),
                handle: handle(*which),
                invite: invite.map(|i| [i; 32]),
                open: *open,
                now: NOW,
            },
            Op::Authenticate(which) => WriteOp::Authenticate {
                account: account(*which),
                now: NOW,
            },
            Op::MintInvite {
                hash,
                uses,
                expires,
            } => WriteOp::MintInvite {
                invite: InviteRecord {
                    hash: [*hash; 32],
                    uses_left: u32::from(*uses),
                    uses: u32::from(*uses),
                    created: NOW,
                    expires: expires.map(|e| NOW + u64::from(e)),
                },
            },
            Op::RevokeInvites(prefix) => WriteOp::RevokeInvites {
                prefix: format!("{prefix:02x}"),
            },
            Op::SetBanned { which, banned } => WriteOp::SetBanned {
                handle: handle(*which),
                banned: *banned,
            },
            Op::SetQuota { which, quota } => WriteOp::SetQuota {
                handle: handle(*which),
                quota: quota.map(u64::from),
            },
            Op::PublishKeyPackages {
                which,
                count,
                last_resort,
            } => WriteOp::PublishKeyPackages {
                account: account(*which),
                packages: (0..*count % 8).map(|i| vec![i; 40]).collect(),
                last_resort: last_resort.then(|| vec![0xff; 40]),
                quota: QUOTA,
                max_stock: 100,
            },
            Op::TakeKeyPackage(which) => WriteOp::TakeKeyPackage {
                handle: handle(*which),
            },
            Op::Deposit { to, len, .. } => WriteOp::Deposit {
                to: account(*to),
                payload: payload(len),
                now: NOW,
                inbox_quota: QUOTA,
            },
            Op::AckInbox { which, ids } => WriteOp::AckInbox {
                account: account(*which),
                ids: ids.iter().map(|&i| u64::from(i)).collect(),
            },
            Op::CreateRoom { cap: c } => WriteOp::CreateRoom {
                room: ROOM,
                cap_hash: cap(*c),
                retention_secs: None,
                now: NOW,
                creator: account(true),
                admin: admin(true),
                quota: QUOTA,
                max_rooms: 100,
            },
            Op::Append {
                cap: c,
                author,
                len,
                next,
                admins,
            } => WriteOp::Append {
                room: ROOM,
                cap_hash: cap(*c),
                payload: payload(len),
                next_cap_hash: next.map(cap),
                admins: admins
                    .as_ref()
                    .map(|a| (admin(*author), a.iter().map(|&w| admin(w)).collect())),
                now: NOW,
                room_quota: QUOTA,
            },
            Op::PublishRoom { cap: c, epoch } => WriteOp::PublishRoom {
                room: ROOM,
                cap_hash: cap(*c),
                listing: ListingRecord {
                    public_name: "Family board".into(),
                    group_info: vec![1; 40],
                    epoch: u64::from(*epoch),
                    published: NOW,
                },
                admin: Some(admin(true)),
                room_quota: QUOTA,
                max_listings: 10,
            },
            Op::UnpublishRoom { cap: c, author } => WriteOp::UnpublishRoom {
                room: ROOM,
                cap_hash: cap(*c),
                admin: Some(admin(*author)),
            },
            Op::JoinPublic { epoch, next } => WriteOp::JoinPublic {
                room: ROOM,
                epoch: u64::from(*epoch),
                payload: vec![7; 40],
                next_cap_hash: cap(*next),
                now: NOW,
                room_quota: QUOTA,
            },
            Op::SetRetention {
                cap: c,
                secs,
                author,
            } => WriteOp::SetRetention {
                room: ROOM,
                cap_hash: cap(*c),
                retention_secs: secs.map(u64::from),
                admin: Some(admin(*author)),
            },
            Op::SetRoomAdmins {
                cap: c,
                author,
                admins,
            } => WriteOp::SetRoomAdmins {
                room: ROOM,
                cap_hash: cap(*c),
                admin: Some(admin(*author)),
                account: None,
                admins: admins.iter().map(|&w| admin(w)).collect(),
            },
            Op::RevertCommit {
                cap: c,
                seq,
                author,
            } => WriteOp::RevertCommit {
                room: ROOM,
                cap_hash: cap(*c),
                seq: Seq(u64::from(*seq)),
                admin: admin(*author),
                payload: vec![9; 40],
                next_cap_hash: cap(seq.wrapping_add(1)),
                now: NOW,
                room_quota: QUOTA,
            },
            Op::RotateKey { from, to, later } => WriteOp::RotateKey {
                rotation: KeyRotation {
                    from: account(*from),
                    to: AccountKey([*to; 32]),
                    signature: Signature([0; 64]),
                },
                now: NOW + u64::from(*later),
            },
            Op::Sweep {
                later,
                retention,
                max_deletions,
            } => WriteOp::Sweep {
                now: NOW + u64::from(*later),
                retention_secs: u64::from(*retention),
                max_deletions: usize::from(*max_deletions),
            },
            Op::Audit => WriteOp::Audit(AuditRecord::once(
                NOW,
                "auth-failed",
                Some("192.0.2.1".into()),
                None,
                "fuzz",
            )),
            Op::SweepItems {
                later,
                retention,
                items,
            } => WriteOp::SweepItems {
                now: NOW + u64::from(*later),
                retention_secs: u64::from(*retention),
                items: items.iter().take(8).map(Item::sweep_item).collect(),
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    values: Vec<Value>,
    ops: Vec<Op>,
}

/// One store for the whole run, emptied before each input (opening one costs more than
/// the input).
fn store() -> &'static RedbStore {
    static STORE: std::sync::OnceLock<RedbStore> = std::sync::OnceLock::new();
    STORE.get_or_init(|| RedbStore::in_memory().expect("an in-memory store"))
}

fuzz_target!(|input: Input| {
    let store = store();
    store.clear_raw().expect("the store empties");
    for value in input.values.iter().take(32) {
        let table = RedbStore::TABLE_NAMES[usize::from(value.table) % RedbStore::TABLE_NAMES.len()];
        let _ = store.put_raw(table, &value.key.bytes(), &value.value);
    }
    // Ops in batches of up to four, as the group commit applies them: messages in a row
    // to the room are stored as one run (decision 0018).
    let ops: Vec<WriteOp> = input.ops.iter().take(16).map(Op::write_op).collect();
    for batch in ops.chunks(4) {
        let _ = store.apply(batch.to_vec());
    }
    for which in [true, false] {
        let _ = store.account(&account(which));
        let _ = store.account_by_handle(&handle(which));
        let _ = store.rotations(&handle(which));
        let _ = store.key_package_stock(&account(which));
        let _ = store.inbox(&account(which), 0, 100);
    }
    let _ = store.accounts();
    let _ = store.room_admins(&ROOM);
    let _ = store.room(&ROOM);
    for c in [0, 1, 0xff] {
        let _ = store.access(&ROOM, &cap(c));
    }
    let _ = store.entries(&ROOM, Seq(0), Seq(u64::MAX), 100);
    let _ = store.listing(&ROOM);
    let _ = store.listings(100);
    let _ = store.invites();
    let _ = store.audit(100);
    let _ = store.stats();
    // The sweep's scan, through every phase.
    let mut cursor = SweepCursor::default();
    for _ in 0..8 {
        match store.sweep_scan(&cursor, NOW + 1_000_000, 3600, 64) {
            Ok(scan) => match scan.next {
                Some(next) => cursor = next,
                None => break,
            },
            Err(_) => break,
        }
    }
});
