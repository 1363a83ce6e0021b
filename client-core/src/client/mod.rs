//! The client: one profile connected to its relay.
//!
//! [`Client`] is cheap to share (`&self` methods, `Send + Sync`). Inside:
//!
//! - a connection driver task (`driver`) that owns the pushed event stream, processes
//!   room entries and inbox arrivals, answers re-authentication challenges, and
//!   reconnects with exponential backoff (capped at 30 s) when the connection drops,
//!   resuming every room from its last processed seq;
//! - per-room state ([`room::Room`]) behind a tokio mutex: every operation on a room
//!   (sending, committing, processing pushed entries) holds it, so a room's log is
//!   processed strictly in seq order and one change is applied at a time;
//! - the MLS [`Engine`] behind a std mutex, held only for synchronous MLS steps and the
//!   store batch that persists them (never across network I/O).
//!
//! Events go to one unbounded channel, taken once with [`Client::events`].

mod admin;
pub(crate) mod admission;
pub mod authentication;
pub use authentication::Impostor;
mod direct;
mod driver;
mod files;
pub use files::{candidates as saved_file_names, one_file, Progress, SavedFile, SentFile};
#[doc(hidden)]
pub mod fuzzing;
mod heads;
mod inbox;
pub mod labels;
pub use labels::RoomRef;
mod names;
pub use names::{validate_display_name, MAX_DISPLAY_NAME};
mod ops;
mod outbox;
pub mod past;
pub use past::PastRoom;
mod presence;
pub use presence::{PRESENCE_HEARTBEAT, PRESENCE_TTL};
mod process;
mod public;
mod queue;
pub use queue::{Delivery, QueuedMessage};
mod revert;
pub mod room_links;
pub use room_links::{room_jitter, set_room_jitter, ROOM_JITTER};
mod said;
pub use revert::STUCK_POLL;
pub mod rotation;
pub use rotation::RotationReport;
pub(crate) mod restore;
pub mod room;
pub use public::PublicRoom;
mod trust;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use hearth_protocol::auth::auth_message;
use hearth_protocol::{Handle, Invite, InviteToken, Request, Response, RoomId, Seq, WireError};
use tokio::sync::mpsc;

use crate::error::{store as store_err, ClientError};
use crate::events::{ClientEvent, HistoryItem, Invitation, Member, RoomSummary};
use crate::mls::Engine;
use crate::profile::Profile;
use crate::store::Table;
use crate::transport::quic::QuicConnector;
use crate::transport::{Connection, Connector, Link, TransportError};
use labels::Named;
use room::{Room, RoomRecord, Status};

/// One-use KeyPackages published at registration and kept in stock.
pub const KEY_PACKAGE_STOCK: usize = 20;
/// Below this many one-use KeyPackages left on the relay, the client publishes more.
pub const KEY_PACKAGE_LOW: u32 = 10;

/// How long [`Client::close`] spends at most saying we went offline.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A connected hearth client. See the module documentation.
pub struct Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// This, for tasks a method starts (room connections' event loops).
    me: std::sync::Weak<Inner>,
    profile: Profile,
    connector: Arc<dyn Connector>,
    link: RwLock<Option<Arc<dyn Link>>>,
    /// Each room's own connection, which never signs in (see [`room_links`]).
    room_links: Mutex<room_links::RoomLinks>,
    /// Admission tokens for room connections (see [`admission`]).
    admission: tokio::sync::Mutex<admission::TokenPool>,
    /// The tasks of the room connections (opening them, their events), stopped on close.
    room_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The presence announcement spreading over the rooms (see `presence`), stopped on
    /// close.
    announcer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The TLS exporter value of the current connection (for re-authentication).
    exporter: Mutex<[u8; 32]>,
    engine: Mutex<Engine>,
    rooms: Mutex<HashMap<RoomId, Arc<tokio::sync::Mutex<Room>>>>,
    events_tx: mpsc::UnboundedSender<ClientEvent>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<ClientEvent>>>,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The work after the last reconnect (see `Inner::after_connect`), stopped on close.
    after_reconnect: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
    inbox_lock: tokio::sync::Mutex<()>,
    /// Held while the message queue is read or changed (see `queue`).
    queue_lock: tokio::sync::Mutex<()>,
    /// Who said they are online or offline, per room (see `presence`).
    presence: Mutex<presence::Seen>,
    /// We announced that we are online, so we say goodbye on close.
    announced: AtomicBool,
    /// What the relay's directory said about handles entering rooms.
    directory: Mutex<authentication::DirectoryAnswers>,
    /// Where our last own content landed in each room's log, and when (see `heads`).
    marks_sent: Mutex<HashMap<RoomId, (Seq, std::time::Instant)>>,
    /// The last message or commit of someone else in each room (see `heads`).
    news: Mutex<HashMap<RoomId, Seq>>,
    /// Rooms not caught up on this connection because the relay refused their own
    /// connection for now, each followed again in the background by one task (see
    /// [`Inner::follow_later`]). A Welcome into one of them waits in the inbox.
    behind: Mutex<std::collections::HashSet<RoomId>>,
    /// Rooms with a Welcome left in the inbox because another task held the room, each
    /// waited for by one task that fetches the inbox again once it is let go (see
    /// [`Inner::fetch_when_free`]).
    refetch: Mutex<std::collections::HashSet<RoomId>>,
    /// The relay's clock against ours (see [`crate::clock`]).
    pub(crate) clock: crate::clock::RelayClock,
    /// Pages of catch-up read and held at once, across rooms (see
    /// [`ops::CATCH_UP_PAGES`]).
    catch_up_pages: tokio::sync::Semaphore,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning means a panic elsewhere while holding the lock; the data is still the
    // last consistent state we wrote (all updates are single assignments or persisted
    // batches), so carry on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl From<TransportError> for ClientError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::PinMismatch { address } => ClientError::PinMismatch { address },
            TransportError::Unreachable { address, reason } => {
                ClientError::Unreachable { address, reason }
            }
            TransportError::Version(m) => ClientError::Version(m),
            TransportError::ClosedByRelay(reason) => ClientError::ClosedByRelay(reason),
            TransportError::Closed => ClientError::NotConnected,
        }
    }
}

