//! Per-account token buckets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use hearth_protocol::AccountKey;

/// One token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets shared by every connection of an account.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<AccountKey, Bucket>>,
}

impl RateLimiter {
    /// `rate` tokens per second, at most `burst` saved up.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `account`'s bucket; `false` when it is empty.
    pub fn allow(&self, account: &AccountKey, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Forget full buckets so the map cannot grow without bound.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(*account).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(10.0, 5);
        let a = AccountKey([1; 32]);
        let b = AccountKey([2; 32]);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.allow(&a, t0));
        }
        assert!(!limiter.allow(&a, t0));
        assert!(limiter.allow(&b, t0), "accounts have separate buckets");
        assert!(!limiter.allow(&a, t0 + Duration::from_millis(50)));
        assert!(limiter.allow(&a, t0 + Duration::from_millis(160)));
        let later = t0 + Duration::from_secs(100);
        for _ in 0..5 {
            assert!(limiter.allow(&a, later));
        }
        assert!(!limiter.allow(&a, later), "never more than the burst");
    }
}
