//! Small secret-holding types shared by the store and backups.

use std::fmt;

use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 32-byte symmetric key (store key, key-encryption key). Boxed so moves do not leave
/// copies on the stack, zeroized on drop, compared in constant time, printed as `***`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SecretKey(Box<[u8; 32]>);

impl SecretKey {
    /// A fresh random key from the operating system.
    pub(crate) fn random() -> Self {
        let mut key = SecretKey::zero();
        OsRng.fill_bytes(&mut key.0[..]);
        key
    }

    /// An all-zero key, to be filled in place (e.g. by a KDF or a decryption).
    pub(crate) fn zero() -> Self {
        SecretKey(Box::new([0; 32]))
    }

    /// The key bytes.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key bytes, to be filled in place.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; 32] {
        &mut self.0
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.0[..].ct_eq(&other.0[..]).into()
    }
}

impl Eq for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_and_eq_works() {
        let a = SecretKey::random();
        assert_eq!(format!("{a:?}"), "SecretKey(***)");
        assert_eq!(a, a.clone());
        assert_ne!(a, SecretKey::random());
    }
}