impl Client {
    /// Connects to `profile.relay()`, registers with the invite's token, publishes
    /// KeyPackages (20 + a last-resort one) and marks the profile registered.
    pub async fn register(profile: Profile, invite: &Invite) -> Result<Client, ClientError> {
        let connector = Arc::new(QuicConnector::new(profile.relay().clone()));
        Self::register_with(profile, Some(invite.token.clone()), connector).await
    }

    /// [`Client::register`] over any transport (tests use an in-process relay).
    pub async fn register_with(
        profile: Profile,
        token: Option<InviteToken>,
        connector: Arc<dyn Connector>,
    ) -> Result<Client, ClientError> {
        let conn = connector.connect().await?;
        let account = profile.account();
        let signature =
            profile
                .identity()
                .sign(&auth_message(&conn.challenge, &conn.exporter, &account));
        let request = Request::Register {
            invite: token,
            handle: profile.handle().clone(),
            account,
            signature,
        };
        let relay_now = match conn.link.call(request).await? {
            Ok(Response::Authenticated { now, .. }) => now,
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(e.into()),
        };
        let client = Self::start(profile, connector, Some((conn, relay_now)))?;
        client
            .inner
            .publish_key_packages(KEY_PACKAGE_STOCK, true)
            .await?;
        client.inner.profile.set_registered().map_err(store_err)?;
        client.inner.resume().await?;
        Ok(client)
    }

    /// Connects and authenticates, loads rooms, subscribes to every room from its last
    /// processed seq, fetches the inbox, and tops up KeyPackages when fewer than 10 are
    /// left. After a restore from a backup, every room also commits a self-update before
    /// this returns (see [`crate::backup`]).
    pub async fn connect(profile: Profile) -> Result<Client, ClientError> {
        let connector = Arc::new(QuicConnector::new(profile.relay().clone()));
        Self::connect_with(profile, connector).await
    }

    /// [`Client::connect`] over any transport (tests use an in-process relay).
    pub async fn connect_with(
        profile: Profile,
        connector: Arc<dyn Connector>,
    ) -> Result<Client, ClientError> {
        let conn = connector.connect().await?;
        let relay_now = Inner::authenticate(&profile, &conn).await?;
        let client = Self::start(profile, connector, Some((conn, relay_now)))?;
        client.inner.resume().await?;
        client.inner.after_connect().await?;
        Ok(client)
    }

    /// Like [`Client::connect`], but a relay that cannot be reached now is not an error:
    /// the client starts without a connection, serves what the local store holds
    /// (rooms, history, members, contacts) and connects by itself as soon as the relay
    /// answers (backing off up to 30 s), as after a dropped connection. Other failures
    /// (a refused sign-in, a relay whose key is not the pinned one) are returned.
    pub async fn open(profile: Profile) -> Result<Client, ClientError> {
        let connector = Arc::new(QuicConnector::new(profile.relay().clone()));
        Self::open_with(profile, connector).await
    }

