//! A room's local state: its MLS group plus what hearth keeps beside it.

use hearth_protocol::{AccountKey, Handle, RoomId, Seq};
use openmls::prelude::*;
use serde::{Deserialize, Serialize};

use crate::content::Body;
use crate::error::{store as store_err, ClientError};
use crate::events::Role;
use crate::mls::{handle_of, Engine, RoomSettings, SettingsError};
use crate::store::{Table, WriteBatch};
use crate::transcript::Transcript;

/// Where we stand in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// We joined from a Welcome but have not accepted the invitation yet.
    Invited {
        /// Who invited us.
        from: Handle,
        /// When the invitation reached the relay (seconds since the Unix epoch).
        received: u64,
    },
    /// A member.
    Joined,
}

/// Something we sent whose fate is not yet known (kept across restarts, so an own
/// entry in the log is recognised even after a crash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Inflight {
    /// An application message.
    Message {
        /// The MLS message bytes as appended.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        /// What it said.
        body: Body,
    },
    /// A commit (the group holds it as its pending commit).
    Commit {
        /// The MLS commit bytes as sent.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A commit that adds people, with the Welcome they need: once the commit is in the
    /// log, the Welcome goes to the outbox ([`super::outbox`]) in the same batch, so a
    /// crash between the commit and the deposits never leaves someone added who cannot
    /// get in (issue 13's ghost member).
    CommitWithWelcome {
        /// The MLS commit bytes as sent.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        /// The MLS Welcome bytes.
        #[serde(with = "serde_bytes")]
        welcome: Vec<u8>,
        /// Whose inboxes it goes to (the accounts the commit adds).
        to: Vec<AccountKey>,
    },
}

impl Inflight {
    /// The bytes sent to the relay.
    pub fn payload(&self) -> &[u8] {
        match self {
            Inflight::Message { payload, .. }
            | Inflight::Commit { payload }
            | Inflight::CommitWithWelcome { payload, .. } => payload,
        }
    }
}

/// An entry of ours that processing found in the log (in memory only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandedOwn {
    /// Where it is.
    pub seq: Seq,
    /// SHA-256 of its bytes as appended (the in-flight payload it matched): an operation
    /// checks that it is its own attempt, not an earlier one of the room that landed.
    digest: [u8; 32],
}

impl LandedOwn {
    /// `payload`, found in the log at `seq`.
    pub fn new(seq: Seq, payload: &[u8]) -> Self {
        use sha2::Digest;
        Self {
            seq,
            digest: sha2::Sha256::digest(payload).into(),
        }
    }

    /// Whether this is the entry whose bytes are `payload`.
    pub fn is(&self, payload: &[u8]) -> bool {
        use sha2::Digest;
        self.digest[..] == sha2::Sha256::digest(payload)[..]
    }
}

/// The persisted hearth state of a room (`Table::Rooms`, key = room id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// Format version (1).
    pub version: u8,
    /// The room's name (from the settings extension).
    pub name: String,
    /// Invited or joined.
    pub status: Status,
    /// The transcript (its `last` is the last processed seq).
    pub transcript: Transcript,
    /// What we sent and have not seen in the log yet.
    pub inflight: Option<Inflight>,
    /// State added after format 1, stored in a trailing section (see
    /// [`RoomRecord::encode`]).
    #[serde(skip)]
    pub extra: RoomExtra,
}

/// Room state added after the first record format. Encoded after the record's own
/// fields, and only when it differs from the default, so records written before it
/// existed read as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomExtra {
    /// A member showed us a different history of the room at this seq (a fork) and the
    /// user has not acknowledged it yet: sending messages waits until they do.
    pub fork: Option<hearth_protocol::Seq>,
    /// We joined from a Welcome whose signed join point is the log before the commit
    /// that added us: entries up to and including that commit are hashed into the
    /// transcript, not processed (they belong to the epoch before ours).
    pub before_join: bool,
    /// When we last committed a fresh leaf of our own here (relay time, seconds since
    /// the Unix epoch; 0: not since this field exists). See `Inner::self_update`.
    pub updated_at: u64,
    /// The first seq we never received (a gap: expired, or dropped): from there our
    /// transcript hashes cannot match other members', so a mismatch is reported but does
    /// not hold messages back.
    pub gap_from: Option<hearth_protocol::Seq>,
    /// The room's last commit, which we refused (decision 0009): until an admin reverts
    /// it at the relay, the relay's capability is one we cannot derive. (Version 2.)
    pub refused: Option<Refused>,
    /// An admin rebuilt this room as the room given (DESIGN 4): this one is the old
    /// room, shown as `name (old)` and never chosen by its name. (Version 3.)
    pub rebuilt_as: Option<hearth_protocol::RoomId>,
    /// The relay listed admin pseudonyms for this room once (decision 0013 part 5): an
    /// empty list later is not a store migrated from before pseudonyms, and the owner
    /// does not set the first list from its signed-in account (which would show the
    /// relay that account with the room). (Version 4.)
    pub relay_listed_admins: bool,
}

