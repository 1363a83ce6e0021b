//! The errors of the client API.

use hearth_protocol::{ErrorCode, Handle, WireError};

pub use crate::client::RoomRef;

/// Why a client operation failed. Messages are short and say what to do.
///
/// Rooms are named by a [`RoomRef`]: by name when the error comes from a [`Client`]
/// method (see [`crate::client::labels`]), which the display shows as it is: names are
/// other people's text, so make the message inert before printing it.
///
/// [`Client`]: crate::Client
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
    /// No room with that id is known here (or only as an invitation not accepted yet).
    #[error("{0} is not one of your rooms (or its invitation is not accepted yet): `hearth room list` shows both")]
    NoSuchRoom(RoomRef),
    /// No account with that handle on the relay.
    #[error("no user named {0} on this relay")]
    NoSuchUser(Handle),
    /// The user is not a member of that room.
    #[error("{handle} is not a member of {room}")]
    NotAMember {
        /// The room.
        room: RoomRef,
        /// The handle.
        handle: Handle,
    },
    /// The user is already a member of that room.
    #[error("{handle} is already a member of {room}")]
    AlreadyMember {
        /// The room.
        room: RoomRef,
        /// The handle.
        handle: Handle,
    },
    /// We were removed from the room.
    #[error("you were removed from {0}")]
    RemovedFromRoom(RoomRef),
    /// No pending invitation for that room.
    #[error("no pending invitation to {0}: `hearth room list` shows your invitations")]
    NoSuchInvitation(RoomRef),
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
    #[error("{0} kept changing while the change was applied: try again")]
    Contention(RoomRef),
    /// Only an admin may do this in this room.
    #[error(
        "you are not an admin of {room}: ask an admin ({}) to {action}",
        list(admins)
    )]
    NotAdmin {
        /// The room.
        room: RoomRef,
        /// What was attempted.
        action: crate::policy::Action,
        /// Who can do it (the owner and the admins).
        admins: Vec<Handle>,
    },
    /// Only the room's owner may do this.
    #[error("only the owner of {room} may {action}: ask {owner}")]
    NotOwner {
        /// The room.
        room: RoomRef,
        /// What was attempted.
        action: crate::policy::Action,
        /// The owner.
        owner: Handle,
    },
    /// The identity is on the room's ban list.
    #[error("{handle} is banned from {room}: an admin must unban them first")]
    Banned {
        /// The room.
        room: RoomRef,
        /// Who is banned.
        handle: Handle,
    },
    /// The identity is not on the room's ban list.
    #[error("{handle} is not banned from {room}")]
    NotBanned {
        /// The room.
        room: RoomRef,
        /// Who.
        handle: Handle,
    },
    /// The room policy does not allow this at all.
    #[error("{room}: {reason}")]
    PolicyRefused {
        /// The room.
        room: RoomRef,
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
    #[error("{room} holds a key for {handle} that is not the one you accepted: compare safety numbers (`hearth verify {handle}`), and ask an admin to kick and re-invite them")]
    UnacceptedKey {
        /// The room.
        room: RoomRef,
        /// The member.
        handle: Handle,
    },
    /// A member showed a different history of the room: sending waits until the user
    /// acknowledges it.
    #[error("the history of {room} differs between members at message {seq} (the relay may be showing members different histories): compare the room's code with someone in person (`hearth room verify`), then acknowledge it with `hearth room ack` to send again")]
    Forked {
        /// The room.
        room: RoomRef,
        /// Where the histories differ.
        seq: hearth_protocol::Seq,
    },
    /// A room restored from a backup could not be continued (the room moved on in a way
    /// the backup's group state cannot follow).
    #[error("{0} could not be continued after restoring the backup: ask a member to remove you from it and invite you again")]
    NeedsReinvite(RoomRef),
    /// A commit in a room was refused by us, as by every honest member (decision 0009):
    /// until an admin reverts it at the relay, nobody can send there.
    #[error("the commit by {} in room {room} was refused: {reason}; an admin of the room undoes it at the relay (automatically when one is online)", by.as_ref().map_or("someone", |h| h.as_str()))]
    CommitRefused {
        /// The room.
        room: RoomRef,
        /// Who committed it (`None`: unknown, the bytes were no commit at all).
        by: Option<Handle>,
        /// Why it was refused.
        reason: String,
    },
    /// Several rooms have the name given: the room has to be named by its id.
    #[error("{} rooms are called {name}: name the one you mean by its id ({})", rooms.len(), ambiguous_ids(name, rooms))]
    AmbiguousRoom {
        /// The name given.
        name: String,
        /// The rooms with that name, by id.
        rooms: Vec<RoomRef>,
    },
    /// An attachment could not be sealed or opened (see [`crate::attachment`]).
    // Transparent: its text is the whole message, and `{:#}` (the chat's errors) must
    // not say it twice as if it had a cause.
    #[error(transparent)]
    Attachment(#[from] crate::attachment::AttachmentError),
    /// No file in this profile's history has this id.
    #[error("no file with id {0} in your history: use the id shown in brackets with the file's message ([file ID])")]
    NoSuchFile(String),
    /// Something else unexpected.
    #[error("{0}")]
    Other(String),
}

/// The ids to tell the rooms of [`ClientError::AmbiguousRoom`] apart: short ones, or
/// whole ones when `name` is itself the start of one of their ids (a room named after
/// another room's short id: the short id would be ambiguous again).
fn ambiguous_ids(name: &str, rooms: &[RoomRef]) -> String {
    let name = name.to_lowercase();
    let whole = rooms.iter().any(|r| r.id.to_hex().starts_with(&name));
    rooms
        .iter()
        .map(|r| if whole { r.id.to_hex() } else { r.short_id() })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pattern of every error variant that names one room, binding it to `$room`: one
/// list for [`ClientError::room`] and [`ClientError::rooms_mut`], so a new variant is
/// named in both.
macro_rules! one_room {
    ($room:ident) => {
        ClientError::NoSuchRoom($room)
            | ClientError::RemovedFromRoom($room)
            | ClientError::NoSuchInvitation($room)
            | ClientError::Contention($room)
            | ClientError::NeedsReinvite($room)
            | ClientError::NotAMember { room: $room, .. }
            | ClientError::AlreadyMember { room: $room, .. }
            | ClientError::NotAdmin { room: $room, .. }
            | ClientError::NotOwner { room: $room, .. }
            | ClientError::Banned { room: $room, .. }
            | ClientError::NotBanned { room: $room, .. }
            | ClientError::PolicyRefused { room: $room, .. }
            | ClientError::UnacceptedKey { room: $room, .. }
            | ClientError::Forked { room: $room, .. }
            | ClientError::CommitRefused { room: $room, .. }
    };
}

impl ClientError {
    /// The relay's error code, if the relay refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Relay(e) => Some(e.code),
            _ => None,
        }
    }

    /// The room the error is about, if it is about one (for several, as
    /// [`ClientError::AmbiguousRoom`], the first).
    pub fn room(&self) -> Option<&RoomRef> {
        match self {
            ClientError::AmbiguousRoom { rooms, .. } => rooms.first(),
            other => other.room_field(),
        }
    }

    fn room_field(&self) -> Option<&RoomRef> {
        match self {
            one_room!(room) => Some(room),
            _ => None,
        }
    }

    /// Every room the error names, to fill in their names (see
    /// [`crate::client::labels`]).
    pub(crate) fn rooms_mut(&mut self) -> Vec<&mut RoomRef> {
        match self {
            ClientError::AmbiguousRoom { rooms, .. } => rooms.iter_mut().collect(),
            one_room!(room) => vec![room],
            _ => Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_error_is_said_once() {
        let e = ClientError::from(crate::attachment::AttachmentError::Io(
            "x is a directory".into(),
        ));
        // A cause would be printed after it by `{:#}` (anyhow, in the chat): the same words.
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.to_string(), "x is a directory");
    }
}
