//! Durable state of a relay behind the [`Store`] trait.
//!
//! The trait is shaped around the relay's operations, not around a key-value API: every
//! change is a [`WriteOp`], and [`Store::apply`] carries out a whole batch of them in ONE
//! durable transaction (group commit). Each op validates everything it needs before it
//! writes, so a refused op (a [`WireError`] in its slot) leaves no trace, while a storage
//! failure aborts the whole batch and nothing of it is kept.
//!
//! Reads are plain methods on a consistent snapshot.

mod redb_store;
pub mod sync_times;

use hearth_protocol::{
    AccountKey, AdminKey, CapHash, Entry, EntryKind, ErrorCode, Handle, InboxEntry, KeyRotation,
    RoomId, Seq, WireError,
};
use serde::{Deserialize, Serialize};

pub use redb_store::RedbStore;

/// Why the store failed (as opposed to refusing an operation).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine failed.
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    /// A stored value could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Creating or securing the store's files failed.
    #[error("store files: {0}")]
    Io(#[from] std::io::Error),
    /// The store is shutting down.
    #[error("store closed")]
    Closed,
    /// The store was written by a newer relay, in a format this build cannot read.
    #[error(
        "the store is of format {found}, written by a newer hearth-relay; this build reads \
         formats up to {known}: install that newer version again (or restore a backup of \
         the data dir taken before the upgrade)"
    )]
    NewerFormat {
        /// The store's format.
        found: u64,
        /// The newest format this build knows.
        known: u64,
    },
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError
);

/// One account as the relay keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The identity key.
    pub account: AccountKey,
    /// The unique handle.
    pub handle: Handle,
    /// Registration time (seconds since the Unix epoch).
    pub created: u64,
    /// Last successful authentication (seconds since the Unix epoch).
    pub last_seen: u64,
    /// Refused at authentication when set.
    pub banned: bool,
    /// Bytes currently stored on behalf of this account.
    pub used_bytes: u64,
    /// A per-account quota overriding the relay's default.
    pub quota_bytes: Option<u64>,
    /// Next inbox entry id.
    pub next_inbox_id: u64,
    /// Next KeyPackage id.
    pub next_key_package_id: u64,
}

/// An invite as stored: only the token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Registrations still allowed.
    pub uses_left: u32,
    /// Registrations allowed when minted.
    pub uses: u32,
    /// Minting time (seconds since the Unix epoch).
    pub created: u64,
    /// Expiry time (seconds since the Unix epoch), if any.
    pub expires: Option<u64>,
}

impl InviteRecord {
    /// A short public label: the first 6 bytes of the hash, in hex (never the token).
    pub fn id(&self) -> String {
        hex::encode(&self.hash[..6])
    }
}

/// A room log's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// The last sequence number appended (`0`: empty).
    pub head: u64,
    /// The lowest sequence number still stored (entries below were swept).
    pub first: u64,
    /// Hash of the current epoch's capability.
    pub current: CapHash,
    /// Entry retention in seconds (`None`: the relay's).
    pub retention_secs: Option<u64>,
    /// Creation time.
    pub created: u64,
    /// Bytes charged to the room for its stored entries (payloads plus the overhead of
    /// [`entry_cost`]), counted against `quota_bytes_per_room` and refunded as entries
    /// expire. The room pays for its log, not its authors: no entry says who wrote it
    /// (decision 0013).
    pub bytes: u64,
}

/// What a presented capability grants in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The current epoch: read to the head, write.
    Current,
    /// An ended epoch: read up to and including `end`, the commit that ended it.
    Ended {
        /// The seq of the commit that ended the epoch.
        end: Seq,
    },
}

impl Access {
    /// The last seq readable with this access, given the room's head.
    pub fn last_readable(self, head: u64) -> Seq {
        match self {
            Access::Current => Seq(head),
            Access::Ended { end } => end,
        }
    }

    /// Refuses writes with an ended epoch's capability.
    pub fn require_current(self) -> Result<(), WireError> {
        match self {
            Access::Current => Ok(()),
            Access::Ended { .. } => Err(stale()),
        }
    }
}

