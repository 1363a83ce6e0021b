//! The bytes a client signs to authenticate, bound to one connection.
//!
//! `auth_message = "hearth-auth-v1\0" || challenge || tls_exporter || account_key`, where
//! `tls_exporter` is the connection's TLS exporter value for
//! [`crate::limits::TLS_EXPORTER_LABEL`] (32 bytes, no context). Both sides compute the
//! exporter from their own TLS session, so a signature made on one connection does not
//! verify on another, even for the same challenge.

use crate::ids::AccountKey;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_binds_every_input() {
        let base = auth_message(&[1; 32], &[2; 32], &AccountKey([3; 32]));
        assert_ne!(base, auth_message(&[9; 32], &[2; 32], &AccountKey([3; 32])));
        assert_ne!(base, auth_message(&[1; 32], &[9; 32], &AccountKey([3; 32])));
        assert_ne!(base, auth_message(&[1; 32], &[2; 32], &AccountKey([9; 32])));
        assert!(base.starts_with(AUTH_DOMAIN));
    }
}
