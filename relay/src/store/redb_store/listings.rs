//! The public room directory: publishing and removing listings.

use super::*;

impl Tx<'_> {
    pub(super) fn listing(&self, room: &RoomId) -> Result<Option<ListingRecord>, StoreError> {
        match self.listings.get(room.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Deletes a room's listing and refunds its publisher; returns whether there was one.
    pub(super) fn remove_listing(&mut self, room: &RoomId) -> Result<bool, StoreError> {
        let Some(old) = self.listing(room)? else {
            return Ok(false);
        };
        self.listings.remove(room.0.as_slice())?;
        self.refund(HashMap::from([(old.publisher, old.bytes())]))?;
        Ok(true)
    }

    pub(super) fn publish_room(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        listing: ListingRecord,
        quota: u64,
    ) -> Result<OpResult, StoreError> {
        let Some(record) = self.room(&room)? else {
            return Ok(Err(unknown_room()));
        };
        if let Err(e) = self.require_current(&room, &record, &cap_hash)? {
            return Ok(Err(e));
        }
        if listing.epoch != self.epoch_index(&room)? {
            return Ok(Err(stale()));
        }
        let old = self.listing(&room)?;
        // Any member refreshes a listing after a commit (the GroupInfo of the new epoch);
        // listing a room, or under another name, is an admin's decision.
        let refresh = old
            .as_ref()
            .is_some_and(|old| old.public_name == listing.public_name);
        if !refresh {
            if let Err(e) = self.require_admin(&room, &listing.publisher)? {
                return Ok(Err(e));
            }
        }
        // Refund the listing this one replaces before charging, so re-publishing never
        // needs twice the space.
        if let Some(old) = &old {
            self.refund(HashMap::from([(old.publisher, old.bytes())]))?;
        }
        if let Err(e) = self.charge(&listing.publisher, listing.bytes(), quota)? {
            // Undo the refund: a refused op leaves no trace.
            if let Some(old) = &old {
                let mut publisher = self.account_following_rotations(&old.publisher)?;
                if let Some(p) = publisher.as_mut() {
                    p.used_bytes = p.used_bytes.saturating_add(old.bytes());
                    self.put_account(p)?;
                }
            }
            return Ok(Err(e));
        }
        self.listings
            .insert(room.0.as_slice(), encode(&listing)?.as_slice())?;
        Ok(Ok(Applied::Done))
    }
}
