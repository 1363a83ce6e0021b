//! Room connections (decision 0013 part 5): each room's reads, subscription, messages,
//! commits, attachments and an admin's changes at the relay (signed by the admin's
//! pseudonym for the room) travel on a connection of its own that never signs in, so
//! the relay cannot tie a room to the account, nor one room to another by the
//! connection that carries them. The account's connection keeps what is the account's:
//! sign-in, inbox, KeyPackages, the directory, creating a room, joining and listing a
//! public one, and a migrated room's first list of admins.
//!
//! A room's connection is opened on first use, after a random pause of up to
//! [`room_jitter`], so the connections of one person's rooms do not arrive as one burst
//! right after the sign-in. Its pushed events go to the same handlers as the account
//! connection's. When it drops, the room is caught up and subscribed again on a new one
//! (unless the account connection is down too: then the reconnect resumes every room).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hearth_protocol::{Event, RoomId};
use rand_core::RngCore;
use tokio::sync::{mpsc, OnceCell};

use super::room::Status;
use super::{lock, Inner};
use crate::error::ClientError;
use crate::transport::{Link, TransportError};

/// The default of [`room_jitter`].
pub const ROOM_JITTER: Duration = Duration::from_millis(1000);

static JITTER_MS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The most a room connection waits, at random, before it opens, and the most a
/// presence or display-name notice waits before it goes to the next room: 1 s
/// ([`ROOM_JITTER`]), or `HEARTH_ROOM_JITTER_MS` milliseconds when that is set, or what
/// [`set_room_jitter`] set.
pub fn room_jitter() -> Duration {
    let mut ms = JITTER_MS.load(Ordering::Relaxed);
    if ms == u64::MAX {
        ms = std::env::var("HEARTH_ROOM_JITTER_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(ROOM_JITTER.as_millis() as u64)
            .min(60_000);
        JITTER_MS.store(ms, Ordering::Relaxed);
    }
    Duration::from_millis(ms)
}

/// Sets [`room_jitter`] for this process (tests that start many clients use a small
/// one; zero turns the pauses off).
pub fn set_room_jitter(max: Duration) {
    JITTER_MS.store(
        u64::try_from(max.as_millis()).unwrap_or(60_000).min(60_000),
        Ordering::Relaxed,
    );
}

/// A random pause of at most `max`.
pub(crate) fn random_pause(max: Duration) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand_core::OsRng.next_u64() % (ms + 1))
}

