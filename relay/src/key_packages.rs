//! What the relay checks of the KeyPackages it hands out (RFC 9420 section 10), the
//! second kind of MLS message it reads (after external commits).
//!
//! - On **publish**, each package must verify (openmls: signatures, a lifetime valid now)
//!   and name the publishing account: its credential is the account's handle and its
//!   signature key the account's key. So nobody can publish packages that would add them
//!   under someone else's name, and an inviter never gets someone else's package.
//! - On **take**, a package whose lifetime has run out is dropped instead of handed out:
//!   an inviter gets the next one, or `NoKeyPackage` and the owner's client tops up at its
//!   next connection. Expired packages do not count in the stock either.

use hearth_protocol::{AccountKey, Handle};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_rust_crypto::RustCrypto;

/// Why a published KeyPackage was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPackageRefused {
    /// It does not decode or verify (or its lifetime is not valid now).
    #[error("a key package does not verify: {0}")]
    Invalid(String),
    /// It names another identity than the publishing account.
    #[error("a key package names another identity than the account publishing it")]
    Identity,
}

fn verified(bytes: &[u8]) -> Result<KeyPackage, KeyPackageVerifyError> {
    let package = KeyPackageIn::tls_deserialize_exact(bytes)
        .map_err(|_| KeyPackageVerifyError::InvalidLeafNodeSignature)?;
    package.validate(&RustCrypto::default(), ProtocolVersion::Mls10)
}

/// Checks a KeyPackage (TLS-codec bytes) published by `account` with `handle`.
pub fn check_published(
    bytes: &[u8],
    account: &AccountKey,
    handle: &Handle,
) -> Result<(), KeyPackageRefused> {
    let package = verified(bytes).map_err(|e| KeyPackageRefused::Invalid(e.to_string()))?;
    let leaf = package.leaf_node();
    let named = BasicCredential::try_from(leaf.credential().clone())
        .is_ok_and(|basic| basic.identity() == handle.as_str().as_bytes());
    if !named || leaf.signature_key().as_slice() != account.0.as_slice() {
        return Err(KeyPackageRefused::Identity);
    }
    Ok(())
}

/// Whether a stored KeyPackage's lifetime has run out by the relay's clock
/// ([`crate::service::unix_now`]). Bytes that do not decode are not judged here (they were
/// checked when published).
pub fn is_expired(bytes: &[u8]) -> bool {
    match verified(bytes) {
        Ok(package) => package.life_time().not_after() < crate::service::unix_now(),
        Err(e) => matches!(e, KeyPackageVerifyError::LifetimeError(_)),
    }
}
