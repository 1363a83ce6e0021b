//! Encrypted attachments (decision 0014): a fresh key per file, the plaintext padded to a
//! size bucket and sealed in chunks with ChaCha20-Poly1305 under age's STREAM nonces
//! (chunk index, then a last-chunk flag), and the [`FileMessage`] that carries the key
//! inside the MLS application message.
//!
//! [`Encryptor`] turns a plaintext reader into sealed chunks; [`Decryptor`] takes the
//! blob's bytes in any slicing, refuses chunks that were altered, moved, repeated or cut
//! off (saying which), and checks the plaintext's SHA-256 at the end. Neither holds more
//! than one chunk.

use std::io::{Read, Write};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use hearth_protocol::BlobId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The chunk size this client writes: 64 KiB of plaintext per chunk (as age).
pub const CHUNK_SIZE: u32 = 64 * 1024;
/// The smallest chunk size a reader accepts.
pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
/// The largest chunk size a reader accepts (bounds a reader's buffer).
pub const MAX_CHUNK_SIZE: u32 = 1024 * 1024;
/// The AEAD tag after each chunk.
pub const TAG_LEN: usize = 16;
/// The longest file name kept from a message, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The longest media type kept from a message, in bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 127;
/// The largest file a message may announce (1 TiB: far beyond any relay's limit, so
/// lengths computed from it never overflow).
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// Why a file could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// A chunk opened under no index: its bytes were changed.
    #[error(
        "chunk {chunk} of the file was altered (it does not authenticate): the download is refused"
    )]
    Tampered {
        /// The position of the chunk in the blob.
        chunk: u64,
    },
    /// A chunk belongs to a later position: the chunks were reordered.
    #[error("chunk {chunk} of the file is really chunk {belongs}: the chunks were reordered, the download is refused")]
    Reordered {
        /// The position of the chunk in the blob.
        chunk: u64,
        /// The position it was sealed for.
        belongs: u64,
    },
    /// A chunk repeats an earlier one.
    #[error("chunk {chunk} of the file repeats chunk {copy_of}: a chunk was duplicated, the download is refused")]
    Duplicated {
        /// The position of the chunk in the blob.
        chunk: u64,
        /// The earlier position it was sealed for.
        copy_of: u64,
    },
    /// The blob ended before the size its message announces.
    #[error(
        "the file was cut short: it ends after {got} of {expected} bytes; the download is refused"
    )]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The blob goes on past the size its message announces.
    #[error("the file is longer than the {expected} bytes its message announces: the download is refused")]
    TooLong {
        /// Bytes expected.
        expected: u64,
    },
    /// The padding after the plaintext is not zeros.
    #[error("the file's padding was altered: the download is refused")]
    Padding,
    /// The plaintext does not match the SHA-256 in the message.
    #[error("the file does not match the SHA-256 its sender announced: the download is refused")]
    HashMismatch,
    /// The message announces a chunk size or size this client does not accept.
    #[error("the file's message is malformed: {0}")]
    Malformed(String),
    /// The file being sent changed size while it was read.
    #[error("the file changed while it was being read: send it again once it is written")]
    Changed,
    /// Reading the file being sent, or writing the one being saved, failed.
    #[error("{0}")]
    Io(String),
}

impl From<std::io::Error> for AttachmentError {
    fn from(e: std::io::Error) -> Self {
        AttachmentError::Io(e.to_string())
    }
}

/// A file's key: 32 random bytes, used for that one file. Zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct FileKey(pub [u8; 32]);

impl FileKey {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
        Self(key)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(***)")
    }
}

/// What a file message tells the room: where the blob is, how to open it, and what it
/// is. Everything but the key is shown to people, so it is hostile display text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMessage {
    /// The blob at the relay, in the message's room.
    pub blob: BlobId,
    /// The file's key.
    pub key: FileKey,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// The plaintext's size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
    /// The file's name as its sender had it (no directories).
    pub name: String,
    /// Its media type, e.g. `image/jpeg` (guessed by the sender).
    pub media_type: String,
    /// Text sent with it.
    pub caption: Option<String>,
}

