//! Fills tables added after a store was created, once, when it is opened.

use super::*;

/// Tables of format 2 that format 3 no longer has (decision 0013, part 5): the accounts
/// barred from committing per room, and who listed each public room.
const BARRED: TableDefinition<Bytes, Bytes> = TableDefinition::new("barred");
const LISTERS: TableDefinition<Bytes, Bytes> = TableDefinition::new("listers");
const LISTED_BY: TableDefinition<Bytes, Bytes> = TableDefinition::new("listed_by");

/// The store's format: 1 when it has no row.
pub(super) fn format_of(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
    Ok(txn
        .open_table(META)?
        .get("format")?
        .map_or(1, |v| v.value()))
}

/// Counts the rooms each account created (a room's owner is its creator unless it handed
/// the room over, close enough for a limit), for stores from before the relay kept the
/// count, while their lists of admins were still account keys (format 2 and older).
pub(super) fn count_rooms(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    if format_of(txn)? >= 3 {
        return Ok(());
    }
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
    Ok(())
}

/// A listing as format 2 stored it: with the account that published it (and paid).
#[derive(Deserialize)]
struct ListingV2 {
    public_name: String,
    #[serde(with = "serde_bytes")]
    group_info: Vec<u8>,
    epoch: u64,
    published: u64,
    publisher: AccountKey,
}

/// Format 2 to 3 (decision 0013, part 5): the relay's lists of room admins were account
/// keys. The relay cannot turn them into the admins' pseudonyms, and a room without a
/// list must not be claimable by whoever holds its capability, so each list moves to
/// `legacy_admins`: the room's owner account, signed in, sets the first list of
/// pseudonyms when its client next connects, and the row goes then. Until then nobody is
/// an admin of the room at the relay. The barred authors go with the table. Listings lose
/// their publisher: what it was charged goes back to it and the room pays instead, and
/// the tables of who listed what go. Runs once, in the transaction that opens the store.
pub(super) fn pseudonymous(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    if format_of(txn)? >= 3 {
        return Ok(());
    }
    {
        let mut tx = Tx::open(txn);
        let lists: Vec<(Vec<u8>, Vec<u8>)> = tx
            .room_admins
            .read()?
            .iter()?
            .map(|item| item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (room, list) in lists {
            // Format 2 kept account keys, owner first; anything else is no list at all.
            if decode::<Vec<AccountKey>>(&list).is_ok_and(|l| !l.is_empty()) {
                tx.legacy_admins
                    .write()?
                    .insert(room.as_slice(), list.as_slice())?;
            }
        }
        tx.room_admins.write()?.retain(|_, _| false)?;
        let old: Vec<(Vec<u8>, ListingV2)> = tx
            .listings
            .read()?
            .iter()?
            .filter_map(|item| match item {
                Ok((k, v)) => postcard::from_bytes::<ListingV2>(v.value())
                    .ok()
                    .map(|l| Ok((k.value().to_vec(), l))),
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        let mut refunds: HashMap<AccountKey, u64> = HashMap::new();
        for (key, old) in old {
            let listing = ListingRecord {
                public_name: old.public_name,
                group_info: old.group_info,
                epoch: old.epoch,
                published: old.published,
            };
            *refunds.entry(old.publisher).or_default() += listing.bytes();
            if let Ok(room) = <[u8; 16]>::try_from(key.as_slice()) {
                let room = RoomId(room);
                if let Some(mut record) = tx.room(&room)? {
                    record.bytes = record.bytes.saturating_add(listing.bytes());
                    tx.put_room(&room, &record)?;
                }
            }
            tx.listings
                .write()?
                .insert(key.as_slice(), encode(&listing)?.as_slice())?;
        }
        tx.refund(refunds)?;
    }
    for table in [BARRED, LISTERS, LISTED_BY] {
        txn.delete_table(table)?;
    }
    txn.open_table(META)?.insert("format", FORMAT)?;
    Ok(())
}

/// Marks the store of the current [`FORMAT`]. [`RedbStore::open`] compacts a file that
/// was of a format before [`COMPACTED_FORMAT`], so a store of format 3 (migrated by a
/// build that did not compact) is compacted once: the records earlier formats kept (room
/// entries with their authors, admins by account, listings with their publishers) leave
/// the freed pages they stayed readable in. Format 4 to 5 rewrites nothing: a single
/// entry is stored as before, and only new batches write runs (decision 0018).
pub(super) fn compacted(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    if format_of(txn)? < FORMAT {
        txn.open_table(META)?.insert("format", FORMAT)?;
    }
    Ok(())
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
/// format 2. A value that does not decode as format 1 is left as it is (the reads
/// report it as corrupt, as they would have before). Runs once, in the transaction that
/// opens the store.
pub(super) fn authorless(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if meta.get("format")?.is_some() {
        return Ok(());
    }
    let mut tx = Tx::open(txn);
    let mut refunds: HashMap<AccountKey, u64> = HashMap::new();
    let mut room_bytes: HashMap<[u8; 16], u64> = HashMap::new();
    let old: Vec<(Vec<u8>, EntryV1)> = tx
        .entries
        .read()?
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
            .write()?
            .insert(key.as_slice(), encode(&stored)?.as_slice())?;
    }
    let rooms: Vec<(Vec<u8>, RoomRecord)> = tx
        .rooms
        .read()?
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
            .write()?
            .insert(key.as_slice(), encode(&record)?.as_slice())?;
    }
    let old: Vec<(Vec<u8>, InboxV1)> = tx
        .inbox
        .read()?
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
            .write()?
            .insert(key.as_slice(), encode(&stored)?.as_slice())?;
    }
    tx.refund(refunds)?;
    drop(tx);
    meta.insert("format", 2)?;
    Ok(())
}
