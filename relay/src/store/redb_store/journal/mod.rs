//! redb's file behind a write-ahead journal: a commit becomes durable with one sequential
//! write (decision 0019).
//!
//! redb makes a commit durable by writing its pages where its allocator put them, then
//! `fdatasync`. Those are 8 pages scattered over the file for a one-message commit, and a
//! disk takes each scattered page as a request of its own: 0.77 ms for 8 pages against 0.31
//! ms for 32 KiB in one piece on the machine of the README's table, and more on an SD
//! card. Here every write still goes to redb's file at once (so reads see it, and the page
//! cache writes it back in its own time), and a copy of the commit's writes is appended to
//! a journal file as one [`record`]; the sync redb asks for is the journal's. The file itself
//! is synced by a checkpointer thread when the journal file in use is half full, which then
//! takes the other journal file. After a crash, [`replay`] writes the records again, in
//! order, over whatever reached the file.
//!
//! Why that is enough: redb copies on write, so the pages a commit writes were free in the
//! state before it, and its header is written whole at offset 0. Whatever subset of the
//! writes since the last sync of the file reached the disk, writing every record since that
//! sync again, oldest first, leaves every page the last recorded commit can reach as that
//! commit left it. A commit too large for a record (over [`MAX_RECORD`]), or one that does
//! not fit in the journal file's space left, syncs the file itself instead, and then
//! writes a barrier at the start of the other journal file, which it takes: no record from
//! before the barrier is written again after a crash (it could undo that commit's pages).
//! A failed sync of the file stops the journal for good: every later commit fails, and the
//! records stay for the next start.

mod record;
mod replay;

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use crate::store::sync_times::SyncTimes;
use crate::store::StoreError;

/// Bytes of each of the two journal files (8 MiB of disk for both).
pub const JOURNAL_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// The largest commit written as a record; a larger one syncs redb's file itself.
pub const MAX_RECORD: usize = 1024 * 1024;
/// The memory the buffers of one commit keep between commits.
const KEEP_BYTES: usize = 256 * 1024;

/// The journal file `index` (0 or 1) of the store at `store`: `<store>.journal-<index>`.
pub fn journal_path(store: &Path, index: usize) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(format!(".journal-{index}"));
    PathBuf::from(name)
}

/// redb's file, with its commits made durable through the journal and the time of every
/// sync counted in a [`SyncTimes`].
pub struct JournaledFile {
    main: FileBackend,
    shared: Arc<Shared>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    syncs: Arc<SyncTimes>,
}

impl std::fmt::Debug for JournaledFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournaledFile").finish_non_exhaustive()
    }
}

/// Called before each sync of redb's file, with the file (tests take its bytes as the
/// durable ones of a crash); an error stands for the sync's.
type FileSyncHook = Box<dyn Fn(&File) -> io::Result<()> + Send + Sync>;

/// What the commit thread and the checkpointer share.
struct Shared {
    /// A second handle on redb's file, to sync it away from the commit thread.
    main: File,
    state: Mutex<State>,
    /// Wakes the checkpointer: the journal file in use passed its checkpoint mark, or stop.
    wake: Condvar,
    /// Held across every sync of redb's file, so that two syncs never run at once: Linux
    /// reports a failed writeback to one `fdatasync` only, and the other would return Ok.
    file_sync: Mutex<()>,
    /// A sync of redb's file failed (its kind): the journal takes no more records, since
    /// the kernel may count the writes that sync was for as done while they are lost. Set
    /// before `file_sync` is let go.
    failed: Mutex<Option<io::ErrorKind>>,
    #[cfg(test)]
    before_file_sync: Option<FileSyncHook>,
}

struct State {
    journal: Journal,
    pending: record::Pending,
    stop: bool,
}

/// The two journal files and where the next record goes.
struct Journal {
    files: [File; 2],
    /// The file records go to.
    active: usize,
    /// Where the next record goes in it (a multiple of [`record::ALIGN`]).
    offset: u64,
    /// Bytes of each file (0: no journal, every sync is the file's).
    capacity: u64,
    /// Bytes of the file in use past which the checkpointer syncs redb's file and moves
    /// the journal to the other file: half the capacity.
    checkpoint_at: u64,
    generation: u64,
    next_seq: u64,
    /// The file the last record or barrier went to (the newer records; right after the
    /// checkpointer moves the journal, not the file in use).
    last_written: usize,
    /// The other file holds records whose writes may not be on disk in redb's file yet
    /// (the checkpointer's sync has not returned): records may not go there.
    other_uncovered: bool,
}

