//! What the client reports to its user: events and the plain records the API returns.

use std::time::{Duration, SystemTime};

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
    /// The sender's display name as known when the item was read or reported (shown
    /// next to the handle, never instead of it).
    pub sender_name: Option<String>,
    /// The text.
    pub text: String,
    /// When the relay stored it.
    pub time: SystemTime,
    /// Sent by this device.
    pub own: bool,
    /// The message it replies to.
    pub reply_to: Option<Seq>,
    /// Its sender changed its text since.
    pub edited: bool,
    /// Its sender withdrew it: the text is gone (shown as deleted).
    pub deleted: bool,
    /// Reactions to it (see [`crate::history`]).
    pub reactions: Vec<crate::history::Reaction>,
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
    /// A private conversation between two people (see [`crate::client::Client::send_private`]).
    pub direct: bool,
    /// An admin rebuilt this room as the room given ([`crate::client::Client::rebuild`]):
    /// this is the old one, shown as `name (old)` and no longer found by its name.
    pub rebuilt_as: Option<RoomId>,
}

/// A member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The handle in the member's MLS credential.
    pub handle: Handle,
    /// The member's identity key (its MLS signature key).
    pub account: AccountKey,
    /// The member's role in the room.
    pub role: Role,
    /// How far this member's key is trusted, judged by key: the contact's state when the
    /// room holds the accepted key, `Changed` when it holds another one, `None` for
    /// ourselves (and for a member never pinned).
    pub trust: Option<crate::contacts::TrustState>,
    /// Invited and not accepted yet (see [`crate::client::Room::is_pending`]): such a
    /// member is shown as invited, can be invited again (a lost or expired invitation),
    /// and is not shown the messages sent before it accepts.
    pub pending: bool,
}

/// A member's role in a room (see [`crate::policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The primary admin: also grants and revokes admin rights.
    Owner,
    /// Invites, kicks, bans, unbans, renames, sets the topic and the timer.
    Admin,
    /// Sends, updates their own keys, leaves.
    Member,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        })
    }
}