    /// [`Client::open`] over any transport.
    pub async fn open_with(
        profile: Profile,
        connector: Arc<dyn Connector>,
    ) -> Result<Client, ClientError> {
        match connector.connect().await {
            Ok(conn) => {
                let relay_now = Inner::authenticate(&profile, &conn).await?;
                let client = Self::start(profile, connector, Some((conn, relay_now)))?;
                client.inner.resume().await?;
                client.inner.after_connect().await?;
                Ok(client)
            }
            Err(TransportError::Unreachable { address, reason }) => {
                tracing::info!("relay {address} unreachable ({reason}): starting offline");
                Self::start(profile, connector, None)
            }
            // Closed for a reason that passes by itself (a restart, a crowd signing in
            // at once): as if unreachable.
            Err(TransportError::ClosedByRelay(reason))
                if reason.retry() == hearth_protocol::Retry::Soon =>
            {
                tracing::info!("the relay closed the connection ({reason}): starting offline");
                Self::start(profile, connector, None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the client has a connection to the relay now.
    pub fn is_connected(&self) -> bool {
        self.inner
            .link
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Starts the client's tasks, on `conn` (with the relay's clock reading at sign-in),
    /// or without a connection: then the driver connects by itself.
    fn start(
        profile: Profile,
        connector: Arc<dyn Connector>,
        conn: Option<(Connection, u64)>,
    ) -> Result<Client, ClientError> {
        let mut engine = Engine::load(
            profile.identity().mls_signer(),
            profile.handle().as_str(),
            profile.store(),
        )?;
        // Rooms a key rotation has not reached yet still sign with the old key.
        engine.previous = profile
            .previous_identity()
            .map_err(store_err)?
            .map(|identity| identity.mls_signer());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            profile,
            connector,
            link: RwLock::new(conn.as_ref().map(|(conn, _)| conn.link.clone())),
            room_links: Mutex::new(room_links::RoomLinks::new()),
            admission: tokio::sync::Mutex::new(admission::TokenPool::default()),
            room_tasks: Mutex::new(Vec::new()),
            announcer: Mutex::new(None),
            exporter: Mutex::new(
                conn.as_ref()
                    .map(|(conn, _)| conn.exporter)
                    .unwrap_or_default(),
            ),
            engine: Mutex::new(engine),
            rooms: Mutex::new(HashMap::new()),
            events_tx,
            events_rx: Mutex::new(Some(events_rx)),
            driver: Mutex::new(None),
            after_reconnect: Mutex::new(None),
            closed: AtomicBool::new(false),
            inbox_lock: tokio::sync::Mutex::new(()),
            queue_lock: tokio::sync::Mutex::new(()),
            presence: Mutex::new(presence::Seen::default()),
            announced: AtomicBool::new(false),
            directory: Mutex::new(authentication::DirectoryAnswers::default()),
            marks_sent: Mutex::new(HashMap::new()),
            news: Mutex::new(HashMap::new()),
            behind: Mutex::new(Default::default()),
            refetch: Mutex::new(Default::default()),
            clock: crate::clock::RelayClock::default(),
            catch_up_pages: tokio::sync::Semaphore::new(ops::CATCH_UP_PAGES),
        });
        inner.load_rooms()?;
        tokio::spawn(purge_loop(Arc::downgrade(&inner)));
        tokio::spawn(heads::head_loop(Arc::downgrade(&inner)));
        tokio::spawn(revert::stuck_loop(Arc::downgrade(&inner)));
        let events = match conn {
            Some((conn, conn_now)) => {
                inner.observe_relay_clock(conn_now);
                inner.emit(ClientEvent::Connection(
                    crate::events::ConnectionState::Connected,
                ));
                conn.events
            }
            // An ended event stream: the driver starts by reconnecting.
            None => mpsc::unbounded_channel().1,
        };
        let handle = tokio::spawn(driver::run(Arc::downgrade(&inner), events));
        *lock(&inner.driver) = Some(handle);
        Ok(Client { inner })
    }

    /// The profile this client runs.
    pub fn profile(&self) -> &Profile {
        &self.inner.profile
    }

    /// The event stream. The first call takes it; later calls get a receiver that never
    /// yields anything (events are not duplicated). Events emitted before the first call
    /// are buffered.
    pub fn events(&self) -> mpsc::UnboundedReceiver<ClientEvent> {
        lock(&self.inner.events_rx)
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1)
    }

    /// Fetches the inbox and catches every room up to the relay's head; returns when
    /// done.
    ///
    /// # Errors
    /// [`ClientError::NotConnected`] when the relay is away, and also when it refused
    /// the connection of a room for now (too many from this address): the other rooms
    /// and the inbox are still caught up, [`Client::is_connected`] stays `true`, and the
    /// room is followed again in the background.
    pub async fn sync(&self) -> Result<(), ClientError> {
        async {
            let mut behind = None;
            // Rooms first: a Welcome back into a room we were removed from is only
            // recognised as such once the removal itself has been processed.
            for room in self.inner.room_handles() {
                let mut room = room.lock().await;
                if room.removed || room.rec.status != Status::Joined {
                    continue;
                }
                let caught_up = match self.inner.catch_up(&mut room).await {
                    Ok(()) => self.inner.follow_up(&mut room).await,
                    Err(e) => Err(e),
                };
                match caught_up {
                    Err(e) if self.inner.follow_later(room.id, &e) => behind = Some(e),
                    result => result?,
                }
            }
            self.inner.fetch_inbox().await?;
            self.inner.purge_expired(crate::clock::device_now()).await?;
            behind.map_or(Ok(()), Err)
        }
        .named(&self.inner)
        .await
    }

    /// Creates a room named `name` with us as its only member.
    pub async fn create_room(&self, name: &str) -> Result<RoomId, ClientError> {
        self.inner.create_room(name).await
    }

    /// Invites `handle` into `room` (adds them to the group and sends them the Welcome).
    pub async fn invite(&self, room: RoomId, handle: &Handle) -> Result<(), ClientError> {
        self.inner.invite(room, handle).named(&self.inner).await
    }

    /// Invitations received and not yet accepted: the inbox is fetched first when
    /// connected, and each invitation's room is read up to now, so it shows the room's
    /// current name (a rename after the invitation included); without a connection, those
    /// already fetched, as last read.
    pub async fn invitations(&self) -> Result<Vec<Invitation>, ClientError> {
        match self.inner.fetch_inbox().await {
            Ok(()) => self.inner.refresh_invitations().await,
            Err(ClientError::NotConnected) => {}
            Err(e) => return Err(e),
        }
        self.known_invitations().await
    }

    /// Declines an invitation: joins only to leave at once, so the room's members see
    /// us leave instead of keeping a member who never comes.
    pub async fn decline_invitation(&self, room: RoomId) -> Result<(), ClientError> {
        self.inner
            .accept_invitation(room)
            .named(&self.inner)
            .await?;
        self.inner.leave(room).named(&self.inner).await
    }

    /// Invitations already received and not yet accepted, without asking the relay.
    pub async fn known_invitations(&self) -> Result<Vec<Invitation>, ClientError> {
        let mut out = Vec::new();
        for room in self.inner.room_handles() {
            let room = room.lock().await;
            if room.removed {
                // Removed again before we answered: nothing left to accept.
                continue;
            }
            if let Status::Invited { from, received } = &room.rec.status {
                out.push(Invitation {
                    room: room.id,
                    name: room.rec.name.clone(),
                    from: from.clone(),
                    received: crate::history::time_of(*received),
                });
            }
        }
        out.sort_by_key(|i| i.received);
        Ok(out)
    }

    /// Accepts an invitation: the room becomes usable and is caught up.
    pub async fn accept_invitation(&self, room: RoomId) -> Result<(), ClientError> {
        self.inner.accept_invitation(room).named(&self.inner).await
    }

    /// Sends a text message; returns its seq once the relay stored it.
    ///
    /// When the connection is lost before the relay's answer, the room's log is read as
    /// soon as it can be (up to 20 s) to learn whether the message was stored: stored, its
    /// seq is returned; not stored, it is sent once more. An error for a lost answer
    /// means the relay stayed out of reach that long; the message is then recognised at
    /// the next catch-up if it was stored. [`Client::send_text_or_queue`] keeps it for
    /// later instead.
    pub async fn send_text(&self, room: RoomId, text: &str) -> Result<Seq, ClientError> {
        self.inner
            .send_body_settled(
                room,
                crate::content::Body::Text {
                    text: text.to_string(),
                    reply_to: None,
                },
            )
            .named(&self.inner)
            .await
    }

    /// Removes `handle` from `room`: the same as [`Client::kick`].
    pub async fn remove_member(&self, room: RoomId, handle: &Handle) -> Result<(), ClientError> {
        self.inner
            .kick(room, handle, false)
            .named(&self.inner)
            .await
    }

    /// Kicks `handle` out of `room` (admins; kicking an admin takes the owner): a commit
    /// that removes them, so they lose access at once. Kicking yourself is leaving.
    pub async fn kick(&self, room: RoomId, handle: &Handle) -> Result<(), ClientError> {
        self.inner
            .kick(room, handle, false)
            .named(&self.inner)
            .await
    }

    /// Kicks `handle` and puts their identity on the room's ban list, in one commit, so
    /// no admin can add them back until [`Client::unban`].
    pub async fn ban(&self, room: RoomId, handle: &Handle) -> Result<(), ClientError> {
        self.inner.kick(room, handle, true).named(&self.inner).await
    }

    /// Takes `handle` off the room's ban list (admins).
    pub async fn unban(&self, room: RoomId, handle: &Handle) -> Result<(), ClientError> {
        self.inner.unban(room, handle).named(&self.inner).await
    }

    /// Makes the member `handle` an admin of `room` (the owner only).
    pub async fn grant_admin(&self, room: RoomId, handle: &Handle) -> Result<(), ClientError> {
        self.inner
            .set_admin(room, handle, true)
            .named(&self.inner)
            .await
    }

    /// Takes admin rights away from `handle` (the owner only).
    pub async fn revoke_admin(&self, room: RoomId, handle: &Handle) -> Result<(), ClientError> {
        self.inner
            .set_admin(room, handle, false)
            .named(&self.inner)
            .await
    }

    /// Renames `room` (admins). The name lives in the encrypted group context.
    pub async fn rename(&self, room: RoomId, name: &str) -> Result<(), ClientError> {
        self.inner.rename(room, name).named(&self.inner).await
    }

    /// Sets the topic of `room` (admins; empty clears it).
    pub async fn set_topic(&self, room: RoomId, topic: &str) -> Result<(), ClientError> {
        self.inner.set_topic(room, topic).named(&self.inner).await
    }

    /// Sets or clears (`None`) the disappearing-message timer of `room` (admins): every
    /// member's client deletes messages older than this from its history, and the relay
    /// is asked to delete the room's envelopes once they are this old.
    pub async fn set_expiry(
        &self,
        room: RoomId,
        expire: Option<std::time::Duration>,
    ) -> Result<(), ClientError> {
        self.inner.set_expiry(room, expire).named(&self.inner).await
    }

    /// Re-creates `room` as a new group with the same name, members and roles (admins;
    /// the way out of a room an insider broke, DESIGN 4). The members get an invitation
    /// to the new room; the old one gets a pointer to it if it still works. Members whose
    /// KeyPackage cannot be fetched, or whose identity key changed, are left out.
    ///
    /// From then on the old room is shown as `NAME (old)` ([`RoomSummary::rebuilt_as`])
    /// and its name means the new room ([`Client::find_room`]): here at once, and for each
    /// member once the pointer reached them.
    pub async fn rebuild(&self, room: RoomId) -> Result<RoomId, ClientError> {
        self.inner.rebuild(room).named(&self.inner).await
    }

    /// The room's policy: name, topic, owner, admins, ban list, timer.
    pub async fn policy(&self, room: RoomId) -> Result<crate::events::RoomPolicy, ClientError> {
        self.inner.policy(room).named(&self.inner).await
    }

    /// Deletes stored messages past their room's timer at `now`; returns how many. Runs by
    /// itself on every [`Client::sync`] and every [`PURGE_INTERVAL`]; history never shows
    /// expired messages either way.
    pub async fn purge_expired(&self, now: SystemTime) -> Result<usize, ClientError> {
        self.inner.purge_expired(now).await
    }

    /// Leaves `room`: sends a self-remove proposal that another member's client commits,
    /// and forgets the room locally.
    pub async fn leave(&self, room: RoomId) -> Result<(), ClientError> {
        self.inner.leave(room).named(&self.inner).await
    }

    /// The rooms we are a member of (not pending invitations).
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, ClientError> {
        let mut out = Vec::new();
        for room in self.inner.room_handles() {
            let room = room.lock().await;
            if room.removed || room.rec.status != Status::Joined {
                continue;
            }
            out.push(RoomSummary {
                id: room.id,
                name: room.rec.name.clone(),
                members: room.members().into_iter().map(|m| m.handle).collect(),
                epoch: room.group.epoch().as_u64(),
                last_seq: room.rec.transcript.last(),
                direct: room.settings().is_ok_and(|s| s.direct),
                rebuilt_as: room.rec.extra.rebuilt_as,
            });
        }
        // An old room after the new one of its name.
        out.sort_by(|a, b| {
            (&a.name, a.rebuilt_as.is_some(), a.id).cmp(&(&b.name, b.rebuilt_as.is_some(), b.id))
        });
        Ok(out)
    }

    /// The members of a room.
    pub async fn members(&self, room: RoomId) -> Result<Vec<Member>, ClientError> {
        let room = self.inner.named(self.inner.room(room)).await?;
        let room = room.lock().await;
        Ok(self.inner.members_judged(&room))
    }

    /// Stored history, oldest first: the last `limit` messages, optionally only those at
    /// or after `since`.
    pub async fn history(
        &self,
        room: RoomId,
        limit: usize,
        since: Option<SystemTime>,
    ) -> Result<Vec<HistoryItem>, ClientError> {
        let expire = match self.inner.room(room) {
            Ok(room) => {
                let room = room.lock().await;
                room.settings().ok().and_then(|s| s.expire_secs)
            }
            // A room we are no longer in: its history is still ours (see `past`).
            Err(_) if self.past_rooms().await?.iter().any(|p| p.id == room) => None,
            Err(e) => return self.inner.named(Err(e)).await,
        };
        let mut items = crate::history::read(self.inner.profile.store(), room, limit, since)?;
        if let Some(expire) = expire {
            // By the relay's clock, which stamped every entry.
            let now = self.inner.clock.now();
            items.retain(|i| !crate::history::expired(i.time, expire, now));
        }
        for item in &mut items {
            item.sender_name = self.inner.display_name(&item.sender);
        }
        Ok(items)
    }

    /// The newest message of `room` the user has read with `hearth read` (seq 0 when
    /// none), kept in the store so a later read shows only what is new.
    pub fn read_mark(&self, room: RoomId) -> Result<Seq, ClientError> {
        let value = self
            .inner
            .profile
            .store()
            .get(Table::Settings, read_mark_key(room).as_bytes())
            .map_err(store_err)?;
        Ok(Seq(value
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes)))
    }

