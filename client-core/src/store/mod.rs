//! The encrypted local store: one redb file per profile.
//!
//! Layout of the file:
//! - `header` (plaintext): the format version and the wrapped store key: Argon2id salt and
//!   parameters, and the random 32-byte store key encrypted under the key derived from
//!   the passphrase. Nothing else is ever written in plaintext, and the [`Table`] API
//!   cannot reach this table.
//! - one redb table per [`Table`] (`meta`, `mls`, `rooms`, …): **keys are stored in
//!   plaintext** (they are ids and sequence numbers, and must sort for [`scan`]); values
//!   are `nonce (24 bytes) || XChaCha20-Poly1305 ciphertext` under the store key, with
//!   the table name and the key as associated data, so a value moved to another key or
//!   table fails to decrypt ([`StoreError::Corrupt`]) instead of being misread.
//!
//! Writes go through a [`WriteBatch`], which is one redb write transaction committed
//! with immediate durability: after `commit` returns, the batch survives a crash, and a
//! crash before leaves none of it.
//!
//! [`scan`]: EncryptedStore::scan

pub mod crypto;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use zeroize::Zeroizing;

use crypto::WrappedKey;
pub use crypto::{fast_kdf_requested, set_test_kdf_params, KdfParams};

use crate::secret::SecretKey;

/// The current store format version.
pub const FORMAT_VERSION: u32 = 1;

/// The plaintext table holding the format version and the wrapped store key.
const HEADER: TableDefinition<&str, &[u8]> = TableDefinition::new("header");
const HEADER_FORMAT: &str = "format";
const HEADER_KEY: &str = "store-key";

/// One (key, decrypted value) pair, as returned by [`EncryptedStore::scan`].
pub type Record = (Vec<u8>, Zeroizing<Vec<u8>>);

/// The tables of the store. Their names are part of the file format and of every
/// value's associated data: never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Profile metadata: handle, relay address, registration state.
    Meta,
    /// openmls storage provider state.
    Mls,
    /// Rooms and their local state.
    Rooms,
    /// Message history.
    History,
    /// Known contacts and their verified keys.
    Contacts,
    /// Pending invitations.
    Invitations,
    /// User settings (and the identity secret key).
    Settings,
    /// Attachments of messages in history (their keys): same key as the history row.
    Files,
    /// Uploads under way on this device (blob id and key), so that one interrupted by a
    /// restart goes on where the relay stopped. Local: never in a backup.
    Uploads,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 9] = [
        Table::Meta,
        Table::Mls,
        Table::Rooms,
        Table::History,
        Table::Contacts,
        Table::Invitations,
        Table::Settings,
        Table::Files,
        Table::Uploads,
    ];

    /// Whether a backup carries this table (uploads under way are this device's own).
    pub fn backed_up(self) -> bool {
        self != Table::Uploads
    }

    /// The table's stable name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Mls => "mls",
            Table::Rooms => "rooms",
            Table::History => "history",
            Table::Contacts => "contacts",
            Table::Invitations => "invitations",
            Table::Settings => "settings",
            Table::Files => "files",
            Table::Uploads => "uploads",
        }
    }

    /// This table's bit in the set of tables a [`WriteBatch`] has written.
    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }

    /// Associated data of a value: domain, table name and key, length-prefixed so that
    /// no two (table, key) pairs give the same bytes.
    fn aad(self, key: &[u8]) -> Vec<u8> {
        let name = self.name().as_bytes();
        let mut aad = Vec::with_capacity(24 + name.len() + key.len());
        aad.extend_from_slice(b"hearth store value\0");
        aad.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        aad.push(name.len() as u8);
        aad.extend_from_slice(name);
        aad.extend_from_slice(key);
        aad
    }
}

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The passphrase does not unlock the store.
    #[error("wrong passphrase: try again, or restore from a backup")]
    WrongPassphrase,
    /// There is no profile or store at this path.
    #[error("no hearth profile at {0}: create one first")]
    NotFound(PathBuf),
    /// A profile already exists where one was to be created.
    #[error("a hearth profile already exists at {0}: open it, or choose another directory")]
    AlreadyExists(PathBuf),
    /// The file is damaged or was tampered with.
    #[error("the profile store is damaged ({0}): restore from a backup")]
    Corrupt(String),
    /// The file was written by a newer hearth.
    #[error(
        "the profile store has format {0}, newer than this hearth understands: upgrade hearth"
    )]
    UnsupportedFormat(u32),
    /// Another process has the store open.
    #[error("another hearth process is using this profile: close it and try again")]
    Locked,
    /// Reading or writing files failed.
    #[error("i/o error on the profile store: {0}")]
    Io(#[from] std::io::Error),
    /// The database reported an error.
    #[error("profile database error: {0}")]
    Db(String),
}