/// The error for a capability of an ended epoch.
pub fn stale() -> WireError {
    WireError::new(
        ErrorCode::StaleEpoch,
        "the capability's epoch has ended: catch up and retry",
    )
}

/// The error for a capability the room never had.
pub fn forbidden() -> WireError {
    WireError::new(ErrorCode::Forbidden, "the capability does not grant access")
}

/// The error for a room that does not exist.
pub fn unknown_room() -> WireError {
    WireError::new(ErrorCode::UnknownRoom, "no such room")
}

/// A room's entry in the directory of public rooms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingRecord {
    /// The name the members published it under.
    pub public_name: String,
    /// The MLS GroupInfo (with ratchet tree) joiners build their external commit on.
    #[serde(with = "serde_bytes")]
    pub group_info: Vec<u8>,
    /// The room's epoch index the GroupInfo belongs to.
    pub epoch: u64,
    /// When it was published (seconds since the Unix epoch).
    pub published: u64,
}

impl ListingRecord {
    /// The bytes charged to the room (its `quota_bytes_per_room`, like its log; decision
    /// 0013: no account is named with a listing): name and GroupInfo, plus
    /// [`LISTING_OVERHEAD_BYTES`].
    pub fn bytes(&self) -> u64 {
        (self.group_info.len() + self.public_name.len()) as u64 + LISTING_OVERHEAD_BYTES
    }
}

/// What the quota charges for every stored object on top of its payload: a message
/// entry, an inbox entry, a KeyPackage. It is what the relay keeps per object besides the
/// payload: the key (room id + seq, or account key + id: 24 to 40 bytes), the record
/// around the payload (entry kind, time: about 10 bytes), and redb's
/// per-entry bookkeeping in a B-tree leaf, rounded up for leaves that are not full. So an
/// empty object is not free: a quota of 256 MiB holds at most about 2 million of them.
pub const OBJECT_OVERHEAD_BYTES: u64 = 128;
/// What the quota charges for a commit on top of its payload: an entry
/// ([`OBJECT_OVERHEAD_BYTES`]) plus the capability hash it announced (room id + seq ->
/// 32 bytes) and the row of the epoch it ended (room id + capability hash -> seq).
pub const COMMIT_OVERHEAD_BYTES: u64 = 2 * OBJECT_OVERHEAD_BYTES;
/// What the quota charges for a directory listing on top of its name and GroupInfo: the
/// record and its key.
pub const LISTING_OVERHEAD_BYTES: u64 = 2 * OBJECT_OVERHEAD_BYTES;
/// What the quota charges the creator of a room for the room itself: its record (head,
/// first seq, current capability hash, retention, times), its list of admins, its epoch
/// counter. Kept as long as the room is (see the sweep: a room's capability holders can
/// write to it whenever they come back, so the relay keeps these rows).
pub const ROOM_OVERHEAD_BYTES: u64 = 4 * OBJECT_OVERHEAD_BYTES;

/// The bytes a room entry of `kind` with `payload_len` bytes of payload is charged.
pub fn entry_cost(kind: EntryKind, payload_len: usize) -> u64 {
    payload_len as u64
        + match kind {
            EntryKind::Message => OBJECT_OVERHEAD_BYTES,
            EntryKind::Commit => COMMIT_OVERHEAD_BYTES,
        }
}

/// The bytes an inbox entry or KeyPackage with `payload_len` bytes is charged.
pub fn object_cost(payload_len: usize) -> u64 {
    payload_len as u64 + OBJECT_OVERHEAD_BYTES
}

/// The error for a room that is not in the directory (indistinguishable from a room that
/// does not exist, so the directory tells nothing about private rooms).
pub fn not_listed() -> WireError {
    WireError::new(ErrorCode::UnknownRoom, "no such public room")
}

/// The error for a GroupInfo or external commit of an epoch that has ended.
pub fn stale_listing() -> WireError {
    WireError::new(
        ErrorCode::StaleEpoch,
        "the room moved to a new epoch; its members re-publish it shortly: fetch the group info again and retry",
    )
}