/// [`RoomExtra`] as version 1 wrote it (before `refused`).
#[derive(Deserialize)]
struct RoomExtraV1 {
    fork: Option<hearth_protocol::Seq>,
    before_join: bool,
    updated_at: u64,
    gap_from: Option<hearth_protocol::Seq>,
}

impl From<RoomExtraV1> for RoomExtra {
    fn from(v1: RoomExtraV1) -> Self {
        RoomExtra {
            fork: v1.fork,
            before_join: v1.before_join,
            updated_at: v1.updated_at,
            gap_from: v1.gap_from,
            refused: None,
            rebuilt_as: None,
            relay_listed_admins: false,
        }
    }
}

/// [`RoomExtra`] as version 2 wrote it (before `rebuilt_as`).
#[derive(Deserialize)]
struct RoomExtraV2 {
    fork: Option<hearth_protocol::Seq>,
    before_join: bool,
    updated_at: u64,
    gap_from: Option<hearth_protocol::Seq>,
    refused: Option<Refused>,
}

impl From<RoomExtraV2> for RoomExtra {
    fn from(v2: RoomExtraV2) -> Self {
        RoomExtra {
            fork: v2.fork,
            before_join: v2.before_join,
            updated_at: v2.updated_at,
            gap_from: v2.gap_from,
            refused: v2.refused,
            rebuilt_as: None,
            relay_listed_admins: false,
        }
    }
}

/// [`RoomExtra`] as version 3 wrote it (before `relay_listed_admins`).
#[derive(Deserialize)]
struct RoomExtraV3 {
    fork: Option<hearth_protocol::Seq>,
    before_join: bool,
    updated_at: u64,
    gap_from: Option<hearth_protocol::Seq>,
    refused: Option<Refused>,
    rebuilt_as: Option<hearth_protocol::RoomId>,
}

impl From<RoomExtraV3> for RoomExtra {
    fn from(v3: RoomExtraV3) -> Self {
        RoomExtra {
            fork: v3.fork,
            before_join: v3.before_join,
            updated_at: v3.updated_at,
            gap_from: v3.gap_from,
            refused: v3.refused,
            rebuilt_as: v3.rebuilt_as,
            relay_listed_admins: false,
        }
    }
}

/// The format version of the [`RoomExtra`] section. A later version adds fields at the
/// end of the struct, and reads the earlier versions' bytes by filling the new fields
/// with defaults.
const ROOM_EXTRA_VERSION: u8 = 4;

impl RoomRecord {
    /// The stored bytes: the record, then, when it is not empty, the [`RoomExtra`]
    /// section: its version byte and its postcard encoding.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut bytes = postcard::to_allocvec(self)?;
        if self.extra != RoomExtra::default() {
            bytes.push(ROOM_EXTRA_VERSION);
            bytes.extend(postcard::to_allocvec(&self.extra)?);
        }
        Ok(bytes)
    }

    /// Decodes stored bytes (with or without the trailing section).
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        let (mut record, rest): (RoomRecord, _) = postcard::take_from_bytes(bytes)?;
        match rest.split_first() {
            None => {}
            Some((&ROOM_EXTRA_VERSION, extra)) => record.extra = postcard::from_bytes(extra)?,
            Some((3, extra)) => record.extra = postcard::from_bytes::<RoomExtraV3>(extra)?.into(),
            Some((2, extra)) => record.extra = postcard::from_bytes::<RoomExtraV2>(extra)?.into(),
            Some((1, extra)) => record.extra = postcard::from_bytes::<RoomExtraV1>(extra)?.into(),
            Some(_) => return Err(postcard::Error::DeserializeBadEncoding),
        }
        Ok(record)
    }
}

