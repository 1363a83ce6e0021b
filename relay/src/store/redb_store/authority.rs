//! Who may do what to a room beyond holding its capability (decision 0009): the room's
//! admins as the relay keeps them, the accounts barred from committing, the capability
//! each commit announced, and reverting a commit the members refused.

use hearth_protocol::limits::{MAX_BARRED_PER_ROOM, MAX_ROOM_ADMINS};

use super::*;

/// The key of a commit's announced capability hash: room id and seq.
pub(super) fn commit_cap_key(room: &RoomId, seq: Seq) -> Vec<u8> {
    key2(&room.0, seq.0)
}

fn forbidden_because(message: &str) -> WireError {
    err(ErrorCode::Forbidden, message)
}

impl Tx<'_> {
    /// The room's admins; empty for a room from before the relay kept them.
    pub(super) fn room_admins(&self, room: &RoomId) -> Result<Vec<AccountKey>, StoreError> {
        match self.room_admins.get(room.0.as_slice())? {
            Some(v) => decode(v.value()),
            None => Ok(Vec::new()),
        }
    }

    pub(super) fn put_room_admins(
        &mut self,
        room: &RoomId,
        admins: &[AccountKey],
    ) -> Result<Result<(), WireError>, StoreError> {
        if admins.is_empty() || admins.len() > MAX_ROOM_ADMINS {
            return Ok(Err(err(
                ErrorCode::BadRequest,
                "a room has 1 to 64 admins, owner included",
            )));
        }
        let mut admins = admins.to_vec();
        admins.sort();
        admins.dedup();
        self.room_admins
            .insert(room.0.as_slice(), encode(&admins)?.as_slice())?;
        Ok(Ok(()))
    }

    /// Refuses `author` unless the relay lists them as an admin of `room` (a room from
    /// before the relay kept admins lets anyone with the current capability through).
    pub(super) fn require_admin(
        &self,
        room: &RoomId,
        author: &AccountKey,
    ) -> Result<Result<(), WireError>, StoreError> {
        let admins = self.room_admins(room)?;
        Ok(if admins.is_empty() || admins.contains(author) {
            Ok(())
        } else {
            Err(forbidden_because(
                "only an admin of the room may change this",
            ))
        })
    }

    /// Whether `author` wrote a commit of `room` that was reverted.
    pub(super) fn is_barred(&self, room: &RoomId, author: &AccountKey) -> Result<bool, StoreError> {
        Ok(match self.barred.get(room.0.as_slice())? {
            Some(v) => decode::<Vec<AccountKey>>(v.value())?.contains(author),
            None => false,
        })
    }

    /// The capability hash the commit at `seq` announced, if it is a commit.
    pub(super) fn announced_cap(
        &self,
        room: &RoomId,
        seq: Seq,
    ) -> Result<Option<CapHash>, StoreError> {
        Ok(self
            .commit_caps
            .get(commit_cap_key(room, seq).as_slice())?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
            .map(CapHash))
    }

    /// [`WriteOp::SetRoomAdmins`].
    pub(super) fn set_room_admins(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        author: AccountKey,
        admins: Vec<AccountKey>,
    ) -> Result<OpResult, StoreError> {
        let Some(record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
            return Ok(Err(e));
        }
        if let Err(e) = self.require_admin(&room, &author)? {
            return Ok(Err(e));
        }
        Ok(self
            .put_room_admins(&room, &admins)?
            .map(|()| Applied::Done))
    }

    /// [`WriteOp::RevertCommit`]: the epoch `cap_hash` ended at the commit `seq`, which
    /// is the room's last commit; its epoch is the current one again.
    pub(super) fn revert_commit(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        seq: Seq,
        author: AccountKey,
    ) -> Result<OpResult, StoreError> {
        let Some(mut record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if self.room_admins(&room)?.is_empty() {
            return Ok(Err(forbidden_because(
                "this room is from before the relay kept its admins; rebuild it instead",
            )));
        }
        if let Err(e) = self.require_admin(&room, &author)? {
            return Ok(Err(e));
        }
        match self.epochs.get(epoch_key(&room, &cap_hash).as_slice())? {
            Some(end) if end.value() == seq.0 => {}
            _ => {
                return Ok(Err(forbidden_because(
                    "that capability's epoch did not end at that commit",
                )))
            }
        }
        if self.announced_cap(&room, seq)? != Some(record.current) {
            // A later commit followed: the room moved on; nothing to undo.
            return Ok(Err(stale()));
        }
        let Some(v) = self.entries.get(key2(&room.0, seq.0).as_slice())? else {
            return Ok(Err(forbidden_because("the commit is gone")));
        };
        let committer = decode::<StoredEntry>(v.value())?.author;
        drop(v);
        let mut barred: Vec<AccountKey> = match self.barred.get(room.0.as_slice())? {
            Some(v) => decode(v.value())?,
            None => Vec::new(),
        };
        if !barred.contains(&committer) {
            barred.push(committer);
            if barred.len() > MAX_BARRED_PER_ROOM {
                barred.remove(0);
            }
        }
        self.barred
            .insert(room.0.as_slice(), encode(&barred)?.as_slice())?;
        // The refused epoch ends where the log is now; the one before is current again.
        self.epochs.remove(epoch_key(&room, &cap_hash).as_slice())?;
        self.epochs
            .insert(epoch_key(&room, &record.current).as_slice(), record.head)?;
        let ended = record.current;
        record.current = cap_hash;
        let index = self.epoch_index(&room)?;
        self.commits
            .insert(room.0.as_slice(), index.saturating_sub(1))?;
        self.put_room(&room, &record)?;
        // A listing of the refused epoch is of no use to anyone.
        if self.listing(&room)?.is_some_and(|l| l.epoch >= index) {
            self.remove_listing(&room)?;
        }
        Ok(Ok(Applied::Reverted { room, ended }))
    }
}
