//! A profile: one identity and its encrypted store, in a directory.
//!
//! The directory (mode 0700) holds `profile.redb` (mode 0600). Unlocking the store with
//! the passphrase is the "login": the identity secret key, the handle and the relay
//! address are all inside it, encrypted.
//!
//! What the profile keeps in the store:
//! - [`Table::Settings`] `identity`: the Ed25519 secret key (32 bytes);
//!   `identity.next`: the key a rotation moves to, until the relay has re-bound the
//!   account to it; `identity.previous`: the key a rotation gave up, until every room
//!   holds the new one (see [`crate::client`]'s `rotation`).
//! - [`Table::Meta`] `handle`, `relay`: the chosen handle and the relay address (UTF-8);
//!   `registered`: present once registration with the relay succeeded.

use std::fs;
use std::path::{Path, PathBuf};

use hearth_protocol::{AccountKey, Handle, RelayAddress};

use crate::fingerprint::{fingerprint, Fingerprint};
use crate::identity::Identity;
use crate::store::{crypto, EncryptedStore, StoreError, Table, WriteBatch};

/// File name of the store inside a profile directory.
pub const STORE_FILE: &str = "profile.redb";
/// Temporary name while a profile is being created; renamed once complete.
const STORE_FILE_NEW: &str = "profile.redb.new";

const KEY_IDENTITY: &[u8] = b"identity";
const KEY_HANDLE: &[u8] = b"handle";
const KEY_RELAY: &[u8] = b"relay";
const KEY_REGISTERED: &[u8] = b"registered";
const KEY_IDENTITY_NEXT: &[u8] = b"identity.next";
const KEY_IDENTITY_PREVIOUS: &[u8] = b"identity.previous";

/// A profile = one identity + its store, in a directory. `Send + Sync`.
#[derive(Debug)]
pub struct Profile {
    dir: PathBuf,
    store: EncryptedStore,
    /// Changes only by a key rotation ([`Profile::finish_rotation`]).
    identity: std::sync::RwLock<Identity>,
    handle: Handle,
    relay: RelayAddress,
}