/// Suspicious events of one kind from one address within one window of the owner's audit
/// feed (see [`AUDIT_WINDOW_SECS`]): counted, not listed one by one, so a flood adds to a
/// count instead of pushing older records out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The first occurrence (seconds since the Unix epoch).
    pub time: u64,
    /// What happened, e.g. `auth-failed`.
    pub kind: String,
    /// Peer IP, if known; [`AUDIT_OTHER_ADDRESSES`] for addresses past the window's
    /// limit of rows.
    pub ip: Option<String>,
    /// Account short id, if known (the latest one seen).
    pub account: Option<String>,
    /// A short detail of the first occurrence (never a secret or payload).
    pub detail: String,
    /// How many times it happened.
    pub count: u64,
    /// The latest occurrence (seconds since the Unix epoch).
    pub last: u64,
}

impl AuditRecord {
    /// One occurrence at `time`.
    pub fn once(
        time: u64,
        kind: &str,
        ip: Option<String>,
        account: Option<String>,
        detail: &str,
    ) -> Self {
        Self {
            time,
            kind: kind.to_string(),
            ip,
            account,
            detail: detail.chars().take(200).collect(),
            count: 1,
            last: time,
        }
    }

    /// Adds `other` (of the same kind and address) to this record.
    pub fn absorb(&mut self, other: &AuditRecord) {
        self.count = self.count.saturating_add(other.count);
        self.time = self.time.min(other.time);
        self.last = self.last.max(other.last);
        if other.account.is_some() {
            self.account.clone_from(&other.account);
        }
    }
}

/// The audit feed's window: records of one kind and address within it share one row.
pub const AUDIT_WINDOW_SECS: u64 = 3600;
/// Distinct (kind, address) rows one window keeps; further addresses are counted in a
/// row of their kind with the address [`AUDIT_OTHER_ADDRESSES`]. Bounds what a flood from
/// many addresses can store, and never drops a count.
pub const AUDIT_ROWS_PER_WINDOW: usize = 256;
/// How long audit rows are kept.
pub const AUDIT_KEEP_SECS: u64 = 90 * 24 * 3600;
/// The address of the row that counts addresses past [`AUDIT_ROWS_PER_WINDOW`].
pub const AUDIT_OTHER_ADDRESSES: &str = "(other addresses)";