    /// Moves the read mark of `room` forward to `seq` (never back).
    pub fn set_read_mark(&self, room: RoomId, seq: Seq) -> Result<(), ClientError> {
        if seq <= self.read_mark(room)? {
            return Ok(());
        }
        let mut batch = self.inner.profile.store().begin().map_err(store_err)?;
        batch
            .put(
                Table::Settings,
                read_mark_key(room).as_bytes(),
                &seq.0.to_be_bytes(),
            )
            .map_err(store_err)?;
        batch.commit().map_err(store_err)
    }

    /// Resolves a room by exact name (case-insensitive), `@NICK` (the private
    /// conversation with NICK, by NICK's accepted key; never by name) or hex id prefix.
    ///
    /// A room an admin rebuilt as a new one (see [`Client::rebuild`]) is never chosen by
    /// its name, only as `NAME (old)` or by its id: its name means the new room. Several
    /// rooms of the name given, or a room of that name and another whose id starts with
    /// it, are an error ([`ClientError::AmbiguousRoom`]), never a guess.
    pub async fn find_room(&self, name_or_id: &str) -> Result<Option<RoomId>, ClientError> {
        let found = self.find_room_unnamed(name_or_id).await;
        self.inner.named(found).await
    }

    async fn find_room_unnamed(&self, name_or_id: &str) -> Result<Option<RoomId>, ClientError> {
        let wanted = name_or_id.trim().to_lowercase();
        if wanted.is_empty() {
            return Ok(None);
        }
        // A whole id names one room, whatever any room is called.
        if let Some(id) = RoomId::from_hex(&wanted) {
            if let Ok(room) = self.inner.room(id) {
                if !room.lock().await.removed {
                    return Ok(Some(id));
                }
            }
        }
        if let Some(peer) = wanted.strip_prefix('@') {
            // Only the conversation with that person, chosen by key: never a room that
            // someone merely named "@peer".
            return Ok(match Handle::new(peer) {
                Ok(peer) => self.inner.direct_room_with(&peer).await,
                Err(_) => None,
            });
        }
        let (mut by_name, mut by_prefix) = (Vec::new(), Vec::new());
        for room in self.inner.room_handles() {
            let room = room.lock().await;
            if room.removed {
                continue;
            }
            let name = room.rec.name.to_lowercase();
            let named = match room.rec.extra.rebuilt_as {
                None => name == wanted,
                Some(_) => format!("{name} (old)") == wanted,
            };
            if named {
                by_name.push(room.id);
            }
            if room.id.to_hex().starts_with(&wanted) {
                by_prefix.push(room.id);
            }
        }
        // Two rooms of one name (anyone may name a room anything): never a guess, which
        // could send a message to the wrong people. Nor a room named like the start of
        // another room's id: someone could name a room after the short id that hearth
        // shows to tell two rooms apart, and catch what is meant for the other.
        if let [named] = by_name[..] {
            by_name.extend(by_prefix.iter().filter(|id| **id != named).copied());
        }
        if by_name.len() > 1 {
            by_name.sort();
            return Err(ClientError::AmbiguousRoom {
                name: name_or_id.trim().to_string(),
                rooms: by_name.into_iter().map(RoomRef::from).collect(),
            });
        }
        Ok(match (by_name.as_slice(), by_prefix.as_slice()) {
            ([one], _) => Some(*one),
            ([], [one]) => Some(*one),
            _ => None,
        })
    }