/// A room in memory: the record, the group, and connection-local flags.
pub struct Room {
    /// The room id (= MLS group id).
    pub id: RoomId,
    /// Persisted state.
    pub rec: RoomRecord,
    /// The MLS group.
    pub group: MlsGroup,
    /// The epoch our current subscription was made with (None: not subscribed).
    pub subscribed: Option<u64>,
    /// A member asked to leave and we are the one to commit it.
    pub commit_proposals: bool,
    /// We are no longer a member (removed); the room is kept only until restart.
    pub removed: bool,
    /// Our subscription of this epoch ended without anything new to read: the relay
    /// ended our capability (a commit of ours undone by an admin). Not subscribed again
    /// until the relay says it is current (see `revert::stuck_loop`), or the epoch moves.
    pub orphaned_epoch: Option<u64>,
    /// We subscribed at a new epoch while the previous epoch's subscription had not been
    /// told ended yet: its `SubscriptionEnded` (with this `next`) is still on its way and
    /// is not about the current subscription.
    pub expected_end: Option<Seq>,
    /// Our last in-flight entry, when processing found it in the log: how an operation
    /// whose answer was lost learns that it happened, and which attempt it was.
    pub landed_own: Option<LandedOwn>,
    /// The admin pseudonyms the relay lists for the room, as far as we know (in memory;
    /// `None`: not known yet): an owner sets the relay's list again when the room's
    /// differs (decision 0013, part 5).
    pub relay_admins: Option<Vec<hearth_protocol::AdminKey>>,
    /// Where the relay appended our commit that went with a revert, until we read it back
    /// (in memory): the entries before it and after the undone commit were made on top of
    /// the undone commit, so none of them voids ours.
    pub revert_landed: Option<Seq>,
}

/// A commit the relay appended and we refused: it announced a capability other than the
/// one we derive from it, or it breaks the room's policy. Every honest member refuses it
/// alike, so the room is stuck until an admin reverts it at the relay
/// ([`hearth_protocol::Request::RevertCommit`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// Where it is in the log.
    pub seq: Seq,
    /// Who wrote it (`None`: bytes that are no commit of this room at all).
    pub by: Option<Handle>,
    /// The committer's identity key, when known.
    pub committer: Option<AccountKey>,
}

impl Room {
    /// Adds the record to a batch.
    pub fn save(&self, batch: &mut WriteBatch<'_>) -> Result<(), ClientError> {
        let bytes = self.rec.encode().map_err(store_err)?;
        batch
            .put(Table::Rooms, &self.id.0, &bytes)
            .map_err(store_err)
    }

    /// Loads a room's group from the engine's storage.
    pub fn load(engine: &Engine, id: RoomId, rec: RoomRecord) -> Result<Option<Room>, ClientError> {
        let mut group = MlsGroup::load(engine.provider.storage(), &GroupId::from_slice(&id.0))
            .map_err(crate::error::mls)?;
        if let Some(group) = group.as_mut() {
            // Rooms made before messages were padded: padded from now on (the setting
            // is ours alone, nothing the other members must agree on).
            if group.configuration().padding_size() != crate::mls::config::PADDING_BLOCK {
                // The same settings every room is made and joined with, padded.
                let padded = crate::mls::config::join_config();
                group
                    .set_configuration(engine.provider.storage(), &padded)
                    .map_err(crate::error::mls)?;
            }
        }
        Ok(group.map(|group| Room {
            id,
            rec,
            removed: !group.is_active(),
            group,
            subscribed: None,
            commit_proposals: false,
            orphaned_epoch: None,
            expected_end: None,
            landed_own: None,
            relay_admins: None,
            revert_landed: None,
        }))
    }

    /// The handle of the member at a leaf.
    pub fn handle_at(&self, leaf: LeafNodeIndex) -> Option<Handle> {
        self.group
            .member_at(leaf)
            .and_then(|m| handle_of(&m.credential))
    }

    /// The handle of a message's sender, if it is a member.
    pub fn sender_handle(&self, sender: &Sender) -> Option<Handle> {
        match sender {
            Sender::Member(leaf) => self.handle_at(*leaf),
            _ => None,
        }
    }

    /// Our own handle in the group.
    pub fn own_handle(&self) -> Option<Handle> {
        self.handle_at(self.group.own_leaf_index())
    }