/// A change to the store; see [`Store::apply`].
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Create an account, consuming one use of an invite.
    Register {
        /// The key.
        account: AccountKey,
        /// The handle wanted.
        handle: Handle,
        /// Hash of the invite token presented.
        invite: Option<[u8; 32]>,
        /// Whether registration without an invite is allowed.
        open: bool,
        /// Now.
        now: u64,
    },
    /// Record a successful authentication; refuses banned and unknown accounts.
    Authenticate {
        /// The key.
        account: AccountKey,
        /// Now.
        now: u64,
    },
    /// Store a new invite.
    MintInvite {
        /// Invite record to store.
        invite: InviteRecord,
    },
    /// Delete the invites whose id starts with `prefix`.
    RevokeInvites {
        /// Hex prefix of [`InviteRecord::id`].
        prefix: String,
    },
    /// Ban or unban an account by handle.
    SetBanned {
        /// Whose.
        handle: Handle,
        /// Banned or not.
        banned: bool,
    },
    /// Set or clear an account's quota override.
    SetQuota {
        /// Whose.
        handle: Handle,
        /// New quota (`None`: the relay's default).
        quota: Option<u64>,
    },
    /// Add KeyPackages to an account's stock.
    PublishKeyPackages {
        /// Whose.
        account: AccountKey,
        /// One-use packages.
        packages: Vec<Vec<u8>>,
        /// Replacement last-resort package.
        last_resort: Option<Vec<u8>>,
        /// The relay's default quota.
        quota: u64,
        /// One-use packages one account may have stored
        /// ([`crate::config::RelayConfig::max_key_packages_per_account`]).
        max_stock: u64,
    },
    /// Take one KeyPackage of an account.
    TakeKeyPackage {
        /// Whose.
        handle: Handle,
    },
    /// Put a payload in an inbox. The depositor is not stored (decision 0013): the inbox
    /// is charged to its recipient, up to `inbox_quota` bytes, and depositors are
    /// rate-limited in memory by the service.
    Deposit {
        /// Recipient.
        to: AccountKey,
        /// Opaque bytes.
        payload: Vec<u8>,
        /// Now.
        now: u64,
        /// Bytes one inbox may hold ([`crate::config::RelayConfig::inbox_bytes_per_account`]),
        /// each entry counted as [`object_cost`].
        inbox_quota: u64,
    },
    /// Delete inbox entries.
    AckInbox {
        /// Whose inbox.
        account: AccountKey,
        /// Entry ids.
        ids: Vec<u64>,
    },
    /// Create a room log.
    CreateRoom {
        /// The room.
        room: RoomId,
        /// The first epoch's capability hash.
        cap_hash: CapHash,
        /// Retention.
        retention_secs: Option<u64>,
        /// Now.
        now: u64,
        /// Who creates it, charged [`ROOM_OVERHEAD_BYTES`] and counted against
        /// `max_rooms`; not stored with the room.
        creator: AccountKey,
        /// The creator's admin pseudonym for the room: the relay's first list of its
        /// admins.
        admin: AdminKey,
        /// The relay's default quota.
        quota: u64,
        /// Rooms one account may create
        /// ([`crate::config::RelayConfig::max_rooms_per_account`]).
        max_rooms: u64,
    },
    /// Append a message, or a commit that rotates the capability. The entry is charged to
    /// the room ([`RoomRecord::bytes`]); the author is not stored with it.
    Append {
        /// The room.
        room: RoomId,
        /// Hash of the presented capability.
        cap_hash: CapHash,
        /// The payload.
        payload: Vec<u8>,
        /// `Some`: this is a commit and the next epoch's capability hash.
        next_cap_hash: Option<CapHash>,
        /// For a commit that changes the room's admins: the pseudonym whose signature over
        /// the change the service checked, and the new list (replaces the relay's; refused
        /// unless that pseudonym is the room's owner at the relay).
        admins: Option<(AdminKey, Vec<AdminKey>)>,
        /// Now.
        now: u64,
        /// Bytes one room's log may hold
        /// ([`crate::config::RelayConfig::quota_bytes_per_room`]).
        room_quota: u64,
    },
    /// List a room in the directory (replacing an earlier listing), if `cap_hash` is the
    /// current capability and `epoch` the room's current epoch index.
    PublishRoom {
        /// The room.
        room: RoomId,
        /// Hash of the presented capability.
        cap_hash: CapHash,
        /// What to store (the room is charged for it).
        listing: ListingRecord,
        /// The admin pseudonym whose signature over the listing the service checked
        /// (`None`: none given; only a refresh under the same name is taken then).
        admin: Option<AdminKey>,
        /// Bytes one room may hold, its log and its listing together.
        room_quota: u64,
        /// Listings the directory holds at most
        /// ([`crate::config::RelayConfig::max_public_rooms`]).
        max_listings: u64,
    },
    /// Take a room out of the directory, if `cap_hash` is the current capability and
    /// `author` one of the room's admins.
    UnpublishRoom {
        /// The room.
        room: RoomId,
        /// Hash of the presented capability.
        cap_hash: CapHash,
        /// The admin pseudonym whose signature the service checked.
        admin: Option<AdminKey>,
    },
    /// Append an external commit to a listed room and rotate the capability, if `epoch`
    /// is the room's current epoch index and the listing is of that epoch.
    JoinPublic {
        /// The room.
        room: RoomId,
        /// The epoch index the commit was built for.
        epoch: u64,
        /// The MLS external commit.
        payload: Vec<u8>,
        /// The next epoch's capability hash.
        next_cap_hash: CapHash,
        /// Now.
        now: u64,
        /// Bytes one room's log may hold.
        room_quota: u64,
    },
    /// Change a room's retention.
    SetRetention {
        /// The room.
        room: RoomId,
        /// Hash of the presented capability.
        cap_hash: CapHash,
        /// New retention.
        retention_secs: Option<u64>,
        /// The admin pseudonym whose signature the service checked.
        admin: Option<AdminKey>,
    },
    /// Replace a room's admins, if `cap_hash` is current and `admin` the room's owner at
    /// the relay.
    SetRoomAdmins {
        /// The room.
        room: RoomId,
        /// Hash of the presented capability.
        cap_hash: CapHash,
        /// The admin pseudonym whose signature the service checked.
        admin: Option<AdminKey>,
        /// The account the connection signed in as, if it did: only used for a room of a
        /// migrated store whose owner account has not set the first list of pseudonyms.
        account: Option<AccountKey>,
        /// The new list (owner first).
        admins: Vec<AdminKey>,
    },
    /// Undo the room's last commit (see [`hearth_protocol::Request::RevertCommit`]).
    RevertCommit {
        /// The room.
        room: RoomId,
        /// Hash of the capability of the epoch the commit ended.
        cap_hash: CapHash,
        /// The commit.
        seq: Seq,
        /// The admin pseudonym whose signature the service checked.
        admin: AdminKey,
        /// The reverting admin's commit, appended in the same transaction under the
        /// restored capability (it removes the refused commit's author).
        payload: Vec<u8>,
        /// The capability hash it announces.
        next_cap_hash: CapHash,
        /// Now.
        now: u64,
        /// Bytes one room's log may hold.
        room_quota: u64,
    },
    /// Re-bind an account to a new key ([`hearth_protocol::Request::RotateKey`]; the
    /// signatures are checked before): the account record, its handle, its inbox and
    /// its quota move to `rotation.to`, its KeyPackages are dropped, `rotation.from` is
    /// refused from then on, and the rotation joins the account's chain.
    RotateKey {
        /// The signed rotation.
        rotation: KeyRotation,
        /// Now (one rotation per account per [`ROTATION_COOLDOWN_SECS`]).
        now: u64,
    },
    /// The whole retention sweep in this one op: [`Store::sweep_scan`] and
    /// [`WriteOp::SweepItems`] in turn until nothing is due or about `max_deletions` rows
    /// went (tools and tests; the relay's sweeper runs small [`WriteOp::SweepItems`] ops).
    Sweep {
        /// Now.
        now: u64,
        /// The relay's retention.
        retention_secs: u64,
        /// About this many deletions at most in this op.
        max_deletions: usize,
    },
    /// Delete what a [`Store::sweep_scan`] found due, each item checked again (it was
    /// found on an earlier snapshot), and refund the quota it took.
    SweepItems {
        /// Now (as given to the scan).
        now: u64,
        /// The relay's retention.
        retention_secs: u64,
        /// What the scan found.
        items: Vec<SweepItem>,
    },
    /// Count audit records into their window's row (see [`AuditRecord`]); rows older than
    /// [`AUDIT_KEEP_SECS`] are dropped.
    Audit(AuditRecord),
}

