//! Counters of limits hit and abuse seen, for `status` and logs.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Live counters (relaxed atomics: they are statistics, not synchronization).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections currently open.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused (address blocked after failed authentications).
    pub connections_refused: AtomicU64,
    /// Failed authentications and registrations.
    pub auth_failures: AtomicU64,
    /// Payloads or frames over the limit.
    pub too_large: AtomicU64,
    /// Malformed frames.
    pub malformed: AtomicU64,
    /// Requests refused by the rate limit.
    pub rate_limited: AtomicU64,
    /// Requests refused by a quota.
    pub quota_exceeded: AtomicU64,
    /// Connections that did not complete the handshake in time.
    pub handshake_timeouts: AtomicU64,
    /// Envelopes durably stored.
    pub stored: AtomicU64,
    /// Bytes queued for connections right now (see [`super::Outbox`]).
    pub queued_bytes: AtomicU64,
    /// Connections closed because they did not read what was sent to them.
    pub slow_readers: AtomicU64,
    /// Sessions closed to make room for a newer one of the same account (it had
    /// `max_sessions_per_account` open). The name is from when the newer one was refused.
    pub sessions_refused: AtomicU64,
    /// QUIC address validations (retry packets) sent.
    pub retries: AtomicU64,
    /// Connections closed for asking too much before authenticating.
    pub preauth_refused: AtomicU64,
    /// Unauthenticated connections closed to make room for a newer one from the same
    /// address.
    pub unauthenticated_evicted: AtomicU64,
    /// Connections admitted to room requests with a token (decision 0016), again after a
    /// ban included.
    pub admitted: AtomicU64,
    /// Room connections closed for not being admitted again after a ban (`readmit-timeout`).
    pub readmit_timeouts: AtomicU64,
}

/// A copy of [`Metrics`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct MetricsSnapshot {
    pub connections: u64,
    pub connections_total: u64,
    pub connections_refused: u64,
    pub auth_failures: u64,
    pub too_large: u64,
    pub malformed: u64,
    pub rate_limited: u64,
    pub quota_exceeded: u64,
    pub handshake_timeouts: u64,
    pub stored: u64,
    pub queued_bytes: u64,
    pub slow_readers: u64,
    pub sessions_refused: u64,
    pub retries: u64,
    pub preauth_refused: u64,
    pub unauthenticated_evicted: u64,
    pub admitted: u64,
    pub readmit_timeouts: u64,
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            connections: r(&self.connections),
            connections_total: r(&self.connections_total),
            connections_refused: r(&self.connections_refused),
            auth_failures: r(&self.auth_failures),
            too_large: r(&self.too_large),
            malformed: r(&self.malformed),
            rate_limited: r(&self.rate_limited),
            quota_exceeded: r(&self.quota_exceeded),
            handshake_timeouts: r(&self.handshake_timeouts),
            stored: r(&self.stored),
            queued_bytes: r(&self.queued_bytes),
            slow_readers: r(&self.slow_readers),
            sessions_refused: r(&self.sessions_refused),
            retries: r(&self.retries),
            preauth_refused: r(&self.preauth_refused),
            unauthenticated_evicted: r(&self.unauthenticated_evicted),
            admitted: r(&self.admitted),
            readmit_timeouts: r(&self.readmit_timeouts),
        }
    }
}
