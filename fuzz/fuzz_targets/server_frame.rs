//! What a client decodes from a relay: frames of `ServerFrame`.
#![no_main]

use hearth_protocol::frame::decode_frame;
use hearth_protocol::limits::MAX_FRAME_LEN;
use hearth_protocol::messages::ServerFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((_frame, used))) = decode_frame::<ServerFrame>(rest, MAX_FRAME_LEN) {
        rest = &rest[used..];
    }
});
