//! Anonymous admission tokens for room connections (decision 0016).
//!
//! A room connection never signs in (decision 0013 part 5), yet only people the relay
//! has not banned may use one. The relay proves the second without learning the first
//! with a verifiable oblivious PRF (RFC 9497, `ristretto255-SHA512`, mode `0x01`):
//!
//! 1. A room connection asks [`crate::Request::AdmissionKey`]: the relay's current
//!    [`AdmissionKey`], the same for every connection.
//! 2. The signed-in connection sends [`crate::Request::IssueAdmission`] with
//!    [`ADMISSION_BATCH`] [`BlindedToken`]s; the relay, having checked the account is not
//!    banned, evaluates them blindly ([`EvaluatedToken`]s) and proves with one
//!    [`AdmissionProof`] that it used the key of step 1, so it cannot mark one account's
//!    tokens with a key of their own.
//! 3. The client unblinds them into [`AdmissionToken`]s and spends one on each room
//!    connection ([`crate::Request::Admit`]). The relay recomputes the PRF on the token's
//!    input and compares: it learns that some account it issued to opened the connection,
//!    never which.
//!
//! Banning an account replaces the relay's key: every room connection is told
//! ([`crate::Event::Readmit`]) and must be admitted again under the new key within the
//! relay's grace period, which a banned account cannot do.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// How many tokens one [`crate::Request::IssueAdmission`] asks for: always this many, so
/// the number asked says nothing about how many rooms the account is in.
pub const ADMISSION_BATCH: usize = 16;

/// Length of a token's input: random bytes the client picks.
pub const TOKEN_INPUT_LEN: usize = 32;

/// Length of a token's output: the PRF's output (SHA-512).
pub const TOKEN_OUTPUT_LEN: usize = 64;

/// The relay's admission key: a compressed ristretto255 point, the VOPRF public key
/// (RFC 9497 section 3.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdmissionKey(pub [u8; 32]);

impl fmt::Debug for AdmissionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdmissionKey({})", crate::ids::to_hex(&self.0[..4]))
    }
}

/// A blinded token input (a compressed ristretto255 point, RFC 9497 `blindedElement`).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindedToken(pub [u8; 32]);

impl fmt::Debug for BlindedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindedToken(..)")
    }
}

/// The relay's blind evaluation of one [`BlindedToken`] (RFC 9497 `evaluatedElement`).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluatedToken(pub [u8; 32]);

impl fmt::Debug for EvaluatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EvaluatedToken(..)")
    }
}

/// The relay's proof that it evaluated a batch with the key of its [`AdmissionKey`]
/// (RFC 9497 section 2.2: two scalars, `c` and `s`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionProof(#[serde(with = "serde_bytes")] pub [u8; 64]);

impl fmt::Debug for AdmissionProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdmissionProof(..)")
    }
}

/// A spent or spendable token: an input and the PRF's output on it under the relay's
/// key. Secret until spent (whoever holds it can admit a connection): never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct AdmissionToken {
    /// Random bytes the client picked.
    pub input: [u8; TOKEN_INPUT_LEN],
    /// `VOPRF(key, input)`.
    #[serde(with = "serde_bytes")]
    pub output: [u8; TOKEN_OUTPUT_LEN],
}

impl fmt::Debug for AdmissionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdmissionToken(***)")
    }
}