    /// Sends a private message to `to`: through the two-person room we share (a direct
    /// room, listed with [`RoomSummary::direct`]), created and `to` added on first use.
    /// `to` joins it without accepting anything. Returns the room.
    pub async fn send_private(&self, to: &Handle, text: &str) -> Result<RoomId, ClientError> {
        self.inner.send_private(to, text).named(&self.inner).await
    }

    /// Tells every joined room that we are online (an encrypted presence message, never
    /// stored in history), and from then on that we went offline when [`Client::close`]
    /// is called. Clients that never call this send no presence at all (one-shot commands
    /// should not); errors of single rooms are logged, not returned.
    ///
    /// The rooms are told one by one in random order, with a random pause of up to
    /// [`room_jitter`] before each (decision 0013 part 5: one burst to every room at once
    /// would tell the relay which rooms are one person's), on a task of its own: this
    /// returns at once.
    pub async fn announce_presence(&self) {
        self.inner.announced.store(true, Ordering::SeqCst);
        self.inner.spread_announcement(true);
    }

    /// Says again that we are online, in every room, if [`Client::announce_presence`]
    /// was called (see [`PRESENCE_HEARTBEAT`]); a long-running client (the agent) calls
    /// it every [`PRESENCE_HEARTBEAT`] while connected.
    ///
    /// Spread over the rooms like [`Client::announce_presence`]; returns at once.
    pub async fn heartbeat(&self) {
        if self.inner.announced.load(Ordering::SeqCst) {
            self.inner.spread_announcement(false);
        }
    }

