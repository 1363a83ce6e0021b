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
        let rotation = next_cap_hash.map(Rotation::Members);
        self.append_unchecked(room, record, author, payload, rotation, now, quota)
    }

    /// Appends to a room whose write access has been checked. A commit counts one more
    /// epoch: a member's ends every capability of the current epoch and makes
    /// `next` the members' one; an external join only adds the joiner's beside it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn append_unchecked(
        &mut self,
        room: RoomId,
        mut record: RoomRecord,
        author: AccountKey,
        payload: Vec<u8>,
        rotation: Option<Rotation>,
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
        let kind = if rotation.is_some() {
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
        let mut ended = Vec::new();
        if let Some(rotation) = rotation {
            let index = self.epoch_index(&room)?;
            self.commits
                .insert(room.0.as_slice(), index.saturating_add(1))?;
            match rotation {
                Rotation::Members(next) => {
                    ended.push(record.current);
                    ended.extend(record.joiner.take());
                    for cap in &ended {
                        self.epochs
                            .insert(epoch_key(&room, cap).as_slice(), seq.0)?;
                    }
                    record.current = next;
                }
                Rotation::Joiner(next) => record.joiner = Some(next),
            }
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

/// How a commit moves a room's capability.
pub(super) enum Rotation {
    /// A member's commit: the next epoch's capability, for everyone.
    Members(CapHash),
    /// An external join: the joiner's capability, beside the members' (see
    /// [`RoomRecord::joiner`]).
    Joiner(CapHash),
}
