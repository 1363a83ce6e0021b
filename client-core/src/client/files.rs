//! Sending and saving files (decision 0014): a file is sealed with [`crate::attachment`],
//! uploaded to the room's blob store at the relay piece by piece (each piece on the
//! relay's disk before the next is sent), and announced by a [`Body::File`] message that
//! carries its key; saving fetches the blob with the room's capability, opens it and
//! moves it into place only once it verified.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_protocol::limits::MAX_BLOB_PIECE;
use hearth_protocol::{BlobId, Cap, ErrorCode, Request, Response, RoomId, Seq};

use super::labels::Named as _;
use super::{room_error, unexpected, Client, Inner};
use serde::{Deserialize, Serialize};

use crate::attachment::{
    media_type_of, safe_file_name, AttachmentError, Decryptor, Encryptor, FileKey, FileMessage,
    CHUNK_SIZE, TAG_LEN,
};
use crate::content::Body;
use crate::error::{store as store_err, ClientError};
use crate::store::Table;

/// Chunks per uploaded piece: 8 chunks of 64 KiB and their tags, [`MAX_BLOB_PIECE`].
const CHUNKS_PER_PIECE: usize = MAX_BLOB_PIECE / (CHUNK_SIZE as usize + TAG_LEN);
/// How long a transfer waits for a lost connection to come back before it gives up.
const RECONNECT_WAIT: Duration = Duration::from_secs(60);
const RECONNECT_POLL: Duration = Duration::from_millis(200);

/// Told how far a transfer got: bytes done and bytes in all (of the encrypted blob).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// An attachment this device holds in its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFile {
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Plaintext bytes an earlier, interrupted save had already written (0 for a fresh
    /// one).
    pub resumed_from: u64,
}

/// What [`Client::send_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentFile {
    /// The announcing message's seq.
    pub seq: Seq,
    /// Bytes of the blob the relay already held from an interrupted upload of the same
    /// file (0 for a fresh one).
    pub resumed_from: u64,
}

/// An upload under way, kept in [`Table::Uploads`] so that it goes on after a restart.
/// The file is the same one when its path, size and modification time are.
///
/// The table is bounded: a new upload first drops the records older than
/// [`UPLOAD_KEPT_SECS`] (by then the relay has swept what they began), those it cannot
/// read, and all but the newest [`MAX_UPLOADS_KEPT`], so uploads that failed or were
/// given up do not pile up, nor keep their file keys.
#[derive(Serialize, Deserialize)]
struct Upload {
    blob: BlobId,
    key: FileKey,
    size: u64,
    modified_ns: u128,
    /// When it began, seconds since the Unix epoch.
    started: u64,
}

/// How long an interrupted upload can be taken up again: two days, beyond the relay's
/// day before it deletes an unfinished upload.
const UPLOAD_KEPT_SECS: u64 = 2 * 24 * 3600;
/// Records of interrupted uploads kept at most.
const MAX_UPLOADS_KEPT: usize = 64;

/// Deletes (in `batch`) the upload records that [`Upload`] says go, as of `now`.
fn prune_uploads(
    store: &crate::store::EncryptedStore,
    batch: &mut crate::store::WriteBatch<'_>,
    now: u64,
) -> Result<(), ClientError> {
    let mut kept = Vec::new();
    for (key, value) in store.scan(Table::Uploads, &[]).map_err(store_err)? {
        match postcard::from_bytes::<Upload>(&value) {
            Ok(upload) if upload.started.saturating_add(UPLOAD_KEPT_SECS) > now => {
                kept.push((upload.started, key))
            }
            _ => batch.delete(Table::Uploads, &key).map_err(store_err)?,
        }
    }
    // Room for the one about to be added.
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    for (_, key) in kept.into_iter().skip(MAX_UPLOADS_KEPT.saturating_sub(1)) {
        batch.delete(Table::Uploads, &key).map_err(store_err)?;
    }
    Ok(())
}

/// The [`Table::Uploads`] key of `path` sent to `room`.
fn upload_key(room: RoomId, path: &Path) -> Vec<u8> {
    use sha2::Digest as _;
    let mut key = room.0.to_vec();
    key.extend_from_slice(&sha2::Sha256::digest(path.as_os_str().as_encoded_bytes()));
    key
}

fn modified_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Attachment(AttachmentError::from(e))
}

fn joined(e: tokio::task::JoinError) -> ClientError {
    ClientError::Other(format!("a file task failed: {e}"))
}

