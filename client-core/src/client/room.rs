//! A room's local state: its MLS group plus what hearth keeps beside it.

use hearth_protocol::{Handle, RoomId};
use openmls::prelude::*;
use serde::{Deserialize, Serialize};

use crate::content::Body;
use crate::error::{store as store_err, ClientError};
use crate::mls::{handle_of, Engine};
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
}

impl Room {
    /// Adds the record to a batch.
    pub fn save(&self, batch: &mut WriteBatch<'_>) -> Result<(), ClientError> {
        let bytes = postcard::to_allocvec(&self.rec).map_err(store_err)?;
        batch
            .put(Table::Rooms, &self.id.0, &bytes)
            .map_err(store_err)
    }

    /// Loads a room's group from the engine's storage.
    pub fn load(engine: &Engine, id: RoomId, rec: RoomRecord) -> Result<Option<Room>, ClientError> {
        let group = MlsGroup::load(engine.provider.storage(), &GroupId::from_slice(&id.0))
            .map_err(crate::error::mls)?;
        Ok(group.map(|group| Room {
            id,
            rec,
            removed: !group.is_active(),
            group,
            subscribed: None,
            commit_proposals: false,
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

    /// The members' handles and keys.
    pub fn members(&self) -> Vec<crate::events::Member> {
        let mut members: Vec<_> = self
            .group
            .members()
            .filter_map(|m| {
                let handle = handle_of(&m.credential)?;
                let key: [u8; 32] = m.signature_key.as_slice().try_into().ok()?;
                Some(crate::events::Member {
                    handle,
                    account: hearth_protocol::AccountKey(key),
                })
            })
            .collect();
        members.sort_by(|a, b| a.handle.as_str().cmp(b.handle.as_str()));
        members
    }

    /// The leaf of a member by handle.
    pub fn leaf_of(&self, handle: &Handle) -> Option<LeafNodeIndex> {
        self.group
            .members()
            .find(|m| handle_of(&m.credential).as_ref() == Some(handle))
            .map(|m| m.index)
    }
}
