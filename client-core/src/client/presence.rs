//! Presence: members say when they come online and go offline with an encrypted
//! `Body::Presence` message in each room (DESIGN 7), never a relay lookup. Presence is
//! kept in memory only, never in the history; a client hears of it from the room log, so
//! on connecting it also learns of announcements made since it last read the room.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use hearth_protocol::{Handle, RoomId};

use super::room::Status;
use super::{lock, Inner};
use crate::content::Body;
use crate::error::ClientError;

/// The last presence heard of each member, per room: online or not, and when the relay
/// stored it.
pub(crate) type Seen = HashMap<RoomId, HashMap<Handle, (bool, SystemTime)>>;

impl Inner {
    /// Records a presence message (in log order, so the last one wins).
    pub(crate) fn saw_presence(&self, room: RoomId, handle: Handle, online: bool, at: u64) {
        lock(&self.presence)
            .entry(room)
            .or_default()
            .insert(handle, (online, crate::history::time_of(at)));
    }

    /// Sends a presence message to every joined room; failures are logged.
    pub(crate) async fn announce(&self, online: bool) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        self.broadcast(Body::Presence { online }, "presence").await;
    }

    /// Sends `body` to every room we are a joined member of; failures are logged with
    /// `what`, since these notices are best-effort.
    pub(crate) async fn broadcast(&self, body: Body, what: &str) {
        for room in self.room_handles() {
            let id = {
                let room = room.lock().await;
                if room.removed || room.rec.status != Status::Joined {
                    continue;
                }
                room.id
            };
            if let Err(e) = self.send_body(id, body.clone()).await {
                tracing::info!("room {id}: {what} not sent: {e}");
            }
        }
    }

    pub(crate) async fn online(&self, id: RoomId) -> Result<Vec<Handle>, ClientError> {
        let members = {
            let room = self.room(id)?;
            let room = room.lock().await;
            room.members()
        };
        let seen = lock(&self.presence);
        let Some(room) = seen.get(&id) else {
            return Ok(Vec::new());
        };
        Ok(members
            .into_iter()
            .map(|m| m.handle)
            .filter(|h| room.get(h).is_some_and(|(online, _)| *online))
            .collect())
    }
}