/// The least time between two key rotations of one account, in seconds: each is a
/// durable write and a retired key kept for good, and a fresh key would start with fresh
/// rate-limit buckets.
pub const ROTATION_COOLDOWN_SECS: u64 = 3600;

/// What an applied [`WriteOp`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing to report.
    Done,
    /// The account (registered, authenticated, banned...).
    Account(AccountRecord),
    /// Count of things affected.
    Count(u64),
    /// A KeyPackage stock.
    Stock {
        /// One-use packages left.
        available: u32,
        /// Last-resort package stored.
        last_resort: bool,
    },
    /// A KeyPackage taken.
    KeyPackage {
        /// Whose.
        account: AccountKey,
        /// The bytes.
        package: Vec<u8>,
        /// It is the last-resort package (handed out until replaced), not a one-use one.
        last_resort: bool,
    },
    /// An entry appended to a room.
    Appended {
        /// The room.
        room: RoomId,
        /// The entry as stored.
        entry: Entry,
        /// For a commit: the capability hash of the epoch it ended.
        ended: Option<CapHash>,
    },
    /// An inbox entry deposited for `to`.
    Deposited {
        /// The recipient.
        to: AccountKey,
    },
    /// A commit was reverted: `ended` is the capability hash of the refused epoch, and
    /// `entry` the reverting commit appended after it, which ended the restored epoch
    /// `restored`.
    Reverted {
        /// The room.
        room: RoomId,
        /// The refused epoch's capability hash.
        ended: CapHash,
        /// The reverting commit as stored.
        entry: Entry,
        /// The capability hash of the epoch it ended (the restored one).
        restored: CapHash,
    },
    /// Sweep results.
    Swept {
        /// Room entries deleted.
        entries: u64,
        /// Inbox entries deleted.
        inbox: u64,
        /// Directory listings deleted.
        listings: u64,
        /// Rows of ended epochs deleted (their capabilities could read nothing any more).
        epochs: u64,
    },
}

