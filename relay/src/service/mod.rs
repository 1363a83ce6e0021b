//! The relay's protocol logic, without sockets.
//!
//! [`Relay`] holds the shared state (store, configuration, group-commit writer,
//! subscriptions, rate limits, counters). Each connection gets a [`Session`] from
//! [`Relay::session`], feeds it the client's hello and requests, and forwards the
//! [`hearth_protocol::Event`]s it pushes. The QUIC server in [`crate::server`] is one
//! driver; tests and the CLI demo can drive sessions in-process.

pub mod address;
mod admin_proof;
pub mod admission_keys;
pub mod audit;
mod blob_requests;
mod hub;
mod metrics;
pub mod outbox;
mod rate;
pub(crate) mod responder;
mod session;
pub mod writer;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth_protocol::{AccountKey, CloseReason, Event, Handle, InviteToken};

use crate::config::RelayConfig;
use crate::store::{InviteRecord, Store, StoreError, WriteOp};

pub use address::AddressKey;
pub use metrics::{Metrics, MetricsSnapshot};
pub use outbox::Outbox;
pub use rate::RateLimiter;
pub use responder::Responder;
pub mod key_package_fetches;
pub use session::{PendingReply, Reply, Session, MAX_REQUESTS_BEFORE_AUTH};

pub(crate) use writer::Writer;

/// Seconds added to the system clock by [`set_test_clock_offset`].
static TEST_CLOCK_OFFSET: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Moves the relay's clock by `secs` (tests only: time passed in instead of waited for,
/// e.g. KeyPackages whose lifetime runs out). Process-wide.
pub fn set_test_clock_offset(secs: i64) {
    TEST_CLOCK_OFFSET.store(secs, std::sync::atomic::Ordering::SeqCst);
}

/// Seconds since the Unix epoch, by the relay's clock.
pub fn unix_now() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    now.saturating_add_signed(TEST_CLOCK_OFFSET.load(std::sync::atomic::Ordering::SeqCst))
}

/// Failed authentications on one connection before it is closed.
pub const MAX_AUTH_FAILURES: u32 = 5;
/// Failed authentications for one account key from one address within [`BLOCK_WINDOW`]
/// after which every further failure for that key from there closes its connection at
/// once (one attempt per connection, so the next costs a new handshake). A valid
/// signature is never refused by it: it hits whoever keeps failing for that key, never
/// the key's owner, nor anyone else at the address.
pub const ACCOUNT_FAILURES_BEFORE_THROTTLE: u32 = 20;
/// The window for counting failures, and how long an address block lasts.
pub const BLOCK_WINDOW: Duration = Duration::from_secs(300);
/// How long a successful authentication from an address keeps that address from being
/// blocked: it is a household's address then, and a block would lock the family out.
pub const VOUCH_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Entries kept in each failure map before stale ones are forgotten (and, if still too
/// many, all: forgetting only loosens throttling).
const MAX_TRACKED: usize = 10_000;

/// Failed authentications from one address, and the last time anyone authenticated from it.
#[derive(Debug, Clone, Copy)]
struct AddressRecord {
    failures: u32,
    since: Instant,
    vouched: Option<Instant>,
}

impl AddressRecord {
    fn vouched(&self, now: Instant) -> bool {
        self.vouched
            .is_some_and(|at| now.saturating_duration_since(at) < VOUCH_WINDOW)
    }

    fn blocked(&self, now: Instant, threshold: u32) -> bool {
        self.failures >= threshold
            && now.saturating_duration_since(self.since) < BLOCK_WINDOW
            && !self.vouched(now)
    }
}

/// Tells a session's connection to close now, and why: its account was banned, its key
/// rotated, or a newer session of the account took its place.
#[derive(Default)]
pub struct EndSignal {
    notify: tokio::sync::Notify,
    reason: Mutex<Option<CloseReason>>,
}

impl EndSignal {
    /// Ends the session for `reason` (the first reason given is kept).
    pub fn end(&self, reason: CloseReason) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(reason);
        // A stored permit: the connection sees it whenever it next looks.
        self.notify.notify_one();
    }

    /// Completes once the session was ended; returns why.
    pub async fn ended(&self) -> CloseReason {
        self.notify.notified().await;
        self.reason()
    }

    /// Why the session was ended ([`CloseReason::Banned`] if it was not).
    pub fn reason(&self) -> CloseReason {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(CloseReason::Banned)
    }
}

