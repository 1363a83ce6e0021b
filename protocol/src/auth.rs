//! The bytes a client signs to authenticate, bound to one connection.
//!
//! `auth_message = "hearth-auth-v1\0" || challenge || tls_exporter || account_key`, where
//! `tls_exporter` is the connection's TLS exporter value for
//! [`crate::limits::TLS_EXPORTER_LABEL`] (32 bytes, no context). Both sides compute the
//! exporter from their own TLS session, so a signature made on one connection does not
//! verify on another, even for the same challenge.

use serde::{Deserialize, Serialize};

use crate::ids::{AccountKey, AdminKey, CapHash, Handle, RoomId, Seq, Signature};

/// Domain separator for authentication signatures.
pub const AUTH_DOMAIN: &[u8] = b"hearth-auth-v1\0";

/// Builds the message an account signs to authenticate on one connection.
pub fn auth_message(
    challenge: &[u8; 32],
    tls_exporter: &[u8; 32],
    account: &AccountKey,
) -> Vec<u8> {
    let mut message = Vec::with_capacity(AUTH_DOMAIN.len() + 96);
    message.extend_from_slice(AUTH_DOMAIN);
    message.extend_from_slice(challenge);
    message.extend_from_slice(tls_exporter);
    message.extend_from_slice(&account.0);
    message
}

/// Domain separator for key rotation statements.
pub const ROTATION_DOMAIN: &[u8] = b"hearth-key-rotation-v1\0";

/// A signed statement that an account's identity key changed: `handle` moved from the
/// key `from` to the key `to`, signed by `from` over [`rotation_message`].
///
/// The relay re-binds the account only when the statement verifies and the holder of
/// `to` also signed it ([`crate::Request::RotateKey`]); members check the chain of these
/// statements the relay's directory returns ([`crate::AccountInfo::rotations`]) before
/// they accept a leaf whose key changed, so a relay cannot rotate anyone's key on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotation {
    /// The key given up.
    pub from: AccountKey,
    /// The key taken up.
    pub to: AccountKey,
    /// `from`'s Ed25519 signature over [`rotation_message`]`(handle, from, to)`.
    pub signature: Signature,
}

/// The bytes both keys of a rotation sign:
/// `"hearth-key-rotation-v1\0" || len(handle) (1 byte) || handle || from || to`.
pub fn rotation_message(handle: &Handle, from: &AccountKey, to: &AccountKey) -> Vec<u8> {
    let name = handle.as_str().as_bytes();
    let mut message = Vec::with_capacity(ROTATION_DOMAIN.len() + 1 + name.len() + 64);
    message.extend_from_slice(ROTATION_DOMAIN);
    // Handles are at most 32 bytes (see `Handle::new`), so the length fits in a byte.
    message.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    message.extend_from_slice(name);
    message.extend_from_slice(&from.0);
    message.extend_from_slice(&to.0);
    message
}

/// Domain separator for what a room admin signs with its pseudonym.
pub const ADMIN_DOMAIN: &[u8] = b"hearth-room-admin-v1\0";

/// A room admin's signature on a relay-side change ([`crate::Request`]s that need an
/// admin): the pseudonym it signs with, which the relay must list for the room, and its
/// Ed25519 signature over [`admin_message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminProof {
    /// The admin's pseudonym for this room.
    pub admin: AdminKey,
    /// Its signature over [`admin_message`] of the request.
    pub signature: Signature,
}

/// A new list of a room's admin pseudonyms, signed by the room's owner (the first
/// pseudonym the relay lists), carried by a commit that changes who administers the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminList {
    /// The owner's pseudonym first, then the other admins' (at most
    /// [`crate::limits::MAX_ROOM_ADMINS`] in all).
    pub admins: Vec<AdminKey>,
    /// The owner's signature over [`AdminAction::CommitAdmins`].
    pub proof: AdminProof,
}

/// What an admin signs: the change and its parameters, so a signature for one change
/// cannot be used for another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAction {
    /// [`crate::Request::SetRetention`].
    SetRetention {
        /// The retention asked for.
        retention_secs: Option<u64>,
    },
    /// [`crate::Request::PublishRoom`] (listing the room or renaming its listing).
    Publish {
        /// The public name.
        public_name: String,
        /// The epoch index of the GroupInfo.
        epoch: u64,
    },
    /// [`crate::Request::UnpublishRoom`].
    Unpublish,
    /// [`crate::Request::SetRoomAdmins`].
    SetAdmins {
        /// The new list.
        admins: Vec<AdminKey>,
    },
    /// A [`crate::Request::Commit`] that changes the admins.
    CommitAdmins {
        /// The capability hash the commit announces.
        next_cap_hash: CapHash,
        /// The new list.
        admins: Vec<AdminKey>,
    },
    /// [`crate::Request::RevertCommit`].
    Revert {
        /// The refused commit.
        seq: Seq,
        /// The capability hash the reverting admin's own commit announces.
        next_cap_hash: CapHash,
        /// SHA-256 of that commit's bytes.
        removal: [u8; 32],
    },
}

/// The bytes an admin signs for `action` in `room` during the epoch whose capability
/// hashes to `cap_hash`: `"hearth-room-admin-v1\0" || room || cap_hash || postcard(action)`.
/// The epoch binds a signature to one state of the room: it does not apply after the
/// next commit.
pub fn admin_message(room: &RoomId, cap_hash: &CapHash, action: &AdminAction) -> Vec<u8> {
    let mut message = Vec::with_capacity(ADMIN_DOMAIN.len() + 48 + 64);
    message.extend_from_slice(ADMIN_DOMAIN);
    message.extend_from_slice(&room.0);
    message.extend_from_slice(&cap_hash.0);
    // Encoding plain data into a Vec cannot fail.
    message.extend(postcard::to_allocvec(action).unwrap_or_default());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_message_binds_every_input() {
        let alice = Handle::new("alice").unwrap();
        let base = rotation_message(&alice, &AccountKey([1; 32]), &AccountKey([2; 32]));
        let bob = Handle::new("bob").unwrap();
        assert_ne!(
            base,
            rotation_message(&bob, &AccountKey([1; 32]), &AccountKey([2; 32]))
        );
        assert_ne!(
            base,
            rotation_message(&alice, &AccountKey([2; 32]), &AccountKey([1; 32]))
        );
        assert_ne!(
            base,
            rotation_message(&alice, &AccountKey([1; 32]), &AccountKey([3; 32]))
        );
    }

    #[test]
    fn admin_message_binds_room_epoch_and_action() {
        let (room, cap) = (RoomId([1; 16]), CapHash([2; 32]));
        let action = AdminAction::SetRetention {
            retention_secs: Some(60),
        };
        let base = admin_message(&room, &cap, &action);
        assert_ne!(base, admin_message(&RoomId([9; 16]), &cap, &action));
        assert_ne!(base, admin_message(&room, &CapHash([9; 32]), &action));
        assert_ne!(base, admin_message(&room, &cap, &AdminAction::Unpublish));
        assert!(base.starts_with(ADMIN_DOMAIN));
    }

    #[test]
    fn message_binds_every_input() {
        let base = auth_message(&[1; 32], &[2; 32], &AccountKey([3; 32]));
        assert_ne!(base, auth_message(&[9; 32], &[2; 32], &AccountKey([3; 32])));
        assert_ne!(base, auth_message(&[1; 32], &[9; 32], &AccountKey([3; 32])));
        assert_ne!(base, auth_message(&[1; 32], &[2; 32], &AccountKey([9; 32])));
        assert!(base.starts_with(AUTH_DOMAIN));
    }
}
