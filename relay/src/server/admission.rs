//! Slots for connections that have not authenticated yet, per IP address (issue 13,
//! item 6); an IPv6 address counts by its /64 ([`AddressKey`]).
//!
//! A household shares one public address, so a per-address limit must never keep a
//! member out. Three things make sure of it:
//!
//! - only connections whose address QUIC has validated (a retry round trip, see the
//!   accept loop) take a slot, so spoofed or bare Initials cost no slot at all;
//! - a slot is held only until the connection authenticates; authenticated connections
//!   are bounded per account instead;
//! - when an address has `max` unauthenticated connections and another arrives, the
//!   oldest gives way (it is told to close), rather than the newcomer being refused. An
//!   idle flood then only ever pushes out idle connections, while a member's connection
//!   authenticates within a round trip and leaves the pool.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::service::AddressKey;

/// Per address: each unauthenticated connection's id and eviction signal, oldest first.
type Slots = HashMap<AddressKey, VecDeque<(u64, Arc<Notify>)>>;

/// Unauthenticated connections per address, oldest first.
#[derive(Default, Clone)]
pub(crate) struct Admission {
    slots: Arc<Mutex<Slots>>,
    next_id: Arc<AtomicU64>,
}

/// One unauthenticated connection's slot; dropping it (at authentication or at the end)
/// gives it back.
pub(crate) struct Slot {
    admission: Admission,
    key: AddressKey,
    id: u64,
    evicted: Arc<Notify>,
}

impl Slot {
    /// Completes when a newer connection from the same address took this slot.
    pub(crate) fn evicted(&self) -> Arc<Notify> {
        self.evicted.clone()
    }
}

impl Admission {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Every update leaves the map consistent before anything can panic.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection from `ip`; if `max` are taken by its [`AddressKey`],
    /// the oldest is told to close and its slot reused. Returns the slot and whether one
    /// was evicted.
    pub(crate) fn take(&self, ip: IpAddr, max: usize) -> (Slot, bool) {
        let key = AddressKey::of(ip);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        let mut map = self.lock();
        let list = map.entry(key).or_default();
        let mut evicted_one = false;
        while list.len() >= max.max(1) {
            if let Some((_, oldest)) = list.pop_front() {
                // A stored permit: the connection sees it whenever it next looks.
                oldest.notify_one();
                evicted_one = true;
            }
        }
        list.push_back((id, evicted.clone()));
        drop(map);
        (
            Slot {
                admission: self.clone(),
                key,
                id,
                evicted,
            },
            evicted_one,
        )
    }

    /// Unauthenticated connections from `ip` now.
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        self.lock()
            .get(&AddressKey::of(ip))
            .map_or(0, VecDeque::len)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.admission.lock();
        if let Some(list) = map.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_gives_way_and_slots_come_back() {
        let admission = Admission::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let (first, evicted) = admission.take(ip, 2);
        assert!(!evicted);
        let (second, _) = admission.take(ip, 2);
        let (_other, evicted) = admission.take(other, 2);
        assert!(!evicted, "addresses are counted apart");
        let (third, evicted) = admission.take(ip, 2);
        assert!(evicted);
        first.evicted().notified().await;
        assert_eq!(admission.count(ip), 2);
        drop(first);
        assert_eq!(
            admission.count(ip),
            2,
            "an evicted slot was given back already"
        );
        drop(second);
        drop(third);
        assert_eq!(admission.count(ip), 0);
    }

    #[tokio::test]
    async fn an_ipv6_64_shares_its_slots_and_mapped_ipv4_counts_as_ipv4() {
        let admission = Admission::default();
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let (first, _) = admission.take(ip("2001:db8:1:2::1"), 2);
        let (_second, _) = admission.take(ip("2001:db8:1:2::2"), 2);
        let (_elsewhere, evicted) = admission.take(ip("2001:db8:1:3::1"), 2);
        assert!(!evicted, "another /64 is another address");
        // A third address of the same /64: the /64's oldest gives way.
        let (_third, evicted) = admission.take(ip("2001:db8:1:2:ffff::9"), 2);
        assert!(evicted);
        first.evicted().notified().await;
        assert_eq!(admission.count(ip("2001:db8:1:2::77")), 2);

        let (_v4, _) = admission.take(ip("192.0.2.9"), 2);
        let (_mapped, _) = admission.take(ip("::ffff:192.0.2.9"), 2);
        assert_eq!(admission.count(ip("192.0.2.9")), 2);
        assert_eq!(admission.count(ip("::ffff:192.0.2.9")), 2);
    }
}
