//! One connection's protocol state: version, challenge, account, subscriptions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature as DalekSignature, VerifyingKey};
use hearth_protocol::auth::auth_message;
use hearth_protocol::limits::{
    MAX_INBOX_FETCH, MAX_KEY_PACKAGES_PER_PUBLISH, MAX_PUBLIC_NAME_LEN, MAX_PUBLIC_ROOMS,
    MAX_READ_ENTRIES, SUPPORTED_VERSIONS,
};
use hearth_protocol::{
    AccountInfo, AccountKey, ClientHello, CloseReason, ErrorCode, Event, Handle, PublicRoomInfo,
    Request, Response, Seq, ServerHello, Signature, WireError,
};
use tokio::sync::oneshot;

use super::hub::SubscriptionHandle;
use super::metrics::Metrics;
use super::outbox::Outbox;
use super::responder::{Responder, ToResponse};
use super::writer::internal;
use super::{unix_now, EndSignal, SessionEntry, Shared, MAX_AUTH_FAILURES};
use crate::store::{AccountRecord, Applied, ListingRecord, OpResult, StoreError, WriteOp};

/// The answer to a request: at once, or after a durable commit.
pub enum Reply {
    /// The answer is ready.
    Ready(Result<Response, WireError>),
    /// The request is queued for the next group commit; await [`PendingReply::wait`].
    Pending(PendingReply),
}

/// A request waiting for its durable commit. Holds no borrow of the session, so a
/// connection can keep many in flight.
pub struct PendingReply {
    /// `None` when the writer queues the answer on the connection instead (see
    /// [`Session::start_as`]).
    waiting: Option<(oneshot::Receiver<OpResult>, ToResponse)>,
}

impl PendingReply {
    /// Waits for the commit and returns the answer.
    pub async fn wait(self) -> Result<Response, WireError> {
        let Some((rx, map)) = self.waiting else {
            // Not reached: `start_as` never hands out an answer queued on its connection.
            return Err(internal());
        };
        match rx.await {
            Ok(Ok(applied)) => Ok(map(applied)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(internal()),
        }
    }
}

/// One connection's view of the relay. Created by [`super::Relay::session`].
pub struct Session {
    shared: Arc<Shared>,
    id: u64,
    peer_ip: IpAddr,
    exporter: [u8; 32],
    challenge: Option<[u8; 32]>,
    account: Option<AccountKey>,
    reauth_deadline: Option<Instant>,
    auth_failures: u32,
    close_reason: Option<CloseReason>,
    limit_logged: bool,
    requests_before_auth: u32,
    outbox: Arc<Outbox>,
    /// Set by [`Session::answer_in_outbox`]: answers to requests that wait for a commit
    /// go straight to the outbox.
    responder: Option<Arc<Responder>>,
    /// The id of the request [`Session::start_as`] is handling.
    request_id: Option<u32>,
    subscriptions: HashMap<hearth_protocol::RoomId, SubscriptionHandle>,
    /// Signalled when the session is ended from outside (a ban, a key rotation, a newer
    /// session of the account taking its place): the connection ends at once.
    ended: Arc<EndSignal>,
    /// When the client was last heard from (see [`Session::heard`]).
    heard: Arc<AtomicU64>,
    /// The packet count and clock reading at the last [`Session::packets_received`].
    packets_seen: (u64, u64),
    /// A connection that never signed in and presented a capability a room takes: a room
    /// connection (decision 0013 part 5), rate-limited by `room_rate`; the room whose
    /// capability made it one.
    room_connection: Option<hearth_protocol::RoomId>,
    /// The request budget of a room connection: (tokens, last refill).
    room_rate: (f64, Instant),
    /// The admission key this connection (one that never signed in) was admitted under
    /// with a token (decision 0016); room requests need it to be still taken.
    admitted: Option<hearth_protocol::AdmissionKey>,
    /// When the relay's admission key changed under an admitted connection: by when it
    /// must be admitted again.
    readmit_deadline: Option<Instant>,
    /// Admitted under the key before the relay's current one: it is to be told the
    /// current one ([`Self::readmit_notice`]).
    readmit_notice: bool,
}

/// Rooms one room connection may subscribe to at once: one room, or a small group of
/// them (decision 0013 part 5). Hits only a client that puts more rooms on one
/// connection; hearth's own opens one per room.
pub const MAX_ROOMS_PER_ROOM_CONNECTION: usize = 4;

/// Requests one connection may make before it authenticates (hello excluded): enough for
/// a ping, a registration or authentication, and a few retries. The next is refused with
/// `RateLimited` and the connection closed. Hits only that connection.
pub const MAX_REQUESTS_BEFORE_AUTH: u32 = 16;

fn err(code: ErrorCode, message: &str) -> WireError {
    WireError::new(code, message)
}

/// A room's retention: at least [`MIN_ROOM_RETENTION_SECS`]. A longer one than the
/// relay's is allowed but never keeps anything longer than the relay's (the sweep takes
/// the smaller).
fn check_retention(retention_secs: Option<u64>) -> Result<(), WireError> {
    match retention_secs {
        Some(secs) if secs < hearth_protocol::limits::MIN_ROOM_RETENTION_SECS => Err(err(
            ErrorCode::BadRequest,
            &format!(
                "a room keeps its entries at least {} s",
                hearth_protocol::limits::MIN_ROOM_RETENTION_SECS
            ),
        )),
        _ => Ok(()),
    }
}

fn store_failed(e: StoreError) -> WireError {
    tracing::error!(error = %e, "store read failed");
    internal()
}

/// Payload bytes per response, so every frame stays under the hard frame limit.
const RESPONSE_BYTES: usize = hearth_protocol::limits::MAX_FRAME_LEN / 2;

/// Keeps the longest prefix of `items` whose payloads fit in [`RESPONSE_BYTES`] (at least
/// one item, which always fits: envelopes are far smaller than a frame).
fn fit<T>(mut items: Vec<T>, len: impl Fn(&T) -> usize) -> Vec<T> {
    let mut total = 0;
    let keep = items
        .iter()
        .position(|item| {
            total += len(item) + 32;
            total > RESPONSE_BYTES
        })
        .unwrap_or(items.len())
        .max(1);
    items.truncate(keep);
    items
}

fn random_challenge() -> [u8; 32] {
    let mut challenge = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut challenge);
    challenge
}

/// An account as the directory shows it, with its chain of key rotations.
fn info(
    store: &dyn crate::store::Store,
    record: &AccountRecord,
) -> Result<AccountInfo, crate::store::StoreError> {
    Ok(AccountInfo {
        handle: record.handle.clone(),
        account: record.account,
        created: record.created,
        rotations: store.rotations(&record.handle)?,
    })
}

fn verify(
    challenge: &[u8; 32],
    exporter: &[u8; 32],
    account: &AccountKey,
    sig: &Signature,
) -> bool {
    verify_signed(account, &auth_message(challenge, exporter, account), sig)
}