impl FileMessage {
    /// Checks what a reader relies on: a chunk size it accepts, a size it can count, and
    /// name and type of a bounded length.
    pub fn check(&self) -> Result<(), AttachmentError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(AttachmentError::Malformed(format!(
                "chunk size {} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}",
                self.chunk_size
            )));
        }
        if self.size > MAX_FILE_SIZE {
            return Err(AttachmentError::Malformed(format!(
                "size {} is too large",
                self.size
            )));
        }
        if self.name.len() > MAX_NAME_LEN || self.media_type.len() > MAX_MEDIA_TYPE_LEN {
            return Err(AttachmentError::Malformed("name or type too long".into()));
        }
        Ok(())
    }

    /// The blob's size at the relay (padded plaintext plus a tag per chunk).
    pub fn sealed_len(&self) -> u64 {
        sealed_len(self.size, self.chunk_size)
    }

    /// A short id for the file, shown to people and typed back by `save`: the first 4
    /// bytes of the blob id in hex.
    pub fn short_id(&self) -> String {
        hex::encode(&self.blob.0[..4])
    }

    /// The message's text in history: `[file ID] NAME (TYPE, SIZE)`, then `: CAPTION`.
    /// Name and type are the sender's (hostile: shown through the CLI's `inert` like any
    /// text), with line breaks and tabs replaced so the line stays one line.
    pub fn describe(&self) -> String {
        let flat = |s: &str| s.replace(['\n', '\r', '\t'], " ");
        let mut text = format!(
            "[file {}] {} ({}, {})",
            self.short_id(),
            flat(&self.name),
            flat(&self.media_type),
            human_size(self.size)
        );
        if let Some(caption) = self.caption.as_deref().filter(|c| !c.is_empty()) {
            text.push_str(": ");
            text.push_str(caption);
        }
        text
    }
}

/// A size as people read it: bytes, KiB, MiB or GiB with one decimal.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The padded length of `size` bytes: Padmé (PURBs, PETS 2019): the last
/// `floor(log2(E)) + 1` bits of the length are rounded up, `E = floor(log2(size))`, so at
/// most 12 % is added and only O(log log size) bits of the size show.
pub fn padded_len(size: u64) -> u64 {
    if size < 2 {
        return size;
    }
    let e = 63 - u64::from(size.leading_zeros());
    let s = 64 - u64::from(e.leading_zeros());
    let zero_bits = e - s;
    let mask = (1u64 << zero_bits) - 1;
    (size + mask) & !mask
}

/// The sealed length of a `size`-byte file in chunks of `chunk_size`: the padded length
/// plus a tag per chunk (an empty file is one empty chunk).
pub fn sealed_len(size: u64, chunk_size: u32) -> u64 {
    let padded = padded_len(size);
    padded + chunk_count(padded, chunk_size) * TAG_LEN as u64
}

fn chunk_count(padded: u64, chunk_size: u32) -> u64 {
    padded.div_ceil(u64::from(chunk_size)).max(1)
}

/// age's STREAM nonce: the chunk index in 11 big-endian bytes, then 1 for the last chunk.
fn nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

/// Seals a plaintext read from `R` chunk by chunk (see the module documentation).
pub struct Encryptor<R> {
    reader: R,
    key: FileKey,
    cipher: ChaCha20Poly1305,
    chunk_size: u32,
    size: u64,
    padded: u64,
    count: u64,
    next: u64,
    read: u64,
    hasher: Sha256,
}

impl<R: Read> Encryptor<R> {
    /// Seals the `size` bytes `reader` yields under a fresh key.
    pub fn new(reader: R, size: u64) -> Result<Self, AttachmentError> {
        Self::with_key(reader, size, FileKey::random())
    }

