//! The aggregated audit feed: one row per window, kind and address, with a count.
//!
//! A flood of refusals from one address only raises one row's count; one from many
//! addresses fills at most [`AUDIT_ROWS_PER_WINDOW`] rows of the current window and then
//! counts into a row per kind for "other addresses". Older windows are never touched by
//! new records, so nothing a client does can erase what the owner should see; rows go
//! only when older than [`AUDIT_KEEP_SECS`].

use super::*;
use crate::store::{
    AUDIT_KEEP_SECS, AUDIT_OTHER_ADDRESSES, AUDIT_ROWS_PER_WINDOW, AUDIT_WINDOW_SECS,
};

/// Old rows dropped per record written, so pruning never makes one write expensive.
const PRUNE_PER_WRITE: usize = 64;

fn window_of(time: u64) -> u64 {
    time - time % AUDIT_WINDOW_SECS
}

fn audit_key(window: u64, kind: &str, ip: Option<&str>) -> Vec<u8> {
    let mut key = window.to_be_bytes().to_vec();
    key.extend_from_slice(kind.as_bytes());
    key.push(0);
    key.extend_from_slice(ip.unwrap_or("").as_bytes());
    key
}

impl Tx<'_> {
    /// Adds `record` to its window's row (see the module documentation).
    pub(super) fn count_audit(&mut self, mut record: AuditRecord) -> Result<(), StoreError> {
        let window = window_of(record.time);
        let mut key = audit_key(window, &record.kind, record.ip.as_deref());
        let existing = match self.audit.read()?.get(key.as_slice())? {
            Some(v) => Some(decode::<AuditRecord>(v.value())?),
            None => None,
        };
        let merged = match existing {
            Some(mut row) => {
                row.absorb(&record);
                row
            }
            None => {
                let lo = window.to_be_bytes();
                let hi = window.saturating_add(1).to_be_bytes();
                let rows = self
                    .audit
                    .read()?
                    .range::<&[u8]>(lo.as_slice()..hi.as_slice())?
                    .take(AUDIT_ROWS_PER_WINDOW)
                    .count();
                if rows >= AUDIT_ROWS_PER_WINDOW {
                    record.ip = Some(AUDIT_OTHER_ADDRESSES.to_string());
                    key = audit_key(window, &record.kind, record.ip.as_deref());
                    match self.audit.read()?.get(key.as_slice())? {
                        Some(v) => {
                            let mut row: AuditRecord = decode(v.value())?;
                            row.absorb(&record);
                            row
                        }
                        None => record,
                    }
                } else {
                    record
                }
            }
        };
        self.audit
            .write()?
            .insert(key.as_slice(), encode(&merged)?.as_slice())?;
        self.prune_audit(merged.last)
    }

    /// Drops a few rows of windows older than [`AUDIT_KEEP_SECS`] before `now`.
    fn prune_audit(&mut self, now: u64) -> Result<(), StoreError> {
        let cutoff = window_of(now.saturating_sub(AUDIT_KEEP_SECS)).to_be_bytes();
        let old: Vec<Vec<u8>> = self
            .audit
            .read()?
            .range::<&[u8]>(..cutoff.as_slice())?
            .take(PRUNE_PER_WRITE)
            .map(|item| item.map(|(k, _)| k.value().to_vec()))
            .collect::<Result<_, _>>()?;
        for key in old {
            self.audit.write()?.remove(key.as_slice())?;
        }
        Ok(())
    }
}
