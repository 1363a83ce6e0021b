//! [`Store`] on redb: one file, every commit fsynced, batches applied in one transaction.
//!
//! This module holds the tables, the encoding helpers, opening the database and
//! [`Tx::apply`], which dispatches a [`WriteOp`] inside one write transaction. The
//! operations themselves are grouped by concern:
//!
//! - `accounts`: registration, KeyPackages;
//! - `rooms`: appending to room logs under capabilities;
//! - `listings`: the public room directory;
//! - `sweep`: retention and expiry;
//! - `reads`: [`Store`] itself: the batch entry point and every read.

mod accounts;
mod audit;
mod authority;
mod inbox;
mod inspect;
mod journal;
mod lazy_table;
mod listings;
mod migrate;
mod raw;
mod reads;
mod rooms;
mod rotation;
mod runs;
mod sweep;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use hearth_protocol::{
    AccountKey, AdminKey, CapHash, Entry, EntryKind, ErrorCode, Handle, InboxEntry, KeyRotation,
    RoomId, Seq, WireError,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::sync_times::SyncTimes;
use super::{
    entry_cost, forbidden, not_listed, object_cost, stale, stale_listing, unknown_room, Access,
    AccountRecord, Applied, AuditRecord, InviteRecord, ListingRecord, OpResult, RoomRecord, Store,
    StoreError, StoreStats, WriteOp, ROOM_OVERHEAD_BYTES,
};
use lazy_table::LazyTable;

type Bytes = &'static [u8];
const ACCOUNTS: TableDefinition<Bytes, Bytes> = TableDefinition::new("accounts");
const HANDLES: TableDefinition<&str, Bytes> = TableDefinition::new("handles");
const INVITES: TableDefinition<Bytes, Bytes> = TableDefinition::new("invites");
const KEY_PACKAGES: TableDefinition<Bytes, Bytes> = TableDefinition::new("key_packages");
const LAST_RESORT: TableDefinition<Bytes, Bytes> = TableDefinition::new("last_resort");
const INBOX: TableDefinition<Bytes, Bytes> = TableDefinition::new("inbox");
const ROOMS: TableDefinition<Bytes, Bytes> = TableDefinition::new("rooms");
const EPOCHS: TableDefinition<Bytes, u64> = TableDefinition::new("epochs");
const ENTRIES: TableDefinition<Bytes, Bytes> = TableDefinition::new("entries");
/// The audit ring of earlier versions (kept, no longer written or read).
const AUDIT: TableDefinition<u64, Bytes> = TableDefinition::new("audit");
/// The aggregated audit feed: window start (8 bytes, big-endian) ++ kind ++ 0 ++ address
/// -> [`AuditRecord`]. See `audit`.
const AUDIT_COUNTS: TableDefinition<Bytes, Bytes> = TableDefinition::new("audit_counts");
/// The directory of public rooms: room id -> [`ListingRecord`].
const LISTINGS: TableDefinition<Bytes, Bytes> = TableDefinition::new("listings");
/// Each room's epoch index (commits so far). Rooms from before this table existed are
/// counted from `epochs` on first use.
const COMMITS: TableDefinition<Bytes, u64> = TableDefinition::new("commits");
/// Keys given up by a rotation: old key -> the key that replaced it (32 bytes).
const RETIRED: TableDefinition<Bytes, Bytes> = TableDefinition::new("retired");
/// Each rotated account's chain of signed rotations: handle -> postcard of
/// `Vec<KeyRotation>` (oldest first, at most `MAX_ROTATIONS_KEPT`).
const ROTATIONS: TableDefinition<&str, Bytes> = TableDefinition::new("rotations");
/// Each room's admins as the relay keeps them: room id -> postcard of `Vec<AdminKey>`,
/// per-room pseudonyms, owner first (decision 0013, part 5; never account keys).
const ROOM_ADMINS: TableDefinition<Bytes, Bytes> = TableDefinition::new("room_admins");
/// The admins of rooms of a store migrated from format 2, as that format kept them:
/// room id -> postcard of `Vec<AccountKey>`, owner first. Only that owner's account,
/// signed in, replaces the row by a first list of pseudonyms, once; then the row goes
/// (decision 0013, part 5). The one table that still links accounts to rooms, and only
/// for migrated rooms whose owner has not connected since.
const LEGACY_ADMINS: TableDefinition<Bytes, Bytes> = TableDefinition::new("legacy_admins");
/// The capability hash each commit announced: room id ++ seq -> 32 bytes.
const COMMIT_CAPS: TableDefinition<Bytes, Bytes> = TableDefinition::new("commit_caps");
/// Rooms each account created, by handle (a key rotation keeps the handle), counted
/// against `max_rooms_per_account`. Filled from the rooms' owners when the table is new.
const ROOMS_CREATED: TableDefinition<&str, u64> = TableDefinition::new("rooms_created");

/// Facts about the store itself: `"format"` -> [`FORMAT`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The store's format: 2 since room entries and inbox entries carry no account, 3 since
/// room admins are pseudonyms and listings name no account (decision 0013), 4 since the
/// file was compacted once after those migrations (a store migrated to 2 or 3 by an
/// earlier build kept the old records in freed pages), 5 since a value of `entries` may
/// hold a run of messages (decision 0018; format 4's values read unchanged, but a build
/// of format 4 would take a run for a corrupt record). A store without the row is of
/// format 1; older formats are migrated when opened (see `migrate::authorless`,
/// `migrate::pseudonymous` and `migrate::compacted`), a newer one is refused.
const FORMAT: u64 = 5;

/// The first format whose file holds nothing the migrations took apart: a store older
/// than it is compacted once when opened.
const COMPACTED_FORMAT: u64 = 4;

/// A room entry as stored. No author (decision 0013): the room is charged for it.
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    kind: EntryKind,
    time: u64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

/// An inbox entry as stored. No depositor (decision 0013): the inbox is charged to its
/// recipient.
#[derive(Serialize, Deserialize)]
struct StoredInbox {
    time: u64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn key2(a: &[u8], n: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + 8);
    key.extend_from_slice(a);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

fn epoch_key(room: &RoomId, cap: &CapHash) -> [u8; 48] {
    let mut key = [0u8; 48];
    key[..16].copy_from_slice(&room.0);
    key[16..].copy_from_slice(&cap.0);
    key
}

fn tail_u64(key: &[u8]) -> u64 {
    let mut n = [0u8; 8];
    if key.len() >= 8 {
        n.copy_from_slice(&key[key.len() - 8..]);
    }
    u64::from_be_bytes(n)
}

fn err(code: ErrorCode, message: &str) -> WireError {
    WireError::new(code, message)
}

/// The relay's store on a redb database.
pub struct RedbStore {
    db: Database,
    path: Option<std::path::PathBuf>,
    /// The times of the file's syncs (a store in memory has none).
    syncs: Option<Arc<SyncTimes>>,
}

/// The memory redb may keep for pages it read and pages a write transaction has not
/// flushed yet (issue 15). redb's default is 1 GiB, and it fills it: the relay's resident
/// memory grew with every entry written or read back (450 MiB after 200k appends of 1 KiB)
/// although the relay never needs old pages again (live entries go to subscribers from
/// memory, catch-up reads stream through the log once). 2 MiB holds the upper levels of
/// every B-tree and the pages of a group commit's batch (runs of messages, decision 0018:
/// about 2 pages of 64 KiB for 120 appends); a larger write flushes its excess early,
/// which the commit's fsync covers anyway. It was 4 MiB before runs: with runs, catch-up
/// reads go faster and the relay's peak memory while one client read 100,000 entries back
/// rose to 22.4 to 24.6 MiB (3 runs); with 2 MiB it is 18.7 to 21.8, at the same k=1
/// deliveries/s (`hearth-bench relay --only k1 --rounds 1`, alternated).
pub const CACHE_BYTES: usize = 2 * 1024 * 1024;

impl RedbStore {
    /// Opens (or creates) the database file at `path`, mode 0600, with a page cache of
    /// [`CACHE_BYTES`]. A store of an earlier format is migrated, then compacted: redb
    /// leaves the pages a transaction freed as they were, so without it the records the
    /// migration took apart (entries with their authors, admins by account, listings with
    /// their publishers: links of an account to a room) would stay readable in the file
    /// until overwritten, where `inspect` does not look (attack 16).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // What `Builder::create` opens, with its syncs timed (and private from the
        // start where the platform allows).
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        let syncs = Arc::new(SyncTimes::default());
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(journal::JournaledFile::open(path, file, syncs.clone())?)?;
        set_private(path)?;
        let mut store = Self {
            db,
            path: Some(path.to_path_buf()),
            syncs: Some(syncs),
        };
        if store.create_tables()? {
            while store.db.compact()? {}
        }
        Ok(store)
    }

