//! MLS plumbing: the openmls provider, group configuration, the room settings extension,
//! and persistence of openmls state into the encrypted store.
//!
//! # Persistence
//!
//! openmls keeps its state in a [`StorageProvider`](openmls_traits::storage::StorageProvider).
//! We use the in-memory [`MemoryStorage`] (a map from key bytes to value bytes) and mirror
//! it into `Table::Mls` of the encrypted store. After every MLS operation the [`Engine`]
//! compares the map with what was last written (a shadow copy) and puts the changed keys
//! and deletes the removed ones **in the same [`WriteBatch`] as the room's own state**
//! (transcript hash, last processed seq, in-flight message, history entries). One batch
//! is one durable redb transaction, so a crash leaves either the state before the
//! operation or the state after it, never half a group.
//!
//! All MLS operations run under one lock (the engine's), so the difference always
//! belongs to exactly one operation, even though all groups share one map. The lock is
//! never held across network I/O.

pub mod config;
pub mod join_point;

use std::collections::HashMap;

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;

use crate::error::{store as store_err, ClientError};
use crate::store::{EncryptedStore, Table, WriteBatch};

pub use config::{
    create_config, join_config, BannedIdentity, RoomSettings, SettingsError, CIPHERSUITE,
    EXPORT_LABEL, ROOM_SETTINGS_EXTENSION, SETTINGS_VERSION,
};

/// The openmls provider: RustCrypto for crypto and randomness, an in-memory map for
/// storage (mirrored to the encrypted store by [`Engine::persist`]).
#[derive(Default)]
pub struct HearthProvider {
    crypto: RustCrypto,
    storage: MemoryStorage,
}

impl OpenMlsProvider for HearthProvider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &MemoryStorage {
        &self.storage
    }
    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }
    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}

