//! The first frames of a connection: `ClientHello` (relay side) and `ServerHello` (client side).
#![no_main]

use hearth_protocol::frame::decode_body;
use hearth_protocol::messages::{ClientHello, ServerHello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_body::<ClientHello>(data);
    let _ = decode_body::<ServerHello>(data);
});
