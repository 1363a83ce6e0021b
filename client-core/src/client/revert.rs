//! Refused commits and their undoing (decision 0009).
//!
//! The relay moves a room's capability to whatever hash a commit announces, since it cannot
//! derive the capability itself. A member (or a public room's joiner) announcing one that is
//! not the room's, or committing something the room's policy forbids, would lock everyone
//! else out. Every honest member refuses such a commit alike (the check is a pure function
//! of the room's state and the commit) and records it ([`Refused`]); the room is then stuck:
//! nothing can be sent until an admin of the room tells the relay to undo the commit
//! ([`Request::RevertCommit`]), which makes the epoch before it current again and bars the
//! commit's author from committing there.
//!
//! Every admin other than the offender reverts as soon as it sees the refused commit (the
//! relay takes the first request; the others find the room already moved back). Members
//! who cannot revert wait without a subscription (which would only end at once, again
//! and again) and look every [`STUCK_POLL`] whether the relay's capability is theirs again.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use hearth_protocol::{ErrorCode, Request, Response};

use super::room::{account_of, Refused, Room};
use super::{room_error, unexpected, Inner};
use crate::error::ClientError;
use crate::events::ClientEvent;

/// How often a member stuck behind a refused commit looks whether it was undone.
pub const STUCK_POLL: Duration = Duration::from_secs(3);

impl Inner {
    /// For a room stuck behind a refused commit: undoes it if we are an admin (and not the
    /// one who made it), or finds out whether someone else did. Returns whether the room
    /// is usable again (the relay's capability is ours).
    pub(crate) async fn settle_refused(&self, room: &mut Room) -> Result<bool, ClientError> {
        let Some(refused) = room.rec.extra.refused.clone() else {
            return Ok(true);
        };
        let me = account_of(self.engine().signer_for(&room.group).public());
        let admin = room
            .settings()
            .is_ok_and(|s| me.is_some_and(|me| s.is_admin(&me)));
        let cap = self.engine().cap(&room.group)?;
        if admin && (me.is_none() || refused.committer != me) {
            let reverted = self
                .call(Request::RevertCommit {
                    room: room.id,
                    cap: cap.clone(),
                    seq: refused.seq,
                })
                .await;
            match reverted {
                Ok(Response::Done) => {
                    tracing::warn!(
                        "room {}: undid the refused commit by {:?} at #{}",
                        room.id,
                        refused.by,
                        refused.seq.0
                    );
                    self.emit(ClientEvent::CommitReverted {
                        room: room.id,
                        seq: refused.seq,
                        by: refused.by.clone(),
                    });
                    return self.unstuck(room).map(|()| true);
                }
                Ok(other) => return Err(unexpected(&other)),
                // Another admin was first, or the room moved on: see below.
                Err(ClientError::Relay(e))
                    if matches!(e.code, ErrorCode::Forbidden | ErrorCode::StaleEpoch) => {}
                Err(e) => return Err(room_error(room.id, e)),
            }
        }
        // Is our capability the current one again?
        match self.call(Request::RoomStatus { room: room.id, cap }).await {
            Ok(Response::RoomStatus { .. }) => self.unstuck(room).map(|()| true),
            Ok(other) => Err(unexpected(&other)),
            Err(ClientError::Relay(e))
                if matches!(e.code, ErrorCode::Forbidden | ErrorCode::StaleEpoch) =>
            {
                Ok(false)
            }
            Err(e) => Err(room_error(room.id, e)),
        }
    }

    fn unstuck(&self, room: &mut Room) -> Result<(), ClientError> {
        room.rec.extra.refused = None;
        room.subscribed = None;
        let mut engine = self.engine();
        engine.persist(self.profile.store(), |b| room.save(b))
    }
}

/// The error for anything sent to a room stuck behind a refused commit.
pub(crate) fn stuck(room: &Room, refused: &Refused) -> ClientError {
    ClientError::CommitRefused {
        room: room.id.into(),
        by: refused.by.clone(),
        reason: format!("it was the room's last commit (#{})", refused.seq.0),
    }
}

/// Looks after rooms stuck behind a refused commit, or whose capability the relay ended
/// under us, every [`STUCK_POLL`] until the client is dropped or closed: catches them up
/// again once they can go on.
pub(crate) async fn stuck_loop(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(STUCK_POLL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        for room in inner.room_handles() {
            let Ok(mut room) = room.try_lock() else {
                continue; // busy: whoever holds it catches it up
            };
            if room.removed {
                continue;
            }
            let epoch = room.group.epoch().as_u64();
            if room.orphaned_epoch == Some(epoch) {
                // Is our capability current again? Then subscribe as usual.
                let Ok(cap) = inner.engine().cap(&room.group) else {
                    continue;
                };
                let status = inner.call(Request::RoomStatus { room: room.id, cap }).await;
                if status.is_err() {
                    continue;
                }
                room.orphaned_epoch = None;
            } else if room.rec.extra.refused.is_none() {
                continue;
            }
            let result = async {
                inner.catch_up(&mut room).await?;
                inner.follow_up(&mut room).await
            }
            .await;
            if let Err(e) = result {
                tracing::debug!("room {}: still stuck: {e}", room.id);
            }
        }
    }
}