/// An authenticated session as the [`Notifier`] knows it.
#[derive(Clone)]
pub(crate) struct SessionEntry {
    /// The session's id (unique in this process, increasing).
    pub(crate) id: u64,
    /// Its outgoing queue.
    pub(crate) outbox: Arc<Outbox>,
    /// Ends it (see [`Notifier::disconnect`]).
    pub(crate) end: Arc<EndSignal>,
    /// When the relay last heard from its client (any packet, keep-alives included: see
    /// `server::conn`), on a logical clock ([`Shared::heard_clock`]): higher is later.
    pub(crate) heard: Arc<AtomicU64>,
}

/// Per account: its authenticated sessions.
type SessionsOf = HashMap<AccountKey, Vec<SessionEntry>>;

/// Sessions of each account, to tell them about inbox arrivals, and the sessions that
/// asked to hear about new accounts.
#[derive(Default)]
pub(crate) struct Notifier {
    sessions: Mutex<SessionsOf>,
    watchers: Mutex<HashMap<u64, Arc<Outbox>>>,
}

impl Notifier {
    fn lock(&self) -> std::sync::MutexGuard<'_, SessionsOf> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `entry` as one of `account`'s sessions. If the account has `max` open
    /// already, the one the relay has heard from least recently (the oldest of those
    /// heard from equally recently) is ended with [`CloseReason::Replaced`] to make room,
    /// and its id returned.
    ///
    /// Why the newcomer wins, unlike the per-address limit's newcomer: only the account's
    /// key can open a session of the account, so the newcomer is always its holder. The
    /// common way to reach the limit is the holder's own clients that vanished (a killed
    /// process, a laptop lid closed) while their connections still count until the idle
    /// timeout; refusing the holder then would lock them out for that long. A live client
    /// sends a keep-alive every second, so a session gone quiet is ended before one that
    /// is alive. The bound still holds: never more than `max` sessions per account, so the
    /// memory one account can hold stays bounded.
    pub(crate) fn register(
        &self,
        account: AccountKey,
        entry: SessionEntry,
        max: usize,
    ) -> Option<u64> {
        let mut map = self.lock();
        let list = map.entry(account).or_default();
        if list.iter().any(|e| e.id == entry.id) {
            return None;
        }
        let mut replaced = None;
        while list.len() >= max.max(1) {
            let Some(victim) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.heard.load(Ordering::Relaxed), e.id))
                .map(|(i, _)| i)
            else {
                break;
            };
            let victim = list.swap_remove(victim);
            victim.end.end(CloseReason::Replaced {
                max: u32::try_from(max).unwrap_or(u32::MAX),
            });
            replaced = Some(victim.id);
        }
        list.push(entry);
        replaced
    }

    /// How many sessions of `account` are open.
    #[cfg(test)]
    pub(crate) fn sessions_of(&self, account: &AccountKey) -> usize {
        self.lock().get(account).map_or(0, Vec::len)
    }

    /// Ends every open session of `account` now because it was banned: each connection
    /// closes whatever it is doing, without waiting for its next re-authentication.
    pub(crate) fn disconnect(&self, account: &AccountKey) -> usize {
        self.disconnect_for(account, CloseReason::Banned)
    }

    /// Ends every open session of `account` now, for `reason`.
    pub(crate) fn disconnect_for(&self, account: &AccountKey, reason: CloseReason) -> usize {
        let map = self.lock();
        let sessions = map.get(account).map(Vec::as_slice).unwrap_or_default();
        for entry in sessions {
            entry.end.end(reason);
        }
        sessions.len()
    }

    pub(crate) fn unregister(&self, account: &AccountKey, id: u64) {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(account) {
            list.retain(|e| e.id != id);
            if list.is_empty() {
                map.remove(account);
            }
        }
    }

    /// Starts or stops telling session `id` about new accounts.
    pub(crate) fn watch_registrations(&self, id: u64, tx: Option<Arc<Outbox>>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        match tx {
            Some(tx) => {
                watchers.insert(id, tx);
            }
            None => {
                watchers.remove(&id);
            }
        }
    }

    /// Tells every watching session that `handle` registered.
    pub(crate) fn account_registered(&self, handle: &Handle, account: &AccountKey) {
        let watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        for tx in watchers.values() {
            // A live notice only: a full queue means the client is far behind anyway.
            let _ = tx.try_push(Event::AccountRegistered {
                handle: handle.clone(),
                account: *account,
            });
        }
    }

    pub(crate) fn inbox_arrived(&self, account: &AccountKey) {
        if let Some(list) = self.lock().get(account) {
            for entry in list {
                // A hint only: a full queue means the client is busy and will fetch anyway.
                let _ = entry.outbox.try_push(Event::InboxArrived);
            }
        }
    }
}

