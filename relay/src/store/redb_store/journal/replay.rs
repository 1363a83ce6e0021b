//! Opening the journal files: writing their records again into redb's file after a crash,
//! then emptying them for the new opening.
//!
//! A chain is the run of records at the start of one journal file, each of the same
//! generation and one seq after the one before it; it ends at the first block
//! that holds no whole record (zeros, a torn write, an older record left from an earlier
//! pass over the file, which has a smaller seq). When both files hold a chain, the older
//! one comes first only if the newer continues it. Of the records in order, only those
//! after the last barrier are written again: a barrier says redb's file was synced by a
//! commit that had no record, after which writing the older records again could undo that
//! commit's pages (see [`super::JournaledFile`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::record::{self, Header, ALIGN, HEADER_LEN};
use super::MAX_RECORD;
use crate::store::StoreError;

/// Opens (or makes, mode 0600) a journal file for reading and writing.
pub fn open_journal_file(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    // Made by an older build or by hand with a wider mode: the records are the store's.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

/// The records of one chain, where each starts in its file.
struct Chain {
    records: Vec<(u64, Header)>,
}

impl Chain {
    fn first(&self) -> &Header {
        &self.records[0].1
    }

    fn last(&self) -> &Header {
        &self.records[self.records.len() - 1].1
    }
}

/// The chain at the start of `file`, `None` when no record starts there.
fn chain_of(file: &File) -> io::Result<Option<Chain>> {
    let len = file.metadata()?.len();
    let mut records: Vec<(u64, Header)> = Vec::new();
    let mut offset = 0u64;
    let mut body = Vec::new();
    while offset + HEADER_LEN as u64 <= len {
        let mut header_bytes = [0u8; HEADER_LEN];
        file.read_exact_at(&mut header_bytes, offset)?;
        let Some(header) = Header::parse(&header_bytes) else {
            break;
        };
        if header.body_len > MAX_RECORD
            || offset + record::aligned_len(header.body_len) as u64 > len
        {
            break;
        }
        if let Some((_, last)) = records.last() {
            let continues = header.stamp.generation == last.stamp.generation
                && header.stamp.seq == last.stamp.seq + 1;
            if !continues {
                break;
            }
        }
        body.resize(header.body_len, 0);
        file.read_exact_at(&mut body, offset + HEADER_LEN as u64)?;
        if header.writes(&header_bytes, &body).is_none() {
            break;
        }
        records.push((offset, header));
        offset += record::aligned_len(header.body_len) as u64;
    }
    Ok((!records.is_empty()).then_some(Chain { records }))
}

/// What [`replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Records whose writes went into redb's file again.
    pub records: usize,
    /// The journal file holding the newer chain, to be emptied last.
    pub newer: usize,
}

/// Writes the records the journal files hold since the last barrier again into `main`,
/// oldest first, sets its length to the last one's and syncs it. Errors: I/O, or [`StoreError::Corrupt`]
/// when the two files hold chains of different openings (something other than the relay
/// wrote them).
pub fn replay(main: &File, files: &[File; 2]) -> Result<Replayed, StoreError> {
    let chains = [chain_of(&files[0])?, chain_of(&files[1])?];
    let (order, newer): (Vec<(usize, &Chain)>, usize) = match (&chains[0], &chains[1]) {
        (None, None) => (Vec::new(), 1),
        (Some(a), None) => (vec![(0, a)], 0),
        (None, Some(b)) => (vec![(1, b)], 1),
        (Some(a), Some(b)) => {
            let (older, newer) = if a.first().stamp.seq < b.first().stamp.seq {
                ((0, a), (1, b))
            } else {
                ((1, b), (0, a))
            };
            if older.1.last().stamp.generation != newer.1.first().stamp.generation {
                return Err(StoreError::Corrupt(
                    "the store's two journal files hold records of different openings; \
                     keep a copy of the data dir and report it"
                        .into(),
                ));
            }
            if older.1.last().stamp.seq + 1 == newer.1.first().stamp.seq {
                (vec![older, newer], newer.0)
            } else {
                (vec![newer], newer.0)
            }
        }
    };
    let records: Vec<(usize, u64, Header)> = order
        .iter()
        .flat_map(|(index, chain)| chain.records.iter().map(|(at, h)| (*index, *at, *h)))
        .collect();
    let since_barrier = records
        .iter()
        .rposition(|(_, _, h)| h.barrier)
        .map_or(0, |i| i + 1);
    let mut count = 0;
    let mut file_len = None;
    let mut bytes = Vec::new();
    for (index, offset, header) in &records[since_barrier..] {
        bytes.resize(HEADER_LEN + header.body_len, 0);
        files[*index].read_exact_at(&mut bytes, *offset)?;
        let (header_bytes, body) = bytes.split_at(HEADER_LEN);
        let header_bytes: &[u8; HEADER_LEN] = header_bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("a journal record's header".into()))?;
        let writes = header.writes(header_bytes, body).ok_or_else(|| {
            StoreError::Corrupt("a journal record changed while it was read".into())
        })?;
        for (at, data) in writes {
            main.write_all_at(data, at)?;
        }
        file_len = Some(header.file_len);
        count += 1;
    }
    if let Some(len) = file_len {
        main.set_len(len)?;
        main.sync_data()?;
    }
    Ok(Replayed {
        records: count,
        newer,
    })
}

