//! The blob store: encrypted attachments beside the room logs (decision 0014).
//!
//! One file per blob under `<data dir>/blobs/<room hex>/<blob hex>` (`.part` while it is
//! uploaded), starting with a [`HEADER_LEN`]-byte header (magic, total size, the room's
//! head when the upload began, creation time), then the blob's bytes as they came.
//! Pieces are written at their offset and fsynced before they are acknowledged; a
//! finished upload is renamed into place and its directory fsynced. Nothing is kept in
//! memory but a small index (rebuilt from the headers at start) and the per-room charge.
//! No account is stored with a blob.
//!
//! A room is charged the bytes it holds (a finished file's size, an unfinished upload's
//! bytes received so far), never what an upload only announced: a member announcing
//! many huge files and sending a byte of each cannot use up the room's quota. A file is
//! begun only if its whole size would fit, and a room has at most
//! [`MAX_UNFINISHED_PER_ROOM`] unfinished uploads; when that is full, the upload idle
//! longest (at least [`IDLE_UNFINISHED_SECS`]) gives way to a new one. The methods do blocking file I/O: call them off the
//! async thread.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use hearth_protocol::limits::MAX_BLOB_PIECE;
use hearth_protocol::{BlobId, ErrorCode, RoomId, WireError};
use serde::{Deserialize, Serialize};

/// The header in front of every blob file.
pub const HEADER_LEN: u64 = 32;
const MAGIC: &[u8; 8] = b"hblob\0\0\x01";
/// How long an upload may stay unfinished before the sweep deletes it (a day), unless
/// the room's retention is shorter.
pub const UNFINISHED_SECS: u64 = 24 * 3600;
/// Unfinished uploads one room may have at once. A client uploads one file at a time,
/// so this is several family members sending at once, with room to spare.
pub const MAX_UNFINISHED_PER_ROOM: usize = 16;
/// How long an unfinished upload must have received nothing before a new upload may
/// take its place in a full room (it can start again from its first piece).
pub const IDLE_UNFINISHED_SECS: u64 = 10 * 60;

/// What the store knows of one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobMeta {
    /// Its whole size.
    pub total: u64,
    /// The room's head seq when its upload began (who may fetch it: see decision 0014).
    pub start_seq: u64,
    /// When its upload began, seconds since the Unix epoch.
    pub created: u64,
    /// Bytes held from the start.
    pub received: u64,
    /// Whether every byte is held (the file has its final name).
    pub complete: bool,
    /// When its last piece was written, seconds since the Unix epoch.
    touched: u64,
    /// A piece is being written (another one is refused meanwhile).
    busy: bool,
}

#[derive(Default)]
struct Index {
    blobs: HashMap<(RoomId, BlobId), BlobMeta>,
    charged: HashMap<RoomId, u64>,
    /// The sum of `charged`.
    charged_total: u64,
}

impl Index {
    fn charge(&mut self, room: RoomId, bytes: u64) {
        if bytes > 0 {
            *self.charged.entry(room).or_default() += bytes;
            self.charged_total += bytes;
        }
    }

    fn refund(&mut self, room: &RoomId, bytes: u64) {
        if let Some(c) = self.charged.get_mut(room) {
            let refunded = bytes.min(*c);
            *c -= refunded;
            self.charged_total -= refunded;
            if *c == 0 {
                self.charged.remove(room);
            }
        }
    }
}

/// The limits a blob store enforces.
#[derive(Debug, Clone, Copy)]
pub struct BlobLimits {
    /// The largest blob.
    pub max_file_bytes: u64,
    /// The bytes of blobs one room may keep.
    pub quota_bytes_per_room: u64,
    /// The bytes of blobs all rooms together may keep.
    pub quota_bytes_total: u64,
}

/// What [`BlobStore::drop_room`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// The room.
    pub room: RoomId,
    /// Blobs deleted, complete or not.
    pub files: u64,
    /// The bytes they held (given back to the room and to the relay-wide total).
    pub bytes: u64,
    /// Blobs left because a piece of them was being written at that moment.
    pub busy: u64,
}

