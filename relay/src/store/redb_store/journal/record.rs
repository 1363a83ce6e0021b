//! One journal record: the writes redb made to its file between two syncs, checksummed.
//!
//! Shape (little-endian), starting on a [`ALIGN`] boundary of a journal file:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | [`MAGIC`] for a record of writes, [`BARRIER_MAGIC`] for a barrier |
//! | 4 | CRC-32 (IEEE) of every byte after it up to the end of the writes |
//! | 8 | generation: chosen at random each time the store is opened |
//! | 8 | seq: 1 for the first record of a generation, then one more per record |
//! | 8 | the length of redb's file when the record was made |
//! | 4 | body length in bytes |
//! | body | writes, each an offset (8), a length (4) and that many bytes |
//!
//! then zeros up to the next [`ALIGN`] boundary, so that appending the next record never
//! rewrites a block holding this one. A barrier has no writes: it says that redb's file was
//! synced after every record before it, which must then not be written again.

/// The first four bytes of a record of writes.
pub const MAGIC: u32 = u32::from_le_bytes(*b"HJR1");
/// The first four bytes of a barrier.
pub const BARRIER_MAGIC: u32 = u32::from_le_bytes(*b"HJB1");
/// Bytes before the body.
pub const HEADER_LEN: usize = 36;
/// Records start on multiples of this (the page size of redb and of the disks it runs on).
pub const ALIGN: usize = 4096;
/// Bytes a write takes in the body besides its data.
const WRITE_HEADER_LEN: usize = 12;

/// The writes of one commit, gathered as redb makes them, up to a bound in bytes, behind
/// room for the header: [`Pending::seal`] makes the record where they lie, without a
/// second copy.
#[derive(Debug, Default)]
pub struct Pending {
    /// Empty, or [`HEADER_LEN`] bytes for the header and then the body (and, once
    /// sealed, the padding).
    bytes: Vec<u8>,
    /// Where the body ends in `bytes` (0 while empty).
    body_end: usize,
    /// More was written than the bound: the writes are not kept, and the sync that ends
    /// them must go to redb's file itself.
    overflowed: bool,
    /// Something was written or the file's length was set since the last sync.
    touched: bool,
}

impl Pending {
    /// Adds a write of `data` at `offset` of redb's file, unless the body would pass
    /// `limit` bytes (then the whole commit overflows).
    pub fn push(&mut self, offset: u64, data: &[u8], limit: usize) {
        self.touched = true;
        if self.overflowed {
            return;
        }
        if self.body().len() + WRITE_HEADER_LEN + data.len() > limit {
            self.overflowed = true;
            self.bytes = Vec::new();
            self.body_end = 0;
            return;
        }
        self.reopen();
        self.bytes.extend_from_slice(&offset.to_le_bytes());
        // Below `limit`, which is far below 4 GiB.
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
        self.body_end = self.bytes.len();
    }

    /// Notes that the file's length was set (the record carries it).
    pub fn touch(&mut self) {
        self.touched = true;
    }

    /// Whether anything changed since the last [`Pending::clear`].
    pub fn is_touched(&self) -> bool {
        self.touched
    }

    /// Whether the writes passed the bound.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The body of the record these writes make.
    pub fn body(&self) -> &[u8] {
        self.bytes.get(HEADER_LEN..self.body_end).unwrap_or(&[])
    }

    /// The record of these writes, padded to [`ALIGN`], made in place.
    pub fn seal(&mut self, stamp: Stamp, file_len: u64) -> &[u8] {
        self.reopen();
        let body_len = self.body_end - HEADER_LEN;
        finish(&mut self.bytes, false, stamp, file_len, body_len);
        &self.bytes
    }

    /// Drops a seal's padding, or makes room for the header if nothing was written yet:
    /// `bytes` then ends where the body does.
    fn reopen(&mut self) {
        self.bytes.truncate(self.body_end);
        if self.bytes.is_empty() {
            self.bytes.resize(HEADER_LEN, 0);
            self.body_end = HEADER_LEN;
        }
    }

    /// Forgets the writes (they are synced), giving back memory a large commit took.
    pub fn clear(&mut self, keep_bytes: usize) {
        self.bytes.clear();
        self.body_end = 0;
        if self.bytes.capacity() > keep_bytes {
            self.bytes = Vec::new();
        }
        self.overflowed = false;
        self.touched = false;
    }
}

/// The length a record with a body of `body_len` bytes takes in a journal file.
pub fn aligned_len(body_len: usize) -> usize {
    (HEADER_LEN + body_len).div_ceil(ALIGN) * ALIGN
}

/// What places a record: the opening of the store it was made in, its seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Chosen at random when the store was opened.
    pub generation: u64,
    /// From 1 within a generation.
    pub seq: u64,
}

/// Encodes a record into `out` (cleared first), padded to [`ALIGN`]: a barrier when
/// `barrier`, and then `body` must be empty.
pub fn encode(out: &mut Vec<u8>, barrier: bool, stamp: Stamp, file_len: u64, body: &[u8]) {
    out.clear();
    out.resize(HEADER_LEN, 0);
    out.extend_from_slice(body);
    finish(out, barrier, stamp, file_len, body.len());
}

