//! Retention: expired room entries (refunded to their room), inbox entries and listings,
//! and the history of epochs whose commit expired: their epoch rows and the capability
//! hashes their commits announced (decision 0013, part 3).
//!
//! The relay's sweeper finds what expired on a read snapshot ([`scan`], off the writer),
//! a few hundred rows at a time, and deletes it with small [`WriteOp::SweepItems`] ops
//! that check every item again, so the group-commit writer never holds a long
//! transaction for it. [`WriteOp::Sweep`] runs the same steps in one transaction.

use super::*;
use crate::store::{SweepCursor, SweepItem, SweepPhase, SweepScan};

/// The most items one scan returns (each is one small deletion when applied).
pub(super) const MAX_ITEMS: usize = 256;

/// The point from which a room's entries are kept, by the sweep's rules, and the entries
/// before it that go: the room's own retention applies to its messages and never keeps
/// anything longer than the relay's. Commits stay for the relay's retention whatever the
/// room asks, so a member who was away longer than the room's timer still catches up
/// through the epochs (and nobody can wipe them).
struct Cutoffs {
    messages: u64,
    commits: u64,
}

impl Cutoffs {
    fn of(record: &RoomRecord, now: u64, retention_secs: u64) -> Self {
        let keep = record
            .retention_secs
            .unwrap_or(retention_secs)
            .min(retention_secs);
        Self {
            messages: now.saturating_sub(keep),
            commits: now.saturating_sub(retention_secs),
        }
    }

    /// Whether an entry of `kind` written at `time` goes.
    fn expired(&self, kind: EntryKind, time: u64) -> bool {
        time < self.messages && (kind == EntryKind::Message || time < self.commits)
    }
}

/// Whether an inbox entry stored with `time` (the start of its day, see
/// [`super::inbox::INBOX_TIME_GRAIN_SECS`]) is older than `cutoff`: judged by the end of
/// that day, so an entry is never swept before its retention, at most a day after.
fn expired_inbox(time: u64, cutoff: u64) -> bool {
    time.saturating_add(super::inbox::INBOX_TIME_GRAIN_SECS) < cutoff
}

/// The time of a stored inbox entry, without copying its payload.
fn inbox_time(bytes: &[u8]) -> Result<u64, StoreError> {
    postcard::take_from_bytes::<u64>(bytes)
        .map(|(time, _)| time)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// How long a listing is kept: its room's retention (as for an envelope).
fn listing_keep(
    rooms: &impl ReadableTable<Bytes, Bytes>,
    room: &[u8],
    retention_secs: u64,
) -> Result<u64, StoreError> {
    Ok(match rooms.get(room)? {
        Some(r) => decode::<RoomRecord>(r.value())?
            .retention_secs
            .unwrap_or(retention_secs)
            .min(retention_secs),
        None => 0,
    })
}

/// The tables a scan reads.
pub(super) struct ScanTables<'a, R, E, P, I, L> {
    pub rooms: &'a R,
    pub entries: &'a E,
    pub epochs: &'a P,
    pub inbox: &'a I,
    pub listings: &'a L,
}

