//! What the client reports to its user: events and the plain records the API returns.

use std::time::SystemTime;

use hearth_protocol::{AccountKey, Handle, RoomId, Seq};

pub use crate::transcript::ConsistencyWarning;

/// One stored text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// The room.
    pub room: RoomId,
    /// Its position in the room log.
    pub seq: Seq,
    /// Who sent it.
    pub sender: Handle,
    /// The text.
    pub text: String,
    /// When the relay stored it.
    pub time: SystemTime,
    /// Sent by this device.
    pub own: bool,
    /// The message it replies to.
    pub reply_to: Option<Seq>,
}

/// A room someone invited us to, not accepted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// The room.
    pub room: RoomId,
    /// The room's name.
    pub name: String,
    /// Who invited us.
    pub from: Handle,
    /// When the invitation arrived at the relay.
    pub received: SystemTime,
}

/// A room we are a member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// The room.
    pub id: RoomId,
    /// Its name.
    pub name: String,
    /// Its members' handles, sorted.
    pub members: Vec<Handle>,
    /// The MLS epoch.
    pub epoch: u64,
    /// The last log entry processed.
    pub last_seq: Seq,
}

/// A member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The handle in the member's MLS credential.
    pub handle: Handle,
    /// The member's identity key (its MLS signature key).
    pub account: AccountKey,
}

/// The state of the connection to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected and authenticated.
    Connected,
    /// The connection dropped; reconnecting after `retry_in`.
    Reconnecting {
        /// Why it dropped.
        reason: String,
        /// Delay before the next attempt.
        retry_in: std::time::Duration,
    },
    /// The client was closed.
    Closed,
}

/// Something that happened, reported through [`crate::client::Client::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A text message arrived (or our own was confirmed by the relay).
    Message(HistoryItem),
    /// Someone invited us into a room.
    Invited(Invitation),
    /// A member was added to a room.
    MemberJoined {
        /// The room.
        room: RoomId,
        /// The new member.
        handle: Handle,
    },
    /// A member left a room.
    MemberLeft {
        /// The room.
        room: RoomId,
        /// Who left.
        handle: Handle,
    },
    /// A member was removed from a room by another.
    MemberRemoved {
        /// The room.
        room: RoomId,
        /// Who was removed.
        handle: Handle,
        /// Who removed them.
        by: Handle,
    },
    /// We were removed from a room; it is no longer usable.
    RemovedFromRoom {
        /// The room.
        room: RoomId,
        /// Who removed us.
        by: Handle,
    },
    /// A room got a new name.
    RoomRenamed {
        /// The room.
        room: RoomId,
        /// The new name.
        name: String,
    },
    /// A known handle now presents a different identity key.
    KeyChanged {
        /// Whose key changed.
        handle: Handle,
    },
    /// The room log does not add up.
    Consistency {
        /// The room.
        room: RoomId,
        /// What is wrong.
        warning: ConsistencyWarning,
    },
    /// A log entry was refused: tampered, replayed, or from a non-member.
    Rejected {
        /// The room.
        room: RoomId,
        /// The entry.
        seq: Seq,
        /// Why.
        reason: String,
    },
    /// The connection state changed.
    Connection(ConnectionState),
}
