//! Messages waiting for the relay (issue 12): what the user sent while the relay could not
//! be reached is kept in the profile's store and sent, in order, when the connection
//! returns, never twice.
//!
//! [`Client::send_text_or_queue`] sends at once when connected and nothing older waits;
//! otherwise the message joins the queue (stored in [`Table::Settings`] under
//! `message-queue/<20-digit number>`, postcard). A send that lost its connection halfway
//! is queued with where the room's log stood when it tried: before sending it again, the
//! room is caught up, and if our own message with that text reached the log after that
//! point meanwhile (processing recognises our in-flight bytes there), the queued copy is
//! dropped instead of sent twice. Nothing else of ours can be there: while the queue is
//! not empty, every new message joins it.
//! [`Inner::flush_queue`] runs after every sign-in and before every new send.

use hearth_protocol::{RoomId, Seq};
use serde::{Deserialize, Serialize};

use super::labels::Named;
use super::{Client, Inner};
use crate::content::Body;
use crate::error::{store as store_err, ClientError};
use crate::events::ClientEvent;
use crate::store::Table;

const PREFIX: &str = "message-queue/";
/// How many of a room's newest messages are looked at to find a send that lost its
/// connection (others may have written meanwhile).
const LANDED_LOOKBACK: usize = 500;

/// What became of a message whose send lost the connection ([`Inner::attempted`]).
enum Attempt {
    /// It is in the log at this seq.
    Landed(Seq),
    /// Still in flight; the room's log stood at `after` when it was tried.
    InFlight { after: Seq },
    /// Neither: another operation of the room took its place.
    Unknown,
}

/// One message waiting for the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Queued {
    room: RoomId,
    body: Body,
    /// When the user sent it (Unix seconds, this device's clock).
    queued_at: u64,
    /// Where the room's log stood when a send that lost its connection tried it, if one
    /// did.
    attempt: Option<Seq>,
}

/// What became of a message handed to [`Client::send_text_or_queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The relay stored it at this seq.
    Sent(Seq),
    /// The relay cannot be reached: it waits in the queue, `waiting` messages in all.
    Queued {
        /// How many messages wait now, this one included.
        waiting: usize,
    },
}

/// A message in the queue, for display ([`Client::queued`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The room.
    pub room: RoomId,
    /// The text (empty for a body that is not text).
    pub text: String,
    /// When the user sent it.
    pub queued_at: std::time::SystemTime,
}

/// Whether `e` means the relay could not be reached (the message may wait).
fn unreachable(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::NotConnected | ClientError::Unreachable { .. }
    )
}

impl Client {
    /// Sends a text message now, or, when the relay cannot be reached, keeps it in the
    /// profile's queue and sends it (in order, once) when the connection returns. Other
    /// failures (not a member, a blocked contact...) are returned and nothing is queued.
    pub async fn send_text_or_queue(
        &self,
        room: RoomId,
        text: &str,
    ) -> Result<Delivery, ClientError> {
        let body = Body::Text {
            text: text.to_string(),
            reply_to: None,
        };
        self.inner
            .send_or_queue(room, body)
            .named(&self.inner)
            .await
    }

    /// The messages waiting for the relay, oldest first.
    pub fn queued(&self) -> Result<Vec<QueuedMessage>, ClientError> {
        Ok(self
            .inner
            .queue_rows()?
            .into_iter()
            .map(|(_, q)| QueuedMessage {
                room: q.room,
                text: match q.body {
                    Body::Text { text, .. } => text,
                    _ => String::new(),
                },
                queued_at: crate::history::time_of(q.queued_at),
            })
            .collect())
    }
}

