//! Transcript consistency (DESIGN 7): detect a relay that drops entries or shows members
//! different histories.
//!
//! Every member keeps a running hash over the room log as it received it:
//!
//! `h_n = SHA-256("hearth-transcript-v1" || h_{n-1} || seq_be64 || kind || payload)`
//!
//! where `kind` is 0 for a message and 1 for a commit. Each message carries the sender's
//! last `(seq, h_seq)`. A receiver that knows its own hash at that seq compares: a
//! mismatch is a fork. A received seq that skips ahead of the last one is a gap.
//!
//! Sans-IO: the type takes entries and marks and returns warnings.

use std::collections::BTreeMap;

use hearth_protocol::{EntryKind, Seq};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain separator of transcript hashes.
pub const TRANSCRIPT_DOMAIN: &[u8] = b"hearth-transcript-v1";

/// How many recent (seq, hash) pairs are kept to check incoming marks.
pub const KEEP_RECENT: usize = 512;

/// Something about the room log that does not add up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsistencyWarning {
    /// Entries between `expected` and `got` never arrived: the relay dropped something.
    Gap {
        /// The sequence number that should have come next.
        expected: Seq,
        /// The sequence number that came instead.
        got: Seq,
    },
    /// A member's message says the log at `seq` hashed differently for them: the relay
    /// showed members different histories.
    Fork {
        /// Where the histories differ.
        seq: Seq,
    },
    /// The relay's log went back: it lost or withdrew entries we already processed
    /// (restored from an old copy, or rewound on purpose). Its log now ends at `relay`,
    /// or goes on after `relay` with entries other than the ones we had.
    Rewound {
        /// The last seq we processed.
        ours: Seq,
        /// The last seq where the relay's log is still the one we processed.
        relay: Seq,
    },
    /// The relay lists no admins for the room though it listed them before: it lost its
    /// data, or it is finding out who owns which room (setting the list again would take
    /// the owner's signed-in account, so the owner's client does not; decision 0013).
    AdminsForgotten,
}

impl std::fmt::Display for ConsistencyWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsistencyWarning::Gap { expected, got } => write!(
                f,
                "messages {expected}..{got} are missing: they expired, or the relay dropped them"
            ),
            ConsistencyWarning::Rewound { ours, relay } => write!(
                f,
                "the relay's log went back to message {relay} though you already had up to {ours}: it lost or withdrew messages (restored from an old copy?); what you saw after {relay} may not have reached everyone"
            ),
            ConsistencyWarning::AdminsForgotten => f.write_str(
                "the relay no longer lists this room's admins though it did before (its data lost, or a relay finding out who owns which room): its settings at the relay cannot be changed until the owner rebuilds the room",
            ),
            ConsistencyWarning::Fork { seq } => write!(
                f,
                "the room history at message {seq} differs between members: the relay may be showing different histories"
            ),
        }
    }
}

/// The running transcript hash of one room, plus recent values to check marks against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    last: Seq,
    hash: [u8; 32],
    recent: BTreeMap<u64, [u8; 32]>,
}

impl Transcript {
    /// A transcript for a room whose log is empty (its creator).
    pub fn new() -> Self {
        Self::starting_at(Seq(0), [0; 32])
    }

    /// A transcript starting from someone else's hash at `seq` (a joiner uses the
    /// inviter's value from the Welcome).
    pub fn starting_at(seq: Seq, hash: [u8; 32]) -> Self {
        let mut recent = BTreeMap::new();
        recent.insert(seq.0, hash);
        Transcript {
            last: seq,
            hash,
            recent,
        }
    }

    /// The last sequence number hashed.
    pub fn last(&self) -> Seq {
        self.last
    }

    /// The current hash (at [`Self::last`]).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Our hash at `seq`, if still kept.
    pub fn hash_at(&self, seq: Seq) -> Option<[u8; 32]> {
        self.recent.get(&seq.0).copied()
    }

    /// Goes back to `seq`, as if nothing after it had been observed (the relay's log
    /// now ends there; see [`ConsistencyWarning::Rewound`]). Uses the kept hash at `seq`,
    /// or starts afresh at `seq` when it is older than what is kept (marks before it can
    /// no longer be checked).
    pub fn rewind_to(&mut self, seq: Seq) {
        if seq >= self.last {
            return;
        }
        match self.recent.get(&seq.0).copied() {
            Some(hash) => {
                self.recent.retain(|s, _| *s <= seq.0);
                self.last = seq;
                self.hash = hash;
            }
            None => *self = Self::starting_at(seq, [0; 32]),
        }
    }