impl Profile {
    /// Default profile dir: `$HEARTH_PROFILE` if set, else `<data dir>/hearth/default`
    /// (`~/.local/share/hearth/default` on Linux).
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("HEARTH_PROFILE").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let data = dirs::data_dir()
            .or_else(|| dirs::home_dir().map(|home| home.join(".local").join("share")))
            .unwrap_or_else(|| PathBuf::from("."));
        data.join("hearth").join("default")
    }

    /// Whether `dir` holds a (completely created) profile.
    pub fn exists(dir: &Path) -> bool {
        dir.join(STORE_FILE).is_file()
    }

    /// Creates dir (0700) and store (0600), generates the identity, stores handle + relay
    /// address. Fails with [`StoreError::AlreadyExists`] if a profile exists there.
    ///
    /// The store key is wrapped with [`KdfParams::PRODUCTION`](crate::store::KdfParams),
    /// or with cheap test parameters when `HEARTH_TEST_FAST_KDF=1` is set. The store is
    /// written under a temporary name and renamed when complete, so an interrupted
    /// creation never leaves a half-made profile behind.
    pub fn create(
        dir: &Path,
        passphrase: &str,
        handle: Handle,
        relay: RelayAddress,
    ) -> Result<Profile, StoreError> {
        let identity = Identity::generate();
        Profile::create_with(dir, passphrase, |batch| {
            batch.put(Table::Settings, KEY_IDENTITY, &identity.secret_bytes()[..])?;
            batch.put(Table::Meta, KEY_HANDLE, handle.as_str().as_bytes())?;
            batch.put(Table::Meta, KEY_RELAY, relay.to_string().as_bytes())
        })
    }

    /// Creates a profile whose store is filled by `fill` (one batch), e.g. from a backup.
    ///
    /// The store is written under a temporary name, checked to hold a complete profile,
    /// and only then renamed into place, so an interrupted or failed creation never
    /// leaves a half-made profile behind.
    pub(crate) fn create_with(
        dir: &Path,
        passphrase: &str,
        fill: impl FnOnce(&mut WriteBatch<'_>) -> Result<(), StoreError>,
    ) -> Result<Profile, StoreError> {
        if Profile::exists(dir) {
            return Err(StoreError::AlreadyExists(dir.to_owned()));
        }
        create_private_dir(dir)?;
        let path = dir.join(STORE_FILE);
        let temp = dir.join(STORE_FILE_NEW);
        // Left over from an interrupted creation: it never held a usable profile.
        match fs::remove_file(&temp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let store = EncryptedStore::create(&temp, passphrase, crypto::params_for_new())?;
        let filled = (|| {
            let mut batch = store.begin()?;
            fill(&mut batch)?;
            batch.commit()?;
            Profile::load(dir, store)
        })();
        let profile = match filled {
            Ok(profile) => profile,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        };
        // The open database keeps its lock on the file across the rename.
        if Profile::exists(dir) {
            drop(profile);
            let _ = fs::remove_file(&temp);
            return Err(StoreError::AlreadyExists(dir.to_owned()));
        }
        fs::rename(&temp, &path)?;
        sync_dir(dir)?;
        Ok(profile)
    }

    /// Opens the profile in `dir` with `passphrase`.
    ///
    /// Wrong passphrase: [`StoreError::WrongPassphrase`], nothing written. Profile in use
    /// by another process: [`StoreError::Locked`].
    pub fn open(dir: &Path, passphrase: &str) -> Result<Profile, StoreError> {
        if !Profile::exists(dir) {
            return Err(StoreError::NotFound(dir.to_owned()));
        }
        let store = EncryptedStore::open(&dir.join(STORE_FILE), passphrase)?;
        Profile::load(dir, store)
    }

    /// Reads the identity, handle and relay address from an unlocked store.
    fn load(dir: &Path, store: EncryptedStore) -> Result<Profile, StoreError> {
        let missing = |what: &str| StoreError::Corrupt(format!("the profile has no {what}"));
        let secret = store
            .get(Table::Settings, KEY_IDENTITY)?
            .ok_or_else(|| missing("identity"))?;
        let secret: &[u8; 32] = secret[..]
            .try_into()
            .map_err(|_| StoreError::Corrupt("identity key has the wrong length".into()))?;
        let identity = std::sync::RwLock::new(Identity::from_secret_bytes(secret));
        let handle = store
            .get(Table::Meta, KEY_HANDLE)?
            .ok_or_else(|| missing("handle"))?;
        let handle = std::str::from_utf8(&handle)
            .ok()
            .and_then(|text| Handle::new(text).ok())
            .ok_or_else(|| StoreError::Corrupt("invalid stored handle".into()))?;
        let relay = store
            .get(Table::Meta, KEY_RELAY)?
            .ok_or_else(|| missing("relay address"))?;
        let relay = std::str::from_utf8(&relay)
            .ok()
            .and_then(|text| text.parse::<RelayAddress>().ok())
            .ok_or_else(|| StoreError::Corrupt("invalid stored relay address".into()))?;
        Ok(Profile {
            dir: dir.to_owned(),
            store,
            identity,
            handle,
            relay,
        })
    }

    /// Re-wraps the store key under `new_passphrase` (one transaction); the old
    /// passphrase stops working. Values are not re-encrypted.
    pub fn change_passphrase(&self, new_passphrase: &str) -> Result<(), StoreError> {
        self.store.change_passphrase(new_passphrase)
    }

    /// The Argon2id parameters the passphrase protects this profile with; see
    /// [`KdfParams::is_below_production`](crate::store::KdfParams::is_below_production).
    pub fn kdf_params(&self) -> crate::store::KdfParams {
        self.store.kdf_params()
    }

    /// This device's identity (after a key rotation, the new one).
    pub fn identity(&self) -> Identity {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The key a rotation under way moves to, if one was started and the relay has not
    /// confirmed it yet.
    pub(crate) fn pending_identity(&self) -> Result<Option<Identity>, StoreError> {
        self.stored_identity(KEY_IDENTITY_NEXT)
    }

    /// The key the last rotation gave up, while some room still holds it.
    pub(crate) fn previous_identity(&self) -> Result<Option<Identity>, StoreError> {
        self.stored_identity(KEY_IDENTITY_PREVIOUS)
    }

    fn stored_identity(&self, key: &[u8]) -> Result<Option<Identity>, StoreError> {
        let Some(secret) = self.store.get(Table::Settings, key)? else {
            return Ok(None);
        };
        let secret: &[u8; 32] = secret[..]
            .try_into()
            .map_err(|_| StoreError::Corrupt("identity key has the wrong length".into()))?;
        Ok(Some(Identity::from_secret_bytes(secret)))
    }

    /// The key to rotate to: the pending one of an interrupted rotation, else a fresh one,
    /// stored as pending before it is used anywhere (so a crash at any later point finds
    /// it again).
    pub(crate) fn begin_rotation(&self) -> Result<Identity, StoreError> {
        if let Some(pending) = self.pending_identity()? {
            return Ok(pending);
        }
        let next = Identity::generate();
        let mut batch = self.store.begin()?;
        batch.put(Table::Settings, KEY_IDENTITY_NEXT, &next.secret_bytes()[..])?;
        batch.commit()?;
        Ok(next)
    }

    /// The relay re-bound the account: the pending key becomes the identity and the old
    /// one is kept as previous (rooms still holding it sign with it until they move), in
    /// one batch.
    pub(crate) fn finish_rotation(&self) -> Result<(), StoreError> {
        let Some(next) = self.pending_identity()? else {
            return Ok(());
        };
        let current = self.identity();
        let mut batch = self.store.begin()?;
        batch.put(Table::Settings, KEY_IDENTITY, &next.secret_bytes()[..])?;
        batch.put(
            Table::Settings,
            KEY_IDENTITY_PREVIOUS,
            &current.secret_bytes()[..],
        )?;
        batch.delete(Table::Settings, KEY_IDENTITY_NEXT)?;
        batch.commit()?;
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Forgets the previous key once no room holds it any more.
    pub(crate) fn forget_previous_identity(&self) -> Result<(), StoreError> {
        let mut batch = self.store.begin()?;
        batch.delete(Table::Settings, KEY_IDENTITY_PREVIOUS)?;
        batch.commit()
    }

    /// The handle chosen at creation.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The relay this profile uses.
    pub fn relay(&self) -> &RelayAddress {
        &self.relay
    }

    /// Moves the profile to a new address of the same relay (it moved to another host or
    /// port): the pinned key stays, so only the relay that signed this profile up is ever
    /// accepted there. Takes effect at the next connection.
    pub fn move_relay(&mut self, host: String, port: u16) -> Result<&RelayAddress, StoreError> {
        let moved = RelayAddress {
            host,
            port,
            pin: self.relay.pin,
        };
        // What `load` reads back: a host it would refuse is not stored (callers check the
        // host first; this keeps the profile loadable whatever they pass).
        if moved.to_string().parse::<RelayAddress>().as_ref() != Ok(&moved) {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a valid relay address", moved.host_port()),
            )));
        }
        let mut batch = self.store.begin()?;
        batch.put(Table::Meta, KEY_RELAY, moved.to_string().as_bytes())?;
        batch.commit()?;
        self.relay = moved;
        Ok(&self.relay)
    }

    /// The account key (public key of the identity).
    pub fn account(&self) -> AccountKey {
        self.identity().account()
    }

    /// The fingerprint of this account, for others to verify.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.account())
    }

    /// The encrypted store.
    pub fn store(&self) -> &EncryptedStore {
        &self.store
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether registration with the relay completed (set by the client after Register
    /// succeeds).
    pub fn is_registered(&self) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get(Table::Meta, KEY_REGISTERED)?
            .is_some_and(|v| v[..] == [1]))
    }

    /// Records that registration with the relay completed.
    pub fn set_registered(&self) -> Result<(), StoreError> {
        let mut batch = self.store.begin()?;
        batch.put(Table::Meta, KEY_REGISTERED, &[1])?;
        batch.commit()
    }
}

