//! Who may do what to a room beyond holding its capability (decisions 0009, 0013): the
//! room's admins as the relay keeps them (per-room pseudonyms, never account keys), the
//! capability each commit announced, and reverting a commit the members refused.
//!
//! The service checks an admin's signature over the exact change before it reaches the
//! store; here an op names the pseudonym that signed (`None`: nobody did), and the store
//! checks that the room lists it.

use hearth_protocol::limits::MAX_ROOM_ADMINS;

use super::*;

/// A list of admins as the relay keeps it: the owner first, then the others sorted, no
/// repeats, 1 to [`MAX_ROOM_ADMINS`] in all.
pub(super) fn canonical_admins(admins: &[AdminKey]) -> Result<Vec<AdminKey>, WireError> {
    let Some((owner, rest)) = admins.split_first() else {
        return Err(err(ErrorCode::BadRequest, "a room has an owner"));
    };
    let mut rest: Vec<AdminKey> = rest.iter().filter(|a| *a != owner).copied().collect();
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

/// The reverting admin's own commit that [`Tx::revert_commit`] appends.
pub(super) struct Removal {
    pub payload: Vec<u8>,
    pub next_cap_hash: CapHash,
    pub now: u64,
    pub room_quota: u64,
}

impl Tx<'_> {
    /// The room's admin pseudonyms; empty for a room from before the relay kept them (or
    /// whose list of account keys the migration to format 3 dropped).
    pub(super) fn room_admins(&self, room: &RoomId) -> Result<Vec<AdminKey>, StoreError> {
        match self.room_admins.get(room.0.as_slice())? {
            Some(v) => decode(v.value()),
            None => Ok(Vec::new()),
        }
    }

    pub(super) fn put_room_admins(
        &mut self,
        room: &RoomId,
        admins: &[AdminKey],
    ) -> Result<Result<(), WireError>, StoreError> {
        let admins = match canonical_admins(admins) {
            Ok(admins) => admins,
            Err(e) => return Ok(Err(e)),
        };
        self.room_admins
            .insert(room.0.as_slice(), encode(&admins)?.as_slice())?;
        Ok(Ok(()))
    }

    /// Refuses unless `admin` (the pseudonym that signed the change) is the owner the
    /// relay lists for `room`, the only one who changes the list (the room's policy: only
    /// the owner grants and revokes admin rights; a leaving owner hands over first). A
    /// room with no list lets anyone with the current capability set its first one.
    pub(super) fn require_owner(
        &self,
        room: &RoomId,
        admin: Option<&AdminKey>,
    ) -> Result<Result<(), WireError>, StoreError> {
        let admins = self.room_admins(room)?;
        Ok(match admins.first() {
            None => Ok(()),
            Some(owner) if Some(owner) == admin => Ok(()),
            Some(_) => Err(forbidden_because(
                "only the room's owner may change who administers it",
            )),
        })
    }

    /// Refuses unless `admin` (the pseudonym that signed the change) is one the relay
    /// lists for `room` (a room with no list lets anyone with the current capability
    /// through).
    pub(super) fn require_admin(
        &self,
        room: &RoomId,
        admin: Option<&AdminKey>,
    ) -> Result<Result<(), WireError>, StoreError> {
        let admins = self.room_admins(room)?;
        Ok(
            if admins.is_empty() || admin.is_some_and(|a| admins.contains(a)) {
                Ok(())
            } else {
                Err(forbidden_because(
                    "only an admin of the room may change this",
                ))
            },
        )
    }

    /// [`WriteOp::SetRoomAdmins`].
    pub(super) fn set_room_admins(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        admin: Option<AdminKey>,
        admins: Vec<AdminKey>,
    ) -> Result<OpResult, StoreError> {
        let Some(record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
            return Ok(Err(e));
        }
        if let Err(e) = self.require_owner(&room, admin.as_ref())? {
            return Ok(Err(e));
        }
        Ok(self
            .put_room_admins(&room, &admins)?
            .map(|()| Applied::Done))
    }

    /// [`WriteOp::RevertCommit`]: the epoch `cap_hash` ended at the commit `seq`; that
    /// epoch is the current one again, and every epoch begun since (by `seq` and by any
    /// commit after it, which only holders of the refused capability could make) ends
    /// where the log is now. Then the reverting admin's own commit of the restored epoch
    /// is appended and rotates the capability, in the same transaction: it removes the
    /// refused commit's author, whose capability (the restored epoch's, if it held it)
    /// ends there. Nothing about who wrote what is kept (decision 0013).
    pub(super) fn revert_commit(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        seq: Seq,
        admin: AdminKey,
        removal: Removal,
    ) -> Result<OpResult, StoreError> {
        let Some(mut record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if self.room_admins(&room)?.is_empty() {
            return Ok(Err(forbidden_because(
                "the relay lists no admins for this room yet (its owner's client sets them \
                 when it connects); rebuild the room if that never happens",
            )));
        }
        if let Err(e) = self.require_admin(&room, Some(&admin))? {
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
        // The removal must start an epoch of its own: not the restored one (nobody would
        // be locked out), nor one a refused commit began (its author would hold it).
        if removal.payload.is_empty() {
            return Ok(Err(err(
                ErrorCode::BadRequest,
                "a revert carries the reverting admin's commit that removes the author",
            )));
        }
        if removal.next_cap_hash == cap_hash
            || begun.iter().any(|(_, c)| *c == removal.next_cap_hash)
            || self
                .epochs
                .get(epoch_key(&room, &removal.next_cap_hash).as_slice())?
                .is_some()
        {
            return Ok(Err(forbidden_because(
                "the reverting commit must start a new epoch",
            )));
        }
        // Checked before anything is written: a refused op leaves no trace.
        let cost = entry_cost(EntryKind::Commit, removal.payload.len());
        if record.bytes.saturating_add(cost) > removal.room_quota {
            return Ok(Err(super::rooms::room_full(removal.room_quota)));
        }
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
        let record = self.room(&room)?.unwrap_or(record);
        let appended = self.append_unchecked(
            room,
            record,
            removal.payload,
            Some(removal.next_cap_hash),
            removal.now,
            removal.room_quota,
        )?;
        Ok(appended.map(|applied| match applied {
            Applied::Appended {
                entry,
                ended: restored,
                ..
            } => Applied::Reverted {
                room,
                ended,
                entry,
                restored: restored.unwrap_or(cap_hash),
            },
            other => other,
        }))
    }
}
