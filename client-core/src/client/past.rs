//! Rooms we are no longer in (kicked, banned, or left): their history stays on this
//! machine and readable (issue 12), though nothing can be sent there.
//!
//! Stored in [`Table::Settings`] under `past-room/<room id>` (postcard), in the same batch
//! as the processing that removed us, or our leaving.

use std::time::SystemTime;

use hearth_protocol::RoomId;
use serde::{Deserialize, Serialize};

use super::room::Room;
use super::Client;
use crate::error::{store as store_err, ClientError};
use crate::store::{Table, WriteBatch};

const PREFIX: &str = "past-room/";

#[derive(Serialize, Deserialize)]
struct PastRecord {
    name: String,
    direct: bool,
    /// When we were removed or left (Unix seconds, this device's clock).
    left_at: u64,
}

/// A room we are no longer in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastRoom {
    /// The room.
    pub id: RoomId,
    /// Its name when we left (chosen by its members: make it inert to print it).
    pub name: String,
    /// A private conversation.
    pub direct: bool,
    /// When we were removed or left.
    pub left_at: SystemTime,
}

/// Records `room` as one we are no longer in, in `batch`.
pub(crate) fn put(batch: &mut WriteBatch<'_>, room: &Room) -> Result<(), ClientError> {
    let record = PastRecord {
        name: room.rec.name.clone(),
        direct: room.settings().is_ok_and(|s| s.direct),
        left_at: crate::clock::device_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let bytes = postcard::to_allocvec(&record).map_err(|e| ClientError::Store(e.to_string()))?;
    batch
        .put(
            Table::Settings,
            format!("{PREFIX}{}", room.id.to_hex()).as_bytes(),
            &bytes,
        )
        .map_err(store_err)
}

/// Every past-room record in the store (including rooms we are back in), unsorted.
pub(crate) fn records(store: &crate::store::EncryptedStore) -> Result<Vec<PastRoom>, ClientError> {
    let rows = store
        .scan(Table::Settings, PREFIX.as_bytes())
        .map_err(store_err)?;
    let mut out = Vec::new();
    for (key, value) in rows {
        let Some(id) = std::str::from_utf8(&key[PREFIX.len()..])
            .ok()
            .and_then(RoomId::from_hex)
        else {
            continue;
        };
        let Ok(record) = postcard::from_bytes::<PastRecord>(&value) else {
            continue;
        };
        out.push(PastRoom {
            id,
            name: record.name,
            direct: record.direct,
            left_at: crate::history::time_of(record.left_at),
        });
    }
    Ok(out)
}

impl Client {
    /// The rooms we are no longer in (and not back in), newest departure first: their
    /// history is still readable with [`Client::history`].
    pub async fn past_rooms(&self) -> Result<Vec<PastRoom>, ClientError> {
        let current: Vec<RoomId> = self.rooms().await?.into_iter().map(|r| r.id).collect();
        let mut out: Vec<PastRoom> = records(self.inner.profile.store())?
            .into_iter()
            .filter(|p| !current.contains(&p.id))
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.left_at));
        Ok(out)
    }

    /// The past room `name_or_id` names (exact name, case-insensitive, or at least 4 hex
    /// digits of its id), if exactly one does.
    pub async fn find_past_room(&self, name_or_id: &str) -> Result<Option<RoomId>, ClientError> {
        let wanted = name_or_id.trim().to_lowercase();
        let found: Vec<RoomId> = self
            .past_rooms()
            .await?
            .into_iter()
            .filter(|p| {
                p.name.to_lowercase() == wanted
                    || (wanted.len() >= 4 && p.id.to_hex().starts_with(&wanted))
            })
            .map(|p| p.id)
            .collect();
        Ok(match found.as_slice() {
            [one] => Some(*one),
            _ => None,
        })
    }
}
