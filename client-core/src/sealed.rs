//! Sealed inbox payloads: what one account deposits in another's relay inbox, readable
//! and attributable by the recipient alone (decision 0013, part 1).
//!
//! A payload is HPKE base mode (RFC 9180 section 6.1) with the HPKE of cipher suite
//! 0x0003: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305. The recipient key
//! is the X25519 form of the recipient's Ed25519 identity key (the birational map of
//! RFC 7748 section 4.1): the key the sender already pins for that person, so the relay
//! has nothing to substitute and there is no second key to publish or rotate. Sealed
//! inside: the sender's account key, its Ed25519 signature over
//! `"hearth inbox seal v1" || recipient key || message`, and the message.
//!
//! So the relay stores `(recipient, ciphertext)` and cannot tell who sent it or which
//! room it concerns; a payload re-addressed to someone else fails the signature (it
//! covers the recipient), a tampered one fails the AEAD or the signature.
//!
//! Wire shape (postcard): `version: u8 = 1`, `enc: bytes` (32), `ciphertext: bytes`;
//! the opened plaintext is `sender: [u8; 32]`, `signature: [u8; 64]`, `message: bytes`.

use ed25519_dalek::VerifyingKey;
use hearth_protocol::{AccountKey, Signature};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::{HpkeAeadType, HpkeCiphertext, HpkeConfig, HpkeKdfType, HpkeKemType};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::{verify, Identity};

/// The HPKE `info` of every sealed inbox payload.
const INFO: &[u8] = b"hearth inbox v1";
/// The prefix of what the sender signs (keeps these signatures apart from MLS's and the
/// relay authentication's).
const SIGNED_LABEL: &[u8] = b"hearth inbox seal v1";
/// The only version of the outer shape.
const VERSION: u8 = 1;
/// The largest payload opened, in bytes (the relay refuses larger frames anyway).
pub const MAX_SEALED_LEN: usize = hearth_protocol::limits::MAX_FRAME_LEN;

/// Why a payload could not be sealed or opened. The texts name no remote data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The recipient's account key is not a valid Ed25519 public key.
    #[error("the recipient's key cannot receive sealed messages")]
    BadRecipient,
    /// Not a sealed payload of a version this client reads.
    #[error("not a sealed inbox payload this version of hearth reads")]
    Malformed,
    /// The seal does not open with our key (addressed to someone else, or tampered).
    #[error("the sealed payload does not open with this account's key")]
    NotForUs,
    /// Opened, but the sender's signature does not verify.
    #[error("the sealed payload's signature does not verify")]
    BadSignature,
    /// The HPKE implementation failed to seal.
    #[error("sealing failed")]
    Crypto,
}