/// Which of the store's collections a retention sweep is looking at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SweepPhase {
    /// Room logs (expired entries) and their epochs.
    #[default]
    Rooms,
    /// Inbox entries.
    Inbox,
    /// Directory listings.
    Listings,
}

/// Where a retention sweep goes on from (see [`Store::sweep_scan`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepCursor {
    /// The collection.
    pub phase: SweepPhase,
    /// The key to start at, inclusive (`None`: the first).
    pub from: Option<Vec<u8>>,
}

/// Something a retention sweep found due, deleted by [`WriteOp::SweepItems`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepItem {
    /// A room's expired entries up to and including `through` (commits still within the
    /// relay's retention are kept).
    Entries {
        /// The room.
        room: RoomId,
        /// The last seq that may go.
        through: u64,
    },
    /// Rows of epochs of a room that ended before its first stored entry: a capability
    /// of one of them could read nothing.
    Epochs {
        /// The room.
        room: RoomId,
        /// The epochs' capability hashes.
        caps: Vec<CapHash>,
    },
    /// An expired inbox entry.
    Inbox {
        /// Whose inbox.
        account: AccountKey,
        /// The entry id.
        id: u64,
    },
    /// An expired directory listing.
    Listing {
        /// The room.
        room: RoomId,
    },
}

/// What one [`Store::sweep_scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepScan {
    /// What is due (a few hundred items at most).
    pub items: Vec<SweepItem>,
    /// Where the next scan starts (`None`: this sweep is done).
    pub next: Option<SweepCursor>,
}

/// Totals for `hearth-relay status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Accounts.
    pub accounts: u64,
    /// Rooms.
    pub rooms: u64,
    /// Room entries stored.
    pub entries: u64,
    /// Inbox entries stored.
    pub inbox: u64,
    /// Bytes charged for what is stored (accounts' own, rooms' logs, inboxes).
    pub bytes: u64,
    /// Size of the database file.
    pub file_bytes: u64,
}

/// A room and what a capability grants in it (or why it grants nothing).
pub type RoomAccess = (RoomRecord, Result<Access, WireError>);

/// The result of one op in a batch.
pub type OpResult = Result<Applied, WireError>;