/// Maps any redb error, keeping the cases callers act on.
fn db_error<E: Into<redb::Error>>(error: E) -> StoreError {
    match error.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked,
        redb::Error::Io(e) => StoreError::Io(e),
        redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
        other => StoreError::Db(other.to_string()),
    }
}

fn corrupt_value(table: Table, key: &[u8]) -> StoreError {
    StoreError::Corrupt(format!(
        "value {}/{} failed authentication",
        table.name(),
        hex::encode(key)
    ))
}

/// The encrypted store: a redb database plus the store key that decrypts its values.
///
/// Holding it holds redb's exclusive lock on the file. It is `Send + Sync`; reads run
/// concurrently, and write batches run one at a time (`begin` waits for the previous
/// batch to commit or drop, so do not call it while holding a batch on the same thread).
pub struct EncryptedStore {
    db: Database,
    key: SecretKey,
    /// Changed by a passphrase change, which may run while others read.
    kdf: std::sync::RwLock<KdfParams>,
    /// Commits still to fail on purpose (see [`EncryptedStore::fail_commits`]).
    failing: AtomicU32,
    /// The tables a commit must write to to count as one of those (a [`Table::bit`]
    /// mask; 0: any commit).
    failing_tables: AtomicU16,
}

impl std::fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("key", &"***")
            .field("kdf", &self.kdf_params())
            .finish_non_exhaustive()
    }
}

