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
//!
//! The same type keeps the pool of room connections (decision 0013 part 5), where a
//! connection belongs to the *group* of the room whose capability made it one
//! ([`Admission::take_in`]). There the oldest connection of the group with the most
//! connections at the address gives way: a member flooding with one room's capability
//! (its own room's, or one it was removed from) pushes out its own connections, not
//! those of the other people behind the household's address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::service::AddressKey;

/// One connection's place in its address's list: its id, its group, its eviction signal.
type Place = (u64, u128, Arc<Notify>);

/// Per address: each connection's place, oldest first.
type Slots = HashMap<AddressKey, VecDeque<Place>>;

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
        self.take_in(ip, 0, max)
    }

    /// A slot for a new connection from `ip` in `group` (for room connections: the
    /// room). If `max` are taken by its [`AddressKey`], the oldest connection of the
    /// group holding the most of them there is told to close (of groups as large, the
    /// oldest connection among them: with one group, or groups of one, the oldest gives
    /// way). Returns the slot and whether one was evicted.
    pub(crate) fn take_in(&self, ip: IpAddr, group: u128, max: usize) -> (Slot, bool) {
        let key = AddressKey::of(ip);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        let mut map = self.lock();
        let list = map.entry(key).or_default();
        list.push_back((id, group, evicted.clone()));
        let mut evicted_one = false;
        while list.len() > max.max(1) {
            let Some(at) = oldest_of_largest_group(list) else {
                break;
            };
            if let Some((_, _, oldest)) = list.remove(at) {
                // A stored permit: the connection sees it whenever it next looks.
                oldest.notify_one();
                evicted_one = true;
            }
        }
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
            list.retain(|(id, _, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

/// The position of the oldest connection of the group with the most connections in
/// `list` (oldest first); of equally large groups, the oldest connection among them.
/// `None` only for an empty list.
fn oldest_of_largest_group(list: &VecDeque<Place>) -> Option<usize> {
    // Per group: (count, position of its oldest).
    let mut groups: HashMap<u128, (usize, usize)> = HashMap::new();
    for (at, (_, group, _)) in list.iter().enumerate() {
        groups.entry(*group).or_insert((0, at)).0 += 1;
    }
    groups
        .into_values()
        .max_by_key(|&(count, oldest)| (count, std::cmp::Reverse(oldest)))
        .map(|(_, oldest)| oldest)
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

    #[tokio::test]
    async fn the_group_with_the_most_connections_gives_way() {
        let admission = Admission::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        // The household: one connection for each of two rooms.
        let (kitchen, _) = admission.take_in(ip, 1, 4);
        let (garden, _) = admission.take_in(ip, 2, 4);
        // A flood with a third room's capability: once the address is full, its own
        // oldest give way, never the household's.
        let mut flood = Vec::new();
        for _ in 0..6 {
            flood.push(admission.take_in(ip, 3, 4));
        }
        assert!(!flood[0].1 && !flood[1].1);
        assert!(flood[2..].iter().all(|(_, evicted)| *evicted));
        for (slot, _) in &flood[..4] {
            slot.evicted().notified().await;
        }
        assert_eq!(admission.count(ip), 4);
        let remaining: Vec<u128> = admission.lock()[&AddressKey::of(ip)]
            .iter()
            .map(|(_, group, _)| *group)
            .collect();
        assert_eq!(remaining, vec![1, 2, 3, 3]);
        // Groups of one each: the oldest gives way, as in the unauthenticated pool.
        drop(flood);
        let (_third, _) = admission.take_in(ip, 4, 3);
        let (_fourth, evicted) = admission.take_in(ip, 5, 3);
        assert!(evicted);
        kitchen.evicted().notified().await;
        assert_eq!(admission.count(ip), 3);
        drop(garden);
    }
}
