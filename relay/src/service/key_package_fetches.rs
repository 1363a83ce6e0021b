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
//!
//! **An invitation that was killed does not use up the limit** (issue 13). An inviter's
//! client that dies between fetching a package and committing the Add (a killed process,
//! a dropped connection) fetches again when the invitation is retried. Each package
//! handed out is therefore kept for [`WINDOW`] per (fetcher, target), and the same
//! fetcher asking for the same target again gets **the same package** (not consuming
//! another, not counted) as long as
//!
//! - the fetcher has sent no `Commit` and no `Deposit` since (from any connection): the
//!   relay cannot see inside commits or Welcomes, so any commit counts as one that may
//!   have used the package, and the next fetch takes a fresh one (the old behaviour).
//!   Clients send their commits on room connections, which do not say whose they are
//!   (decision 0013), so what the relay sees is the Welcome deposited after the commit.
//!   Only a deposited Welcome can make the invitee take the package; handing it out again
//!   after one made a second invitation that the invitee could not take (it had used the
//!   package on the first), and an invitee invited twice believed itself removed;
//! - it asks on **another connection** than the one the package went to: a profile is
//!   open in one process at a time, so a second connection means the first one's
//!   invitation was abandoned, while two fetches on one connection may be two invitations
//!   under way at once (to two rooms), which must not share a package (the invitee could
//!   take only one of the two Welcomes);
//! - the package has not expired, and the target's account is still the one it names.
//!
//! This also takes the point out of draining by reconnecting: a fetcher gets the one
//! package again instead of a new one. Packages kept for this are at most
//! [`MAX_LENT_BYTES`] in all (the oldest are forgotten first; forgetting one only means
//! the next fetch takes a new one, as before), and are lost on a restart.

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

/// Bytes of packages kept at the most to hand out again.
pub const MAX_LENT_BYTES: usize = 4 * 1024 * 1024;

/// Counts fetches per (fetcher, target) and per target in fixed windows, and keeps the
/// packages handed out to hand them out again (see the module documentation).
#[derive(Default)]
pub struct KeyPackageFetches {
    pairs: Mutex<HashMap<(AccountKey, Handle), (u32, Instant)>>,
    targets: Mutex<HashMap<Handle, (u32, Instant)>>,
    lent: Mutex<Lent>,
}

/// One package handed out.
struct Loan {
    /// The target's account the package names.
    account: AccountKey,
    package: Vec<u8>,
    /// When it was first handed out.
    at: Instant,
    /// The session (connection) that has it now.
    session: u64,
    /// Order of lending (the oldest is forgotten first).
    order: u64,
}

/// Packages handed out, per fetcher and target.
#[derive(Default)]
struct Lent {
    by_fetcher: HashMap<AccountKey, HashMap<Handle, Loan>>,
    bytes: usize,
    next_order: u64,
}

impl Lent {
    fn remove(&mut self, fetcher: &AccountKey, target: &Handle) {
        if let Some(loans) = self.by_fetcher.get_mut(fetcher) {
            if let Some(loan) = loans.remove(target) {
                self.bytes -= loan.package.len();
            }
            if loans.is_empty() {
                self.by_fetcher.remove(fetcher);
            }
        }
    }

    /// Forgets loans older than [`WINDOW`], then the oldest ones, until `room` more bytes
    /// fit in [`MAX_LENT_BYTES`].
    fn make_room(&mut self, room: usize, now: Instant) {
        if self.bytes + room <= MAX_LENT_BYTES {
            return;
        }
        let mut bytes = self.bytes;
        for loans in self.by_fetcher.values_mut() {
            loans.retain(|_, loan| {
                let keep = now.saturating_duration_since(loan.at) < WINDOW;
                if !keep {
                    bytes -= loan.package.len();
                }
                keep
            });
        }
        self.by_fetcher.retain(|_, loans| !loans.is_empty());
        self.bytes = bytes;
        while self.bytes + room > MAX_LENT_BYTES {
            let oldest = self
                .by_fetcher
                .iter()
                .flat_map(|(fetcher, loans)| loans.iter().map(move |(t, l)| (l.order, *fetcher, t)))
                .min_by_key(|(order, _, _)| *order)
                .map(|(_, fetcher, target)| (fetcher, target.clone()));
            match oldest {
                Some((fetcher, target)) => self.remove(&fetcher, &target),
                None => break,
            }
        }
    }
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
    fn lent(&self) -> std::sync::MutexGuard<'_, Lent> {
        // Every update leaves the table consistent before anything can panic.
        self.lent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a fetch of `target`'s package by `fetcher` at `now`; `false` if a limit
    /// is reached (then nothing is counted against the target).
    pub fn allow(&self, fetcher: AccountKey, target: &Handle, now: Instant) -> bool {
        if !count(&self.pairs, (fetcher, target.clone()), PER_PAIR, now) {
            return false;
        }
        count(&self.targets, target.clone(), PER_TARGET, now)
    }

