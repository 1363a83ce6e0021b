//! Retention: expired room entries, inbox entries, listings and invites, with quota refunds.

use super::*;

impl Tx<'_> {
    pub(super) fn sweep(
        &mut self,
        now: u64,
        retention_secs: u64,
        max_deletions: usize,
    ) -> Result<OpResult, StoreError> {
        let mut refunds: HashMap<AccountKey, u64> = HashMap::new();
        let mut budget = max_deletions;
        let mut swept_entries = 0;
        let rooms: Vec<(Vec<u8>, RoomRecord)> = self
            .rooms
            .iter()?
            .map(|item| {
                let (k, v) = item?;
                Ok((k.value().to_vec(), decode(v.value())?))
            })
            .collect::<Result<_, StoreError>>()?;
        for (room_key, mut record) in rooms {
            if budget == 0 {
                break;
            }
            // A room's own retention (disappearing messages) applies to its messages and
            // never keeps anything longer than the relay's. Commits stay for the relay's
            // retention whatever the room asks, so a member who was away longer than the
            // room's timer still catches up through the epochs (and nobody can wipe them).
            let relay_cutoff = now.saturating_sub(retention_secs);
            let keep = record
                .retention_secs
                .unwrap_or(retention_secs)
                .min(retention_secs);
            let cutoff = now.saturating_sub(keep);
            let lo = key2(&room_key, record.first);
            let hi = key2(&room_key, record.head);
            let mut doomed = Vec::new();
            let mut first_kept = None;
            for item in self.entries.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
                let (k, v) = item?;
                let stored: StoredEntry = decode(v.value())?;
                if stored.time >= cutoff || doomed.len() >= budget {
                    first_kept = first_kept.or(Some(tail_u64(k.value())));
                    break;
                }
                if stored.kind == EntryKind::Commit && stored.time >= relay_cutoff {
                    first_kept = first_kept.or(Some(tail_u64(k.value())));
                    continue;
                }
                *refunds.entry(stored.author).or_default() += stored.payload.len() as u64;
                record.bytes = record.bytes.saturating_sub(stored.payload.len() as u64);
                doomed.push(k.value().to_vec());
            }
            if let Some(last) = doomed.last() {
                record.first = first_kept.unwrap_or(tail_u64(last) + 1);
                budget -= doomed.len();
                swept_entries += doomed.len() as u64;
                for k in &doomed {
                    self.entries.remove(k.as_slice())?;
                    self.commit_caps.remove(k.as_slice())?;
                }
                self.rooms
                    .insert(room_key.as_slice(), encode(&record)?.as_slice())?;
            }
        }
        let cutoff = now.saturating_sub(retention_secs);
        let mut doomed = Vec::new();
        for item in self.inbox.iter()? {
            if doomed.len() >= budget {
                break;
            }
            let (k, v) = item?;
            let stored: StoredInbox = decode(v.value())?;
            if stored.time < cutoff {
                *refunds.entry(stored.from).or_default() += stored.payload.len() as u64;
                doomed.push(k.value().to_vec());
            }
        }
        for k in &doomed {
            self.inbox.remove(k.as_slice())?;
        }
        // A listing (its GroupInfo) expires like an envelope, with its room's retention.
        let mut expired = Vec::new();
        for item in self.listings.iter()? {
            let (k, v) = item?;
            let listing: ListingRecord = decode(v.value())?;
            let keep = match self.rooms.get(k.value())? {
                Some(r) => decode::<RoomRecord>(r.value())?
                    .retention_secs
                    .unwrap_or(retention_secs)
                    .min(retention_secs),
                None => 0,
            };
            if listing.published < now.saturating_sub(keep) {
                *refunds.entry(listing.publisher).or_default() += listing.bytes();
                expired.push(k.value().to_vec());
            }
        }
        for k in &expired {
            self.listings.remove(k.as_slice())?;
        }
        self.refund(refunds)?;
        Ok(Ok(Applied::Swept {
            entries: swept_entries,
            inbox: doomed.len() as u64,
            listings: expired.len() as u64,
        }))
    }
}
