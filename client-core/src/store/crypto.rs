//! The cryptography of the local store: passphrase → key-encryption key (Argon2id),
//! wrapping the store key, and sealing values (XChaCha20-Poly1305).

use std::sync::RwLock;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::StoreError;
use crate::secret::SecretKey;

/// Length of the random nonce in front of every sealed value.
pub(crate) const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag.
const TAG_LEN: usize = 16;
/// Length of the Argon2id salt.
pub(crate) const SALT_LEN: usize = 16;

/// Argon2id cost parameters. They are stored with each store (and backup), so a store
/// is always opened with the parameters it was created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl KdfParams {
    /// The parameters of new profiles: Argon2id v1.3, 64 MiB, 2 passes, 1 lane.
    ///
    /// 64 MiB keeps GPU and ASIC guessing expensive while fitting easily on a 1 GiB
    /// Raspberry Pi; above every OWASP-recommended Argon2id setting. One lane because this
    /// argon2 build computes lanes sequentially anyway. Passes were cut from 3 to 2 to stay
    /// well under a second on a Pi 4: `cargo bench -p hearth-core --bench unlock` measured
    /// a median `Profile::open` of 209 ms with t = 3 and 149 ms with t = 2 on a shared
    /// 2-core AMD EPYC VM; a Pi 4 is roughly 4–5 times slower at Argon2 (memory bound),
    /// so about 0.6–0.7 s there. Each store records its own parameters, so raising them
    /// later only affects new profiles and profiles whose passphrase is changed (a
    /// change re-wraps the key with the parameters of [`params_for_new`]).
    pub const PRODUCTION: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    /// Cheap parameters for tests only (`HEARTH_TEST_FAST_KDF=1`). Never use them for
    /// real profiles: they make guessing a passphrase thousands of times cheaper.
    pub const TEST_ONLY_FAST: KdfParams = KdfParams {
        m_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    /// Upper bounds accepted when reading parameters from disk (a store or a backup):
    /// what hearth itself has ever written ([`KdfParams::PRODUCTION`], and 3 passes before
    /// they were cut to 2), so a damaged or hostile 128-byte file cannot make us allocate
    /// gigabytes or spin for minutes before the passphrase is even checked (issue 13).
    /// Raising [`KdfParams::PRODUCTION`] means raising this with it.
    pub const MAX: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// Whether these parameters are cheaper to attack than [`KdfParams::PRODUCTION`] in
    /// memory or passes: a profile made with `HEARTH_TEST_FAST_KDF=1` (a test or bench
    /// run) has them. Changing the passphrase re-wraps the key with production ones.
    pub fn is_below_production(&self) -> bool {
        self.m_kib < Self::PRODUCTION.m_kib || self.t_cost < Self::PRODUCTION.t_cost
    }

    /// Checks parameters read from disk against sane bounds.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.m_kib > Self::MAX.m_kib
            || self.t_cost > Self::MAX.t_cost
            || self.p_cost > Self::MAX.p_cost
            || self.t_cost == 0
            || self.p_cost == 0
        {
            return Err(StoreError::Corrupt(format!(
                "unreasonable key derivation parameters {self:?}"
            )));
        }
        Ok(())
    }
}

/// Test override of the parameters for new stores; see [`set_test_kdf_params`].
static TEST_PARAMS: RwLock<Option<KdfParams>> = RwLock::new(None);

/// Makes new stores (and backups) in this process use `params` instead of
/// [`KdfParams::PRODUCTION`]; `None` restores the default. For tests and benches only.
#[doc(hidden)]
pub fn set_test_kdf_params(params: Option<KdfParams>) {
    // A poisoned lock only means another test panicked while holding it; the value is
    // a plain Copy and still valid.
    *TEST_PARAMS.write().unwrap_or_else(|e| e.into_inner()) = params;
}

/// The parameters for a new store or backup (and for a passphrase change): the test
/// override if set, else [`KdfParams::TEST_ONLY_FAST`] if `HEARTH_TEST_FAST_KDF=1`
/// (see [`fast_kdf_requested`]), else production.
/// Opening never consults this: it uses the parameters stored in the file.
pub(crate) fn params_for_new() -> KdfParams {
    if let Some(params) = *TEST_PARAMS.read().unwrap_or_else(|e| e.into_inner()) {
        return params;
    }
    if fast_kdf_requested() {
        return KdfParams::TEST_ONLY_FAST;
    }
    KdfParams::PRODUCTION
}

/// Whether `HEARTH_TEST_FAST_KDF=1` is set: new stores, backups and passphrase changes
/// then get [`KdfParams::TEST_ONLY_FAST`]. For tests and benchmarks only; a program
/// should warn its user when it is set (see [`KdfParams::is_below_production`]).
pub fn fast_kdf_requested() -> bool {
    std::env::var_os("HEARTH_TEST_FAST_KDF").is_some_and(|v| v == "1")
}

