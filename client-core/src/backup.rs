//! Encrypted backups of a whole profile, to move it to a new device or recover it.
//!
//! A backup file is
//! `MAGIC (8) || postcard(Envelope) || SHA-256 of everything before it (32)`, where the
//! envelope holds the Argon2id parameters and salt and
//! `nonce || XChaCha20-Poly1305(key = Argon2id(passphrase, salt), postcard(Contents))`,
//! with the magic, format version, parameters and salt as associated data. `Contents` is
//! every table's decrypted (key, value) pairs, versioned. The trailing checksum (not a
//! secret) tells a damaged file apart from a wrong passphrase.
//!
//! Restoring a backup restores the identity and all state as of the export: contacts
//! and their verification, history, and MLS state. Messages and key changes after the
//! export are not in it. The old machine may have sent messages after the export, at
//! ratchet positions the restored state still counts as unused; so every restored room is
//! marked, and the first connection catches it up and commits a self-update (a fresh
//! epoch) before anything is sent to it (see `client::restore`). The old machine's copy
//! must not be used any more: it would send at positions the new one uses too.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::profile::Profile;
use crate::store::crypto::{self, KdfParams, SALT_LEN};
use crate::store::{StoreError, Table};

const MAGIC: &[u8; 8] = b"HRTHBAK\0";
/// The newest backup format version this hearth reads. A backup without downloaded files
/// is written as version 1 (which every hearth reads), one with them as version 2.
pub const BACKUP_VERSION: u32 = 2;
/// The format of a backup without downloaded files.
const VERSION_WITHOUT_FILES: u32 = 1;
/// The pseudo-table of a version 2 backup holding the profile's downloaded files (file
/// name, bytes).
const SAVED_FILES: &str = "saved_files";
/// Where a profile keeps the files it downloaded for itself (`hearth open`, previews).
pub const FILES_DIR: &str = "files";
const CHECKSUM_LEN: usize = 32;

/// Why a backup could not be written or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The passphrase does not decrypt the backup.
    #[error("wrong backup passphrase: use the passphrase you gave when making the backup")]
    WrongPassphrase,
    /// The file is not a hearth backup, or it was damaged.
    #[error("not a hearth backup, or the file is damaged ({0}): try another copy")]
    Damaged(String),
    /// The backup was made by a newer hearth.
    #[error("backup format {0} is newer than this hearth understands: upgrade hearth")]
    UnsupportedVersion(u32),
    /// The backup file already exists.
    #[error("{0} already exists: choose another file name")]
    AlreadyExists(std::path::PathBuf),
    /// Reading or writing the backup file failed.
    #[error("i/o error on the backup file: {0}")]
    Io(#[from] std::io::Error),
    /// Reading the profile or creating the restored one failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u32,
    kdf: KdfParams,
    salt: [u8; SALT_LEN],
    #[serde(with = "serde_bytes")]
    sealed: Vec<u8>,
}

/// The plaintext of a backup; zeroized on drop.
#[derive(Serialize, Deserialize, Default)]
struct Contents {
    version: u32,
    tables: Vec<TableDump>,
}

#[derive(Serialize, Deserialize, Default)]
struct TableDump {
    name: String,
    entries: Entries,
}

impl Drop for Contents {
    fn drop(&mut self) {
        for table in &mut self.tables {
            for (key, value) in &mut table.entries {
                key.zeroize();
                value.zeroize();
            }
        }
    }
}

fn aad(version: u32, kdf: KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut aad = MAGIC.to_vec();
    aad.extend_from_slice(&version.to_le_bytes());
    aad.extend_from_slice(&kdf.m_kib.to_le_bytes());
    aad.extend_from_slice(&kdf.t_cost.to_le_bytes());
    aad.extend_from_slice(&kdf.p_cost.to_le_bytes());
    aad.extend_from_slice(salt);
    aad
}

/// Writes an encrypted backup of every table of `profile` to `path` (mode 0600),
/// protected by `passphrase` (which may differ from the profile's), without the files
/// the profile downloaded (see [`export_backup_with`]).
///
/// The file is written under a temporary name and renamed when complete; an existing
/// `path` is refused.
pub fn export_backup(profile: &Profile, path: &Path, passphrase: &str) -> Result<(), BackupError> {
    export_backup_with(profile, path, passphrase, false).map(|_| ())
}

/// The files a profile downloaded for itself ([`FILES_DIR`]), and whether a backup
/// carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SavedFiles {
    /// Files in the profile's files directory.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Whether the backup holds them.
    pub included: bool,
}

