//! The relay's configuration file (`hearth-relay.toml`), written by its owner by hand:
//! the TOML parser with hearth's checks (`RelayConfig::parse`, what `load` does with the
//! file). A file that loads must not make the relay panic later: every timer the relay
//! arms from it (`Instant::now() + the setting`) must be representable.
#![no_main]

use std::path::Path;
use std::time::Duration;

use hearth_relay::RelayConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = RelayConfig::parse(text, Path::new("hearth-relay.toml")) else {
        return;
    };
    let now = std::time::Instant::now();
    for (name, secs) in config.timers() {
        assert!(
            now.checked_add(Duration::from_secs(secs)).is_some(),
            "{name} = {secs} loads, but the relay's timer would overflow"
        );
    }
});