impl JournaledFile {
    /// Takes `file` (redb's, opened read and write, at `path`) and the journal files beside
    /// it (made, mode 0600, if missing), writes again into `file` what the journal holds of
    /// the commits before a crash, and starts the checkpointer. Errors:
    /// [`redb::Error::DatabaseAlreadyOpen`] when another process holds the store, I/O
    /// errors of the files, [`StoreError::Corrupt`] for journal files that contradict
    /// each other.
    pub fn open(path: &Path, file: File, syncs: Arc<SyncTimes>) -> Result<Self, StoreError> {
        Self::open_with(path, file, syncs, JOURNAL_FILE_BYTES, None)
    }

    fn open_with(
        path: &Path,
        file: File,
        syncs: Arc<SyncTimes>,
        capacity: u64,
        #[allow(unused_variables)] before_file_sync: Option<FileSyncHook>,
    ) -> Result<Self, StoreError> {
        let files = [
            replay::open_journal_file(&journal_path(path, 0))?,
            replay::open_journal_file(&journal_path(path, 1))?,
        ];
        // The journal's lock is the store's: taken before anything is written again, so a
        // second relay on the same data dir changes nothing.
        match files[0].try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let replayed = replay::replay(&file, &files)?;
        if replayed.records > 0 {
            tracing::info!(
                records = replayed.records,
                "wrote the store's journal again after a crash"
            );
        }
        let capacity = if replay::reset(&files, replayed.newer, capacity)? {
            capacity
        } else {
            tracing::warn!(
                "no room on the disk for the store's journal: every commit syncs the store's \
                 file itself until the relay is started again with room"
            );
            0
        };
        // The journal files' names, made durable with them.
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all()?,
            _ => File::open(".")?.sync_all()?,
        }
        let mut generation = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut generation);
        let shared = Arc::new(Shared {
            main: file.try_clone()?,
            state: Mutex::new(State {
                journal: Journal {
                    files,
                    active: 0,
                    last_written: 0,
                    offset: 0,
                    capacity,
                    checkpoint_at: capacity / 2,
                    generation: u64::from_le_bytes(generation),
                    next_seq: 1,
                    other_uncovered: false,
                },
                pending: record::Pending::default(),
                stop: false,
            }),
            wake: Condvar::new(),
            file_sync: Mutex::new(()),
            failed: Mutex::new(None),
            #[cfg(test)]
            before_file_sync,
        });
        let checkpointer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("hearth-checkpoint".into())
                .spawn(move || shared.checkpoint_loop())?
        };
        Ok(Self {
            main: FileBackend::new(file)?,
            shared,
            checkpointer: Mutex::new(Some(checkpointer)),
            syncs,
        })
    }

    /// Makes every write since the last sync durable: as one record in the journal, or
    /// by syncing redb's file when the commit is too large for one.
    fn sync(&self) -> io::Result<()> {
        let mut state = self.shared.lock();
        let State {
            journal, pending, ..
        } = &mut *state;
        self.shared.check_failed()?;
        if !pending.is_touched() {
            return Ok(());
        }
        let record_len = record::aligned_len(pending.body().len()) as u64;
        let file_len = self.main.len()?;
        if pending.overflowed() || journal.offset + record_len > journal.capacity {
            self.shared.sync_file()?;
            journal.barrier(file_len)?;
        } else {
            journal.append(pending, file_len)?;
            if journal.offset >= journal.checkpoint_at && !journal.other_uncovered {
                self.shared.wake.notify_one();
            }
        }
        pending.clear(KEEP_BYTES);
        Ok(())
    }

    fn stop_checkpointer(&self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        let handle = self
            .checkpointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            // A panic there was reported by the thread; nothing is left to undo.
            let _ = handle.join();
        }
    }
}

impl Drop for JournaledFile {
    fn drop(&mut self) {
        self.stop_checkpointer();
    }
}

