//! What a client's connection reader (`transport::frames::read_frame`, the loop of its
//! reader task) makes of the relay's stream: `ServerFrame`s in reads of any sizes, until
//! the end, an incomplete frame or garbage. The first byte sets the size of every read
//! (1 to 256 bytes), the rest is the stream.
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use hearth_core::transport::frames::read_frame;
use hearth_protocol::messages::ServerFrame;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// A stream that hands out at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

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
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let mut reader = Chunked {
        data: stream,
        chunk: usize::from(chunk) + 1,
    };
    let mut buf = Vec::new();
    while let Ok(Some(_frame)) = now(read_frame::<_, ServerFrame>(&mut reader, &mut buf)) {}
});
