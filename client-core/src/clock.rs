//! Time as hearth judges it: the relay's clock, not the device's.
//!
//! Every log entry carries the time the relay stored it, and disappearing messages expire
//! by that time. A device whose clock is off would then hide fresh messages (clock ahead)
//! or keep expired ones (clock behind). So the client learns the relay's clock at every
//! authentication (`Authenticated { now }`) and judges ages against the device's clock
//! corrected by the difference ([`RelayClock`]).
//!
//! Tests shift the device's clock with [`set_test_clock_offset`], the way a machine with a
//! wrong clock would be.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A difference between the relay's clock and ours that is worth telling the user about.
pub const NOTABLE_SKEW: Duration = Duration::from_secs(5 * 60);

static TEST_OFFSET_SECS: AtomicI64 = AtomicI64::new(0);

/// Shifts this process's idea of the device clock by `secs` (tests only: a machine whose
/// clock is wrong by that much).
#[doc(hidden)]
pub fn set_test_clock_offset(secs: i64) {
    TEST_OFFSET_SECS.store(secs, Ordering::SeqCst);
}

/// The device's clock.
pub fn device_now() -> SystemTime {
    shift(SystemTime::now(), TEST_OFFSET_SECS.load(Ordering::SeqCst))
}

fn shift(time: SystemTime, secs: i64) -> SystemTime {
    let by = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        time.checked_add(by).unwrap_or(time)
    } else {
        time.checked_sub(by).unwrap_or(UNIX_EPOCH)
    }
}

/// The relay's clock minus ours, in seconds, as last measured.
#[derive(Debug, Default)]
pub struct RelayClock(AtomicI64);

impl RelayClock {
    /// Records the relay's time `relay_secs` (seconds since the Unix epoch) read now;
    /// returns the difference (relay minus device), in seconds.
    pub fn observe(&self, relay_secs: u64) -> i64 {
        let device = device_now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let skew = i64::try_from(relay_secs)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(device).unwrap_or(i64::MAX));
        self.0.store(skew, Ordering::SeqCst);
        skew
    }

    /// `device` (a time read from the device's clock) as the relay's clock shows it.
    pub fn relay_time(&self, device: SystemTime) -> SystemTime {
        shift(device, self.0.load(Ordering::SeqCst))
    }

    /// The relay's clock now.
    pub fn now(&self) -> SystemTime {
        self.relay_time(device_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_a_day_ahead_reads_the_relays_time() {
        let clock = RelayClock::default();
        let day = 86_400;
        let relay = SystemTime::now();
        let relay_secs = relay.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let device_ahead = shift(relay, day);
        // As if the device read its clock a day ahead while the relay said `relay_secs`.
        clock.0.store(-day, Ordering::SeqCst);
        let seen = clock.relay_time(device_ahead);
        assert_eq!(
            seen.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            relay_secs
        );
        assert!(
            clock.observe(relay_secs).abs() <= 2,
            "no offset in this process"
        );
    }
}
