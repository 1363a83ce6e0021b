//! How long the store's disk syncs take (issue 15): every acknowledged write waits for
//! one `fdatasync` of the database file, so its time is the floor of the relay's
//! latency on that disk. A slow SD card shows here first.
//!
//! The times are kept in a histogram of fixed size ([`BUCKETS`] counters, 4.6 KiB): 16
//! buckets per power of two of microseconds, so a quantile read from it is within 1/16
//! (6.25 %) of the true time. `hearth-relay status` shows it; `hearth-bench relay` takes
//! the difference of two snapshots to read the syncs of one run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Buckets per power of two.
const SUB: u64 = 16;
/// Powers of two covered above the first [`SUB`] microseconds: up to 2^40 µs (12 days).
const OCTAVES: u64 = 36;
/// Counters in a [`SyncTimes`].
pub const BUCKETS: usize = (SUB * (OCTAVES + 1)) as usize;

/// A histogram of sync times, updated by the committer and read by `status`.
#[derive(Debug)]
pub struct SyncTimes {
    counts: Box<[AtomicU64]>,
}

impl Default for SyncTimes {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl SyncTimes {
    /// Counts one sync that took `took`.
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> SyncHistogram {
        SyncHistogram {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let n = c.load(Ordering::Relaxed);
                    (n > 0).then_some((i as u16, n))
                })
                .collect(),
        }
    }
}

/// The bucket of a time of `us` microseconds: below [`SUB`] one per microsecond, above
/// it [`SUB`] per power of two.
fn bucket_of(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let octave = u64::from(63 - us.leading_zeros()); // >= 4
    let sub = (us >> (octave - 4)) & (SUB - 1);
    (((octave - 3) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The times of bucket `i`, in microseconds: `[low, high)`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i + 1);
    }
    let octave = i / SUB + 3;
    let sub = i % SUB;
    let width = 1u64 << (octave - 4);
    let low = (SUB + sub) << (octave - 4);
    (low, low + width)
}

/// Non-empty buckets of a [`SyncTimes`] at one moment, as `(bucket, count)` in bucket
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncHistogram {
    /// `(bucket, count)`, buckets ascending.
    pub buckets: Vec<(u16, u64)>,
}

impl SyncHistogram {
    /// Syncs counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|&(_, n)| n).sum()
    }

    /// The time under which a fraction `q` (0 to 1) of the syncs took, in milliseconds:
    /// the middle of the bucket that holds it. `None` when nothing was counted.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(i, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                // A histogram decoded from elsewhere may name any bucket.
                let (low, high) = bounds(usize::from(i).min(BUCKETS - 1));
                return Some((low + high) as f64 / 2.0 / 1000.0);
            }
        }
        None
    }

    /// The syncs counted since `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &SyncHistogram) -> SyncHistogram {
        let before = |i: u16| {
            earlier
                .buckets
                .iter()
                .find(|&&(j, _)| j == i)
                .map_or(0, |&(_, n)| n)
        };
        SyncHistogram {
            buckets: self
                .buckets
                .iter()
                .filter_map(|&(i, n)| {
                    let d = n.saturating_sub(before(i));
                    (d > 0).then_some((i, d))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_time_falls_in_the_bucket_that_bounds_it() {
        for us in (0..5000).chain([65_535, 1 << 20, 123_456_789]) {
            let (low, high) = bounds(bucket_of(us));
            assert!(low <= us && us < high, "{us} outside [{low}, {high})");
            assert!(high - low <= low.max(SUB) / SUB, "bucket of {us} too wide");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_counted_times() {
        let times = SyncTimes::default();
        for _ in 0..98 {
            times.record(Duration::from_micros(500));
        }
        times.record(Duration::from_millis(8));
        times.record(Duration::from_millis(40));
        let h = times.snapshot();
        assert_eq!(h.count(), 100);
        let p50 = h.quantile_ms(0.5).unwrap();
        assert!((0.49..0.52).contains(&p50), "p50 {p50}");
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((7.8..8.3).contains(&p99), "p99 {p99}");
        let max = h.quantile_ms(1.0).unwrap();
        assert!((39.0..41.5).contains(&max), "max {max}");
        assert_eq!(SyncHistogram::default().quantile_ms(0.5), None);
        let foreign = SyncHistogram {
            buckets: vec![(u16::MAX, 1)],
        };
        assert!(foreign.quantile_ms(0.5).is_some());
    }

    #[test]
    fn since_keeps_only_the_later_syncs() {
        let times = SyncTimes::default();
        times.record(Duration::from_millis(3));
        let before = times.snapshot();
        times.record(Duration::from_micros(700));
        times.record(Duration::from_micros(700));
        let run = times.snapshot().since(&before);
        assert_eq!(run.count(), 2);
        let p99 = run.quantile_ms(0.99).unwrap();
        assert!((0.68..0.72).contains(&p99), "p99 {p99}");
    }
}