    /// The members' handles, keys and roles, sorted by handle.
    pub fn members(&self) -> Vec<crate::events::Member> {
        let settings = self.settings().ok();
        let mut members: Vec<_> = self
            .group
            .members()
            .filter_map(|m| {
                let handle = handle_of(&m.credential)?;
                let key: [u8; 32] = m.signature_key.as_slice().try_into().ok()?;
                let account = AccountKey(key);
                let role = settings
                    .as_ref()
                    .and_then(|s| s.role(&account))
                    .unwrap_or(Role::Member);
                Some(crate::events::Member {
                    handle,
                    account,
                    role,
                    trust: None,
                    pending: self.is_pending(m.index),
                })
            })
            .collect();
        members.sort_by(|a, b| a.handle.as_str().cmp(b.handle.as_str()));
        members
    }

    /// The transcript mark our content carries: our position and hash, or, once we have
    /// missed entries (see [`RoomExtra::gap_from`]), the last position our history is
    /// whole at, so that nobody else is shown a fork that is only our gap.
    pub fn mark(&self) -> crate::content::TranscriptMark {
        match self.rec.extra.gap_from {
            None => self.rec.transcript.mark(),
            Some(gap) => {
                let whole = hearth_protocol::Seq(gap.0.saturating_sub(1));
                match self.rec.transcript.hash_at(whole) {
                    Some(hash) => (whole, hash),
                    None => (hearth_protocol::Seq(0), [0; 32]),
                }
            }
        }
    }

    /// The room's settings and policy in the current epoch.
    pub fn settings(&self) -> Result<RoomSettings, SettingsError> {
        RoomSettings::read(self.group.extensions())
    }

    /// A member's leaf and identity key, by handle.
    pub fn member_by_handle(&self, handle: &Handle) -> Option<(LeafNodeIndex, AccountKey)> {
        self.group
            .members()
            .find(|m| handle_of(&m.credential).as_ref() == Some(handle))
            .and_then(|m| Some((m.index, account_of(&m.signature_key)?)))
    }

    /// The handle of a member (or a banned identity) by identity key.
    pub fn handle_of_account(&self, account: &AccountKey) -> Option<Handle> {
        self.group
            .members()
            .find(|m| m.signature_key.as_slice() == account.0.as_slice())
            .and_then(|m| handle_of(&m.credential))
            .or_else(|| {
                self.settings().ok().and_then(|s| {
                    s.banned
                        .into_iter()
                        .find(|b| b.account == *account)
                        .map(|b| b.handle)
                })
            })
    }

    /// How many leaves carry `handle` (more than one only in a room from before identity
    /// changes were refused).
    pub fn leaves_named(&self, handle: &Handle) -> usize {
        self.group
            .members()
            .filter(|m| handle_of(&m.credential).as_ref() == Some(handle))
            .count()
    }

    /// The leaf of a member by handle.
    pub fn leaf_of(&self, handle: &Handle) -> Option<LeafNodeIndex> {
        self.group
            .members()
            .find(|m| handle_of(&m.credential).as_ref() == Some(handle))
            .map(|m| m.index)
    }

    /// Whether the member at `leaf` was invited and has not accepted yet: its leaf is
    /// still the one its KeyPackage brought in (`LeafNodeSource::KeyPackage`, RFC 9420
    /// section 7.2), since a hearth client commits a fresh leaf of its own as soon as its
    /// user accepts ([`super::Inner::update_after_joining`]). The owner and admins are
    /// never pending: a room's creator keeps the leaf it created the group with until its
    /// first update.
    pub fn is_pending(&self, leaf: LeafNodeIndex) -> bool {
        is_pending_leaf(&self.group, leaf)
    }
}

/// [`Room::is_pending`] on a bare group (as a commit builder sees it).
pub(crate) fn is_pending_leaf(group: &MlsGroup, leaf: LeafNodeIndex) -> bool {
    let Some(node) = group.public_group().leaf(leaf) else {
        return false;
    };
    if !matches!(
        node.leaf_node_source(),
        openmls::treesync::LeafNodeSource::KeyPackage(_)
    ) {
        return false;
    }
    let Some(account) = account_of(node.signature_key().as_slice()) else {
        return false;
    };
    !RoomSettings::read(group.extensions()).is_ok_and(|s| s.is_admin(&account))
}

