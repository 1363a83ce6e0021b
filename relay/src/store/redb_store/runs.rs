//! Room entries as the `entries` table holds them (decision 0018): under each key (room
//! id ++ big-endian seq) either the one entry at that seq, or a run of consecutive
//! messages that one group commit appended to the room, the first at the key's seq.
//!
//! A busy room's batch of 100 appends is then one B-tree insert of about 100 KiB instead
//! of 100 inserts of 1 KiB (issue 15, k=1); a quiet room's entries are stored one per key,
//! as before runs existed. A run holds messages only, and its value at most
//! [`MAX_RUN_BYTES`] (a read or a sweep never holds more of one room at a time); a
//! commit is always alone under its key, beside its row in `commit_caps`.

use super::*;

/// The most bytes the value of a run takes: a message that would take a run past it
/// starts the next (a message larger than this is a run of its own). redb gives a leaf
/// holding a value larger than its 4 KiB page a page of the next power of two; a value of
/// this size and its key (24 bytes) and the leaf's header and offsets (12 bytes) fill a
/// 64 KiB page exactly, where one byte more would take a page of 128 KiB, half of it
/// written for nothing at every commit.
pub(super) const MAX_RUN_BYTES: usize = 64 * 1024 - 36;

/// The bytes postcard takes for `n` as a varint.
fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// The bytes the header of a run of `count` entries takes: the variant and the count.
fn run_header_len(count: usize) -> usize {
    varint_len(u64::from(RUN_VARIANT)) + varint_len(count as u64)
}

/// A value of the `entries` table, borrowing the stored bytes.
///
/// postcard writes an enum as its variant index (a varint) and then the variant's
/// fields, so `Message` and `Commit` are byte for byte what stores of format 4 and
/// earlier wrote for an entry of that kind (`EntryKind` then time then payload): those
/// stores read unchanged.
#[derive(Serialize, Deserialize)]
enum StoredValue<'a> {
    Message(#[serde(borrow)] RunEntry<'a>),
    Commit(#[serde(borrow)] RunEntry<'a>),
    /// Two or more consecutive messages, oldest first.
    Run(#[serde(borrow)] Vec<RunEntry<'a>>),
}

/// One entry of a value: when the relay stored it (Unix seconds) and its payload.
#[derive(Serialize, Deserialize)]
struct RunEntry<'a> {
    time: u64,
    #[serde(borrow, with = "serde_bytes")]
    payload: &'a [u8],
}

/// The variant index postcard writes for [`StoredValue::Run`].
const RUN_VARIANT: u32 = 2;

/// One stored entry, its payload borrowed from the value it was read from.
pub(super) struct StoredRef<'a> {
    pub seq: u64,
    pub kind: EntryKind,
    /// Unix seconds, when the relay stored it.
    pub time: u64,
    pub payload: &'a [u8],
}

/// The entries a value of the `entries` table holds, the first at `first` (the seq of
/// its key). Errors: [`StoreError::Corrupt`] for bytes that are not a stored value.
pub(super) fn entries_of(first: u64, bytes: &[u8]) -> Result<Vec<StoredRef<'_>>, StoreError> {
    let value: StoredValue<'_> = decode_borrowed(bytes)?;
    fn at(first: u64, i: usize, kind: EntryKind, e: RunEntry<'_>) -> StoredRef<'_> {
        StoredRef {
            seq: first.saturating_add(i as u64),
            kind,
            time: e.time,
            payload: e.payload,
        }
    }
    Ok(match value {
        StoredValue::Message(e) => vec![at(first, 0, EntryKind::Message, e)],
        StoredValue::Commit(e) => vec![at(first, 0, EntryKind::Commit, e)],
        StoredValue::Run(run) => run
            .into_iter()
            .enumerate()
            .map(|(i, e)| at(first, i, EntryKind::Message, e))
            .collect(),
    })
}

/// How many entries a stored value holds, reading only its first bytes.
pub(super) fn entries_in(bytes: &[u8]) -> Result<u64, StoreError> {
    let (variant, rest) = postcard::take_from_bytes::<u32>(bytes).map_err(corrupt)?;
    if variant != RUN_VARIANT {
        return Ok(1);
    }
    let (count, _) = postcard::take_from_bytes::<usize>(rest).map_err(corrupt)?;
    Ok(count as u64)
}