    /// Seals the `size` bytes `reader` yields under `key`: the same key and plaintext
    /// give the same chunks, so an upload interrupted by a restart goes on under the key
    /// it began with (decision 0014). Never use a key for two different plaintexts.
    pub fn with_key(reader: R, size: u64, key: FileKey) -> Result<Self, AttachmentError> {
        if size > MAX_FILE_SIZE {
            return Err(AttachmentError::Malformed(format!(
                "a file of {size} bytes is too large"
            )));
        }
        let padded = padded_len(size);
        Ok(Self {
            reader,
            cipher: key.cipher(),
            key,
            chunk_size: CHUNK_SIZE,
            size,
            padded,
            count: chunk_count(padded, CHUNK_SIZE),
            next: 0,
            read: 0,
            hasher: Sha256::new(),
        })
    }

    /// The blob's whole sealed size.
    pub fn sealed_len(&self) -> u64 {
        sealed_len(self.size, self.chunk_size)
    }

    /// The file's key (kept by a sender that may have to resume after a restart).
    pub fn key(&self) -> &FileKey {
        &self.key
    }

    /// The next sealed chunk, appended to `out`; `false` once every chunk was given.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<bool, AttachmentError> {
        if self.next >= self.count {
            return Ok(false);
        }
        let start = self.next * u64::from(self.chunk_size);
        let len = (self.padded - start).min(u64::from(self.chunk_size));
        let from = out.len();
        // `len` is at most the chunk size, a u32.
        out.resize(from + len as usize, 0);
        let real = self.size.saturating_sub(start).min(len) as usize;
        let chunk = &mut out[from..];
        self.reader.read_exact(&mut chunk[..real]).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                AttachmentError::Changed
            } else {
                e.into()
            }
        })?;
        self.read += real as u64;
        self.hasher.update(&chunk[..real]);
        let last = self.next + 1 == self.count;
        if last {
            // Whatever follows the announced size means the file grew meanwhile.
            let mut probe = [0u8; 1];
            if self.reader.read(&mut probe)? != 0 {
                return Err(AttachmentError::Changed);
            }
        }
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(self.next, last), b"", &mut out[from..])
            .map_err(|_| AttachmentError::Io("encryption failed".into()))?;
        out.extend_from_slice(&tag);
        self.next += 1;
        Ok(true)
    }

    /// Once every chunk was given: the message's secrets (key, chunk size, size, hash);
    /// the caller adds the blob id, name, type and caption.
    pub fn finish(
        self,
        blob: BlobId,
        name: String,
        media_type: String,
        caption: Option<String>,
    ) -> Result<FileMessage, AttachmentError> {
        if self.next < self.count || self.read != self.size {
            return Err(AttachmentError::Changed);
        }
        Ok(FileMessage {
            blob,
            key: self.key.clone(),
            chunk_size: self.chunk_size,
            size: self.size,
            sha256: self.hasher.finalize().into(),
            name,
            media_type,
            caption,
        })
    }
}

/// Opens a blob given in pieces of any size, writing the plaintext to `W` (see the
/// module documentation). Nothing after a refused chunk is written; the caller removes
/// what was written on an error.
pub struct Decryptor<W> {
    writer: W,
    blob: BlobId,
    cipher: ChaCha20Poly1305,
    chunk_size: u32,
    size: u64,
    padded: u64,
    sealed: u64,
    count: u64,
    next: u64,
    taken: u64,
    buf: Vec<u8>,
    hasher: Sha256,
    sha256: [u8; 32],
}

impl<W: Write> Decryptor<W> {
    /// A reader for the blob `file` describes.
    pub fn new(file: &FileMessage, writer: W) -> Result<Self, AttachmentError> {
        file.check()?;
        let padded = padded_len(file.size);
        Ok(Self {
            writer,
            blob: file.blob,
            cipher: file.key.cipher(),
            chunk_size: file.chunk_size,
            size: file.size,
            padded,
            sealed: file.sealed_len(),
            count: chunk_count(padded, file.chunk_size),
            next: 0,
            taken: 0,
            buf: Vec::new(),
            hasher: Sha256::new(),
            sha256: file.sha256,
        })
    }

