//! Who may do what to a room beyond holding its capability (decision 0009): the room's
//! admins as the relay keeps them, the accounts barred from committing, the capability
//! each commit announced, and reverting a commit the members refused.

use hearth_protocol::limits::{MAX_BARRED_PER_ROOM, MAX_ROOM_ADMINS};

use super::*;

/// A list of admins as the relay keeps it: the owner first, then the others sorted, no
/// repeats, 1 to [`MAX_ROOM_ADMINS`] in all.
pub(super) fn canonical_admins(admins: &[AccountKey]) -> Result<Vec<AccountKey>, WireError> {
    let Some((owner, rest)) = admins.split_first() else {
        return Err(err(ErrorCode::BadRequest, "a room has an owner"));
    };
    let mut rest: Vec<AccountKey> = rest.iter().filter(|a| *a != owner).copied().collect();
    rest.sort();
    rest.dedup();
    if rest.len() + 1 > MAX_ROOM_ADMINS {
        return Err(err(
            ErrorCode::BadRequest,
            "a room has at most 64 admins, owner included",
        ));
    }
    Ok(std::iter::once(*owner).chain(rest).collect())
}

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
        let admins = match canonical_admins(admins) {
            Ok(admins) => admins,
            Err(e) => return Ok(Err(e)),
        };
        self.room_admins
            .insert(room.0.as_slice(), encode(&admins)?.as_slice())?;
        Ok(Ok(()))
    }

    /// Refuses `author` unless the relay lists them as the owner of `room`, the only one
    /// who changes the list (the room's policy: only the owner grants and revokes admin
    /// rights; a leaving owner hands over first). A room from before the relay kept
    /// admins lets anyone with the current capability set its first list.
    pub(super) fn require_owner(
        &self,
        room: &RoomId,
        author: &AccountKey,
    ) -> Result<Result<(), WireError>, StoreError> {
        let admins = self.room_admins(room)?;
        Ok(if admins.first().is_none_or(|owner| owner == author) {
            Ok(())
        } else {
            Err(forbidden_because(
                "only the room's owner may change who administers it",
            ))
        })
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
        if let Err(e) = self.require_owner(&room, &author)? {
            return Ok(Err(e));
        }
        Ok(self
            .put_room_admins(&room, &admins)?
            .map(|()| Applied::Done))
    }

    /// [`WriteOp::RevertCommit`]: the epoch `cap_hash` ended at the commit `seq`; that
    /// epoch is the current one again, and every epoch begun since (by `seq` and by any
    /// commit after it, which only holders of the refused capability could make) ends
    /// where the log is now. The authors of those commits are barred, as far as
    /// `committers` (the service's memory) knows them: the store keeps no author.
    pub(super) fn revert_commit(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        seq: Seq,
        author: AccountKey,
        committers: Vec<(Seq, AccountKey)>,
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
        // The commits from `seq` on, with the capabilities they began.
        let lo = commit_cap_key(&room, seq);
        let hi = commit_cap_key(&room, Seq(record.head));
        let begun: Vec<(Seq, CapHash)> = self
            .commit_caps
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
            .map(|item| {
                let (k, v) = item?;
                let cap = <[u8; 32]>::try_from(v.value()).unwrap_or([0; 32]);
                Ok((Seq(tail_u64(k.value())), CapHash(cap)))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut barred: Vec<AccountKey> = match self.barred.get(room.0.as_slice())? {
            Some(v) => decode(v.value())?,
            None => Vec::new(),
        };
        for (at, _) in &begun {
            let Some((_, committer)) = committers.iter().find(|(s, _)| s == at) else {
                continue; // not remembered (a restart since)
            };
            // The bar follows a key rotation made since (as rotations move the list).
            let Some(committer) = self.account_following_rotations(committer)? else {
                continue;
            };
            if !barred.contains(&committer.account) {
                barred.push(committer.account);
            }
        }
        if barred.len() > MAX_BARRED_PER_ROOM {
            barred.drain(..barred.len() - MAX_BARRED_PER_ROOM);
        }
        self.barred
            .insert(room.0.as_slice(), encode(&barred)?.as_slice())?;
        // The refused epochs end where the log is now; the one before is current again.
        self.epochs.remove(epoch_key(&room, &cap_hash).as_slice())?;
        for (_, begun_cap) in &begun {
            if *begun_cap != cap_hash {
                self.epochs
                    .insert(epoch_key(&room, begun_cap).as_slice(), record.head)?;
            }
        }
        let ended = record.current;
        record.current = cap_hash;
        let index = self.epoch_index(&room)?;
        let back_to = index.saturating_sub(begun.len() as u64);
        self.commits.insert(room.0.as_slice(), back_to)?;
        self.put_room(&room, &record)?;
        // A listing of a refused epoch is of no use to anyone.
        if self.listing(&room)?.is_some_and(|l| l.epoch > back_to) {
            self.remove_listing(&room)?;
        }
        Ok(Ok(Applied::Reverted { room, ended }))
    }
}
