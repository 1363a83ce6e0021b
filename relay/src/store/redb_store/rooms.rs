//! Room logs: appending under the current capability, rotating it with commits.

use super::authority::commit_cap_key;
use super::*;

/// What makes an append a commit: the capability hash it announces, and the room's
/// admins after it when it changes them.
pub(super) struct Commit {
    pub next_cap_hash: Option<CapHash>,
    pub admins: Option<Vec<AccountKey>>,
}

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
        commit: Commit,
        now: u64,
        quota: u64,
    ) -> Result<OpResult, StoreError> {
        let Some(record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        // (Before the capability: a barred author is told so whatever it presents.)
        if commit.next_cap_hash.is_some() && self.is_barred(&room, &author)? {
            return Ok(Err(err(
                ErrorCode::Forbidden,
                "a commit of yours in this room was refused by its members",
            )));
        }
        if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
            return Ok(Err(e));
        }
        if let Some(admins) = &commit.admins {
            if let Err(e) = self.require_owner(&room, &author)? {
                return Ok(Err(e));
            }
            // Checked before anything is written: a refused op leaves no trace.
            if let Err(e) = super::authority::canonical_admins(admins) {
                return Ok(Err(e));
            }
        }
        let applied = self.append_unchecked(
            room,
            record,
            author,
            payload,
            commit.next_cap_hash,
            now,
            quota,
        )?;
        if let (Ok(_), Some(admins), Some(_)) = (&applied, &commit.admins, commit.next_cap_hash) {
            // Valid (checked above), so this writes.
            if let Err(e) = self.put_room_admins(&room, admins)? {
                return Ok(Err(e));
            }
        }
        Ok(applied)
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
            self.commit_caps
                .insert(commit_cap_key(&room, seq).as_slice(), next.0.as_slice())?;
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
                next_cap_hash,
            },
            ended,
        }))
    }
}