/// The blob store of one relay. See the module documentation.
pub struct BlobStore {
    dir: PathBuf,
    limits: BlobLimits,
    index: Mutex<Index>,
}

fn err(code: ErrorCode, message: impl Into<String>) -> WireError {
    WireError::new(code, message)
}

fn unknown_blob() -> WireError {
    err(
        ErrorCode::UnknownBlob,
        "the relay holds no such file in this room (it may have expired)",
    )
}

fn io_failed(e: &io::Error, what: &str) -> WireError {
    tracing::error!(error = %e, "blob store: {what}");
    crate::service::writer::internal()
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BlobStore {
    /// The blob store under `data_dir/blobs`, its index read from what is there (files
    /// it cannot read are left alone and logged).
    pub fn open(data_dir: &Path, limits: BlobLimits) -> Self {
        let store = Self {
            dir: data_dir.join("blobs"),
            limits,
            index: Mutex::new(Index::default()),
        };
        if let Err(e) = store.scan() {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::error!(error = %e, dir = %store.dir.display(), "blob store: cannot read");
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn scan(&self) -> io::Result<()> {
        let mut index = self.lock();
        for room_dir in fs::read_dir(&self.dir)? {
            let room_dir = room_dir?;
            let Some(room) = room_dir.file_name().to_str().and_then(RoomId::from_hex) else {
                continue;
            };
            for file in fs::read_dir(room_dir.path())? {
                let file = file?;
                let name = file.file_name();
                let Some(name) = name.to_str() else { continue };
                let (hex, complete) = match name.strip_suffix(".part") {
                    Some(hex) => (hex, false),
                    None => (name, true),
                };
                let Some(blob) = BlobId::from_hex(hex) else {
                    continue;
                };
                match read_header(&file.path()) {
                    Ok((total, start_seq, created, len)) => {
                        let received = if complete {
                            total
                        } else {
                            len.saturating_sub(HEADER_LEN).min(total)
                        };
                        index.blobs.insert(
                            (room, blob),
                            BlobMeta {
                                total,
                                start_seq,
                                created,
                                received,
                                complete,
                                touched: created,
                                busy: false,
                            },
                        );
                        index.charge(room, received);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, file = %file.path().display(), "blob store: unreadable blob left alone");
                    }
                }
            }
        }
        Ok(())
    }

    fn path(&self, room: &RoomId, blob: &BlobId, complete: bool) -> PathBuf {
        let name = if complete {
            blob.to_hex()
        } else {
            format!("{}.part", blob.to_hex())
        };
        self.dir.join(room.to_hex()).join(name)
    }

    /// What the store knows of a blob.
    pub fn meta(&self, room: &RoomId, blob: &BlobId) -> Option<BlobMeta> {
        self.lock().blobs.get(&(*room, *blob)).copied()
    }

    /// Bytes of blobs charged to `room`.
    pub fn room_bytes(&self, room: &RoomId) -> u64 {
        self.lock().charged.get(room).copied().unwrap_or(0)
    }

    /// Bytes of blobs charged to all rooms together.
    pub fn total_bytes(&self) -> u64 {
        self.lock().charged_total
    }

    /// Deletes every blob of `room` (complete or being uploaded) but those a piece is being
    /// written to at this moment: the owner's way to take back the space one room's files
    /// hold before retention would (`hearth-relay drop-files`). Members asking for a deleted
    /// blob get `UnknownBlob`; an uploader whose blob went starts again from 0.
    pub fn drop_room(&self, room: &RoomId) -> Dropped {
        let mut index = self.lock();
        let mut dropped = Dropped {
            room: *room,
            files: 0,
            bytes: 0,
            busy: 0,
        };
        let theirs: Vec<(BlobId, BlobMeta)> = index
            .blobs
            .iter()
            .filter(|((r, _), _)| r == room)
            .map(|((_, b), m)| (*b, *m))
            .collect();
        for (blob, meta) in theirs {
            if meta.busy {
                dropped.busy += 1;
                continue;
            }
            match fs::remove_file(self.path(room, &blob, meta.complete)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(error = %e, "blob store: deleting a room's file failed");
                    continue;
                }
            }
            let held = if meta.complete {
                meta.total
            } else {
                meta.received
            };
            index.blobs.remove(&(*room, blob));
            index.refund(room, held);
            dropped.files += 1;
            dropped.bytes += held;
        }
        if dropped.busy == 0 {
            let _ = fs::remove_dir(self.dir.join(room.to_hex()));
        }
        dropped
    }

    /// Per room, the blobs held (see [`crate::inspect::RoomBlobs`]), in room order.
    pub fn rooms(&self) -> Vec<crate::inspect::RoomBlobs> {
        let index = self.lock();
        let mut rooms: std::collections::BTreeMap<[u8; 16], crate::inspect::RoomBlobs> =
            std::collections::BTreeMap::new();
        for ((room, _), meta) in &index.blobs {
            let entry = rooms
                .entry(room.0)
                .or_insert_with(|| crate::inspect::RoomBlobs {
                    room: *room,
                    files: 0,
                    bytes: 0,
                    unfinished: 0,
                });
            entry.files += 1;
            entry.bytes += if meta.complete {
                meta.total
            } else {
                meta.received
            };
            entry.unfinished += u64::from(!meta.complete);
        }
        rooms.into_values().collect()
    }

    /// Number of blobs held (complete or not).
    pub fn count(&self) -> usize {
        self.lock().blobs.len()
    }

    /// Writes one piece (see [`hearth_protocol::Request::PutBlob`]) and fsyncs it;
    /// returns the bytes held from the start. `start_seq` and `now` are recorded when the
    /// piece begins a new blob.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        room: RoomId,
        blob: BlobId,
        total: u64,
        offset: u64,
        data: &[u8],
        start_seq: u64,
        now: u64,
    ) -> Result<u64, WireError> {
        if data.len() > MAX_BLOB_PIECE {
            return Err(err(
                ErrorCode::TooLarge,
                format!("a piece of a file may have at most {MAX_BLOB_PIECE} bytes"),
            ));
        }
        let max = self.limits.max_file_bytes;
        if total > max {
            return Err(err(
                ErrorCode::TooLarge,
                format!(
                    "the file is too large for this relay: {} encrypted, the relay takes at most {} per file (its owner sets max_file_bytes): send a smaller file (a zip split in parts, a photo at a lower size) or ask the owner",
                    human(total),
                    human(max)
                ),
            ));
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= total && total > 0)
            .ok_or_else(|| err(ErrorCode::BadRequest, "the piece lies outside the file"))?;
        let new = {
            let mut index = self.lock();
            match index.blobs.get_mut(&(room, blob)) {
                Some(meta) if meta.total != total => {
                    return Err(err(
                        ErrorCode::BadRequest,
                        "the file's size differs from its first piece",
                    ))
                }
                Some(meta) if meta.complete => return Ok(meta.total),
                Some(meta) if meta.busy => {
                    return Err(err(
                        ErrorCode::RateLimited,
                        "another piece of this file is being written: wait for its answer",
                    ))
                }
                Some(meta) if offset > meta.received => {
                    return Err(err(
                        ErrorCode::BadRequest,
                        format!(
                            "the relay holds {} bytes of this file: resume from there",
                            meta.received
                        ),
                    ))
                }
                Some(meta) => {
                    let received = meta.received;
                    let growth = end.saturating_sub(received);
                    self.check_quota(&index, room, growth)?;
                    let meta = index
                        .blobs
                        .get_mut(&(room, blob))
                        .ok_or_else(crate::service::writer::internal)?;
                    meta.busy = true;
                    (false, received)
                }
                None if offset != 0 => return Err(unknown_blob()),
                None => {
                    // Begun only if the whole file would fit.
                    self.check_quota(&index, room, total)?;
                    self.make_room_for_an_upload(&mut index, room, now)?;
                    index.blobs.insert(
                        (room, blob),
                        BlobMeta {
                            total,
                            start_seq,
                            created: now,
                            received: 0,
                            complete: false,
                            touched: now,
                            busy: true,
                        },
                    );
                    (true, 0)
                }
            }
        };
        let (new, before) = new;
        let written = self.write_piece(room, blob, (total, start_seq, now), offset, data, new);
        let mut index = self.lock();
        match written {
            Ok(()) => {
                let meta = index
                    .blobs
                    .get_mut(&(room, blob))
                    // Only the writer (busy) removes or changes the entry meanwhile.
                    .ok_or_else(crate::service::writer::internal)?;
                meta.busy = false;
                meta.received = end;
                meta.complete = end == total;
                meta.touched = now;
                // A resent earlier piece cuts off what came after it.
                if end >= before {
                    index.charge(room, end - before);
                } else {
                    index.refund(&room, before - end);
                }
                Ok(end)
            }
            Err(e) => {
                if new {
                    index.blobs.remove(&(room, blob));
                    let _ = fs::remove_file(self.path(&room, &blob, false));
                } else if let Some(meta) = index.blobs.get_mut(&(room, blob)) {
                    meta.busy = false;
                    meta.received = before.min(offset);
                    let cut = before - meta.received;
                    index.refund(&room, cut);
                }
                Err(io_failed(&e, "writing a piece failed"))
            }
        }
    }

    /// Refuses `more` bytes for `room` when they would pass its quota.
    fn check_quota(&self, index: &Index, room: RoomId, more: u64) -> Result<(), WireError> {
        let total = self.limits.quota_bytes_total;
        if more > 0 && index.charged_total.saturating_add(more) > total {
            return Err(err(
                ErrorCode::QuotaExceeded,
                format!(
                    "the relay keeps at most {} of files for all rooms together and holds {}: wait for older files to expire or ask the relay's owner",
                    human(total),
                    human(index.charged_total)
                ),
            ));
        }
        let used = index.charged.get(&room).copied().unwrap_or(0);
        let quota = self.limits.quota_bytes_per_room;
        if more > 0 && used.saturating_add(more) > quota {
            return Err(err(
                ErrorCode::QuotaExceeded,
                format!(
                    "the room's files would take more than the {} the relay allows a room ({} stored): wait for older files to expire or ask the relay's owner",
                    human(quota),
                    human(used)
                ),
            ));
        }
        Ok(())
    }

    /// Makes sure `room` may begin one more upload: below [`MAX_UNFINISHED_PER_ROOM`], or
    /// by dropping its unfinished upload idle longest, if idle for at least
    /// [`IDLE_UNFINISHED_SECS`]; else the new upload is refused.
    fn make_room_for_an_upload(
        &self,
        index: &mut Index,
        room: RoomId,
        now: u64,
    ) -> Result<(), WireError> {
        let unfinished = index
            .blobs
            .iter()
            .filter(|((r, _), m)| *r == room && !m.complete);
        if unfinished.clone().count() < MAX_UNFINISHED_PER_ROOM {
            return Ok(());
        }
        let idlest = unfinished
            .filter(|(_, m)| !m.busy && m.touched.saturating_add(IDLE_UNFINISHED_SECS) <= now)
            .min_by_key(|(_, m)| m.touched)
            .map(|((_, b), m)| (*b, m.received));
        let Some((idle, held)) = idlest else {
            return Err(err(
                ErrorCode::RateLimited,
                format!(
                    "{MAX_UNFINISHED_PER_ROOM} files are being uploaded to this room at once: try again when one has finished"
                ),
            ));
        };
        match fs::remove_file(self.path(&room, &idle, false)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_failed(&e, "dropping an idle upload failed")),
        }
        index.blobs.remove(&(room, idle));
        index.refund(&room, held);
        tracing::info!("blob store: an idle unfinished upload gave way to a new one");
        Ok(())
    }

    fn write_piece(
        &self,
        room: RoomId,
        blob: BlobId,
        (total, start_seq, created): (u64, u64, u64),
        offset: u64,
        data: &[u8],
        new: bool,
    ) -> io::Result<()> {
        let part = self.path(&room, &blob, false);
        let file = if new {
            let room_dir = self.dir.join(room.to_hex());
            if !room_dir.exists() {
                fs::create_dir_all(&room_dir)?;
                fsync_dir(&self.dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&part)?;
            let mut header = [0u8; HEADER_LEN as usize];
            header[..8].copy_from_slice(MAGIC);
            header[8..16].copy_from_slice(&total.to_le_bytes());
            header[16..24].copy_from_slice(&start_seq.to_le_bytes());
            header[24..32].copy_from_slice(&created.to_le_bytes());
            file.write_all_at(&header, 0)?;
            fsync_dir(&room_dir)?;
            file
        } else {
            OpenOptions::new().read(true).write(true).open(&part)?
        };
        // A resent piece overwrites from its offset: whatever came after it (a piece
        // torn by a power cut) goes.
        file.set_len(HEADER_LEN + offset)?;
        file.write_all_at(data, HEADER_LEN + offset)?;
        file.sync_all()?;
        if offset + data.len() as u64 == total {
            let done = self.path(&room, &blob, true);
            fs::rename(&part, &done)?;
            fsync_dir(&self.dir.join(room.to_hex()))?;
        }
        Ok(())
    }

    /// `(received, total)` of a blob (`(0, 0)` for none).
    pub fn status(&self, room: &RoomId, blob: &BlobId) -> (u64, u64) {
        self.meta(room, blob)
            .map_or((0, 0), |m| (m.received, m.total))
    }

    /// Reads up to `len` bytes (at most [`MAX_BLOB_PIECE`]) of a complete blob from
    /// `offset`; returns its total size and the bytes.
    pub fn get(
        &self,
        room: &RoomId,
        blob: &BlobId,
        offset: u64,
        len: u32,
    ) -> Result<(u64, Vec<u8>), WireError> {
        let meta = self
            .meta(room, blob)
            .filter(|m| m.complete)
            .ok_or_else(unknown_blob)?;
        if offset > meta.total {
            return Err(err(ErrorCode::BadRequest, "the offset lies past the file"));
        }
        let want = (len as usize)
            .min(MAX_BLOB_PIECE)
            .min((meta.total - offset) as usize);
        let file = match File::open(self.path(room, blob, true)) {
            Ok(file) => file,
            // Swept meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(unknown_blob()),
            Err(e) => return Err(io_failed(&e, "opening a blob failed")),
        };
        let mut data = vec![0u8; want];
        file.read_exact_at(&mut data, HEADER_LEN + offset)
            .map_err(|e| io_failed(&e, "reading a blob failed"))?;
        Ok((meta.total, data))
    }

    /// Deletes the blobs that are due at `now`: complete ones older than their room's
    /// retention, unfinished ones older than [`UNFINISHED_SECS`] (or the retention, if
    /// shorter), and those of rooms the relay no longer has. `retention_of` gives a room's
    /// retention in seconds, `None` for a room that does not exist. Returns how many
    /// blobs were deleted.
    pub fn sweep(&self, now: u64, retention_of: impl Fn(&RoomId) -> Option<u64>) -> u64 {
        let candidates: Vec<((RoomId, BlobId), BlobMeta)> = self
            .lock()
            .blobs
            .iter()
            .filter(|(_, m)| !m.busy)
            .map(|(k, m)| (*k, *m))
            .collect();
        let mut retention: HashMap<RoomId, Option<u64>> = HashMap::new();
        let mut deleted = 0;
        for ((room, blob), meta) in candidates {
            let keep = *retention.entry(room).or_insert_with(|| retention_of(&room));
            let due = match keep {
                None => true,
                Some(secs) => {
                    let secs = if meta.complete {
                        secs
                    } else {
                        secs.min(UNFINISHED_SECS)
                    };
                    meta.created.saturating_add(secs) <= now
                }
            };
            if !due {
                continue;
            }
            let mut index = self.lock();
            // Not taken by a writer since it was listed.
            if index.blobs.get(&(room, blob)).is_none_or(|m| m.busy) {
                continue;
            }
            match fs::remove_file(self.path(&room, &blob, meta.complete)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(error = %e, "blob store: deleting an expired blob failed");
                    continue;
                }
            }
            if let Some(gone) = index.blobs.remove(&(room, blob)) {
                let held = if gone.complete {
                    gone.total
                } else {
                    gone.received
                };
                index.refund(&room, held);
            }
            deleted += 1;
            if !index.blobs.keys().any(|(r, _)| *r == room) {
                let _ = fs::remove_dir(self.dir.join(room.to_hex()));
            }
        }
        deleted
    }
}