    /// Whether the entry at `seq` is the one we processed there: `None` when we cannot
    /// tell (not processed yet, or our hashes at `seq` or just before it are no longer
    /// kept, as for a joiner's first seq).
    pub fn holds(&self, seq: Seq, kind: EntryKind, payload: &[u8]) -> Option<bool> {
        if seq > self.last {
            return None;
        }
        let before = self.recent.get(&seq.0.checked_sub(1)?)?;
        let ours = self.recent.get(&seq.0)?;
        Some(Self::chain(before, seq, kind, payload) == *ours)
    }

    /// The oldest seq whose entry [`Self::holds`] can check, if any.
    pub fn oldest_checkable(&self) -> Option<Seq> {
        let first = *self.recent.keys().next()?;
        (first < self.last.0).then_some(Seq(first + 1))
    }

    /// The mark a sent message carries.
    pub fn mark(&self) -> (Seq, [u8; 32]) {
        (self.last, self.hash)
    }

    /// The next hash after an entry, without recording it.
    pub fn chain(prev: &[u8; 32], seq: Seq, kind: EntryKind, payload: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(TRANSCRIPT_DOMAIN);
        h.update(prev);
        h.update(seq.0.to_be_bytes());
        h.update([match kind {
            EntryKind::Message => 0u8,
            EntryKind::Commit => 1u8,
        }]);
        h.update(payload);
        h.finalize().into()
    }

    /// Records an entry of the log. Entries at or before [`Self::last`] are ignored
    /// (returns `None` and does not change anything); a skip ahead yields a gap warning
    /// and is hashed anyway, so processing continues.
    pub fn observe(
        &mut self,
        seq: Seq,
        kind: EntryKind,
        payload: &[u8],
    ) -> Option<Option<ConsistencyWarning>> {
        if seq <= self.last {
            return None;
        }
        let expected = self.last.next();
        let warning = (seq != expected).then_some(ConsistencyWarning::Gap { expected, got: seq });
        self.hash = Self::chain(&self.hash, seq, kind, payload);
        self.last = seq;
        self.recent.insert(seq.0, self.hash);
        while self.recent.len() > KEEP_RECENT {
            self.recent.pop_first();
        }
        Some(warning)
    }

    /// Checks a mark carried by a received message, after the message's own entry was
    /// [observed](Self::observe), against the hash we computed at the same seq. Marks
    /// for seqs before what we keep (before we joined, or too old) are not checked.
    ///
    /// A mark beyond [`Self::last`] is a fork too: the sender wrote its mark before its
    /// message was logged, so with an honest relay it is always below the message's own
    /// seq. Only a relay that renumbered the log (hiding entries from us without leaving
    /// a gap) puts it ahead of our log.
    pub fn check_mark(&self, (seq, hash): (Seq, [u8; 32])) -> Option<ConsistencyWarning> {
        if seq > self.last {
            return Some(ConsistencyWarning::Fork { seq });
        }
        match self.recent.get(&seq.0) {
            Some(ours) if *ours != hash => Some(ConsistencyWarning::Fork { seq }),
            _ => None,
        }
    }
}

/// A mark as a commit's authenticated data carries it: a version byte (1), then the
/// postcard encoding of `(seq, hash)`.
pub fn encode_mark(mark: (Seq, [u8; 32])) -> Vec<u8> {
    let mut bytes = vec![1u8];
    // A u64 and an array always encode.
    bytes.extend(postcard::to_allocvec(&mark).unwrap_or_default());
    bytes
}