    /// A reader that goes on after a saved prefix: `prefix` yields the plaintext of the
    /// first `chunks` chunks (as an earlier reader wrote them after they authenticated),
    /// which is hashed again; the blob is then taken from the sealed offset of chunk
    /// `chunks` ([`Decryptor::taken`]). At most every chunk but the last is skipped.
    pub fn resume(
        file: &FileMessage,
        writer: W,
        mut prefix: impl Read,
        chunks: u64,
    ) -> Result<Self, AttachmentError> {
        let mut reader = Self::new(file, writer)?;
        let chunks = chunks.min(reader.count - 1);
        let mut buf = vec![0u8; reader.chunk_size as usize];
        for index in 0..chunks {
            let start = index * u64::from(reader.chunk_size);
            // Only whole chunks of real bytes are skipped: the last one holds the padding.
            let real = reader
                .size
                .saturating_sub(start)
                .min(u64::from(reader.chunk_size)) as usize;
            if real < buf.len() {
                break;
            }
            prefix.read_exact(&mut buf[..real])?;
            reader.hasher.update(&buf[..real]);
            reader.taken += reader.sealed_chunk_len(index) as u64;
            reader.next += 1;
        }
        Ok(reader)
    }

    /// The same reader, writing to `writer` from now on.
    pub fn with_writer<V: Write>(self, writer: V) -> Decryptor<V> {
        Decryptor {
            writer,
            blob: self.blob,
            cipher: self.cipher,
            chunk_size: self.chunk_size,
            size: self.size,
            padded: self.padded,
            sealed: self.sealed,
            count: self.count,
            next: self.next,
            taken: self.taken,
            buf: self.buf,
            hasher: self.hasher,
            sha256: self.sha256,
        }
    }

    /// The blob this reader opens.
    pub fn blob(&self) -> BlobId {
        self.blob
    }

    /// Plaintext bytes written so far (whole chunks).
    pub fn written(&self) -> u64 {
        (self.next * u64::from(self.chunk_size)).min(self.size)
    }

    /// The blob's expected sealed size.
    pub fn sealed_len(&self) -> u64 {
        self.sealed
    }

    /// Bytes of the blob taken so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    fn sealed_chunk_len(&self, index: u64) -> usize {
        let start = index * u64::from(self.chunk_size);
        // At most the chunk size (a u32) plus the tag.
        (self.padded - start).min(u64::from(self.chunk_size)) as usize + TAG_LEN
    }

    /// Takes the next bytes of the blob.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), AttachmentError> {
        if self.taken + data.len() as u64 > self.sealed {
            return Err(AttachmentError::TooLong {
                expected: self.sealed,
            });
        }
        self.taken += data.len() as u64;
        while !data.is_empty() {
            let want = self.sealed_chunk_len(self.next) - self.buf.len();
            let take = want.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if take == want {
                self.open_chunk()?;
            }
        }
        Ok(())
    }

    fn open_chunk(&mut self) -> Result<(), AttachmentError> {
        let index = self.next;
        let last = index + 1 == self.count;
        let mut chunk = std::mem::take(&mut self.buf);
        // On failure the buffer is left as it was (the tag is checked first).
        if self
            .cipher
            .decrypt_in_place(&nonce(index, last), b"", &mut chunk)
            .is_err()
        {
            return Err(self.diagnose(index, &chunk));
        }
        let start = index * u64::from(self.chunk_size);
        let real = self.size.saturating_sub(start).min(chunk.len() as u64) as usize;
        if chunk[real..].iter().any(|&b| b != 0) {
            return Err(AttachmentError::Padding);
        }
        self.hasher.update(&chunk[..real]);
        self.writer.write_all(&chunk[..real])?;
        self.next += 1;
        chunk.clear();
        self.buf = chunk;
        Ok(())
    }

    /// Why the chunk at `index` did not open: it opens at another index, or nowhere.
    fn diagnose(&self, index: u64, sealed: &[u8]) -> AttachmentError {
        for other in (0..self.count).filter(|&i| i != index) {
            let mut trial = sealed.to_vec();
            if self
                .cipher
                .decrypt_in_place(&nonce(other, other + 1 == self.count), b"", &mut trial)
                .is_ok()
            {
                return if other < index {
                    AttachmentError::Duplicated {
                        chunk: index,
                        copy_of: other,
                    }
                } else {
                    AttachmentError::Reordered {
                        chunk: index,
                        belongs: other,
                    }
                };
            }
        }
        AttachmentError::Tampered { chunk: index }
    }

    /// After the whole blob: checks that nothing is missing and that the plaintext
    /// matches its SHA-256; returns the writer.
    pub fn finish(mut self) -> Result<W, AttachmentError> {
        if self.next < self.count {
            return Err(AttachmentError::Truncated {
                got: self.taken,
                expected: self.sealed,
            });
        }
        let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &self.sha256[..])) {
            return Err(AttachmentError::HashMismatch);
        }
        self.writer.flush()?;
        Ok(self.writer)
    }
}

