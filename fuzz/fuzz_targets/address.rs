//! Relay addresses and invites pasted by people (and read from profiles).
#![no_main]

use hearth_protocol::{Invite, RelayAddress};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(address) = text.parse::<RelayAddress>() {
            assert_eq!(address.to_string().parse::<RelayAddress>(), Ok(address));
        }
        if let Ok(invite) = text.parse::<Invite>() {
            assert_eq!(invite.to_string().parse::<Invite>(), Ok(invite));
        }
    }
});