fn read_header(path: &Path) -> io::Result<(u64, u64, u64, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)?;
    if &header[..8] != MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a blob"));
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[i..i + 8]);
        u64::from_le_bytes(b)
    };
    Ok((word(8), word(16), word(24), len))
}

/// Bytes as people read them (MiB with one decimal, or bytes).
fn human(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BlobLimits = BlobLimits {
        max_file_bytes: 1 << 20,
        quota_bytes_per_room: 3 << 19,
        quota_bytes_total: 1 << 30,
    };

    fn ids() -> (RoomId, BlobId) {
        (RoomId([1; 16]), BlobId([2; 16]))
    }

    #[test]
    fn pieces_resume_and_a_finished_blob_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), LIMITS);
        let (room, blob) = ids();
        assert_eq!(store.put(room, blob, 10, 0, b"hello", 7, 100), Ok(5));
        assert!(store.get(&room, &blob, 0, 10).is_err(), "unfinished");
        // Reopened (a restart): the piece is there, resume goes on from it.
        let store = BlobStore::open(dir.path(), LIMITS);
        assert_eq!(store.status(&room, &blob), (5, 10));
        assert_eq!(store.room_bytes(&room), 5, "charged what it holds");
        let gap = store.put(room, blob, 10, 7, b"xyz", 7, 100).unwrap_err();
        assert!(gap.message.contains("resume from there"), "{gap}");
        // A resent piece overwrites; the last one completes the blob.
        assert_eq!(store.put(room, blob, 10, 3, b"lo", 7, 100), Ok(5));
        assert_eq!(store.put(room, blob, 10, 2, b"l", 7, 100), Ok(3));
        assert_eq!(
            store.room_bytes(&room),
            3,
            "a resent piece cut the rest off"
        );
        assert_eq!(store.put(room, blob, 10, 3, b"lo", 7, 100), Ok(5));
        assert_eq!(store.put(room, blob, 10, 5, b"world", 7, 100), Ok(10));
        assert_eq!(store.room_bytes(&room), 10);
        let store = BlobStore::open(dir.path(), LIMITS);
        assert_eq!(
            store.get(&room, &blob, 0, 100),
            Ok((10, b"helloworld".to_vec()))
        );
        assert_eq!(store.get(&room, &blob, 8, 100), Ok((10, b"ld".to_vec())));
        assert_eq!(store.meta(&room, &blob).unwrap().start_seq, 7);
        // Its last piece again (an answer lost): nothing changes.
        assert_eq!(store.put(room, blob, 10, 5, b"world", 7, 100), Ok(10));
    }

    #[test]
    fn the_relay_wide_cap_counts_every_room_and_dropping_a_room_gives_its_bytes_back() {
        let dir = tempfile::tempdir().unwrap();
        let limits = BlobLimits {
            quota_bytes_total: 12,
            ..LIMITS
        };
        let store = BlobStore::open(dir.path(), limits);
        let (room, blob) = ids();
        let other = RoomId([0; 16]);
        store.put(room, blob, 6, 0, b"abcdef", 0, 0).unwrap();
        store.put(room, BlobId([3; 16]), 4, 0, b"ha", 0, 0).unwrap();
        assert_eq!(store.total_bytes(), 8);
        let full = store.put(other, blob, 5, 0, b"z", 0, 0).unwrap_err();
        assert_eq!(full.code, ErrorCode::QuotaExceeded);
        assert!(full.message.contains("all rooms together"), "{full}");
        // Counted again from the disk after a restart.
        let store = BlobStore::open(dir.path(), limits);
        assert_eq!(store.total_bytes(), 8);
        let dropped = store.drop_room(&room);
        assert_eq!(
            dropped,
            Dropped {
                room,
                files: 2,
                bytes: 8,
                busy: 0
            }
        );
        assert_eq!((store.total_bytes(), store.room_bytes(&room)), (0, 0));
        assert!(!dir.path().join("blobs").join(room.to_hex()).exists());
        assert_eq!(
            store.status(&room, &BlobId([3; 16])),
            (0, 0),
            "starts again from 0"
        );
        assert_eq!(store.put(other, blob, 5, 0, b"z", 0, 0), Ok(1));
        let store = BlobStore::open(dir.path(), limits);
        assert_eq!(store.total_bytes(), 1);
    }

    #[test]
    fn inspect_counts_files_and_bytes_per_room() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), LIMITS);
        let (room, blob) = ids();
        store.put(room, blob, 2, 0, b"ok", 0, 0).unwrap();
        store.put(room, BlobId([3; 16]), 4, 0, b"ha", 0, 0).unwrap();
        let other = RoomId([0; 16]);
        store.put(other, blob, 1, 0, b"z", 0, 0).unwrap();
        let rooms = store.rooms();
        let counts: Vec<_> = rooms
            .iter()
            .map(|r| (r.room, r.files, r.bytes, r.unfinished))
            .collect();
        assert_eq!(counts, [(other, 1, 1, 0), (room, 2, 4, 1)]);
        let report = crate::inspect::InspectReport {
            blobs: rooms,
            ..Default::default()
        };
        let lines = crate::inspect::render(&report);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("files: 3 in 2 rooms, 5 bytes")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&room.to_hex()) && l.contains("(1 being uploaded)")),
            "{lines:?}"
        );
    }

    #[test]
    fn limits_are_refused_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), LIMITS);
        let (room, _) = ids();
        let big = store
            .put(room, BlobId([3; 16]), (1 << 20) + 1, 0, b"x", 0, 0)
            .unwrap_err();
        assert_eq!(big.code, ErrorCode::TooLarge);
        assert!(big.message.contains("max_file_bytes"), "{big}");
        assert_eq!(store.count(), 0);
        // 1 MiB held: a second file of 1 MiB would not fit in the 1.5 MiB quota.
        fill(&store, room, BlobId([4; 16]), 0, 0).unwrap();
        let full = store
            .put(room, BlobId([5; 16]), 1 << 20, 0, b"x", 0, 0)
            .unwrap_err();
        assert_eq!(full.code, ErrorCode::QuotaExceeded);
        assert!(full.message.contains("1.0 MiB stored"), "{full}");
        // Another room has its own quota.
        store
            .put(RoomId([9; 16]), BlobId([5; 16]), 1 << 20, 0, b"x", 0, 0)
            .unwrap();
        let outside = store.put(room, BlobId([4; 16]), 1 << 20, 1 << 20, b"x", 0, 0);
        assert_eq!(outside.unwrap_err().code, ErrorCode::BadRequest);
        let unknown = store.put(room, BlobId([6; 16]), 10, 5, b"x", 0, 0);
        assert_eq!(unknown.unwrap_err().code, ErrorCode::UnknownBlob);
    }

    /// A member announces many files of the largest size and sends a byte of each: the
    /// room is charged the bytes held, so others' files still fit; the room's unfinished
    /// uploads are bounded, and once they are idle long enough the idlest gives way to a
    /// new upload.
    #[test]
    fn announced_sizes_do_not_use_up_the_quota_and_idle_uploads_give_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), LIMITS);
        let (room, _) = ids();
        let blob = |i: usize| BlobId([i as u8 + 10; 16]);
        for i in 0..MAX_UNFINISHED_PER_ROOM {
            store
                .put(room, blob(i), 1 << 20, 0, b"x", 0, 1000 + i as u64)
                .unwrap();
        }
        assert_eq!(store.room_bytes(&room), MAX_UNFINISHED_PER_ROOM as u64);
        // All of them recent: a new upload waits.
        let busy = store
            .put(room, BlobId([1; 16]), 100, 0, b"y", 0, 1100)
            .unwrap_err();
        assert_eq!(busy.code, ErrorCode::RateLimited);
        assert!(busy.message.contains("try again"), "{busy}");
        // Later, the idlest (the first) gives way, and the new file is whole.
        let later = 1000 + IDLE_UNFINISHED_SECS;
        assert_eq!(
            store.put(room, BlobId([1; 16]), 1, 0, b"y", 0, later),
            Ok(1)
        );
        assert_eq!(store.status(&room, &blob(0)), (0, 0));
        assert_eq!(store.status(&room, &blob(1)), (1, 1 << 20));
        assert!(!dir
            .path()
            .join("blobs")
            .join(room.to_hex())
            .join(format!("{}.part", blob(0).to_hex()))
            .exists());
        assert_eq!(store.room_bytes(&room), MAX_UNFINISHED_PER_ROOM as u64);
        // Two of the announced files grow: the first fits, the second is refused once it
        // would pass the quota, with the reason, and the charge stays within it.
        fill(&store, room, blob(1), 1, later).unwrap();
        let refused = fill(&store, room, blob(2), 1, later).unwrap_err();
        assert_eq!(refused.code, ErrorCode::QuotaExceeded);
        assert!(store.room_bytes(&room) <= LIMITS.quota_bytes_per_room);
        assert!(store.room_bytes(&room) > 1 << 20);
    }

    /// Sends the rest of a 1 MiB blob from `offset`, piece by piece.
    fn fill(
        store: &BlobStore,
        room: RoomId,
        blob: BlobId,
        mut offset: u64,
        now: u64,
    ) -> Result<(), WireError> {
        let total: u64 = 1 << 20;
        while offset < total {
            let len = (total - offset).min(MAX_BLOB_PIECE as u64) as usize;
            offset = store.put(room, blob, total, offset, &vec![7u8; len], 0, now)?;
        }
        Ok(())
    }

    #[test]
    fn the_sweep_deletes_expired_unfinished_and_orphaned_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), LIMITS);
        let (room, blob) = ids();
        store.put(room, blob, 2, 0, b"ok", 0, 1000).unwrap();
        store
            .put(room, BlobId([3; 16]), 4, 0, b"ha", 0, 1000)
            .unwrap();
        let other = RoomId([7; 16]);
        store.put(other, blob, 1, 0, b"z", 0, 1000).unwrap();
        let retention = |r: &RoomId| (*r == room).then_some(10 * UNFINISHED_SECS);
        // The room that is gone goes at once; nothing else is due yet.
        assert_eq!(store.sweep(1001, retention), 1);
        assert_eq!(store.room_bytes(&other), 0);
        // The unfinished one after a day, the finished one after the room's retention.
        assert_eq!(store.sweep(1000 + UNFINISHED_SECS, retention), 1);
        assert_eq!(store.status(&room, &blob), (2, 2));
        assert_eq!(store.sweep(1000 + 10 * UNFINISHED_SECS, retention), 1);
        assert_eq!(store.count(), 0);
        assert_eq!(store.room_bytes(&room), 0);
        let left: Vec<_> = fs::read_dir(dir.path().join("blobs")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
