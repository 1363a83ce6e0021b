//! Crashes modelled on the files: redb's file as its last sync left it, with any subset of
//! the later page writes, and the journal files as they were synced.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, TableDefinition};

use super::*;

const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

fn value(key: u64) -> Vec<u8> {
    vec![key as u8; 500 + (key as usize * 37) % 3000]
}

/// A small deterministic generator (xorshift64*), so a failing case can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn open_file(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

/// What reached the disk at the crash: the files' bytes.
struct Crash {
    /// redb's file as the last sync of it left it (empty if it was never synced).
    durable: Vec<u8>,
    /// redb's file as the process last wrote it.
    latest: Vec<u8>,
    journals: [Vec<u8>; 2],
}

fn read_all(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

impl Crash {
    /// Writes the files of a crash into `dir`: each 4 KiB page of redb's file is taken
    /// from the durable or the latest bytes at random, and its length is either's.
    fn write_to(&self, dir: &Path, rng: &mut Rng) -> PathBuf {
        let path = dir.join("s.redb");
        let len = if rng.next().is_multiple_of(2) {
            self.durable.len()
        } else {
            self.latest.len()
        };
        let mut bytes = vec![0u8; len];
        for (i, page) in bytes.chunks_mut(4096).enumerate() {
            let from = if rng.next().is_multiple_of(2) {
                &self.durable
            } else {
                &self.latest
            };
            let start = i * 4096;
            if let Some(src) = from.get(start..(start + page.len()).min(from.len())) {
                page[..src.len()].copy_from_slice(src);
            }
        }
        std::fs::write(&path, bytes).unwrap();
        for (index, journal) in self.journals.iter().enumerate() {
            std::fs::write(journal_path(&path, index), journal).unwrap();
        }
        path
    }

    /// Writes the files of a crash into a fresh directory (see [`Crash::write_to`]) and
    /// opens the store there: its keys, each checked against its value.
    fn keys_after_reopening(&self, rng: &mut Rng) -> Vec<u64> {
        let at = tempfile::tempdir().unwrap();
        keys_after_reopening(&self.write_to(at.path(), rng))
    }
}

/// How many values commit `commit` inserts: every 5th 40 (about 80 KiB), every 23rd 700
/// (about 1.2 MiB, past [`MAX_RECORD`]: it syncs the file itself), else 1.
fn values_of(commit: u64) -> u64 {
    if commit % 23 == 22 {
        700
    } else if commit % 5 == 4 {
        40
    } else {
        1
    }
}

/// Commits `commits` transactions of [`values_of`] to a store with journal files of
/// `capacity` bytes, and returns the files as a crash right after the last commit would
/// leave them.
fn run_then_crash(dir: &Path, capacity: u64, commits: u64) -> Crash {
    let path = dir.join("s.redb");
    let durable = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let durable = durable.clone();
        Box::new(move |file: &File| {
            // Read to the end as it is now (the commit thread may be changing it).
            let mut bytes = Vec::new();
            let mut chunk = vec![0u8; 1 << 16];
            loop {
                let n = file.read_at(&mut chunk, bytes.len() as u64).unwrap();
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&chunk[..n]);
            }
            *durable.lock().unwrap() = bytes;
            Ok(())
        })
    };
    let db = database_with(&path, capacity, hook);
    let mut key = 0;
    for commit in 0..commits {
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(T).unwrap();
            let values = values_of(commit);
            for _ in 0..values {
                table.insert(key, value(key).as_slice()).unwrap();
                key += 1;
            }
        }
        txn.commit().unwrap();
    }
    let crash = Crash {
        durable: durable.lock().unwrap().clone(),
        latest: read_all(&path),
        journals: [
            read_all(&journal_path(&path, 0)),
            read_all(&journal_path(&path, 1)),
        ],
    };
    drop(db);
    crash
}

/// A database on `backend` with the relay's cache size.
fn database(backend: JournaledFile) -> Database {
    Database::builder()
        .set_cache_size(crate::store::redb_store::CACHE_BYTES)
        .create_with_backend(backend)
        .unwrap()
}

/// A database at `path` with journal files of `capacity` bytes and `hook` before each
/// sync of its file.
fn database_with(path: &Path, capacity: u64, hook: FileSyncHook) -> Database {
    database(
        JournaledFile::open_with(path, open_file(path), Arc::default(), capacity, Some(hook))
            .unwrap(),
    )
}

/// Opens the store at `path` and returns its keys, each checked against its value.
fn keys_after_reopening(path: &Path) -> Vec<u64> {
    let backend = JournaledFile::open(path, open_file(path), Arc::default()).unwrap();
    let db = database(backend);
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(T).unwrap();
    let mut keys = Vec::new();
    for row in redb::ReadableTable::iter(&table).unwrap() {
        let (k, v) = row.unwrap();
        assert_eq!(v.value(), value(k.value()).as_slice(), "key {}", k.value());
        keys.push(k.value());
    }
    keys
}