impl HearthProvider {
    fn snapshot(&self) -> HashMap<Vec<u8>, Vec<u8>> {
        self.storage
            .values
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The MLS side of one device: provider, signer, credential, and the shadow copy of
/// what is persisted.
pub struct Engine {
    /// The openmls provider.
    pub provider: HearthProvider,
    /// The identity's signer.
    pub signer: SignatureKeyPair,
    /// Our credential (handle) and signature key.
    pub credential: CredentialWithKey,
    /// The signer of the key a rotation gave up, while some room's own leaf still holds
    /// it (see [`Engine::signer_for`]).
    pub previous: Option<SignatureKeyPair>,
    persisted: HashMap<Vec<u8>, Vec<u8>>,
}

impl Engine {
    /// An engine with empty storage (for benches and tests without a store).
    pub fn new(signer: SignatureKeyPair, handle: &str) -> Self {
        let credential = CredentialWithKey {
            credential: BasicCredential::new(handle.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Engine {
            provider: HearthProvider::default(),
            signer,
            credential,
            previous: None,
            persisted: HashMap::new(),
        }
    }

    /// The signer that matches our own leaf in `group`: the previous key's in a room a
    /// key rotation has not reached yet (its members verify our messages against that
    /// leaf), else the current one.
    pub fn signer_for<'a>(&'a self, group: &MlsGroup) -> &'a SignatureKeyPair {
        match (&self.previous, group.own_leaf_node()) {
            (Some(previous), Some(leaf))
                if leaf.signature_key().as_slice() == previous.public() =>
            {
                previous
            }
            _ => &self.signer,
        }
    }

    /// Our admin pseudonym key for the room `group` is (decision 0013, part 5), derived
    /// from the identity key our leaf there holds ([`Engine::signer_for`]).
    pub fn room_admin_key(&self, group: &MlsGroup) -> crate::pseudonym::RoomAdminKey {
        let room = hearth_protocol::RoomId(
            <[u8; 16]>::try_from(group.group_id().as_slice()).unwrap_or([0; 16]),
        );
        crate::pseudonym::RoomAdminKey::for_identity(self.signer_for(group), &room)
    }

    /// Whether our own leaf in `group` still holds the key a rotation gave up.
    pub fn holds_previous_key(&self, group: &MlsGroup) -> bool {
        !std::ptr::eq(self.signer_for(group), &self.signer)
    }

    /// Switches to a rotated identity: `signer` becomes the current key (credential
    /// included) and `previous` the key rooms not yet moved still hold.
    pub fn rotate(&mut self, signer: SignatureKeyPair, previous: Option<SignatureKeyPair>) {
        self.credential.signature_key = signer.public().into();
        self.signer = signer;
        self.previous = previous;
    }

    /// Our identity key (the MLS signature key) as an account key.
    pub fn account(&self) -> hearth_protocol::AccountKey {
        let mut key = [0u8; 32];
        let public = self.signer.public();
        // An Ed25519 public key is 32 bytes; a shorter one would leave zeros, never panic.
        let n = public.len().min(32);
        key[..n].copy_from_slice(&public[..n]);
        hearth_protocol::AccountKey(key)
    }

    /// An engine whose storage is loaded from `Table::Mls`.
    pub fn load(
        signer: SignatureKeyPair,
        handle: &str,
        store: &EncryptedStore,
    ) -> Result<Self, ClientError> {
        let mut engine = Engine::new(signer, handle);
        let rows = store.scan(Table::Mls, b"").map_err(store_err)?;
        let map: HashMap<Vec<u8>, Vec<u8>> =
            rows.into_iter().map(|(k, v)| (k, v.to_vec())).collect();
        *engine
            .provider
            .storage
            .values
            .write()
            .unwrap_or_else(|p| p.into_inner()) = map.clone();
        engine.persisted = map;
        Ok(engine)
    }

    /// Writes the storage changes since the last persist, plus whatever `extra` adds, in
    /// one batch.
    pub fn persist(
        &mut self,
        store: &EncryptedStore,
        extra: impl FnOnce(&mut WriteBatch<'_>) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let mut batch = store.begin().map_err(store_err)?;
        let staged = self.stage(&mut batch)?;
        extra(&mut batch)?;
        batch.commit().map_err(store_err)?;
        self.staged_committed(staged);
        Ok(())
    }

    /// Adds the storage changes since the last persist to `batch`. Once the batch has
    /// committed, hand the result to [`Engine::staged_committed`]; if it does not commit,
    /// drop the result (the changes are then staged again by the next persist).
    pub fn stage(&self, batch: &mut WriteBatch<'_>) -> Result<Staged, ClientError> {
        let now = self.provider.snapshot();
        for (key, value) in &now {
            if self.persisted.get(key) != Some(value) {
                batch.put(Table::Mls, key, value).map_err(store_err)?;
            }
        }
        for key in self.persisted.keys() {
            if !now.contains_key(key) {
                batch.delete(Table::Mls, key).map_err(store_err)?;
            }
        }
        Ok(Staged(now))
    }

    /// The batch a [`Engine::stage`] wrote into has committed: its state is what is
    /// persisted now.
    pub fn staged_committed(&mut self, staged: Staged) {
        self.persisted = staged.0;
    }

    /// The storage as it is now, to [`Engine::restore`] if the operation that starts
    /// here is abandoned. Take it under the engine lock, at the start of the operation.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.provider.snapshot())
    }

    /// Puts the storage back as it was at `checkpoint`: the operation since then is
    /// undone, and nothing else (other operations may hold changes they have not
    /// persisted yet, such as a room being created while its relay request runs). Groups
    /// held in memory must be loaded again ([`Engine::reload`]).
    pub fn restore(&mut self, checkpoint: Checkpoint) {
        *self
            .provider
            .storage
            .values
            .write()
            .unwrap_or_else(|p| p.into_inner()) = checkpoint.0;
    }

    /// Loads a group again from storage (after [`Engine::restore`]).
    pub fn reload(&self, group: &MlsGroup) -> Result<MlsGroup, ClientError> {
        MlsGroup::load(self.provider.storage(), group.group_id())
            .map_err(crate::error::mls)?
            .ok_or_else(|| ClientError::Mls("the room's group state is gone".into()))
    }

    /// Makes `count` one-use KeyPackages and, if `last_resort`, one last-resort
    /// KeyPackage; returns their TLS-codec bytes. Their private halves go into storage
    /// (persist afterwards).
    pub fn key_packages(
        &self,
        count: usize,
        last_resort: bool,
    ) -> Result<KeyPackages, ClientError> {
        let lifetime = key_package_lifetime(std::time::SystemTime::now());
        let make = |resort: bool| -> Result<Vec<u8>, ClientError> {
            let mut builder = KeyPackage::builder()
                .leaf_node_capabilities(config::capabilities())
                .key_package_lifetime(lifetime);
            if resort {
                builder = builder.mark_as_last_resort();
            }
            let bundle = builder
                .build(
                    CIPHERSUITE,
                    &self.provider,
                    &self.signer,
                    self.credential.clone(),
                )
                .map_err(crate::error::mls)?;
            bundle
                .key_package()
                .tls_serialize_detached()
                .map_err(crate::error::mls)
        };
        let packages = (0..count)
            .map(|_| make(false))
            .collect::<Result<Vec<_>, _>>()?;
        let resort = if last_resort { Some(make(true)?) } else { None };
        Ok((packages, resort))
    }

    /// The room access capability of the group's current epoch.
    pub fn cap(&self, group: &MlsGroup) -> Result<hearth_protocol::Cap, ClientError> {
        let bytes = group
            .export_secret(
                self.provider.crypto(),
                EXPORT_LABEL,
                group.group_id().as_slice(),
                32,
            )
            .map_err(crate::error::mls)?;
        cap_from(bytes)
    }

    /// The capability of the epoch a staged commit moves to.
    pub fn next_cap(
        &self,
        staged: &StagedCommit,
        room: &[u8],
    ) -> Result<hearth_protocol::Cap, ClientError> {
        let bytes = staged
            .export_secret(self.provider.crypto(), EXPORT_LABEL, room, 32)
            .map_err(crate::error::mls)?;
        cap_from(bytes)
    }
}

fn cap_from(bytes: Vec<u8>) -> Result<hearth_protocol::Cap, ClientError> {
    let bytes = zeroize::Zeroizing::new(bytes);
    let array: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| ClientError::Mls("exported capability has the wrong length".into()))?;
    Ok(hearth_protocol::Cap(array))
}

/// How far a KeyPackage's validity reaches back before its creation: a member whose
/// clock is this much behind still accepts it (openmls checks lifetimes against the local
/// clock when a commit adds someone). Issue 11: a day either way changes nothing.
pub const KEY_PACKAGE_BACKDATE: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);

