//! Fingerprints and safety numbers: what two people compare to verify each other.
//!
//! Like Signal's safety numbers, the digits come from iterated SHA-512 over a versioned
//! domain string and the public key(s): 5200 rounds make searching for a key whose digits
//! look alike cost thousands of hashes per try. Each 5-byte chunk of the final hash,
//! taken as a big-endian integer modulo 100 000, gives one group of five digits; twelve
//! groups make 60 digits (about 199 bits).
//!
//! Exactly: `h = SHA-512(u16be(len(domain)) || domain || keys)`, then 5200 times
//! `h = SHA-512(h || keys)`, where `keys` is the one key, or the two keys of a pair in
//! ascending byte order. Domains: `hearth fingerprint v1`, `hearth safety number v1`.
//!
//! - A [`Fingerprint`] belongs to one account key.
//! - A [`SafetyNumber`] belongs to a pair of keys and does not depend on their order, so
//!   both people see the same number.

use std::fmt;

use hearth_protocol::AccountKey;
use sha2::{Digest, Sha512};

/// Number of five-digit groups shown.
const GROUPS: usize = 12;
/// SHA-512 rounds, as in Signal's numeric fingerprints.
const ITERATIONS: usize = 5200;
const FINGERPRINT_DOMAIN: &[u8] = b"hearth fingerprint v1";
const SAFETY_NUMBER_DOMAIN: &[u8] = b"hearth safety number v1";

/// The fingerprint of one account key: 60 decimal digits in 12 groups of 5.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u32; GROUPS]);

/// The safety number of a pair of account keys: 60 decimal digits in 12 groups of 5,
/// the same whichever of the two computes it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SafetyNumber([u32; GROUPS]);

/// The fingerprint of `account`.
pub fn fingerprint(account: &AccountKey) -> Fingerprint {
    Fingerprint(digit_groups(FINGERPRINT_DOMAIN, &[&account.0]))
}

/// The safety number of the pair `a`, `b`; `safety_number(a, b) == safety_number(b, a)`.
pub fn safety_number(a: &AccountKey, b: &AccountKey) -> SafetyNumber {
    let (low, high) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    SafetyNumber(digit_groups(SAFETY_NUMBER_DOMAIN, &[&low.0, &high.0]))
}

/// Iterated SHA-512 over `domain || len || keys`, re-mixing the keys every round.
fn digit_groups(domain: &[u8], keys: &[&[u8; 32]]) -> [u32; GROUPS] {
    let mut material = Vec::with_capacity(64);
    for key in keys {
        material.extend_from_slice(*key);
    }
    let mut hasher = Sha512::new();
    hasher.update((domain.len() as u16).to_be_bytes());
    hasher.update(domain);
    hasher.update(&material);
    let mut hash = hasher.finalize();
    for _ in 0..ITERATIONS {
        let mut hasher = Sha512::new();
        hasher.update(hash);
        hasher.update(&material);
        hash = hasher.finalize();
    }
    let mut groups = [0u32; GROUPS];
    for (group, chunk) in groups.iter_mut().zip(hash.chunks_exact(5)) {
        let mut wide = [0u8; 8];
        wide[3..].copy_from_slice(chunk);
        // The remainder is below 100 000, so it fits a u32.
        *group = (u64::from_be_bytes(wide) % 100_000) as u32;
    }
    groups
}

fn groups_of(groups: &[u32; GROUPS]) -> Vec<String> {
    groups.iter().map(|g| format!("{g:05}")).collect()
}

fn write_groups(groups: &[u32; GROUPS], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{g:05}")?;
    }
    Ok(())
}

impl Fingerprint {
    /// All 60 digits, without spaces.
    pub fn digits(&self) -> String {
        groups_of(&self.0).concat()
    }

    /// The 12 groups of 5 digits, for laying them out in rows.
    pub fn groups(&self) -> Vec<String> {
        groups_of(&self.0)
    }
}

impl SafetyNumber {
    /// All 60 digits, without spaces.
    pub fn digits(&self) -> String {
        groups_of(&self.0).concat()
    }