/// The keys `0..n`.
fn first_keys(n: u64) -> Vec<u64> {
    (0..n).collect()
}

fn total_keys(commits: u64) -> u64 {
    (0..commits).map(values_of).sum()
}

#[test]
fn every_commit_survives_losing_any_writes_since_the_last_sync_of_the_file() {
    // Small journal files: the run moves between them, syncs the file from the
    // checkpointer, and syncs it inline for commits that do not fit.
    let dir = tempfile::tempdir().unwrap();
    // The last commits are small ones, with records since the file's last sync.
    let commits = 58;
    let crash = run_then_crash(dir.path(), 192 * 1024, commits);
    assert!(!crash.durable.is_empty(), "the file was synced");
    assert_ne!(crash.durable, crash.latest, "writes since the last sync");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..8 {
        assert_eq!(
            crash.keys_after_reopening(&mut rng),
            first_keys(total_keys(commits)),
            "round {round}"
        );
    }
}

#[test]
fn a_store_never_synced_is_rebuilt_from_the_journal_alone() {
    let dir = tempfile::tempdir().unwrap();
    let commits = 20;
    let crash = run_then_crash(dir.path(), JOURNAL_FILE_BYTES, commits);
    assert!(crash.durable.is_empty());
    let lost = Crash {
        latest: Vec::new(),
        ..crash
    };
    assert_eq!(
        lost.keys_after_reopening(&mut Rng(7)),
        first_keys(total_keys(commits))
    );
}

#[test]
fn a_torn_last_record_loses_only_its_own_commit() {
    let dir = tempfile::tempdir().unwrap();
    // The last commit is the 21st (one value): its record is the last in journal file 0.
    let commits = 21;
    let mut crash = run_then_crash(dir.path(), JOURNAL_FILE_BYTES, commits);
    let chain = chain_of_bytes(&crash.journals[0]);
    let last = *chain.last().unwrap();
    crash.journals[0][last as usize + 100] ^= 1;
    let mut rng = Rng(11);
    for _ in 0..4 {
        assert_eq!(
            crash.keys_after_reopening(&mut rng),
            first_keys(total_keys(commits) - 1)
        );
    }
}

/// Where each record of the chain at the start of `bytes` starts.
fn chain_of_bytes(bytes: &[u8]) -> Vec<u64> {
    let mut starts = Vec::new();
    let mut offset = 0usize;
    while let Some(h) = bytes
        .get(offset..offset + record::HEADER_LEN)
        .and_then(|b| record::Header::parse(b.try_into().unwrap()))
    {
        starts.push(offset as u64);
        offset += record::aligned_len(h.body_len);
    }
    starts
}

#[test]
fn a_second_opening_of_the_store_is_refused_before_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let _first = JournaledFile::open(&path, open_file(&path), Arc::default()).unwrap();
    let second = JournaledFile::open(&path, open_file(&path), Arc::default());
    assert!(matches!(
        second,
        Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen))
    ));
    for index in 0..2 {
        let mode = std::fs::metadata(journal_path(&path, index))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
}

#[test]
fn the_journal_files_are_the_ones_the_data_dir_allows() {
    let store = Path::new(crate::server::STORE_FILE);
    for (index, name) in crate::server::STORE_JOURNAL_FILES.iter().enumerate() {
        assert_eq!(journal_path(store, index), Path::new(name));
    }
}

/// The seq of the first record in `bytes`, if one starts there.
fn first_seq(bytes: &[u8]) -> Option<u64> {
    bytes
        .get(..record::HEADER_LEN)
        .and_then(|b| record::Header::parse(b.try_into().unwrap()))
        .map(|h| h.stamp.seq)
}