impl EncryptedStore {
    /// Creates a new store file at `path` (mode 0600, which must not exist), with a
    /// fresh store key wrapped under `passphrase` using `kdf`.
    pub fn create(path: &Path, passphrase: &str, kdf: KdfParams) -> Result<Self, StoreError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => StoreError::AlreadyExists(path.to_owned()),
            _ => StoreError::Io(e),
        })?;
        // `mode` is filtered by the umask; make sure of 0600 before any secret is written.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        let db = Database::builder().create_file(file).map_err(db_error)?;
        let key = SecretKey::random();
        let wrapped = WrappedKey::wrap(&key, passphrase, FORMAT_VERSION, kdf)?;
        let txn = db.begin_write().map_err(db_error)?;
        {
            let mut header = txn.open_table(HEADER).map_err(db_error)?;
            header
                .insert(HEADER_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())
                .map_err(db_error)?;
            let wrapped = postcard::to_allocvec(&wrapped)
                .map_err(|e| StoreError::Db(format!("encoding the wrapped key: {e}")))?;
            header
                .insert(HEADER_KEY, wrapped.as_slice())
                .map_err(db_error)?;
            for table in Table::ALL {
                txn.open_table(table.definition()).map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)?;
        Ok(EncryptedStore {
            db,
            key,
            kdf: std::sync::RwLock::new(kdf),
            failing: AtomicU32::new(0),
            failing_tables: AtomicU16::new(0),
        })
    }

    /// Opens the store at `path` with `passphrase`.
    ///
    /// A wrong passphrase gives [`StoreError::WrongPassphrase`] and writes nothing; a
    /// store open in another process gives [`StoreError::Locked`].
    pub fn open(path: &Path, passphrase: &str) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NotFound(path.to_owned()));
        }
        // Check the passphrase through a read-only handle first: opening redb for writing
        // updates the file even when nothing is written, and a wrong passphrase must
        // leave the file exactly as it was. A file that was not closed cleanly cannot be
        // opened read-only (it needs redb's repair); then the check happens after the
        // repair, which does not change any committed data.
        let checked = match Database::builder().open_read_only(path) {
            Ok(read_only) => {
                let (wrapped, raw) = read_header(&read_only)?;
                Some((wrapped.unwrap(passphrase)?, raw))
            }
            Err(redb::DatabaseError::RepairAborted) => None,
            Err(e) => return Err(db_error(e)),
        };
        let db = Database::builder().open(path).map_err(db_error)?;
        let (wrapped, raw) = read_header(&db)?;
        let key = match checked {
            // Unchanged between the two opens: the key already unwrapped is the right one.
            Some((key, checked_raw)) if checked_raw == raw => key,
            _ => wrapped.unwrap(passphrase)?,
        };
        Ok(EncryptedStore {
            db,
            key,
            kdf: std::sync::RwLock::new(wrapped.kdf),
            failing: AtomicU32::new(0),
            failing_tables: AtomicU16::new(0),
        })
    }

    /// Re-wraps the store key under `new_passphrase` (fresh salt, and the KDF parameters
    /// of a new store: production ones unless a test asked otherwise, so a profile made
    /// with test parameters is protected properly after a change), in one transaction.
    /// Values are not re-encrypted: the store key does not change.
    pub fn change_passphrase(&self, new_passphrase: &str) -> Result<(), StoreError> {
        let kdf = crypto::params_for_new();
        let wrapped = WrappedKey::wrap(&self.key, new_passphrase, FORMAT_VERSION, kdf)?;
        let encoded = postcard::to_allocvec(&wrapped)
            .map_err(|e| StoreError::Db(format!("encoding the wrapped key: {e}")))?;
        let txn = self.db.begin_write().map_err(db_error)?;
        txn.open_table(HEADER)
            .map_err(db_error)?
            .insert(HEADER_KEY, encoded.as_slice())
            .map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        *self.kdf.write().unwrap_or_else(|e| e.into_inner()) = kdf;
        Ok(())
    }

    /// The Argon2id parameters this store's key is wrapped with.
    pub fn kdf_params(&self) -> KdfParams {
        *self.kdf.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The decrypted value of `key` in `table`, if any.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let handle = match txn.open_table(table.definition()) {
            Ok(handle) => handle,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_error(e)),
        };
        match handle.get(key).map_err(db_error)? {
            None => Ok(None),
            Some(sealed) => self.decrypt(table, key, sealed.value()).map(Some),
        }
    }

    /// All (key, value) pairs of a table whose key starts with `prefix`, in key order.
    pub fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        self.scan_in(&txn, table, prefix)
    }

    /// Every backed-up table's decrypted contents ([`Table::backed_up`]), read from one
    /// consistent snapshot (for backups).
    pub(crate) fn dump(&self) -> Result<Vec<(Table, Vec<Record>)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        Table::ALL
            .iter()
            .filter(|t| t.backed_up())
            .map(|&table| Ok((table, self.scan_in(&txn, table, b"")?)))
            .collect()
    }

    fn scan_in(
        &self,
        txn: &redb::ReadTransaction,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<Record>, StoreError> {
        let handle = match txn.open_table(table.definition()) {
            Ok(handle) => handle,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_error(e)),
        };
        let mut out = Vec::new();
        for entry in handle.range::<&[u8]>(prefix..).map_err(db_error)? {
            let (key, sealed) = entry.map_err(db_error)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            let value = self.decrypt(table, key, sealed.value())?;
            out.push((key.to_vec(), value));
        }
        Ok(out)
    }

    /// Starts a write batch. It waits while another batch of this store is open.
    pub fn begin(&self) -> Result<WriteBatch<'_>, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        Ok(WriteBatch {
            store: self,
            txn,
            touched: 0,
        })
    }

    /// Makes the next `count` batch commits fail with an i/o error, writing nothing (as a
    /// disk that refuses a write would): for tests of what a failed commit leaves behind.
    #[doc(hidden)]
    pub fn fail_commits(&self, count: u32) {
        self.failing_tables.store(0, Ordering::SeqCst);
        self.failing.store(count, Ordering::SeqCst);
    }

    /// [`EncryptedStore::fail_commits`], counting only the commits that write to one of
    /// `tables` (the others go through).
    #[doc(hidden)]
    pub fn fail_commits_touching(&self, tables: &[Table], count: u32) {
        let mask = tables.iter().fold(0, |bits, table| bits | table.bit());
        self.failing_tables.store(mask, Ordering::SeqCst);
        self.failing.store(count, Ordering::SeqCst);
    }

    /// Whether this commit, which wrote to the tables of `touched`, is to fail on
    /// purpose (counts it).
    fn failing_commit(&self, touched: u16) -> bool {
        let tables = self.failing_tables.load(Ordering::SeqCst);
        if tables != 0 && touched & tables == 0 {
            return false;
        }
        self.failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn decrypt(
        &self,
        table: Table,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        crypto::open(&self.key, &table.aad(key), sealed).ok_or_else(|| corrupt_value(table, key))
    }
}

