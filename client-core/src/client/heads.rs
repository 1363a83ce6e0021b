//! Signed log heads (issue 10): every content a member sends carries its transcript mark
//! (the last seq it processed and its hash there), and a mark that does not match ours
//! is a fork. Members who do not write would never show theirs, so a relay could keep
//! two halves of a quiet room on different histories. Now and then each member sends a
//! [`Body::Head`] (content with nothing but the mark, signed like every MLS message) to
//! each room whose log moved since its last mark, so a partition shows as a fork within
//! one exchange. A fork holds the room's messages back until the user acknowledges it
//! ([`Client::acknowledge_fork`]).

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use hearth_protocol::{RoomId, Seq};

use super::room::Status;
use super::{lock, Client, Inner};
use crate::content::Body;
use crate::error::ClientError;
use crate::fingerprint::RoomCode;

/// How often a connected client sends its heads.
pub const HEAD_INTERVAL: Duration = Duration::from_secs(15 * 60);

impl Client {
    /// Sends a head to every joined room where others wrote since our last content
    /// there (or where we never wrote since this client started); returns how many were
    /// sent. Runs by itself every [`HEAD_INTERVAL`]; errors
    /// of single rooms are logged.
    pub async fn exchange_heads(&self) -> usize {
        self.inner.exchange_heads().await
    }

    /// The user has looked at a fork in `room` (compared the room's code with someone,
    /// see [`Client::room_code`]): sending messages there works again.
    pub async fn acknowledge_fork(&self, room: RoomId) -> Result<(), ClientError> {
        let room = self.inner.room(room)?;
        let mut room = room.lock().await;
        if room.rec.extra.fork.take().is_some() {
            let mut engine = self.inner.engine();
            engine.persist(self.inner.profile.store(), |batch| room.save(batch))?;
        }
        Ok(())
    }

    /// The code of `room` at its current epoch, to compare with another member in person
    /// (see [`crate::fingerprint::RoomCode`]).
    pub async fn room_code(&self, room: RoomId) -> Result<RoomCode, ClientError> {
        let room = self.inner.room(room)?;
        let room = room.lock().await;
        let authenticator = room.group.epoch_authenticator();
        Ok(RoomCode::new(
            room.group.epoch().as_u64(),
            authenticator.as_slice(),
        ))
    }

    /// Where the history of `room` forked, if a fork is waiting for the user.
    pub async fn fork(&self, room: RoomId) -> Result<Option<Seq>, ClientError> {
        let room = self.inner.room(room)?;
        let room = room.lock().await;
        Ok(room.rec.extra.fork)
    }
}

impl Inner {
    pub(crate) fn mark_sent(&self, room: RoomId, seq: Seq) {
        let mut sent = lock(&self.marks_sent);
        let last = sent.entry(room).or_insert(seq);
        *last = (*last).max(seq);
    }

    async fn exchange_heads(&self) -> usize {
        let mut due = Vec::new();
        for room in self.room_handles() {
            let room = room.lock().await;
            if room.removed || room.rec.status != Status::Joined {
                continue;
            }
            let last = room.rec.transcript.last();
            if lock(&self.marks_sent)
                .get(&room.id)
                .is_none_or(|sent| *sent < last)
            {
                due.push(room.id);
            }
        }
        let mut sent = 0;
        for id in due {
            match self.send_body(id, Body::Head).await {
                Ok(_) => sent += 1,
                Err(e) => tracing::warn!("room {id}: sending our log head failed: {e}"),
            }
        }
        sent
    }
}

/// Sends heads (and tops KeyPackages up) every [`HEAD_INTERVAL`] until the client is
/// dropped or closed.
pub(crate) async fn head_loop(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(HEAD_INTERVAL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        inner.exchange_heads().await;
        // A long-running client keeps its KeyPackages topped up too: used ones, expired
        // ones the relay no longer hands out, a last-resort one that was used.
        if let Err(e) = inner.top_up_key_packages().await {
            tracing::warn!("topping up key packages failed: {e}");
        }
    }
}