#[test]
fn a_commit_that_synced_the_file_itself_is_kept_with_or_without_a_record_after_it() {
    // Commit 22 is past MAX_RECORD: it syncs the file, and a barrier goes first in the
    // other journal file. Crashes right after it, and after a later commit whose record is
    // torn: the records from before the barrier must not be written over it.
    for (commits, tear_last) in [(23, false), (24, true), (24, false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut crash = run_then_crash(dir.path(), JOURNAL_FILE_BYTES, commits);
        if tear_last {
            let newer = usize::from(first_seq(&crash.journals[1]) > first_seq(&crash.journals[0]));
            let last = *chain_of_bytes(&crash.journals[newer]).last().unwrap();
            crash.journals[newer][last as usize + 100] ^= 1;
        }
        let expected = total_keys(commits) - u64::from(tear_last);
        let mut rng = Rng(commits + 5);
        for _ in 0..4 {
            assert_eq!(
                crash.keys_after_reopening(&mut rng),
                first_keys(expected),
                "{commits} commits, torn: {tear_last}"
            );
        }
    }
}

#[test]
fn a_crash_while_a_clean_stop_empties_the_journal_leaves_the_store_whole() {
    // A stop syncs the file, then zeros the file of older records first: a crash after
    // that leaves the newer records alone, written again over a file that holds them.
    let dir = tempfile::tempdir().unwrap();
    let commits = 40;
    let mut crash = run_then_crash(dir.path(), 160 * 1024, commits);
    let older = usize::from(first_seq(&crash.journals[1]) < first_seq(&crash.journals[0]));
    assert!(first_seq(&crash.journals[1 - older]).is_some());
    crash.journals[older].fill(0);
    crash.durable = crash.latest.clone();
    assert_eq!(
        crash.keys_after_reopening(&mut Rng(3)),
        first_keys(total_keys(commits))
    );
}

#[test]
fn after_a_failed_sync_of_the_file_no_commit_is_acknowledged_and_the_journal_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hook = {
        let calls = calls.clone();
        Box::new(move |_: &File| {
            // The second sync of the file (the checkpointer's) fails.
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                Err(io::Error::other("injected"))
            } else {
                Ok(())
            }
        })
    };
    let db = database_with(&path, 192 * 1024, hook);
    let mut acknowledged = Vec::new();
    let mut refused = false;
    for key in 0..1000u64 {
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(_) => {
                refused = true;
                break;
            }
        };
        {
            let mut table = txn.open_table(T).unwrap();
            table.insert(key, value(key).as_slice()).unwrap();
        }
        match txn.commit() {
            Ok(()) => acknowledged.push(key),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "a commit after the failed sync was refused");
    assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    drop(db);
    let journals = [
        read_all(&journal_path(&path, 0)),
        read_all(&journal_path(&path, 1)),
    ];
    assert!(
        journals.iter().any(|j| first_seq(j).is_some()),
        "the stop kept the journal"
    );
    assert_eq!(keys_after_reopening(&path), acknowledged);
}

#[test]
fn a_start_after_a_clean_stop_writes_no_zeros_again_unless_a_file_is_sparse() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    if !keeps_blocks_of_zeros_and_makes_sparse_files(dir.path()) {
        // ZFS with compression keeps no blocks for zeros (every start writes the files
        // whole); vfat makes no sparse file (the test's sparse copy cannot be made).
        eprintln!(
            "skipped: the temp dir's file system keeps no blocks for zeros or makes no sparse files"
        );
        return;
    }
    let path = dir.path().join("s.redb");
    let zeros_written = || replay::ZEROS_WRITTEN.with(std::cell::Cell::get);
    let blocks = |index| {
        std::fs::metadata(journal_path(&path, index))
            .unwrap()
            .blocks()
    };
    // A run with a record, then a clean stop, which zeros the journal.
    let db = database(JournaledFile::open(&path, open_file(&path), Arc::default()).unwrap());
    let txn = db.begin_write().unwrap();
    txn.open_table(T)
        .unwrap()
        .insert(1, value(1).as_slice())
        .unwrap();
    txn.commit().unwrap();
    let before_stop = zeros_written();
    drop(db);
    assert!(zeros_written() > before_stop, "the stop zeroed the records");
    // The start after it writes the first blocks only.
    let before_start = zeros_written();
    drop(JournaledFile::open(&path, open_file(&path), Arc::default()).unwrap());
    assert_eq!(zeros_written(), before_start);
    // A copy may make the files sparse: their first records would change metadata.
    std::fs::remove_file(journal_path(&path, 1)).unwrap();
    open_file(&journal_path(&path, 1))
        .set_len(JOURNAL_FILE_BYTES)
        .unwrap();
    assert!(blocks(1) * 512 < JOURNAL_FILE_BYTES);
    drop(JournaledFile::open(&path, open_file(&path), Arc::default()).unwrap());
    assert_eq!(
        zeros_written() - before_start,
        JOURNAL_FILE_BYTES as usize - record::ALIGN
    );
    assert!(blocks(1) * 512 >= JOURNAL_FILE_BYTES);
    assert_eq!(keys_after_reopening(&path), vec![1]);
}

/// Whether the file system under `dir` allocates a block for each block of zeros written
/// (ext4, xfs, btrfs, tmpfs do; ZFS with compression does not) and leaves a file grown by
/// `set_len` sparse (vfat does not): what the test of the zeroing's skip relies on.
fn keeps_blocks_of_zeros_and_makes_sparse_files(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    const LEN: u64 = 64 * 1024;
    let written = open_file(&dir.join("probe-written"));
    written.write_all_at(&[0; LEN as usize], 0).unwrap();
    written.sync_data().unwrap();
    let sparse = open_file(&dir.join("probe-sparse"));
    sparse.set_len(LEN).unwrap();
    let blocks = |f: &File| f.metadata().unwrap().blocks() * 512;
    blocks(&written) >= LEN && blocks(&sparse) < LEN
}
