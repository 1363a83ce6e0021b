//! The public room directory: publishing and removing listings.

use super::migrate::lister_key;
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
        self.forget_lister(room)?;
        self.refund(HashMap::from([(old.publisher, old.bytes())]))?;
        Ok(true)
    }

    /// Who listed `room` (see `LISTERS`).
    pub(super) fn lister(&self, room: &RoomId) -> Result<Option<AccountKey>, StoreError> {
        Ok(self
            .listers
            .get(room.0.as_slice())?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
            .map(AccountKey))
    }

    fn forget_lister(&mut self, room: &RoomId) -> Result<(), StoreError> {
        if let Some(lister) = self.lister(room)? {
            self.listers.remove(room.0.as_slice())?;
            self.listed_by
                .remove(lister_key(&lister, &room.0).as_slice())?;
        }
        Ok(())
    }

    fn set_lister(&mut self, room: &RoomId, lister: &AccountKey) -> Result<(), StoreError> {
        self.forget_lister(room)?;
        self.listers
            .insert(room.0.as_slice(), lister.0.as_slice())?;
        self.listed_by
            .insert(lister_key(lister, &room.0).as_slice(), &[][..])?;
        Ok(())
    }

    /// How many rooms `account` has listed.
    fn listed_count(&self, account: &AccountKey) -> Result<u64, StoreError> {
        let lo = lister_key(account, &[0; 16]);
        let hi = lister_key(account, &[0xff; 16]);
        Ok(self
            .listed_by
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
            .count() as u64)
    }

    pub(super) fn publish_room(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        listing: ListingRecord,
        quota: u64,
        max_listings: u64,
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
        let lister = self.lister(&room)?;
        if !refresh {
            if let Err(e) = self.require_admin(&room, &listing.publisher)? {
                return Ok(Err(e));
            }
            // Listing a room, or renaming it, counts against the admin who does it; a
            // refresh counts against whoever listed it, so members keep a listing current
            // whatever their own count.
            let mut listed = self.listed_count(&listing.publisher)?;
            if lister == Some(listing.publisher) {
                listed -= 1;
            }
            if listed >= max_listings {
                return Ok(Err(WireError::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "this account has {listed} public rooms listed, the most the relay \
                         allows one account (max_public_rooms_per_account): unlist one first"
                    ),
                )));
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
        if !refresh || lister.is_none() {
            self.set_lister(&room, &listing.publisher)?;
        }
        Ok(Ok(Applied::Done))
    }
}