/// Reads and checks the plaintext header; returns the wrapped key and its raw bytes.
fn read_header(database: &impl ReadableDatabase) -> Result<(WrappedKey, Vec<u8>), StoreError> {
    let not_hearth = || StoreError::Corrupt("not a hearth profile store (no header)".into());
    let txn = database.begin_read().map_err(db_error)?;
    let header = match txn.open_table(HEADER) {
        Ok(header) => header,
        Err(TableError::TableDoesNotExist(_)) => return Err(not_hearth()),
        Err(e) => return Err(db_error(e)),
    };
    let format = header
        .get(HEADER_FORMAT)
        .map_err(db_error)?
        .ok_or_else(not_hearth)?;
    let format = <[u8; 4]>::try_from(format.value())
        .map(u32::from_le_bytes)
        .map_err(|_| StoreError::Corrupt("bad format version".into()))?;
    if format > FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat(format));
    }
    let wrapped = header
        .get(HEADER_KEY)
        .map_err(db_error)?
        .ok_or_else(not_hearth)?;
    let raw = wrapped.value().to_vec();
    let wrapped: WrappedKey = postcard::from_bytes(&raw)
        .map_err(|e| StoreError::Corrupt(format!("unreadable wrapped key: {e}")))?;
    if wrapped.format != format {
        return Err(StoreError::Corrupt("wrapped key format mismatch".into()));
    }
    wrapped.kdf.check()?;
    Ok((wrapped, raw))
}

/// All writes of one operation; nothing is visible or durable until `commit`, which is
/// one redb transaction (durable). Dropping a batch without committing discards it.
pub struct WriteBatch<'a> {
    store: &'a EncryptedStore,
    txn: redb::WriteTransaction,
    /// The tables written so far (a bit per [`Table`]).
    touched: u16,
}

impl std::fmt::Debug for WriteBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteBatch")
    }
}

