//! What the relay decodes from its admin socket (`<data>/admin.sock`, mode 0600):
//! frames of `AdminRequest`; and what `hearth-relay <command>` decodes back: `AdminResponse`.
#![no_main]

use hearth_protocol::frame::{decode_body, decode_frame, encode_frame};
use hearth_protocol::limits::{LENGTH_PREFIX_LEN, MAX_FRAME_LEN};
use hearth_relay::admin::{AdminRequest, AdminResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The socket reader: frame after frame, as a connection sends them.
    let mut rest = data;
    while let Ok(Some((request, used))) = decode_frame::<AdminRequest>(rest, MAX_FRAME_LEN) {
        let again = encode_frame(&request, MAX_FRAME_LEN).expect("a decoded request re-encodes");
        let (back, _) = decode_frame::<AdminRequest>(&again, MAX_FRAME_LEN)
            .expect("re-encoded request decodes")
            .expect("re-encoded request is complete");
        assert_eq!(back, request);
        rest = &rest[used..];
    }
    // The command side decodes the relay's answer body.
    if let Ok(response) = decode_body::<AdminResponse>(data) {
        let again = encode_frame(&response, MAX_FRAME_LEN).expect("a decoded response re-encodes");
        assert_eq!(
            decode_body::<AdminResponse>(&again[LENGTH_PREFIX_LEN..]),
            Ok(response)
        );
    }
});