impl Client {
    /// Sends the file at `path` to `room`: sealed under a fresh key, uploaded, then
    /// announced with `caption`. `progress` is told after every piece the relay stored.
    ///
    /// An upload of the same file (path, size and modification time) to the same room
    /// that an earlier run began and did not finish goes on from what the relay holds,
    /// under the blob id and key it began with.
    pub async fn send_file(
        &self,
        room: RoomId,
        path: &Path,
        caption: Option<String>,
        progress: Progress<'_>,
    ) -> Result<SentFile, ClientError> {
        self.inner
            .send_file(room, path, caption, progress)
            .named(&self.inner)
            .await
    }

    /// Saves the file whose id (as shown with its message) is `id` into `dir`: fetched,
    /// opened and checked, then written under its own name made safe (with a number added
    /// when that name is taken). `progress` is told after every piece fetched.
    ///
    /// The file is written to a hidden `.part` file in `dir` first. One that an earlier,
    /// interrupted save left there is gone on from (its whole chunks are hashed again);
    /// it is removed only when the file is refused (altered, cut short, not matching).
    pub async fn save_file(
        &self,
        id: &str,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<SavedFile, ClientError> {
        self.save_file_in(None, id, dir, progress).await
    }

    /// [`Client::save_file`] among the files of `room` only, when given: an id found in
    /// several rooms (a member of one copied a file's id there) names no file until the
    /// room is given. [`ClientError::NoSuchFile`] when `room` has no file with that id.
    pub async fn save_file_in(
        &self,
        room: Option<RoomId>,
        id: &str,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<SavedFile, ClientError> {
        self.inner
            .save_file(room, id, dir, progress)
            .named(&self.inner)
            .await
    }
}

/// The one file `id` names (in `room` when given) among `found` (from
/// [`crate::history::find_files`]).
pub fn one_file(
    mut found: Vec<(RoomId, Seq, FileMessage)>,
    room: Option<RoomId>,
    id: &str,
) -> Result<(RoomId, Seq, FileMessage), ClientError> {
    if let Some(room) = room {
        found.retain(|(r, _, _)| *r == room);
    }
    match found.len() {
        0 => Err(ClientError::NoSuchFile(id.to_string())),
        1 => Ok(found.remove(0)),
        n => Err(ClientError::Other(format!(
            "{n} rooms have a file with the id {id} (a member of one may have copied it): name the room as well (hearth save|open ID --room ROOM, or /save and /open in that room's chat)"
        ))),
    }
}

impl Inner {
    /// The current epoch's capability of a room we can write to, after catching up.
    async fn current_cap(&self, room: RoomId) -> Result<Cap, ClientError> {
        let mut guard = self.usable_room(room).await?;
        self.catch_up(&mut guard).await?;
        if guard.removed {
            return Err(ClientError::RemovedFromRoom(room.into()));
        }
        self.engine().cap(&guard.group)
    }

    /// Sends `request` until it is answered, waiting for a lost connection to come back
    /// (up to [`RECONNECT_WAIT`]); a stale capability is renewed by `renew`.
    async fn call_through(
        &self,
        room: RoomId,
        mut request: impl FnMut(Cap) -> Request,
        cap: &mut Cap,
    ) -> Result<Response, ClientError> {
        let deadline = Instant::now() + RECONNECT_WAIT;
        loop {
            match self.call(request(cap.clone())).await {
                Ok(response) => return Ok(response),
                Err(e) if e.code() == Some(ErrorCode::StaleEpoch) => {
                    *cap = self.current_cap(room).await?;
                }
                Err(
                    e @ (ClientError::NotConnected
                    | ClientError::Unreachable { .. }
                    | ClientError::ClosedByRelay(_)),
                ) => {
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(RECONNECT_POLL).await;
                }
                Err(e) => return Err(room_error(room, e)),
            }
        }
    }

    async fn send_file(
        &self,
        room: RoomId,
        path: &Path,
        caption: Option<String>,
        progress: Progress<'_>,
    ) -> Result<SentFile, ClientError> {
        let cannot_read = |e: std::io::Error| {
            ClientError::Attachment(AttachmentError::Io(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let path = std::fs::canonicalize(path).map_err(cannot_read)?;
        // Before opening it: opening a named pipe would wait for a writer.
        not_a_file(&path, &std::fs::metadata(&path).map_err(cannot_read)?)?;
        let file = std::fs::File::open(&path).map_err(cannot_read)?;
        let meta = file.metadata().map_err(io)?;
        let size = meta.len();
        let mut cap = self.current_cap(room).await?;

        // An upload of this very file an earlier run began goes on (same blob, same key:
        // the same chunks), unless the relay holds another size under that id.
        let record_key = upload_key(room, &path);
        let store = self.profile.store();
        let earlier = store
            .get(Table::Uploads, &record_key)
            .map_err(store_err)?
            .and_then(|bytes| postcard::from_bytes::<Upload>(&bytes).ok())
            .filter(|u| u.size == size && u.modified_ns == modified_ns(&meta));
        let (blob, mut sealer, mut held) = match earlier {
            Some(upload) => {
                let sealer =
                    Encryptor::with_key(std::io::BufReader::new(file), size, upload.key.clone())?;
                let response = self
                    .call_through(
                        room,
                        |cap| Request::BlobStatus {
                            room,
                            cap,
                            blob: upload.blob,
                        },
                        &mut cap,
                    )
                    .await?;
                let held = match response {
                    Response::BlobStored { received, total } if total == sealer.sealed_len() => {
                        received
                    }
                    Response::BlobStored { .. } => 0,
                    other => return Err(unexpected(&other)),
                };
                (upload.blob, sealer, held)
            }
            None => {
                let sealer = Encryptor::new(std::io::BufReader::new(file), size)?;
                let upload = Upload {
                    blob: BlobId::random(),
                    key: sealer.key().clone(),
                    size,
                    modified_ns: modified_ns(&meta),
                    started: crate::contacts::now_secs(),
                };
                let bytes =
                    zeroize::Zeroizing::new(postcard::to_allocvec(&upload).map_err(store_err)?);
                let mut batch = store.begin().map_err(store_err)?;
                prune_uploads(store, &mut batch, upload.started)?;
                batch
                    .put(Table::Uploads, &record_key, &bytes)
                    .map_err(store_err)?;
                batch.commit().map_err(store_err)?;
                (upload.blob, sealer, 0)
            }
        };
        let resumed_from = held;
        let total = sealer.sealed_len();
        let mut offset = 0u64;
        progress(0, total);
        loop {
            let (back, piece) = tokio::task::spawn_blocking(move || {
                let mut piece = Vec::with_capacity(MAX_BLOB_PIECE);
                for _ in 0..CHUNKS_PER_PIECE {
                    match sealer.next_chunk(&mut piece) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => return (sealer, Err(e)),
                    }
                }
                (sealer, Ok(piece))
            })
            .await
            .map_err(joined)?;
            sealer = back;
            let piece = piece?;
            if piece.is_empty() {
                break;
            }
            let len = piece.len() as u64;
            // A piece the relay holds whole is not sent again (it was sealed anyway: the
            // hash in the message covers the whole file).
            if offset + len > held {
                let response = self
                    .call_through(
                        room,
                        |cap| Request::PutBlob {
                            room,
                            cap,
                            blob,
                            total,
                            offset,
                            data: piece.clone(),
                        },
                        &mut cap,
                    )
                    .await?;
                match response {
                    Response::BlobStored { received, .. } if received == offset + len => {}
                    // A blob the relay holds complete answers its whole size.
                    Response::BlobStored { received, .. } if received == total => held = total,
                    other => return Err(unexpected(&other)),
                }
            }
            offset += len;
            progress(offset, total);
        }
        if offset != total {
            return Err(AttachmentError::Changed.into());
        }
        let media_type = media_type_of(&name).to_string();
        let message = sealer.finish(blob, name, media_type, caption)?;
        let seq = self.send_body_settled(room, Body::File(message)).await?;
        let mut batch = store.begin().map_err(store_err)?;
        batch
            .delete(Table::Uploads, &record_key)
            .map_err(store_err)?;
        batch.commit().map_err(store_err)?;
        Ok(SentFile { seq, resumed_from })
    }

    async fn save_file(
        &self,
        in_room: Option<RoomId>,
        id: &str,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<SavedFile, ClientError> {
        let found = crate::history::find_files(self.profile.store(), id)?;
        let (room, _, file) = one_file(found, in_room, id)?;
        let mut cap = {
            let guard = self.room(room)?.lock_owned().await;
            if guard.removed {
                // Its group is evicted: no capability to fetch with (decision 0014).
                return Err(ClientError::RemovedFromRoom(room.into()));
            }
            self.engine().cap(&guard.group)?
        };
        let name = safe_file_name(&file.name);
        let part = dir.join(format!(".{name}.{}.part", file.short_id()));
        let cannot_write = |e: std::io::Error| {
            let what_to_do = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!(
                        ": create it first (mkdir -p {}) or name another directory",
                        dir.display()
                    )
                }
                std::io::ErrorKind::NotADirectory => ": name a directory to save into".into(),
                std::io::ErrorKind::PermissionDenied => {
                    ": save into a directory you can write to".into()
                }
                _ => String::new(),
            };
            ClientError::Attachment(AttachmentError::Io(format!(
                "cannot write in {}: {e}{what_to_do}",
                dir.display()
            )))
        };
        let opener = resume_part(&part, &file).map_err(cannot_write)?;
        let resumed_from = opener.written();
        let result = self.fetch_into(room, opener, &mut cap, progress).await;
        let finished = result.and_then(|()| {
            let path = place(&part, dir, &name).map_err(io)?;
            Ok(SavedFile {
                path,
                size: file.size,
                resumed_from,
            })
        });
        // A refused file goes; one cut off by the network stays to be gone on from.
        if let Err(ClientError::Attachment(_)) = finished {
            let _ = std::fs::remove_file(&part);
        }
        finished
    }

    async fn fetch_into(
        &self,
        room: RoomId,
        mut opener: Decryptor<std::io::BufWriter<std::fs::File>>,
        cap: &mut Cap,
        progress: Progress<'_>,
    ) -> Result<(), ClientError> {
        let expected = opener.sealed_len();
        let blob = opener.blob();
        let mut offset = opener.taken();
        progress(offset, expected);
        while offset < expected {
            let response = self
                .call_through(
                    room,
                    |cap| Request::GetBlob {
                        room,
                        cap,
                        blob,
                        offset,
                        len: MAX_BLOB_PIECE as u32,
                    },
                    cap,
                )
                .await?;
            let Response::Blob { total, data } = response else {
                return Err(unexpected(&response));
            };
            if total < expected || data.is_empty() {
                return Err(AttachmentError::Truncated {
                    got: total.min(offset),
                    expected,
                }
                .into());
            }
            if total > expected {
                return Err(AttachmentError::TooLong { expected }.into());
            }
            offset += data.len() as u64;
            opener = tokio::task::spawn_blocking(move || opener.push(&data).map(|()| opener))
                .await
                .map_err(joined)??;
            progress(offset, expected);
        }
        let out = tokio::task::spawn_blocking(move || opener.finish())
            .await
            .map_err(joined)??;
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)
    }
}

/// Refuses what is not a regular file, saying what to do instead: a directory (sent as
/// one archive), a device, pipe or socket (whose size says nothing of what it yields).
fn not_a_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), ClientError> {
    if meta.is_file() {
        return Ok(());
    }
    let why = if meta.is_dir() {
        "is a directory: send the files in it one by one, or pack it into one first (e.g. `tar czf photos.tar.gz DIR`)"
    } else {
        "is not a regular file (a device, pipe or socket): copy what it holds into a file and send that"
    };
    Err(ClientError::Attachment(AttachmentError::Io(format!(
        "{} {why}",
        path.display()
    ))))
}

/// A reader writing to `part`, going on after the whole chunks an interrupted save left
/// in it (the rest of it is cut off).
fn resume_part(
    part: &Path,
    file: &FileMessage,
) -> std::io::Result<Decryptor<std::io::BufWriter<std::fs::File>>> {
    use std::io::Seek as _;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(part)?;
    let have = out.metadata()?.len();
    let prefix = std::fs::File::open(part)?;
    let chunks = have / u64::from(file.chunk_size);
    let opener = Decryptor::resume(
        file,
        std::io::sink(),
        std::io::BufReader::new(prefix),
        chunks,
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let keep = opener.written();
    out.set_len(keep)?;
    out.seek(std::io::SeekFrom::Start(keep))?;
    Ok(opener.with_writer(std::io::BufWriter::new(out)))
}

/// The names a file saved as `name` in `dir` takes, in order: `dir/name`, then
/// `dir/stem (n).ext` for n from 1 (the first that nothing holds is used).
pub fn candidates<'a>(dir: &'a Path, name: &'a str) -> impl Iterator<Item = PathBuf> + 'a {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    std::iter::once(dir.join(name))
        .chain((1..=9999).map(move |n| dir.join(format!("{stem} ({n}){ext}"))))
}

/// Moves the checked `part` file to the first free name of [`candidates`] and returns
/// it. Never over anything already there, a dangling link included, even when it
/// appears meanwhile: a hard link is made (it fails if the name exists) and the part
/// file removed; where the file system has no hard links, a rename to a name nothing
/// holds.
fn place(part: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    for path in candidates(dir, name) {
        match std::fs::hard_link(part, &path) {
            Ok(()) => {
                std::fs::remove_file(part)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                if std::fs::symlink_metadata(&path).is_err() {
                    std::fs::rename(part, &path)?;
                    return Ok(path);
                }
            }
        }
    }
    Err(std::io::Error::other(format!(
        "every name for {name} is taken in {}: save into another directory",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of uploads that failed or were given up do not pile up: old and unreadable
    /// ones go, and at most [`MAX_UPLOADS_KEPT`] stay, the newest.
    #[test]
    fn upload_records_are_pruned_by_age_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::EncryptedStore::create(
            &dir.path().join("store"),
            "p",
            crate::store::KdfParams::TEST_ONLY_FAST,
        )
        .unwrap();
        let now = 10 * UPLOAD_KEPT_SECS;
        let upload = |started: u64| Upload {
            blob: BlobId::random(),
            key: FileKey::random(),
            size: 1,
            modified_ns: 0,
            started,
        };
        let mut batch = store.begin().unwrap();
        let old = postcard::to_allocvec(&upload(now - UPLOAD_KEPT_SECS)).unwrap();
        batch.put(Table::Uploads, b"old", &old).unwrap();
        batch.put(Table::Uploads, b"garbage", b"\xff").unwrap();
        for i in 0..(MAX_UPLOADS_KEPT + 5) as u64 {
            let record = postcard::to_allocvec(&upload(now - 1000 + i)).unwrap();
            batch
                .put(Table::Uploads, &i.to_be_bytes(), &record)
                .unwrap();
        }
        batch.commit().unwrap();

        let mut batch = store.begin().unwrap();
        prune_uploads(&store, &mut batch, now).unwrap();
        batch.commit().unwrap();
        let left: Vec<Vec<u8>> = store
            .scan(Table::Uploads, &[])
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        // One place is left for the upload about to be recorded.
        assert_eq!(left.len(), MAX_UPLOADS_KEPT - 1);
        let oldest_kept = (MAX_UPLOADS_KEPT + 5 - (MAX_UPLOADS_KEPT - 1)) as u64;
        let expected: Vec<Vec<u8>> = (oldest_kept..(MAX_UPLOADS_KEPT + 5) as u64)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        assert_eq!(left, expected, "the newest are kept");
    }

    #[test]
    fn a_taken_name_gets_a_number_and_nothing_is_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let part = |bytes: &[u8]| {
            let part = d.join(".part");
            std::fs::write(&part, bytes).unwrap();
            part
        };
        assert_eq!(place(&part(b"1"), d, "a.jpg").unwrap(), d.join("a.jpg"));
        assert_eq!(place(&part(b"2"), d, "a.jpg").unwrap(), d.join("a (1).jpg"));
        assert_eq!(std::fs::read(d.join("a.jpg")).unwrap(), b"1");
        assert_eq!(place(&part(b"3"), d, "notes").unwrap(), d.join("notes"));
        assert_eq!(place(&part(b"4"), d, "notes").unwrap(), d.join("notes (1)"));
        // A dangling link (`exists()` says false for it) is neither replaced nor followed.
        #[cfg(unix)]
        {
            let target = d.join("elsewhere");
            std::os::unix::fs::symlink(&target, d.join("b.txt")).unwrap();
            assert_eq!(place(&part(b"5"), d, "b.txt").unwrap(), d.join("b (1).txt"));
            assert!(!target.exists());
            assert!(std::fs::symlink_metadata(d.join("b.txt"))
                .unwrap()
                .file_type()
                .is_symlink());
        }
        assert!(!d.join(".part").exists());
    }

    #[test]
    fn a_piece_is_whole_chunks_within_the_limit() {
        assert_eq!(CHUNKS_PER_PIECE, 8);
        assert!(CHUNKS_PER_PIECE * (CHUNK_SIZE as usize + TAG_LEN) <= MAX_BLOB_PIECE);
    }
}
