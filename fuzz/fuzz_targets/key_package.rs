//! What the relay reads of a published KeyPackage (from any registered account) before it
//! stores it, and again before it hands it out: it must refuse, never panic.
#![no_main]

use hearth_protocol::{AccountKey, Handle};
use hearth_relay::key_packages::{check_published, is_expired};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let handle = Handle::new("dave").expect("a valid handle");
    let _ = check_published(data, &AccountKey([7; 32]), &handle);
    let _ = is_expired(data);
});