    /// The 12 groups of 5 digits, for laying them out in rows.
    pub fn groups(&self) -> Vec<String> {
        groups_of(&self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_groups(&self.0, f)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_groups(&self.0, f)
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

/// Number of five-digit groups of a [`RoomCode`].
const ROOM_CODE_GROUPS: usize = 6;
const ROOM_CODE_DOMAIN: &[u8] = b"hearth room code v1";

/// A room's code at one epoch: 30 digits in 6 groups of 5 from the MLS epoch
/// authenticator (RFC 9420 section 8.7), the same for every member at that epoch and
/// different for anyone shown another history of commits. Two people who read the same
/// code at the same epoch see the same room.
///
/// Exactly: `SHA-512(u16be(len(domain)) || domain || epoch_be64 || authenticator)`, five
/// bytes per group as for fingerprints; domain `hearth room code v1`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomCode {
    /// The epoch the code belongs to.
    pub epoch: u64,
    groups: [u32; ROOM_CODE_GROUPS],
}

impl RoomCode {
    /// The code of `epoch` whose epoch authenticator is `authenticator`.
    pub fn new(epoch: u64, authenticator: &[u8]) -> Self {
        let mut hasher = Sha512::new();
        hasher.update((ROOM_CODE_DOMAIN.len() as u16).to_be_bytes());
        hasher.update(ROOM_CODE_DOMAIN);
        hasher.update(epoch.to_be_bytes());
        hasher.update(authenticator);
        let hash = hasher.finalize();
        let mut groups = [0u32; ROOM_CODE_GROUPS];
        for (group, chunk) in groups.iter_mut().zip(hash.chunks_exact(5)) {
            let mut wide = [0u8; 8];
            wide[3..].copy_from_slice(chunk);
            // The remainder is below 100 000, so it fits a u32.
            *group = (u64::from_be_bytes(wide) % 100_000) as u32;
        }
        RoomCode { epoch, groups }
    }
}

impl fmt::Display for RoomCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.groups.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{g:05}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RoomCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomCode(epoch {}: {self})", self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(byte: u8) -> AccountKey {
        AccountKey([byte; 32])
    }

    #[test]
    fn fingerprint_is_deterministic_and_well_formed() {
        let a = fingerprint(&key(1));
        assert_eq!(a, fingerprint(&key(1)));
        assert_ne!(a, fingerprint(&key(2)));
        let digits = a.digits();
        assert_eq!(digits.len(), 60);
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        let groups = a.groups();
        assert_eq!(groups.len(), 12);
        assert!(groups.iter().all(|g| g.len() == 5));
        let shown = a.to_string();
        assert_eq!(shown.split(' ').collect::<Vec<_>>(), groups);
        assert_eq!(shown.replace(' ', ""), digits);
    }

    #[test]
    fn fingerprint_known_answer_is_stable() {
        // Pins the derivation: changing it would silently break every verification
        // people have done, so a change must bump the domain version instead.
        let digits = fingerprint(&key(0)).digits();
        assert_eq!(digits, fingerprint(&AccountKey([0; 32])).digits());
        assert_eq!(digits, KNOWN_ZERO_FINGERPRINT, "{digits}");
    }

    /// Computed independently (Python hashlib) from the description in the module docs.
    const KNOWN_ZERO_FINGERPRINT: &str =
        "473285632081608589453302067483589780349641679571508269704272";

    #[test]
    fn safety_number_differs_from_fingerprints() {
        let sn = safety_number(&key(1), &key(1));
        assert_ne!(sn.digits(), fingerprint(&key(1)).digits());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn safety_number_is_order_independent(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let (a, b) = (AccountKey(a), AccountKey(b));
            prop_assert_eq!(safety_number(&a, &b), safety_number(&b, &a));
            prop_assert_eq!(safety_number(&a, &b).digits().len(), 60);
        }

        #[test]
        fn safety_number_differs_for_other_pairs(
            a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), c in any::<[u8; 32]>()
        ) {
            prop_assume!(c != a && c != b);
            let (a, b, c) = (AccountKey(a), AccountKey(b), AccountKey(c));
            let ab = safety_number(&a, &b);
            prop_assert_ne!(ab, safety_number(&a, &c));
            prop_assert_ne!(ab, safety_number(&c, &b));
        }
    }
}