/// Whether `sig` is `account`'s Ed25519 signature over `message` (strict verification:
/// weak keys and non-canonical signatures are refused).
fn verify_signed(account: &AccountKey, message: &[u8], sig: &Signature) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&account.0) else {
        return false;
    };
    key.verify_strict(message, &DalekSignature::from_bytes(&sig.0))
        .is_ok()
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, id: u64, peer_ip: IpAddr, exporter: [u8; 32]) -> Self {
        let outbox = Outbox::new(
            shared.config.max_queued_bytes_per_connection,
            shared.metrics.clone(),
        );
        Self {
            shared,
            id,
            peer_ip,
            exporter,
            challenge: None,
            account: None,
            reauth_deadline: None,
            auth_failures: 0,
            close_reason: None,
            limit_logged: false,
            requests_before_auth: 0,
            outbox,
            responder: None,
            request_id: None,
            subscriptions: HashMap::new(),
            ended: Arc::new(EndSignal::default()),
            heard: Arc::new(AtomicU64::new(0)),
            packets_seen: (0, 0),
            room_connection: None,
            room_rate: (0.0, Instant::now()),
            admitted: None,
            readmit_deadline: None,
            readmit_notice: false,
        }
    }

    /// The relay's admission key became `key` (an account was banned, decision 0016). A
    /// connection admitted under another key must be admitted again by the grace period's
    /// end: returns the event that tells it so, and sets [`Self::readmit_deadline`].
    pub fn admission_key_changed(&mut self, key: hearth_protocol::AdmissionKey) -> Option<Event> {
        match self.admitted {
            Some(admitted) if admitted != key && self.account.is_none() => {
                if self.readmit_deadline.is_none() {
                    self.readmit_deadline = Some(
                        Instant::now()
                            + std::time::Duration::from_secs(
                                self.shared.config.reauth_grace_secs.max(1),
                            ),
                    );
                }
                Some(Event::Readmit { key })
            }
            _ => None,
        }
    }

    /// The event telling a connection just admitted with a token of the key before the
    /// relay's current one (a ban landed between its `AdmissionKey` and its `Admit`) to
    /// be admitted again under the current one; once.
    pub fn readmit_notice(&mut self) -> Option<Event> {
        std::mem::take(&mut self.readmit_notice).then(|| Event::Readmit {
            key: self.shared.admission.current(),
        })
    }

    /// By when this connection must be admitted again, if the relay's key changed under
    /// it.
    pub fn readmit_deadline(&self) -> Option<Instant> {
        self.readmit_deadline
    }

    /// [`Request::Admit`] on a connection that never signed in.
    fn admit(
        &mut self,
        key: hearth_protocol::AdmissionKey,
        token: &hearth_protocol::AdmissionToken,
    ) -> Result<Response, WireError> {
        if self.account.is_some() {
            return Err(err(
                ErrorCode::BadRequest,
                "a signed-in connection needs no admission",
            ));
        }
        let now = Instant::now();
        match self.shared.admission.admit(&key, token, now) {
            Ok(until) => {
                Metrics::bump(&self.shared.metrics.admitted);
                self.admitted = Some(key);
                // A token of the key before the relay's current one admits until its
                // grace period ends, and no longer, even on a connection opened after
                // the change (which was never told of it).
                self.readmit_deadline = until;
                // Its driver saw the key change before this connection was admitted, so
                // it never told it: without a word it would be closed at the deadline.
                self.readmit_notice = until.is_some();
                Ok(Response::Done)
            }
            Err(e) => {
                Metrics::bump(&self.shared.metrics.auth_failures);
                self.auth_failures += 1;
                tracing::info!(peer = %self.peer_ip, "admission token refused");
                self.shared
                    .audit("admission-refused", Some(self.peer_ip), None, &e.message);
                // Like refused sign-ins: a connection that keeps presenting tokens that do
                // not check out is closed (it is guessing, or it is a banned member's).
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.close_reason = Some(CloseReason::AuthFailures);
                }
                Err(e)
            }
        }
    }

    /// Whether this connection may send room requests without signing in: admitted under
    /// a key the relay still takes.
    fn is_admitted(&self, now: Instant) -> bool {
        self.admitted
            .is_some_and(|key| self.shared.admission.still_admits(&key, now))
    }

    /// Whether this connection never signed in and carries a room's requests, authorised
    /// by its capability (decision 0013 part 5).
    pub fn is_room_connection(&self) -> bool {
        self.room_connection.is_some()
    }

    /// The room whose capability made this a room connection, if it is one.
    pub fn room_connection_room(&self) -> Option<hearth_protocol::RoomId> {
        self.room_connection
    }

    /// Whether this connection follows any room now. A subscription the relay ended (its
    /// epoch ended: the member was removed, or its commit was undone) follows nothing, so
    /// a room connection left with only those is idle like one that never subscribed.
    pub fn subscribes(&mut self) -> bool {
        self.forget_ended_subscriptions();
        !self.subscriptions.is_empty()
    }

    /// Drops the subscriptions whose task is over (ended by the relay, see
    /// [`super::hub`]): they deliver nothing more.
    fn forget_ended_subscriptions(&mut self) {
        let ended: Vec<_> = self
            .subscriptions
            .iter()
            .filter(|(_, handle)| handle.task.is_finished())
            .map(|(room, _)| *room)
            .collect();
        for room in ended {
            self.unsubscribe(&room);
        }
    }

    /// Negotiates the version and issues a fresh challenge.
    pub fn hello(&mut self, hello: &ClientHello) -> ServerHello {
        match hello
            .versions
            .iter()
            .find(|v| SUPPORTED_VERSIONS.contains(v))
        {
            Some(&version) => {
                let challenge = random_challenge();
                self.challenge = Some(challenge);
                ServerHello::Accepted { version, challenge }
            }
            None => {
                let theirs: Vec<u16> = hello.versions.iter().take(16).copied().collect();
                self.close_reason = Some(CloseReason::Version);
                ServerHello::Rejected {
                    supported: SUPPORTED_VERSIONS.to_vec(),
                    message: format!(
                        "client speaks versions {theirs:?}, this relay speaks {SUPPORTED_VERSIONS:?}: update the older side"
                    ),
                }
            }
        }
    }

    /// The authenticated account, if any.
    pub fn account(&self) -> Option<AccountKey> {
        self.account
    }

    /// What the relay pushes to this connection (room entries, subscription ends, inbox
    /// arrivals): take events with [`Outbox::recv`]. Bounded in bytes (see
    /// [`super::outbox`]).
    pub fn events(&self) -> &Outbox {
        &self.outbox
    }

    /// The connection's outgoing queue, for a driver that writes it on a task of its own
    /// and queues its responses there too.
    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    /// Signalled when the relay ends this session from outside (the account was banned,
    /// its key rotated, or a newer session took its place): the connection should close at
    /// once, with the signal's reason.
    pub fn ended(&self) -> Arc<EndSignal> {
        self.ended.clone()
    }

    /// Records that the client was heard from just now (a frame, or any packet: the
    /// driver looks at its connection's counters). When the account is at its session
    /// limit, the session heard from least recently makes room for a new one.
    pub fn heard(&self) {
        self.heard
            .fetch_max(self.shared.heard_clock(), Ordering::Relaxed);
    }

    /// The driver's periodic look at how many packets the connection has received in
    /// all (`total`; keep-alives count). If any arrived since the last look, the client
    /// counts as heard from at the last look: the latest time it surely is not later than,
    /// so a client that went silent never ranks after one heard from since.
    pub fn packets_received(&mut self, total: u64) {
        let now = self.shared.heard_clock();
        let (seen, at) = self.packets_seen;
        if total != seen {
            self.heard.fetch_max(at, Ordering::Relaxed);
        }
        self.packets_seen = (total, now);
    }

    /// Starts a re-authentication round: a new challenge the client must sign within the
    /// relay's grace period. Returns the event to push.
    pub fn reauthenticate(&mut self) -> Event {
        let challenge = random_challenge();
        self.challenge = Some(challenge);
        self.reauth_deadline =
            Some(Instant::now() + Duration::from_secs(self.shared.config.reauth_grace_secs));
        Event::Reauthenticate { challenge }
    }

    /// When the pending re-authentication must be answered by, if one is pending.
    pub fn reauth_deadline(&self) -> Option<Instant> {
        self.reauth_deadline
    }

    /// Why the connection should be closed now, if it should (banned, rejected version,
    /// repeated authentication failures, too many requests before authenticating).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// Handles one request to the end, waiting for a durable commit when needed.
    pub async fn handle(&mut self, request: Request) -> Result<Response, WireError> {
        match self.start(request).await {
            Reply::Ready(result) => result,
            Reply::Pending(pending) => pending.wait().await,
        }
    }

    /// From now on, a request started with [`Session::start_as`] that waits for a
    /// durable commit is answered by the writer, which queues the response on this
    /// session's outbox right after the commit (the QUIC driver: no task and no wake-up
    /// of the connection per request; see [`super::responder`]). Returns what the
    /// connection watches: how many wait, and whether an answer did not fit.
    pub fn answer_in_outbox(&mut self) -> Arc<Responder> {
        let responder = Responder::new(self.outbox.clone());
        self.responder = Some(responder.clone());
        responder
    }

    /// Handles the request with frame id `id`: `Some` answer now, or `None` when it waits
    /// for a commit and the writer will queue its response on the outbox (after
    /// [`Session::answer_in_outbox`]; before it, such a request is waited for here).
    pub async fn start_as(
        &mut self,
        id: u32,
        request: Request,
    ) -> Option<Result<Response, WireError>> {
        self.request_id = Some(id);
        let reply = self.start(request).await;
        self.request_id = None;
        match reply {
            Reply::Ready(result) => Some(result),
            Reply::Pending(PendingReply { waiting: None }) => None,
            Reply::Pending(pending) => Some(pending.wait().await),
        }
    }

    /// Handles one request up to the point where it waits for a commit. Writes are queued
    /// in call order, so a connection may pipeline requests and keep their order.
    pub async fn start(&mut self, request: Request) -> Reply {
        self.log_room_request(&request);
        if self.account.is_none() && self.room_connection.is_none() {
            self.requests_before_auth += 1;
            if self.requests_before_auth > MAX_REQUESTS_BEFORE_AUTH {
                return Reply::Ready(Err(self.refuse_before_auth()));
            }
        }
        match request {
            Request::Ping => return Reply::Ready(Ok(Response::Pong)),
            Request::Register { .. } | Request::Auth { .. } if self.room_connection.is_some() => {
                // Signing in would tie the room to the account, the link this
                // connection exists to avoid.
                return Reply::Ready(Err(err(
                    ErrorCode::BadRequest,
                    "a room connection does not sign in: open another connection",
                )));
            }
            Request::Register {
                invite,
                handle,
                account,
                signature,
            } => return Reply::Ready(self.register(invite, handle, account, signature).await),
            Request::Auth { account, signature } => {
                return Reply::Ready(self.auth(account, signature).await)
            }
            Request::AdmissionKey => {
                return Reply::Ready(Ok(Response::AdmissionKey(self.shared.admission.current())))
            }
            Request::Admit { key, token } => {
                // A room connection is no longer counted as one that has not signed in:
                // its own rate bounds how often it makes the relay evaluate a token.
                if self.room_connection.is_some() && !self.room_allow(Instant::now()) {
                    return Reply::Ready(Err(err(
                        ErrorCode::RateLimited,
                        "too many requests; slow down",
                    )));
                }
                return Reply::Ready(self.admit(key, &token));
            }
            _ => {}
        }
        let Some(account) = self.account else {
            if request.capability_room().is_some() {
                return self.anonymous(request).await;
            }
            return Reply::Ready(Err(err(
                ErrorCode::Unauthenticated,
                "authenticate first (only register, auth, ping and a room's own requests with its capability are allowed before)",
            )));
        };
        if !self.shared.rate.allow(&account, Instant::now()) {
            Metrics::bump(&self.shared.metrics.rate_limited);
            if !self.limit_logged {
                self.limit_logged = true;
                tracing::warn!(account = %account.short(), "rate limit hit");
                tracing::debug!(peer = %self.peer_ip, account = %account.short(), "rate limit hit");
                self.shared.audit(
                    "rate-limited",
                    Some(self.peer_ip),
                    Some(&account),
                    "request rate",
                );
            }
            return Reply::Ready(Err(err(
                ErrorCode::RateLimited,
                "too many requests; slow down",
            )));
        }
        let reply = self.authenticated(account, request).await;
        if let Reply::Ready(Err(e)) = &reply {
            self.count_refusal(Some(&account), e);
        }
        reply
    }

    /// A room request on a connection that never signed in (decision 0013 part 5): the
    /// room's capability decides, as it does on a signed-in connection. The first
    /// capability a room takes makes this a room connection: it leaves the pool of
    /// connections that have not authenticated (the driver moves it to the room
    /// connections of its address) and is rate-limited on its own. A wrong capability
    /// gets the store's refusal and counts towards [`MAX_REQUESTS_BEFORE_AUTH`].
    async fn anonymous(&mut self, request: Request) -> Reply {
        if !self.is_admitted(Instant::now()) {
            return Reply::Ready(Err(err(
                ErrorCode::NotAdmitted,
                "admit this connection with a token first (AdmissionKey, then Admit), or sign in",
            )));
        }
        if self.room_connection.is_some() && !self.room_allow(Instant::now()) {
            Metrics::bump(&self.shared.metrics.rate_limited);
            if !self.limit_logged {
                self.limit_logged = true;
                tracing::warn!(peer = %self.peer_ip, "room connection over its request rate");
                self.shared.audit(
                    "rate-limited",
                    Some(self.peer_ip),
                    None,
                    "request rate of a room connection",
                );
            }
            return Reply::Ready(Err(err(
                ErrorCode::RateLimited,
                "too many requests; slow down",
            )));
        }
        if let (Request::Subscribe { room, .. }, true) = (&request, self.is_room_connection()) {
            self.forget_ended_subscriptions();
            if !self.subscriptions.contains_key(room)
                && self.subscriptions.len() >= MAX_ROOMS_PER_ROOM_CONNECTION
            {
                return Reply::Ready(Err(WireError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "a room connection follows at most {MAX_ROOMS_PER_ROOM_CONNECTION} rooms: open another"
                    ),
                )));
            }
        }
        if self.room_connection.is_none() {
            if let Some((room, cap)) = presented_cap(&request) {
                match self.shared.store.access(&room, &cap.hash()) {
                    Ok(Some((_, Ok(_)))) => {
                        self.room_connection = Some(room);
                        self.room_rate = (
                            f64::from(self.shared.config.rate_burst.max(1)),
                            Instant::now(),
                        );
                    }
                    Ok(Some((_, Err(e)))) => return Reply::Ready(Err(e)),
                    Ok(None) => return Reply::Ready(Err(crate::store::unknown_room())),
                    Err(e) => return Reply::Ready(Err(store_failed(e))),
                }
            }
        }
        let reply = self.room_request(None, request).await;
        if let Reply::Ready(Err(e)) = &reply {
            self.count_refusal(None, e);
        }
        reply
    }

    /// Takes one token from this room connection's bucket (the relay's per-account rate
    /// and burst, per connection); `false` when it is empty.
    fn room_allow(&mut self, now: Instant) -> bool {
        let config = &self.shared.config;
        let (tokens, updated) = self.room_rate;
        let elapsed = now.saturating_duration_since(updated).as_secs_f64();
        let tokens = (tokens + elapsed * config.rate_per_second.max(0.0))
            .min(f64::from(config.rate_burst.max(1)));
        if tokens < 1.0 {
            self.room_rate = (tokens, now);
            return false;
        }
        self.room_rate = (tokens - 1.0, now);
        true
    }

    /// At `debug` only: which connection asked what of which room, signed in or not. The
    /// relay's own view of who reads and writes where, for an owner chasing a problem and
    /// for the test that room traffic never travels on a signed-in connection
    /// (`tests/tests/integration/what_the_relay_knows.rs`); never at `info` (decision 0013).
    fn log_room_request(&self, request: &Request) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        if let Some((room, kind)) = named_room(request) {
            let account = self.account.map(|a| a.short().to_string());
            tracing::debug!(
                session = self.id,
                account = account.as_deref().unwrap_or("-"),
                room = %room,
                request = kind,
                "room request"
            );
        }
    }

    fn count_refusal(&mut self, account: Option<&AccountKey>, e: &WireError) {
        let (counter, kind) = match e.code {
            ErrorCode::TooLarge => (&self.shared.metrics.too_large, "too-large"),
            ErrorCode::QuotaExceeded => (&self.shared.metrics.quota_exceeded, "quota-exceeded"),
            _ => return,
        };
        Metrics::bump(counter);
        match account {
            Some(account) => {
                tracing::warn!(account = %account.short(), refused = kind, "limit hit");
                tracing::debug!(peer = %self.peer_ip, account = %account.short(), refused = kind, "limit hit");
            }
            None => {
                tracing::warn!(peer = %self.peer_ip, refused = kind, "limit hit on a room connection")
            }
        }
        self.shared
            .audit(kind, Some(self.peer_ip), account, &e.message);
    }

    fn too_large(&self, len: usize) -> Option<WireError> {
        let max = self.shared.config.max_envelope_bytes;
        (len > max).then(|| {
            WireError::new(
                ErrorCode::TooLarge,
                format!("payload of {len} bytes exceeds the relay's limit of {max} bytes"),
            )
        })
    }

    async fn pending(
        &self,
        op: WriteOp,
        map: impl FnOnce(Applied) -> Response + Send + 'static,
    ) -> Reply {
        if let (Some(id), Some(responder)) = (self.request_id, &self.responder) {
            let answer = responder.wait_for(id, Box::new(map));
            self.shared.writer.enqueue_answered(op, answer).await;
            return Reply::Pending(PendingReply { waiting: None });
        }
        let rx = self.shared.writer.enqueue(op).await;
        Reply::Pending(PendingReply {
            waiting: Some((rx, Box::new(map))),
        })
    }

    fn fail_auth(
        &mut self,
        account: Option<&AccountKey>,
        e: WireError,
    ) -> Result<Response, WireError> {
        Metrics::bump(&self.shared.metrics.auth_failures);
        self.auth_failures += 1;
        tracing::warn!(peer = %self.peer_ip, code = ?e.code, "authentication refused");
        tracing::debug!(peer = %self.peer_ip, account = ?account.map(|a| a.short()), code = ?e.code, "authentication refused");
        let kind = match e.code {
            ErrorCode::InviteInvalid | ErrorCode::InviteExpired | ErrorCode::InviteSpent => {
                "invite-misuse"
            }
            _ => "auth-failed",
        };
        self.shared
            .audit(kind, Some(self.peer_ip), account, &format!("{:?}", e.code));
        if self
            .shared
            .auth_failed(self.peer_ip, account, Instant::now())
        {
            self.close_reason = Some(CloseReason::AuthFailures);
        }
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.close_reason = Some(CloseReason::AuthFailures);
        }
        if e.code == ErrorCode::Banned {
            self.close_reason = Some(CloseReason::Banned);
        }
        Err(e)
    }

    fn check_signature(
        &self,
        account: &AccountKey,
        signature: &Signature,
    ) -> Result<(), WireError> {
        let Some(challenge) = &self.challenge else {
            return Err(err(ErrorCode::AuthFailed, "no challenge: say hello first"));
        };
        if verify(challenge, &self.exporter, account, signature) {
            Ok(())
        } else {
            Err(err(ErrorCode::AuthFailed, "the signature does not verify"))
        }
    }

    /// Counts, logs and audits a connection that asked too much before authenticating, and
    /// closes it after the answer.
    fn refuse_before_auth(&mut self) -> WireError {
        Metrics::bump(&self.shared.metrics.preauth_refused);
        tracing::warn!(peer = %self.peer_ip, "too many requests before authenticating; closing");
        self.shared.audit(
            "preauth-limit",
            Some(self.peer_ip),
            None,
            &format!("more than {MAX_REQUESTS_BEFORE_AUTH} requests before authenticating"),
        );
        self.close_reason = Some(CloseReason::PreauthLimit);
        WireError::new(
            ErrorCode::RateLimited,
            format!(
                "the relay answers at most {MAX_REQUESTS_BEFORE_AUTH} requests before authentication: \
                 authenticate (or register) first"
            ),
        )
    }

    /// Counts, logs and audits a session of `account` ended to make room for this one
    /// (the account had `max` open).
    fn replaced_one(&self, account: &AccountKey, max: usize) {
        Metrics::bump(&self.shared.metrics.sessions_refused);
        tracing::info!(account = %account.short(), max, "session limit reached: the session heard from least recently makes room");
        tracing::debug!(peer = %self.peer_ip, account = %account.short(), "session limit reached");
        self.shared.audit(
            "session-limit",
            Some(self.peer_ip),
            Some(account),
            &format!("{max} connections open: the one heard from least recently was closed for a newer one"),
        );
    }

    /// Makes this connection `record`'s session. If the account has
    /// [`crate::config::RelayConfig::max_sessions_per_account`] open already, the one
    /// heard from least recently is closed to make room (see [`super::Notifier::register`]).
    fn authenticated_as(&mut self, record: &AccountRecord) {
        // A challenge signs in once; re-authentication gets a new one.
        self.challenge = None;
        self.reauth_deadline = None;
        if self.account != Some(record.account) {
            let max = self.shared.config.max_sessions_per_account;
            self.heard();
            self.packets_seen.1 = self.heard.load(Ordering::Relaxed);
            let entry = SessionEntry {
                id: self.id,
                outbox: self.outbox.clone(),
                end: self.ended.clone(),
                heard: self.heard.clone(),
            };
            if self
                .shared
                .notifier
                .register(record.account, entry, max)
                .is_some()
            {
                self.replaced_one(&record.account, max);
            }
            self.account = Some(record.account);
            self.shared.auth_succeeded(self.peer_ip, Instant::now());
            // A ban (or a key rotation) that landed between this authentication and the
            // registration above found no session to close: look once more, now that it
            // would find it.
            match self.shared.store.account(&record.account) {
                Ok(Some(now)) if now.banned => self.ended.end(CloseReason::Banned),
                Ok(None) => self.ended.end(CloseReason::KeyRotated),
                _ => {}
            }
        }
    }

    async fn register(
        &mut self,
        invite: Option<hearth_protocol::InviteToken>,
        handle: Handle,
        account: AccountKey,
        signature: Signature,
    ) -> Result<Response, WireError> {
        if self.account.is_some() {
            return Err(err(
                ErrorCode::BadRequest,
                "this connection is already authenticated",
            ));
        }
        if let Err(e) = self.check_signature(&account, &signature) {
            return self.fail_auth(Some(&account), e);
        }
        let op = WriteOp::Register {
            account,
            handle,
            invite: invite.map(|t| t.hash()),
            open: self.shared.config.open_registration,
            now: unix_now(),
        };
        match self.shared.writer.submit(op).await {
            Ok(Applied::Account(record)) => {
                tracing::info!(account = %account.short(), handle = %record.handle, "registered");
                tracing::debug!(peer = %self.peer_ip, account = %account.short(), "registered");
                self.authenticated_as(&record);
                self.shared
                    .notifier
                    .account_registered(&record.handle, &record.account);
                Ok(Response::Authenticated {
                    handle: record.handle,
                    now: unix_now(),
                })
            }
            Ok(_) => Err(internal()),
            Err(e) if e.code == ErrorCode::Internal => Err(e),
            Err(e) => self.fail_auth(Some(&account), e),
        }
    }

    async fn auth(
        &mut self,
        account: AccountKey,
        signature: Signature,
    ) -> Result<Response, WireError> {
        if self.account.is_some_and(|a| a != account) {
            let e = err(
                ErrorCode::AuthFailed,
                "this connection is authenticated as another account",
            );
            return self.fail_auth(Some(&account), e);
        }
        if let Err(e) = self.check_signature(&account, &signature) {
            return self.fail_auth(Some(&account), e);
        }
        let op = WriteOp::Authenticate {
            account,
            now: unix_now(),
        };
        match self.shared.writer.submit(op).await {
            Ok(Applied::Account(record)) => {
                self.authenticated_as(&record);
                Ok(Response::Authenticated {
                    handle: record.handle,
                    now: unix_now(),
                })
            }
            Ok(_) => Err(internal()),
            Err(e) if e.code == ErrorCode::Internal => Err(e),
            Err(e) => self.fail_auth(Some(&account), e),
        }
    }

    /// `FetchKeyPackage`: the package this account was handed for `handle` on another
    /// connection since its last commit, again (an invitation that was killed and is
    /// retried), or a new one, counted against the fetch limits (see
    /// [`super::key_package_fetches`]).
    async fn fetch_key_package(&self, account: AccountKey, handle: Handle) -> Reply {
        let fetches = &self.shared.key_package_fetches;
        let now = Instant::now();
        if let Some((target, package)) = fetches.again(account, &handle, self.id, now) {
            let same_key = matches!(
                self.shared.store.account_by_handle(&handle),
                Ok(Some(record)) if record.account == target
            );
            if same_key && !crate::key_packages::is_expired(&package) {
                tracing::debug!(account = %account.short(), target = %handle, "key package handed out again");
                return Reply::Ready(Ok(Response::KeyPackage {
                    account: target,
                    package,
                }));
            }
            fetches.forget(&account, &handle);
        }
        if !fetches.allow(account, &handle, now) {
            self.shared.audit(
                "key-package-limit",
                Some(self.peer_ip),
                Some(&account),
                // Not whose: who fetches whose packages is kept in memory only
                // (decision 0013, part 4).
                "fetches of one account's key packages",
            );
            return Reply::Ready(Err(err(
                ErrorCode::RateLimited,
                &format!("too many of {handle}'s key packages taken recently: try again in a few minutes"),
            )));
        }
        let shared = self.shared.clone();
        let session = self.id;
        let op = WriteOp::TakeKeyPackage {
            handle: handle.clone(),
        };
        self.pending(op, move |applied| match applied {
            Applied::KeyPackage {
                account: target,
                package,
                last_resort,
            } => {
                // The last-resort package is handed out again anyway (until replaced).
                if !last_resort {
                    shared.key_package_fetches.lend(
                        account,
                        &handle,
                        session,
                        target,
                        &package,
                        Instant::now(),
                    );
                }
                Response::KeyPackage {
                    account: target,
                    package,
                }
            }
            _ => Response::Done,
        })
        .await
    }

    async fn authenticated(&mut self, account: AccountKey, request: Request) -> Reply {
        let store = self.shared.store.clone();
        let quota = self.shared.config.quota_bytes_per_account;
        let now = unix_now();
        match request {
            Request::Ping | Request::Register { .. } | Request::Auth { .. } => {
                Reply::Ready(Err(err(ErrorCode::BadRequest, "unexpected request")))
            }
            Request::PublishKeyPackages {
                packages,
                last_resort,
            } => {
                if packages.len() > MAX_KEY_PACKAGES_PER_PUBLISH {
                    return Reply::Ready(Err(WireError::new(
                        ErrorCode::TooLarge,
                        format!("at most {MAX_KEY_PACKAGES_PER_PUBLISH} KeyPackages per publish"),
                    )));
                }
                let largest = packages
                    .iter()
                    .chain(last_resort.iter())
                    .map(|p| p.len())
                    .max()
                    .unwrap_or(0);
                if let Some(e) = self.too_large(largest) {
                    return Reply::Ready(Err(e));
                }
                if let Err(e) = self
                    .check_key_packages(&store, account, &packages, last_resort.as_ref())
                    .await
                {
                    return Reply::Ready(Err(e));
                }
                let op = WriteOp::PublishKeyPackages {
                    account,
                    packages: packages.into_iter().map(|p| p.into_vec()).collect(),
                    last_resort: last_resort.map(|p| p.into_vec()),
                    quota,
                    max_stock: self.shared.config.max_key_packages_per_account,
                };
                self.pending(op, |applied| match applied {
                    Applied::Stock {
                        available,
                        last_resort,
                    } => Response::KeyPackageStock {
                        available,
                        last_resort,
                    },
                    _ => Response::Done,
                })
                .await
            }
            Request::KeyPackageStock => Reply::Ready(
                store
                    .key_package_stock(&account)
                    .map(|(available, last_resort)| Response::KeyPackageStock {
                        available,
                        last_resort,
                    })
                    .map_err(store_failed),
            ),
            Request::FetchKeyPackage { handle } => self.fetch_key_package(account, handle).await,
            Request::LookupAccount { handle } => {
                Reply::Ready(match store.account_by_handle(&handle) {
                    Ok(Some(record)) => info(&*store, &record)
                        .map(Response::Account)
                        .map_err(store_failed),
                    Ok(None) => Err(err(ErrorCode::UnknownAccount, "no such account")),
                    Err(e) => Err(store_failed(e)),
                })
            }
            Request::ListAccounts => Reply::Ready(
                store
                    .accounts()
                    .and_then(|list| list.iter().map(|r| info(&*store, r)).collect())
                    .map(Response::Accounts)
                    .map_err(store_failed),
            ),
            Request::Deposit { to, payload } => {
                // Most likely the Welcome of an Add whose commit went on a room
                // connection, where the relay does not see who commits: it may carry a
                // package this account fetched, so none is handed out again (see
                // `key_package_fetches`). Before the checks: a Welcome refused here is
                // still owed and sent again later.
                self.shared.key_package_fetches.committed(&account);
                if let Some(e) = self.too_large(payload.len()) {
                    return Reply::Ready(Err(e));
                }
                if !self.shared.deposits.allow(&account, Instant::now()) {
                    return Reply::Ready(Err(err(
                        ErrorCode::RateLimited,
                        "too many invitations sent in a short time; wait a minute and retry",
                    )));
                }
                let op = WriteOp::Deposit {
                    to,
                    payload,
                    now,
                    inbox_quota: self.shared.config.inbox_bytes_per_account,
                };
                self.pending(op, |_| Response::Done).await
            }
            Request::FetchInbox { after, limit } => Reply::Ready(
                off_workers(move || {
                    store
                        .inbox_within(&account, after, limit.min(MAX_INBOX_FETCH), RESPONSE_BYTES)
                        .map(|entries| Response::Inbox(fit(entries, |e| e.payload.len())))
                        .map_err(store_failed)
                })
                .await,
            ),
            Request::AckInbox { ids } => {
                if ids.len() > MAX_INBOX_FETCH as usize * 4 {
                    return Reply::Ready(Err(err(
                        ErrorCode::BadRequest,
                        "too many ids in one ack",
                    )));
                }
                self.pending(WriteOp::AckInbox { account, ids }, |_| Response::Done)
                    .await
            }
            Request::CreateRoom {
                room,
                cap_hash,
                retention_secs,
                admin,
            } => {
                if let Err(e) = check_retention(retention_secs) {
                    return Reply::Ready(Err(e));
                }
                let op = WriteOp::CreateRoom {
                    room,
                    cap_hash,
                    retention_secs,
                    now,
                    creator: account,
                    admin,
                    quota,
                    max_rooms: self.shared.config.max_rooms_per_account,
                };
                self.pending(op, |_| Response::Done).await
            }
            Request::Append { .. }
            | Request::Read { .. }
            | Request::Subscribe { .. }
            | Request::Unsubscribe { .. }
            | Request::RoomStatus { .. }
            | Request::PutBlob { .. }
            | Request::BlobStatus { .. }
            | Request::GetBlob { .. }
            | Request::Commit { .. }
            | Request::SetRetention { .. }
            | Request::UnpublishRoom { .. }
            | Request::SetRoomAdmins { .. }
            | Request::RevertCommit { .. } => self.room_request(Some(account), request).await,
            Request::PublishRoom {
                room,
                cap,
                public_name,
                group_info,
                epoch,
                proof,
            } => {
                if let Err(e) = check_public_name(&public_name) {
                    return Reply::Ready(Err(e));
                }
                if let Some(e) = self.too_large(group_info.len()) {
                    return Reply::Ready(Err(e));
                }
                let action = hearth_protocol::AdminAction::Publish {
                    public_name: public_name.clone(),
                    epoch,
                };
                let admin =
                    match super::admin_proof::signer(&room, &cap.hash(), proof.as_ref(), &action) {
                        Ok(admin) => admin,
                        Err(e) => return Reply::Ready(Err(e)),
                    };
                // A member who is not an admin may only refresh the listing after a commit
                // (the store checks the capability and the name): the GroupInfo must then
                // be of this room's group, since joiners build on it. (Its epoch is not
                // compared: members refuse, and an admin undoes, a join built on a stale
                // one; decision 0009.)
                let refresh = match (store.room_admins(&room), store.access(&room, &cap.hash())) {
                    (Ok(admins), Ok(Some((_, Ok(crate::store::Access::Current))))) => {
                        !admin.is_some_and(|a| admins.contains(&a))
                    }
                    (Err(e), _) | (_, Err(e)) => return Reply::Ready(Err(store_failed(e))),
                    _ => false, // refused by the store with the right error
                };
                if refresh {
                    let bytes = group_info.clone();
                    let checked = tokio::task::spawn_blocking(move || {
                        crate::external_join::public_group(&bytes)
                            .map(|group| group.group_id().as_slice() == room.0.as_slice())
                    })
                    .await;
                    match checked {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => {
                            return Reply::Ready(Err(err(
                                ErrorCode::BadRequest,
                                "the GroupInfo is not of this room",
                            )))
                        }
                        Ok(Err(e)) => {
                            return Reply::Ready(Err(err(ErrorCode::BadRequest, &e.to_string())))
                        }
                        Err(_) => return Reply::Ready(Err(internal())),
                    }
                }
                // A new listing, or a new name, counts against this account in memory
                // only (the store names nobody with a listing); a refresh does not.
                let renames = match store.listing(&room) {
                    Ok(old) => old.is_none_or(|(old, _)| old.public_name != public_name),
                    Err(e) => return Reply::Ready(Err(store_failed(e))),
                };
                if renames && !refresh && !self.shared.listings.allow(&account, Instant::now()) {
                    return Reply::Ready(Err(err(
                        ErrorCode::RateLimited,
                        &format!(
                            "this account listed {} rooms in the public directory today, the \
                             most the relay allows (max_public_rooms_per_account): try again \
                             tomorrow",
                            self.shared.config.max_public_rooms_per_account
                        ),
                    )));
                }
                let op = WriteOp::PublishRoom {
                    room,
                    cap_hash: cap.hash(),
                    listing: ListingRecord {
                        public_name,
                        group_info,
                        epoch,
                        published: now,
                    },
                    admin,
                    room_quota: self.shared.config.quota_bytes_per_room,
                    max_listings: self.shared.config.max_public_rooms,
                };
                self.pending(op, |_| Response::Done).await
            }
            Request::ListPublicRooms => Reply::Ready(
                store
                    .listings(MAX_PUBLIC_ROOMS)
                    .map(|list| {
                        Response::PublicRooms(
                            list.into_iter()
                                .map(|(room, l)| PublicRoomInfo {
                                    room,
                                    public_name: l.public_name,
                                    epoch: l.epoch,
                                    published: l.published,
                                })
                                .collect(),
                        )
                    })
                    .map_err(store_failed),
            ),
            Request::FetchGroupInfo { room } => Reply::Ready(match store.listing(&room) {
                Ok(Some((listing, current))) if listing.epoch == current => {
                    Ok(Response::GroupInfo {
                        group_info: listing.group_info,
                        epoch: listing.epoch,
                    })
                }
                Ok(Some(_)) => Err(crate::store::stale_listing()),
                Ok(None) => Err(crate::store::not_listed()),
                Err(e) => Err(store_failed(e)),
            }),
            Request::JoinPublic {
                room,
                epoch,
                next_cap_hash,
                payload,
            } => {
                if let Some(e) = self.too_large(payload.len()) {
                    return Reply::Ready(Err(e));
                }
                if let Err(e) = self
                    .check_join(&store, room, epoch, account, &payload)
                    .await
                {
                    return Reply::Ready(Err(e));
                }
                let op = WriteOp::JoinPublic {
                    room,
                    epoch,
                    payload,
                    next_cap_hash,
                    now,
                    room_quota: self.shared.config.quota_bytes_per_room,
                };
                self.pending(op, move |applied| match applied {
                    Applied::Appended { entry, .. } => Response::Appended { seq: entry.seq },
                    _ => Response::Done,
                })
                .await
            }
            Request::WatchRegistrations { on } => {
                self.shared
                    .notifier
                    .watch_registrations(self.id, on.then(|| self.outbox.clone()));
                Reply::Ready(Ok(Response::Done))
            }
            Request::RotateKey { rotation, proof } => {
                Reply::Ready(self.rotate_key(account, rotation, proof).await)
            }
            Request::IssueAdmission { key, blinded } => {
                self.issue_admission(account, key, blinded).await
            }
            Request::AdmissionKey | Request::Admit { .. } => {
                Reply::Ready(Err(err(ErrorCode::BadRequest, "unexpected request")))
            }
        }
    }

    /// [`Request::IssueAdmission`]: a batch of admission tokens for an account that is not
    /// banned, within its budget ([`super::ADMISSION_BATCH_BURST`]). The relay keeps no
    /// record of what it issued (decision 0016).
    async fn issue_admission(
        &mut self,
        account: AccountKey,
        key: hearth_protocol::AdmissionKey,
        blinded: Vec<hearth_protocol::BlindedToken>,
    ) -> Reply {
        // A ban that landed since this connection signed in (it is being closed).
        match self.shared.store.account(&account) {
            Ok(Some(record)) if !record.banned => {}
            Ok(_) => return Reply::Ready(Err(err(ErrorCode::Banned, "this account is banned"))),
            Err(e) => return Reply::Ready(Err(store_failed(e))),
        }
        if !self.shared.admission_issues.allow(&account, Instant::now()) {
            self.shared.audit(
                "rate-limited",
                Some(self.peer_ip),
                Some(&account),
                "admission tokens",
            );
            return Reply::Ready(Err(err(
                ErrorCode::RateLimited,
                "too many admission tokens taken recently: wait a few seconds",
            )));
        }
        let shared = self.shared.clone();
        Reply::Ready(
            off_workers(move || {
                shared
                    .admission
                    .issue(&key, &blinded)
                    .map(|(evaluated, proof)| Response::AdmissionIssued { evaluated, proof })
            })
            .await,
        )
    }

    /// The requests the room's capability authorises ([`Request::capability_room`]):
    /// alone, or with a room admin's pseudonym over the change (checked here, and the
    /// pseudonym against the room's list by the store; the account plays no part). From a
    /// signed-in connection (`author`) or a room connection (`None`); the account matters
    /// only to a migrated room's first list of admins, which only its owner's account
    /// sets (`SetRoomAdmins`, see the store's `claim_legacy`).
    async fn room_request(&mut self, author: Option<AccountKey>, request: Request) -> Reply {
        let store = self.shared.store.clone();
        let now = unix_now();
        match request {
            Request::Append { room, cap, payload } => {
                self.append(room, cap, (None, None), payload, now).await
            }
            Request::Commit {
                room,
                cap,
                next_cap_hash,
                payload,
                admins,
            } => {
                // It may add someone with a package this account fetched: none is handed
                // out again (see `key_package_fetches`).
                if let Some(account) = &author {
                    self.shared.key_package_fetches.committed(account);
                }
                // A list of admins is taken signed by the owner's pseudonym, whichever
                // connection it comes on (decision 0013 part 5).
                let admins = match admins {
                    None => None,
                    Some(list) => {
                        let action = hearth_protocol::AdminAction::CommitAdmins {
                            next_cap_hash,
                            admins: list.admins.clone(),
                        };
                        match super::admin_proof::signer(
                            &room,
                            &cap.hash(),
                            Some(&list.proof),
                            &action,
                        ) {
                            Ok(signer) => Some((signer.unwrap_or(list.proof.admin), list.admins)),
                            Err(e) => return Reply::Ready(Err(e)),
                        }
                    }
                };
                let commit = (Some(next_cap_hash), admins);
                self.append(room, cap, commit, payload, now).await
            }
            Request::SetRetention {
                room,
                cap,
                retention_secs,
                proof,
            } => {
                if let Err(e) = check_retention(retention_secs) {
                    return Reply::Ready(Err(e));
                }
                let action = hearth_protocol::AdminAction::SetRetention { retention_secs };
                let admin =
                    match super::admin_proof::signer(&room, &cap.hash(), proof.as_ref(), &action) {
                        Ok(admin) => admin,
                        Err(e) => return Reply::Ready(Err(e)),
                    };
                let op = WriteOp::SetRetention {
                    room,
                    cap_hash: cap.hash(),
                    retention_secs,
                    admin,
                };
                self.pending(op, |_| Response::Done).await
            }
            Request::UnpublishRoom { room, cap, proof } => {
                let action = hearth_protocol::AdminAction::Unpublish;
                let admin =
                    match super::admin_proof::signer(&room, &cap.hash(), proof.as_ref(), &action) {
                        Ok(admin) => admin,
                        Err(e) => return Reply::Ready(Err(e)),
                    };
                let op = WriteOp::UnpublishRoom {
                    room,
                    cap_hash: cap.hash(),
                    admin,
                };
                self.pending(op, |_| Response::Done).await
            }
            Request::SetRoomAdmins {
                room,
                cap,
                admins,
                proof,
            } => {
                let action = hearth_protocol::AdminAction::SetAdmins {
                    admins: admins.clone(),
                };
                let admin =
                    match super::admin_proof::signer(&room, &cap.hash(), proof.as_ref(), &action) {
                        Ok(admin) => admin,
                        Err(e) => return Reply::Ready(Err(e)),
                    };
                let op = WriteOp::SetRoomAdmins {
                    room,
                    cap_hash: cap.hash(),
                    admin,
                    account: author,
                    admins,
                };
                self.pending(op, |_| Response::Done).await
            }
            Request::RevertCommit {
                room,
                cap,
                seq,
                next_cap_hash,
                payload,
                proof,
            } => {
                if let Some(e) = self.too_large(payload.len()) {
                    return Reply::Ready(Err(e));
                }
                let action = hearth_protocol::AdminAction::Revert {
                    seq,
                    next_cap_hash,
                    removal: <sha2::Sha256 as sha2::Digest>::digest(&payload).into(),
                };
                let admin =
                    match super::admin_proof::signer(&room, &cap.hash(), Some(&proof), &action) {
                        Ok(admin) => admin.unwrap_or(proof.admin),
                        Err(e) => return Reply::Ready(Err(e)),
                    };
                let op = WriteOp::RevertCommit {
                    room,
                    cap_hash: cap.hash(),
                    seq,
                    admin,
                    payload,
                    next_cap_hash,
                    now,
                    room_quota: self.shared.config.quota_bytes_per_room,
                };
                let result = self.shared.writer.submit(op).await;
                if result.is_ok() {
                    // About a room: no account, no address (decision 0013).
                    tracing::warn!(
                        seq = seq.0,
                        "a room's admin undid a commit its members refused"
                    );
                    tracing::debug!(peer = %self.peer_ip, account = ?author.map(|a| a.short()), %room, seq = seq.0, "commit reverted");
                    self.shared.audit(
                        "commit-reverted",
                        None,
                        None,
                        &format!("from seq {}", seq.0),
                    );
                }
                Reply::Ready(result.map(|applied| match applied {
                    Applied::Reverted { entry, .. } => Response::Appended { seq: entry.seq },
                    _ => Response::Done,
                }))
            }
            Request::Read {
                room,
                cap,
                from,
                limit,
            } => {
                let cap_hash = cap.hash();
                Reply::Ready(off_workers(move || read(&*store, room, cap_hash, from, limit)).await)
            }
            Request::Subscribe { room, cap, from } => {
                let cap_hash = cap.hash();
                match store.access(&room, &cap_hash) {
                    Ok(Some((_, Ok(_)))) => {}
                    Ok(Some((_, Err(e)))) => return Reply::Ready(Err(e)),
                    Ok(None) => return Reply::Ready(Err(crate::store::unknown_room())),
                    Err(e) => return Reply::Ready(Err(store_failed(e))),
                }
                self.unsubscribe(&room);
                let handle =
                    self.shared
                        .hub
                        .subscribe(store, room, cap_hash, from, self.outbox.clone());
                self.subscriptions.insert(room, handle);
                Reply::Ready(Ok(Response::Done))
            }
            Request::Unsubscribe { room } => {
                self.unsubscribe(&room);
                Reply::Ready(Ok(Response::Done))
            }
            Request::RoomStatus { room, cap } => {
                Reply::Ready(match store.access(&room, &cap.hash()) {
                    Ok(Some((record, Ok(access)))) => {
                        match (access.require_current(), store.room_admins(&room)) {
                            (Ok(()), Ok(admins)) => Ok(Response::RoomStatus {
                                retention_secs: record.retention_secs,
                                relay_retention_secs: self.shared.config.retention_secs,
                                admins,
                            }),
                            (Err(e), _) => Err(e),
                            (_, Err(e)) => Err(store_failed(e)),
                        }
                    }
                    Ok(Some((_, Err(e)))) => Err(e),
                    Ok(None) => Err(crate::store::unknown_room()),
                    Err(e) => Err(store_failed(e)),
                })
            }
            Request::PutBlob { .. } | Request::BlobStatus { .. } | Request::GetBlob { .. } => {
                Reply::Ready(super::blob_requests::handle(&self.shared, request).await)
            }
            _ => Reply::Ready(Err(err(
                ErrorCode::Unauthenticated,
                "this request needs a signed-in connection",
            ))),
        }
    }

    /// [`Request::RotateKey`]: checks both signatures, re-binds the account in the store,
    /// and carries this session on as the new key. Other sessions of the old key are
    /// ended (they can no longer re-authenticate anyway).
    async fn rotate_key(
        &mut self,
        account: AccountKey,
        rotation: hearth_protocol::KeyRotation,
        proof: Signature,
    ) -> Result<Response, WireError> {
        if rotation.from != account {
            return Err(err(
                ErrorCode::Forbidden,
                "a rotation must start from this connection's account key",
            ));
        }
        let record = match self.shared.store.account(&account) {
            Ok(Some(record)) => record,
            Ok(None) => return Err(err(ErrorCode::UnknownAccount, "no such account")),
            Err(e) => return Err(store_failed(e)),
        };
        let message =
            hearth_protocol::rotation_message(&record.handle, &rotation.from, &rotation.to);
        if !verify_signed(&rotation.from, &message, &rotation.signature)
            || !verify_signed(&rotation.to, &message, &proof)
        {
            self.shared.audit(
                "rotation-refused",
                Some(self.peer_ip),
                Some(&account),
                "signature does not verify",
            );
            return Err(err(
                ErrorCode::AuthFailed,
                "the rotation's signatures do not verify",
            ));
        }
        let new = rotation.to;
        let record = match self
            .shared
            .writer
            .submit(WriteOp::RotateKey {
                rotation,
                now: unix_now(),
            })
            .await?
        {
            Applied::Account(record) => record,
            _ => return Err(internal()),
        };
        tracing::info!(from = %account.short(), to = %new.short(), "account key rotated");
        tracing::debug!(peer = %self.peer_ip, from = %account.short(), to = %new.short(), "account key rotated");
        self.shared.audit(
            "key-rotated",
            Some(self.peer_ip),
            Some(&new),
            &format!("from {}", account.short()),
        );
        // Sessions still signed in with the old key end now; this one carries on as the
        // new key.
        self.shared.notifier.unregister(&account, self.id);
        self.shared
            .notifier
            .disconnect_for(&account, CloseReason::KeyRotated);
        self.account = None;
        // The new key is fresh (the store refuses a key in use), so it has no session yet.
        self.authenticated_as(&record);
        Ok(Response::Authenticated {
            handle: record.handle,
            now: unix_now(),
        })
    }

    /// Checks a `JoinPublic` commit against the room's published GroupInfo at `epoch`
    /// (see [`crate::external_join`]) before anything is written. The write itself checks
    /// the epoch again, so a listing replaced meanwhile cannot slip through.
    async fn check_join(
        &mut self,
        store: &Arc<dyn crate::store::Store>,
        room: hearth_protocol::RoomId,
        epoch: u64,
        account: AccountKey,
        payload: &[u8],
    ) -> Result<(), WireError> {
        let listing = match store.listing(&room) {
            Ok(Some((listing, current))) if listing.epoch == current && epoch == current => listing,
            Ok(Some(_)) => return Err(crate::store::stale_listing()),
            Ok(None) => return Err(crate::store::not_listed()),
            Err(e) => return Err(store_failed(e)),
        };
        let handle = match store.account(&account) {
            Ok(Some(record)) => record.handle,
            Ok(None) => return Err(err(ErrorCode::UnknownAccount, "no such account")),
            Err(e) => return Err(store_failed(e)),
        };
        let commit = payload.to_vec();
        let shared = self.shared.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let group = shared.join_checks.group(&listing.group_info)?;
            crate::external_join::check_external_commit(&group, &commit, &account, &handle)
        })
        .await
        .map_err(|_| internal())?;
        checked.map_err(|refused| {
            self.shared.audit(
                "join-refused",
                Some(self.peer_ip),
                Some(&account),
                &refused.to_string(),
            );
            err(ErrorCode::Forbidden, &refused.to_string())
        })
    }

    /// Checks every published KeyPackage (see [`crate::key_packages`]) off the async
    /// workers; the first refusal answers the whole publish.
    async fn check_key_packages(
        &self,
        store: &Arc<dyn crate::store::Store>,
        account: AccountKey,
        packages: &[serde_bytes::ByteBuf],
        last_resort: Option<&serde_bytes::ByteBuf>,
    ) -> Result<(), WireError> {
        let handle = match store.account(&account) {
            Ok(Some(record)) => record.handle,
            Ok(None) => return Err(err(ErrorCode::UnknownAccount, "no such account")),
            Err(e) => return Err(store_failed(e)),
        };
        let all: Vec<Vec<u8>> = packages
            .iter()
            .chain(last_resort)
            .map(|p| p.to_vec())
            .collect();
        let checked = tokio::task::spawn_blocking(move || {
            all.iter().try_for_each(|bytes| {
                crate::key_packages::check_published(bytes, &account, &handle)
            })
        })
        .await
        .map_err(|_| internal())?;
        checked.map_err(|refused| {
            self.shared.audit(
                "key-package-refused",
                Some(self.peer_ip),
                Some(&account),
                &refused.to_string(),
            );
            err(ErrorCode::BadRequest, &refused.to_string())
        })
    }

    async fn append(
        &mut self,
        room: hearth_protocol::RoomId,
        cap: hearth_protocol::Cap,
        (next_cap_hash, admins): (
            Option<hearth_protocol::CapHash>,
            Option<(hearth_protocol::AdminKey, Vec<hearth_protocol::AdminKey>)>,
        ),
        payload: Vec<u8>,
        now: u64,
    ) -> Reply {
        if let Some(e) = self.too_large(payload.len()) {
            return Reply::Ready(Err(e));
        }
        let op = WriteOp::Append {
            room,
            cap_hash: cap.hash(),
            payload,
            next_cap_hash,
            admins,
            now,
            room_quota: self.shared.config.quota_bytes_per_room,
        };
        self.pending(op, move |applied| match applied {
            Applied::Appended { entry, .. } => Response::Appended { seq: entry.seq },
            _ => Response::Done,
        })
        .await
    }

    fn unsubscribe(&mut self, room: &hearth_protocol::RoomId) {
        if let Some(handle) = self.subscriptions.remove(room) {
            handle.task.abort();
            self.shared.hub.unsubscribe(&handle.room, handle.id);
        }
    }
}