/// Creates `dir` (and missing parents) and makes `dir` itself mode 0700.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{crypto::set_test_kdf_params, KdfParams};

    #[test]
    fn a_moved_relay_keeps_its_pin_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let mut profile = new_profile(&path);
        let moved = profile
            .move_relay("home.example.org".into(), 17443)
            .unwrap()
            .clone();
        assert_eq!(moved.pin, relay().pin);
        assert!(profile.move_relay("bad host".into(), 1).is_err());
        assert_eq!(profile.relay(), &moved, "a refused host changes nothing");
        drop(profile);
        let again = Profile::open(&path, "pass phrase").unwrap();
        assert_eq!(again.relay().host_port(), "home.example.org:17443");
        assert_eq!(again.relay().pin, relay().pin);
    }

    fn relay() -> RelayAddress {
        "hearth://relay.example:7443/#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .parse()
            .unwrap()
    }

    fn new_profile(dir: &Path) -> Profile {
        set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
        Profile::create(dir, "pass phrase", Handle::new("ada").unwrap(), relay()).unwrap()
    }

    #[test]
    fn profile_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Profile>();
    }

    #[test]
    fn create_then_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("profile");
        assert!(!Profile::exists(&dir));
        let profile = new_profile(&dir);
        assert!(Profile::exists(&dir));
        assert!(!dir.join(STORE_FILE_NEW).exists());
        let account = profile.account();
        assert_eq!(profile.fingerprint(), fingerprint(&account));
        assert!(!profile.is_registered().unwrap());
        profile.set_registered().unwrap();
        assert!(profile.is_registered().unwrap());
        drop(profile);

        let profile = Profile::open(&dir, "pass phrase").unwrap();
        assert_eq!(profile.account(), account);
        assert_eq!(profile.handle().as_str(), "ada");
        assert_eq!(profile.relay(), &relay());
        assert_eq!(profile.dir(), dir);
        assert!(profile.is_registered().unwrap());
        assert_eq!(profile.store().kdf_params(), KdfParams::TEST_ONLY_FAST);
        let text = format!("{profile:?}");
        assert!(text.contains("***"));
        assert!(!text.contains(&hex::encode(*profile.identity().secret_bytes())));
    }

    #[test]
    fn create_refuses_existing_profile() {
        let tmp = tempfile::tempdir().unwrap();
        let profile = new_profile(tmp.path());
        let err =
            Profile::create(tmp.path(), "x", Handle::new("bob").unwrap(), relay()).unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
        drop(profile);
    }

    #[test]
    fn open_errors() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            Profile::open(tmp.path(), "x"),
            Err(StoreError::NotFound(_))
        ));
        let profile = new_profile(tmp.path());
        assert!(matches!(
            Profile::open(tmp.path(), "pass phrase"),
            Err(StoreError::Locked)
        ));
        drop(profile);
        assert!(matches!(
            Profile::open(tmp.path(), "pass phrasE"),
            Err(StoreError::WrongPassphrase)
        ));
    }

    #[test]
    fn change_passphrase_then_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let profile = new_profile(tmp.path());
        let account = profile.account();
        profile.change_passphrase("new one").unwrap();
        drop(profile);
        assert!(matches!(
            Profile::open(tmp.path(), "pass phrase"),
            Err(StoreError::WrongPassphrase)
        ));
        assert_eq!(
            Profile::open(tmp.path(), "new one").unwrap().account(),
            account
        );
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let _profile = new_profile(&dir);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(STORE_FILE)), 0o600);
    }

    #[test]
    fn default_dir_honours_env() {
        // Only reads the variable if set by the environment; do not mutate the process
        // environment from a multi-threaded test runner.
        let dir = Profile::default_dir();
        match std::env::var_os("HEARTH_PROFILE").filter(|d| !d.is_empty()) {
            Some(d) => assert_eq!(dir, PathBuf::from(d)),
            None => assert!(dir.ends_with("hearth/default")),
        }
    }
}
