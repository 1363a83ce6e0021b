//! Continuing rooms after a profile was restored from a backup.
//!
//! A backup holds the MLS state as of the export. The old machine may have sent more
//! messages since, each at the next position of its sender ratchet; the restored state
//! would send at those positions again. So, after a restore, nothing is sent to a room
//! before the client has caught up on the room and committed a self-update: the commit
//! starts a fresh epoch with fresh secrets, and with a new leaf key for us.
//!
//! [`crate::backup::import_backup`] marks every restored room in `Table::Settings`
//! (key [`MARK_PREFIX`] + room id): value [`PENDING`] until the self-update is accepted,
//! then the mark is deleted. The mark is in the store, so a crash between the import and
//! the first connection, or during it, still leads to the self-update. A room whose
//! state cannot follow the relay's log any more (the old machine committed after the
//! export, or the entries it needs expired) is marked [`NEEDS_REINVITE`]: sending to it
//! fails with [`ClientError::NeedsReinvite`] until a member removes and re-invites us.

use hearth_protocol::RoomId;

use super::room::{Room, Status};
use super::{Client, Inner};
use crate::error::{store as store_err, ClientError};
use crate::store::{EncryptedStore, Table, WriteBatch};

/// Prefix of the restore marks in `Table::Settings`.
pub const MARK_PREFIX: &[u8] = b"restore/";
/// Mark value: the room needs a self-update before anything is sent.
pub const PENDING: u8 = 0;
/// Mark value: the room cannot be continued; it needs a re-invite.
pub const NEEDS_REINVITE: u8 = 1;

fn mark_key(room: RoomId) -> Vec<u8> {
    let mut key = MARK_PREFIX.to_vec();
    key.extend_from_slice(&room.0);
    key
}

/// Marks `room` as restored: it must self-update before it sends.
pub(crate) fn mark_restored(
    batch: &mut WriteBatch<'_>,
    room: RoomId,
) -> Result<(), crate::store::StoreError> {
    batch.put(Table::Settings, &mark_key(room), &[PENDING])
}

fn mark(store: &EncryptedStore, room: RoomId) -> Result<Option<u8>, ClientError> {
    Ok(store
        .get(Table::Settings, &mark_key(room))
        .map_err(store_err)?
        .and_then(|v| v.first().copied()))
}

/// Whether `room` was marked as needing a re-invite after a restore.
pub(crate) fn needs_reinvite(store: &EncryptedStore, room: RoomId) -> Result<bool, ClientError> {
    Ok(mark(store, room)? == Some(NEEDS_REINVITE))
}

/// Deletes the mark of `room` (in the batch of the operation that settles it).
pub(crate) fn clear_mark(batch: &mut WriteBatch<'_>, room: RoomId) -> Result<(), ClientError> {
    batch
        .delete(Table::Settings, &mark_key(room))
        .map_err(store_err)
}

impl Client {
    /// Rooms restored from a backup that could not be continued: a member has to remove
    /// this account from the room and invite it again.
    pub fn rooms_needing_reinvite(&self) -> Result<Vec<RoomId>, ClientError> {
        let rows = self
            .inner
            .profile
            .store()
            .scan(Table::Settings, MARK_PREFIX)
            .map_err(store_err)?;
        Ok(rows
            .into_iter()
            .filter(|(_, value)| value.first() == Some(&NEEDS_REINVITE))
            .filter_map(|(key, _)| {
                <[u8; 16]>::try_from(&key[MARK_PREFIX.len()..])
                    .ok()
                    .map(RoomId)
            })
            .collect())
    }
}

impl Inner {
    /// After connecting: every joined room with a restore mark self-updates now (its
    /// catch-up happened in `resume`). Rooms that cannot be continued are marked for a
    /// re-invite; only a lost connection is an error.
    pub(crate) async fn finish_restores(&self) -> Result<(), ClientError> {
        for room in self.room_handles() {
            let mut room = room.lock().await;
            if room.removed || room.rec.status != Status::Joined {
                continue;
            }
            match self.finish_restore(&mut room).await {
                Ok(()) | Err(ClientError::NeedsReinvite(_)) => {}
                Err(e @ (ClientError::NotConnected | ClientError::Unreachable { .. })) => {
                    return Err(e)
                }
                // Still marked: retried before the next send to the room.
                Err(e) => tracing::warn!("room {}: self-update after restore failed: {e}", room.id),
            }
        }
        Ok(())
    }

    /// Before sending to a room: if it was restored from a backup, catch up and commit a
    /// self-update first (see the module documentation).
    pub(crate) async fn finish_restore(&self, room: &mut Room) -> Result<(), ClientError> {
        let store = self.profile.store();
        match mark(store, room.id)? {
            None => return Ok(()),
            Some(NEEDS_REINVITE) => return Err(ClientError::NeedsReinvite(room.id.into())),
            Some(_) => {}
        }
        let before = room.group.epoch().as_u64();
        let read_up_to = room.rec.transcript.last();
        let outcome = self
            .commit_change(room, |group, engine, _| {
                super::ops::build_self_update(group, engine)
            })
            .await;
        match outcome {
            Ok(_) => {
                tracing::info!(
                    "room {}: continued after the restore (epoch {before} -> {})",
                    room.id,
                    room.group.epoch().as_u64()
                );
                let mut engine = self.engine();
                engine.persist(store, |batch| clear_mark(batch, room.id))?;
                Ok(())
            }
            // Not settled either way: try again on the next connection or send.
            Err(e @ (ClientError::NotConnected | ClientError::Unreachable { .. })) => Err(e),
            // Others' commits kept winning: the room moves, so we can follow it.
            Err(e @ ClientError::Contention(_)) if room.rec.transcript.last() > read_up_to => {
                Err(e)
            }
            // Refused, or every commit was stale while the log showed us nothing new: our
            // epoch ended in a commit we could not process.
            Err(e) => {
                tracing::warn!(
                    "room {}: cannot continue after the restore ({e}); it needs a re-invite",
                    room.id
                );
                self.engine().persist(store, |batch| {
                    batch
                        .put(Table::Settings, &mark_key(room.id), &[NEEDS_REINVITE])
                        .map_err(store_err)
                })?;
                Err(ClientError::NeedsReinvite(room.id.into()))
            }
        }
    }
}
