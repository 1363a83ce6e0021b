//! The bytes a client signs to authenticate, bound to one connection.
//!
//! `auth_message = "hearth-auth-v1\0" || challenge || tls_exporter || account_key`, where
//! `tls_exporter` is the connection's TLS exporter value for
//! [`crate::limits::TLS_EXPORTER_LABEL`] (32 bytes, no context). Both sides compute the
//! exporter from their own TLS session, so a signature made on one connection does not
//! verify on another, even for the same challenge.

use serde::{Deserialize, Serialize};

use crate::ids::{AccountKey, Handle, Signature};

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
    fn message_binds_every_input() {
        let base = auth_message(&[1; 32], &[2; 32], &AccountKey([3; 32]));
        assert_ne!(base, auth_message(&[9; 32], &[2; 32], &AccountKey([3; 32])));
        assert_ne!(base, auth_message(&[1; 32], &[9; 32], &AccountKey([3; 32])));
        assert_ne!(base, auth_message(&[1; 32], &[2; 32], &AccountKey([9; 32])));
        assert!(base.starts_with(AUTH_DOMAIN));
    }
}