/// Fills the header of `bytes` ([`HEADER_LEN`] bytes, then a body of `body_len`), its
/// checksum last, and pads it with zeros to [`ALIGN`].
fn finish(bytes: &mut Vec<u8>, barrier: bool, stamp: Stamp, file_len: u64, body_len: usize) {
    let magic = if barrier { BARRIER_MAGIC } else { MAGIC };
    bytes[0..4].copy_from_slice(&magic.to_le_bytes());
    bytes[8..16].copy_from_slice(&stamp.generation.to_le_bytes());
    bytes[16..24].copy_from_slice(&stamp.seq.to_le_bytes());
    bytes[24..32].copy_from_slice(&file_len.to_le_bytes());
    // The caller bounds bodies far below 4 GiB.
    bytes[32..36].copy_from_slice(&(body_len as u32).to_le_bytes());
    let crc = crc32fast::hash(&bytes[8..HEADER_LEN + body_len]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    bytes.resize(aligned_len(body_len), 0);
}

/// The fixed fields of a record, read before its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Whether it is a barrier.
    pub barrier: bool,
    /// The opening and place of the record.
    pub stamp: Stamp,
    /// The length of redb's file after the writes.
    pub file_len: u64,
    /// Bytes of writes after the header.
    pub body_len: usize,
    crc: u32,
}

impl Header {
    /// Reads a header; `None` where none starts (zeros, another record's middle, a torn
    /// write).
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Option<Header> {
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
        let barrier = match u32_at(0) {
            MAGIC => false,
            BARRIER_MAGIC => true,
            _ => return None,
        };
        Some(Header {
            barrier,
            crc: u32_at(4),
            stamp: Stamp {
                generation: u64_at(8),
                seq: u64_at(16),
            },
            file_len: u64_at(24),
            body_len: u32_at(32) as usize,
        })
    }

    /// The writes of `body` if it is this header's and whole (checksum and shape);
    /// `None` otherwise.
    pub fn writes<'b>(
        &self,
        header: &[u8; HEADER_LEN],
        body: &'b [u8],
    ) -> Option<Vec<(u64, &'b [u8])>> {
        if body.len() != self.body_len || (self.barrier && !body.is_empty()) {
            return None;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[8..]);
        crc.update(body);
        if crc.finalize() != self.crc {
            return None;
        }
        let mut writes = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (offset, tail) = rest.split_at_checked(8)?;
            let (len, tail) = tail.split_at_checked(4)?;
            let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
            let (data, tail) = tail.split_at_checked(len)?;
            writes.push((u64::from_le_bytes(offset.try_into().ok()?), data));
            rest = tail;
        }
        Some(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        generation: 7,
        seq: 3,
    };

    fn record(body_writes: &[(u64, &[u8])]) -> Vec<u8> {
        let mut pending = Pending::default();
        for (offset, data) in body_writes {
            pending.push(*offset, data, 1 << 20);
        }
        let mut out = Vec::new();
        encode(&mut out, false, STAMP, 8192, pending.body());
        out
    }

    type Writes = Vec<(u64, Vec<u8>)>;

    fn parse(bytes: &[u8]) -> Option<(Header, Writes)> {
        let header_bytes: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        let header = Header::parse(header_bytes)?;
        let body = bytes.get(HEADER_LEN..HEADER_LEN + header.body_len)?;
        let writes = header.writes(header_bytes, body)?;
        Some((
            header,
            writes.into_iter().map(|(o, d)| (o, d.to_vec())).collect(),
        ))
    }

    #[test]
    fn a_record_reads_back_as_written_and_fills_whole_blocks() {
        let bytes = record(&[(0, b"header"), (4096 * 9, &[0xab; 5000])]);
        assert_eq!(bytes.len(), 2 * ALIGN);
        let (header, writes) = parse(&bytes).expect("a whole record");
        assert_eq!(
            (header.stamp, header.file_len, header.barrier),
            (STAMP, 8192, false)
        );
        assert_eq!(
            writes,
            vec![(0, b"header".to_vec()), (4096 * 9, vec![0xab; 5000])]
        );
    }

    #[test]
    fn any_changed_byte_or_a_torn_end_makes_no_record() {
        let bytes = record(&[(4096, &[1; 300]), (8192, &[2; 40])]);
        let used = HEADER_LEN + 12 + 300 + 12 + 40;
        for i in 0..used {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(parse(&bad).is_none(), "byte {i} changed");
        }
        for cut in 0..used {
            let mut torn = bytes.clone();
            torn[cut..].fill(0);
            assert!(parse(&torn).is_none(), "zeros from byte {cut}");
        }
        assert!(parse(&[0; ALIGN]).is_none());
    }

    #[test]
    fn a_barrier_reads_back_as_one_and_holds_no_writes() {
        let mut bytes = Vec::new();
        encode(&mut bytes, true, STAMP, 4096, &[]);
        assert_eq!(bytes.len(), ALIGN);
        let (header, writes) = parse(&bytes).expect("a barrier");
        assert!(header.barrier && writes.is_empty());
        assert_eq!(header.stamp, STAMP);
    }

    #[test]
    fn a_record_sealed_in_place_is_the_encoded_one_however_often_sealed() {
        let mut pending = Pending::default();
        pending.push(4096, &[7; 100], 1 << 20);
        let first = pending.seal(STAMP, 8192).to_vec();
        assert_eq!(pending.seal(STAMP, 8192), first.as_slice());
        pending.push(8192, &[9; 10], 1 << 20);
        let mut expected = Vec::new();
        encode(&mut expected, false, STAMP, 8192, pending.body());
        assert_eq!(pending.seal(STAMP, 8192), expected.as_slice());
        let (_, writes) = parse(&expected).expect("a whole record");
        assert_eq!(writes, vec![(4096, vec![7; 100]), (8192, vec![9; 10])]);
    }

    #[test]
    fn a_commit_past_the_bound_keeps_no_writes() {
        let mut pending = Pending::default();
        pending.push(0, &[0; 100], 200);
        assert!(!pending.overflowed());
        pending.push(4096, &[0; 100], 200);
        assert!(pending.overflowed() && pending.body().is_empty() && pending.is_touched());
        pending.clear(0);
        assert!(!pending.overflowed() && !pending.is_touched());
    }
}