/// How long a KeyPackage stays valid after its creation (with [`KEY_PACKAGE_BACKDATE`],
/// openmls's maximum range of 84 days). The relay stops handing out expired packages and
/// the client tops its stock up, so someone who connects at least this often can always be
/// invited. A member's leaf keeps its package's lifetime only until its first commit with
/// a path, which hearth makes right after joining (`Inner::self_update`).
pub const KEY_PACKAGE_VALIDITY: std::time::Duration = std::time::Duration::from_secs(82 * 86_400);

/// The lifetime of KeyPackages made at `now`: from [`KEY_PACKAGE_BACKDATE`] before to
/// [`KEY_PACKAGE_VALIDITY`] after (well within openmls's maximum range of 84 days).
pub fn key_package_lifetime(now: std::time::SystemTime) -> Lifetime {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Lifetime::init(
        secs.saturating_sub(KEY_PACKAGE_BACKDATE.as_secs()),
        secs.saturating_add(KEY_PACKAGE_VALIDITY.as_secs()),
    )
}

/// The openmls storage at the start of an operation (see [`Engine::checkpoint`]); two
/// are equal when nothing was stored or deleted between them.
#[derive(PartialEq, Eq)]
pub struct Checkpoint(HashMap<Vec<u8>, Vec<u8>>);

/// The storage as [`Engine::stage`] wrote it into a batch (see
/// [`Engine::staged_committed`]).
pub struct Staged(HashMap<Vec<u8>, Vec<u8>>);

/// One-use KeyPackages and maybe a last-resort one, as TLS-codec bytes.
pub type KeyPackages = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// The handle named in a member's basic credential.
pub fn handle_of(credential: &Credential) -> Option<hearth_protocol::Handle> {
    let basic = BasicCredential::try_from(credential.clone()).ok()?;
    let text = std::str::from_utf8(basic.identity()).ok()?;
    hearth_protocol::Handle::new(text).ok()
}

/// Parses TLS-codec bytes of an MLS message.
pub fn parse_message(bytes: &[u8]) -> Result<MlsMessageIn, ClientError> {
    let mut slice = bytes;
    let message = MlsMessageIn::tls_deserialize(&mut slice).map_err(crate::error::mls)?;
    if !slice.is_empty() {
        return Err(ClientError::Mls("trailing bytes after MLS message".into()));
    }
    Ok(message)
}

#[cfg(test)]
mod lifetime_tests {
    use super::*;

    #[test]
    fn key_packages_are_valid_for_clocks_a_day_off_either_way() {
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
        let engine = Engine::new(signer, "alice");
        let (packages, resort) = engine.key_packages(1, true).unwrap();
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86_400);
        for bytes in packages.iter().chain(resort.iter()) {
            let package = KeyPackageIn::tls_deserialize_exact(bytes.as_slice())
                .unwrap()
                .validate(engine.provider.crypto(), ProtocolVersion::Mls10)
                .unwrap();
            let lifetime = package.life_time();
            for clock in [now - day, now, now + day] {
                assert!(lifetime.validate_with_time(clock).is_ok(), "{clock:?}");
            }
            assert!(lifetime.has_acceptable_range());
        }
    }
}