impl WriteBatch<'_> {
    /// Sets `key` of `table` to `value` (encrypted).
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let sealed = crypto::seal(&self.store.key, &table.aad(key), value);
        self.touched |= table.bit();
        self.txn
            .open_table(table.definition())
            .map_err(db_error)?
            .insert(key, sealed.as_slice())
            .map_err(db_error)?;
        Ok(())
    }

    /// Removes `key` from `table`, if present.
    pub fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.touched |= table.bit();
        self.txn
            .open_table(table.definition())
            .map_err(db_error)?
            .remove(key)
            .map_err(db_error)?;
        Ok(())
    }

    /// Deletes every key of `table` starting with `prefix`.
    pub fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<(), StoreError> {
        self.touched |= table.bit();
        let mut handle = self.txn.open_table(table.definition()).map_err(db_error)?;
        let mut doomed = Vec::new();
        for entry in handle.range::<&[u8]>(prefix..).map_err(db_error)? {
            let (key, _) = entry.map_err(db_error)?;
            if !key.value().starts_with(prefix) {
                break;
            }
            doomed.push(key.value().to_vec());
        }
        for key in doomed {
            handle.remove(key.as_slice()).map_err(db_error)?;
        }
        Ok(())
    }

    /// The value of `key` as this batch would leave it (sees the batch's own writes).
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let handle = self.txn.open_table(table.definition()).map_err(db_error)?;
        let sealed = handle.get(key).map_err(db_error)?;
        match sealed {
            None => Ok(None),
            Some(sealed) => self.store.decrypt(table, key, sealed.value()).map(Some),
        }
    }

    /// Whether the batch has written to any table other than `tables` so far.
    pub fn touched_beyond(&self, tables: &[Table]) -> bool {
        let allowed = tables.iter().fold(0, |bits, table| bits | table.bit());
        self.touched & !allowed != 0
    }

    /// Makes every write of the batch visible and durable, atomically.
    pub fn commit(self) -> Result<(), StoreError> {
        if self.store.failing_commit(self.touched) {
            // Dropping the transaction aborts it: nothing of the batch is written.
            return Err(StoreError::Io(std::io::Error::other(
                "a commit failed on purpose (test)",
            )));
        }
        self.txn.commit().map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams::TEST_ONLY_FAST;

    fn new_store(dir: &Path) -> (PathBuf, EncryptedStore) {
        let path = dir.join("s.redb");
        let store = EncryptedStore::create(&path, "correct horse", FAST).unwrap();
        (path, store)
    }

    fn raw_get(path: &Path, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(table.definition()).unwrap();
        t.get(key).unwrap().map(|v| v.value().to_vec())
    }

    fn raw_put(path: &Path, table: Table, key: &[u8], value: &[u8]) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(table.definition())
            .unwrap()
            .insert(key, value)
            .unwrap();
        txn.commit().unwrap();
    }

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<EncryptedStore>();
    }

    #[test]
    fn table_names_are_stable_and_distinct() {
        let names: Vec<_> = Table::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "meta",
                "mls",
                "rooms",
                "history",
                "contacts",
                "invitations",
                "settings",
                "files",
                "uploads"
            ]
        );
    }

    #[test]
    fn round_trip_scan_delete() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = new_store(dir.path());
        let mut batch = store.begin().unwrap();
        batch.put(Table::Rooms, b"a/1", b"one").unwrap();
        batch.put(Table::Rooms, b"a/2", b"two").unwrap();
        batch.put(Table::Rooms, b"b/1", b"other").unwrap();
        batch.put(Table::History, b"a/1", b"not a room").unwrap();
        assert_eq!(
            &batch.get(Table::Rooms, b"a/2").unwrap().unwrap()[..],
            b"two"
        );
        batch.commit().unwrap();

        assert_eq!(
            &store.get(Table::Rooms, b"a/1").unwrap().unwrap()[..],
            b"one"
        );
        assert!(store.get(Table::Rooms, b"a/3").unwrap().is_none());
        let scanned: Vec<_> = store
            .scan(Table::Rooms, b"a/")
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.to_vec()))
            .collect();
        assert_eq!(
            scanned,
            vec![
                (b"a/1".to_vec(), b"one".to_vec()),
                (b"a/2".to_vec(), b"two".to_vec())
            ]
        );
        assert_eq!(store.scan(Table::Rooms, b"").unwrap().len(), 3);

        let mut batch = store.begin().unwrap();
        batch.delete_prefix(Table::Rooms, b"a/").unwrap();
        batch.delete(Table::History, b"a/1").unwrap();
        batch.commit().unwrap();
        assert_eq!(store.scan(Table::Rooms, b"").unwrap().len(), 1);
        assert!(store.get(Table::History, b"a/1").unwrap().is_none());

        // Survives reopening; the value on disk is not the plaintext.
        drop(store);
        let raw = raw_get(&path, Table::Rooms, b"b/1").unwrap();
        assert_eq!(raw.len(), 24 + 5 + 16);
        assert!(!raw.windows(5).any(|w| w == b"other"));
        let store = EncryptedStore::open(&path, "correct horse").unwrap();
        assert_eq!(
            &store.get(Table::Rooms, b"b/1").unwrap().unwrap()[..],
            b"other"
        );
    }

    #[test]
    fn dropped_batch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, store) = new_store(dir.path());
        {
            let mut batch = store.begin().unwrap();
            batch.put(Table::Mls, b"k1", b"v1").unwrap();
            batch.put(Table::Contacts, b"k2", b"v2").unwrap();
            // Not visible to readers before commit.
            assert!(store.get(Table::Mls, b"k1").unwrap().is_none());
        }
        assert!(store.get(Table::Mls, b"k1").unwrap().is_none());
        assert!(store.get(Table::Contacts, b"k2").unwrap().is_none());
        // And the store still takes new batches.
        let mut batch = store.begin().unwrap();
        batch.put(Table::Mls, b"k1", b"v1").unwrap();
        batch.commit().unwrap();
        assert!(store.get(Table::Mls, b"k1").unwrap().is_some());
    }

    #[test]
    fn a_batch_knows_the_tables_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, store) = new_store(dir.path());
        let mut batch = store.begin().unwrap();
        assert!(!batch.touched_beyond(&[]));
        batch.put(Table::History, b"a", b"1").unwrap();
        batch.delete(Table::Rooms, b"r").unwrap();
        assert!(!batch.touched_beyond(&[Table::History, Table::Rooms]));
        assert!(batch.touched_beyond(&[Table::History]));
        batch.delete_prefix(Table::Contacts, b"x").unwrap();
        assert!(batch.touched_beyond(&[Table::History, Table::Rooms]));
        // Reading is no writing.
        batch.get(Table::Settings, b"s").unwrap();
        assert!(!batch.touched_beyond(&[Table::History, Table::Rooms, Table::Contacts]));
    }

    #[test]
    fn a_commit_failed_on_purpose_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, store) = new_store(dir.path());
        store.fail_commits(1);
        let mut batch = store.begin().unwrap();
        batch.put(Table::History, b"a", b"1").unwrap();
        assert!(matches!(batch.commit(), Err(StoreError::Io(_))));
        assert!(store.get(Table::History, b"a").unwrap().is_none());
        // Only the one: the next commit goes through.
        let mut batch = store.begin().unwrap();
        batch.put(Table::History, b"a", b"2").unwrap();
        batch.commit().unwrap();
        assert_eq!(&store.get(Table::History, b"a").unwrap().unwrap()[..], b"2");
    }

    #[test]
    fn wrong_passphrase_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = new_store(dir.path());
        let mut batch = store.begin().unwrap();
        batch.put(Table::Settings, b"x", b"y").unwrap();
        batch.commit().unwrap();
        drop(store);
        let before = std::fs::read(&path).unwrap();
        let err = EncryptedStore::open(&path, "wrong").unwrap_err();
        assert!(matches!(err, StoreError::WrongPassphrase), "{err:?}");
        assert!(err.to_string().contains("wrong passphrase"));
        assert!(
            std::fs::read(&path).unwrap() == before,
            "file bytes changed"
        );
        let store = EncryptedStore::open(&path, "correct horse").unwrap();
        assert_eq!(
            &store.get(Table::Settings, b"x").unwrap().unwrap()[..],
            b"y"
        );
    }

    #[test]
    fn change_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = new_store(dir.path());
        let mut batch = store.begin().unwrap();
        batch.put(Table::Settings, b"x", b"y").unwrap();
        batch.commit().unwrap();
        store.change_passphrase("battery staple").unwrap();
        drop(store);
        assert!(matches!(
            EncryptedStore::open(&path, "correct horse"),
            Err(StoreError::WrongPassphrase)
        ));
        let store = EncryptedStore::open(&path, "battery staple").unwrap();
        // Re-wrapped with a new store's parameters: a store made with test ones is
        // protected properly after a change.
        assert_eq!(store.kdf_params(), crypto::params_for_new());
        if !crypto::fast_kdf_requested() {
            assert!(!store.kdf_params().is_below_production());
        }
        assert_eq!(
            &store.get(Table::Settings, b"x").unwrap().unwrap()[..],
            b"y"
        );
    }

    #[test]
    fn values_are_bound_to_their_key_and_table() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = new_store(dir.path());
        let mut batch = store.begin().unwrap();
        batch.put(Table::Contacts, b"alice", b"key-a").unwrap();
        batch.commit().unwrap();
        drop(store);
        let sealed = raw_get(&path, Table::Contacts, b"alice").unwrap();
        raw_put(&path, Table::Contacts, b"mallory", &sealed);
        raw_put(&path, Table::Rooms, b"alice", &sealed);
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        raw_put(&path, Table::Contacts, b"flipped", &flipped);
        raw_put(&path, Table::Contacts, b"short", &sealed[..20]);

        let store = EncryptedStore::open(&path, "correct horse").unwrap();
        assert_eq!(
            &store.get(Table::Contacts, b"alice").unwrap().unwrap()[..],
            b"key-a"
        );
        for (table, key) in [
            (Table::Contacts, &b"mallory"[..]),
            (Table::Rooms, b"alice"),
            (Table::Contacts, b"flipped"),
            (Table::Contacts, b"short"),
        ] {
            let err = store.get(table, key).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        }
        assert!(matches!(
            store.scan(Table::Contacts, b""),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = new_store(dir.path());
        let err = EncryptedStore::open(&path, "correct horse").unwrap_err();
        assert!(matches!(err, StoreError::Locked), "{err:?}");
        assert!(err.to_string().contains("another hearth process"));
        drop(store);
        EncryptedStore::open(&path, "correct horse").unwrap();
    }

    #[test]
    fn create_refuses_existing_and_open_refuses_missing_or_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = new_store(dir.path());
        drop(store);
        assert!(matches!(
            EncryptedStore::create(&path, "x", FAST),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            EncryptedStore::open(&dir.path().join("nope"), "x"),
            Err(StoreError::NotFound(_))
        ));
        let foreign = dir.path().join("foreign.redb");
        Database::create(&foreign).unwrap();
        assert!(matches!(
            EncryptedStore::open(&foreign, "x"),
            Err(StoreError::Corrupt(_))
        ));
        let garbage = dir.path().join("garbage.redb");
        std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
        assert!(EncryptedStore::open(&garbage, "x").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn file_mode_is_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, _store) = new_store(dir.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn debug_hides_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, store) = new_store(dir.path());
        let text = format!("{store:?}");
        assert!(text.contains("***"), "{text}");
        assert!(!text.contains(&hex::encode(store.key.bytes())));
    }
}
