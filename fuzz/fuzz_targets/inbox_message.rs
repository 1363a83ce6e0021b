//! What a client decodes from its relay inbox (deposited by any registered account).
#![no_main]

use hearth_core::content::InboxMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = InboxMessage::decode(data) {
        assert_eq!(InboxMessage::decode(&message.encode()).as_ref(), Ok(&message));
    }
});
