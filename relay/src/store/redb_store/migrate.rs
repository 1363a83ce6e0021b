//! Fills tables added after a store was created, once, when it is opened.

use super::*;

/// Counts the rooms each account created (a room's owner is its creator unless it handed
/// the room over, close enough for a limit) and records who listed each public room (its
/// publisher), for stores from before the relay kept these.
pub(super) fn count_rooms_and_listers(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut created = txn.open_table(ROOMS_CREATED)?;
    let admins = txn.open_table(ROOM_ADMINS)?;
    if created.is_empty()? && !admins.is_empty()? {
        let accounts = txn.open_table(ACCOUNTS)?;
        let mut counts: HashMap<String, u64> = HashMap::new();
        for item in admins.iter()? {
            let (_, v) = item?;
            let Some(owner) = decode::<Vec<AccountKey>>(v.value())?.first().copied() else {
                continue;
            };
            if let Some(record) = accounts.get(owner.0.as_slice())? {
                let record: AccountRecord = decode(record.value())?;
                *counts
                    .entry(record.handle.as_str().to_string())
                    .or_default() += 1;
            }
        }
        for (handle, n) in counts {
            created.insert(handle.as_str(), n)?;
        }
    }
    let mut listers = txn.open_table(LISTERS)?;
    let listings = txn.open_table(LISTINGS)?;
    if listers.is_empty()? && !listings.is_empty()? {
        let mut listed_by = txn.open_table(LISTED_BY)?;
        for item in listings.iter()? {
            let (room, v) = item?;
            let listing: ListingRecord = decode(v.value())?;
            listers.insert(room.value(), listing.publisher.0.as_slice())?;
            listed_by.insert(
                lister_key(&listing.publisher, room.value()).as_slice(),
                &[][..],
            )?;
        }
    }
    Ok(())
}

/// The key of a [`LISTED_BY`] row.
pub(super) fn lister_key(account: &AccountKey, room: &[u8]) -> Vec<u8> {
    let mut key = account.0.to_vec();
    key.extend_from_slice(room);
    key
}