/// The longest name [`safe_file_name`] gives, in bytes: room left under the file
/// systems' 255-byte limit for the hidden `.NAME.ID.part` file a save writes first and
/// for the ` (n)` added when a name is taken.
pub const MAX_SAVED_NAME_LEN: usize = 200;

/// A file name safe to create in a directory, from a name another person chose: its last
/// path component, without control, bidi, invisible or path characters, no leading dot,
/// at most [`MAX_SAVED_NAME_LEN`] bytes (a long name loses the end of its stem, not its
/// extension); `file` when nothing is left.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out = String::new();
    for c in last.chars() {
        let bad = c.is_control()
            || matches!(c, '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
                | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}'
                | ':' | '*' | '?' | '"' | '<' | '>' | '|');
        out.push(if bad { '_' } else { c });
    }
    let trimmed = out.trim().trim_start_matches('.');
    if trimmed.is_empty() {
        return "file".into();
    }
    if trimmed.len() <= MAX_SAVED_NAME_LEN {
        return trimmed.to_string();
    }
    // A short extension stays, so that the file still opens with its program.
    let (stem, ext) = match trimmed.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 16 => (stem, &trimmed[stem.len()..]),
        _ => (trimmed, ""),
    };
    let mut cut = MAX_SAVED_NAME_LEN - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", stem[..cut].trim_end())
}

