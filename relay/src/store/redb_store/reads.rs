//! [`Store`] for [`RedbStore`]: the batch entry point and every read.

use super::accounts::stock_of;
use super::*;

impl Store for RedbStore {
    fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<OpResult>, StoreError> {
        let txn = self.db.begin_write()?;
        let results = {
            let mut tx = Tx::open(&txn);
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(tx.apply(op)?);
            }
            tx.flush_room()?;
            results
        };
        // Durability::Immediate is redb's default: commit returns after fsync.
        txn.commit()?;
        Ok(results)
    }

    fn account(&self, account: &AccountKey) -> Result<Option<AccountRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ACCOUNTS)?;
        match table.get(account.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn account_by_handle(&self, handle: &Handle) -> Result<Option<AccountRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let handles = txn.open_table(HANDLES)?;
        let Some(key) = handles.get(handle.as_str())? else {
            return Ok(None);
        };
        let table = txn.open_table(ACCOUNTS)?;
        match table.get(key.value())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let handles = txn.open_table(HANDLES)?;
        let table = txn.open_table(ACCOUNTS)?;
        let mut out = Vec::new();
        for item in handles.iter()? {
            let (_, key) = item?;
            if let Some(v) = table.get(key.value())? {
                out.push(decode(v.value())?);
            }
        }
        Ok(out)
    }

    fn room_admins(&self, room: &RoomId) -> Result<Vec<AdminKey>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ROOM_ADMINS)?;
        match table.get(room.0.as_slice())? {
            Some(v) => decode(v.value()),
            None => Ok(Vec::new()),
        }
    }

    fn rotations(&self, handle: &Handle) -> Result<Vec<KeyRotation>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ROTATIONS)?;
        match table.get(handle.as_str())? {
            Some(v) => Ok(decode::<Vec<super::rotation::RotationRecord>>(v.value())?
                .into_iter()
                .map(|link| link.rotation)
                .collect()),
            None => Ok(Vec::new()),
        }
    }

    fn key_package_stock(&self, account: &AccountKey) -> Result<(u32, bool), StoreError> {
        let txn = self.db.begin_read()?;
        stock_of(
            &txn.open_table(KEY_PACKAGES)?,
            &txn.open_table(LAST_RESORT)?,
            account,
        )
    }

    fn inbox(
        &self,
        account: &AccountKey,
        after: u64,
        limit: u32,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        self.inbox_within(account, after, limit, usize::MAX)
    }

    fn inbox_within(
        &self,
        account: &AccountKey,
        after: u64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let mut taken = 0usize;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INBOX)?;
        let lo = key2(&account.0, after.saturating_add(1));
        let hi = key2(&account.0, u64::MAX);
        let mut out = Vec::new();
        if after == u64::MAX {
            return Ok(out);
        }
        for item in table.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
            if out.len() >= limit as usize {
                break;
            }
            let (k, v) = item?;
            // Stop before decoding an entry that would pass the budget.
            if !out.is_empty() && taken.saturating_add(v.value().len()) > max_bytes {
                break;
            }
            let stored: StoredInbox = decode(v.value())?;
            taken = taken.saturating_add(stored.payload.len());
            out.push(InboxEntry {
                id: tail_u64(k.value()),
                time: stored.time,
                payload: stored.payload,
            });
        }
        Ok(out)
    }

    fn room(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ROOMS)?;
        match table.get(room.0.as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn access(
        &self,
        room: &RoomId,
        cap_hash: &CapHash,
    ) -> Result<Option<crate::store::RoomAccess>, StoreError> {
        let txn = self.db.begin_read()?;
        let rooms = txn.open_table(ROOMS)?;
        let record: RoomRecord = match rooms.get(room.0.as_slice())? {
            Some(v) => decode(v.value())?,
            None => return Ok(None),
        };
        if record.current == *cap_hash {
            return Ok(Some((record, Ok(Access::Current))));
        }
        let epochs = txn.open_table(EPOCHS)?;
        let access = match epochs.get(epoch_key(room, cap_hash).as_slice())? {
            Some(end) => Ok(Access::Ended {
                end: Seq(end.value()),
            }),
            None => Err(forbidden()),
        };
        Ok(Some((record, access)))
    }

    fn entries(
        &self,
        room: &RoomId,
        from: Seq,
        to: Seq,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        self.entries_within(room, from, to, limit, usize::MAX)
    }

    fn entries_within(
        &self,
        room: &RoomId,
        from: Seq,
        to: Seq,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mut taken = 0usize;
        if from > to || limit == 0 {
            return Ok(out);
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let caps = txn.open_table(COMMIT_CAPS)?;
        let start = runs::walk_start(&table, room, from.0)?;
        let hi = key2(&room.0, to.0);
        'values: for item in table.range::<&[u8]>(start.as_slice()..=hi.as_slice())? {
            let (k, v) = item?;
            for stored in runs::entries_of(tail_u64(k.value()), v.value())? {
                if stored.seq < from.0 {
                    continue;
                }
                if stored.seq > to.0 || out.len() >= limit as usize {
                    break 'values;
                }
                if !out.is_empty() && taken.saturating_add(stored.payload.len()) > max_bytes {
                    break 'values;
                }
                taken = taken.saturating_add(stored.payload.len());
                let next_cap_hash = match stored.kind {
                    EntryKind::Commit => caps
                        .get(key2(&room.0, stored.seq).as_slice())?
                        .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
                        .map(CapHash),
                    EntryKind::Message => None,
                };
                out.push(Entry {
                    seq: Seq(stored.seq),
                    kind: stored.kind,
                    time: stored.time,
                    payload: stored.payload.to_vec(),
                    next_cap_hash,
                });
            }
        }
        Ok(out)
    }

    fn listing(&self, room: &RoomId) -> Result<Option<(ListingRecord, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let listings = txn.open_table(LISTINGS)?;
        let listing: ListingRecord = match listings.get(room.0.as_slice())? {
            Some(v) => decode(v.value())?,
            None => return Ok(None),
        };
        let index = epoch_index_of(&txn.open_table(COMMITS)?, &txn.open_table(EPOCHS)?, room)?;
        Ok(Some((listing, index)))
    }

    fn listings(&self, limit: usize) -> Result<Vec<(RoomId, ListingRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LISTINGS)?;
        // The directory holds at most `max_public_rooms` listings (a bound on writing
        // them), so reading them all to sort by name stays small.
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let Ok(id) = <[u8; 16]>::try_from(k.value()) else {
                continue;
            };
            out.push((RoomId(id), decode::<ListingRecord>(v.value())?));
        }
        out.sort_by(|a, b| a.1.public_name.cmp(&b.1.public_name).then(a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }

    fn invites(&self) -> Result<Vec<InviteRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INVITES)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT_COUNTS)?;
        let mut out = Vec::new();
        for item in table.iter()?.rev() {
            if out.len() >= limit as usize {
                break;
            }
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        out.reverse();
        Ok(out)
    }

    fn sweep_scan(
        &self,
        cursor: &crate::store::SweepCursor,
        now: u64,
        retention_secs: u64,
        max_rows: usize,
    ) -> Result<crate::store::SweepScan, StoreError> {
        let txn = self.db.begin_read()?;
        super::sweep::scan(
            &super::sweep::ScanTables {
                rooms: &txn.open_table(ROOMS)?,
                entries: &txn.open_table(ENTRIES)?,
                epochs: &txn.open_table(EPOCHS)?,
                inbox: &txn.open_table(INBOX)?,
                listings: &txn.open_table(LISTINGS)?,
            },
            cursor,
            now,
            retention_secs,
            max_rows,
        )
    }

    fn inspect(&self) -> Result<crate::inspect::InspectReport, StoreError> {
        self.inspect_tables()
    }

    fn sync_times(&self) -> Option<crate::store::sync_times::SyncHistogram> {
        self.syncs.as_ref().map(|s| s.snapshot())
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db.begin_read()?;
        let accounts = txn.open_table(ACCOUNTS)?;
        let mut bytes = 0;
        for item in accounts.iter()? {
            let (_, v) = item?;
            let record: AccountRecord = decode(v.value())?;
            bytes += record.used_bytes;
        }
        // Rooms and inboxes are charged to themselves, not to accounts (decision 0013).
        for item in txn.open_table(ROOMS)?.iter()? {
            let (_, v) = item?;
            bytes += decode::<RoomRecord>(v.value())?.bytes;
        }
        for item in txn.open_table(INBOX)?.iter()? {
            let (_, v) = item?;
            bytes += object_cost(v.value().len());
        }
        let file_bytes = match &self.path {
            Some(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            None => 0,
        };
        Ok(StoreStats {
            accounts: accounts.len()?,
            rooms: txn.open_table(ROOMS)?.len()?,
            entries: count_entries(&txn.open_table(ENTRIES)?)?,
            inbox: txn.open_table(INBOX)?.len()?,
            bytes,
            file_bytes,
        })
    }
}

/// The entries of every room: each value holds one, or a run of them (decision 0018).
fn count_entries(entries: &impl ReadableTable<Bytes, Bytes>) -> Result<u64, StoreError> {
    let mut count = 0u64;
    for item in entries.iter()? {
        count = count.saturating_add(runs::entries_in(item?.1.value())?);
    }
    Ok(count)
}