/// Runs a store read on tokio's blocking pool, so a large read never holds up the async
/// workers that drive every connection.
async fn off_workers<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, WireError> + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(read)
        .await
        .unwrap_or_else(|_| Err(internal()))
}

/// [`Request::Read`]: entries of `room` readable with `cap_hash` from `from`, at most
/// `limit` and about [`RESPONSE_BYTES`] of payload (the store stops decoding there).
fn read(
    store: &dyn crate::store::Store,
    room: hearth_protocol::RoomId,
    cap_hash: hearth_protocol::CapHash,
    from: Seq,
    limit: u32,
) -> Result<Response, WireError> {
    let (record, access) = match store.access(&room, &cap_hash).map_err(store_failed)? {
        Some((record, access)) => (record, access?),
        None => return Err(crate::store::unknown_room()),
    };
    let last = access.last_readable(record.head);
    let from = Seq(from.0.max(record.first).max(1));
    let entries = store
        .entries_within(
            &room,
            from,
            last,
            limit.min(MAX_READ_ENTRIES),
            RESPONSE_BYTES,
        )
        .map_err(store_failed)?;
    let entries = fit(entries, |e| e.payload.len());
    Ok(Response::Entries { entries, last })
}

/// Refuses a public name that is empty, too long, or has control characters (it is shown
/// to every account in listings).
fn check_public_name(name: &str) -> Result<(), WireError> {
    if name.trim().is_empty() {
        return Err(err(ErrorCode::BadRequest, "the public name is empty"));
    }
    if name.len() > MAX_PUBLIC_NAME_LEN {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!("a public name has at most {MAX_PUBLIC_NAME_LEN} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(err(
            ErrorCode::BadRequest,
            "the public name contains control characters",
        ));
    }
    Ok(())
}

