//! What a member decodes from another member's MLS application message: `Content`.
#![no_main]

use hearth_core::content::Content;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(content) = Content::decode(data) {
        // Whatever decodes re-encodes to something that decodes to the same value.
        assert_eq!(Content::decode(&content.encode()).as_ref(), Ok(&content));
    }
});
