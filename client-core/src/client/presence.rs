//! Presence: members say when they come online and go offline with an encrypted
//! `Body::Presence` message in each room (DESIGN 7), never a relay lookup. Presence is
//! kept in memory only, never in the history; a client hears of it from the room log, so
//! on connecting it also learns of announcements made since it last read the room.
//!
//! An "online" lasts [`PRESENCE_TTL`] after the relay stamped it: a client that stays
//! connected says it again every [`PRESENCE_HEARTBEAT`] ([`crate::Client::heartbeat`]),
//! so one that died without a goodbye (a closed terminal, a killed agent, a lost
//! network) shows offline once two heartbeats are missed; and a notice older than that,
//! replayed while catching up, is not told as news. The cost is one small entry per
//! room per heartbeat in the room's log (six an hour per connected member).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use hearth_protocol::{Handle, RoomId};

use super::room::Status;
use super::{lock, Inner};
use crate::content::Body;
use crate::error::ClientError;

/// How often a connected client says again that it is online.
pub const PRESENCE_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// The time over which the goodbyes of a closing client are spread (within its close
/// grace of 5 s).
const GOODBYE_SPREAD: std::time::Duration = std::time::Duration::from_secs(3);
/// How long an "online" holds after the relay stored it: two heartbeats and some slack.
pub const PRESENCE_TTL: std::time::Duration = std::time::Duration::from_secs(25 * 60);

/// Whether a presence notice stored at `at` (relay Unix seconds) still holds at `now`
/// (the relay's clock as we know it).
pub(crate) fn is_live(at: u64, now: SystemTime) -> bool {
    holds(crate::history::time_of(at), now)
}

/// Whether a notice stored at `at` still holds at `now`.
fn holds(at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(at)
        .map_or(true, |age| age < PRESENCE_TTL)
}

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

    /// Whether `handle` is shown online in `room` now (its last notice said online and
    /// still holds).
    pub(crate) fn shown_online(&self, room: RoomId, handle: &Handle) -> bool {
        let now = self.clock.now();
        lock(&self.presence)
            .get(&room)
            .and_then(|seen| seen.get(handle))
            .is_some_and(|(online, at)| *online && holds(*at, now))
    }

    /// Sends a presence message to every joined room, spread over them (see
    /// [`Inner::broadcast`]); failures are logged.
    pub(crate) async fn announce(&self, online: bool) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let gap = if online {
            super::room_jitter()
        } else {
            // A goodbye fits in the time a closing client gives it.
            (GOODBYE_SPREAD / (self.room_handles().len().max(1) as u32)).min(super::room_jitter())
        };
        self.broadcast(Body::Presence { online }, "presence", gap)
            .await;
    }

    /// Says we are online (and, with `name`, our display name) in every joined room, on
    /// a task of its own that a later announcement or closing stops.
    pub(crate) fn spread_announcement(&self, name: bool) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let task = tokio::spawn(async move {
            me.announce(true).await;
            if name {
                me.announce_name().await;
            }
        });
        if let Some(previous) = lock(&self.announcer).replace(task) {
            previous.abort();
        }
    }

    /// Sends `body` to every room we are a joined member of, in random order, with a
    /// random pause of up to `gap` before each (decision 0013 part 5: the relay sees the
    /// rooms' connections; a notice to all of them at once would tie them together).
    /// Failures are logged with `what`, since these notices are best-effort.
    pub(crate) async fn broadcast(&self, body: Body, what: &str, gap: std::time::Duration) {
        let mut rooms = self.room_handles();
        super::room_links::shuffle(&mut rooms);
        for room in rooms {
            let id = {
                let room = room.lock().await;
                if room.removed || room.rec.status != Status::Joined {
                    continue;
                }
                room.id
            };
            tokio::time::sleep(super::room_links::random_pause(gap)).await;
            if let Err(e) = self.send_body(id, body.clone()).await {
                tracing::info!("room {id}: {what} not sent: {e}");
            }
        }
    }

    /// Tells a room we just entered (created, accepted, joined) that we are online, and
    /// our display name, if we announce presence at all ([`crate::Client::announce_presence`]):
    /// otherwise its members would see us offline until the next heartbeat. Best effort.
    pub(crate) async fn greet(&self, id: RoomId) {
        if !self.announced.load(Ordering::SeqCst) || self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut bodies = vec![Body::Presence { online: true }];
        if let Some(display_name) = self.display_name(self.profile.handle()) {
            bodies.push(Body::Profile { display_name });
        }
        for body in bodies {
            if let Err(e) = self.send_body(id, body).await {
                tracing::info!("room {id}: greeting not sent: {e}");
            }
        }
    }

    pub(crate) async fn online(&self, id: RoomId) -> Result<Vec<Handle>, ClientError> {
        let members = {
            let room = self.room(id)?;
            let room = room.lock().await;
            room.members()
        };
        let now = self.clock.now();
        let seen = lock(&self.presence);
        let Some(room) = seen.get(&id) else {
            return Ok(Vec::new());
        };
        Ok(members
            .into_iter()
            .map(|m| m.handle)
            .filter(|h| {
                room.get(h)
                    .is_some_and(|(online, at)| *online && holds(*at, now))
            })
            .collect())
    }
}