/// Derives a 32-byte key-encryption key from a passphrase with Argon2id (v1.3).
pub(crate) fn derive_kek(
    passphrase: &str,
    salt: &[u8; SALT_LEN],
    params: KdfParams,
) -> Result<SecretKey, StoreError> {
    params.check()?;
    let argon_params = Params::new(params.m_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| StoreError::Corrupt(format!("invalid key derivation parameters: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut kek = SecretKey::zero();
    argon
        .hash_password_into(passphrase.as_bytes(), salt, kek.bytes_mut())
        .map_err(|e| StoreError::Corrupt(format!("key derivation failed: {e}")))?;
    Ok(kek)
}

/// A fresh random salt.
pub(crate) fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    salt
}

/// Encrypts `plaintext` under `key` with a fresh random nonce: `nonce || ciphertext`.
pub(crate) fn seal(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // Encryption only fails for messages longer than 256 GiB.
        .expect("value too large to encrypt");
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// Decrypts `nonce || ciphertext`; `None` if it is too short or fails authentication.
pub(crate) fn open(key: &SecretKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// The store key, wrapped under a key derived from the passphrase. Stored in plaintext
/// in the `header` table; only the passphrase can unwrap it.
#[derive(Serialize, Deserialize)]
pub(crate) struct WrappedKey {
    /// Store format version this wrapping belongs to.
    pub format: u32,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// `nonce || XChaCha20-Poly1305(store key)`.
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

impl WrappedKey {
    /// Wraps `store_key` under `passphrase` with a fresh salt.
    pub(crate) fn wrap(
        store_key: &SecretKey,
        passphrase: &str,
        format: u32,
        kdf: KdfParams,
    ) -> Result<Self, StoreError> {
        let salt = random_salt();
        let kek = derive_kek(passphrase, &salt, kdf)?;
        let sealed = seal(&kek, &Self::aad(format, kdf, &salt), store_key.bytes());
        Ok(WrappedKey {
            format,
            kdf,
            salt,
            sealed,
        })
    }

    /// Unwraps the store key; `WrongPassphrase` if authentication fails.
    pub(crate) fn unwrap(&self, passphrase: &str) -> Result<SecretKey, StoreError> {
        let kek = derive_kek(passphrase, &self.salt, self.kdf)?;
        let plain = open(
            &kek,
            &Self::aad(self.format, self.kdf, &self.salt),
            &self.sealed,
        )
        .ok_or(StoreError::WrongPassphrase)?;
        let mut key = SecretKey::zero();
        if plain.len() != 32 {
            return Err(StoreError::Corrupt(
                "wrapped store key has the wrong length".into(),
            ));
        }
        key.bytes_mut().copy_from_slice(&plain);
        Ok(key)
    }

    /// Binds the wrapping to the format version, the KDF parameters and the salt, so
    /// none of them can be changed (e.g. weakened) without the unwrap failing.
    fn aad(format: u32, kdf: KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
        let mut aad = b"hearth store key\0".to_vec();
        aad.extend_from_slice(&format.to_le_bytes());
        aad.extend_from_slice(&kdf.m_kib.to_le_bytes());
        aad.extend_from_slice(&kdf.t_cost.to_le_bytes());
        aad.extend_from_slice(&kdf.p_cost.to_le_bytes());
        aad.extend_from_slice(salt);
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_beyond_what_hearth_writes_are_refused_before_any_work() {
        assert!(KdfParams::PRODUCTION.check().is_ok());
        assert!(KdfParams::TEST_ONLY_FAST.check().is_ok());
        let old_profiles = KdfParams {
            t_cost: 3,
            ..KdfParams::PRODUCTION
        };
        assert!(
            old_profiles.check().is_ok(),
            "profiles from before the cut to 2 passes"
        );
        for hostile in [
            KdfParams {
                m_kib: 4 * 1024 * 1024,
                ..KdfParams::PRODUCTION
            },
            KdfParams {
                t_cost: 64,
                ..KdfParams::PRODUCTION
            },
            KdfParams {
                p_cost: 16,
                ..KdfParams::PRODUCTION
            },
            KdfParams {
                t_cost: 0,
                ..KdfParams::PRODUCTION
            },
        ] {
            // Refused by the check itself: derive_kek returns before allocating.
            let refused = derive_kek("pass", &[0; SALT_LEN], hostile);
            assert!(
                matches!(refused, Err(StoreError::Corrupt(_))),
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let key = SecretKey::random();
        let sealed = seal(&key, b"aad", b"secret");
        assert_eq!(&open(&key, b"aad", &sealed).unwrap()[..], b"secret");
        assert!(open(&key, b"other", &sealed).is_none());
        assert!(open(&SecretKey::random(), b"aad", &sealed).is_none());
        assert!(open(&key, b"aad", &sealed[..10]).is_none());
    }

    #[test]
    fn wrap_unwrap() {
        let key = SecretKey::random();
        let wrapped = WrappedKey::wrap(&key, "pass", 1, KdfParams::TEST_ONLY_FAST).unwrap();
        assert_eq!(wrapped.unwrap("pass").unwrap(), key);
        assert!(matches!(
            wrapped.unwrap("Pass"),
            Err(StoreError::WrongPassphrase)
        ));
        let mut weakened = WrappedKey {
            kdf: KdfParams {
                t_cost: 2,
                ..wrapped.kdf
            },
            ..wrapped
        };
        assert!(matches!(
            weakened.unwrap("pass"),
            Err(StoreError::WrongPassphrase)
        ));
        weakened.kdf.m_kib = u32::MAX;
        assert!(matches!(
            weakened.unwrap("pass"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