/// Makes both journal files `capacity` bytes of zeros (so that no chain starts there and
/// no copy of an older page is left in them) and syncs them. Returns `false` when the disk
/// (or the relay user's quota on it) has no room for them: they are left empty and the
/// store runs without a journal.
pub fn reset(files: &[File; 2], newer: usize, capacity: u64) -> io::Result<bool> {
    after_zeroing(zero(files, newer, capacity), files, newer)
}

/// What [`reset`] makes of the zeroing's outcome `zeroed`.
fn after_zeroing(zeroed: io::Result<()>, files: &[File; 2], newer: usize) -> io::Result<bool> {
    match zeroed {
        Ok(()) => Ok(true),
        Err(e) if is_out_of_space(&e) => {
            // The first blocks may be zeros already; a file cut to nothing holds no chain.
            for file in [&files[1 - newer], &files[newer]] {
                file.set_len(0)?;
                file.sync_data()?;
            }
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Whether `e` says the disk has no room for the relay's user: full, or over its owner's
/// quota (which is as full for that user).
fn is_out_of_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Writes zeros over the first `capacity` bytes of both files and syncs them. First the
/// first block of the file with the older records, then of the file with the newer
/// (`newer`), each synced on its own (a chain starts only there): a crash in between
/// leaves the newer records alone, which can be written again harmlessly while redb's
/// file holds everything, and never the older ones alone or the start of a chain whose
/// end is gone. Then the rest. Written, not only allocated: a later write over them
/// changes no metadata that a sync of the data would have to wait for.
///
/// The rest of a file that reads as zeros in blocks of its own already (after a clean
/// stop) is only synced: the zeros may be a killed process's, not yet on disk, and a sync
/// writes them. The first blocks are always written: a page whose writeback failed (an
/// earlier start ended by that error) reads as zeros from the page cache but is clean,
/// so a sync alone would leave the old chain on disk; written again, it is dirty and its
/// sync reports a new failure.
pub fn zero(files: &[File; 2], newer: usize, capacity: u64) -> io::Result<()> {
    let in_order = [&files[1 - newer], &files[newer]];
    let zeros = vec![0u8; ZERO_CHUNK];
    let first_block = (ALIGN as u64).min(capacity);
    for file in in_order {
        file.write_all_at(&zeros[..first_block as usize], 0)?;
        file.sync_data()?;
    }
    for file in in_order {
        if !rest_is_zeroed(file, first_block, capacity)? {
            let mut offset = first_block;
            while offset < capacity {
                let n = (capacity - offset).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], offset)?;
                offset += n as u64;
                #[cfg(test)]
                ZEROS_WRITTEN.with(|count| count.set(count.get() + n));
            }
        }
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Bytes of zeros written past the first blocks on this thread (tests).
    pub static ZEROS_WRITTEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Bytes written or read at a time while zeroing.
const ZERO_CHUNK: usize = 256 * 1024;

/// Whether `file` is `capacity` bytes long, has a block on disk for each (a sparse file,
/// as a copy may make, would change metadata at its first records), and reads as zeros
/// from `from` on.
fn rest_is_zeroed(file: &File, from: u64, capacity: u64) -> io::Result<bool> {
    let meta = file.metadata()?;
    if meta.len() != capacity
        || std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512) < capacity
    {
        return Ok(false);
    }
    let mut chunk = vec![0u8; ZERO_CHUNK];
    let mut offset = from;
    while offset < capacity {
        let n = (capacity - offset).min(ZERO_CHUNK as u64) as usize;
        file.read_exact_at(&mut chunk[..n], offset)?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;

    /// The error a system call failing with `errno` returns.
    fn os_error(errno: Errno) -> io::Error {
        io::Error::from_raw_os_error(errno.raw_os_error())
    }

    /// Two journal files holding a record's worth of bytes each.
    fn files_with_records(dir: &std::path::Path) -> [File; 2] {
        [0, 1].map(|i| {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join(format!("j{i}")))
                .unwrap();
            file.write_all_at(&[0xa5; ALIGN], 0).unwrap();
            file
        })
    }

    #[test]
    fn a_zeroing_that_finds_no_room_leaves_both_files_empty_and_the_journal_off() {
        for errno in [Errno::NOSPC, Errno::DQUOT] {
            let dir = tempfile::tempdir().unwrap();
            let files = files_with_records(dir.path());
            assert!(
                !after_zeroing(Err(os_error(errno)), &files, 1).unwrap(),
                "{errno:?}"
            );
            for file in &files {
                assert_eq!(file.metadata().unwrap().len(), 0, "{errno:?}");
            }
        }
    }

    #[test]
    fn a_zeroing_that_fails_otherwise_fails_the_start_and_leaves_the_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_with_records(dir.path());
        assert!(after_zeroing(Err(os_error(Errno::IO)), &files, 0).is_err());
        for file in &files {
            assert_eq!(file.metadata().unwrap().len(), ALIGN as u64);
        }
        assert!(after_zeroing(Ok(()), &files, 0).unwrap());
    }

    #[test]
    fn a_full_disk_and_a_quota_both_count_as_no_room_and_nothing_else_does() {
        assert!(is_out_of_space(&os_error(Errno::NOSPC)));
        assert!(is_out_of_space(&os_error(Errno::DQUOT)));
        for other in [Errno::IO, Errno::ROFS, Errno::ACCESS, Errno::FBIG] {
            assert!(!is_out_of_space(&os_error(other)), "{other:?}");
        }
    }
}
