//! How often one account may take another's KeyPackages (issue 11).
//!
//! Every `FetchKeyPackage` consumes one of the target's one-use packages. Without a limit
//! any registered account could drain someone's stock at the request rate, so that every
//! invitation afterwards falls back to the shared last-resort package. Each (fetcher,
//! target) pair gets [`PER_PAIR`] fetches per [`WINDOW`], and each target [`PER_TARGET`]
//! from everyone together; the fetcher that passes a limit is refused with `RateLimited`
//! and the other inviters are not affected by the pair limit.
//!
//! Memory: one entry (about 100 bytes) per pair and per target seen in the current
//! window, at most [`MAX_ENTRIES`]; old windows are dropped when the table is full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearth_protocol::{AccountKey, Handle};

/// The window the counts cover.
pub const WINDOW: Duration = Duration::from_secs(600);
/// Fetches of one target by one fetcher per window (inviting someone to a few rooms).
pub const PER_PAIR: u32 = 10;
/// Fetches of one target by everyone per window.
pub const PER_TARGET: u32 = 60;
/// Entries kept at the most (pairs plus targets).
pub const MAX_ENTRIES: usize = 20_000;

/// Counts fetches per (fetcher, target) and per target in fixed windows.
#[derive(Default)]
pub struct KeyPackageFetches {
    pairs: Mutex<HashMap<(AccountKey, Handle), (u32, Instant)>>,
    targets: Mutex<HashMap<Handle, (u32, Instant)>>,
}

fn count<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, (u32, Instant)>>,
    key: K,
    limit: u32,
    now: Instant,
) -> bool {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, (_, since)| now.saturating_duration_since(*since) < WINDOW);
    }
    let slot = map.entry(key).or_insert((0, now));
    if now.saturating_duration_since(slot.1) >= WINDOW {
        *slot = (0, now);
    }
    if slot.0 >= limit {
        return false;
    }
    slot.0 += 1;
    true
}

impl KeyPackageFetches {
    /// Counts a fetch of `target`'s package by `fetcher` at `now`; `false` if a limit
    /// is reached (then nothing is counted against the target).
    pub fn allow(&self, fetcher: AccountKey, target: &Handle, now: Instant) -> bool {
        if !count(&self.pairs, (fetcher, target.clone()), PER_PAIR, now) {
            return false;
        }
        count(&self.targets, target.clone(), PER_TARGET, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Handle {
        Handle::new(s).unwrap()
    }

    #[test]
    fn one_fetcher_cannot_drain_a_target_and_others_still_can_fetch() {
        let limits = KeyPackageFetches::default();
        let now = Instant::now();
        let (mallory, alice) = (AccountKey([1; 32]), AccountKey([2; 32]));
        for _ in 0..PER_PAIR {
            assert!(limits.allow(mallory, &h("bob"), now));
        }
        assert!(!limits.allow(mallory, &h("bob"), now));
        assert!(
            limits.allow(alice, &h("bob"), now),
            "another inviter is not held back"
        );
        assert!(
            limits.allow(mallory, &h("carol"), now),
            "nor another target"
        );
        assert!(
            limits.allow(mallory, &h("bob"), now + WINDOW),
            "a new window"
        );
    }

    #[test]
    fn many_fetchers_together_are_bounded_per_target() {
        let limits = KeyPackageFetches::default();
        let now = Instant::now();
        let allowed = (0..=255u8)
            .filter(|n| limits.allow(AccountKey([*n; 32]), &h("bob"), now))
            .count();
        assert_eq!(allowed as u32, PER_TARGET);
    }
}
