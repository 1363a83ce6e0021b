//! The messages of the hearth protocol.
//!
//! A connection carries one bidirectional QUIC stream of frames (see [`crate::frame`]):
//!
//! 1. The client sends [`ClientHello`]; the relay answers [`ServerHello`], which either
//!    accepts a version and carries an authentication challenge, or rejects the client's
//!    versions (naming both sides') and closes.
//! 2. The client sends [`ClientFrame`]s, each a [`Request`] with an id; the relay answers
//!    each with a [`ServerFrame::Response`] carrying the same id, and may push
//!    [`ServerFrame::Event`]s at any time (new room entries, re-authentication).
//! 3. Before authenticating, only [`Request::Register`], [`Request::Auth`],
//!    [`Request::Ping`] and [`Request::AdmissionKey`] are allowed, and, on a connection
//!    admitted with a token ([`Request::Admit`], decision 0016), the room requests a
//!    room's capability authorises ([`Request::capability_room`]).

use serde::{Deserialize, Serialize};

use crate::auth::{AdminList, AdminProof};
use crate::ids::{
    AccountKey, AdminKey, BlobId, Cap, CapHash, Handle, InviteToken, RoomId, Seq, Signature,
};

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    /// Protocol versions the client speaks, in order of preference.
    pub versions: Vec<u16>,
}

/// The relay's answer to [`ClientHello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerHello {
    /// The relay speaks `version`; sign `challenge` (see [`crate::auth`]) to authenticate.
    Accepted {
        /// The version both sides will speak.
        version: u16,
        /// A fresh random challenge for this connection.
        challenge: [u8; 32],
    },
    /// None of the client's versions is supported; the relay closes the connection.
    Rejected {
        /// The versions the relay speaks.
        supported: Vec<u16>,
        /// A human-readable explanation naming both sides' versions.
        message: String,
    },
}

/// A request from client to relay, tagged with an id the response repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in the response.
    pub id: u32,
    /// What the client asks.
    pub request: Request,
}

/// What a relay sends to a client after the hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The answer to the request with the same id.
    Response {
        /// The request's id.
        id: u32,
        /// The outcome.
        result: Result<Response, WireError>,
    },
    /// Something the relay pushes unasked.
    Event(Event),
}