impl Journal {
    /// Writes the record of `pending` at the end of the file in use and syncs that file.
    fn append(&mut self, pending: &mut record::Pending, file_len: u64) -> io::Result<()> {
        let stamp = self.next_stamp();
        let bytes = pending.seal(stamp, file_len);
        Self::write_at(&self.files[self.active], bytes, self.offset)?;
        self.written(bytes.len());
        Ok(())
    }

    /// After a commit synced redb's file itself (every record in either file is covered
    /// then): writes a barrier at the start of the other file and takes that file. Until
    /// the barrier is synced, a crash writes the records before it again, which leaves the
    /// last commit that had one (this commit, not acknowledged, wrote only pages free in
    /// it); after, none of them. A seq is skipped too, so no chain reaches across.
    fn barrier(&mut self, file_len: u64) -> io::Result<()> {
        if self.capacity == 0 {
            return Ok(());
        }
        let other = 1 - self.active;
        let stamp = record::Stamp {
            generation: self.generation,
            seq: self.next_seq + 1,
        };
        let mut bytes = Vec::new();
        record::encode(&mut bytes, true, stamp, file_len, &[]);
        Self::write_at(&self.files[other], &bytes, 0)?;
        self.active = other;
        self.offset = 0;
        self.other_uncovered = false;
        self.next_seq = stamp.seq;
        self.written(bytes.len());
        Ok(())
    }

    fn next_stamp(&self) -> record::Stamp {
        record::Stamp {
            generation: self.generation,
            seq: self.next_seq,
        }
    }

    /// Writes `bytes` at `offset` of `file` and syncs it.
    fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(bytes, offset)?;
        file.sync_data()
    }

    /// Notes a record of `len` bytes written and synced in the file in use.
    fn written(&mut self, len: usize) {
        self.last_written = self.active;
        self.offset += len as u64;
        self.next_seq += 1;
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error of an earlier failed sync of redb's file, if one failed.
    fn check_failed(&self) -> io::Result<()> {
        match *self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(kind) => Err(io::Error::new(
                kind,
                "an earlier sync of the store's file failed: the store takes no more commits \
                 until the relay is started again",
            )),
            None => Ok(()),
        }
    }

    /// Syncs redb's file, one sync at a time; a failure is kept for good (see `failed`).
    fn sync_file(&self) -> io::Result<()> {
        let _one_at_a_time = self.file_sync.lock().unwrap_or_else(|p| p.into_inner());
        self.check_failed()?;
        #[cfg(test)]
        let synced = match &self.before_file_sync {
            Some(hook) => hook(&self.main).and_then(|()| self.main.sync_data()),
            None => self.main.sync_data(),
        };
        #[cfg(not(test))]
        let synced = self.main.sync_data();
        if let Err(e) = &synced {
            tracing::error!(error = %e, "syncing the store's file failed");
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.kind());
        }
        synced
    }

    /// The checkpointer: when the journal file in use is half full, moves the journal to
    /// the other file and syncs redb's file, after which the records of the first are no
    /// longer needed.
    fn checkpoint_loop(&self) {
        loop {
            {
                let mut state = self.lock();
                loop {
                    if state.stop {
                        return;
                    }
                    let journal = &mut state.journal;
                    if journal.capacity > 0 && journal.offset >= journal.checkpoint_at {
                        journal.active = 1 - journal.active;
                        journal.offset = 0;
                        journal.other_uncovered = true;
                        break;
                    }
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
            if self.sync_file().is_err() {
                // Not tried again: the records stay for the next start, and commits fail.
                return;
            }
            self.lock().journal.other_uncovered = false;
        }
    }
}

impl StorageBackend for JournaledFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.main.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.main.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.main.set_len(len)?;
        self.shared.lock().pending.touch();
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let start = Instant::now();
        let synced = self.sync();
        self.syncs.record(start.elapsed());
        synced
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.main.write(offset, data)?;
        self.shared.lock().pending.push(offset, data, MAX_RECORD);
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.stop_checkpointer();
        {
            // After a clean stop the store's file holds everything by itself, and the
            // journal keeps no copy of its pages; after a failed sync it keeps them all.
            let state = self.shared.lock();
            self.shared.sync_file()?;
            let journal = &state.journal;
            replay::zero(&journal.files, journal.last_written, journal.capacity)?;
        }
        self.main.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.main.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.main.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.main.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.main.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.main.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.main.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests;