/// Finds what is due from `cursor` on, looking at about `max_rows` rows (at least one
/// room, inbox entry or listing, so every scan moves on) and returning at most
/// [`MAX_ITEMS`] items.
pub(super) fn scan<R, E, P, I, L>(
    t: &ScanTables<'_, R, E, P, I, L>,
    cursor: &SweepCursor,
    now: u64,
    retention_secs: u64,
    max_rows: usize,
) -> Result<SweepScan, StoreError>
where
    R: ReadableTable<Bytes, Bytes>,
    E: ReadableTable<Bytes, Bytes>,
    P: ReadableTable<Bytes, u64>,
    I: ReadableTable<Bytes, Bytes>,
    L: ReadableTable<Bytes, Bytes>,
{
    let mut items = Vec::new();
    let mut rows = 0usize;
    let full = |rows: usize, items: &Vec<SweepItem>| rows >= max_rows || items.len() >= MAX_ITEMS;
    let from = cursor.from.as_deref().unwrap_or(&[]);
    let next = |phase, key: &[u8]| SweepCursor {
        phase,
        from: Some(key.to_vec()),
    };
    match cursor.phase {
        SweepPhase::Rooms => {
            for item in t.rooms.range::<&[u8]>(from..)? {
                let (room_key, v) = item?;
                let room_key = room_key.value();
                let Ok(room) = <[u8; 16]>::try_from(room_key).map(RoomId) else {
                    continue;
                };
                if full(rows, &items) {
                    return Ok(SweepScan {
                        items,
                        next: Some(next(SweepPhase::Rooms, room_key)),
                    });
                }
                rows += 1;
                let record: RoomRecord = decode(v.value())?;
                let cutoffs = Cutoffs::of(&record, now, retention_secs);
                // Entries from the first stored one while they are due (commits the
                // relay still keeps are stepped over).
                let start = runs::walk_start(t.entries, &room, record.first)?;
                let hi = key2(&room.0, record.head);
                let mut through = None;
                let mut first_kept = None;
                let mut cut_short = false;
                'values: for value in t.entries.range::<&[u8]>(start.as_slice()..=hi.as_slice())? {
                    let (k, v) = value?;
                    for stored in runs::entries_of(tail_u64(k.value()), v.value())? {
                        if stored.seq < record.first {
                            continue;
                        }
                        if stored.seq > record.head {
                            break 'values;
                        }
                        rows += 1;
                        if stored.time >= cutoffs.messages {
                            first_kept = first_kept.or(Some(stored.seq));
                            break 'values;
                        }
                        if cutoffs.expired(stored.kind, stored.time) {
                            through = Some(stored.seq);
                        } else {
                            first_kept = first_kept.or(Some(stored.seq));
                        }
                        if rows >= max_rows {
                            cut_short = true;
                            break 'values;
                        }
                    }
                }
                if let Some(through) = through {
                    items.push(SweepItem::Entries { room, through });
                }
                // What the first kept entry will be once those go: epochs that ended
                // before it read nothing any more.
                let first = match (first_kept, through) {
                    (Some(kept), _) => kept,
                    (None, Some(through)) => through.saturating_add(1),
                    (None, None) => record.first,
                };
                let lo = epoch_key(&room, &CapHash([0; 32]));
                let hi = epoch_key(&room, &CapHash([0xff; 32]));
                let mut caps = Vec::new();
                for epoch in t.epochs.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
                    let (k, end) = epoch?;
                    rows += 1;
                    if end.value() < first {
                        let cap = <[u8; 32]>::try_from(&k.value()[16..]).unwrap_or([0; 32]);
                        caps.push(CapHash(cap));
                        if caps.len() >= MAX_ITEMS {
                            cut_short = true;
                            break;
                        }
                    }
                }
                let progress = through.is_some() || !caps.is_empty();
                if !caps.is_empty() {
                    items.push(SweepItem::Epochs { room, caps });
                }
                if cut_short && progress {
                    // The rest of this room is next (what this scan found will be gone
                    // by then, so the next scan starts further on).
                    return Ok(SweepScan {
                        items,
                        next: Some(next(SweepPhase::Rooms, room_key)),
                    });
                }
            }
            scan(
                t,
                &SweepCursor {
                    phase: SweepPhase::Inbox,
                    from: None,
                },
                now,
                retention_secs,
                max_rows.saturating_sub(rows).max(1),
            )
            .map(|mut rest| {
                items.append(&mut rest.items);
                SweepScan {
                    items,
                    next: rest.next,
                }
            })
        }
        SweepPhase::Inbox => {
            let cutoff = now.saturating_sub(retention_secs);
            for item in t.inbox.range::<&[u8]>(from..)? {
                let (k, v) = item?;
                if full(rows, &items) {
                    return Ok(SweepScan {
                        items,
                        next: Some(next(SweepPhase::Inbox, k.value())),
                    });
                }
                rows += 1;
                if expired_inbox(inbox_time(v.value())?, cutoff) && k.value().len() == 40 {
                    let account = <[u8; 32]>::try_from(&k.value()[..32]).unwrap_or([0; 32]);
                    items.push(SweepItem::Inbox {
                        account: AccountKey(account),
                        id: tail_u64(k.value()),
                    });
                }
            }
            Ok(SweepScan {
                items,
                next: Some(SweepCursor {
                    phase: SweepPhase::Listings,
                    from: None,
                }),
            })
        }
        SweepPhase::Listings => {
            for item in t.listings.range::<&[u8]>(from..)? {
                let (k, v) = item?;
                if full(rows, &items) {
                    return Ok(SweepScan {
                        items,
                        next: Some(next(SweepPhase::Listings, k.value())),
                    });
                }
                rows += 1;
                let listing: ListingRecord = decode(v.value())?;
                let keep = listing_keep(t.rooms, k.value(), retention_secs)?;
                if listing.published < now.saturating_sub(keep) {
                    if let Ok(room) = <[u8; 16]>::try_from(k.value()) {
                        items.push(SweepItem::Listing { room: RoomId(room) });
                    }
                }
            }
            Ok(SweepScan { items, next: None })
        }
    }
}

