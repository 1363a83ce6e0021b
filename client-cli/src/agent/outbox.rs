//! What the agent sends back to one caller, queued and bounded in bytes.
//!
//! A caller that stops reading (a chat window suspended with Ctrl-Z, a stalled SSH
//! session, `hearth history | less` left waiting) must not make the agent's memory grow
//! with everything the others write meanwhile. Messages are encoded when queued, so the
//! bound counts the bytes that would go on the socket; past [`CALLER_QUEUE_BYTES`] the
//! caller is cut off: told why (when it reads again) and its command stops, as if it had
//! gone. Who it hits: only that one window of that one person; the agent and its other
//! windows go on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::wire::{self, ToCaller};

/// The most bytes of encoded messages waiting for one caller.
pub const CALLER_QUEUE_BYTES: usize = 8 << 20;

/// What a caller that fell behind is told, as the error of its command.
pub const FELL_BEHIND: &str = "this window fell more than 8 MiB of output behind and was \
    cut off (was it suspended?): open it again; nothing was lost, the messages are in \
    `hearth history`";

#[derive(Default)]
struct Shared {
    queued: AtomicUsize,
    overflowed: AtomicBool,
}

/// The sending half, one per caller; cheap to clone.
#[derive(Clone)]
pub struct CallerTx {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
}

/// The receiving half, read by the caller's socket writer.
pub struct CallerRx {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
}

/// A new queue for one caller.
pub fn channel() -> (CallerTx, CallerRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::default());
    (
        CallerTx {
            tx,
            shared: shared.clone(),
        },
        CallerRx { rx, shared },
    )
}

impl CallerTx {
    /// Queues `message`; `false` when it was not queued (the caller is gone or was cut
    /// off for falling behind).
    pub fn send(&self, message: ToCaller) -> bool {
        if self.shared.overflowed.load(Ordering::Acquire) {
            return false;
        }
        let Ok(line) = wire::encode(&message) else {
            return false;
        };
        let len = line.len();
        let before = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > CALLER_QUEUE_BYTES {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.shared.overflowed.store(true, Ordering::Release);
            // Wakes the writer, which then says why and stops.
            let _ = self.tx.send(Vec::new());
            return false;
        }
        self.tx.send(line).is_ok()
    }

    /// Whether the caller was cut off for falling behind.
    #[cfg(test)]
    fn fell_behind(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire)
    }
}

/// What the writer does next.
pub enum Next {
    /// Write these bytes (one encoded message, newline included).
    Write(Vec<u8>),
    /// The caller fell behind: tell it [`FELL_BEHIND`] and stop writing.
    FellBehind,
}

impl CallerRx {
    /// The next thing to write; `None` when every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Next> {
        let line = self.rx.recv().await?;
        if self.shared.overflowed.load(Ordering::Acquire) {
            return Some(Next::FellBehind);
        }
        self.shared.queued.fetch_sub(line.len(), Ordering::AcqRel);
        Some(Next::Write(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caller_that_stops_reading_is_cut_off_at_the_bound_in_bytes() {
        let (tx, mut rx) = channel();
        let line = "x".repeat(60_000);
        let mut queued = 0;
        while tx.send(ToCaller::Out(line.clone())) {
            queued += 1;
            assert!(queued < 1000, "the queue never refused");
        }
        assert!(tx.fell_behind());
        let each = wire::encode(&ToCaller::Out(line)).unwrap().len();
        assert!(
            queued * each <= CALLER_QUEUE_BYTES,
            "never more than the bound"
        );
        assert!(
            (queued + 1) * each > CALLER_QUEUE_BYTES,
            "filled up to the bound"
        );
        assert!(
            !tx.send(ToCaller::Out("later".into())),
            "nothing more is queued"
        );
        assert!(matches!(rx.recv().await, Some(Next::FellBehind)));
    }

    #[tokio::test]
    async fn a_caller_that_reads_gets_everything_in_order() {
        let (tx, mut rx) = channel();
        for i in 0..3 {
            assert!(tx.send(ToCaller::Out(format!("line {i}"))));
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(Next::Write(bytes)) = rx.recv().await {
            got.push(String::from_utf8(bytes).unwrap());
        }
        assert_eq!(
            got,
            [
                "{\"Out\":\"line 0\"}\n",
                "{\"Out\":\"line 1\"}\n",
                "{\"Out\":\"line 2\"}\n"
            ]
        );
    }
}