    /// A store kept in memory only (for unit tests of code built on the relay).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let store = Self {
            db,
            path: None,
            syncs: None,
        };
        store.create_tables()?;
        Ok(store)
    }

    /// Creates the tables a store lacks and migrates one of an earlier format; returns
    /// whether it was of a format before [`COMPACTED_FORMAT`] (or new). Errors:
    /// [`StoreError::NewerFormat`] for a store of a format after [`FORMAT`].
    fn create_tables(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let format = migrate::format_of(&txn)?;
        if format > FORMAT {
            return Err(StoreError::NewerFormat {
                found: format,
                known: FORMAT,
            });
        }
        let migrated = format < COMPACTED_FORMAT;
        {
            txn.open_table(ACCOUNTS)?;
            txn.open_table(HANDLES)?;
            txn.open_table(INVITES)?;
            txn.open_table(KEY_PACKAGES)?;
            txn.open_table(LAST_RESORT)?;
            txn.open_table(INBOX)?;
            txn.open_table(ROOMS)?;
            txn.open_table(EPOCHS)?;
            txn.open_table(ENTRIES)?;
            txn.open_table(AUDIT)?;
            txn.open_table(AUDIT_COUNTS)?;
            txn.open_table(LISTINGS)?;
            txn.open_table(COMMITS)?;
            txn.open_table(RETIRED)?;
            txn.open_table(ROTATIONS)?;
            txn.open_table(ROOM_ADMINS)?;
            txn.open_table(LEGACY_ADMINS)?;
            txn.open_table(COMMIT_CAPS)?;
            // Every table the store reads is made here: a batch opens only the tables
            // its ops use, so none is created by a write any more.
            txn.open_table(ROOMS_CREATED)?;
            migrate::count_rooms(&txn)?;
        }
        migrate::authorless(&txn)?;
        migrate::pseudonymous(&txn)?;
        migrate::compacted(&txn)?;
        txn.commit()?;
        Ok(migrated)
    }
}

