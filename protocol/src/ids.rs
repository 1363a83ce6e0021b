//! Newtypes for ids, keys and secrets that travel on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 16-byte random id: `random`, the lowercase hex form both ways, and `Debug` as
/// `Name(hex)`.
macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                let mut bytes = [0u8; 16];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
                Self(bytes)
            }

            /// Lowercase hex, as shown in logs and on the command line (and, for a blob,
            /// the relay's file name for it).
            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }

            /// Parses the 32-character hex form.
            pub fn from_hex(text: &str) -> Option<Self> {
                from_hex::<16>(text).map(Self)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }
    };
}

random_id!(
    /// A room: the MLS group id, 16 random bytes chosen by the room's creator.
    RoomId
);

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

random_id!(
    /// A blob (an encrypted attachment) in a room: 16 random bytes chosen by its
    /// uploader. Blobs are addressed by room and id together.
    BlobId
);

/// An account: the Ed25519 public identity key of one device.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountKey(pub [u8; 32]);

impl AccountKey {
    /// Lowercase hex of the key.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// A short, stable label for logs: the first 8 bytes of the key's SHA-256, in hex.
    pub fn short(&self) -> String {
        to_hex(&Sha256::digest(self.0)[..8])
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountKey({})", self.short())
    }
}

/// A room admin's pseudonym (decision 0013, part 5): an Ed25519 public key each admin
/// derives for one room from its identity secret, announces to the room inside MLS, and
/// signs the room's relay-side settings with. The relay lists these per room, never the
/// admins' account keys, and cannot tell whose pseudonym one is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AdminKey(pub [u8; 32]);

impl AdminKey {
    /// Lowercase hex of the key.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminKey({})", to_hex(&self.0[..8]))
    }
}

/// A sequence number in a room log. The first entry is `Seq(1)`; `Seq(0)` means "none yet".
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize,
)]
pub struct Seq(pub u64);

impl Seq {
    /// The sequence number after this one.
    pub fn next(self) -> Self {
        Seq(self.0.saturating_add(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An Ed25519 signature.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "serde_bytes")] pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(..)")
    }
}

/// A room access capability for one epoch: `MLS-Exporter("hearth room access", room_id, 32)`.
///
/// Secret: zeroized on drop, compared in constant time, never printed.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Cap(pub [u8; 32]);

impl Cap {
    /// The hash the relay stores instead of the capability itself.
    pub fn hash(&self) -> CapHash {
        CapHash(Sha256::digest(self.0).into())
    }
}

impl PartialEq for Cap {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for Cap {}

impl fmt::Debug for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cap(***)")
    }
}

/// SHA-256 of a [`Cap`]: what the relay keeps to check a presented capability.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct CapHash(pub [u8; 32]);

impl std::hash::Hash for CapHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for CapHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for CapHash {}

impl fmt::Debug for CapHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapHash({})", to_hex(&self.0[..6]))
    }
}

/// A registration invite token minted by the relay owner. Secret.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct InviteToken(pub [u8; 16]);

impl InviteToken {
    /// A fresh random token.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        Self(bytes)
    }

    /// The token's hash: what a relay stores, so a copy of its store cannot register.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }

    /// URL-safe base64 without padding, as it appears in invites.
    pub fn encode(&self) -> String {
        b64_encode(&self.0)
    }

    /// Parses [`InviteToken::encode`]'s form.
    pub fn decode(text: &str) -> Option<Self> {
        b64_decode(text).map(Self)
    }
}

impl PartialEq for InviteToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for InviteToken {}

impl fmt::Debug for InviteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteToken(***)")
    }
}

/// SHA-256 of the relay certificate's SubjectPublicKeyInfo: what clients pin.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pin(pub [u8; 32]);

impl Pin {
    /// Pins the given DER-encoded SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// URL-safe base64 without padding (43 characters).
    pub fn encode(&self) -> String {
        b64_encode(&self.0)
    }

    /// Parses [`Pin::encode`]'s form.
    pub fn decode(text: &str) -> Option<Self> {
        b64_decode(text).map(Self)
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({})", self.encode())
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// A user's handle on a relay: 1 to 32 characters of `a-z`, `0-9`, `_` and `-`,
/// starting with a letter. Unique per relay.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Handle(String);

/// Why a handle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid handle {0:?}: use 1 to 32 characters a-z, 0-9, '_' or '-', starting with a letter"
)]
pub struct HandleError(pub String);

impl Handle {
    /// The longest handle allowed.
    pub const MAX_LEN: usize = 32;

    /// Validates and wraps a handle. Upper case is folded to lower case.
    pub fn new(text: &str) -> Result<Self, HandleError> {
        let lower = text.to_ascii_lowercase();
        let valid = !lower.is_empty()
            && lower.len() <= Self::MAX_LEN
            && lower.starts_with(|c: char| c.is_ascii_lowercase())
            && lower
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if valid {
            Ok(Self(lower))
        } else {
            Err(HandleError(text.chars().take(40).collect()))
        }
    }

    /// The handle as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Handle::new(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", self.0)
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Handle {
    type Err = HandleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Handle::new(s)
    }
}

/// URL-safe base64 without padding: the form of everything people copy in addresses.
fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes [`b64_encode`]'s form into exactly `N` bytes.
fn b64_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    bytes.try_into().ok()
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handles_are_validated_and_folded() {
        assert_eq!(Handle::new("Alice").unwrap().as_str(), "alice");
        assert!(Handle::new("").is_err());
        assert!(Handle::new("1abc").is_err());
        assert!(Handle::new("a b").is_err());
        assert!(Handle::new(&"a".repeat(33)).is_err());
        assert!(Handle::new("grand-ma_2").is_ok());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Cap([7; 32])), "Cap(***)");
        assert_eq!(format!("{:?}", InviteToken([7; 16])), "InviteToken(***)");
    }

    #[test]
    fn handle_deserialization_validates() {
        let bytes = postcard::to_allocvec(&"Not Valid!".to_string()).unwrap();
        assert!(postcard::from_bytes::<Handle>(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn room_id_hex_round_trips(bytes in any::<[u8; 16]>()) {
            let id = RoomId(bytes);
            prop_assert_eq!(RoomId::from_hex(&id.to_hex()), Some(id));
        }

        #[test]
        fn pin_and_token_round_trip(pin in any::<[u8; 32]>(), token in any::<[u8; 16]>()) {
            prop_assert_eq!(Pin::decode(&Pin(pin).encode()), Some(Pin(pin)));
            prop_assert_eq!(InviteToken::decode(&InviteToken(token).encode()), Some(InviteToken(token)));
        }

        #[test]
        fn room_id_from_hex_never_panics(text in ".{0,40}") {
            let _ = RoomId::from_hex(&text);
        }
    }
}