/// Inbox deposits one account may make per second, sustained: an invitation is one deposit
/// per person invited.
pub const DEPOSITS_PER_SECOND: f64 = 0.5;
/// Inbox deposits one account may make in a burst (a room created for the whole
/// household invites everyone at once).
pub const DEPOSIT_BURST: u32 = 60;

/// Batches of admission tokens ([`hearth_protocol::ADMISSION_BATCH`] each) one account
/// gets per second, sustained: one every 4 s. Every client start takes a batch per 16
/// rooms (the pool lives in memory), so a script running `hearth send` without the agent
/// takes one per command; a batch costs the relay about 17 scalar multiplications (a
/// millisecond or two on a Pi).
pub const ADMISSION_BATCHES_PER_SECOND: f64 = 0.25;
/// Batches one account may take at once: 64 batches of 16 tokens admit 1,024 room
/// connections (a person in many rooms, after a relay restart or a ban).
pub const ADMISSION_BATCH_BURST: u32 = 64;

/// The window `max_public_rooms_per_account` counts new listings over: a day.
pub const LISTING_WINDOW_SECS: f64 = 86_400.0;

pub(crate) struct Shared {
    pub(crate) config: RelayConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) writer: Writer,
    pub(crate) hub: Arc<hub::Hub>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) rate: RateLimiter,
    /// Deposits per depositing account (the inbox stores no sender, so the store cannot
    /// bound them per sender; decision 0013).
    pub(crate) deposits: RateLimiter,
    /// New listings (or renames) in the directory per account, in memory only: a listing
    /// names no account in the store (decision 0013).
    pub(crate) listings: RateLimiter,
    pub(crate) key_package_fetches: key_package_fetches::KeyPackageFetches,
    /// The admission key room connections are let in by (decision 0016), in memory only.
    pub(crate) admission: admission_keys::AdmissionKeys,
    /// Batches of admission tokens per account, in memory only.
    pub(crate) admission_issues: RateLimiter,
    pub(crate) join_checks: crate::external_join::JoinChecks,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit_log: Arc<audit::AuditLog>,
    pub(crate) started: Instant,
    next_session: std::sync::atomic::AtomicU64,
    heard_order: AtomicU64,
    addresses: Mutex<HashMap<AddressKey, AddressRecord>>,
    account_failures: Mutex<HashMap<(AddressKey, AccountKey), (u32, Instant)>>,
    writer_task: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
    pub(crate) floor: Arc<writer::DiskFloor>,
    health: Arc<writer::StoreHealth>,
    pub(crate) blobs: Arc<crate::blobs::BlobStore>,
}

/// The relay's shared state; cheap to clone.
#[derive(Clone)]
pub struct Relay {
    pub(crate) shared: Arc<Shared>,
}

impl Relay {
    /// A relay over `store`. Must be called inside a tokio runtime (it starts the
    /// group-commit writer task).
    pub fn new(config: RelayConfig, store: Arc<dyn Store>) -> Self {
        let hub = Arc::new(hub::Hub::default());
        let notifier = Arc::new(Notifier::default());
        let metrics = Arc::new(Metrics::default());
        let floor = Arc::new(writer::DiskFloor::new(
            config.data_dir.clone(),
            config.min_free_bytes,
        ));
        let health = Arc::new(writer::StoreHealth::default());
        let audit_log = Arc::new(audit::AuditLog::default());
        let (writer, close, task) = Writer::spawn(
            store.clone(),
            hub.clone(),
            notifier.clone(),
            metrics.clone(),
            (floor.clone(), health.clone()),
            audit_log.clone(),
        );
        let rate = RateLimiter::new(config.rate_per_second, config.rate_burst);
        let listings = RateLimiter::new(
            config.max_public_rooms_per_account as f64 / LISTING_WINDOW_SECS,
            u32::try_from(config.max_public_rooms_per_account).unwrap_or(u32::MAX),
        );
        let blobs = Arc::new(crate::blobs::BlobStore::open(
            &config.data_dir,
            crate::blobs::BlobLimits {
                max_file_bytes: config.max_file_bytes,
                quota_bytes_per_room: config.blob_quota_bytes_per_room,
                quota_bytes_total: config.blob_quota_bytes_total,
            },
        ));
        let admission_grace = Duration::from_secs(config.reauth_grace_secs.max(1));
        Self {
            shared: Arc::new(Shared {
                config,
                store,
                writer,
                hub,
                notifier,
                rate,
                deposits: RateLimiter::new(DEPOSITS_PER_SECOND, DEPOSIT_BURST),
                listings,
                key_package_fetches: Default::default(),
                admission: admission_keys::AdmissionKeys::new(admission_grace),
                admission_issues: RateLimiter::new(
                    ADMISSION_BATCHES_PER_SECOND,
                    ADMISSION_BATCH_BURST,
                ),
                join_checks: Default::default(),
                metrics,
                audit_log,
                started: Instant::now(),
                next_session: std::sync::atomic::AtomicU64::new(1),
                heard_order: AtomicU64::new(0),
                addresses: Mutex::new(HashMap::new()),
                account_failures: Mutex::new(HashMap::new()),
                writer_task: Mutex::new(Some((close, task))),
                floor,
                health,
                blobs,
            }),
        }
    }