/// Durable relay state.
pub trait Store: Send + Sync {
    /// Applies `ops` in order in one transaction and returns after a durable commit.
    ///
    /// Each op sees the effects of the ops before it. A refused op has no effect. On `Err`,
    /// nothing of the batch was stored.
    fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<OpResult>, StoreError>;
    /// An account by key.
    fn account(&self, account: &AccountKey) -> Result<Option<AccountRecord>, StoreError>;
    /// The chain of key rotations of the account named `handle`, oldest first (empty if
    /// its key never changed).
    fn rotations(&self, handle: &Handle) -> Result<Vec<KeyRotation>, StoreError>;
    /// The room's admin pseudonyms as the relay keeps them, owner first (empty for a room
    /// from before it did, or whose list a migration dropped).
    fn room_admins(&self, room: &RoomId) -> Result<Vec<AdminKey>, StoreError>;
    /// An account by handle.
    fn account_by_handle(&self, handle: &Handle) -> Result<Option<AccountRecord>, StoreError>;
    /// All accounts, ordered by handle.
    fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError>;
    /// One-use KeyPackages left and whether a last-resort one is stored.
    fn key_package_stock(&self, account: &AccountKey) -> Result<(u32, bool), StoreError>;
    /// Inbox entries with id > `after`, oldest first, at most `limit`.
    fn inbox(
        &self,
        account: &AccountKey,
        after: u64,
        limit: u32,
    ) -> Result<Vec<InboxEntry>, StoreError>;
    /// Like [`Store::inbox`], but stops once the payloads taken pass `max_bytes` (at least
    /// one entry is returned if there is one). Stores should override the default, which
    /// reads `limit` entries and cuts afterwards.
    fn inbox_within(
        &self,
        account: &AccountKey,
        after: u64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let mut entries = self.inbox(account, after, limit)?;
        keep_within(&mut entries, max_bytes, |e| e.payload.len());
        Ok(entries)
    }
    /// A room's metadata.
    fn room(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError>;
    /// What `cap_hash` grants in `room` (`Ok(None)`: the room does not exist).
    fn access(&self, room: &RoomId, cap_hash: &CapHash) -> Result<Option<RoomAccess>, StoreError>;
    /// Entries with `from <= seq <= to`, in order, at most `limit`.
    fn entries(
        &self,
        room: &RoomId,
        from: Seq,
        to: Seq,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError>;
    /// Like [`Store::entries`], but stops once the payloads taken pass `max_bytes` (at
    /// least one entry is returned if there is one): the read decodes no more than it
    /// returns, however large the entries. Stores should override the default, which
    /// reads `limit` entries and cuts afterwards.
    fn entries_within(
        &self,
        room: &RoomId,
        from: Seq,
        to: Seq,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut entries = self.entries(room, from, to, limit)?;
        keep_within(&mut entries, max_bytes, |e| e.payload.len());
        Ok(entries)
    }
    /// A room's listing in the directory and the room's current epoch index
    /// (`Ok(None)`: not listed).
    fn listing(&self, room: &RoomId) -> Result<Option<(ListingRecord, u64)>, StoreError>;
    /// The directory: at most `limit` listed rooms, ordered by public name. Past the
    /// limit, rooms are taken round-robin by who listed them, so each account's listings
    /// get an equal share and one account cannot hide another's.
    fn listings(&self, limit: usize) -> Result<Vec<(RoomId, ListingRecord)>, StoreError>;
    /// All invites.
    fn invites(&self) -> Result<Vec<InviteRecord>, StoreError>;
    /// The latest audit rows (by window), newest window last.
    fn audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// Totals.
    fn stats(&self) -> Result<StoreStats, StoreError>;
    /// How long the store's disk syncs took since it was opened; `None` for a store
    /// that does not sync (in memory).
    fn sync_times(&self) -> Option<sync_times::SyncHistogram> {
        None
    }
    /// What the store holds, table by table, and which records link an account to a room
    /// (see [`crate::inspect`]): `hearth-relay inspect`.
    fn inspect(&self) -> Result<crate::inspect::InspectReport, StoreError>;
    /// Finds what a retention sweep at `now` deletes, from `cursor` on, reading about
    /// `max_rows` rows of a consistent snapshot (so it runs beside the writer, not in its
    /// transaction). Apply `items` with [`WriteOp::SweepItems`], then scan from `next`.
    fn sweep_scan(
        &self,
        cursor: &SweepCursor,
        now: u64,
        retention_secs: u64,
        max_rows: usize,
    ) -> Result<SweepScan, StoreError>;
}

/// Cuts `items` after the first one whose size (`len`) takes the total past `max_bytes`;
/// the first item is always kept, so a reply is never empty while there is something.
pub(crate) fn keep_within<T>(items: &mut Vec<T>, max_bytes: usize, len: impl Fn(&T) -> usize) {
    let mut total = 0usize;
    let keep = items
        .iter()
        .position(|item| {
            let over = total > 0 && total + len(item) > max_bytes;
            total += len(item);
            over
        })
        .unwrap_or(items.len());
    items.truncate(keep);
}
