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

/// The refusal of an admin's change to a room the relay lists no admins for: a room of a
/// migrated store whose owner has not connected yet (or one from before the relay kept
/// admins). Nobody may claim it by holding the capability.
fn no_admins_yet() -> WireError {
    forbidden_because(
        "the relay lists no admins for this room yet (its owner's client sets them when it \
         connects after a relay upgrade); rebuild the room if that never happens",
    )
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
        match self.room_admins.read()?.get(room.0.as_slice())? {
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
            .write()?
            .insert(room.0.as_slice(), encode(&admins)?.as_slice())?;
        Ok(Ok(()))
    }

    /// Refuses unless `admin` (the pseudonym that signed the change) is the owner the
    /// relay lists for `room`, the only one who changes the list (the room's policy: only
    /// the owner grants and revokes admin rights; a leaving owner hands over first). A
    /// room with no list has no owner at the relay: its first list comes only with
    /// `CreateRoom`, or from the owner account of a migrated room ([`Self::claim_legacy`]);
    /// whoever else holds the capability cannot set it.
    pub(super) fn require_owner(
        &self,
        room: &RoomId,
        admin: Option<&AdminKey>,
    ) -> Result<Result<(), WireError>, StoreError> {
        let admins = self.room_admins(room)?;
        Ok(match admins.first() {
            None => Err(no_admins_yet()),
            Some(owner) if Some(owner) == admin => Ok(()),
            Some(_) => Err(forbidden_because(
                "only the room's owner may change who administers it",
            )),
        })
    }

    /// Refuses unless `admin` (the pseudonym that signed the change) is one the relay
    /// lists for `room` (a room with no list has no admin at the relay).
    pub(super) fn require_admin(
        &self,
        room: &RoomId,
        admin: Option<&AdminKey>,
    ) -> Result<Result<(), WireError>, StoreError> {
        let admins = self.room_admins(room)?;
        Ok(if admin.is_some_and(|a| admins.contains(a)) {
            Ok(())
        } else if admins.is_empty() {
            Err(no_admins_yet())
        } else {
            Err(forbidden_because(
                "only an admin of the room may change this",
            ))
        })
    }

    /// The owner account of a room of a store migrated from format 2 that has not set its
    /// first list of pseudonyms yet.
    fn legacy_owner(&self, room: &RoomId) -> Result<Option<AccountKey>, StoreError> {
        match self.legacy_admins.read()?.get(room.0.as_slice())? {
            Some(v) => Ok(decode::<Vec<AccountKey>>(v.value())?.first().copied()),
            None => Ok(None),
        }
    }

    /// A migrated room's first list of pseudonyms (decision 0013, part 5): taken only from
    /// a connection signed in as the account format 2 listed as the room's owner (or the
    /// account its key rotations lead to), with the list's owner the pseudonym that
    /// signed it (the service checked the signature). Once: the account row goes, and
    /// from then on only that pseudonym changes the list. `Ok(None)`: the room is not
    /// waiting for its owner.
    fn claim_legacy(
        &mut self,
        room: &RoomId,
        account: Option<&AccountKey>,
        admin: Option<&AdminKey>,
        admins: &[AdminKey],
    ) -> Result<Option<OpResult>, StoreError> {
        let Some(owner) = self.legacy_owner(room)? else {
            return Ok(None);
        };
        let owner_now = self
            .account_following_rotations(&owner)?
            .map(|record| record.account);
        if account.is_none() || owner_now.as_ref() != account {
            return Ok(Some(Err(forbidden_because(
                "this room's admins at the relay wait for its owner's client (the relay was                  upgraded): only the owner's account, signed in, sets them",
            ))));
        }
        if admin.is_none() || admins.first() != admin {
            return Ok(Some(Err(forbidden_because(
                "the first list of a room's admins names as owner the pseudonym that signs it",
            ))));
        }
        if let Err(e) = self.put_room_admins(room, admins)? {
            return Ok(Some(Err(e)));
        }
        self.legacy_admins.write()?.remove(room.0.as_slice())?;
        Ok(Some(Ok(Applied::Done)))
    }

    /// [`WriteOp::SetRoomAdmins`].
    pub(super) fn set_room_admins(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        (account, admin): (Option<AccountKey>, Option<AdminKey>),
        admins: Vec<AdminKey>,
    ) -> Result<OpResult, StoreError> {
        let Some(record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
            return Ok(Err(e));
        }
        if self.room_admins(&room)?.is_empty() {
            if let Some(claimed) =
                self.claim_legacy(&room, account.as_ref(), admin.as_ref(), &admins)?
            {
                return Ok(claimed);
            }
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
        if let Err(e) = self.require_admin(&room, Some(&admin))? {
            return Ok(Err(e));
        }
        match self
            .epochs
            .read()?
            .get(epoch_key(&room, &cap_hash).as_slice())?
        {
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
            .read()?
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
                .read()?
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
        self.epochs
            .write()?
            .remove(epoch_key(&room, &cap_hash).as_slice())?;
        for (_, begun_cap) in &begun {
            if *begun_cap != cap_hash {
                self.epochs
                    .write()?
                    .insert(epoch_key(&room, begun_cap).as_slice(), record.head)?;
            }
        }
        let ended = record.current;
        record.current = cap_hash;
        let index = self.epoch_index(&room)?;
        let back_to = index.saturating_sub(begun.len() as u64);
        self.commits.write()?.insert(room.0.as_slice(), back_to)?;
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
