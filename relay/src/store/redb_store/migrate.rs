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

/// A room entry as format 1 stored it: with its author.
#[derive(Deserialize)]
struct EntryV1 {
    kind: EntryKind,
    time: u64,
    author: AccountKey,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

/// An inbox entry as format 1 stored it: with its depositor.
#[derive(Deserialize)]
struct InboxV1 {
    time: u64,
    from: AccountKey,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

/// Format 1 to 2 (decision 0013): room entries lose their author and inbox entries their
/// depositor. What they were charged goes back to the accounts that paid, each room is
/// charged for its log instead ([`RoomRecord::bytes`]), and the store is marked
/// [`FORMAT`]. A value that does not decode as format 1 is left as it is (the reads
/// report it as corrupt, as they would have before). Runs once, in the transaction that
/// opens the store.
pub(super) fn authorless(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if meta.get("format")?.is_some() {
        return Ok(());
    }
    let mut tx = Tx::open(txn)?;
    let mut refunds: HashMap<AccountKey, u64> = HashMap::new();
    let mut room_bytes: HashMap<[u8; 16], u64> = HashMap::new();
    let old: Vec<(Vec<u8>, EntryV1)> = tx
        .entries
        .iter()?
        .filter_map(|item| match item {
            Ok((k, v)) => postcard::from_bytes::<EntryV1>(v.value())
                .ok()
                .map(|e| Ok((k.value().to_vec(), e))),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    for (key, entry) in old {
        let cost = entry_cost(entry.kind, entry.payload.len());
        *refunds.entry(entry.author).or_default() += cost;
        if let Ok(room) = <[u8; 16]>::try_from(&key[..key.len().min(16)]) {
            *room_bytes.entry(room).or_default() += cost;
        }
        let stored = StoredEntry {
            kind: entry.kind,
            time: entry.time,
            payload: entry.payload,
        };
        tx.entries
            .insert(key.as_slice(), encode(&stored)?.as_slice())?;
    }
    let rooms: Vec<(Vec<u8>, RoomRecord)> = tx
        .rooms
        .iter()?
        .filter_map(|item| match item {
            Ok((k, v)) => decode::<RoomRecord>(v.value())
                .ok()
                .map(|r| Ok((k.value().to_vec(), r))),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    for (key, mut record) in rooms {
        // Format 1 counted payload bytes only; now the room pays what its authors did.
        record.bytes = <[u8; 16]>::try_from(key.as_slice())
            .ok()
            .and_then(|room| room_bytes.get(&room).copied())
            .unwrap_or(0);
        tx.rooms
            .insert(key.as_slice(), encode(&record)?.as_slice())?;
    }
    let old: Vec<(Vec<u8>, InboxV1)> = tx
        .inbox
        .iter()?
        .filter_map(|item| match item {
            Ok((k, v)) => postcard::from_bytes::<InboxV1>(v.value())
                .ok()
                .map(|e| Ok((k.value().to_vec(), e))),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    for (key, entry) in old {
        *refunds.entry(entry.from).or_default() += object_cost(entry.payload.len());
        let stored = StoredInbox {
            time: entry.time,
            payload: entry.payload,
        };
        tx.inbox
            .insert(key.as_slice(), encode(&stored)?.as_slice())?;
    }
    tx.refund(refunds)?;
    drop(tx);
    meta.insert("format", FORMAT)?;
    Ok(())
}