/// A media type guessed from a file name's extension (the common family files), or
/// `application/octet-stream`.
pub fn media_type_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" => "audio/ogg",
        "zip" => "application/zip",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "odt" => "application/vnd.oasis.opendocument.text",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seal(plain: &[u8]) -> (FileMessage, Vec<u8>) {
        let mut enc = Encryptor::new(plain, plain.len() as u64).unwrap();
        let mut blob = Vec::new();
        while enc.next_chunk(&mut blob).unwrap() {}
        assert_eq!(blob.len() as u64, enc.sealed_len());
        let file = enc
            .finish(BlobId([1; 16]), "a.bin".into(), "x/y".into(), None)
            .unwrap();
        (file, blob)
    }

    fn open(file: &FileMessage, blob: &[u8], piece: usize) -> Result<Vec<u8>, AttachmentError> {
        let mut dec = Decryptor::new(file, Vec::new())?;
        for part in blob.chunks(piece.max(1)) {
            dec.push(part)?;
        }
        dec.finish()
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    const C: usize = CHUNK_SIZE as usize + TAG_LEN;

    #[test]
    fn the_same_key_seals_the_same_chunks_so_an_upload_can_resume() {
        let plain = sample(5 * CHUNK_SIZE as usize + 17);
        let mut first = Encryptor::new(&plain[..], plain.len() as u64).unwrap();
        let key = first.key().clone();
        let mut a = Vec::new();
        while first.next_chunk(&mut a).unwrap() {}
        let mut again = Encryptor::with_key(&plain[..], plain.len() as u64, key).unwrap();
        let mut b = Vec::new();
        while again.next_chunk(&mut b).unwrap() {}
        assert!(
            a == b,
            "a resumed upload would not fit what the relay holds"
        );
    }

    #[test]
    fn a_download_resumes_after_its_saved_prefix() {
        let plain = sample(5 * CHUNK_SIZE as usize + 17);
        let (file, blob) = seal(&plain);
        for chunks in [0u64, 1, 3, 5, 99] {
            let mut dec = Decryptor::resume(&file, Vec::new(), &plain[..], chunks).unwrap();
            let skipped = dec.written() as usize;
            assert_eq!(skipped, (chunks.min(5) as usize) * CHUNK_SIZE as usize);
            dec.push(&blob[dec.taken() as usize..]).unwrap();
            let rest = dec.finish().unwrap();
            assert!(rest[..] == plain[skipped..], "{chunks}");
        }
        // A saved prefix that is not what the sender sent fails the hash at the end.
        let mut wrong = plain.clone();
        wrong[10] ^= 1;
        let mut dec = Decryptor::resume(&file, Vec::new(), &wrong[..], 2).unwrap();
        dec.push(&blob[dec.taken() as usize..]).unwrap();
        assert_eq!(dec.finish().unwrap_err(), AttachmentError::HashMismatch);
    }

    #[test]
    fn a_file_comes_back_whole() {
        for len in [0, 1, 100, CHUNK_SIZE as usize, 3 * CHUNK_SIZE as usize + 5] {
            let plain = sample(len);
            let (file, blob) = seal(&plain);
            assert_eq!(file.sha256, <[u8; 32]>::from(Sha256::digest(&plain)));
            assert!(blob.len() as u64 >= padded_len(len as u64));
            for piece in [1000, C, 512 * 1024] {
                assert_eq!(open(&file, &blob, piece).unwrap(), plain, "len {len}");
            }
        }
    }

    #[test]
    fn padme_adds_at_most_twelve_percent_and_hides_low_bits() {
        assert_eq!(padded_len(0), 0);
        assert_eq!(padded_len(9), 10);
        assert_eq!(padded_len(1_000_000), 1_015_808);
        for size in [3u64, 100, 1_000, 65_537, 20 << 20, 100 << 20, MAX_FILE_SIZE] {
            let p = padded_len(size);
            assert!(
                p >= size && p - size <= size * 12 / 100 + 1,
                "{size} -> {p}"
            );
        }
        // Sizes near each other share a bucket.
        assert_eq!(padded_len(20_000_001), padded_len(20_100_000));
    }

    #[test]
    fn a_tampered_chunk_is_refused() {
        let (file, mut blob) = seal(&sample(3 * CHUNK_SIZE as usize));
        blob[C + 10] ^= 1;
        let e = open(&file, &blob, 4096).unwrap_err();
        assert_eq!(e, AttachmentError::Tampered { chunk: 1 });
        assert!(e.to_string().contains("altered"));
    }

    #[test]
    fn reordered_chunks_are_refused() {
        let (file, blob) = seal(&sample(3 * CHUNK_SIZE as usize));
        let mut swapped = blob[C..2 * C].to_vec();
        swapped.extend_from_slice(&blob[..C]);
        swapped.extend_from_slice(&blob[2 * C..]);
        let e = open(&file, &swapped, C).unwrap_err();
        assert_eq!(
            e,
            AttachmentError::Reordered {
                chunk: 0,
                belongs: 1
            }
        );
        assert!(e.to_string().contains("reordered"));
    }

    #[test]
    fn a_duplicated_chunk_is_refused() {
        let (file, blob) = seal(&sample(3 * CHUNK_SIZE as usize));
        let mut dup = blob[..C].to_vec();
        dup.extend_from_slice(&blob[..C]);
        dup.extend_from_slice(&blob[2 * C..]);
        let e = open(&file, &dup, 777).unwrap_err();
        assert_eq!(
            e,
            AttachmentError::Duplicated {
                chunk: 1,
                copy_of: 0
            }
        );
        assert!(e.to_string().contains("duplicated"));
    }

    #[test]
    fn a_truncated_blob_is_refused() {
        let (file, blob) = seal(&sample(3 * CHUNK_SIZE as usize));
        // Cut at a chunk boundary: every chunk left opens, the end is missing.
        let e = open(&file, &blob[..2 * C], C).unwrap_err();
        assert!(matches!(e, AttachmentError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("cut short"));
        // A dropped middle chunk with the tail kept: the last chunk is out of place.
        let mut dropped = blob[..C].to_vec();
        dropped.extend_from_slice(&blob[2 * C..]);
        assert!(open(&file, &dropped, C).is_err());
        // Extra bytes after the end.
        let mut long = blob.clone();
        long.push(0);
        assert!(matches!(
            open(&file, &long, C),
            Err(AttachmentError::TooLong { .. })
        ));
    }

    #[test]
    fn a_wrong_hash_or_key_is_refused() {
        let (mut file, blob) = seal(&sample(1000));
        file.sha256[0] ^= 1;
        assert_eq!(open(&file, &blob, C), Err(AttachmentError::HashMismatch));
        file.sha256[0] ^= 1;
        file.key = FileKey::random();
        assert_eq!(
            open(&file, &blob, C),
            Err(AttachmentError::Tampered { chunk: 0 })
        );
    }

    #[test]
    fn a_file_that_changes_while_sealed_is_refused() {
        let plain = sample(1000);
        let mut enc = Encryptor::new(&plain[..], 2000).unwrap();
        assert_eq!(
            enc.next_chunk(&mut Vec::new()),
            Err(AttachmentError::Changed)
        );
        let mut enc = Encryptor::new(&plain[..], 500).unwrap();
        assert_eq!(
            enc.next_chunk(&mut Vec::new()),
            Err(AttachmentError::Changed)
        );
    }

    #[test]
    fn the_key_is_never_printed() {
        let (file, _) = seal(b"secret");
        let shown = format!("{file:?}");
        assert!(shown.contains("FileKey(***)"), "{shown}");
        assert!(!shown.contains(&format!("{:?}", file.key.0)));
    }

    #[test]
    fn names_from_others_become_safe_file_names() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("C:\\x\\photo.jpg"), "photo.jpg");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(
            safe_file_name("a\u{1b}[2Jb\u{202e}gpj.exe"),
            "a_[2Jb_gpj.exe"
        );
        assert_eq!(safe_file_name(".."), "file");
        assert_eq!(safe_file_name(""), "file");
        assert!(safe_file_name(&"é".repeat(300)).len() <= MAX_SAVED_NAME_LEN);
        // Invisible characters that inert shows escaped are gone from names on disk too.
        assert_eq!(
            safe_file_name("a\u{2028}b\u{2066}c\u{ad}d\u{e0041}.pdf"),
            "a_b_c_d_.pdf"
        );
        // The longest name a message may carry still leaves room for `.NAME.ID.part`
        // and ` (n)` under 255 bytes, and keeps its extension.
        let long = safe_file_name(&format!("{}.jpg", "x".repeat(MAX_NAME_LEN - 4)));
        assert_eq!(long.len(), MAX_SAVED_NAME_LEN);
        assert!(long.ends_with("xx.jpg"), "{long}");
        let wide = safe_file_name(&format!("{}.pdf", "é".repeat(125)));
        assert!(
            wide.len() <= MAX_SAVED_NAME_LEN && wide.ends_with("é.pdf"),
            "{wide}"
        );
    }

    #[test]
    fn bad_messages_are_refused_before_reading() {
        let (mut file, _) = seal(b"x");
        file.chunk_size = 1;
        assert!(matches!(
            Decryptor::new(&file, Vec::new()),
            Err(AttachmentError::Malformed(_))
        ));
        file.chunk_size = CHUNK_SIZE;
        file.size = u64::MAX;
        assert!(Decryptor::new(&file, Vec::new()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_size_round_trips(len in 0usize..300_000, piece in 1usize..100_000) {
            let plain = sample(len);
            let (file, blob) = seal(&plain);
            prop_assert_eq!(open(&file, &blob, piece).unwrap(), plain);
        }

        #[test]
        fn any_single_byte_flip_is_refused(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (file, mut blob) = seal(&sample(2 * CHUNK_SIZE as usize + 9));
            let i = pos.index(blob.len());
            blob[i] ^= 1 << bit;
            prop_assert!(open(&file, &blob, 50_000).is_err());
        }
    }
}