#[cfg(unix)]
fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The names of the tables `db` holds, sorted (for tests).
#[cfg(test)]
fn table_names(db: &Database) -> Vec<String> {
    use redb::TableHandle;
    let txn = db.begin_read().expect("a read transaction");
    let mut names: Vec<String> = txn
        .list_tables()
        .expect("the table list")
        .map(|t| t.name().to_string())
        .collect();
    names.sort();
    names
}

/// The tables of one write transaction.
struct Tx<'t> {
    accounts: LazyTable<'t, Bytes, Bytes>,
    handles: LazyTable<'t, &'static str, Bytes>,
    invites: LazyTable<'t, Bytes, Bytes>,
    key_packages: LazyTable<'t, Bytes, Bytes>,
    last_resort: LazyTable<'t, Bytes, Bytes>,
    inbox: LazyTable<'t, Bytes, Bytes>,
    rooms: LazyTable<'t, Bytes, Bytes>,
    epochs: LazyTable<'t, Bytes, u64>,
    entries: LazyTable<'t, Bytes, Bytes>,
    audit: LazyTable<'t, Bytes, Bytes>,
    listings: LazyTable<'t, Bytes, Bytes>,
    commits: LazyTable<'t, Bytes, u64>,
    retired: LazyTable<'t, Bytes, Bytes>,
    rotations: LazyTable<'t, &'static str, Bytes>,
    room_admins: LazyTable<'t, Bytes, Bytes>,
    legacy_admins: LazyTable<'t, Bytes, Bytes>,
    commit_caps: LazyTable<'t, Bytes, Bytes>,
    rooms_created: LazyTable<'t, &'static str, u64>,
    /// A room record changed by messages appended in a row and not yet written to
    /// `rooms` (issue 15: a batch of appends to one room rewrote its record once per
    /// append). Written before any other op and before the commit; see
    /// [`Tx::flush_room`].
    unwritten_room: Option<(RoomId, RoomRecord)>,
    /// The messages appended to that room in a row, not yet written to `entries`
    /// (decision 0018): written with the record, or before when the run is full.
    unwritten_run: Option<runs::PendingRun>,
}