/// A request from an account to the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Create an account with an invite token and authenticate this connection as it.
    ///
    /// `signature` signs [`crate::auth::auth_message`] with the account's key, proving
    /// possession. Answered with [`Response::Authenticated`].
    Register {
        /// The invite token (absent when the relay is open for registration).
        invite: Option<InviteToken>,
        /// The handle wanted; must be free.
        handle: Handle,
        /// The account's identity key.
        account: AccountKey,
        /// Signature over the connection's auth message.
        signature: Signature,
    },
    /// Authenticate this connection (also the answer to [`Event::Reauthenticate`]).
    /// Answered with [`Response::Authenticated`].
    Auth {
        /// The account's identity key.
        account: AccountKey,
        /// Signature over the auth message of the latest challenge.
        signature: Signature,
    },
    /// Liveness check; answered with [`Response::Pong`].
    Ping,

    /// Add KeyPackages to this account's stock in the key directory.
    /// Answered with [`Response::KeyPackageStock`].
    PublishKeyPackages {
        /// One-use KeyPackages (TLS-codec bytes).
        packages: Vec<serde_bytes::ByteBuf>,
        /// A last-resort KeyPackage, handed out when the stock is empty and never consumed.
        last_resort: Option<serde_bytes::ByteBuf>,
    },
    /// How many one-use KeyPackages this account has left. Answered with
    /// [`Response::KeyPackageStock`].
    KeyPackageStock,
    /// Take one KeyPackage of an account (consumed unless it is the last-resort one).
    /// Answered with [`Response::KeyPackage`].
    FetchKeyPackage {
        /// Whose KeyPackage.
        handle: Handle,
    },
    /// Look an account up by handle. Answered with [`Response::Account`].
    LookupAccount {
        /// The handle to look up.
        handle: Handle,
    },
    /// List all accounts on the relay. Answered with [`Response::Accounts`].
    ListAccounts,

    /// Put an opaque payload in another account's inbox. Answered with [`Response::Done`].
    Deposit {
        /// The recipient.
        to: AccountKey,
        /// Opaque bytes (typically an encrypted or MLS Welcome message).
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Fetch entries of this account's inbox. Answered with [`Response::Inbox`].
    FetchInbox {
        /// Only entries with an id greater than this.
        after: u64,
        /// The most entries wanted (capped by the relay).
        limit: u32,
    },
    /// Acknowledge inbox entries; the relay deletes them. Answered with [`Response::Done`].
    AckInbox {
        /// Ids of the entries to delete.
        ids: Vec<u64>,
    },

    /// Create a room log guarded by the hash of the first epoch's capability.
    /// Answered with [`Response::Done`].
    CreateRoom {
        /// The MLS group id.
        room: RoomId,
        /// Hash of the epoch-0 capability.
        cap_hash: CapHash,
        /// How long entries are kept, in seconds (`None`: the relay's retention).
        retention_secs: Option<u64>,
        /// The creator's admin pseudonym for this room: the relay's first list of the
        /// room's admins (the owner). Not stored with the account.
        admin: AdminKey,
    },
    /// Append an application message with the current epoch's capability.
    /// Answered with [`Response::Appended`].
    Append {
        /// The room.
        room: RoomId,
        /// The current epoch's capability.
        cap: Cap,
        /// The MLS message.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Append a commit and rotate the capability atomically. Fails with
    /// [`ErrorCode::StaleEpoch`] if `cap` is no longer the current epoch's.
    /// Answered with [`Response::Appended`].
    Commit {
        /// The room.
        room: RoomId,
        /// The current epoch's capability.
        cap: Cap,
        /// Hash of the next epoch's capability.
        next_cap_hash: CapHash,
        /// The MLS commit message.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        /// The room's admin pseudonyms (owner first) after this commit, when the commit
        /// changes them: the relay's list of who may change its settings for the room
        /// follows in the same transaction. Signed by the owner's pseudonym the relay lists
        /// (decisions 0009, 0013).
        admins: Option<AdminList>,
    },
    /// Read entries from `from` on. An old epoch's capability reads up to (and including)
    /// the commit that ended that epoch. Answered with [`Response::Entries`].
    Read {
        /// The room.
        room: RoomId,
        /// A capability of the current or an earlier epoch.
        cap: Cap,
        /// The first sequence number wanted.
        from: Seq,
        /// The most entries wanted (capped by the relay).
        limit: u32,
    },
    /// Push every entry from `from` on as [`Event::Entries`], first the backlog and then
    /// live, until the capability's epoch ends (the ending commit is still pushed), or
    /// until [`Request::Unsubscribe`]. Replaces an earlier subscription to the same room.
    /// Answered with [`Response::Done`].
    Subscribe {
        /// The room.
        room: RoomId,
        /// A capability of the current or an earlier epoch.
        cap: Cap,
        /// The first sequence number wanted.
        from: Seq,
    },
    /// Stop pushing entries of a room. Answered with [`Response::Done`].
    Unsubscribe {
        /// The room.
        room: RoomId,
    },
    /// Change how long a room's entries are kept. Needs the current capability.
    /// Answered with [`Response::Done`].
    SetRetention {
        /// The room.
        room: RoomId,
        /// The current epoch's capability.
        cap: Cap,
        /// Seconds to keep entries (`None`: the relay's retention).
        retention_secs: Option<u64>,
        /// An admin's signature over [`crate::AdminAction::SetRetention`] (`None` only
        /// for a room whose relay list of admins is empty).
        proof: Option<AdminProof>,
    },

    /// List a room in the relay's directory of public rooms under `public_name`, with a
    /// GroupInfo anyone registered may fetch to join by an external commit. Needs the
    /// current capability, and `epoch` must be the room's current epoch index (the number
    /// of commits so far), else [`ErrorCode::StaleEpoch`]. Replaces an earlier listing.
    /// Answered with [`Response::Done`].
    PublishRoom {
        /// The room.
        room: RoomId,
        /// The current epoch's capability.
        cap: Cap,
        /// The name shown in the directory (visible to the relay and every account).
        public_name: String,
        /// An MLS GroupInfo of the current epoch, with the ratchet tree (TLS-codec bytes).
        #[serde(with = "serde_bytes")]
        group_info: Vec<u8>,
        /// The room's epoch index the GroupInfo belongs to.
        epoch: u64,
        /// An admin's signature over [`crate::AdminAction::Publish`]; `None` for a
        /// member's refresh of the listing under the same name after a commit.
        proof: Option<AdminProof>,
    },
    /// Take a room out of the directory. Needs the current capability.
    /// Answered with [`Response::Done`].
    UnpublishRoom {
        /// The room.
        room: RoomId,
        /// The current epoch's capability.
        cap: Cap,
        /// An admin's signature over [`crate::AdminAction::Unpublish`].
        proof: Option<AdminProof>,
    },
    /// The directory of public rooms. Answered with [`Response::PublicRooms`].
    ListPublicRooms,
    /// The published GroupInfo of a listed room. Answered with [`Response::GroupInfo`].
    FetchGroupInfo {
        /// The room.
        room: RoomId,
    },
    /// Join a listed room with an MLS external commit: appended as a commit, rotating the
    /// capability atomically like [`Request::Commit`], but without a capability. Refused
    /// with [`ErrorCode::StaleEpoch`] unless `epoch` is the room's current epoch index and
    /// the listing is of that epoch (fetch the fresh GroupInfo and retry).
    /// Answered with [`Response::Appended`].
    JoinPublic {
        /// The room.
        room: RoomId,
        /// The epoch index of the GroupInfo the external commit was built on.
        epoch: u64,
        /// Hash of the capability of the epoch the external commit starts.
        next_cap_hash: CapHash,
        /// The MLS external commit.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Ask for (or stop) [`Event::AccountRegistered`] notices on this connection.
    /// Answered with [`Response::Done`].
    WatchRegistrations {
        /// Whether to receive them.
        on: bool,
    },
    /// What the relay holds for a room that its members should be able to check: the
    /// retention it applies. Needs a capability of the room's current epoch. Answered with
    /// [`Response::RoomStatus`].
    RoomStatus {
        /// The room.
        room: RoomId,
        /// The current epoch's capability.
        cap: Cap,
    },
    /// Re-bind this account to a new identity key (`hearth rotate-key`). The relay checks
    /// that `rotation.from` is this connection's account, that `rotation.signature`
    /// verifies by it and `proof` by `rotation.to` (both over
    /// [`crate::auth::rotation_message`]), and that `rotation.to` is not in use; then it
    /// moves the account, its inbox and its handle to the new key in one transaction,
    /// drops the KeyPackages of the old key, refuses the old key from then on, and this
    /// connection continues as the new key. Answered with [`Response::Authenticated`].
    RotateKey {
        /// The statement, signed by the old key.
        rotation: crate::auth::KeyRotation,
        /// The new key's signature over the same rotation message (proof of possession).
        proof: Signature,
    },
    /// Set the room's admin pseudonyms as the relay keeps them (those the owner and
    /// admins announced in the room's settings), signed by the owner's pseudonym the relay
    /// lists; the owner sets them when the relay's list differs from the room's (read back
    /// with [`Request::RoomStatus`]). Needs the current capability.
    /// Answered with [`Response::Done`].
    SetRoomAdmins {
        /// The room.
        room: RoomId,
        /// The current epoch's capability.
        cap: Cap,
        /// The room's admin pseudonyms, owner first (at most 64).
        admins: Vec<AdminKey>,
        /// The owner's signature over [`crate::AdminAction::SetAdmins`] (`None` only for
        /// a room whose relay list is empty: its first list).
        proof: Option<AdminProof>,
    },
    /// Undo the room's last commit, which members refused (it announced a capability that
    /// is not the one they derive, or it breaks the room's policy): the capability of the
    /// epoch before it (`cap`, which the commit at `seq` ended) is the current one again,
    /// and in the same transaction the reverting admin's own commit of that epoch
    /// (`payload`, removing the refused commit's author) is appended and rotates the
    /// capability to `next_cap_hash`, so the author's capability ends there. From an admin
    /// the relay lists; the refused commit stays in the log (members refuse it when they
    /// read it). Answered with [`Response::Appended`] (the reverting commit's seq).
    RevertCommit {
        /// The room.
        room: RoomId,
        /// The capability of the epoch the refused commit ended.
        cap: Cap,
        /// The refused commit's sequence number (the room's last commit).
        seq: Seq,
        /// Hash of the capability of the epoch the reverting commit starts.
        next_cap_hash: CapHash,
        /// The reverting admin's MLS commit, made in the epoch `cap` belongs to.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        /// The admin's signature over [`crate::AdminAction::Revert`].
        proof: AdminProof,
    },
    /// Store one piece of an encrypted attachment (decision 0014), with the current
    /// epoch's capability. The piece at offset 0 creates the blob and charges `total`
    /// bytes to the room; a piece at an offset at or below what the relay holds is
    /// written from there (resent pieces are harmless), beyond it is refused. Answered,
    /// once the piece is on disk (fsynced), with [`Response::BlobStored`]; the blob is
    /// complete (and readable) when `received == total`.
    PutBlob {
        /// The room the blob belongs to.
        room: RoomId,
        /// The current epoch's capability.
        cap: Cap,
        /// The blob, chosen at random by the uploader.
        blob: BlobId,
        /// The blob's whole size in bytes (the same in every piece).
        total: u64,
        /// Where this piece starts.
        offset: u64,
        /// The piece (at most [`crate::limits::MAX_BLOB_PIECE`] bytes).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// How much of a blob the relay holds (to resume an upload), with the current
    /// epoch's capability. Answered with [`Response::BlobStored`] (`received: 0` for a
    /// blob it does not hold).
    BlobStatus {
        /// The room.
        room: RoomId,
        /// The current epoch's capability.
        cap: Cap,
        /// The blob.
        blob: BlobId,
    },
    /// Read part of a complete blob. A capability of an ended epoch reads only blobs whose
    /// upload began before that epoch ended. Answered with [`Response::Blob`].
    GetBlob {
        /// The room.
        room: RoomId,
        /// A capability of the current or an earlier epoch.
        cap: Cap,
        /// The blob.
        blob: BlobId,
        /// The first byte wanted.
        offset: u64,
        /// The most bytes wanted (capped at [`crate::limits::MAX_BLOB_PIECE`]).
        len: u32,
    },
    /// The relay's current admission key, the same for every connection (decision 0016).
    /// Allowed before signing in; a room connection asks it before it is admitted, so the
    /// relay cannot hand one account a key of its own. Answered with
    /// [`Response::AdmissionKey`].
    AdmissionKey,
    /// Blindly evaluate exactly [`crate::ADMISSION_BATCH`] tokens under `key`, the
    /// relay's current admission key. Signed-in accounts that are not banned only; the
    /// relay bounds how many batches an account gets per key. Answered with
    /// [`Response::AdmissionIssued`]; [`ErrorCode::StaleEpoch`] when `key` is no longer
    /// the relay's (ask [`Request::AdmissionKey`] again).
    IssueAdmission {
        /// The key the client will check the proof against.
        key: crate::AdmissionKey,
        /// The blinded token inputs.
        blinded: Vec<crate::BlindedToken>,
    },
    /// Admit this connection to room requests with a token of the relay's current
    /// admission key (or, for the relay's grace period after it changed, the one before).
    /// Needed once per connection that has not signed in, and again after
    /// [`Event::Readmit`]. Answered with [`Response::Done`]; [`ErrorCode::NotAdmitted`]
    /// when the token is not the relay's.
    Admit {
        /// The key the token was issued under.
        key: crate::AdmissionKey,
        /// The token.
        token: crate::AdmissionToken,
    },
}

impl Request {
    /// The room of a request the room capability authorises (decision 0013 part 5):
    /// alone (reading, subscribing, appending, committing, the room's status and its
    /// attachments), or with a room admin's pseudonym signing the exact change (the
    /// room's retention, unlisting it, its list of admins, undoing a commit, a commit
    /// that changes the list), which the relay checks by pseudonym, never by account.
    /// Clients send these on a connection of the room's own that never signs in, and the
    /// relay answers them there; everything else needs a signed-in connection (and so
    /// does the one exception, a migrated room's first list of admins, which the relay
    /// takes from its owner's account). `None` for the others.
    pub fn capability_room(&self) -> Option<RoomId> {
        match self {
            Request::Append { room, .. }
            | Request::Read { room, .. }
            | Request::Subscribe { room, .. }
            | Request::Unsubscribe { room }
            | Request::RoomStatus { room, .. }
            | Request::PutBlob { room, .. }
            | Request::BlobStatus { room, .. }
            | Request::GetBlob { room, .. }
            | Request::Commit { room, .. }
            | Request::SetRetention { room, .. }
            | Request::UnpublishRoom { room, .. }
            | Request::SetRoomAdmins { room, .. }
            | Request::RevertCommit { room, .. } => Some(*room),
            _ => None,
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The request was carried out and durably stored.
    Done,
    /// The connection is now authenticated as `handle`.
    Authenticated {
        /// The account's handle.
        handle: Handle,
        /// The relay's clock, seconds since the Unix epoch: clients judge the age of
        /// entries (which carry the relay's time) against it, not their own clock.
        now: u64,
    },
    /// Answer to [`Request::Ping`].
    Pong,
    /// The number of one-use KeyPackages left, and whether a last-resort one is stored.
    KeyPackageStock {
        /// One-use KeyPackages left.
        available: u32,
        /// Whether a last-resort KeyPackage is stored and has not been handed out since it
        /// was published (`false`: publish a new one).
        last_resort: bool,
    },
    /// One KeyPackage of an account.
    KeyPackage {
        /// The account it belongs to.
        account: AccountKey,
        /// The KeyPackage (TLS-codec bytes).
        #[serde(with = "serde_bytes")]
        package: Vec<u8>,
    },
    /// One account of the directory.
    Account(AccountInfo),
    /// All accounts of the directory.
    Accounts(Vec<AccountInfo>),
    /// Inbox entries, oldest first.
    Inbox(Vec<InboxEntry>),
    /// The entry was appended (durably) as `seq`.
    Appended {
        /// Its sequence number.
        seq: Seq,
    },
    /// Entries of a room log, in order.
    Entries {
        /// The entries read.
        entries: Vec<Entry>,
        /// The room's latest sequence number readable with the capability used.
        last: Seq,
    },
    /// The directory of public rooms, ordered by name.
    PublicRooms(Vec<PublicRoomInfo>),
    /// The GroupInfo of a listed room.
    GroupInfo {
        /// An MLS GroupInfo with the ratchet tree (TLS-codec bytes).
        #[serde(with = "serde_bytes")]
        group_info: Vec<u8>,
        /// The room's epoch index it belongs to; give it back in [`Request::JoinPublic`].
        epoch: u64,
    },
    /// Answer to [`Request::RoomStatus`].
    RoomStatus {
        /// The room's own retention in seconds (`None`: the relay's).
        retention_secs: Option<u64>,
        /// The relay's own retention in seconds (the most any room keeps).
        relay_retention_secs: u64,
        /// The admin pseudonyms the relay lets change the room's settings and revert
        /// commits, owner first (empty for a room from before the relay kept them: anyone
        /// with the current capability).
        admins: Vec<AdminKey>,
    },
    /// Answer to [`Request::PutBlob`] and [`Request::BlobStatus`]: the relay holds the
    /// blob's bytes up to `received`, on disk.
    BlobStored {
        /// Bytes held from the start of the blob.
        received: u64,
        /// The blob's whole size (0 for a blob the relay does not hold).
        total: u64,
    },
    /// Answer to [`Request::GetBlob`].
    Blob {
        /// The blob's whole size.
        total: u64,
        /// The bytes from the offset asked for (fewer than asked only at the end).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The relay's current admission key (answer to [`Request::AdmissionKey`]).
    AdmissionKey(crate::AdmissionKey),
    /// The blind evaluations of [`Request::IssueAdmission`], in order, with the proof
    /// that they were made with the key asked for.
    AdmissionIssued {
        /// One per blinded token.
        evaluated: Vec<crate::EvaluatedToken>,
        /// The batch proof (RFC 9497 section 2.2.1).
        proof: crate::AdmissionProof,
    },
}

/// One room of the directory of public rooms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicRoomInfo {
    /// The room.
    pub room: RoomId,
    /// The name its members chose to publish.
    pub public_name: String,
    /// The epoch index of the published GroupInfo.
    pub epoch: u64,
    /// When it was (last) published, seconds since the Unix epoch.
    pub published: u64,
}

/// A public entry of the key directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// The unique handle.
    pub handle: Handle,
    /// The identity key.
    pub account: AccountKey,
    /// Registration time, seconds since the Unix epoch.
    pub created: u64,
    /// The account's key rotations, oldest first, ending at `account` (empty for a key
    /// never rotated; the relay keeps the last [`crate::limits::MAX_ROTATIONS_KEPT`]).
    /// Members check this chain before they accept a changed key in a room.
    pub rotations: Vec<crate::auth::KeyRotation>,
}

/// One entry of an account's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Id, increasing per inbox.
    pub id: u64,
    /// The day the relay stored it: the start of that day (UTC), seconds since the Unix
    /// epoch (a finer time would match an invitation to its Add commit; decision 0013).
    pub time: u64,
    /// The opaque payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Whether a room entry is an application message or a commit that ended an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// An MLS application (or proposal) message.
    Message,
    /// An MLS commit; the capability rotated with it.
    Commit,
}

/// One entry of a room log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Contiguous, starting at 1.
    pub seq: Seq,
    /// Message or commit.
    pub kind: EntryKind,
    /// When the relay stored it, seconds since the Unix epoch.
    pub time: u64,
    /// The MLS message bytes.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// For a commit: the hash of the next epoch's capability its committer announced, so
    /// that members can check it against the one they derive and refuse a commit that
    /// would lock them out (decision 0009).
    pub next_cap_hash: Option<CapHash>,
}

/// Something the relay pushes without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// New entries of a subscribed room, in order, without gaps.
    Entries {
        /// The room.
        room: RoomId,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// The subscription ended because the capability's epoch ended; re-subscribe with the
    /// new epoch's capability from `next`.
    SubscriptionEnded {
        /// The room.
        room: RoomId,
        /// The first sequence number not pushed.
        next: Seq,
    },
    /// An inbox entry arrived.
    InboxArrived,
    /// Sign this new challenge with [`Request::Auth`] within the relay's grace period, or
    /// the connection is closed.
    Reauthenticate {
        /// The new challenge.
        challenge: [u8; 32],
    },
    /// A new account registered on the relay (sent to connections that asked with
    /// [`Request::WatchRegistrations`]; a live notice, not stored).
    AccountRegistered {
        /// The new account's handle.
        handle: Handle,
        /// The new account's identity key.
        account: AccountKey,
    },
    /// The relay's admission key changed (an account was banned, decision 0016): admit
    /// this connection again with a token of `key` ([`Request::Admit`]) within the
    /// relay's grace period, or it is closed. Sent to connections that have not signed in
    /// and were admitted.
    Readmit {
        /// The new key.
        key: crate::AdmissionKey,
    },
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame could not be decoded or the request is not valid.
    BadRequest,
    /// The request needs an authenticated connection.
    Unauthenticated,
    /// The signature, key or challenge did not check out.
    AuthFailed,
    /// The account is banned on this relay.
    Banned,
    /// The invite token is unknown or revoked.
    InviteInvalid,
    /// The invite token has expired.
    InviteExpired,
    /// The invite token has been used as often as allowed.
    InviteSpent,
    /// Registration needs an invite on this relay.
    InviteRequired,
    /// The handle is taken by another account.
    HandleTaken,
    /// The account key is already registered.
    AlreadyRegistered,
    /// No such account.
    UnknownAccount,
    /// The account has no KeyPackage left.
    NoKeyPackage,
    /// A room with this id exists already.
    RoomExists,
    /// No such room.
    UnknownRoom,
    /// The capability does not grant this.
    Forbidden,
    /// The capability belongs to an epoch that has ended: catch up, then retry.
    StaleEpoch,
    /// A frame or payload exceeds the relay's limit.
    TooLarge,
    /// The account's storage quota is used up.
    QuotaExceeded,
    /// Too many requests; slow down.
    RateLimited,
    /// The relay failed; nothing was stored.
    Internal,
    /// The relay's disk is nearly full: it stores nothing new until space is freed (reads,
    /// logins and deletions still work).
    StorageFull,
    /// No such blob in the room (never uploaded, not finished, or deleted by retention).
    UnknownBlob,
    /// A connection that has not signed in must be admitted with a token
    /// ([`Request::Admit`]) before it sends room requests, or the token was not the
    /// relay's (decision 0016).
    NotAdmitted,
}

/// An error answer: a code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// A short explanation.
    pub message: String,
}

impl WireError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        value: &T,
    ) {
        let bytes = postcard::to_allocvec(value).unwrap();
        let back: T = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&back, value);
    }

    fn handle() -> impl Strategy<Value = Handle> {
        "[a-z][a-z0-9_-]{0,31}".prop_map(|s| Handle::new(&s).unwrap())
    }

    fn proof(seed: [u8; 32]) -> AdminProof {
        let mut signature = [0u8; 64];
        signature[32..].copy_from_slice(&seed);
        AdminProof {
            admin: AdminKey(seed),
            signature: Signature(signature),
        }
    }

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..256)
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (
                any::<Option<[u8; 16]>>(),
                handle(),
                any::<[u8; 32]>(),
                any::<[u8; 32]>()
            )
                .prop_map(|(t, h, k, s)| {
                    let mut sig = [0u8; 64];
                    sig[..32].copy_from_slice(&s);
                    Request::Register {
                        invite: t.map(InviteToken),
                        handle: h,
                        account: AccountKey(k),
                        signature: Signature(sig),
                    }
                }),
            Just(Request::Ping),
            Just(Request::ListAccounts),
            (
                proptest::collection::vec(payload(), 0..4),
                proptest::option::of(payload())
            )
                .prop_map(|(p, l)| Request::PublishKeyPackages {
                    packages: p.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                    last_resort: l.map(serde_bytes::ByteBuf::from),
                }),
            handle().prop_map(|handle| Request::FetchKeyPackage { handle }),
            (any::<[u8; 32]>(), payload()).prop_map(|(k, payload)| Request::Deposit {
                to: AccountKey(k),
                payload
            }),
            (any::<u64>(), any::<u32>())
                .prop_map(|(after, limit)| Request::FetchInbox { after, limit }),
            proptest::collection::vec(any::<u64>(), 0..8).prop_map(|ids| Request::AckInbox { ids }),
            (any::<[u8; 16]>(), any::<[u8; 32]>(), any::<Option<u64>>()).prop_map(
                |(r, c, retention_secs)| Request::CreateRoom {
                    room: RoomId(r),
                    cap_hash: CapHash(c),
                    retention_secs,
                    admin: AdminKey(c),
                }
            ),
            (any::<[u8; 16]>(), any::<[u8; 32]>(), payload()).prop_map(|(r, c, payload)| {
                Request::Append {
                    room: RoomId(r),
                    cap: Cap(c),
                    payload,
                }
            }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                payload(),
                proptest::option::of(proptest::collection::vec(any::<[u8; 32]>(), 0..4))
            )
                .prop_map(|(r, c, n, payload, admins)| Request::Commit {
                    room: RoomId(r),
                    cap: Cap(c),
                    next_cap_hash: CapHash(n),
                    payload,
                    admins: admins.map(|a| AdminList {
                        admins: a.into_iter().map(AdminKey).collect(),
                        proof: proof(n),
                    }),
                }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 32]>(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..4)
            )
                .prop_map(|(r, c, admins)| Request::SetRoomAdmins {
                    room: RoomId(r),
                    cap: Cap(c),
                    admins: admins.into_iter().map(AdminKey).collect(),
                    proof: Some(proof(c)),
                }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 32]>(),
                any::<u64>(),
                payload()
            )
                .prop_map(|(r, c, s, payload)| {
                    Request::RevertCommit {
                        room: RoomId(r),
                        cap: Cap(c),
                        seq: Seq(s),
                        next_cap_hash: CapHash(c),
                        payload,
                        proof: proof(c),
                    }
                }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 32]>(),
                any::<u64>(),
                any::<u32>()
            )
                .prop_map(|(r, c, f, limit)| Request::Read {
                    room: RoomId(r),
                    cap: Cap(c),
                    from: Seq(f),
                    limit
                }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 32]>(),
                ".{0,64}",
                payload(),
                any::<u64>()
            )
                .prop_map(|(r, c, public_name, group_info, epoch)| {
                    Request::PublishRoom {
                        room: RoomId(r),
                        cap: Cap(c),
                        public_name,
                        group_info,
                        epoch,
                        proof: (epoch % 2 == 0).then(|| proof(c)),
                    }
                }),
            (any::<[u8; 16]>(), any::<[u8; 32]>()).prop_map(|(r, c)| Request::UnpublishRoom {
                room: RoomId(r),
                cap: Cap(c),
                proof: Some(proof(c)),
            }),
            Just(Request::ListPublicRooms),
            any::<[u8; 16]>().prop_map(|r| Request::FetchGroupInfo { room: RoomId(r) }),
            (
                any::<[u8; 16]>(),
                any::<u64>(),
                any::<[u8; 32]>(),
                payload()
            )
                .prop_map(|(r, epoch, n, payload)| Request::JoinPublic {
                    room: RoomId(r),
                    epoch,
                    next_cap_hash: CapHash(n),
                    payload
                }),
            any::<bool>().prop_map(|on| Request::WatchRegistrations { on }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<u64>(),
                any::<u64>(),
                payload()
            )
                .prop_map(|(r, b, total, offset, data)| Request::PutBlob {
                    room: RoomId(r),
                    cap: Cap([7; 32]),
                    blob: BlobId(b),
                    total,
                    offset,
                    data,
                }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<u64>(),
                any::<u32>()
            )
                .prop_map(|(r, b, offset, len)| Request::GetBlob {
                    room: RoomId(r),
                    cap: Cap([7; 32]),
                    blob: BlobId(b),
                    offset,
                    len,
                }),
        ]
    }

    fn public_room() -> impl Strategy<Value = PublicRoomInfo> {
        (any::<[u8; 16]>(), ".{0,64}", any::<u64>(), any::<u64>()).prop_map(
            |(r, public_name, epoch, published)| PublicRoomInfo {
                room: RoomId(r),
                public_name,
                epoch,
                published,
            },
        )
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            any::<u64>(),
            any::<bool>(),
            any::<u64>(),
            payload(),
            any::<[u8; 32]>(),
        )
            .prop_map(|(s, c, time, payload, next)| Entry {
                seq: Seq(s),
                kind: if c {
                    EntryKind::Commit
                } else {
                    EntryKind::Message
                },
                time,
                payload,
                next_cap_hash: c.then_some(CapHash(next)),
            })
    }

    proptest! {
        #[test]
        fn requests_round_trip(id in any::<u32>(), request in request()) {
            round_trip(&ClientFrame { id, request });
        }

        #[test]
        fn responses_round_trip(id in any::<u32>(), entries in proptest::collection::vec(entry(), 0..4), last in any::<u64>()) {
            round_trip(&ServerFrame::Response { id, result: Ok(Response::Entries { entries: entries.clone(), last: Seq(last) }) });
            round_trip(&ServerFrame::Event(Event::Entries { room: RoomId([1; 16]), entries }));
        }

        #[test]
        fn directory_round_trips(id in any::<u32>(), rooms in proptest::collection::vec(public_room(), 0..4), group_info in payload(), epoch in any::<u64>(), h in handle(), k in any::<[u8; 32]>()) {
            round_trip(&ServerFrame::Response { id, result: Ok(Response::PublicRooms(rooms)) });
            round_trip(&ServerFrame::Response { id, result: Ok(Response::GroupInfo { group_info, epoch }) });
            round_trip(&ServerFrame::Event(Event::AccountRegistered { handle: h, account: AccountKey(k) }));
        }

        #[test]
        fn errors_round_trip(id in any::<u32>(), message in ".{0,64}") {
            round_trip(&ServerFrame::Response { id, result: Err(WireError::new(ErrorCode::StaleEpoch, message)) });
        }

        #[test]
        fn hellos_round_trip(versions in proptest::collection::vec(any::<u16>(), 0..4), challenge in any::<[u8; 32]>()) {
            round_trip(&ClientHello { versions: versions.clone() });
            round_trip(&ServerHello::Accepted { version: 1, challenge });
            round_trip(&ServerHello::Rejected { supported: versions, message: "no".into() });
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = postcard::from_bytes::<ClientFrame>(&bytes);
            let _ = postcard::from_bytes::<ServerFrame>(&bytes);
            let _ = postcard::from_bytes::<ClientHello>(&bytes);
            let _ = postcard::from_bytes::<ServerHello>(&bytes);
        }
    }

    /// New variants go at the end, so the encodings of existing ones never change.
    #[test]
    fn variant_indices_are_stable() {
        let index = |r: &Request| postcard::to_allocvec(r).unwrap()[0];
        assert_eq!(index(&Request::Ping), 2);
        assert_eq!(
            index(&Request::Unsubscribe {
                room: RoomId([0; 16])
            }),
            16
        );
        assert_eq!(index(&Request::ListPublicRooms), 20);
        assert_eq!(index(&Request::WatchRegistrations { on: true }), 23);
        let event = |e: &Event| postcard::to_allocvec(e).unwrap()[0];
        assert_eq!(event(&Event::InboxArrived), 2);
        let notice = Event::AccountRegistered {
            handle: Handle::new("dave").unwrap(),
            account: AccountKey([0; 32]),
        };
        assert_eq!(event(&notice), 4);
        let response = |r: &Response| postcard::to_allocvec(r).unwrap()[0];
        assert_eq!(response(&Response::PublicRooms(Vec::new())), 10);
        let (room, cap, blob) = (RoomId([0; 16]), Cap([0; 32]), BlobId([0; 16]));
        assert_eq!(index(&Request::BlobStatus { room, cap, blob }), 29);
        let stored = Response::BlobStored {
            received: 0,
            total: 0,
        };
        assert_eq!(response(&stored), 13);
        let code = |c: ErrorCode| postcard::to_allocvec(&c).unwrap()[0];
        assert_eq!(code(ErrorCode::StorageFull), 20);
        assert_eq!(code(ErrorCode::UnknownBlob), 21);
    }
}