    /// The package handed to `fetcher` for `target` earlier, if it may be handed out again
    /// to `session` (see the module documentation): the target's account it names, and
    /// its bytes. It is `session`'s from now on. The caller still checks that it has not
    /// expired and that the target's account is the same, and calls
    /// [`KeyPackageFetches::forget`] if not.
    pub fn again(
        &self,
        fetcher: AccountKey,
        target: &Handle,
        session: u64,
        now: Instant,
    ) -> Option<(AccountKey, Vec<u8>)> {
        let mut lent = self.lent();
        let loan = lent.by_fetcher.get_mut(&fetcher)?.get_mut(target)?;
        if now.saturating_duration_since(loan.at) >= WINDOW {
            lent.remove(&fetcher, target);
            return None;
        }
        if loan.session == session {
            return None;
        }
        loan.session = session;
        Some((loan.account, loan.package.clone()))
    }

    /// Records that `session` of `fetcher` was handed `package` (naming `account`) for
    /// `target`.
    pub fn lend(
        &self,
        fetcher: AccountKey,
        target: &Handle,
        session: u64,
        account: AccountKey,
        package: &[u8],
        now: Instant,
    ) {
        if package.len() > MAX_LENT_BYTES / 16 {
            return;
        }
        let mut lent = self.lent();
        lent.remove(&fetcher, target);
        lent.make_room(package.len(), now);
        lent.bytes += package.len();
        lent.next_order += 1;
        let order = lent.next_order;
        lent.by_fetcher.entry(fetcher).or_default().insert(
            target.clone(),
            Loan {
                account,
                package: package.to_vec(),
                at: now,
                session,
                order,
            },
        );
    }

    /// `fetcher` sent a commit or deposited a Welcome: it may have used any package it was
    /// handed, so none is handed out again.
    pub fn committed(&self, fetcher: &AccountKey) {
        let mut lent = self.lent();
        if let Some(loans) = lent.by_fetcher.remove(fetcher) {
            lent.bytes -= loans.values().map(|l| l.package.len()).sum::<usize>();
        }
    }

    /// Forgets the package handed to `fetcher` for `target` (it expired, or the target's
    /// key changed).
    pub fn forget(&self, fetcher: &AccountKey, target: &Handle) {
        self.lent().remove(fetcher, target);
    }

    /// Bytes of packages kept to hand out again.
    pub fn lent_bytes(&self) -> usize {
        self.lent().bytes
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

    #[test]
    fn a_package_is_handed_out_again_only_to_another_connection_and_until_a_commit() {
        let fetches = KeyPackageFetches::default();
        let now = Instant::now();
        let (alice, bob) = (AccountKey([1; 32]), AccountKey([2; 32]));
        assert_eq!(
            fetches.again(alice, &h("bob"), 1, now),
            None,
            "nothing lent yet"
        );
        fetches.lend(alice, &h("bob"), 1, bob, b"p1", now);
        assert_eq!(
            fetches.again(alice, &h("bob"), 1, now),
            None,
            "the same connection may be inviting twice at once"
        );
        assert_eq!(
            fetches.again(alice, &h("bob"), 2, now),
            Some((bob, b"p1".to_vec()))
        );
        assert_eq!(
            fetches.again(alice, &h("bob"), 2, now),
            None,
            "connection 2 has it now"
        );
        assert_eq!(
            fetches.again(alice, &h("bob"), 3, now),
            Some((bob, b"p1".to_vec()))
        );
        assert_eq!(
            fetches.again(AccountKey([3; 32]), &h("bob"), 4, now),
            None,
            "another fetcher"
        );
        assert_eq!(
            fetches.again(alice, &h("carol"), 4, now),
            None,
            "another target"
        );
        assert_eq!(
            fetches.again(alice, &h("bob"), 4, now + WINDOW),
            None,
            "a window later"
        );

        fetches.lend(alice, &h("bob"), 5, bob, b"p2", now);
        fetches.committed(&alice);
        assert_eq!(
            fetches.again(alice, &h("bob"), 6, now),
            None,
            "a commit may have used it"
        );
        assert_eq!(fetches.lent_bytes(), 0);
    }

    #[test]
    fn packages_kept_to_hand_out_again_are_bounded_in_bytes() {
        let fetches = KeyPackageFetches::default();
        let now = Instant::now();
        let package = vec![7u8; 64 * 1024];
        for n in 0..=255u8 {
            fetches.lend(
                AccountKey([n; 32]),
                &h("bob"),
                1,
                AccountKey([0; 32]),
                &package,
                now,
            );
            assert!(fetches.lent_bytes() <= MAX_LENT_BYTES);
        }
        // The newest are kept, the oldest forgotten.
        assert!(fetches
            .again(AccountKey([255; 32]), &h("bob"), 2, now)
            .is_some());
        assert!(fetches
            .again(AccountKey([0; 32]), &h("bob"), 2, now)
            .is_none());
    }
}