/// The stored value of one entry alone.
pub(super) fn single(kind: EntryKind, time: u64, payload: &[u8]) -> Result<Vec<u8>, StoreError> {
    let entry = RunEntry { time, payload };
    encode(&match kind {
        EntryKind::Message => StoredValue::Message(entry),
        EntryKind::Commit => StoredValue::Commit(entry),
    })
}

/// The stored value of `entries` (messages of consecutive seqs): a run, or a single
/// message when there is one.
pub(super) fn run_value(entries: &[StoredRef<'_>]) -> Result<Vec<u8>, StoreError> {
    let entries: Vec<RunEntry<'_>> = entries
        .iter()
        .map(|e| RunEntry {
            time: e.time,
            payload: e.payload,
        })
        .collect();
    match <[RunEntry; 1]>::try_from(entries) {
        Ok([one]) => encode(&StoredValue::Message(one)),
        Err(entries) => encode(&StoredValue::Run(entries)),
    }
}

/// The key to walk `room`'s entries from to meet `from`: the key of the value that holds
/// `from` (a run may start before it), or `from`'s own when no value of the room starts
/// at or before it.
pub(super) fn walk_start(
    entries: &impl ReadableTable<Bytes, Bytes>,
    room: &RoomId,
    from: u64,
) -> Result<Vec<u8>, StoreError> {
    let lo = key2(&room.0, 0);
    let at = key2(&room.0, from);
    Ok(
        match entries
            .range::<&[u8]>(lo.as_slice()..=at.as_slice())?
            .next_back()
        {
            Some(item) => item?.0.value().to_vec(),
            None => at,
        },
    )
}

/// The messages a write transaction appended to one room in a row, encoded as they come
/// and written as one value by [`PendingRun::value`] when the room's turn ends (another
/// op, another room, [`MAX_RUN_BYTES`], or the commit).
pub(super) struct PendingRun {
    pub room: RoomId,
    /// The seq of the first message.
    pub first: u64,
    count: usize,
    /// The postcard encoding of each [`RunEntry`], one after another.
    encoded: Vec<u8>,
}

impl PendingRun {
    pub fn new(room: RoomId, first: u64) -> Self {
        Self {
            room,
            first,
            count: 0,
            encoded: Vec::new(),
        }
    }

    /// Whether the message at `seq` of `room`, stored at `time` with `len` bytes of
    /// payload, continues this run (the next seq of the same room, within
    /// [`MAX_RUN_BYTES`]).
    pub fn takes(&self, room: &RoomId, seq: u64, time: u64, len: usize) -> bool {
        let entry = varint_len(time) + varint_len(len as u64) + len;
        self.room == *room
            && self.first.saturating_add(self.count as u64) == seq
            && (self.count == 0
                || run_header_len(self.count + 1) + self.encoded.len() + entry <= MAX_RUN_BYTES)
    }

    /// Adds the next message.
    pub fn push(&mut self, time: u64, payload: &[u8]) -> Result<(), StoreError> {
        self.encoded = postcard::to_extend(
            &RunEntry { time, payload },
            std::mem::take(&mut self.encoded),
        )
        .map_err(corrupt)?;
        self.count += 1;
        Ok(())
    }

    /// The key the run goes under: room ++ its first seq.
    pub fn key(&self) -> Vec<u8> {
        key2(&self.room.0, self.first)
    }

    /// The stored value: a single message (variant 0, the same fields) or a run (the
    /// variant, the count, then the entries), as postcard writes a [`StoredValue`].
    pub fn value(&self) -> Result<Vec<u8>, StoreError> {
        let header = if self.count == 1 {
            postcard::to_allocvec(&0u32)
        } else {
            postcard::to_allocvec(&(RUN_VARIANT, self.count))
        };
        let mut value = header.map_err(corrupt)?;
        value.extend_from_slice(&self.encoded);
        Ok(value)
    }
}

fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(corrupt)
}