/// A payload opened and checked: who sent it (as proven by its signature) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's account (identity) key.
    pub sender: AccountKey,
    /// The message the sender sealed.
    pub message: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Outer {
    version: u8,
    #[serde(with = "serde_bytes")]
    enc: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Inner {
    sender: [u8; 32],
    #[serde(with = "serde_bytes")]
    signature: [u8; 64],
    #[serde(with = "serde_bytes")]
    message: Vec<u8>,
}

fn config() -> HpkeConfig {
    HpkeConfig(
        HpkeKemType::DhKem25519,
        HpkeKdfType::HkdfSha256,
        HpkeAeadType::ChaCha20Poly1305,
    )
}

/// The X25519 public key of an account (RFC 7748 section 4.1 map of its Ed25519 key).
fn recipient_key(account: &AccountKey) -> Result<[u8; 32], SealError> {
    let key = VerifyingKey::from_bytes(&account.0).map_err(|_| SealError::BadRecipient)?;
    if key.is_weak() {
        return Err(SealError::BadRecipient);
    }
    Ok(key.to_montgomery().to_bytes())
}

fn signed_message(recipient: &AccountKey, message: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(SIGNED_LABEL.len() + 32 + message.len());
    signed.extend_from_slice(SIGNED_LABEL);
    signed.extend_from_slice(&recipient.0);
    signed.extend_from_slice(message);
    signed
}

/// Seals `message` from `sender` to `recipient`.
///
/// # Errors
/// [`SealError::BadRecipient`] when `recipient` is no valid Ed25519 key,
/// [`SealError::Crypto`] when HPKE fails.
pub fn seal(
    sender: &Identity,
    recipient: &AccountKey,
    message: &[u8],
) -> Result<Vec<u8>, SealError> {
    let pk_r = recipient_key(recipient)?;
    let inner = Inner {
        sender: sender.account().0,
        signature: sender.sign(&signed_message(recipient, message)).0,
        message: message.to_vec(),
    };
    let plaintext = Zeroizing::new(postcard::to_allocvec(&inner).map_err(|_| SealError::Crypto)?);
    let sealed = RustCrypto::default()
        .hpke_seal(config(), &pk_r, INFO, &recipient.0, &plaintext)
        .map_err(|_| SealError::Crypto)?;
    let outer = Outer {
        version: VERSION,
        enc: sealed.kem_output.as_slice().to_vec(),
        ciphertext: sealed.ciphertext.as_slice().to_vec(),
    };
    postcard::to_allocvec(&outer).map_err(|_| SealError::Crypto)
}

/// Opens a payload sealed to `recipient` and checks the sender's signature.
///
/// # Errors
/// [`SealError::Malformed`] for bytes that are no sealed payload (or too long),
/// [`SealError::NotForUs`] when it does not open with our key (another recipient, or
/// tampered), [`SealError::BadSignature`] when the sender it names did not sign it for us.
pub fn open(recipient: &Identity, payload: &[u8]) -> Result<Opened, SealError> {
    if payload.len() > MAX_SEALED_LEN {
        return Err(SealError::Malformed);
    }
    let outer: Outer = match postcard::from_bytes(payload) {
        Ok(
            outer @ Outer {
                version: VERSION, ..
            },
        ) => outer,
        _ => return Err(SealError::Malformed),
    };
    let account = recipient.account();
    let sk_r = recipient.inbox_secret();
    let ciphertext = HpkeCiphertext {
        kem_output: outer.enc.into(),
        ciphertext: outer.ciphertext.into(),
    };
    let plaintext = Zeroizing::new(
        RustCrypto::default()
            .hpke_open(config(), &ciphertext, sk_r.as_slice(), INFO, &account.0)
            .map_err(|_| SealError::NotForUs)?,
    );
    let inner: Inner = postcard::from_bytes(&plaintext).map_err(|_| SealError::Malformed)?;
    let sender = AccountKey(inner.sender);
    let signed = signed_message(&account, &inner.message);
    if !verify(&sender, &signed, &Signature(inner.signature)) {
        return Err(SealError::BadSignature);
    }
    Ok(Opened {
        sender,
        message: inner.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipient_opens_what_was_sealed_to_it_and_learns_the_sender() {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let sealed = seal(&alice, &bob.account(), b"welcome").unwrap();
        let opened = open(&bob, &sealed).unwrap();
        assert_eq!(opened.sender, alice.account());
        assert_eq!(opened.message, b"welcome");
        assert!(
            !sealed.windows(32).any(|w| w == alice.account().0),
            "the sender's key is not visible outside the seal"
        );
        assert!(!sealed.windows(7).any(|w| w == b"welcome"));
    }

    #[test]
    fn someone_else_cannot_open_it() {
        let (alice, bob, carol) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let sealed = seal(&alice, &bob.account(), b"welcome").unwrap();
        assert_eq!(open(&carol, &sealed), Err(SealError::NotForUs));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let sealed = seal(&alice, &bob.account(), b"welcome").unwrap();
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(
                open(&bob, &tampered).is_err(),
                "byte {i} flipped still opened"
            );
        }
    }

    /// A recipient who re-seals what it got to a third person cannot pass it off as
    /// addressed to them: the sender's signature names the first recipient.
    #[test]
    fn a_re_addressed_payload_is_refused() {
        let (alice, bob, carol) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let sealed = seal(&alice, &bob.account(), b"welcome").unwrap();
        let opened_by_bob = {
            let outer: Outer = postcard::from_bytes(&sealed).unwrap();
            RustCrypto::default()
                .hpke_open(
                    config(),
                    &HpkeCiphertext {
                        kem_output: outer.enc.into(),
                        ciphertext: outer.ciphertext.into(),
                    },
                    bob.inbox_secret().as_slice(),
                    INFO,
                    &bob.account().0,
                )
                .unwrap()
        };
        let pk_carol = recipient_key(&carol.account()).unwrap();
        let resealed = RustCrypto::default()
            .hpke_seal(
                config(),
                &pk_carol,
                INFO,
                &carol.account().0,
                &opened_by_bob,
            )
            .unwrap();
        let forged = postcard::to_allocvec(&Outer {
            version: VERSION,
            enc: resealed.kem_output.as_slice().to_vec(),
            ciphertext: resealed.ciphertext.as_slice().to_vec(),
        })
        .unwrap();
        assert_eq!(open(&carol, &forged), Err(SealError::BadSignature));
    }

    #[test]
    fn a_sender_naming_someone_else_is_refused() {
        let (alice, bob, mallory) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let inner = Inner {
            sender: alice.account().0,
            signature: mallory.sign(&signed_message(&bob.account(), b"hi")).0,
            message: b"hi".to_vec(),
        };
        let sealed = RustCrypto::default()
            .hpke_seal(
                config(),
                &recipient_key(&bob.account()).unwrap(),
                INFO,
                &bob.account().0,
                &postcard::to_allocvec(&inner).unwrap(),
            )
            .unwrap();
        let forged = postcard::to_allocvec(&Outer {
            version: VERSION,
            enc: sealed.kem_output.as_slice().to_vec(),
            ciphertext: sealed.ciphertext.as_slice().to_vec(),
        })
        .unwrap();
        assert_eq!(open(&bob, &forged), Err(SealError::BadSignature));
    }

    #[test]
    fn garbage_and_other_versions_are_malformed() {
        let bob = Identity::generate();
        assert_eq!(open(&bob, b""), Err(SealError::Malformed));
        assert_eq!(open(&bob, &[2, 0, 0]), Err(SealError::Malformed));
        assert!(
            seal(&bob, &AccountKey([0; 32]), b"x").is_err(),
            "a weak key is no recipient"
        );
    }
}
