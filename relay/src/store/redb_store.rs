//! [`Store`] on redb: one file, every commit fsynced, batches applied in one transaction.

use std::collections::HashMap;
use std::path::Path;

use hearth_protocol::{
    AccountKey, CapHash, Entry, EntryKind, ErrorCode, Handle, InboxEntry, RoomId, Seq, WireError,
};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{
    forbidden, not_listed, stale, stale_listing, unknown_room, Access, AccountRecord, Applied,
    AuditRecord, InviteRecord, ListingRecord, OpResult, RoomRecord, Store, StoreError, StoreStats,
    WriteOp, AUDIT_RING,
};

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
const AUDIT: TableDefinition<u64, Bytes> = TableDefinition::new("audit");
/// The directory of public rooms: room id -> [`ListingRecord`].
const LISTINGS: TableDefinition<Bytes, Bytes> = TableDefinition::new("listings");
/// Each room's epoch index (commits so far). Rooms from before this table existed are
/// counted from `epochs` on first use.
const COMMITS: TableDefinition<Bytes, u64> = TableDefinition::new("commits");

/// A room entry as stored: the author is kept only to refund quota when it expires.
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    kind: EntryKind,
    time: u64,
    author: AccountKey,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

/// An inbox entry as stored: the depositor is kept only to refund quota.
#[derive(Serialize, Deserialize)]
struct StoredInbox {
    time: u64,
    from: AccountKey,
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
}

impl RedbStore {
    /// Opens (or creates) the database file at `path`, mode 0600.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        set_private(path)?;
        let store = Self {
            db,
            path: Some(path.to_path_buf()),
        };
        store.create_tables()?;
        Ok(store)
    }

    /// A store kept in memory only (for unit tests of code built on the relay).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let store = Self { db, path: None };
        store.create_tables()?;
        Ok(store)
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
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
            txn.open_table(LISTINGS)?;
            txn.open_table(COMMITS)?;
        }
        txn.commit()?;
        Ok(())
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

