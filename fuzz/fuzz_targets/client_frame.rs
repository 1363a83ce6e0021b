//! What a relay decodes from a client: frames of `ClientFrame`, at any split point.
#![no_main]

use hearth_protocol::frame::decode_frame;
use hearth_protocol::limits::MAX_FRAME_LEN;
use hearth_protocol::messages::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Decode frame after frame, as a relay's reader does, until garbage or an incomplete frame.
    while let Ok(Some((frame, used))) = decode_frame::<ClientFrame>(rest, MAX_FRAME_LEN) {
        // Whatever decodes must re-encode and decode to the same value.
        let again = hearth_protocol::frame::encode_frame(&frame, MAX_FRAME_LEN).expect("a decoded frame re-encodes");
        let (back, _) = decode_frame::<ClientFrame>(&again, MAX_FRAME_LEN)
            .expect("re-encoded frame decodes")
            .expect("re-encoded frame is complete");
        assert_eq!(back, frame);
        rest = &rest[used..];
    }
});