/// The room and capability a request presents, for the requests a room connection may
/// make ([`Request::capability_room`]; `Unsubscribe` presents none).
fn presented_cap(request: &Request) -> Option<(hearth_protocol::RoomId, &hearth_protocol::Cap)> {
    match request {
        Request::Append { room, cap, .. }
        | Request::Commit { room, cap, .. }
        | Request::Read { room, cap, .. }
        | Request::Subscribe { room, cap, .. }
        | Request::RoomStatus { room, cap }
        | Request::PutBlob { room, cap, .. }
        | Request::BlobStatus { room, cap, .. }
        | Request::GetBlob { room, cap, .. }
        | Request::SetRetention { room, cap, .. }
        | Request::UnpublishRoom { room, cap, .. }
        | Request::SetRoomAdmins { room, cap, .. }
        | Request::RevertCommit { room, cap, .. } => Some((*room, cap)),
        _ => None,
    }
}

/// The room a request names, and the request's name (for the `debug` log).
fn named_room(request: &Request) -> Option<(hearth_protocol::RoomId, &'static str)> {
    Some(match request {
        Request::CreateRoom { room, .. } => (*room, "CreateRoom"),
        Request::Append { room, .. } => (*room, "Append"),
        Request::Commit { room, .. } => (*room, "Commit"),
        Request::Read { room, .. } => (*room, "Read"),
        Request::Subscribe { room, .. } => (*room, "Subscribe"),
        Request::Unsubscribe { room } => (*room, "Unsubscribe"),
        Request::SetRetention { room, .. } => (*room, "SetRetention"),
        Request::PublishRoom { room, .. } => (*room, "PublishRoom"),
        Request::UnpublishRoom { room, .. } => (*room, "UnpublishRoom"),
        Request::FetchGroupInfo { room } => (*room, "FetchGroupInfo"),
        Request::JoinPublic { room, .. } => (*room, "JoinPublic"),
        Request::RoomStatus { room, .. } => (*room, "RoomStatus"),
        Request::SetRoomAdmins { room, .. } => (*room, "SetRoomAdmins"),
        Request::RevertCommit { room, .. } => (*room, "RevertCommit"),
        Request::PutBlob { room, .. } => (*room, "PutBlob"),
        Request::BlobStatus { room, .. } => (*room, "BlobStatus"),
        Request::GetBlob { room, .. } => (*room, "GetBlob"),
        _ => return None,
    })
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.notifier.watch_registrations(self.id, None);
        let rooms: Vec<_> = self.subscriptions.keys().copied().collect();
        for room in rooms {
            self.unsubscribe(&room);
        }
        if let Some(account) = &self.account {
            self.shared.notifier.unregister(account, self.id);
        }
        // Ends anything still waiting to queue for this connection.
        self.outbox.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_names_are_checked() {
        assert!(check_public_name("Family board").is_ok());
        assert!(check_public_name("  ").is_err());
        assert!(check_public_name("a\nb").is_err());
        assert_eq!(
            check_public_name(&"x".repeat(MAX_PUBLIC_NAME_LEN + 1))
                .unwrap_err()
                .code,
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn responses_are_cut_to_fit_a_frame() {
        let items = vec![vec![0u8; 200_000]; 10];
        let kept = fit(items, |p| p.len());
        assert_eq!(kept.len(), 2);
        assert_eq!(fit(vec![vec![0u8; 10]; 5], |p| p.len()).len(), 5);
        assert_eq!(fit(vec![vec![0u8; 900_000]], |p| p.len()).len(), 1);
        assert!(fit(Vec::<Vec<u8>>::new(), |p| p.len()).is_empty());
    }
}