impl<'t> Tx<'t> {
    /// The tables of `txn`, each opened when an op first uses it.
    fn open(txn: &'t redb::WriteTransaction) -> Self {
        Tx {
            accounts: LazyTable::new(txn, ACCOUNTS),
            handles: LazyTable::new(txn, HANDLES),
            invites: LazyTable::new(txn, INVITES),
            key_packages: LazyTable::new(txn, KEY_PACKAGES),
            last_resort: LazyTable::new(txn, LAST_RESORT),
            inbox: LazyTable::new(txn, INBOX),
            rooms: LazyTable::new(txn, ROOMS),
            epochs: LazyTable::new(txn, EPOCHS),
            entries: LazyTable::new(txn, ENTRIES),
            audit: LazyTable::new(txn, AUDIT_COUNTS),
            listings: LazyTable::new(txn, LISTINGS),
            commits: LazyTable::new(txn, COMMITS),
            retired: LazyTable::new(txn, RETIRED),
            rotations: LazyTable::new(txn, ROTATIONS),
            room_admins: LazyTable::new(txn, ROOM_ADMINS),
            legacy_admins: LazyTable::new(txn, LEGACY_ADMINS),
            commit_caps: LazyTable::new(txn, COMMIT_CAPS),
            rooms_created: LazyTable::new(txn, ROOMS_CREATED),
            unwritten_room: None,
            unwritten_run: None,
        }
    }
}

/// The number of commits a room has had: its counter, or for a room from before the
/// counter existed, the number of ended epochs.
fn epoch_index_of(
    commits: &impl ReadableTable<Bytes, u64>,
    epochs: &impl ReadableTable<Bytes, u64>,
    room: &RoomId,
) -> Result<u64, StoreError> {
    if let Some(n) = commits.get(room.0.as_slice())? {
        return Ok(n.value());
    }
    let lo = epoch_key(room, &CapHash([0; 32]));
    let hi = epoch_key(room, &CapHash([0xff; 32]));
    Ok(epochs
        .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
        .count() as u64)
}