impl Inner {
    pub(super) async fn send_or_queue(
        &self,
        room: RoomId,
        body: Body,
    ) -> Result<Delivery, ClientError> {
        let _queue = self.queue_lock.lock().await;
        // Fails early, before queueing, on what waiting would not fix.
        self.usable_room(room).await?;
        let older_wait = match self.flush_locked().await {
            Ok(()) => false,
            Err(e) if unreachable(&e) => true,
            Err(e) => return Err(e),
        };
        if !older_wait {
            let mut sent = None;
            match self.send_body_tracked(room, body.clone(), &mut sent).await {
                Ok(seq) => return Ok(Delivery::Sent(seq)),
                Err(e) if unreachable(&e) => {
                    let attempt = match sent {
                        Some(sent) => match self.attempted(room, &sent).await {
                            Attempt::Landed(seq) => return Ok(Delivery::Sent(seq)),
                            Attempt::InFlight { after } => Some(after),
                            Attempt::Unknown => None,
                        },
                        None => None,
                    };
                    self.enqueue(room, body, attempt)?;
                    return Ok(Delivery::Queued {
                        waiting: self.queue_rows()?.len(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        self.enqueue(room, body, None)?;
        Ok(Delivery::Queued {
            waiting: self.queue_rows()?.len(),
        })
    }

    /// Sends every queued message in order; stops (leaving the rest) when the relay cannot
    /// be reached. A message that can no longer be sent (we left the room...) is dropped
    /// with a [`ClientEvent::Unsent`].
    pub(crate) async fn flush_queue(&self) -> Result<(), ClientError> {
        let _queue = self.queue_lock.lock().await;
        self.flush_locked().await
    }

    async fn flush_locked(&self) -> Result<(), ClientError> {
        let rows = self.queue_rows()?;
        if !rows.is_empty() {
            tracing::info!("sending {} queued message(s)", rows.len());
        }
        for (key, queued) in rows {
            if let Some(after) = queued.attempt {
                match self.attempt_landed(queued.room, after, &queued.body).await {
                    Ok(true) => {
                        self.dequeue(&key)?;
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) if unreachable(&e) => return Err(e),
                    Err(e) => {
                        self.drop_queued(&key, &queued, &e)?;
                        continue;
                    }
                }
            }
            match self.send_body(queued.room, queued.body.clone()).await {
                Ok(seq) => {
                    tracing::debug!("room {}: queued message sent as {seq:?}", queued.room);
                    self.dequeue(&key)?
                }
                Err(e) if unreachable(&e) => return Err(e),
                Err(e) => self.drop_queued(&key, &queued, &e)?,
            }
        }
        Ok(())
    }

    /// What became of the message whose bytes are `sent`, after its send lost the
    /// connection: seen in the log meanwhile (pushed on our subscription), or still in
    /// flight (it may have reached the relay).
    async fn attempted(&self, room: RoomId, sent: &[u8]) -> Attempt {
        let Ok(room) = self.room(room) else {
            return Attempt::Unknown;
        };
        let mut room = room.lock().await;
        if let Some(landed) = room.landed_own.filter(|landed| landed.is(sent)) {
            room.landed_own = None;
            self.mark_sent(room.id, landed.seq);
            return Attempt::Landed(landed.seq);
        }
        match &room.rec.inflight {
            Some(inflight) if inflight.payload() == sent => Attempt::InFlight {
                after: room.rec.transcript.last(),
            },
            _ => Attempt::Unknown,
        }
    }

    /// Catches `room` up and says whether our own `body` reached its log after `after`.
    async fn attempt_landed(
        &self,
        id: RoomId,
        after: Seq,
        body: &Body,
    ) -> Result<bool, ClientError> {
        {
            let room = self.room(id)?;
            let mut room = room.lock().await;
            self.catch_up(&mut room).await?;
        }
        let Body::Text { text, .. } = body else {
            return Ok(false);
        };
        let recent = crate::history::read(self.profile.store(), id, LANDED_LOOKBACK, None)?;
        Ok(recent
            .iter()
            .any(|item| item.own && item.seq > after && item.text == *text))
    }

    fn queue_rows(&self) -> Result<Vec<(Vec<u8>, Queued)>, ClientError> {
        let rows = self
            .profile
            .store()
            .scan(Table::Settings, PREFIX.as_bytes())
            .map_err(store_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            match postcard::from_bytes::<Queued>(&value) {
                Ok(queued) => out.push((key.to_vec(), queued)),
                Err(_) => {
                    tracing::warn!("dropping an unreadable queued message");
                    self.dequeue(&key)?;
                }
            }
        }
        Ok(out)
    }

    fn enqueue(&self, room: RoomId, body: Body, attempt: Option<Seq>) -> Result<(), ClientError> {
        let next = self
            .queue_rows()?
            .last()
            .and_then(|(key, _)| {
                std::str::from_utf8(&key[PREFIX.len()..])
                    .ok()?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |n| n + 1);
        let queued = Queued {
            room,
            body,
            queued_at: crate::clock::device_now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            attempt,
        };
        let bytes =
            postcard::to_allocvec(&queued).map_err(|e| ClientError::Store(e.to_string()))?;
        let mut batch = self.profile.store().begin().map_err(store_err)?;
        batch
            .put(
                Table::Settings,
                format!("{PREFIX}{next:020}").as_bytes(),
                &bytes,
            )
            .map_err(store_err)?;
        batch.commit().map_err(store_err)
    }

    fn dequeue(&self, key: &[u8]) -> Result<(), ClientError> {
        let mut batch = self.profile.store().begin().map_err(store_err)?;
        batch.delete(Table::Settings, key).map_err(store_err)?;
        batch.commit().map_err(store_err)
    }

    fn drop_queued(
        &self,
        key: &[u8],
        queued: &Queued,
        why: &ClientError,
    ) -> Result<(), ClientError> {
        tracing::info!(
            "room {}: a queued message cannot be sent: {why}",
            queued.room
        );
        self.dequeue(key)?;
        self.emit(ClientEvent::Unsent {
            room: queued.room,
            text: match &queued.body {
                Body::Text { text, .. } => text.clone(),
                _ => String::new(),
            },
            reason: why.to_string(),
        });
        Ok(())
    }
}
