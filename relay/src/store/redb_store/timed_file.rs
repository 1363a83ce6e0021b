//! redb's file, with the time of every `fdatasync` counted in a [`SyncTimes`].

use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use crate::store::sync_times::SyncTimes;

/// A [`FileBackend`] whose `sync_data` is timed; everything else goes straight through.
#[derive(Debug)]
pub struct TimedFile {
    inner: FileBackend,
    syncs: Arc<SyncTimes>,
}

impl TimedFile {
    /// Wraps `file` (opened read and write); counts its syncs in `syncs`. Errors: those
    /// of [`FileBackend::new`] (another process holds the database).
    pub fn new(file: std::fs::File, syncs: Arc<SyncTimes>) -> Result<Self, redb::DatabaseError> {
        Ok(Self {
            inner: FileBackend::new(file)?,
            syncs,
        })
    }
}

impl StorageBackend for TimedFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let start = Instant::now();
        let synced = self.inner.sync_data();
        self.syncs.record(start.elapsed());
        synced
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