/// A room's policy as stored in its group context, with handles resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPolicy {
    /// The room.
    pub room: RoomId,
    /// Its name.
    pub name: String,
    /// Its topic (empty: none).
    pub topic: String,
    /// The owner.
    pub owner: Handle,
    /// The admins other than the owner, sorted.
    pub admins: Vec<Handle>,
    /// Identities on the ban list (by the handle they had when banned), sorted.
    pub banned: Vec<Handle>,
    /// How long messages are kept before they disappear (`None`: kept).
    pub expire: Option<Duration>,
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
    /// A stored message was edited, deleted or reacted to (by its sender or, for a
    /// reaction, anyone in the room); `item` is how it is now.
    MessageChanged {
        /// The message as it is now.
        item: HistoryItem,
        /// Who changed it.
        by: Handle,
        /// What they did.
        change: crate::history::MessageChange,
    },
    /// A message that waited for the relay cannot be sent after all (we left the room,
    /// or were removed, or the room broke); it was dropped from the queue.
    Unsent {
        /// The room.
        room: RoomId,
        /// The message's text.
        text: String,
        /// Why.
        reason: String,
    },
    /// Someone invited us into a room.
    Invited(Invitation),
    /// A member was added to a room (invited: it is shown nothing said before it
    /// accepts, see [`ClientEvent::MemberAccepted`]).
    MemberJoined {
        /// The room.
        room: RoomId,
        /// The new member.
        handle: Handle,
    },
    /// A member invited earlier accepted: it committed a fresh leaf of its own for the
    /// first time (see [`Member::pending`]).
    MemberAccepted {
        /// The room.
        room: RoomId,
        /// The member.
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
        /// We were banned too (an admin must unban us before anyone can re-invite us).
        banned: bool,
    },
    /// A room got a new owner (the previous one left).
    OwnerChanged {
        /// The room.
        room: RoomId,
        /// The new owner.
        owner: Handle,
    },
    /// A member was made an admin or lost admin rights.
    RoleChanged {
        /// The room.
        room: RoomId,
        /// Whose role changed.
        handle: Handle,
        /// Admin now.
        admin: bool,
    },
    /// An identity was put on a room's ban list or taken off it.
    BanChanged {
        /// The room.
        room: RoomId,
        /// The identity's handle.
        handle: Handle,
        /// Banned now.
        banned: bool,
        /// The admin who did it.
        by: Handle,
    },
    /// A room's topic changed.
    TopicChanged {
        /// The room.
        room: RoomId,
        /// The new topic.
        topic: String,
    },
    /// A room's disappearing-message timer changed.
    ExpiryChanged {
        /// The room.
        room: RoomId,
        /// Messages now disappear after this long (`None`: kept).
        expire: Option<Duration>,
    },
    /// A room got a new name.
    RoomRenamed {
        /// The room.
        room: RoomId,
        /// The new name.
        name: String,
    },
    /// An admin re-created a room as a new group; its members are invited there.
    RoomRebuilt {
        /// The old room.
        room: RoomId,
        /// The new room.
        new: RoomId,
        /// The admin who rebuilt it.
        by: Handle,
    },
    /// A member of a room said it came online or went offline (an encrypted presence
    /// message; only clients that announce presence send them).
    Presence {
        /// The room.
        room: RoomId,
        /// Who.
        handle: Handle,
        /// Online now.
        online: bool,
    },
    /// Someone (in a room we share) chose a new display name.
    DisplayNameChanged {
        /// Whose name changed.
        handle: Handle,
        /// The new display name.
        name: String,
    },
    /// A known handle now presents a different identity key, and the relay's directory
    /// vouches for it (the user decides: `trust` or `verify`).
    KeyChanged {
        /// Whose key changed.
        handle: Handle,
    },
    /// We (an admin) undid a commit the room's members refused (decision 0009): the relay
    /// takes the room's capability from before it again, and its author can no longer
    /// commit there.
    CommitReverted {
        /// The room.
        room: RoomId,
        /// Where the refused commit is in the log.
        seq: hearth_protocol::Seq,
        /// Who made it (`None`: unknown, the bytes were no commit at all).
        by: Option<Handle>,
    },
    /// A contact moved to a new identity key with a rotation signed by the old one
    /// (`hearth rotate-key`), which the relay's directory lists. For a contact not
    /// verified, the pin followed. For one verified in person (`was_verified`), the new key
    /// waits like a changed key (sending to them is blocked) until the user compares again
    /// (`verify`) or accepts it (`trust`): whoever holds the old key could have signed it.
    KeyRotated {
        /// Whose key.
        handle: Handle,
        /// The key given up.
        from: hearth_protocol::AccountKey,
        /// The key now in use.
        to: hearth_protocol::AccountKey,
        /// Whether the old key had been verified in person.
        was_verified: bool,
    },
    /// Someone presented an identity that is not theirs (a member changing its handle or
    /// key, an invitee or joiner claiming someone else's handle); the change was refused
    /// and the pins were left alone.
    Impostor {
        /// The room it happened in.
        room: RoomId,
        /// Who, claiming what.
        impostor: crate::client::Impostor,
    },
    /// The relay kept `room`'s messages for another time than the room's timer says
    /// (`found`; `None`: the relay's default): someone with the room's capability changed
    /// it. It was set back.
    RetentionRestored {
        /// The room.
        room: RoomId,
        /// What the relay had.
        found: Option<std::time::Duration>,
    },
    /// This profile found an entry of its own it does not remember in `room`: it was
    /// put back from an older copy. Fresh keys are committed before anything is sent
    /// there (or, if the room moved on in a way the old state cannot follow, it needs a
    /// re-invite).
    RolledBack {
        /// The room.
        room: RoomId,
    },
    /// This device's clock differs from the relay's by `secs` (relay minus device): ages
    /// and disappearing messages follow the relay's, but the user should fix the clock.
    ClockSkewed {
        /// Seconds the relay's clock is ahead (negative: behind).
        secs: i64,
    },
    /// The room log does not add up.
    Consistency {
        /// The room.
        room: RoomId,
        /// What is wrong.
        warning: ConsistencyWarning,
    },
    /// A log entry was refused: tampered, replayed, from a non-member, or a commit that
    /// breaks the room policy (then the room is stuck for us until an admin rebuilds it).
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
    /// A new account registered on the relay (only after
    /// [`crate::client::Client::watch_registrations`]).
    AccountRegistered {
        /// The new account's handle.
        handle: Handle,
    },
}
