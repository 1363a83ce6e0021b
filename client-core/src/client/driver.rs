//! The connection driver: pushed events in, reconnects with backoff when the connection
//! drops. When the relay closed the connection and said why, the reason is reported (in
//! the client's own words, see [`hearth_protocol::close`]) and sets the backoff: a ban
//! or a refusal that a retry cannot change is retried only every [`FUTILE_BACKOFF`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use hearth_protocol::auth::auth_message;
use hearth_protocol::{CloseReason, Entry, ErrorCode, Event, Request, Retry, RoomId, Seq};
use tokio::sync::mpsc;

use super::room::Status;
use super::Inner;
use crate::error::ClientError;
use crate::events::{ClientEvent, ConnectionState};

/// First reconnect delay; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Reconnect delay when retrying will not help until a person acts (banned, no common
/// version, the relay's key changed): rare enough to cost nothing, often enough that the
/// client comes back by itself once the ban is lifted.
pub(crate) const FUTILE_BACKOFF: Duration = Duration::from_secs(300);

/// The least delay before reconnecting that a close for `reason` asks for.
fn floor_after_close(reason: &CloseReason) -> Duration {
    match reason.retry() {
        Retry::Soon => FIRST_BACKOFF,
        Retry::After(secs) => Duration::from_secs(u64::from(secs)).max(FIRST_BACKOFF),
        Retry::Futile => FUTILE_BACKOFF,
    }
}

/// The least delay before reconnecting after a failed attempt ended with `error`.
fn floor_after_error(error: &ClientError) -> Duration {
    match error {
        ClientError::ClosedByRelay(reason) => floor_after_close(reason),
        ClientError::Relay(e) if e.code == ErrorCode::Banned => FUTILE_BACKOFF,
        ClientError::Version(_) | ClientError::PinMismatch { .. } => FUTILE_BACKOFF,
        _ => FIRST_BACKOFF,
    }
}

/// The next reconnect delay: doubled up to [`MAX_BACKOFF`], and at least what `error`
/// asks for.
pub(crate) fn next_backoff(delay: Duration, error: &ClientError) -> Duration {
    (delay * 2).min(MAX_BACKOFF).max(floor_after_error(error))
}

pub(crate) async fn run(inner: Weak<Inner>, mut events: mpsc::UnboundedReceiver<Event>) {
    loop {
        while let Some(event) = events.recv().await {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            inner.handle_event(event).await;
        }
        // The connection dropped; the link knows why if the relay said so.
        let closed_by = match inner.upgrade() {
            Some(strong) => strong
                .link
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .and_then(|link| link.close_reason()),
            None => return,
        };
        if closed_by == Some(CloseReason::Banned) {
            // The relay's owner banned this account (a stolen device, say): its rooms'
            // connections, which never signed in, go too, so the live feed stops here
            // and not only when the rooms' admins remove it. They are opened again if
            // the ban is lifted and the account signs in.
            if let Some(strong) = inner.upgrade() {
                strong.close_room_links();
            }
        }
        let (mut reason, mut delay) = match closed_by {
            Some(close) => (
                ClientError::ClosedByRelay(close).to_string(),
                floor_after_close(&close),
            ),
            None => ("connection lost".to_string(), FIRST_BACKOFF),
        };
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
                    delay = next_backoff(delay, &e);
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

    pub(super) async fn handle_event(self: &Arc<Self>, event: Event) {
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
            // Only for room connections, handled where the connection is known
            // (`room_links::follow`); a signed-in connection is never told.
            Event::Readmit { .. } => Ok(()),
        };
        match result {
            Ok(()) => {}
            // Events that were on their way when the connection dropped: the reconnect
            // catches every room up, so this is expected, once per event.
            Err(e @ (ClientError::NotConnected | ClientError::Unreachable { .. })) => {
                tracing::debug!("handling a relay event failed: {e}");
            }
            Err(e) => tracing::warn!("handling a relay event failed: {e}"),
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
            // The end of the previous epoch's subscription: taking it for the current
            // one would leave the room unheard. Already replaced, nothing to do; not yet,
            // the catch-up subscribes in the current epoch.
            room.expected_end = None;
            if room.subscribed == Some(room.group.epoch().as_u64()) {
                return Ok(());
            }
            self.catch_up(&mut room).await?;
            return self.follow_up(&mut room).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_is_retried_rarely_and_a_restart_soon() {
        let banned = ClientError::ClosedByRelay(CloseReason::Banned);
        assert_eq!(next_backoff(FIRST_BACKOFF, &banned), FUTILE_BACKOFF);
        let refused = ClientError::Relay(hearth_protocol::WireError::new(ErrorCode::Banned, "x"));
        assert_eq!(next_backoff(FIRST_BACKOFF, &refused), FUTILE_BACKOFF);
        let restart = ClientError::ClosedByRelay(CloseReason::ShuttingDown);
        assert_eq!(next_backoff(FIRST_BACKOFF, &restart), FIRST_BACKOFF * 2);
        let blocked = ClientError::ClosedByRelay(CloseReason::AddressBlocked { secs: 300 });
        assert_eq!(
            next_backoff(FIRST_BACKOFF, &blocked),
            Duration::from_secs(300)
        );
        assert_eq!(
            next_backoff(MAX_BACKOFF, &ClientError::NotConnected),
            MAX_BACKOFF
        );
    }
}
