//! The device identity: one Ed25519 key pair per device.
//!
//! The same key signs MLS messages (it is the MLS signature key) and authenticates the
//! device to the relay. Its public half is the [`AccountKey`].

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hearth_protocol::{AccountKey, Signature};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::types::SignatureScheme;
use rand_core::OsRng;
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// The device identity: an Ed25519 key pair (also the MLS signature key).
///
/// The secret key is zeroized on drop and never printed: `Debug` shows
/// `Identity(*** account=…)` with the short form of the public key.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

// `SigningKey` zeroizes itself on drop (ed25519-dalek feature "zeroize"); this marker
// states it for the whole type.
impl ZeroizeOnDrop for Identity {}

impl Identity {
    /// Generates a fresh identity from the operating system's random number generator.
    pub fn generate() -> Self {
        Identity {
            key: SigningKey::generate(&mut OsRng),
        }
    }

    /// Rebuilds an identity from its 32-byte secret key (the Ed25519 seed).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(bytes),
        }
    }

    /// The 32-byte secret key, for storing it encrypted. Zeroized when dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.key.as_bytes())
    }

    /// The public key, which names this account on the relay and in rooms.
    pub fn account(&self) -> AccountKey {
        AccountKey(self.key.verifying_key().to_bytes())
    }

    /// Signs `message` with Ed25519.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.key.sign(message).to_bytes())
    }

    /// The X25519 secret key of the inbox: the clamped scalar of this Ed25519 key, whose
    /// public half is the RFC 7748 section 4.1 map of [`Identity::account`] (see
    /// [`crate::sealed`]). Zeroized when dropped.
    pub(crate) fn inbox_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_scalar_bytes())
    }

    /// The openmls signer for this identity (scheme ED25519), built from the same key
    /// bytes, so MLS credentials and relay authentication name the same account.
    pub fn mls_signer(&self) -> SignatureKeyPair {
        // The private copy moves straight into the key pair, which keeps it in a
        // zeroizing buffer.
        SignatureKeyPair::from_raw(
            SignatureScheme::ED25519,
            self.key.as_bytes().to_vec(),
            self.key.verifying_key().to_bytes().to_vec(),
        )
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity(*** account={})", self.account().short())
    }
}

/// Checks an Ed25519 signature by `account` over `message`.
///
/// Uses `verify_strict`, which rejects weak public keys and non-canonical signatures, so
/// one message has one valid signature per key.
pub fn verify(account: &AccountKey, message: &[u8], signature: &Signature) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&account.0) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let id = Identity::generate();
        let sig = id.sign(b"hello");
        assert!(verify(&id.account(), b"hello", &sig));
        assert!(!verify(&id.account(), b"hellO", &sig));
        let other = Identity::generate();
        assert!(!verify(&other.account(), b"hello", &sig));
        let mut bad = sig.clone();
        bad.0[3] ^= 1;
        assert!(!verify(&id.account(), b"hello", &bad));
    }

    #[test]
    fn secret_bytes_round_trip() {
        let id = Identity::generate();
        let again = Identity::from_secret_bytes(&id.secret_bytes());
        assert_eq!(id.account(), again.account());
    }

    #[test]
    fn mls_signer_uses_the_same_key() {
        use openmls_traits::signatures::Signer;
        let id = Identity::generate();
        let signer = id.mls_signer();
        assert_eq!(signer.public(), id.account().0.as_slice());
        assert_eq!(signer.signature_scheme(), SignatureScheme::ED25519);
        let sig = signer.sign(b"mls").expect("ed25519 signing cannot fail");
        let sig = Signature(sig.try_into().expect("ed25519 signatures are 64 bytes"));
        assert!(verify(&id.account(), b"mls", &sig));
    }

    #[test]
    fn debug_hides_the_secret() {
        let id = Identity::generate();
        let text = format!("{id:?}");
        assert!(text.starts_with("Identity(***"), "{text}");
        assert!(text.contains(&id.account().short()));
        assert!(!text.contains(&hex::encode(*id.secret_bytes())));
    }
}
