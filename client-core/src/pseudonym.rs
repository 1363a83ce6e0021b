//! Room admin pseudonyms (decision 0013, part 5).
//!
//! The relay lets only a room's admins change its relay-side settings (retention, the
//! public listing, the list of admins) and undo a refused commit (decision 0009). It
//! knows them by per-room pseudonyms, never by account: each admin derives an Ed25519
//! key for one room from its identity secret,
//! `HKDF-SHA256(ikm = secret, info = "hearth room admin v1" || room id)`, where `secret`
//! is the identity key's own (deterministic, RFC 8032) Ed25519 signature over
//! [`SEED_MESSAGE`]: a function of the identity secret only its holder can compute,
//! taken because openmls keeps the seed itself inside its key pair. It announces
//! the public half to the room inside MLS (the room settings, [`RoomSettings::pseudonyms`],
//! where only the admin itself may put it), and signs those requests with it
//! ([`hearth_protocol::admin_message`]). Two rooms' pseudonyms of one person cannot be
//! told to be the same person's without the identity secret.
//!
//! [`RoomSettings::pseudonyms`]: crate::mls::RoomSettings::pseudonyms

use ed25519_dalek::{Signer, SigningKey};
use hearth_protocol::{admin_message, AdminAction, AdminKey, AdminProof, Cap, RoomId, Signature};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The HKDF info prefix (the room id follows).
pub const LABEL: &[u8] = b"hearth room admin v1";

/// What the identity key signs to make the HKDF input (never sent anywhere).
pub const SEED_MESSAGE: &[u8] = b"hearth room admin v1: the secret of my room admin keys";

/// One admin's key for one room.
pub struct RoomAdminKey(SigningKey);

impl RoomAdminKey {
    /// The key for `room` from an identity seed (the 32-byte Ed25519 secret).
    pub fn derive(identity_seed: &[u8], room: &RoomId) -> Self {
        let hk = Hkdf::<Sha256>::new(None, identity_seed);
        let mut info = LABEL.to_vec();
        info.extend_from_slice(&room.0);
        let mut seed = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit (255 * 32).
        hk.expand(&info, seed.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        RoomAdminKey(SigningKey::from_bytes(&seed))
    }

    /// The key for `room` of the identity whose MLS signer is `identity`.
    pub fn for_identity(
        identity: &openmls_basic_credential::SignatureKeyPair,
        room: &RoomId,
    ) -> Self {
        use openmls_traits::signatures::Signer as _;
        // Signing with an Ed25519 key in memory does not fail; an empty secret would
        // still give a key, just not a private one, and is never the case.
        let secret = Zeroizing::new(identity.sign(SEED_MESSAGE).unwrap_or_default());
        Self::derive(&secret, room)
    }

    /// The public half: the pseudonym the relay lists.
    pub fn public(&self) -> AdminKey {
        AdminKey(self.0.verifying_key().to_bytes())
    }

    /// A signature over `action` in `room` during the epoch of `cap`.
    pub fn prove(&self, room: &RoomId, cap: &Cap, action: &AdminAction) -> AdminProof {
        let message = admin_message(room, &cap.hash(), action);
        AdminProof {
            admin: self.public(),
            signature: Signature(self.0.sign(&message).to_bytes()),
        }
    }
}

impl std::fmt::Debug for RoomAdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoomAdminKey(*** {:?})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_room_and_identity() {
        let (a, b) = (RoomId([1; 16]), RoomId([2; 16]));
        let k = |seed: u8, room| RoomAdminKey::derive(&[seed; 32], room).public();
        assert_eq!(k(7, &a), k(7, &a));
        assert_ne!(k(7, &a), k(7, &b), "rooms of one person look unrelated");
        assert_ne!(k(7, &a), k(8, &a));
        let identity = SigningKey::from_bytes(&[7; 32]);
        assert_ne!(k(7, &a).0, identity.verifying_key().to_bytes());
    }
}
