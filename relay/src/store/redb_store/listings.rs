//! The public room directory: publishing and removing listings.
//!
//! A listing names no account (decision 0013): its bytes are charged to the room, like
//! its log, and the directory as a whole holds at most `max_public_rooms` listings. How
//! many rooms one account lists is bounded in memory only (the service's
//! `listing_rate`), and by the rooms it may create at all.

use super::*;

/// The refusal of a new listing when the directory is full.
fn directory_full(max: u64) -> WireError {
    WireError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "the relay's directory of public rooms is full ({max} rooms, max_public_rooms): \
             make a room you no longer need private, or ask the relay's owner to raise the \
             limit"
        ),
    )
}

impl Tx<'_> {
    pub(super) fn listing(&self, room: &RoomId) -> Result<Option<ListingRecord>, StoreError> {
        match self.listings.read()?.get(room.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Deletes a room's listing and gives the room its bytes back; returns whether there
    /// was one.
    pub(super) fn remove_listing(&mut self, room: &RoomId) -> Result<bool, StoreError> {
        let Some(old) = self.listing(room)? else {
            return Ok(false);
        };
        self.listings.write()?.remove(room.0.as_slice())?;
        if let Some(mut record) = self.room(room)? {
            record.bytes = record.bytes.saturating_sub(old.bytes());
            self.put_room(room, &record)?;
        }
        Ok(true)
    }

    pub(super) fn publish_room(
        &mut self,
        room: RoomId,
        cap_hash: CapHash,
        listing: ListingRecord,
        admin: Option<AdminKey>,
        room_quota: u64,
        max_listings: u64,
    ) -> Result<OpResult, StoreError> {
        let Some(mut record) = self.room(&room)? else {
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
            if let Err(e) = self.require_admin(&room, admin.as_ref())? {
                return Ok(Err(e));
            }
        }
        if old.is_none() && self.listings.read()?.len()? >= max_listings {
            return Ok(Err(directory_full(max_listings)));
        }
        // The room pays for its listing as for its log; the listing it replaces is paid
        // back first, so re-publishing never needs twice the space.
        let bytes = record
            .bytes
            .saturating_sub(old.as_ref().map_or(0, ListingRecord::bytes))
            .saturating_add(listing.bytes());
        if bytes > room_quota {
            return Ok(Err(super::rooms::room_full(room_quota)));
        }
        record.bytes = bytes;
        self.put_room(&room, &record)?;
        self.listings
            .write()?
            .insert(room.0.as_slice(), encode(&listing)?.as_slice())?;
        Ok(Ok(Applied::Done))
    }
}