fn corrupt(e: postcard::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: RoomId = RoomId([7; 16]);

    #[test]
    fn a_single_entry_is_stored_as_format_4_stored_it() {
        for kind in [EntryKind::Message, EntryKind::Commit] {
            let old = encode(&StoredEntry {
                kind,
                time: 1_750_000_000,
                payload: vec![1, 2, 3],
            })
            .unwrap();
            assert_eq!(single(kind, 1_750_000_000, &[1, 2, 3]).unwrap(), old);
            let read = entries_of(9, &old).unwrap();
            assert_eq!(read.len(), 1);
            assert_eq!(
                (read[0].seq, read[0].kind, read[0].time, read[0].payload),
                (9, kind, 1_750_000_000, &[1u8, 2, 3][..])
            );
            assert_eq!(entries_in(&old).unwrap(), 1);
        }
    }

    #[test]
    fn a_pending_run_encodes_as_postcard_encodes_the_run() {
        let payloads: Vec<Vec<u8>> = (0..200u32).map(|i| vec![i as u8; i as usize]).collect();
        let mut run = PendingRun::new(ROOM, 41);
        for (i, p) in payloads.iter().enumerate() {
            run.push(100 + i as u64, p).unwrap();
        }
        let expected = encode(&StoredValue::Run(
            payloads
                .iter()
                .enumerate()
                .map(|(i, p)| RunEntry {
                    time: 100 + i as u64,
                    payload: p,
                })
                .collect(),
        ))
        .unwrap();
        let value = run.value().unwrap();
        assert_eq!(value, expected);
        assert_eq!(entries_in(&value).unwrap(), 200);
        let read = entries_of(41, &value).unwrap();
        assert_eq!(read.len(), 200);
        assert_eq!(read[199].seq, 240);
        assert_eq!(read[199].time, 299);
        assert_eq!(read[199].payload, payloads[199].as_slice());
        assert!(read.iter().all(|e| e.kind == EntryKind::Message));
    }

    #[test]
    fn a_run_of_one_is_a_single_message() {
        let mut run = PendingRun::new(ROOM, 5);
        run.push(77, b"hi").unwrap();
        assert_eq!(
            run.value().unwrap(),
            single(EntryKind::Message, 77, b"hi").unwrap()
        );
        let value = run.value().unwrap();
        let read = entries_of(5, &value).unwrap();
        assert_eq!(run_value(&read).unwrap(), value);
    }

    #[test]
    fn a_run_takes_the_next_seq_of_its_room_within_its_bytes() {
        let mut run = PendingRun::new(ROOM, 10);
        assert!(
            run.takes(&ROOM, 10, 1, MAX_RUN_BYTES * 2),
            "an empty run takes anything"
        );
        // Two entries: the header (variant 2, count 2), then each entry's time (1 byte),
        // length (2 bytes) and payload.
        let first = MAX_RUN_BYTES - 2 - 3 - 3 - 100;
        run.push(1, &vec![0; first]).unwrap();
        assert!(run.takes(&ROOM, 11, 1, 100));
        assert!(!run.takes(&ROOM, 11, 1, 101), "past the cap");
        assert!(
            !run.takes(&ROOM, 11, 1 << 20, 100),
            "a longer time, past the cap"
        );
        assert!(!run.takes(&ROOM, 12, 1, 1), "not the next seq");
        assert!(!run.takes(&RoomId([8; 16]), 11, 1, 1), "another room");
        run.push(1, &[0; 100]).unwrap();
        assert_eq!(
            run.value().unwrap().len(),
            MAX_RUN_BYTES,
            "full to the byte"
        );
    }

    #[test]
    fn varints_take_what_postcard_writes() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(
                varint_len(n),
                postcard::to_allocvec(&n).unwrap().len(),
                "{n}"
            );
        }
    }

    #[test]
    fn bytes_that_are_no_stored_value_are_refused() {
        for bytes in [&[][..], &[2], &[2, 5, 1], &[3, 0, 0], &[0, 1, 9]] {
            assert!(
                matches!(entries_of(1, bytes), Err(StoreError::Corrupt(_))),
                "{bytes:?}"
            );
        }
    }
}