/// Reads a mark from a commit's authenticated data (`None`: absent, another version, or
/// garbage; such a commit is simply not checked).
pub fn decode_mark(bytes: &[u8]) -> Option<(Seq, [u8; 32])> {
    match bytes.split_first() {
        Some((1, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

impl Default for Transcript {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewinding_continues_as_if_the_later_entries_never_came() {
        let mut withdrawn = Transcript::new();
        let mut straight = Transcript::new();
        for seq in 1..=3 {
            withdrawn.observe(Seq(seq), EntryKind::Message, b"x");
            straight.observe(Seq(seq), EntryKind::Message, b"x");
        }
        withdrawn.observe(Seq(4), EntryKind::Message, b"withdrawn");
        withdrawn.observe(Seq(5), EntryKind::Message, b"withdrawn too");
        withdrawn.rewind_to(Seq(3));
        assert_eq!(withdrawn.mark(), straight.mark());
        withdrawn.observe(Seq(4), EntryKind::Message, b"new");
        straight.observe(Seq(4), EntryKind::Message, b"new");
        assert_eq!(withdrawn, straight);
    }

    #[test]
    fn holds_tells_the_entry_we_processed_from_another_at_the_same_seq() {
        let mut t = Transcript::new();
        for seq in 1..=3 {
            t.observe(Seq(seq), EntryKind::Message, b"x");
        }
        assert_eq!(t.holds(Seq(3), EntryKind::Message, b"x"), Some(true));
        assert_eq!(t.holds(Seq(3), EntryKind::Message, b"y"), Some(false));
        assert_eq!(t.holds(Seq(3), EntryKind::Commit, b"x"), Some(false));
        assert_eq!(
            t.holds(Seq(4), EntryKind::Message, b"x"),
            None,
            "not processed yet"
        );
        assert_eq!(t.oldest_checkable(), Some(Seq(1)));
        // A joiner knows only its inviter's hash at its first seq: nothing there to check.
        let joiner = Transcript::starting_at(Seq(9), [7; 32]);
        assert_eq!(joiner.holds(Seq(9), EntryKind::Message, b"x"), None);
        assert_eq!(joiner.oldest_checkable(), None);
    }

    proptest::proptest! {
        #[test]
        fn commit_marks_round_trip(seq in proptest::prelude::any::<u64>(), hash in proptest::prelude::any::<[u8; 32]>()) {
            proptest::prop_assert_eq!(decode_mark(&encode_mark((Seq(seq), hash))), Some((Seq(seq), hash)));
        }

        #[test]
        fn garbage_is_no_commit_mark(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48)) {
            let _ = decode_mark(&bytes);
        }
    }

    #[test]
    fn same_log_same_hash() {
        let mut a = Transcript::new();
        let mut b = Transcript::new();
        for seq in 1..=5 {
            assert_eq!(a.observe(Seq(seq), EntryKind::Message, b"x"), Some(None));
            b.observe(Seq(seq), EntryKind::Message, b"x");
        }
        assert_eq!(a.hash(), b.hash());
        assert_eq!(b.check_mark(a.mark()), None);
    }

    #[test]
    fn a_joiner_continues_from_the_inviters_hash() {
        let mut inviter = Transcript::new();
        inviter.observe(Seq(1), EntryKind::Commit, b"c");
        let mut joiner = Transcript::starting_at(inviter.last(), inviter.hash());
        inviter.observe(Seq(2), EntryKind::Message, b"m");
        joiner.observe(Seq(2), EntryKind::Message, b"m");
        assert_eq!(joiner.check_mark(inviter.mark()), None);
        assert_eq!(joiner.hash(), inviter.hash());
    }

    #[test]
    fn a_skipped_seq_is_a_gap() {
        let mut t = Transcript::new();
        t.observe(Seq(1), EntryKind::Message, b"a");
        assert_eq!(
            t.observe(Seq(3), EntryKind::Message, b"c"),
            Some(Some(ConsistencyWarning::Gap {
                expected: Seq(2),
                got: Seq(3)
            }))
        );
        assert_eq!(t.last(), Seq(3));
    }

    #[test]
    fn replays_are_ignored() {
        let mut t = Transcript::new();
        t.observe(Seq(1), EntryKind::Message, b"a");
        let h = t.hash();
        assert_eq!(t.observe(Seq(1), EntryKind::Message, b"other"), None);
        assert_eq!(t.hash(), h);
    }

    #[test]
    fn a_different_history_is_a_fork() {
        let mut a = Transcript::new();
        let mut b = Transcript::new();
        a.observe(Seq(1), EntryKind::Message, b"shown to a");
        b.observe(Seq(1), EntryKind::Message, b"shown to b");
        assert_eq!(
            b.check_mark(a.mark()),
            Some(ConsistencyWarning::Fork { seq: Seq(1) })
        );
        // Seqs too old to be kept are not judged.
        let mut c = Transcript::starting_at(Seq(10), [7; 32]);
        c.observe(Seq(11), EntryKind::Message, b"m");
        assert_eq!(c.check_mark((Seq(3), [1; 32])), None);
    }

    #[test]
    fn a_mark_ahead_of_our_log_is_a_fork() {
        // The relay hid entries and renumbered: the sender saw seq 4, our log ends at 2.
        let mut t = Transcript::new();
        t.observe(Seq(1), EntryKind::Message, b"a");
        t.observe(Seq(2), EntryKind::Message, b"d");
        assert_eq!(
            t.check_mark((Seq(4), [1; 32])),
            Some(ConsistencyWarning::Fork { seq: Seq(4) })
        );
    }

    #[test]
    fn kind_is_bound() {
        let h = [0; 32];
        assert_ne!(
            Transcript::chain(&h, Seq(1), EntryKind::Message, b"x"),
            Transcript::chain(&h, Seq(1), EntryKind::Commit, b"x")
        );
    }
}