/// A value of `entries` the sweep deletes: its key, and what stays of it (a run the sweep
/// ends inside keeps its newer messages, under the seq of the first of them).
type Rewrite = (Vec<u8>, Option<(u64, Vec<u8>)>);

/// What [`Tx::sweep_items`] deleted.
#[derive(Default)]
pub(super) struct Swept {
    entries: u64,
    inbox: u64,
    listings: u64,
    epochs: u64,
}

impl Swept {
    fn add(&mut self, other: &Swept) {
        self.entries += other.entries;
        self.inbox += other.inbox;
        self.listings += other.listings;
        self.epochs += other.epochs;
    }

    pub(super) fn applied(&self) -> Applied {
        Applied::Swept {
            entries: self.entries,
            inbox: self.inbox,
            listings: self.listings,
            epochs: self.epochs,
        }
    }
}

impl Tx<'_> {
    /// [`WriteOp::Sweep`]: scans and deletes in this transaction until nothing is due or
    /// about `max_deletions` rows went.
    pub(super) fn sweep(
        &mut self,
        now: u64,
        retention_secs: u64,
        max_deletions: usize,
    ) -> Result<OpResult, StoreError> {
        let mut total = Swept::default();
        let mut cursor = SweepCursor::default();
        loop {
            let found = scan(
                &ScanTables {
                    rooms: self.rooms.read()?,
                    entries: self.entries.read()?,
                    epochs: self.epochs.read()?,
                    inbox: self.inbox.read()?,
                    listings: self.listings.read()?,
                },
                &cursor,
                now,
                retention_secs,
                4096,
            )?;
            total.add(&self.sweep_items(now, retention_secs, found.items)?);
            let done = total.entries + total.inbox + total.listings + total.epochs;
            match found.next {
                Some(next) if done < max_deletions as u64 => cursor = next,
                _ => return Ok(Ok(total.applied())),
            }
        }
    }

    /// [`WriteOp::SweepItems`]: deletes what a scan found, each item checked again (the
    /// scan read an earlier snapshot), and refunds its room the bytes its entries took.
    pub(super) fn sweep_items(
        &mut self,
        now: u64,
        retention_secs: u64,
        items: Vec<SweepItem>,
    ) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        for item in items {
            match item {
                SweepItem::Entries { room, through } => {
                    swept.entries += self.sweep_entries(&room, through, now, retention_secs)?;
                }
                SweepItem::Epochs { room, caps } => {
                    swept.epochs += self.sweep_epochs(&room, &caps)?;
                }
                SweepItem::Inbox { account, id } => {
                    let key = key2(&account.0, id);
                    let stored: Option<StoredInbox> =
                        match self.inbox.read()?.get(key.as_slice())? {
                            Some(v) => Some(decode(v.value())?),
                            None => None,
                        };
                    if stored
                        .is_some_and(|s| expired_inbox(s.time, now.saturating_sub(retention_secs)))
                    {
                        self.inbox.write()?.remove(key.as_slice())?;
                        swept.inbox += 1;
                    }
                }
                SweepItem::Listing { room } => {
                    let Some(listing) = self.listing(&room)? else {
                        continue;
                    };
                    let keep = listing_keep(self.rooms.read()?, &room.0, retention_secs)?;
                    if listing.published < now.saturating_sub(keep) {
                        self.remove_listing(&room)?;
                        swept.listings += 1;
                    }
                }
            }
        }
        Ok(swept)
    }

    /// Deletes the due entries of `room` up to `through` (with the capability hashes its
    /// commits announced), refunds the room for them, and moves its first seq on.
    fn sweep_entries(
        &mut self,
        room: &RoomId,
        through: u64,
        now: u64,
        retention_secs: u64,
    ) -> Result<u64, StoreError> {
        let Some(mut record) = self.room(room)? else {
            return Ok(0);
        };
        let cutoffs = Cutoffs::of(&record, now, retention_secs);
        let start = runs::walk_start(self.entries.read()?, room, record.first)?;
        let hi = key2(&room.0, through.min(record.head));
        let mut rewrites: Vec<Rewrite> = Vec::new();
        let mut doomed_commits = Vec::new();
        let mut deleted = 0u64;
        let mut last_deleted = None;
        let mut first_kept = None;
        'values: for item in self
            .entries
            .read()?
            .range::<&[u8]>(start.as_slice()..=hi.as_slice())?
        {
            let (k, v) = item?;
            let stored = runs::entries_of(tail_u64(k.value()), v.value())?;
            let mut kept_from = None;
            let mut stop = false;
            for (i, entry) in stored.iter().enumerate() {
                if entry.seq < record.first {
                    // Only in a damaged store (a sweep rewrites a run from its first kept
                    // entry): not the room's any more, so neither counted, weighed nor
                    // kept; it goes with its run's rewrite.
                    continue;
                }
                if entry.seq > through {
                    kept_from = kept_from.or(Some(i));
                    stop = true;
                    break;
                }
                if entry.time >= cutoffs.messages {
                    first_kept = first_kept.or(Some(entry.seq));
                    kept_from = kept_from.or(Some(i));
                    stop = true;
                    break;
                }
                if !cutoffs.expired(entry.kind, entry.time) || kept_from.is_some() {
                    // A commit the relay still keeps (alone under its key: runs hold
                    // messages only).
                    first_kept = first_kept.or(Some(entry.seq));
                    kept_from = kept_from.or(Some(i));
                    continue;
                }
                record.bytes = record
                    .bytes
                    .saturating_sub(entry_cost(entry.kind, entry.payload.len()));
                if entry.kind == EntryKind::Commit {
                    doomed_commits.push(entry.seq);
                }
                deleted += 1;
                last_deleted = Some(entry.seq);
            }
            match kept_from {
                Some(0) => {}
                Some(i) => rewrites.push((
                    k.value().to_vec(),
                    Some((stored[i].seq, runs::run_value(&stored[i..])?)),
                )),
                None => rewrites.push((k.value().to_vec(), None)),
            }
            if stop {
                break 'values;
            }
        }
        let Some(last) = last_deleted else {
            return Ok(0);
        };
        record.first = first_kept.unwrap_or(last.saturating_add(1));
        for (key, rest) in rewrites {
            self.entries.write()?.remove(key.as_slice())?;
            if let Some((seq, value)) = rest {
                self.entries
                    .write()?
                    .insert(key2(&room.0, seq).as_slice(), value.as_slice())?;
            }
        }
        for seq in doomed_commits {
            self.commit_caps
                .write()?
                .remove(key2(&room.0, seq).as_slice())?;
        }
        self.put_room(room, &record)?;
        Ok(deleted)
    }

    /// Deletes the rows of epochs of `room` that ended before its first stored entry: a
    /// capability of such an epoch could read only entries that are gone (a member away
    /// that long cannot catch up anyway: the commit that ended the epoch is gone too).
    /// Its holder is refused as for a capability the room never had.
    fn sweep_epochs(&mut self, room: &RoomId, caps: &[CapHash]) -> Result<u64, StoreError> {
        let Some(record) = self.room(room)? else {
            return Ok(0);
        };
        // A room from before the epoch counter counts its epochs from these rows: keep
        // the count before any goes.
        if self.commits.read()?.get(room.0.as_slice())?.is_none() {
            let index = self.epoch_index(room)?;
            self.commits.write()?.insert(room.0.as_slice(), index)?;
        }
        let mut deleted = 0;
        for cap in caps {
            let key = epoch_key(room, cap);
            let end = self.epochs.read()?.get(key.as_slice())?.map(|v| v.value());
            if end.is_some_and(|end| end < record.first) {
                self.epochs.write()?.remove(key.as_slice())?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
