//! Refused commits and their undoing (decision 0009).
//!
//! The relay moves a room's capability to whatever hash a commit announces, since it cannot
//! derive the capability itself. A member (or a public room's joiner) announcing one that is
//! not the room's, or committing something the room's policy forbids, would lock everyone
//! else out. Every honest member refuses such a commit alike (the check is a pure function
//! of the room's state and the commit) and records it ([`Refused`]); the room is then stuck:
//! nothing can be sent until an admin of the room tells the relay to undo the commit
//! ([`Request::RevertCommit`]), which makes the epoch before it current again and, in the
//! same transaction, appends the admin's own commit of that epoch removing the refused
//! commit's author (decision 0013, part 5): the author's capability ends there, and the
//! relay keeps no list of barred accounts. When the author cannot be removed by this
//! admin (a public room's joiner who never was a member, bytes that name nobody, an admin
//! offender and a reverting admin who is not the owner), the commit only renews the
//! admin's own keys, which still moves the room to a capability the refused commit did
//! not announce.
//!
//! Every admin other than the offender reverts as soon as it sees the refused commit (the
//! relay takes the first request; the others find the room already moved back). Members
//! who cannot revert wait without a subscription (which would only end at once, again
//! and again) and look every [`STUCK_POLL`] whether the relay's capability is theirs again.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use hearth_protocol::{AdminAction, ErrorCode, Request, Response};
use openmls::prelude::LeafNodeIndex;

use super::admin::build_commit;
use super::room::{account_of, Inflight, Refused, Room};
use super::{room_error, unexpected, Inner};
use crate::error::{mls, ClientError};
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
        // Our own revert's commit not read back yet: what we refused now lies between the
        // commit we undid and ours (commits made on top of it under the refused
        // capability, garbage included), and is undone already. Reverting again would
        // stage a second commit over the first one, which is in the log.
        let reverting = matches!(room.rec.inflight, Some(Inflight::Commit { .. }));
        if admin && !reverting && (me.is_none() || refused.committer != me) {
            let (payload, next_cap_hash, proof) = self.removal_of(room, &refused)?;
            let reverted = self
                .call(Request::RevertCommit {
                    room: room.id,
                    cap: cap.clone(),
                    seq: refused.seq,
                    next_cap_hash,
                    payload,
                    proof,
                })
                .await;
            if !matches!(reverted, Ok(Response::Appended { .. })) {
                // Not appended: our commit did not happen.
                self.resolve_inflight(room)?;
            }
            match reverted {
                Ok(Response::Appended { seq }) => {
                    room.revert_landed = Some(seq);
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
        match self
            .call(Request::RoomStatus {
                room: room.id,
                cap: cap.clone(),
            })
            .await
        {
            Ok(Response::RoomStatus { .. }) => self.unstuck(room).map(|()| true),
            Ok(other) => Err(unexpected(&other)),
            // Ended: by the refused commit still, or by an admin's removal appended with
            // the revert, which our capability reads (catching up takes it then).
            Err(ClientError::Relay(e)) if e.code == ErrorCode::StaleEpoch => {
                let after = self
                    .call(Request::Read {
                        room: room.id,
                        cap,
                        from: refused.seq.next(),
                        limit: 1,
                    })
                    .await;
                match after {
                    Ok(Response::Entries { entries, .. }) if !entries.is_empty() => {
                        self.unstuck(room).map(|()| true)
                    }
                    _ => Ok(false),
                }
            }
            Err(ClientError::Relay(e)) if e.code == ErrorCode::Forbidden => Ok(false),
            Err(e) => Err(room_error(room.id, e)),
        }
    }

    /// Our commit of the epoch before the refused one, removing its author when we may
    /// (else renewing our own keys), staged and recorded as in flight like any commit of
    /// ours; its bytes, the capability hash it announces and our admin signature over the
    /// revert.
    fn removal_of(
        &self,
        room: &mut Room,
        refused: &Refused,
    ) -> Result<
        (
            Vec<u8>,
            hearth_protocol::CapHash,
            hearth_protocol::AdminProof,
        ),
        ClientError,
    > {
        let mut engine = self.engine();
        let me = account_of(engine.signer_for(&room.group).public());
        let settings = room.settings().ok();
        let offender: Option<LeafNodeIndex> = refused
            .committer
            .filter(|c| {
                matches!((&settings, me), (Some(s), Some(me))
                    if crate::policy::may(s, &me, crate::policy::Action::Kick, Some(c)).is_ok())
            })
            .and_then(|c| {
                room.group
                    .members()
                    .find(|m| account_of(&m.signature_key) == Some(c))
                    .map(|m| m.index)
            });
        let remove: Vec<LeafNodeIndex> = offender.into_iter().collect();
        room.group
            .set_aad(crate::transcript::encode_mark(room.mark()));
        let built = build_commit(
            room.id,
            &mut room.group,
            &engine,
            &remove,
            &[],
            None,
            |_| {},
        );
        room.group.set_aad(Vec::new());
        let (commit, _) = built?;
        let payload = commit.to_bytes().map_err(mls)?;
        let cap = engine.cap(&room.group)?;
        let staged = room
            .group
            .pending_commit()
            .ok_or_else(|| ClientError::Mls("commit was not staged".into()))?;
        let next = engine.next_cap(staged, &room.id.0)?.hash();
        let action = AdminAction::Revert {
            seq: refused.seq,
            next_cap_hash: next,
            removal: <sha2::Sha256 as sha2::Digest>::digest(&payload).into(),
        };
        let proof = engine
            .room_admin_key(&room.group)
            .prove(&room.id, &cap, &action);
        room.rec.inflight = Some(Inflight::Commit {
            payload: payload.clone(),
        });
        engine.persist(self.profile.store(), |b| room.save(b))?;
        Ok((payload, next, proof))
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
                if status.is_ok() {
                    room.orphaned_epoch = None;
                } else if room.rec.extra.refused.is_none() {
                    continue;
                }
                // Still ended, and stuck behind a refused commit: whether an admin has
                // undone it is for the catch-up to find.
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
