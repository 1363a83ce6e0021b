//! Welcomes owed: what a commit that adds people still has to deliver (issue 13).
//!
//! A commit that adds someone and its Welcome touch two places (the room's log, the
//! newcomer's inbox). The commit carries its Welcome while in flight
//! ([`Inflight::CommitWithWelcome`](super::room::Inflight)); when the commit shows up in the
//! log, the Welcome is written here in the same batch as the processed commit, and only
//! deleted once every inbox it goes to has it. So a crash or a lost connection at any point
//! leaves either no commit (nothing owed) or a Welcome still owed, delivered by
//! [`Inner::deliver_owed_welcomes`] when hearth next connects. A Welcome delivered twice is
//! harmless (the newcomer takes one).
//!
//! Stored in [`Table::Settings`] under `welcome-outbox/<room id>/<seq>` (postcard).

use hearth_protocol::{AccountKey, ErrorCode, RoomId, Seq};
use serde::{Deserialize, Serialize};

use super::Inner;
use crate::error::{store as store_err, ClientError};
use crate::store::{Table, WriteBatch};

const PREFIX: &str = "welcome-outbox/";

/// A Welcome some inboxes still have to get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OwedWelcome {
    /// The room.
    pub room: RoomId,
    /// Where the commit that added them is in the log.
    pub seq: Seq,
    /// Our transcript hash at that commit (the relay's plaintext wrapper carries it; the
    /// joiner trusts only the join point signed inside the Welcome).
    pub transcript_hash: [u8; 32],
    /// The MLS Welcome bytes.
    #[serde(with = "serde_bytes")]
    pub welcome: Vec<u8>,
    /// The inboxes still owed it.
    pub to: Vec<AccountKey>,
}

impl OwedWelcome {
    fn key(&self) -> String {
        format!("{PREFIX}{}/{:020}", self.room.to_hex(), self.seq.0)
    }

    /// Adds it to `batch` (owed until delivered).
    pub(crate) fn put(&self, batch: &mut WriteBatch<'_>) -> Result<(), ClientError> {
        let bytes = postcard::to_allocvec(self).map_err(|e| ClientError::Store(e.to_string()))?;
        batch
            .put(Table::Settings, self.key().as_bytes(), &bytes)
            .map_err(store_err)
    }
}

impl Inner {
    /// Deposits every Welcome still owed; what cannot be delivered now stays owed (a
    /// recipient the relay no longer knows is dropped). Returns how many inboxes got one.
    pub(crate) async fn deliver_owed_welcomes(&self) -> Result<usize, ClientError> {
        let rows = self
            .profile
            .store()
            .scan(Table::Settings, PREFIX.as_bytes())
            .map_err(store_err)?;
        let mut delivered = 0;
        for (key, value) in rows {
            let Ok(mut owed) = postcard::from_bytes::<OwedWelcome>(&value) else {
                tracing::warn!("dropping an unreadable owed Welcome");
                self.forget_owed(&key)?;
                continue;
            };
            let mut left = Vec::new();
            let mut failure = None;
            for to in std::mem::take(&mut owed.to) {
                let deposited = self
                    .deposit_welcome(
                        owed.room,
                        owed.seq,
                        owed.transcript_hash,
                        owed.welcome.clone(),
                        to,
                    )
                    .await;
                match deposited {
                    Ok(()) => delivered += 1,
                    Err(e) if e.code() == Some(ErrorCode::UnknownAccount) => {
                        tracing::warn!("room {}: a newcomer's account is gone", owed.room);
                    }
                    Err(e) => {
                        left.push(to);
                        failure = Some(e);
                    }
                }
            }
            if left.is_empty() {
                self.forget_owed(&key)?;
            } else {
                owed.to = left;
                let mut batch = self.profile.store().begin().map_err(store_err)?;
                owed.put(&mut batch)?;
                batch.commit().map_err(store_err)?;
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(delivered)
    }

    fn forget_owed(&self, key: &[u8]) -> Result<(), ClientError> {
        let mut batch = self.profile.store().begin().map_err(store_err)?;
        batch.delete(Table::Settings, key).map_err(store_err)?;
        batch.commit().map_err(store_err)
    }
}