    /// Tells `room` that we are online and our display name, as
    /// [`Client::announce_presence`] told every room: for a member who just accepted
    /// ([`ClientEvent::MemberAccepted`]), who did not see the earlier announcement. Does
    /// nothing if presence was never announced; errors are logged.
    pub async fn greet(&self, room: RoomId) {
        self.inner.greet(room).await;
    }

    /// The members of `room` whose last presence message said they are online (as seen
    /// by this client since it started), sorted.
    pub async fn online(&self, room: RoomId) -> Result<Vec<Handle>, ClientError> {
        self.inner.online(room).named(&self.inner).await
    }

    /// Disconnects and stops the background task (after saying we went offline, if we
    /// announced presence).
    pub async fn close(self) {
        self.shut_down().await;
    }

    /// [`Client::close`] for a client shared behind an `Arc`: the same, but the profile
    /// is released only when the last holder drops it.
    pub async fn shut_down(&self) {
        if self.inner.announced.swap(false, Ordering::SeqCst) {
            if let Some(announcer) = lock(&self.inner.announcer).take() {
                announcer.abort();
            }
            // Best effort: a goodbye must not keep a closing client waiting for long.
            let _ = tokio::time::timeout(CLOSE_GRACE, self.inner.announce(false)).await;
        }
        self.inner.shutdown();
        // Both hold the client's state (and so the profile): gone before this returns.
        let driver = lock(&self.inner.driver).take();
        let after = lock(&self.inner.after_reconnect).take();
        for handle in [driver, after].into_iter().flatten() {
            handle.abort();
            let _ = handle.await;
        }
        self.inner.stop_room_tasks().await;
        // A room connection opened meanwhile by a task just stopped.
        self.inner.close_room_links();
        if let Err(e) = self.inner.stash_unspent_tokens().await {
            tracing::warn!("keeping the unspent admission tokens for the next run failed: {e}");
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.inner.shutdown();
        if let Some(handle) = lock(&self.inner.driver).take() {
            handle.abort();
        }
        for task in lock(&self.inner.room_tasks).drain(..) {
            task.abort();
        }
    }
}

/// Where [`Client::read_mark`] keeps a room's mark in [`Table::Settings`].
fn read_mark_key(room: RoomId) -> String {
    format!("read-mark/{}", room.to_hex())
}

fn unexpected(response: &Response) -> ClientError {
    ClientError::Other(format!("unexpected answer from the relay: {response:?}"))
}

impl Inner {
    /// What follows every sign-in once the rooms are resumed: rooms restored from a
    /// backup renew their keys, KeyPackages are topped up, due self-updates are
    /// committed, and rooms an earlier key rotation did not reach move to the new key.
    pub(crate) async fn after_connect(&self) -> Result<(), ClientError> {
        tracing::debug!("after connecting: restores, KeyPackages, updates, queue");
        self.finish_restores().await?;
        self.top_up_key_packages().await?;
        // Rooms whose own leaf is due for fresh keys (weekly; also a room's first).
        self.scheduled_updates(false).await;
        // Rooms an earlier key rotation did not reach.
        self.move_rooms_to_new_key().await;
        // Messages the user sent while the relay could not be reached.
        match self.flush_queue().await {
            Ok(()) | Err(ClientError::NotConnected | ClientError::Unreachable { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    pub(crate) fn emit(&self, event: ClientEvent) {
        let _ = self.events_tx.send(event);
    }

    fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(link) = self.link.write().unwrap_or_else(|p| p.into_inner()).take() {
            link.close();
        }
        self.close_room_links();
        if let Some(announcer) = lock(&self.announcer).take() {
            announcer.abort();
        }
        if let Some(after) = lock(&self.after_reconnect).take() {
            after.abort();
        }
        self.emit(ClientEvent::Connection(
            crate::events::ConnectionState::Closed,
        ));
    }

    /// Sends a request: one the room's capability authorises (with an admin's pseudonym
    /// for an admin's change) on the room's own connection, which never signs in (see
    /// [`room_links`]); any other on the account's.
    pub(crate) async fn call(&self, request: Request) -> Result<Response, ClientError> {
        let Some(room) = request.capability_room() else {
            return Self::call_on(self.account_link()?, request).await;
        };
        let link = self.room_link(room).await?;
        match Self::call_on(link, request).await {
            // The relay's admission key changed twice within its grace period (two bans
            // at once): this connection is opened and admitted again, as after a drop.
            Err(ClientError::Relay(e)) if e.code == hearth_protocol::ErrorCode::NotAdmitted => {
                tracing::info!("room {room}: its connection is no longer admitted; reopening it");
                self.close_room_link(room);
                Err(ClientError::NotConnected)
            }
            other => other,
        }
    }

    /// Sends a request on the account's signed-in connection whatever it is: only for
    /// the one room request the relay takes from an account, a migrated room's first
    /// list of admins (decision 0013 part 5), which shows the relay the owner's account
    /// with the room once.
    pub(crate) async fn call_signed_in(&self, request: Request) -> Result<Response, ClientError> {
        Self::call_on(self.account_link()?, request).await
    }

    fn account_link(&self) -> Result<Arc<dyn Link>, ClientError> {
        self.link
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(ClientError::NotConnected)
    }

    async fn call_on(link: Arc<dyn Link>, request: Request) -> Result<Response, ClientError> {
        match link.call(request).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(ClientError::Relay(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Authenticates a new connection; returns the relay's clock.
    ///
    /// When the relay refuses our key and a key rotation was under way (its answer lost
    /// to a crash or a dropped connection), the pending key is tried: if the relay knows
    /// it, the rotation happened and is finished here (see [`rotation`]).
    async fn authenticate(profile: &Profile, conn: &Connection) -> Result<u64, ClientError> {
        let sign_in = |identity: crate::Identity| async move {
            let account = identity.account();
            let signature = identity.sign(&auth_message(&conn.challenge, &conn.exporter, &account));
            match conn.link.call(Request::Auth { account, signature }).await? {
                Ok(Response::Authenticated { now, .. }) => Ok(now),
                Ok(other) => Err(unexpected(&other)),
                Err(e) => Err(ClientError::from(e)),
            }
        };
        match sign_in(profile.identity()).await {
            Err(ClientError::Relay(e)) if e.code == hearth_protocol::ErrorCode::AuthFailed => {
                let Some(pending) = profile.pending_identity().map_err(store_err)? else {
                    return Err(ClientError::Relay(e));
                };
                let now = sign_in(pending).await?;
                profile.finish_rotation().map_err(store_err)?;
                Ok(now)
            }
            other => other,
        }
    }

    /// Learns the relay's clock; a notable difference from ours is reported once.
    pub(crate) fn observe_relay_clock(&self, relay_now: u64) {
        let skew = self.clock.observe(relay_now);
        if skew.unsigned_abs() >= crate::clock::NOTABLE_SKEW.as_secs() {
            tracing::warn!("this device's clock is {skew} s off the relay's");
            self.emit(ClientEvent::ClockSkewed { secs: skew });
        }
    }

    fn load_rooms(&self) -> Result<(), ClientError> {
        let rows = self
            .profile
            .store()
            .scan(Table::Rooms, b"")
            .map_err(store_err)?;
        let engine = self.engine();
        let mut rooms = lock(&self.rooms);
        for (key, value) in rows {
            let Ok(id) = <[u8; 16]>::try_from(key.as_slice()).map(RoomId) else {
                continue;
            };
            let rec = match RoomRecord::decode(&value) {
                Ok(rec) => rec,
                Err(e) => {
                    tracing::warn!("room {id}: unreadable record ({e}); skipping it");
                    continue;
                }
            };
            match Room::load(&engine, id, rec)? {
                Some(room) => {
                    rooms.insert(id, Arc::new(tokio::sync::Mutex::new(room)));
                }
                None => tracing::warn!("room {id}: no MLS state; skipping it"),
            }
        }
        Ok(())
    }

    pub(crate) fn room_handles(&self) -> Vec<Arc<tokio::sync::Mutex<Room>>> {
        lock(&self.rooms).values().cloned().collect()
    }

    pub(crate) fn room(&self, id: RoomId) -> Result<Arc<tokio::sync::Mutex<Room>>, ClientError> {
        lock(&self.rooms)
            .get(&id)
            .cloned()
            .ok_or(ClientError::NoSuchRoom(id.into()))
    }

    pub(crate) fn insert_room(&self, room: Room) {
        lock(&self.rooms).insert(room.id, Arc::new(tokio::sync::Mutex::new(room)));
    }

    pub(crate) fn forget_room(&self, id: RoomId) {
        lock(&self.rooms).remove(&id);
        self.close_room_link(id);
    }

    /// After (re)connecting: every joined room caught up and subscribed, then the inbox.
    ///
    /// The rooms are caught up side by side, each as soon as its own connection is open:
    /// a room connection counts against the relay's pool of connections that have not
    /// shown what they are for until its first request carries the room's capability,
    /// and that pool is small per address (`max_connections_per_ip`, 32; the household
    /// shares it). Caught up one after the other, a person in 100 rooms had dozens of
    /// open, admitted connections waiting their turn there, and the relay closed the
    /// oldest of them.
    ///
    /// # Errors
    /// [`ClientError::NotConnected`] when the account's connection went down meanwhile.
    /// A room whose own connection the relay refused is followed again later (see
    /// [`Inner::follow_later`]); any other failure of one room is logged.
    pub(crate) async fn resume(&self) -> Result<(), ClientError> {
        // Each after its own random pause, all at once.
        self.open_room_links();
        let me = self.me.upgrade().ok_or(ClientError::NotConnected)?;
        let mut rooms = tokio::task::JoinSet::new();
        for room in self.room_handles() {
            let me = me.clone();
            rooms.spawn(async move { me.resume_room(&room).await });
        }
        let mut outcome = Ok(());
        while let Some(joined) = rooms.join_next().await {
            match joined {
                Ok(Err(e)) => outcome = Err(e),
                Ok(Ok(())) => {}
                Err(e) => tracing::warn!("catching up a room stopped: {e}"),
            }
        }
        outcome?;
        // Welcomes a crash or a lost connection kept from their newcomers.
        if let Err(e) = self.deliver_owed_welcomes().await {
            tracing::warn!("delivering owed invitations failed (tried again later): {e}");
        }
        // After the rooms (see `Client::sync`).
        self.fetch_inbox().await?;
        if let Err(e) = self.refresh_listings().await {
            tracing::warn!("refreshing public room listings failed: {e}");
        }
        Ok(())
    }

    /// One room of [`Inner::resume`].
    async fn resume_room(&self, room: &tokio::sync::Mutex<Room>) -> Result<(), ClientError> {
        let mut room = room.lock().await;
        room.subscribed = None;
        // A new connection: nothing is known of its subscriptions yet.
        room.orphaned_epoch = None;
        room.expected_end = None;
        if room.removed || room.rec.status != Status::Joined {
            return Ok(());
        }
        let caught_up = match self.catch_up(&mut room).await {
            Ok(()) => self.follow_up(&mut room).await,
            Err(e) => Err(e),
        };
        if let Err(e) = caught_up {
            if self.follow_later(room.id, &e) {
                return Ok(());
            }
            tracing::warn!("room {}: catching up failed: {e}", room.id);
            return match e {
                ClientError::NotConnected => Err(e),
                _ => Ok(()),
            };
        }
        if let Err(e) = self.check_relay_settings(&mut room).await {
            tracing::warn!(
                "room {}: checking the relay's settings for it failed: {e}",
                room.id
            );
        }
        Ok(())
    }

    async fn publish_key_packages(
        &self,
        count: usize,
        last_resort: bool,
    ) -> Result<(), ClientError> {
        let (packages, resort) = {
            let mut engine = self.engine();
            let made = engine.key_packages(count, last_resort)?;
            engine.persist(self.profile.store(), |_| Ok(()))?;
            made
        };
        let request = Request::PublishKeyPackages {
            packages: packages
                .into_iter()
                .map(serde_bytes::ByteBuf::from)
                .collect(),
            last_resort: resort.map(serde_bytes::ByteBuf::from),
        };
        match self.call(request).await? {
            Response::KeyPackageStock { .. } | Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    pub(crate) async fn top_up_key_packages(&self) -> Result<(), ClientError> {
        match self.call(Request::KeyPackageStock).await? {
            Response::KeyPackageStock {
                available,
                last_resort,
            } => {
                if available < KEY_PACKAGE_LOW || !last_resort {
                    let missing = KEY_PACKAGE_STOCK.saturating_sub(available as usize);
                    self.publish_key_packages(missing, !last_resort).await?;
                }
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }
}

/// How often expired messages are deleted from the history while connected.
pub const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Deletes expired messages every [`PURGE_INTERVAL`] until the client is dropped or
/// closed.
async fn purge_loop(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(PURGE_INTERVAL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = inner.purge_expired(crate::clock::device_now()).await {
            tracing::warn!("deleting expired messages failed: {e}");
        }
    }
}

/// Maps relay errors of a room request to friendlier ones.
pub(crate) fn room_error(room: RoomId, e: ClientError) -> ClientError {
    match e {
        ClientError::Relay(WireError {
            code: hearth_protocol::ErrorCode::UnknownRoom,
            ..
        }) => ClientError::NoSuchRoom(room.into()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Client>();
    }
}
