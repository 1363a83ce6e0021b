//! The connection driver: pushed events in, reconnects with backoff when the connection
//! drops.

use std::sync::{Arc, Weak};
use std::time::Duration;

use hearth_protocol::auth::auth_message;
use hearth_protocol::{Entry, Event, Request, RoomId, Seq};
use tokio::sync::mpsc;

use super::room::Status;
use super::Inner;
use crate::error::ClientError;
use crate::events::{ClientEvent, ConnectionState};

/// First reconnect delay; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) async fn run(inner: Weak<Inner>, mut events: mpsc::UnboundedReceiver<Event>) {
    loop {
        while let Some(event) = events.recv().await {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            inner.handle_event(event).await;
        }
        // The connection dropped.
        let mut delay = FIRST_BACKOFF;
        let mut reason = "connection lost".to_string();
        loop {
            {
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                if strong.closed.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                *strong.link.write().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!("{reason}: reconnecting in {delay:?}");
                strong.emit(ClientEvent::Connection(ConnectionState::Reconnecting {
                    reason: reason.clone(),
                    retry_in: delay,
                }));
            }
            tokio::time::sleep(delay).await;
            let Some(strong) = inner.upgrade() else {
                return;
            };
            match strong.reconnect().await {
                Ok(new_events) => {
                    tracing::info!("connected again");
                    events = new_events;
                    strong.emit(ClientEvent::Connection(ConnectionState::Connected));
                    // On its own task, so pushed events keep flowing meanwhile; stopped
                    // on close (it holds the client).
                    let after = strong.clone();
                    let task = tokio::spawn(async move {
                        if let Err(e) = after.after_connect().await {
                            tracing::info!("after reconnecting: {e}");
                        }
                    });
                    if let Some(previous) = super::lock(&strong.after_reconnect).replace(task) {
                        previous.abort();
                    }
                    break;
                }
                Err(e) => {
                    reason = e.to_string();
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

impl Inner {
    async fn reconnect(self: &Arc<Self>) -> Result<mpsc::UnboundedReceiver<Event>, ClientError> {
        let conn = self.connector.connect().await?;
        let relay_now = Inner::authenticate(&self.profile, &conn).await?;
        // Signing in may have finished a key rotation whose answer was lost.
        if self.engine().account() != self.profile.account() {
            self.adopt_rotated_key()?;
        }
        self.observe_relay_clock(relay_now);
        *self.exporter.lock().unwrap_or_else(|p| p.into_inner()) = conn.exporter;
        *self.link.write().unwrap_or_else(|p| p.into_inner()) = Some(conn.link.clone());
        self.resume().await?;
        Ok(conn.events)
    }

    async fn handle_event(self: &Arc<Self>, event: Event) {
        let result = match event {
            Event::Entries { room, entries } => {
                tracing::debug!("room {room}: {} entries pushed", entries.len());
                self.pushed_entries(room, entries).await
            }
            Event::SubscriptionEnded { room, next } => {
                tracing::debug!("room {room}: subscription ended before {next:?}");
                self.subscription_ended(room, next).await
            }
            Event::InboxArrived => self.fetch_inbox().await,
            Event::AccountRegistered { handle, account } => {
                self.account_registered(handle, account);
                Ok(())
            }
            Event::Reauthenticate { challenge } => {
                // Answered on its own task so a long room operation cannot delay it.
                let this = self.clone();
                tokio::spawn(async move {
                    let account = this.profile.account();
                    let exporter = *this.exporter.lock().unwrap_or_else(|p| p.into_inner());
                    let signature = this
                        .profile
                        .identity()
                        .sign(&auth_message(&challenge, &exporter, &account));
                    if let Err(e) = this.call(Request::Auth { account, signature }).await {
                        tracing::warn!("re-authentication failed: {e}");
                    }
                });
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!("handling a relay event failed: {e}");
        }
    }

    /// The relay ended a subscription at a commit. Usually we merged that commit and
    /// subscribe again with the new epoch's capability; when we refused it (and the
    /// capability stayed), we must subscribe again all the same.
    async fn subscription_ended(&self, id: RoomId, next: Seq) -> Result<(), ClientError> {
        let Ok(room) = self.room(id) else {
            return Ok(());
        };
        let mut room = room.lock().await;
        if room.removed || room.rec.status != Status::Joined {
            return Ok(());
        }
        if room.expected_end == Some(next) {
            // The end of the previous epoch's subscription, already replaced: taking it
            // for the current one would leave the room unheard.
            room.expected_end = None;
            return Ok(());
        }
        // If catching up does not move us to another epoch, our capability is over and
        // subscribing with it again would only end again at once (see `Room`).
        room.orphaned_epoch = room.subscribed.take();
        self.catch_up(&mut room).await?;
        self.follow_up(&mut room).await
    }

    /// Processes pushed entries in order; a gap (or an ended subscription) is filled by
    /// reading from the last processed seq.
    async fn pushed_entries(&self, id: RoomId, entries: Vec<Entry>) -> Result<(), ClientError> {
        let Ok(room) = self.room(id) else {
            return Ok(());
        };
        let mut room = room.lock().await;
        if room.removed || room.rec.status != Status::Joined {
            return Ok(());
        }
        let mut gap = entries.is_empty();
        for entry in &entries {
            let next = room.rec.transcript.last().next();
            if entry.seq < next {
                continue;
            }
            if entry.seq > next {
                gap = true;
                break;
            }
            self.process_entry(&mut room, entry).await?;
        }
        if gap || room.subscribed != Some(room.group.epoch().as_u64()) {
            self.catch_up(&mut room).await?;
        }
        self.follow_up(&mut room).await
    }
}