    /// Whether the store is still writing (see [`writer::StoreHealth`]).
    pub fn store_health(&self) -> &writer::StoreHealth {
        &self.shared.health
    }

    /// The free-space floor below which nothing new is stored (see
    /// [`RelayConfig::min_free_bytes`]); tests move it.
    pub fn disk_floor(&self) -> &writer::DiskFloor {
        &self.shared.floor
    }

    /// A session for one connection from `peer_ip` whose TLS exporter value
    /// (label [`hearth_protocol::limits::TLS_EXPORTER_LABEL`], no context) is `tls_exporter`.
    pub fn session(&self, peer_ip: IpAddr, tls_exporter: [u8; 32]) -> Session {
        let id = self
            .shared
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Session::new(self.shared.clone(), id, peer_ip, tls_exporter)
    }

    /// Mints an invite good for `uses` registrations, optionally expiring.
    pub fn mint_invite(
        &self,
        uses: u32,
        expires_in: Option<Duration>,
    ) -> Result<InviteToken, StoreError> {
        let (token, op) = invite_op(uses, expires_in);
        match self.shared.store.apply(vec![op])?.pop() {
            Some(Ok(_)) => Ok(token),
            _ => Err(StoreError::Corrupt("minting the invite was refused".into())),
        }
    }

    /// The relay's configuration.
    pub fn config(&self) -> &RelayConfig {
        &self.shared.config
    }