/// A signature key as an account key (`None` if it is not 32 bytes).
pub(crate) fn account_of(key: &[u8]) -> Option<AccountKey> {
    key.try_into().ok().map(AccountKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RoomRecord {
        RoomRecord {
            version: 1,
            name: "Home".into(),
            status: Status::Joined,
            transcript: Transcript::new(),
            inflight: None,
            extra: RoomExtra::default(),
        }
    }

    #[test]
    fn records_round_trip_with_and_without_the_extra_section() {
        let plain = record();
        let bytes = plain.encode().unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&plain).unwrap(), "as before");
        assert_eq!(RoomRecord::decode(&bytes).unwrap(), plain);

        let mut extended = record();
        extended.extra.fork = Some(hearth_protocol::Seq(7));
        extended.extra.updated_at = 42;
        extended.extra.gap_from = Some(hearth_protocol::Seq(3));
        let bytes = extended.encode().unwrap();
        assert_eq!(RoomRecord::decode(&bytes).unwrap(), extended);

        // Version 1's section (before `refused`) still reads, with the new field empty.
        #[derive(Serialize)]
        struct V1 {
            fork: Option<hearth_protocol::Seq>,
            before_join: bool,
            updated_at: u64,
            gap_from: Option<hearth_protocol::Seq>,
        }
        let mut v1 = postcard::to_allocvec(&plain).unwrap();
        v1.push(1);
        v1.extend(
            postcard::to_allocvec(&V1 {
                fork: Some(hearth_protocol::Seq(7)),
                before_join: false,
                updated_at: 42,
                gap_from: Some(hearth_protocol::Seq(3)),
            })
            .unwrap(),
        );
        assert_eq!(RoomRecord::decode(&v1).unwrap(), extended);

        extended.extra.refused = Some(Refused {
            seq: hearth_protocol::Seq(9),
            by: Some(Handle::new("mallory").unwrap()),
            committer: Some(AccountKey([5; 32])),
        });
        let bytes = extended.encode().unwrap();
        assert_eq!(RoomRecord::decode(&bytes).unwrap(), extended);

        // Version 2's section (before `rebuilt_as`) still reads, with the new field empty.
        #[derive(Serialize)]
        struct V2 {
            fork: Option<hearth_protocol::Seq>,
            before_join: bool,
            updated_at: u64,
            gap_from: Option<hearth_protocol::Seq>,
            refused: Option<Refused>,
        }
        let mut v2 = postcard::to_allocvec(&plain).unwrap();
        v2.push(2);
        v2.extend(
            postcard::to_allocvec(&V2 {
                fork: extended.extra.fork,
                before_join: false,
                updated_at: 42,
                gap_from: extended.extra.gap_from,
                refused: extended.extra.refused.clone(),
            })
            .unwrap(),
        );
        assert_eq!(RoomRecord::decode(&v2).unwrap(), extended);

        extended.extra.rebuilt_as = Some(hearth_protocol::RoomId([4; 16]));
        let bytes = extended.encode().unwrap();
        assert_eq!(RoomRecord::decode(&bytes).unwrap(), extended);

        // Version 3's section (before `relay_listed_admins`) still reads, with it false.
        #[derive(Serialize)]
        struct V3 {
            fork: Option<hearth_protocol::Seq>,
            before_join: bool,
            updated_at: u64,
            gap_from: Option<hearth_protocol::Seq>,
            refused: Option<Refused>,
            rebuilt_as: Option<hearth_protocol::RoomId>,
        }
        let mut v3 = postcard::to_allocvec(&plain).unwrap();
        v3.push(3);
        v3.extend(
            postcard::to_allocvec(&V3 {
                fork: extended.extra.fork,
                before_join: false,
                updated_at: 42,
                gap_from: extended.extra.gap_from,
                refused: extended.extra.refused.clone(),
                rebuilt_as: extended.extra.rebuilt_as,
            })
            .unwrap(),
        );
        assert_eq!(RoomRecord::decode(&v3).unwrap(), extended);

        extended.extra.relay_listed_admins = true;
        let bytes = extended.encode().unwrap();
        assert_eq!(RoomRecord::decode(&bytes).unwrap(), extended);

        let mut unknown = postcard::to_allocvec(&plain).unwrap();
        unknown.push(9);
        assert!(
            RoomRecord::decode(&unknown).is_err(),
            "a later format is not guessed at"
        );
    }
}
