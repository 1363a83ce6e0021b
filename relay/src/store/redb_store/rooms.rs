//! Room logs: appending under the current capability, rotating it with commits.

use super::*;

impl Tx<'_> {
    pub(super) fn epoch_index(&self, room: &RoomId) -> Result<u64, StoreError> {
        epoch_index_of(&self.commits, &self.epochs, room)
    }

    /// Refuses anything but the room's current capability.
    pub(super) fn require_current(
        &self,
        room: &RoomId,
        record: &RoomRecord,
        cap_hash: &CapHash,
    ) -> Result<Result<(), WireError>, StoreError> {
        Ok(self
            .access(room, record, cap_hash)?
            .and_then(Access::require_current))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn append(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        author: AccountKey,
        payload: Vec<u8>,
        next_cap_hash: Option<CapHash>,
        now: u64,
        quota: u64,
    ) -> Result<OpResult, StoreError> {
        let Some(record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
            return Ok(Err(e));
        }
        self.append_unchecked(room, record, author, payload, next_cap_hash, now, quota)
    }

    /// Appends to a room whose write access has been checked; a commit rotates the
    /// capability to `next_cap_hash` and counts one more epoch.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn append_unchecked(
        &mut self,
        room: RoomId,
        mut record: RoomRecord,
        author: AccountKey,
        payload: Vec<u8>,
        next_cap_hash: Option<CapHash>,
        now: u64,
        quota: u64,
    ) -> Result<OpResult, StoreError> {
        let len = payload.len() as u64;
        if let Err(e) = self.charge(&author, len, quota)? {
            return Ok(Err(e));
        }
        record.head += 1;
        record.bytes += len;
        let seq = Seq(record.head);
        let kind = if next_cap_hash.is_some() {
            EntryKind::Commit
        } else {
            EntryKind::Message
        };
        let stored = StoredEntry {
            kind,
            time: now,
            author,
            payload,
        };
        self.entries
            .insert(key2(&room.0, seq.0).as_slice(), encode(&stored)?.as_slice())?;
        let mut ended = None;
        if let Some(next) = next_cap_hash {
            let index = self.epoch_index(&room)?;
            self.commits
                .insert(room.0.as_slice(), index.saturating_add(1))?;
            self.epochs
                .insert(epoch_key(&room, &record.current).as_slice(), seq.0)?;
            ended = Some(record.current);
            record.current = next;
        }
        self.put_room(&room, &record)?;
        Ok(Ok(Applied::Appended {
            room,
            entry: Entry {
                seq,
                kind,
                time: now,
                payload: stored.payload,
            },
            ended,
        }))
    }
}