/// The tables of one write transaction.
struct Tx<'t> {
    accounts: Table<'t, Bytes, Bytes>,
    handles: Table<'t, &'static str, Bytes>,
    invites: Table<'t, Bytes, Bytes>,
    key_packages: Table<'t, Bytes, Bytes>,
    last_resort: Table<'t, Bytes, Bytes>,
    inbox: Table<'t, Bytes, Bytes>,
    rooms: Table<'t, Bytes, Bytes>,
    epochs: Table<'t, Bytes, u64>,
    entries: Table<'t, Bytes, Bytes>,
    audit: Table<'t, u64, Bytes>,
    listings: Table<'t, Bytes, Bytes>,
    commits: Table<'t, Bytes, u64>,
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
        match self.accounts.get(key.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn put_account(&mut self, record: &AccountRecord) -> Result<(), StoreError> {
        self.accounts
            .insert(record.account.0.as_slice(), encode(record)?.as_slice())?;
        Ok(())
    }

    fn by_handle(&self, handle: &Handle) -> Result<Option<AccountRecord>, StoreError> {
        let key = match self.handles.get(handle.as_str())? {
            Some(v) => v.value().to_vec(),
            None => return Ok(None),
        };
        match self.accounts.get(key.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn room(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        match self.rooms.get(room.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn put_room(&mut self, room: &RoomId, record: &RoomRecord) -> Result<(), StoreError> {
        self.rooms
            .insert(room.0.as_slice(), encode(record)?.as_slice())?;
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
        Ok(match self.epochs.get(epoch_key(room, cap).as_slice())? {
            Some(end) => Ok(Access::Ended {
                end: Seq(end.value()),
            }),
            None => Err(forbidden()),
        })
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
                "the account's storage quota is used up",
            )));
        }
        record.used_bytes += bytes;
        self.put_account(&record)?;
        Ok(Ok(()))
    }

    fn refund(&mut self, refunds: HashMap<AccountKey, u64>) -> Result<(), StoreError> {
        for (account, bytes) in refunds {
            if let Some(mut record) = self.account(&account)? {
                record.used_bytes = record.used_bytes.saturating_sub(bytes);
                self.put_account(&record)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: WriteOp) -> Result<OpResult, StoreError> {
        match op {
            WriteOp::Register {
                account,
                handle,
                invite,
                open,
                now,
            } => self.register(account, handle, invite, open, now),
            WriteOp::Authenticate { account, now } => {
                let Some(mut record) = self.account(&account)? else {
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
                    .insert(invite.hash.as_slice(), encode(&invite)?.as_slice())?;
                Ok(Ok(Applied::Done))
            }
            WriteOp::RevokeInvites { prefix } => {
                let prefix = prefix.to_ascii_lowercase();
                let mut doomed = Vec::new();
                for item in self.invites.iter()? {
                    let (k, _) = item?;
                    if hex::encode(&k.value()[..6.min(k.value().len())]).starts_with(&prefix) {
                        doomed.push(k.value().to_vec());
                    }
                }
                for k in &doomed {
                    self.invites.remove(k.as_slice())?;
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
            } => self.publish(account, packages, last_resort, quota),
            WriteOp::TakeKeyPackage { handle } => self.take_key_package(handle),
            WriteOp::Deposit {
                from,
                to,
                payload,
                now,
                quota,
            } => {
                if self.account(&to)?.is_none() {
                    return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
                }
                if let Err(e) = self.charge(&from, payload.len() as u64, quota)? {
                    return Ok(Err(e));
                }
                let Some(mut recipient) = self.account(&to)? else {
                    return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
                };
                recipient.next_inbox_id += 1;
                let id = recipient.next_inbox_id;
                self.put_account(&recipient)?;
                let stored = StoredInbox {
                    time: now,
                    from,
                    payload,
                };
                self.inbox
                    .insert(key2(&to.0, id).as_slice(), encode(&stored)?.as_slice())?;
                Ok(Ok(Applied::Deposited { to }))
            }
            WriteOp::AckInbox { account, ids } => {
                let mut refunds: HashMap<AccountKey, u64> = HashMap::new();
                let mut removed = 0;
                for id in ids {
                    if let Some(v) = self.inbox.remove(key2(&account.0, id).as_slice())? {
                        let stored: StoredInbox = decode(v.value())?;
                        *refunds.entry(stored.from).or_default() += stored.payload.len() as u64;
                        removed += 1;
                    }
                }
                self.refund(refunds)?;
                Ok(Ok(Applied::Count(removed)))
            }
            WriteOp::CreateRoom {
                room,
                cap_hash,
                retention_secs,
                now,
            } => {
                if self.room(&room)?.is_some() {
                    return Ok(Err(err(
                        ErrorCode::RoomExists,
                        "a room with this id exists",
                    )));
                }
                let record = RoomRecord {
                    head: 0,
                    first: 1,
                    current: cap_hash,
                    retention_secs,
                    created: now,
                    bytes: 0,
                };
                self.put_room(&room, &record)?;
                Ok(Ok(Applied::Done))
            }
            WriteOp::Append {
                room,
                cap_hash,
                author,
                payload,
                next_cap_hash,
                now,
                quota,
            } => self.append(room, cap_hash, author, payload, next_cap_hash, now, quota),
            WriteOp::PublishRoom {
                room,
                cap_hash,
                listing,
                quota,
            } => self.publish_room(room, cap_hash, listing, quota),
            WriteOp::UnpublishRoom { room, cap_hash } => {
                let Some(record) = self.room(&room)? else {
                    return Ok(Err(unknown_room()));
                };
                if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
                    return Ok(Err(e));
                }
                let removed = self.remove_listing(&room)?;
                Ok(Ok(Applied::Count(u64::from(removed))))
            }
            WriteOp::JoinPublic {
                room,
                epoch,
                author,
                payload,
                next_cap_hash,
                now,
                quota,
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
                self.append_unchecked(
                    room,
                    record,
                    author,
                    payload,
                    Some(next_cap_hash),
                    now,
                    quota,
                )
            }
            WriteOp::SetRetention {
                room,
                cap_hash,
                retention_secs,
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
                record.retention_secs = retention_secs;
                self.put_room(&room, &record)?;
                Ok(Ok(Applied::Done))
            }
            WriteOp::Sweep {
                now,
                retention_secs,
                max_deletions,
            } => self.sweep(now, retention_secs, max_deletions),
            WriteOp::Audit(record) => {
                let next = match self.audit.last()? {
                    Some((k, _)) => k.value() + 1,
                    None => 1,
                };
                self.audit.insert(next, encode(&record)?.as_slice())?;
                if next > AUDIT_RING {
                    let cutoff = next - AUDIT_RING;
                    let old: Vec<u64> = self
                        .audit
                        .range(..=cutoff)?
                        .map(|item| item.map(|(k, _)| k.value()))
                        .collect::<Result<_, _>>()?;
                    for k in old {
                        self.audit.remove(k)?;
                    }
                }
                Ok(Ok(Applied::Done))
            }
        }
    }

    fn epoch_index(&self, room: &RoomId) -> Result<u64, StoreError> {
        epoch_index_of(&self.commits, &self.epochs, room)
    }

    fn listing(&self, room: &RoomId) -> Result<Option<ListingRecord>, StoreError> {
        match self.listings.get(room.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Deletes a room's listing and refunds its publisher; returns whether there was one.
    fn remove_listing(&mut self, room: &RoomId) -> Result<bool, StoreError> {
        let Some(old) = self.listing(room)? else {
            return Ok(false);
        };
        self.listings.remove(room.0.as_slice())?;
        self.refund(HashMap::from([(old.publisher, old.bytes())]))?;
        Ok(true)
    }

    /// Refuses anything but the room's current capability.
    fn require_current(
        &self,
        room: &RoomId,
        record: &RoomRecord,
        cap_hash: &CapHash,
    ) -> Result<Result<(), WireError>, StoreError> {
        Ok(self
            .access(room, record, cap_hash)?
            .and_then(Access::require_current))
    }

    fn publish_room(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        listing: ListingRecord,
        quota: u64,
    ) -> Result<OpResult, StoreError> {
        let Some(record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
            return Ok(Err(e));
        }
        if listing.epoch != self.epoch_index(&room)? {
            return Ok(Err(stale()));
        }
        // Refund the listing this one replaces before charging, so re-publishing never
        // needs twice the space.
        let old = self.listing(&room)?;
        if let Some(old) = &old {
            self.refund(HashMap::from([(old.publisher, old.bytes())]))?;
        }
        if let Err(e) = self.charge(&listing.publisher, listing.bytes(), quota)? {
            // Undo the refund: a refused op leaves no trace.
            if let Some(old) = &old {
                let mut publisher = self.account(&old.publisher)?;
                if let Some(p) = publisher.as_mut() {
                    p.used_bytes = p.used_bytes.saturating_add(old.bytes());
                    self.put_account(p)?;
                }
            }
            return Ok(Err(e));
        }
        self.listings
            .insert(room.0.as_slice(), encode(&listing)?.as_slice())?;
        Ok(Ok(Applied::Done))
    }

    fn register(
        &mut self,
        account: AccountKey,
        handle: Handle,
        invite: Option<[u8; 32]>,
        open: bool,
        now: u64,
    ) -> Result<OpResult, StoreError> {
        let mut invite_record = None;
        match invite {
            None if !open => {
                return Ok(Err(err(
                    ErrorCode::InviteRequired,
                    "this relay needs an invite to register",
                )))
            }
            None => {}
            Some(hash) => {
                let Some(v) = self.invites.get(hash.as_slice())? else {
                    return Ok(Err(err(
                        ErrorCode::InviteInvalid,
                        "unknown or revoked invite",
                    )));
                };
                let record: InviteRecord = decode(v.value())?;
                if record.expires.is_some_and(|t| t <= now) {
                    return Ok(Err(err(ErrorCode::InviteExpired, "the invite has expired")));
                }
                if record.uses_left == 0 {
                    return Ok(Err(err(ErrorCode::InviteSpent, "the invite is used up")));
                }
                invite_record = Some(record);
            }
        }
        if self.account(&account)?.is_some() {
            return Ok(Err(err(
                ErrorCode::AlreadyRegistered,
                "this key is already registered",
            )));
        }
        if self.handles.get(handle.as_str())?.is_some() {
            return Ok(Err(err(ErrorCode::HandleTaken, "the handle is taken")));
        }
        if let Some(mut record) = invite_record {
            record.uses_left -= 1;
            self.invites
                .insert(record.hash.as_slice(), encode(&record)?.as_slice())?;
        }
        let record = AccountRecord {
            account,
            handle: handle.clone(),
            created: now,
            last_seen: now,
            banned: false,
            used_bytes: 0,
            quota_bytes: None,
            next_inbox_id: 0,
            next_key_package_id: 0,
        };
        self.put_account(&record)?;
        self.handles.insert(handle.as_str(), account.0.as_slice())?;
        Ok(Ok(Applied::Account(record)))
    }

    fn stock(&self, account: &AccountKey) -> Result<(u32, bool), StoreError> {
        stock_of(&self.key_packages, &self.last_resort, account)
    }

    fn publish(
        &mut self,
        account: AccountKey,
        packages: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
        quota: u64,
    ) -> Result<OpResult, StoreError> {
        let mut bytes: u64 = packages.iter().map(|p| p.len() as u64).sum();
        let old_last = match self.last_resort.get(account.0.as_slice())? {
            Some(v) => v.value().len() as u64,
            None => 0,
        };
        if let Some(l) = &last_resort {
            bytes += l.len() as u64;
        }
        if let Err(e) = self.charge(&account, bytes, quota)? {
            return Ok(Err(e));
        }
        let Some(mut record) = self.account(&account)? else {
            return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
        };
        for package in packages {
            record.next_key_package_id += 1;
            self.key_packages.insert(
                key2(&account.0, record.next_key_package_id).as_slice(),
                package.as_slice(),
            )?;
        }
        if let Some(l) = last_resort {
            self.last_resort
                .insert(account.0.as_slice(), l.as_slice())?;
            record.used_bytes = record.used_bytes.saturating_sub(old_last);
        }
        self.put_account(&record)?;
        let (available, last_resort) = self.stock(&account)?;
        Ok(Ok(Applied::Stock {
            available,
            last_resort,
        }))
    }

    fn take_key_package(&mut self, handle: Handle) -> Result<OpResult, StoreError> {
        let Some(mut record) = self.by_handle(&handle)? else {
            return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
        };
        let account = record.account;
        let lo = key2(&account.0, 0);
        let hi = key2(&account.0, u64::MAX);
        let first = match self
            .key_packages
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
            .next()
        {
            Some(item) => {
                let (k, v) = item?;
                Some((k.value().to_vec(), v.value().to_vec()))
            }
            None => None,
        };
        if let Some((k, package)) = first {
            self.key_packages.remove(k.as_slice())?;
            record.used_bytes = record.used_bytes.saturating_sub(package.len() as u64);
            self.put_account(&record)?;
            return Ok(Ok(Applied::KeyPackage { account, package }));
        }
        match self.last_resort.get(account.0.as_slice())? {
            Some(v) => Ok(Ok(Applied::KeyPackage {
                account,
                package: v.value().to_vec(),
            })),
            None => Ok(Err(err(
                ErrorCode::NoKeyPackage,
                "the account has no KeyPackage left",
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        author: AccountKey,
        payload: Vec<u8>,
        next_cap_hash: Option<CapHash>,
        now: u64,
        quota: u64,
    ) -> Result<OpResult, StoreError> {
        let Some(record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
            return Ok(Err(e));
        }
        self.append_unchecked(room, record, author, payload, next_cap_hash, now, quota)
    }

    /// Appends to a room whose write access has been checked; a commit rotates the
    /// capability to `next_cap_hash` and counts one more epoch.
    #[allow(clippy::too_many_arguments)]
    fn append_unchecked(
        &mut self,
        room: RoomId,
        mut record: RoomRecord,
        author: AccountKey,
        payload: Vec<u8>,
        next_cap_hash: Option<CapHash>,
        now: u64,
        quota: u64,
    ) -> Result<OpResult, StoreError> {
        let len = payload.len() as u64;
        if let Err(e) = self.charge(&author, len, quota)? {
            return Ok(Err(e));
        }
        record.head += 1;
        record.bytes += len;
        let seq = Seq(record.head);
        let kind = if next_cap_hash.is_some() {
            EntryKind::Commit
        } else {
            EntryKind::Message
        };
        let stored = StoredEntry {
            kind,
            time: now,
            author,
            payload,
        };
        self.entries
            .insert(key2(&room.0, seq.0).as_slice(), encode(&stored)?.as_slice())?;
        let mut ended = None;
        if let Some(next) = next_cap_hash {
            let index = self.epoch_index(&room)?;
            self.commits
                .insert(room.0.as_slice(), index.saturating_add(1))?;
            self.epochs
                .insert(epoch_key(&room, &record.current).as_slice(), seq.0)?;
            ended = Some(record.current);
            record.current = next;
        }
        self.put_room(&room, &record)?;
        Ok(Ok(Applied::Appended {
            room,
            entry: Entry {
                seq,
                kind,
                time: now,
                payload: stored.payload,
            },
            ended,
        }))
    }

    fn sweep(
        &mut self,
        now: u64,
        retention_secs: u64,
        max_deletions: usize,
    ) -> Result<OpResult, StoreError> {
        let mut refunds: HashMap<AccountKey, u64> = HashMap::new();
        let mut budget = max_deletions;
        let mut swept_entries = 0;
        let rooms: Vec<(Vec<u8>, RoomRecord)> = self
            .rooms
            .iter()?
            .map(|item| {
                let (k, v) = item?;
                Ok((k.value().to_vec(), decode(v.value())?))
            })
            .collect::<Result<_, StoreError>>()?;
        for (room_key, mut record) in rooms {
            if budget == 0 {
                break;
            }
            let keep = record.retention_secs.unwrap_or(retention_secs);
            let cutoff = now.saturating_sub(keep);
            let lo = key2(&room_key, record.first);
            let hi = key2(&room_key, record.head);
            let mut doomed = Vec::new();
            for item in self.entries.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
                let (k, v) = item?;
                let stored: StoredEntry = decode(v.value())?;
                if stored.time >= cutoff || doomed.len() >= budget {
                    break;
                }
                *refunds.entry(stored.author).or_default() += stored.payload.len() as u64;
                record.bytes = record.bytes.saturating_sub(stored.payload.len() as u64);
                doomed.push(k.value().to_vec());
            }
            if let Some(last) = doomed.last() {
                record.first = tail_u64(last) + 1;
                budget -= doomed.len();
                swept_entries += doomed.len() as u64;
                for k in &doomed {
                    self.entries.remove(k.as_slice())?;
                }
                self.rooms
                    .insert(room_key.as_slice(), encode(&record)?.as_slice())?;
            }
        }
        let cutoff = now.saturating_sub(retention_secs);
        let mut doomed = Vec::new();
        for item in self.inbox.iter()? {
            if doomed.len() >= budget {
                break;
            }
            let (k, v) = item?;
            let stored: StoredInbox = decode(v.value())?;
            if stored.time < cutoff {
                *refunds.entry(stored.from).or_default() += stored.payload.len() as u64;
                doomed.push(k.value().to_vec());
            }
        }
        for k in &doomed {
            self.inbox.remove(k.as_slice())?;
        }
        // A listing (its GroupInfo) expires like an envelope, with its room's retention.
        let mut expired = Vec::new();
        for item in self.listings.iter()? {
            let (k, v) = item?;
            let listing: ListingRecord = decode(v.value())?;
            let keep = match self.rooms.get(k.value())? {
                Some(r) => decode::<RoomRecord>(r.value())?
                    .retention_secs
                    .unwrap_or(retention_secs),
                None => 0,
            };
            if listing.published < now.saturating_sub(keep) {
                *refunds.entry(listing.publisher).or_default() += listing.bytes();
                expired.push(k.value().to_vec());
            }
        }
        for k in &expired {
            self.listings.remove(k.as_slice())?;
        }
        self.refund(refunds)?;
        Ok(Ok(Applied::Swept {
            entries: swept_entries,
            inbox: doomed.len() as u64,
            listings: expired.len() as u64,
        }))
    }
}

fn stock_of(
    key_packages: &impl ReadableTable<Bytes, Bytes>,
    last_resort: &impl ReadableTable<Bytes, Bytes>,
    account: &AccountKey,
) -> Result<(u32, bool), StoreError> {
    let lo = key2(&account.0, 0);
    let hi = key2(&account.0, u64::MAX);
    let available = key_packages
        .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
        .count();
    let has_last = last_resort.get(account.0.as_slice())?.is_some();
    Ok((u32::try_from(available).unwrap_or(u32::MAX), has_last))
}

impl Store for RedbStore {
    fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<OpResult>, StoreError> {
        let txn = self.db.begin_write()?;
        let results = {
            let mut tx = Tx {
                accounts: txn.open_table(ACCOUNTS)?,
                handles: txn.open_table(HANDLES)?,
                invites: txn.open_table(INVITES)?,
                key_packages: txn.open_table(KEY_PACKAGES)?,
                last_resort: txn.open_table(LAST_RESORT)?,
                inbox: txn.open_table(INBOX)?,
                rooms: txn.open_table(ROOMS)?,
                epochs: txn.open_table(EPOCHS)?,
                entries: txn.open_table(ENTRIES)?,
                audit: txn.open_table(AUDIT)?,
                listings: txn.open_table(LISTINGS)?,
                commits: txn.open_table(COMMITS)?,
            };
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(tx.apply(op)?);
            }
            results
        };
        // Durability::Immediate is redb's default: commit returns after fsync.
        txn.commit()?;
        Ok(results)
    }

    fn account(&self, account: &AccountKey) -> Result<Option<AccountRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ACCOUNTS)?;
        match table.get(account.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn account_by_handle(&self, handle: &Handle) -> Result<Option<AccountRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let handles = txn.open_table(HANDLES)?;
        let Some(key) = handles.get(handle.as_str())? else {
            return Ok(None);
        };
        let table = txn.open_table(ACCOUNTS)?;
        match table.get(key.value())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let handles = txn.open_table(HANDLES)?;
        let table = txn.open_table(ACCOUNTS)?;
        let mut out = Vec::new();
        for item in handles.iter()? {
            let (_, key) = item?;
            if let Some(v) = table.get(key.value())? {
                out.push(decode(v.value())?);
            }
        }
        Ok(out)
    }

    fn key_package_stock(&self, account: &AccountKey) -> Result<(u32, bool), StoreError> {
        let txn = self.db.begin_read()?;
        stock_of(
            &txn.open_table(KEY_PACKAGES)?,
            &txn.open_table(LAST_RESORT)?,
            account,
        )
    }

    fn inbox(
        &self,
        account: &AccountKey,
        after: u64,
        limit: u32,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INBOX)?;
        let lo = key2(&account.0, after.saturating_add(1));
        let hi = key2(&account.0, u64::MAX);
        let mut out = Vec::new();
        if after == u64::MAX {
            return Ok(out);
        }
        for item in table.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
            if out.len() >= limit as usize {
                break;
            }
            let (k, v) = item?;
            let stored: StoredInbox = decode(v.value())?;
            out.push(InboxEntry {
                id: tail_u64(k.value()),
                time: stored.time,
                payload: stored.payload,
            });
        }
        Ok(out)
    }

    fn room(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ROOMS)?;
        match table.get(room.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn access(
        &self,
        room: &RoomId,
        cap_hash: &CapHash,
    ) -> Result<Option<super::RoomAccess>, StoreError> {
        let txn = self.db.begin_read()?;
        let rooms = txn.open_table(ROOMS)?;
        let record: RoomRecord = match rooms.get(room.0.as_slice())? {
            Some(v) => decode(v.value())?,
            None => return Ok(None),
        };
        if record.current == *cap_hash {
            return Ok(Some((record, Ok(Access::Current))));
        }
        let epochs = txn.open_table(EPOCHS)?;
        let access = match epochs.get(epoch_key(room, cap_hash).as_slice())? {
            Some(end) => Ok(Access::Ended {
                end: Seq(end.value()),
            }),
            None => Err(forbidden()),
        };
        Ok(Some((record, access)))
    }

    fn entries(
        &self,
        room: &RoomId,
        from: Seq,
        to: Seq,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        if from > to || limit == 0 {
            return Ok(out);
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let lo = key2(&room.0, from.0);
        let hi = key2(&room.0, to.0);
        for item in table.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
            if out.len() >= limit as usize {
                break;
            }
            let (k, v) = item?;
            let stored: StoredEntry = decode(v.value())?;
            out.push(Entry {
                seq: Seq(tail_u64(k.value())),
                kind: stored.kind,
                time: stored.time,
                payload: stored.payload,
            });
        }
        Ok(out)
    }

    fn listing(&self, room: &RoomId) -> Result<Option<(ListingRecord, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let listings = txn.open_table(LISTINGS)?;
        let listing: ListingRecord = match listings.get(room.0.as_slice())? {
            Some(v) => decode(v.value())?,
            None => return Ok(None),
        };
        let index = epoch_index_of(&txn.open_table(COMMITS)?, &txn.open_table(EPOCHS)?, room)?;
        Ok(Some((listing, index)))
    }

    fn listings(&self, limit: usize) -> Result<Vec<(RoomId, ListingRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LISTINGS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let Ok(id) = <[u8; 16]>::try_from(k.value()) else {
                continue;
            };
            out.push((RoomId(id), decode::<ListingRecord>(v.value())?));
        }
        out.sort_by(|a, b| a.1.public_name.cmp(&b.1.public_name).then(a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }

    fn invites(&self) -> Result<Vec<InviteRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INVITES)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for item in table.iter()?.rev() {
            if out.len() >= limit as usize {
                break;
            }
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        out.reverse();
        Ok(out)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db.begin_read()?;
        let accounts = txn.open_table(ACCOUNTS)?;
        let mut bytes = 0;
        for item in accounts.iter()? {
            let (_, v) = item?;
            let record: AccountRecord = decode(v.value())?;
            bytes += record.used_bytes;
        }
        let file_bytes = match &self.path {
            Some(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            None => 0,
        };
        Ok(StoreStats {
            accounts: accounts.len()?,
            rooms: txn.open_table(ROOMS)?.len()?,
            entries: txn.open_table(ENTRIES)?.len()?,
            inbox: txn.open_table(INBOX)?.len()?,
            bytes,
            file_bytes,
        })
    }
}

#[cfg(test)]
#[path = "redb_store_tests.rs"]
mod tests;
