//! Room logs: appending under the current capability, rotating it with commits.

use super::authority::commit_cap_key;
use super::*;

/// What makes an append a commit: the capability hash it announces, and the room's
/// admins after it when it changes them (with the pseudonym that signed the change).
pub(super) struct Commit {
    pub next_cap_hash: Option<CapHash>,
    pub admins: Option<(AdminKey, Vec<AdminKey>)>,
}

/// The refusal of a room over [`crate::config::RelayConfig::max_rooms_per_account`].
fn too_many_rooms(created: u64) -> WireError {
    WireError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "this account has created {created} rooms on this relay, the most it allows one \
             account (max_rooms_per_account): use one of your rooms, or ask the relay's owner \
             to raise the limit"
        ),
    )
}

/// The refusal of an entry that would take a room's log past `quota_bytes_per_room`.
pub(super) fn room_full(quota: u64) -> WireError {
    WireError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "this room's storage on the relay is full ({quota} bytes, quota_bytes_per_room; \
             every message and commit counts until it expires): wait for old messages to \
             expire, shorten the room's disappearing-message timer, or ask the relay's owner \
             to raise the limit"
        ),
    )
}

impl Tx<'_> {
    /// [`WriteOp::CreateRoom`]: charges the creator [`ROOM_OVERHEAD_BYTES`] and counts the
    /// room against its limit of rooms.
    pub(super) fn create_room(
        &mut self,
        room: RoomId,
        record: RoomRecord,
        (creator, admin): (AccountKey, AdminKey),
        quota: u64,
        max_rooms: u64,
    ) -> Result<OpResult, StoreError> {
        if self.room(&room)?.is_some() {
            return Ok(Err(err(
                ErrorCode::RoomExists,
                "a room with this id exists",
            )));
        }
        let Some(account) = self.account(&creator)? else {
            return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
        };
        let handle = account.handle.as_str();
        let created = self
            .rooms_created
            .read()?
            .get(handle)?
            .map_or(0, |v| v.value());
        if created >= max_rooms {
            return Ok(Err(too_many_rooms(created)));
        }
        if let Err(e) = self.charge(&creator, ROOM_OVERHEAD_BYTES, quota)? {
            return Ok(Err(e));
        }
        // One admin is always a valid list: nothing is refused after this.
        if let Err(e) = self.put_room_admins(&room, &[admin])? {
            return Ok(Err(e));
        }
        self.put_room(&room, &record)?;
        self.rooms_created.write()?.insert(handle, created + 1)?;
        Ok(Ok(Applied::Done))
    }

    pub(super) fn epoch_index(&self, room: &RoomId) -> Result<u64, StoreError> {
        epoch_index_of(self.commits.read()?, self.epochs.read()?, room)
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

    pub(super) fn append(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        payload: Vec<u8>,
        commit: Commit,
        now: u64,
        room_quota: u64,
    ) -> Result<OpResult, StoreError> {
        let Some(record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
            return Ok(Err(e));
        }
        if let Some((signer, admins)) = &commit.admins {
            if let Err(e) = self.require_owner(&room, Some(signer))? {
                return Ok(Err(e));
            }
            // Checked before anything is written: a refused op leaves no trace.
            if let Err(e) = super::authority::canonical_admins(admins) {
                return Ok(Err(e));
            }
        }
        let applied =
            self.append_unchecked(room, record, payload, commit.next_cap_hash, now, room_quota)?;
        if let (Ok(_), Some((_, admins)), Some(_)) =
            (&applied, &commit.admins, commit.next_cap_hash)
        {
            // Valid (checked above), so this writes.
            if let Err(e) = self.put_room_admins(&room, admins)? {
                return Ok(Err(e));
            }
        }
        Ok(applied)
    }

    /// Appends to a room whose write access has been checked, charging the room; a commit
    /// rotates the capability to `next_cap_hash` and counts one more epoch.
    pub(super) fn append_unchecked(
        &mut self,
        room: RoomId,
        mut record: RoomRecord,
        payload: Vec<u8>,
        next_cap_hash: Option<CapHash>,
        now: u64,
        room_quota: u64,
    ) -> Result<OpResult, StoreError> {
        let kind = if next_cap_hash.is_some() {
            EntryKind::Commit
        } else {
            EntryKind::Message
        };
        let cost = entry_cost(kind, payload.len());
        if record.bytes.saturating_add(cost) > room_quota {
            return Ok(Err(room_full(room_quota)));
        }
        let Some(head) = record.head.checked_add(1) else {
            // Only a damaged record gets here (2^64 entries): refuse this append alone,
            // not the batch it came in.
            return Ok(Err(WireError::new(
                ErrorCode::Internal,
                "this room's log on the relay is damaged (its last seq is the largest there \
                 is): ask the relay's owner to check the store (hearth-relay inspect)",
            )));
        };
        record.head = head;
        record.bytes += cost;
        let seq = Seq(record.head);
        let mut ended = None;
        if let Some(next) = next_cap_hash {
            self.entries.write()?.insert(
                key2(&room.0, seq.0).as_slice(),
                runs::single(kind, now, &payload)?.as_slice(),
            )?;
            self.commit_caps
                .write()?
                .insert(commit_cap_key(&room, seq).as_slice(), next.0.as_slice())?;
            let index = self.epoch_index(&room)?;
            self.commits
                .write()?
                .insert(room.0.as_slice(), index.saturating_add(1))?;
            self.epochs
                .write()?
                .insert(epoch_key(&room, &record.current).as_slice(), seq.0)?;
            ended = Some(record.current);
            record.current = next;
            self.put_room(&room, &record)?;
        } else {
            // Messages in a row go into one value (decision 0018).
            self.put_room_later(room, record)?;
            self.append_to_run(room, seq.0, now, &payload)?;
        }
        Ok(Ok(Applied::Appended {
            room,
            entry: Entry {
                seq,
                kind,
                time: now,
                payload,
                next_cap_hash,
            },
            ended,
        }))
    }
}
