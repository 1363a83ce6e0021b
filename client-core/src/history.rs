//! Locally stored messages: `Table::History`, key = room id (16) || seq (8, big-endian),
//! value = a postcard [`HistoryRecord`]. Written in the same batch as the MLS state
//! change that produced the message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_protocol::{Handle, RoomId, Seq};
use serde::{Deserialize, Serialize};

use crate::error::{store as store_err, ClientError};
use crate::events::HistoryItem;
use crate::store::{EncryptedStore, Table, WriteBatch};

/// One stored message as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Who sent it.
    pub sender: Handle,
    /// The text.
    pub text: String,
    /// Relay time, seconds since the Unix epoch.
    pub time: u64,
    /// Sent by this device.
    pub own: bool,
    /// The message replied to.
    pub reply_to: Option<Seq>,
}

/// The store key of a message.
pub fn key(room: RoomId, seq: Seq) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&room.0);
    key[16..].copy_from_slice(&seq.0.to_be_bytes());
    key
}

/// Seconds since the Unix epoch as a `SystemTime`.
pub fn time_of(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A `SystemTime` as seconds since the Unix epoch (0 before it).
pub fn secs_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl HistoryRecord {
    /// The API view of this record.
    pub fn item(&self, room: RoomId, seq: Seq) -> HistoryItem {
        HistoryItem {
            room,
            seq,
            sender: self.sender.clone(),
            sender_name: None,
            text: self.text.clone(),
            time: time_of(self.time),
            own: self.own,
            reply_to: self.reply_to,
        }
    }

    /// Adds the record to a batch.
    pub fn put(
        &self,
        batch: &mut WriteBatch<'_>,
        room: RoomId,
        seq: Seq,
    ) -> Result<(), ClientError> {
        let bytes = postcard::to_allocvec(self).map_err(store_err)?;
        batch
            .put(Table::History, &key(room, seq), &bytes)
            .map_err(store_err)
    }
}

/// The last `limit` messages of a room (at or after `since`), oldest first.
pub fn read(
    store: &EncryptedStore,
    room: RoomId,
    limit: usize,
    since: Option<SystemTime>,
) -> Result<Vec<HistoryItem>, ClientError> {
    let rows = store.scan(Table::History, &room.0).map_err(store_err)?;
    let mut items = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let Some(seq) = key.get(16..24).and_then(|s| <[u8; 8]>::try_from(s).ok()) else {
            continue;
        };
        let Ok(record) = postcard::from_bytes::<HistoryRecord>(&value) else {
            continue;
        };
        let item = record.item(room, Seq(u64::from_be_bytes(seq)));
        if since.is_none_or(|since| item.time >= since) {
            items.push(item);
        }
    }
    items.sort_by_key(|i| i.seq);
    let skip = items.len().saturating_sub(limit);
    Ok(items.split_off(skip))
}

/// Whether a message stored by the relay at `time` is past a timer of `expire_secs` at
/// `now`.
pub fn expired(time: SystemTime, expire_secs: u64, now: SystemTime) -> bool {
    time.checked_add(Duration::from_secs(expire_secs))
        .is_some_and(|end| end <= now)
}

/// Deletes the messages of a room that are past `expire_secs` at `now`; returns how
/// many were deleted.
pub fn purge(
    store: &EncryptedStore,
    room: RoomId,
    expire_secs: u64,
    now: SystemTime,
) -> Result<usize, ClientError> {
    let rows = store.scan(Table::History, &room.0).map_err(store_err)?;
    let doomed: Vec<Vec<u8>> = rows
        .into_iter()
        .filter(|(_, value)| {
            // An unreadable record cannot be shown either; leave it to whoever
            // understands it rather than guess its age.
            postcard::from_bytes::<HistoryRecord>(value)
                .is_ok_and(|r| expired(time_of(r.time), expire_secs, now))
        })
        .map(|(key, _)| key)
        .collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    let mut batch = store.begin().map_err(store_err)?;
    for key in &doomed {
        batch.delete(Table::History, key).map_err(store_err)?;
    }
    batch.commit().map_err(store_err)?;
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_relative_to_the_relay_time() {
        let t = time_of(1_000);
        assert!(!expired(t, 60, time_of(1_059)));
        assert!(expired(t, 60, time_of(1_060)));
        assert!(!expired(t, u64::MAX, time_of(u64::MAX / 4)));
    }
}
