//! The relay's admin socket reader (`admin::read_frame`, the loop of `admin::serve`) fed
//! whatever a peer of the socket sends: frame after frame until the end or an error, each
//! body decoded as the relay does (`AdminRequest`) and as `hearth-relay <command>` does
//! with the relay's answer (`AdminResponse`).
#![no_main]

use std::future::Future;
use std::task::{Context, Poll, Waker};

use hearth_protocol::frame::{decode_body, encode_frame};
use hearth_protocol::limits::{LENGTH_PREFIX_LEN, MAX_FRAME_LEN};
use hearth_relay::admin::{read_frame, AdminRequest, AdminResponse};
use libfuzzer_sys::fuzz_target;

/// Runs a future that never waits (reading from memory), to its end.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("reading from memory waited"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut stream: &[u8] = data;
    while let Ok(Some(body)) = now(read_frame(&mut stream)) {
        assert!(
            body.len() <= MAX_FRAME_LEN,
            "a frame over the limit was read"
        );
        if let Ok(request) = decode_body::<AdminRequest>(&body) {
            let again =
                encode_frame(&request, MAX_FRAME_LEN).expect("a decoded request re-encodes");
            assert_eq!(
                decode_body::<AdminRequest>(&again[LENGTH_PREFIX_LEN..]),
                Ok(request)
            );
        }
        let _ = decode_body::<AdminResponse>(&body);
    }
});
