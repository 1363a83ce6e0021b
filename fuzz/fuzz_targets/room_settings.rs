//! The room policy extension a member decodes from a group context another member wrote.
#![no_main]

use hearth_core::mls::config::RoomSettings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(settings) = RoomSettings::decode(data) {
        assert_eq!(RoomSettings::decode(&settings.encode()).ok(), Some(settings));
    }
});