    /// The relay's store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// Live counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Time since this relay started.
    pub fn uptime(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Applies one write through the group-commit writer.
    pub async fn write(
        &self,
        op: WriteOp,
    ) -> Result<crate::store::Applied, hearth_protocol::WireError> {
        self.shared.writer.submit(op).await
    }

    /// Runs one retention sweep as if the clock read `now`: what is due is found on store
    /// snapshots ([`Store::sweep_scan`], on a blocking thread, beside the writer) about
    /// [`SWEEP_SCAN_ROWS`] rows at a time, and each find is deleted by one small
    /// [`WriteOp::SweepItems`] in the writer's next group commit, so writes from people
    /// never wait long behind the sweep.
    pub async fn sweep(&self, now: u64) -> Result<SweepTotals, hearth_protocol::WireError> {
        let retention_secs = self.shared.config.retention_secs;
        let mut totals = SweepTotals::default();
        let mut cursor = crate::store::SweepCursor::default();
        loop {
            let store = self.shared.store.clone();
            let from = cursor.clone();
            let scan = tokio::task::spawn_blocking(move || {
                store.sweep_scan(&from, now, retention_secs, SWEEP_SCAN_ROWS)
            })
            .await
            .map_err(|_| writer::internal())?
            .map_err(|e| {
                tracing::error!(error = %e, "retention sweep could not read the store");
                writer::internal()
            })?;
            totals.scans += 1;
            if !scan.items.is_empty() {
                let op = WriteOp::SweepItems {
                    now,
                    retention_secs,
                    items: scan.items,
                };
                if let crate::store::Applied::Swept {
                    entries,
                    inbox,
                    listings,
                    epochs,
                } = self.write(op).await?
                {
                    totals.entries += entries;
                    totals.inbox += inbox;
                    totals.listings += listings;
                    totals.epochs += epochs;
                    totals.batches += 1;
                }
            }
            match scan.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        let (store, blobs) = (self.shared.store.clone(), self.shared.blobs.clone());
        totals.blobs = tokio::task::spawn_blocking(move || {
            blobs.sweep(now, |room| match store.room(room) {
                Ok(Some(record)) => Some(
                    record
                        .retention_secs
                        .map_or(retention_secs, |r| r.min(retention_secs)),
                ),
                Ok(None) => None,
                // Unknown today: kept until a sweep can tell.
                Err(_) => Some(u64::MAX),
            })
        })
        .await
        .map_err(|_| writer::internal())?;
        Ok(totals)
    }

    /// The blob store (attachments, decision 0014).
    pub fn blobs(&self) -> &Arc<crate::blobs::BlobStore> {
        &self.shared.blobs
    }

    /// Writes the audit records counted so far, and returns once they are stored.
    pub async fn flush_audit(&self) {
        let records = self.shared.audit_log.take();
        let mut waiting = Vec::with_capacity(records.len());
        for record in records {
            waiting.push(self.shared.writer.enqueue(WriteOp::Audit(record)).await);
        }
        for done in waiting {
            let _ = done.await;
        }
    }

    /// Whether `ip` is temporarily blocked after repeated authentication failures (an
    /// IPv6 address by its /64, see [`AddressKey`]).
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.shared.is_blocked(ip, Instant::now())
    }

    /// Stops the group-commit writer after it has committed everything queued; later
    /// writes fail with [`hearth_protocol::ErrorCode::Internal`]. Call after the last
    /// connection ended.
    pub async fn close(&self) {
        let task = self
            .shared
            .writer_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((close, task)) = task {
            let _ = close.send(());
            let _ = task.await;
        }
    }
}

/// Rows one scan of the retention sweep reads before what it found is deleted.
pub const SWEEP_SCAN_ROWS: usize = 2048;

/// What one retention sweep ([`Relay::sweep`]) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepTotals {
    /// Room entries deleted.
    pub entries: u64,
    /// Inbox entries deleted.
    pub inbox: u64,
    /// Directory listings deleted.
    pub listings: u64,
    /// Rows of ended epochs deleted.
    pub epochs: u64,
    /// Snapshot scans made.
    pub scans: u64,
    /// Deleting write ops applied.
    pub batches: u64,
    /// Blobs (attachments) deleted.
    pub blobs: u64,
}

/// A fresh token and the op that stores its hash.
pub fn invite_op(uses: u32, expires_in: Option<Duration>) -> (InviteToken, WriteOp) {
    let token = InviteToken::random();
    let now = unix_now();
    let op = WriteOp::MintInvite {
        invite: InviteRecord {
            hash: token.hash(),
            uses_left: uses.max(1),
            uses: uses.max(1),
            created: now,
            expires: expires_in.map(|d| now.saturating_add(d.as_secs().max(1))),
        },
    };
    (token, op)
}