/// The regular files in `profile`'s [`FILES_DIR`] (no hidden or unfinished ones).
fn saved_files(profile: &Profile) -> Result<Vec<(String, std::path::PathBuf)>, BackupError> {
    let dir = profile.dir().join(FILES_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with('.') && entry.file_type()?.is_file() {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// [`export_backup`], and with `files` the files the profile downloaded for itself
/// (its [`FILES_DIR`]: what `hearth open` saved) in the backup too. Files saved
/// elsewhere are the user's own and never in it. Returns what there was and whether it
/// went in.
pub fn export_backup_with(
    profile: &Profile,
    path: &Path,
    passphrase: &str,
    files: bool,
) -> Result<SavedFiles, BackupError> {
    if path.exists() {
        return Err(BackupError::AlreadyExists(path.to_owned()));
    }
    let saved = saved_files(profile)?;
    let mut summary = SavedFiles {
        count: saved.len() as u64,
        included: files && !saved.is_empty(),
        ..SavedFiles::default()
    };
    let mut tables: Vec<TableDump> = profile
        .store()
        .dump()?
        .into_iter()
        .map(|(table, records)| TableDump {
            name: table.name().to_owned(),
            entries: records
                .into_iter()
                // This device's unspent admission tokens: spent on two devices, one token
                // would tie two rooms to one person at the relay.
                .filter(|(k, _)| {
                    !(table == Table::Settings && k == crate::client::admission::STASH_KEY)
                })
                .map(|(k, v)| (k, v.to_vec()))
                .collect(),
        })
        .collect();
    let mut dump = TableDump {
        name: SAVED_FILES.to_owned(),
        entries: Vec::new(),
    };
    for (name, file) in saved {
        let bytes = fs::read(file)?;
        summary.bytes += bytes.len() as u64;
        if summary.included {
            dump.entries.push((name.into_bytes(), bytes));
        }
    }
    let version = if summary.included {
        tables.push(dump);
        BACKUP_VERSION
    } else {
        VERSION_WITHOUT_FILES
    };
    let contents = Contents { version, tables };
    let plaintext = Zeroizing::new(
        postcard::to_allocvec(&contents)
            .map_err(|e| BackupError::Damaged(format!("encoding the backup: {e}")))?,
    );
    let kdf = crypto::params_for_new();
    let salt = crypto::random_salt();
    let key = crypto::derive_kek(passphrase, &salt, kdf)?;
    let envelope = Envelope {
        version,
        kdf,
        salt,
        sealed: crypto::seal(&key, &aad(version, kdf, &salt), &plaintext),
    };
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(
        &postcard::to_allocvec(&envelope)
            .map_err(|e| BackupError::Damaged(format!("encoding the backup: {e}")))?,
    );
    let checksum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&checksum);

    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".tmp");
    let temp = std::path::PathBuf::from(temp_name);
    let written = (|| -> std::io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    Ok(summary)
}

/// Restores the backup at `path` into a new profile in `dir`, whose store passphrase is
/// the backup `passphrase` (change it afterwards with [`Profile::change_passphrase`]).
///
/// Every room is marked to commit a self-update before it sends again; the first
/// [`Client::connect`](crate::Client::connect) does it.
///
/// Wrong passphrase: [`BackupError::WrongPassphrase`]; damaged or foreign file:
/// [`BackupError::Damaged`]. Nothing is created in `dir` unless the restore succeeds.
pub fn import_backup(path: &Path, passphrase: &str, dir: &Path) -> Result<Profile, BackupError> {
    let bytes = fs::read(path)?;
    let contents = decrypt(&bytes, passphrase)?;
    let tables = tables_of(&contents)?;
    let profile = Profile::create_with(dir, passphrase, |batch| {
        for (table, entries) in &tables {
            for (key, value) in entries.iter() {
                batch.put(*table, key, value)?;
                if *table == Table::Rooms {
                    if let Ok(id) = <[u8; 16]>::try_from(key.as_slice()) {
                        crate::client::restore::mark_restored(batch, hearth_protocol::RoomId(id))?;
                    }
                }
            }
        }
        Ok(())
    })?;
    // Downloaded files (a version 2 backup), under names made safe again.
    let files = contents.tables.iter().filter(|t| t.name == SAVED_FILES);
    for (name, bytes) in files.flat_map(|t| t.entries.iter()) {
        let name = crate::attachment::safe_file_name(&String::from_utf8_lossy(name));
        let dir = dir.join(FILES_DIR);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)?;
    }
    Ok(profile)
}

/// A table's (key, value) pairs.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Each table of the backup with its entries; an unknown table name is damage.
fn tables_of(contents: &Contents) -> Result<Vec<(Table, &Entries)>, BackupError> {
    let mut tables = Vec::new();
    for dump in contents.tables.iter().filter(|t| t.name != SAVED_FILES) {
        let table = Table::ALL
            .into_iter()
            .find(|t| t.name() == dump.name)
            .ok_or_else(|| BackupError::Damaged(format!("unknown table {:?}", dump.name)))?;
        tables.push((table, &dump.entries));
    }
    Ok(tables)
}

/// Checks and decrypts a backup file's bytes.
fn decrypt(bytes: &[u8], passphrase: &str) -> Result<Contents, BackupError> {
    let envelope = read_envelope(bytes)?;
    let key = crypto::derive_kek(passphrase, &envelope.salt, envelope.kdf)?;
    let plaintext = crypto::open(
        &key,
        &aad(envelope.version, envelope.kdf, &envelope.salt),
        &envelope.sealed,
    )
    .ok_or(BackupError::WrongPassphrase)?;
    read_contents(&plaintext, envelope.version)
}

/// Checks a backup file's header and checksum and reads its envelope (everything
/// before the key derivation).
fn read_envelope(bytes: &[u8]) -> Result<Envelope, BackupError> {
    if bytes.len() < MAGIC.len() + CHECKSUM_LEN || !bytes.starts_with(MAGIC) {
        return Err(BackupError::Damaged("no hearth backup header".into()));
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if Sha256::digest(body)[..] != checksum[..] {
        return Err(BackupError::Damaged("checksum mismatch".into()));
    }
    let envelope: Envelope = postcard::from_bytes(&body[MAGIC.len()..])
        .map_err(|e| BackupError::Damaged(format!("unreadable envelope: {e}")))?;
    if envelope.version > BACKUP_VERSION {
        return Err(BackupError::UnsupportedVersion(envelope.version));
    }
    Ok(envelope)
}

/// Reads the decrypted contents of a backup whose envelope says `version`.
fn read_contents(plaintext: &[u8], version: u32) -> Result<Contents, BackupError> {
    let contents: Contents = postcard::from_bytes(plaintext)
        .map_err(|e| BackupError::Damaged(format!("unreadable contents: {e}")))?;
    if contents.version != version {
        return Err(BackupError::Damaged("version mismatch".into()));
    }
    Ok(contents)
}

/// Entry points for the fuzz targets in `fuzz/` (`backup_envelope`, `backup_contents`);
/// not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// What [`import_backup`] does with a file's bytes before the key derivation: header,
    /// checksum, envelope, format version, and the bounds on the KDF parameters (checked
    /// first thing by the derivation, which is not run).
    pub fn read_envelope(bytes: &[u8]) -> Result<(), BackupError> {
        let envelope = super::read_envelope(bytes)?;
        envelope.kdf.check()?;
        Ok(())
    }

    /// What [`import_backup`] does with the decrypted bytes before it creates the
    /// profile: the contents, their version against the envelope's, the table names.
    /// Returns the number of entries.
    pub fn read_contents(plaintext: &[u8], version: u32) -> Result<usize, BackupError> {
        let contents = super::read_contents(plaintext, version)?;
        Ok(tables_of(&contents)?
            .iter()
            .map(|(_, entries)| entries.len())
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_protocol::Handle;

    fn profile(dir: &Path) -> Profile {
        crypto::set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
        let relay = "hearth://relay.example:7443/#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .parse()
            .unwrap();
        let p = Profile::create(dir, "profile pass", Handle::new("ada").unwrap(), relay).unwrap();
        let mut batch = p.store().begin().unwrap();
        batch.put(Table::History, b"room/1", b"hello").unwrap();
        batch.put(Table::Mls, b"group", b"state").unwrap();
        batch.commit().unwrap();
        p.set_registered().unwrap();
        p
    }

    #[test]
    fn downloaded_files_go_in_only_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let original = profile(&tmp.path().join("a"));
        let files = original.dir().join(FILES_DIR);
        fs::create_dir_all(&files).unwrap();
        fs::write(files.join("beach.jpg"), b"jpeg bytes").unwrap();
        fs::write(files.join(".beach.jpg.1234.part"), b"half").unwrap();

        let without = tmp.path().join("without.hearth");
        let told = export_backup_with(&original, &without, "pass", false).unwrap();
        assert_eq!(
            told,
            SavedFiles {
                count: 1,
                bytes: 10,
                included: false
            }
        );
        let restored = tmp.path().join("b");
        import_backup(&without, "pass", &restored).unwrap();
        assert!(!restored.join(FILES_DIR).exists());

        let with = tmp.path().join("with.hearth");
        let told = export_backup_with(&original, &with, "pass", true).unwrap();
        assert!(told.included);
        let restored = tmp.path().join("c");
        import_backup(&with, "pass", &restored).unwrap();
        let back: Vec<_> = fs::read_dir(restored.join(FILES_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(back, [std::ffi::OsString::from("beach.jpg")]);
        assert_eq!(
            fs::read(restored.join(FILES_DIR).join("beach.jpg")).unwrap(),
            b"jpeg bytes"
        );
    }

    #[test]
    fn export_import_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let original = profile(&tmp.path().join("a"));
        let file = tmp.path().join("backup.hearth");
        // This device's unspent admission tokens stay on it.
        let mut batch = original.store().begin().unwrap();
        batch
            .put(
                Table::Settings,
                crate::client::admission::STASH_KEY,
                b"tokens",
            )
            .unwrap();
        batch.commit().unwrap();
        export_backup(&original, &file, "backup pass").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            export_backup(&original, &file, "x"),
            Err(BackupError::AlreadyExists(_))
        ));

        let restored = import_backup(&file, "backup pass", &tmp.path().join("b")).unwrap();
        assert_eq!(restored.account(), original.account());
        assert_eq!(restored.handle(), original.handle());
        assert_eq!(restored.relay(), original.relay());
        assert!(restored.is_registered().unwrap());
        let store = restored.store();
        assert_eq!(
            &store.get(Table::History, b"room/1").unwrap().unwrap()[..],
            b"hello"
        );
        assert_eq!(
            &store.get(Table::Mls, b"group").unwrap().unwrap()[..],
            b"state"
        );
        assert!(store
            .get(Table::Settings, crate::client::admission::STASH_KEY)
            .unwrap()
            .is_none());
        drop(restored);
        Profile::open(&tmp.path().join("b"), "backup pass").unwrap();
    }

    #[test]
    fn wrong_passphrase_and_damage_are_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let original = profile(&tmp.path().join("a"));
        let file = tmp.path().join("backup.hearth");
        export_backup(&original, &file, "backup pass").unwrap();
        let target = tmp.path().join("b");

        let err = import_backup(&file, "nope", &target).unwrap_err();
        assert!(matches!(err, BackupError::WrongPassphrase), "{err:?}");
        assert!(!Profile::exists(&target));

        let mut bytes = fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(&file, &bytes).unwrap();
        let err = import_backup(&file, "backup pass", &target).unwrap_err();
        assert!(matches!(err, BackupError::Damaged(_)), "{err:?}");

        fs::write(&file, b"just some text").unwrap();
        let err = import_backup(&file, "backup pass", &target).unwrap_err();
        assert!(matches!(err, BackupError::Damaged(_)), "{err:?}");
        assert!(!Profile::exists(&target));
    }

    #[test]
    fn restored_rooms_are_marked_for_a_self_update() {
        let tmp = tempfile::tempdir().unwrap();
        let original = profile(&tmp.path().join("a"));
        let mut batch = original.store().begin().unwrap();
        batch.put(Table::Rooms, &[7u8; 16], b"room record").unwrap();
        batch.commit().unwrap();
        let file = tmp.path().join("backup.hearth");
        export_backup(&original, &file, "backup pass").unwrap();
        let restored = import_backup(&file, "backup pass", &tmp.path().join("b")).unwrap();
        let marks = restored
            .store()
            .scan(Table::Settings, crate::client::restore::MARK_PREFIX)
            .unwrap();
        assert_eq!(marks.len(), 1);
        assert!(marks[0].0.ends_with(&[7u8; 16]));
        assert_eq!(&marks[0].1[..], [crate::client::restore::PENDING]);
        assert!(original
            .store()
            .scan(Table::Settings, crate::client::restore::MARK_PREFIX)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn import_refuses_an_existing_profile() {
        let tmp = tempfile::tempdir().unwrap();
        let original = profile(&tmp.path().join("a"));
        let file = tmp.path().join("backup.hearth");
        export_backup(&original, &file, "backup pass").unwrap();
        let err = import_backup(&file, "backup pass", &tmp.path().join("a")).unwrap_err();
        assert!(
            matches!(err, BackupError::Store(StoreError::AlreadyExists(_))),
            "{err:?}"
        );
    }
}
