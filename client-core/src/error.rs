//! The errors of the client API.

use hearth_protocol::{ErrorCode, Handle, RoomId, WireError};

/// Why a client operation failed. Messages are short and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The relay refused the request.
    #[error("the relay refused: {0}")]
    Relay(WireError),
    /// The relay presented a key other than the pinned one.
    #[error("the relay's identity changed: {address} presented a different key than the pinned one: if the relay was reinstalled, get a new invite/address from its owner; otherwise someone may be intercepting")]
    PinMismatch {
        /// The relay's address.
        address: String,
    },
    /// The relay could not be reached or the connection broke.
    #[error("cannot reach the relay at {address}: {reason} (is it running and reachable?)")]
    Unreachable {
        /// The relay's address.
        address: String,
        /// What failed.
        reason: String,
    },
    /// The client is not connected (closed, or reconnecting).
    #[error("not connected to the relay: retry in a moment")]
    NotConnected,
    /// The relay closed the connection and said why (the text is the client's own for
    /// the relay's close code and reason, see [`hearth_protocol::close`]).
    #[error("the relay closed the connection: {0}")]
    ClosedByRelay(hearth_protocol::CloseReason),
    /// The relay and this client share no protocol version.
    #[error("protocol version mismatch: {0}")]
    Version(String),
    /// No room with that id is known here.
    #[error("no such room {0}: list rooms with `hearth rooms`")]
    NoSuchRoom(RoomId),
    /// No account with that handle on the relay.
    #[error("no user named {0} on this relay")]
    NoSuchUser(Handle),
    /// The user is not a member of that room.
    #[error("{handle} is not a member of room {room}")]
    NotAMember {
        /// The room.
        room: RoomId,
        /// The handle.
        handle: Handle,
    },
    /// The user is already a member of that room.
    #[error("{handle} is already a member of room {room}")]
    AlreadyMember {
        /// The room.
        room: RoomId,
        /// The handle.
        handle: Handle,
    },
    /// We were removed from the room.
    #[error("you were removed from room {0}")]
    RemovedFromRoom(RoomId),
    /// No pending invitation for that room.
    #[error("no pending invitation for room {0}: list them with `hearth invitations`")]
    NoSuchInvitation(RoomId),
    /// The user has no KeyPackage left on the relay.
    #[error(
        "{0} cannot be invited right now (no key packages published): ask them to connect once"
    )]
    NoKeyPackage(Handle),
    /// The local store failed.
    #[error("local store: {0}")]
    Store(String),
    /// An MLS operation failed.
    #[error("MLS: {0}")]
    Mls(String),
    /// Too many concurrent changes to the room; retrying did not help.
    #[error("the room kept changing while applying the change to room {0}: try again")]
    Contention(RoomId),
    /// Only an admin may do this in this room.
    #[error(
        "you are not an admin of room {room}: ask an admin ({}) to {action}",
        list(admins)
    )]
    NotAdmin {
        /// The room.
        room: RoomId,
        /// What was attempted.
        action: crate::policy::Action,
        /// Who can do it (the owner and the admins).
        admins: Vec<Handle>,
    },
    /// Only the room's owner may do this.
    #[error("only the owner of room {room} may {action}: ask {owner}")]
    NotOwner {
        /// The room.
        room: RoomId,
        /// What was attempted.
        action: crate::policy::Action,
        /// The owner.
        owner: Handle,
    },
    /// The identity is on the room's ban list.
    #[error("{handle} is banned from room {room}: an admin must unban them first")]
    Banned {
        /// The room.
        room: RoomId,
        /// Who is banned.
        handle: Handle,
    },
    /// The identity is not on the room's ban list.
    #[error("{handle} is not banned from room {room}")]
    NotBanned {
        /// The room.
        room: RoomId,
        /// Who.
        handle: Handle,
    },
    /// The room policy does not allow this at all.
    #[error("room {room}: {reason}")]
    PolicyRefused {
        /// The room.
        room: RoomId,
        /// Why.
        reason: crate::policy::PolicyViolation,
    },
    /// A contact's identity key changed and the user has not decided about it yet.
    #[error("{handle}'s identity key changed: compare safety numbers (`hearth verify {handle}`) or accept it with `hearth trust {handle}`")]
    KeyChanged {
        /// Whose key changed.
        handle: Handle,
    },
    /// Someone presented an identity that is not theirs (see
    /// [`crate::client::authentication`]); the change was refused.
    #[error("{0}")]
    Impostor(crate::client::Impostor),
    /// The key a contact presents now is not the one the relay's directory gives for
    /// them, so it cannot be accepted.
    #[error("the key presented as {handle} is not the one the relay's directory gives {handle}: it is someone else's, so it cannot be trusted")]
    KeyNotVouched {
        /// The handle it was presented under.
        handle: Handle,
    },
    /// A room still holds a key for a member that is not the key accepted for them.
    #[error("room {room} holds a key for {handle} that is not the one you accepted: compare safety numbers (`hearth verify {handle}`), and ask an admin to kick and re-invite them")]
    UnacceptedKey {
        /// The room.
        room: RoomId,
        /// The member.
        handle: Handle,
    },
    /// A member showed a different history of the room: sending waits until the user
    /// acknowledges it.
    #[error("the history of room {room} differs between members at message {seq} (the relay may be showing members different histories): compare the room's code with someone in person (`hearth room verify`), then acknowledge it with `hearth room ack` to send again")]
    Forked {
        /// The room.
        room: RoomId,
        /// Where the histories differ.
        seq: hearth_protocol::Seq,
    },
    /// A room restored from a backup could not be continued (the room moved on in a way
    /// the backup's group state cannot follow).
    #[error("room {0} could not be continued after restoring the backup: ask a member to remove you from it and invite you again")]
    NeedsReinvite(RoomId),
    /// A commit in a room was refused by us, as by every honest member (decision 0009):
    /// until an admin reverts it at the relay, nobody can send there.
    #[error("the commit by {} in room {room} was refused: {reason}; an admin of the room undoes it at the relay (automatically when one is online)", by.as_ref().map_or("someone", |h| h.as_str()))]
    CommitRefused {
        /// The room.
        room: RoomId,
        /// Who committed it (`None`: unknown, the bytes were no commit at all).
        by: Option<Handle>,
        /// Why it was refused.
        reason: String,
    },
    /// Several rooms have the name given: the room has to be named by its id.
    #[error("{} rooms are called {name:?}: name the one you mean by its id ({})", ids.len(), ids.iter().map(|id| id.to_hex()[..8].to_string()).collect::<Vec<_>>().join(", "))]
    AmbiguousRoom {
        /// The name given.
        name: String,
        /// The rooms with that name.
        ids: Vec<RoomId>,
    },
    /// Something else unexpected.
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// The relay's error code, if the relay refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Relay(e) => Some(e.code),
            _ => None,
        }
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Relay(e)
    }
}

fn list(handles: &[Handle]) -> String {
    handles
        .iter()
        .map(|h| h.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Wraps any displayable MLS error.
pub(crate) fn mls<E: std::fmt::Display>(e: E) -> ClientError {
    ClientError::Mls(e.to_string())
}

/// Wraps any displayable store error.
pub(crate) fn store<E: std::fmt::Display>(e: E) -> ClientError {
    ClientError::Store(e.to_string())
}