impl Shared {
    /// The clock of [`Session::heard`]: a counter, so of two sessions the one heard from
    /// later always reads higher (a wall clock would tie within its resolution).
    pub(crate) fn heard_clock(&self) -> u64 {
        self.heard_order.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a suspicious event for the owner's audit feed (written with the writer's
    /// next batch, see [`audit::AuditLog`]).
    pub(crate) fn audit(
        &self,
        kind: &str,
        ip: Option<IpAddr>,
        account: Option<&AccountKey>,
        detail: &str,
    ) {
        self.audit_log.record(unix_now(), kind, ip, account, detail);
    }

    /// Counts an authentication failure from `ip` (for `account`, the key it claimed;
    /// `ip` counts by its [`AddressKey`]);
    /// returns whether the connection should close now: the address is blocked (see
    /// [`Shared::is_blocked`]), or this key failed [`ACCOUNT_FAILURES_BEFORE_THROTTLE`]
    /// times from there. The failure that starts an address block is logged and audited
    /// (once per block).
    pub(crate) fn auth_failed(
        &self,
        ip: IpAddr,
        account: Option<&AccountKey>,
        now: Instant,
    ) -> bool {
        let key = AddressKey::of(ip);
        let throttled = account.is_some_and(|account| {
            let mut map = self
                .account_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if map.len() >= MAX_TRACKED {
                map.retain(|_, (_, since)| now.saturating_duration_since(*since) < BLOCK_WINDOW);
                if map.len() >= MAX_TRACKED {
                    map.clear();
                }
            }
            let slot = map.entry((key, *account)).or_insert((0, now));
            if now.saturating_duration_since(slot.1) >= BLOCK_WINDOW {
                *slot = (0, now);
            }
            slot.0 += 1;
            slot.0 >= ACCOUNT_FAILURES_BEFORE_THROTTLE
        });
        let threshold = self.config.max_failed_logins_per_address;
        let (record, started) = {
            let mut map = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= MAX_TRACKED {
                map.retain(|_, r| {
                    now.saturating_duration_since(r.since) < BLOCK_WINDOW || r.vouched(now)
                });
                if map.len() >= MAX_TRACKED {
                    map.clear();
                }
            }
            let record = map.entry(key).or_insert(AddressRecord {
                failures: 0,
                since: now,
                vouched: None,
            });
            if now.saturating_duration_since(record.since) >= BLOCK_WINDOW {
                record.failures = 0;
                record.since = now;
            }
            record.failures += 1;
            let started = record.failures == threshold && !record.vouched(now);
            (*record, started)
        };
        if started {
            let window = BLOCK_WINDOW.as_secs();
            let count = record.failures;
            tracing::warn!(peer = %ip, address = %key, failures = count, "address blocked after failed authentications");
            self.audit(
                "ip-blocked",
                Some(ip),
                None,
                &format!(
                    "{count} failed authentications within {window} s and no successful one for a day; new connections refused for up to {window} s"
                ),
            );
        }
        throttled || record.blocked(now, threshold)
    }

    /// Someone authenticated from `ip`: it is a household's address (its /64 for IPv6),
    /// never blocked for a while (see [`VOUCH_WINDOW`]); a block in force is lifted.
    pub(crate) fn auth_succeeded(&self, ip: IpAddr, now: Instant) {
        let mut map = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        let record = map.entry(AddressKey::of(ip)).or_insert(AddressRecord {
            failures: 0,
            since: now,
            vouched: None,
        });
        record.vouched = Some(now);
    }

    /// Whether new connections from `ip` are refused: at least
    /// [`RelayConfig::max_failed_logins_per_address`] failed authentications from it within
    /// [`BLOCK_WINDOW`], and nobody authenticated from it within [`VOUCH_WINDOW`]. So an
    /// address the household uses is never blocked, whatever a neighbour behind the same
    /// router does; a flood from an address nobody signs in from is.
    pub(crate) fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let threshold = self.config.max_failed_logins_per_address;
        let map = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&AddressKey::of(ip))
            .is_some_and(|r| r.blocked(now, threshold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, heard: u64) -> SessionEntry {
        SessionEntry {
            id,
            outbox: Outbox::new(1024, Arc::new(Metrics::default())),
            end: Arc::new(EndSignal::default()),
            heard: Arc::new(AtomicU64::new(heard)),
        }
    }

    #[tokio::test]
    async fn at_the_limit_the_session_heard_from_least_recently_makes_room() {
        let notifier = Notifier::default();
        let alice = AccountKey([1; 32]);
        let bob = AccountKey([2; 32]);
        // 2 is the oldest but alive; 3 and 4 went quiet at the same time, 3 first opened.
        let (live, quiet, quieter_twin) = (entry(2, 900), entry(3, 100), entry(4, 100));
        for e in [&live, &quiet, &quieter_twin] {
            assert_eq!(notifier.register(alice, e.clone(), 3), None);
        }
        assert_eq!(
            notifier.register(bob, entry(9, 0), 3),
            None,
            "bob is counted apart"
        );
        assert_eq!(notifier.register(alice, entry(5, 1000), 3), Some(3));
        assert_eq!(quiet.end.ended().await, CloseReason::Replaced { max: 3 });
        assert_eq!(notifier.register(alice, entry(6, 1000), 3), Some(4));
        assert_eq!(notifier.register(alice, entry(7, 1000), 3), Some(2));
        assert_eq!(notifier.sessions_of(&alice), 3);
        assert_eq!(notifier.sessions_of(&bob), 1);
        // A ban ends every session, and says so.
        let banned = entry(8, 1000);
        notifier.register(bob, banned.clone(), 3);
        assert_eq!(notifier.disconnect(&bob), 2);
        assert_eq!(banned.end.ended().await, CloseReason::Banned);
    }
}
