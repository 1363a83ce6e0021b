//! What a client opens from its relay inbox before anything else: a sealed payload
//! (decision 0013), from any registered account or a hostile relay.
#![no_main]

use hearth_core::identity::Identity;
use hearth_core::sealed::{open, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let recipient = Identity::from_secret_bytes(&[7; 32]);
    // Arbitrary bytes never open (they would need our key's HPKE context) and never panic.
    let _ = open(&recipient, data);
    // Whatever is sealed to us opens to the same bytes and names its sender.
    let sender = Identity::from_secret_bytes(&[9; 32]);
    if let Ok(sealed) = seal(&sender, &recipient.account(), data) {
        let opened = open(&recipient, &sealed).expect("a fresh seal opens");
        assert_eq!(opened.message, data);
        assert_eq!(opened.sender, sender.account());
    }
});