/// Puts `items` in a random order (Fisher-Yates with the OS's randomness): rooms are
/// gone through in an order the relay cannot learn anything from.
pub(crate) fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = (rand_core::OsRng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Each room's connection, or the cell it is being opened into.
pub(crate) type RoomLinks = std::collections::HashMap<RoomId, Arc<OnceCell<Arc<dyn Link>>>>;

/// First delay before a dropped room connection is opened again; doubled up to 30 s.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(30);

impl Inner {
    /// `room`'s connection: the open one, or a new one (after a random pause). Fails
    /// with [`ClientError::NotConnected`] while the account's connection is down: the
    /// client counts as connected or not by that one alone.
    pub(crate) async fn room_link(&self, room: RoomId) -> Result<Arc<dyn Link>, ClientError> {
        if !self.account_link_up() {
            return Err(ClientError::NotConnected);
        }
        let cell = {
            let mut links = lock(&self.room_links);
            let cell = links.entry(room).or_default();
            // An ended connection is replaced at once. Its follower forgets it only after
            // handing on the events it was pushed, and that may wait for this room's lock,
            // held by an operation that needs the relay now: it would wait for itself
            // (after a relay restart, for the whole of `OUTCOME_WAIT`).
            if cell.get().is_some_and(|link| link.is_closed()) {
                *cell = Arc::default();
            }
            cell.clone()
        };
        let link = cell
            .get_or_try_init(|| self.open_room_link(room))
            .await?
            .clone();
        Ok(link)
    }

    fn account_link_up(&self) -> bool {
        self.link
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    async fn open_room_link(&self, room: RoomId) -> Result<Arc<dyn Link>, ClientError> {
        tokio::time::sleep(random_pause(room_jitter())).await;
        if self.closed.load(Ordering::SeqCst) {
            return Err(ClientError::NotConnected);
        }
        // Never signs in: the room's capability authorises everything sent here.
        let conn = match self.connector.connect().await {
            Ok(conn) => conn,
            Err(e @ (TransportError::Unreachable { .. } | TransportError::Closed)) => {
                tracing::info!("room {room}: opening its connection failed: {e}");
                return Err(ClientError::NotConnected);
            }
            Err(e) => return Err(e.into()),
        };
        let link = conn.link.clone();
        if self.closed.load(Ordering::SeqCst) {
            link.close();
            return Err(ClientError::NotConnected);
        }
        // Let in by an anonymous token: the relay learns someone it has not banned opened
        // it, not who (decision 0016).
        if let Err(e) = self.admit(room, &link).await {
            link.close();
            return Err(match e {
                // The key changed between the questions (a ban), or this account took
                // too many tokens lately: another try later is admitted, so the room is
                // opened again with the usual back-off instead of being left unfollowed.
                ClientError::Relay(ref refused) if admission_retries(refused.code) => {
                    tracing::info!(
                        "room {room}: its connection was not admitted ({e}); trying again later"
                    );
                    ClientError::NotConnected
                }
                e => {
                    tracing::info!("room {room}: admitting its connection failed: {e}");
                    e
                }
            });
        }
        tracing::debug!("room {room}: own connection open");
        self.track(tokio::spawn(follow(
            self.me.clone(),
            room,
            link.clone(),
            conn.events,
        )));
        Ok(link)
    }

    /// Opens the connections of every joined room at once, each after its own random
    /// pause, so that catching up does not wait for them one by one.
    pub(crate) fn open_room_links(&self) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        for room in self.joined_room_ids() {
            let me = me.clone();
            self.track(tokio::spawn(async move {
                let _ = me.room_link(room).await;
            }));
        }
    }

    /// Keeps `task` to stop it on close: it may hold the client's state.
    pub(super) fn track(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = lock(&self.room_tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Stops the room connections' tasks and waits until they are gone.
    pub(crate) async fn stop_room_tasks(&self) {
        let tasks: Vec<_> = lock(&self.room_tasks).drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    fn joined_room_ids(&self) -> Vec<RoomId> {
        self.room_handles()
            .into_iter()
            .filter_map(|room| {
                let room = room.try_lock().ok()?;
                (!room.removed && room.rec.status == Status::Joined).then_some(room.id)
            })
            .collect()
    }

    /// Closes `room`'s connection, if it has one (we left it, or were removed).
    pub(crate) fn close_room_link(&self, room: RoomId) {
        let cell = lock(&self.room_links).remove(&room);
        if let Some(link) = cell.as_ref().and_then(|cell| cell.get()) {
            link.close();
        }
    }

    /// Closes every room's connection (the client is closing).
    pub(crate) fn close_room_links(&self) {
        let cells: Vec<_> = lock(&self.room_links).drain().map(|(_, c)| c).collect();
        for cell in cells {
            if let Some(link) = cell.get() {
                link.close();
            }
        }
    }

    /// `room`'s connection `link` dropped: forget it, then catch the room up and
    /// subscribe again on a new one, backing off while that fails.
    async fn room_link_ended(&self, id: RoomId, link: &Arc<dyn Link>) {
        {
            let mut links = lock(&self.room_links);
            let ours = links
                .get(&id)
                .and_then(|cell| cell.get())
                .is_some_and(|current| Arc::ptr_eq(current, link));
            if ours {
                links.remove(&id);
            }
        }
        self.follow_again(id, FIRST_RETRY).await;
    }

    /// Whether catching up `room` failed with `error` because its own connection could
    /// not be opened while the account's connection is up: the relay refused that one
    /// for now (too many connections from this address, which a household shares; this
    /// account's admission tokens used up for a while). The room is then followed again
    /// in the background, backing off, and the caller goes on with the other rooms
    /// instead of failing the whole connect or sync for one room.
    pub(crate) fn follow_later(&self, room: RoomId, error: &ClientError) -> bool {
        if !matches!(error, ClientError::NotConnected) || !self.account_link_up() {
            return false;
        }
        let Some(me) = self.me.upgrade() else {
            return false;
        };
        if !lock(&self.behind).insert(room) {
            return true; // already followed again by its task
        }
        tracing::info!("room {room}: its connection could not be opened; trying again later");
        self.track(tokio::spawn(async move {
            tokio::time::sleep(FIRST_RETRY).await;
            let caught_up = me.follow_again(room, FIRST_RETRY * 2).await;
            lock(&me.behind).remove(&room);
            if !caught_up {
                return;
            }
            // What connecting does for every room after catching it up.
            if let Ok(handle) = me.room(room) {
                let mut room = handle.lock().await;
                if let Err(e) = me.check_relay_settings(&mut room).await {
                    tracing::info!(
                        "room {}: checking the relay's settings for it failed: {e}",
                        room.id
                    );
                }
            }
            if let Err(e) = me.deliver_owed_welcomes().await {
                tracing::info!("delivering owed invitations failed (tried again later): {e}");
            }
            // A Welcome into this room waited for its catch-up.
            if let Err(e) = me.fetch_inbox().await {
                tracing::info!("fetching the inbox failed: {e}");
            }
        }));
        true
    }

    /// Opens `id`'s connection, catches the room up and subscribes, backing off from
    /// `delay` (doubled up to [`MAX_RETRY`]) while its connection cannot be opened.
    /// Whether the room was caught up (not: the client is closing, the account's
    /// connection is down, the room is no longer joined, or catching up failed
    /// otherwise).
    async fn follow_again(&self, id: RoomId, mut delay: Duration) -> bool {
        loop {
            if self.closed.load(Ordering::SeqCst) || !self.account_link_up() {
                // Closing, or the account's reconnect resumes every room.
                return false;
            }
            let Ok(room) = self.room(id) else {
                return false;
            };
            // Removed meanwhile (a busy room is tried: its status is read below).
            if room
                .try_lock()
                .is_ok_and(|r| r.removed || r.rec.status != Status::Joined)
            {
                return false;
            }
            // The new connection is opened (after its random pause) before the room's
            // lock is taken, so that the account's catch-up or a send in this room does
            // not wait behind the pause.
            let opened = !matches!(
                self.room_link(id).await,
                Err(ClientError::NotConnected | ClientError::Unreachable { .. })
            );
            let result = if !opened {
                Err(ClientError::NotConnected)
            } else {
                let mut room = room.lock().await;
                if room.removed || room.rec.status != Status::Joined {
                    return false;
                }
                // A new connection: nothing is known of its subscriptions yet.
                room.subscribed = None;
                room.orphaned_epoch = None;
                room.expected_end = None;
                match self.catch_up(&mut room).await {
                    Ok(()) => self.follow_up(&mut room).await,
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(()) => return true,
                Err(ClientError::NotConnected | ClientError::Unreachable { .. }) => {}
                Err(e) => {
                    tracing::info!("room {id}: following it again failed: {e}");
                    return false;
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }
}

/// Whether a room connection refused admission for `code` is admitted when tried again
/// later: the relay's key changed under it (`StaleEpoch` on the batch, `NotAdmitted` on
/// the token) or the account's batches are used up for now (`RateLimited`).
fn admission_retries(code: hearth_protocol::ErrorCode) -> bool {
    use hearth_protocol::ErrorCode::{NotAdmitted, RateLimited, StaleEpoch};
    matches!(code, StaleEpoch | NotAdmitted | RateLimited)
}

/// Hands `room`'s pushed events to the client until its connection ends, then has the
/// room followed again. (Boxed with its `Send` declared: it calls back into the requests
/// that open room connections, and the compiler cannot infer that through the cycle.)
fn follow(
    inner: Weak<Inner>,
    room: RoomId,
    link: Arc<dyn Link>,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> crate::transport::BoxFuture<'static, ()> {
    Box::pin(async move {
        while let Some(event) = events.recv().await {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            if let Event::Readmit { key } = event {
                // The relay's admission key changed (someone was banned): a token of the
                // new one keeps this connection open (decision 0016).
                if let Err(e) = strong.admit_under(room, &link, key).await {
                    tracing::info!("room {room}: admitting its connection again failed: {e}");
                }
                continue;
            }
            strong.handle_event(event).await;
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if let Some(reason) = link.close_reason() {
            tracing::info!("room {room}: the relay closed its connection: {reason}");
        } else {
            tracing::debug!("room {room}: its connection ended");
        }
        strong.room_link_ended(room, &link).await;
    })
}
