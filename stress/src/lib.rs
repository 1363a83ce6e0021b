//! Shared pieces of the stress tools (see `stress/README.md`):
//!
//! - [`binaries`]: where the real `hearth-relay` and `hearth` binaries are;
//! - [`relay`]: the relay as a child process (spawn, SIGKILL, restart, RSS, invites);
//! - [`people`]: in-process clients over real QUIC, with an event recorder each;
//! - [`cli`]: the `hearth` CLI as a child process that can be killed mid-command;
//! - [`stats`] and [`Rng`]: figures and a seeded random source, so a run can be repeated.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binaries;
pub mod cli;
pub mod people;
pub mod relay;
pub mod stats;

/// The passphrase of every profile the tools create.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A small seeded random source (SplitMix64): the tools print their seed, and `--seed`
/// repeats a run's choices (timing still varies).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from the clock, for runs that were not given one.
    pub fn clock_seed() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// An index below `len` (`len` > 0).
    pub fn index(&mut self, len: usize) -> usize {
        (self.next_u64() % len as u64) as usize
    }
}

/// Logs of the in-process clients to standard error, as `RUST_LOG` says (nothing
/// without it), e.g. `RUST_LOG=hearth_core=info` to see why reconnects take long.
pub fn log_from_env() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Makes in-process profiles cheap to create and unlock (the test-only KDF), and sets
/// `HEARTH_TEST_FAST_KDF=1` for the CLI processes the tools start.
pub fn fast_kdf() {
    hearth_core::store::set_test_kdf_params(Some(hearth_core::store::KdfParams::TEST_ONLY_FAST));
}