impl Tx<'_> {
    fn account(&self, key: &AccountKey) -> Result<Option<AccountRecord>, StoreError> {
        match self.accounts.read()?.get(key.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn put_account(&mut self, record: &AccountRecord) -> Result<(), StoreError> {
        self.accounts
            .write()?
            .insert(record.account.0.as_slice(), encode(record)?.as_slice())?;
        Ok(())
    }

    fn by_handle(&self, handle: &Handle) -> Result<Option<AccountRecord>, StoreError> {
        let key = match self.handles.read()?.get(handle.as_str())? {
            Some(v) => v.value().to_vec(),
            None => return Ok(None),
        };
        match self.accounts.read()?.get(key.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn room(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        if let Some((unwritten, record)) = &self.unwritten_room {
            if unwritten == room {
                return Ok(Some(record.clone()));
            }
        }
        match self.rooms.read()?.get(room.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn put_room(&mut self, room: &RoomId, record: &RoomRecord) -> Result<(), StoreError> {
        if self
            .unwritten_room
            .as_ref()
            .is_some_and(|(unwritten, _)| unwritten == room)
        {
            self.unwritten_room = None;
        }
        self.flush_room()?;
        self.rooms
            .write()?
            .insert(room.0.as_slice(), encode(record)?.as_slice())?;
        Ok(())
    }

    /// Keeps `record` as the room's until [`Tx::flush_room`] writes it (a message
    /// appended: the next op is likely another one to the same room).
    fn put_room_later(&mut self, room: RoomId, record: RoomRecord) -> Result<(), StoreError> {
        if self
            .unwritten_room
            .as_ref()
            .is_some_and(|(unwritten, _)| *unwritten != room)
        {
            self.flush_room()?;
        }
        self.unwritten_room = Some((room, record));
        Ok(())
    }

    /// Adds the message at `seq` of `room` to the run of messages appended to it in a
    /// row, writing the run before when the message does not continue it.
    fn append_to_run(
        &mut self,
        room: RoomId,
        seq: u64,
        time: u64,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        if !self
            .unwritten_run
            .as_ref()
            .is_some_and(|run| run.takes(&room, seq, time, payload.len()))
        {
            self.write_run()?;
            self.unwritten_run = Some(runs::PendingRun::new(room, seq));
        }
        if let Some(run) = &mut self.unwritten_run {
            run.push(time, payload)?;
        }
        Ok(())
    }

    fn write_run(&mut self) -> Result<(), StoreError> {
        if let Some(run) = self.unwritten_run.take() {
            self.entries
                .write()?
                .insert(run.key().as_slice(), run.value()?.as_slice())?;
        }
        Ok(())
    }

    /// Writes the run of messages and the room record kept by [`Tx::put_room_later`].
    /// Called before every op other than a message append (they may read the `rooms` and
    /// `entries` tables directly) and before the transaction commits.
    pub(super) fn flush_room(&mut self) -> Result<(), StoreError> {
        self.write_run()?;
        if let Some((room, record)) = self.unwritten_room.take() {
            self.rooms
                .write()?
                .insert(room.0.as_slice(), encode(&record)?.as_slice())?;
        }
        Ok(())
    }

    fn access(
        &self,
        room: &RoomId,
        record: &RoomRecord,
        cap: &CapHash,
    ) -> Result<Result<Access, WireError>, StoreError> {
        if record.current == *cap {
            return Ok(Ok(Access::Current));
        }
        Ok(
            match self.epochs.read()?.get(epoch_key(room, cap).as_slice())? {
                Some(end) => Ok(Access::Ended {
                    end: Seq(end.value()),
                }),
                None => Err(forbidden()),
            },
        )
    }

    /// Charges `bytes` to `account` if its quota allows.
    fn charge(
        &mut self,
        account: &AccountKey,
        bytes: u64,
        default_quota: u64,
    ) -> Result<Result<(), WireError>, StoreError> {
        let Some(mut record) = self.account(account)? else {
            return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
        };
        let quota = record.quota_bytes.unwrap_or(default_quota);
        if record.used_bytes.saturating_add(bytes) > quota {
            return Ok(Err(err(
                ErrorCode::QuotaExceeded,
                "the account's storage quota on the relay is used up (every message, room, \
                 key package and invitation counts): wait for old messages to expire, or ask \
                 the relay's owner for a larger quota",
            )));
        }
        record.used_bytes += bytes;
        self.put_account(&record)?;
        Ok(Ok(()))
    }

    fn refund(&mut self, refunds: HashMap<AccountKey, u64>) -> Result<(), StoreError> {
        for (account, bytes) in refunds {
            if let Some(mut record) = self.account_following_rotations(&account)? {
                record.used_bytes = record.used_bytes.saturating_sub(bytes);
                self.put_account(&record)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: WriteOp) -> Result<OpResult, StoreError> {
        let message = matches!(
            op,
            WriteOp::Append {
                next_cap_hash: None,
                admins: None,
                ..
            }
        );
        if !message {
            self.flush_room()?;
        }
        match op {
            WriteOp::Register {
                account,
                handle,
                invite,
                open,
                now,
            } => self.register(account, handle, invite, open, now),
            WriteOp::RotateKey { rotation, now } => self.rotate_key(rotation, now),
            WriteOp::Authenticate { account, now } => {
                let Some(mut record) = self.account(&account)? else {
                    if self.retired.read()?.get(account.0.as_slice())?.is_some() {
                        return Ok(Err(err(
                            ErrorCode::AuthFailed,
                            "this key was replaced by a key rotation and is refused",
                        )));
                    }
                    return Ok(Err(err(ErrorCode::AuthFailed, "unknown account key")));
                };
                if record.banned {
                    return Ok(Err(err(ErrorCode::Banned, "this account is banned here")));
                }
                record.last_seen = now;
                self.put_account(&record)?;
                Ok(Ok(Applied::Account(record)))
            }
            WriteOp::MintInvite { invite } => {
                self.invites
                    .write()?
                    .insert(invite.hash.as_slice(), encode(&invite)?.as_slice())?;
                Ok(Ok(Applied::Done))
            }
            WriteOp::RevokeInvites { prefix } => {
                let prefix = prefix.to_ascii_lowercase();
                let mut doomed = Vec::new();
                for item in self.invites.read()?.iter()? {
                    let (k, _) = item?;
                    if hex::encode(&k.value()[..6.min(k.value().len())]).starts_with(&prefix) {
                        doomed.push(k.value().to_vec());
                    }
                }
                for k in &doomed {
                    self.invites.write()?.remove(k.as_slice())?;
                }
                Ok(Ok(Applied::Count(doomed.len() as u64)))
            }
            WriteOp::SetBanned { handle, banned } => {
                let Some(mut record) = self.by_handle(&handle)? else {
                    return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
                };
                record.banned = banned;
                self.put_account(&record)?;
                Ok(Ok(Applied::Account(record)))
            }
            WriteOp::SetQuota { handle, quota } => {
                let Some(mut record) = self.by_handle(&handle)? else {
                    return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
                };
                record.quota_bytes = quota;
                self.put_account(&record)?;
                Ok(Ok(Applied::Account(record)))
            }
            WriteOp::PublishKeyPackages {
                account,
                packages,
                last_resort,
                quota,
                max_stock,
            } => self.publish(account, packages, last_resort, quota, max_stock),
            WriteOp::TakeKeyPackage { handle } => self.take_key_package(handle),
            WriteOp::Deposit {
                to,
                payload,
                now,
                inbox_quota,
            } => self.deposit(to, payload, now, inbox_quota),
            WriteOp::AckInbox { account, ids } => {
                let mut removed = 0;
                for id in ids {
                    if self
                        .inbox
                        .write()?
                        .remove(key2(&account.0, id).as_slice())?
                        .is_some()
                    {
                        removed += 1;
                    }
                }
                Ok(Ok(Applied::Count(removed)))
            }
            WriteOp::CreateRoom {
                room,
                cap_hash,
                retention_secs,
                now,
                creator,
                admin,
                quota,
                max_rooms,
            } => {
                let record = RoomRecord {
                    head: 0,
                    first: 1,
                    current: cap_hash,
                    retention_secs,
                    created: now,
                    bytes: 0,
                };
                self.create_room(room, record, (creator, admin), quota, max_rooms)
            }
            WriteOp::Append {
                room,
                cap_hash,
                payload,
                next_cap_hash,
                admins,
                now,
                room_quota,
            } => {
                let commit = rooms::Commit {
                    next_cap_hash,
                    admins,
                };
                self.append(room, cap_hash, payload, commit, now, room_quota)
            }
            WriteOp::PublishRoom {
                room,
                cap_hash,
                listing,
                admin,
                room_quota,
                max_listings,
            } => self.publish_room(room, cap_hash, listing, admin, room_quota, max_listings),
            WriteOp::UnpublishRoom {
                room,
                cap_hash,
                admin,
            } => {
                let Some(record) = self.room(&room)? else {
                    return Ok(Err(unknown_room()));
                };
                if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
                    return Ok(Err(e));
                }
                if let Err(e) = self.require_admin(&room, admin.as_ref())? {
                    return Ok(Err(e));
                }
                let removed = self.remove_listing(&room)?;
                Ok(Ok(Applied::Count(u64::from(removed))))
            }
            WriteOp::JoinPublic {
                room,
                epoch,
                payload,
                next_cap_hash,
                now,
                room_quota,
            } => {
                let Some(record) = self.room(&room)? else {
                    return Ok(Err(not_listed()));
                };
                let Some(listing) = self.listing(&room)? else {
                    return Ok(Err(not_listed()));
                };
                let current = self.epoch_index(&room)?;
                if epoch != current || listing.epoch != current {
                    return Ok(Err(stale_listing()));
                }
                self.append_unchecked(room, record, payload, Some(next_cap_hash), now, room_quota)
            }
            WriteOp::SetRetention {
                room,
                cap_hash,
                retention_secs,
                admin,
            } => {
                let Some(mut record) = self.room(&room)? else {
                    return Ok(Err(unknown_room()));
                };
                match self.access(&room, &record, &cap_hash)? {
                    Ok(access) => {
                        if let Err(e) = access.require_current() {
                            return Ok(Err(e));
                        }
                    }
                    Err(e) => return Ok(Err(e)),
                }
                if let Err(e) = self.require_admin(&room, admin.as_ref())? {
                    return Ok(Err(e));
                }
                record.retention_secs = retention_secs;
                self.put_room(&room, &record)?;
                Ok(Ok(Applied::Done))
            }
            WriteOp::SetRoomAdmins {
                room,
                cap_hash,
                admin,
                account,
                admins,
            } => self.set_room_admins(room, cap_hash, (account, admin), admins),
            WriteOp::RevertCommit {
                room,
                cap_hash,
                seq,
                admin,
                payload,
                next_cap_hash,
                now,
                room_quota,
            } => {
                let removal = authority::Removal {
                    payload,
                    next_cap_hash,
                    now,
                    room_quota,
                };
                self.revert_commit(room, cap_hash, seq, admin, removal)
            }
            WriteOp::Sweep {
                now,
                retention_secs,
                max_deletions,
            } => self.sweep(now, retention_secs, max_deletions),
            WriteOp::SweepItems {
                now,
                retention_secs,
                items,
            } => Ok(Ok(self.sweep_items(now, retention_secs, items)?.applied())),
            WriteOp::Audit(record) => {
                self.count_audit(record)?;
                Ok(Ok(Applied::Done))
            }
        }
    }
}

#[cfg(test)]
mod tests;
