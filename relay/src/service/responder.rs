//! Answers to committed requests, written by the group-commit writer straight into the
//! connection's [`Outbox`] (issue 15).
//!
//! A request that waits for a durable commit used to be answered through a oneshot
//! channel: a task per request awaited it and woke the connection's request loop, which
//! encoded the response and queued it. At a few thousand appends per second that was a
//! task spawn and two wake-ups per request on the relay's one async thread. Now the
//! writer, right after the commit, encodes the response and queues it on the
//! connection's outbox itself; the request loop is woken only when it must act:
//!
//! - the outbox refused the response (the client does not read its answers): the loop
//!   closes the connection, as it does when its own push fails;
//! - the connection had [`Responder::LIMIT`] requests waiting and one was answered: the
//!   loop reads the client's next request again;
//! - the loop is closing and the last waiting request was answered.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use hearth_protocol::frame::encode_frame;
use hearth_protocol::limits::MAX_FRAME_LEN;
use hearth_protocol::{ErrorCode, Response, ServerFrame, WireError};
use tokio::sync::Notify;

use super::outbox::{Outbox, Outgoing, PushError};
use crate::store::{Applied, OpResult};

/// Turns what the store applied into the response the request gets.
pub(crate) type ToResponse = Box<dyn FnOnce(Applied) -> Response + Send>;

/// One connection's requests waiting for a commit, and where their answers go.
pub struct Responder {
    outbox: Arc<Outbox>,
    waiting: AtomicUsize,
    refused: AtomicBool,
    closing: AtomicBool,
    changed: Notify,
}

/// A request of one connection waiting for its commit (counted by its [`Responder`]
/// until answered or dropped).
pub(crate) struct Answer {
    id: u32,
    to_response: Option<ToResponse>,
    responder: Arc<Responder>,
}

impl Responder {
    /// Requests of one connection that may wait for a commit at the same time; the
    /// connection reads no further request while this many wait.
    pub const LIMIT: usize = 1024;

    /// Answers go to `outbox`.
    pub fn new(outbox: Arc<Outbox>) -> Arc<Self> {
        Arc::new(Self {
            outbox,
            waiting: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    /// Counts one more request waiting for its commit, answered as request `id`.
    pub(crate) fn wait_for(self: &Arc<Self>, id: u32, to_response: ToResponse) -> Answer {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Answer {
            id,
            to_response: Some(to_response),
            responder: self.clone(),
        }
    }

    /// Requests waiting for their commit.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Whether the connection may read another request (fewer than [`Responder::LIMIT`]
    /// wait).
    pub fn has_room(&self) -> bool {
        self.waiting() < Self::LIMIT
    }

    /// Whether an answer did not fit the outbox: the client does not read.
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::SeqCst)
    }

    /// Waits until something above changed (an answer was refused, room was made at the
    /// limit, or the last answer went out while closing). May return early; look again.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Waits until every waiting request was answered (the connection is ending; its
    /// commits land whatever happens, and their answers go out before the close).
    pub async fn all_answered(&self) {
        self.closing.store(true, Ordering::SeqCst);
        loop {
            // Registered before the count is read, so the last answer's wake-up cannot
            // fall between the two; and woken with every other waiter, so one the loop
            // still holds (its `changed`) cannot take it instead.
            let last_answered = self.changed.notified();
            tokio::pin!(last_answered);
            last_answered.as_mut().enable();
            if self.waiting() == 0 {
                return;
            }
            last_answered.await;
        }
    }

    fn done(&self) {
        let before = self.waiting.fetch_sub(1, Ordering::SeqCst);
        if before == Self::LIMIT {
            // A permit is kept if the loop is not waiting yet: no wake-up is lost.
            self.changed.notify_one();
        }
        if before == 1 && self.closing.load(Ordering::SeqCst) {
            self.changed.notify_waiters();
        }
    }
}

impl Answer {
    /// Queues the response to the committed request on the connection.
    pub(crate) fn send(mut self, result: OpResult) {
        let Some(to_response) = self.to_response.take() else {
            return;
        };
        let frame = response_frame(self.id, result.map(to_response));
        match self.responder.outbox.push(frame) {
            Ok(()) | Err(PushError::Closed) => {}
            Err(PushError::Full) => {
                self.responder.refused.store(true, Ordering::SeqCst);
                self.responder.changed.notify_one();
            }
        }
        // No longer waiting: counted off as `self` drops.
    }
}

impl Drop for Answer {
    /// Answered, or dropped unsent (the writer is gone): either way no longer waiting.
    fn drop(&mut self) {
        self.responder.done();
    }
}

/// The response frame to request `id`, ready for the outbox.
pub(crate) fn response_frame(id: u32, result: Result<Response, WireError>) -> Outgoing {
    encoded(&ServerFrame::Response { id, result })
}

/// Encodes a frame for the outbox; a frame too large is answered `Internal` instead.
pub(crate) fn encoded<T: serde::Serialize>(frame: &T) -> Outgoing {
    match encode_frame(frame, MAX_FRAME_LEN) {
        Ok(bytes) => Outgoing::Frame(bytes),
        Err(e) => {
            // Responses are cut to fit a frame before they get here; should one not,
            // the client still gets an answer.
            tracing::error!(error = %e, "response does not encode; answering Internal");
            let fallback = ServerFrame::Response {
                id: 0,
                result: Err(WireError::new(
                    ErrorCode::Internal,
                    "the answer did not fit a frame",
                )),
            };
            Outgoing::Frame(encode_frame(&fallback, MAX_FRAME_LEN).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hearth_protocol::frame::decode_body;
    use hearth_protocol::Seq;

    use super::*;
    use crate::service::metrics::Metrics;

    fn appended() -> OpResult {
        Ok(Applied::Done)
    }

    fn to_seq(seq: u64) -> ToResponse {
        Box::new(move |_| Response::Appended { seq: Seq(seq) })
    }

    /// The frames queued on `outbox`, decoded.
    async fn queued(outbox: &Outbox) -> Vec<ServerFrame> {
        let mut items = Vec::new();
        let cost = outbox.next_batch(&mut items, usize::MAX).await.unwrap();
        outbox.written(cost);
        items
            .into_iter()
            .map(|item| match item {
                Outgoing::Frame(bytes) => decode_body(&bytes[4..]).unwrap(),
                other => panic!("not a frame: {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn an_answer_is_queued_as_the_response_to_its_request_and_counted_off() {
        let outbox = Outbox::new(1 << 20, Arc::new(Metrics::default()));
        let responder = Responder::new(outbox.clone());
        let first = responder.wait_for(7, to_seq(41));
        let second = responder.wait_for(8, to_seq(42));
        assert_eq!(responder.waiting(), 2);
        second.send(appended());
        first.send(Err(WireError::new(ErrorCode::QuotaExceeded, "full")));
        assert_eq!(responder.waiting(), 0);
        let frames = queued(&outbox).await;
        assert!(
            matches!(
                &frames[..],
                [
                    ServerFrame::Response { id: 8, result: Ok(Response::Appended { seq: Seq(42) }) },
                    ServerFrame::Response { id: 7, result: Err(e) },
                ] if e.code == ErrorCode::QuotaExceeded
            ),
            "{frames:?}"
        );
        assert!(!responder.refused());
    }

    #[tokio::test]
    async fn an_answer_dropped_unsent_no_longer_waits() {
        let outbox = Outbox::new(1 << 20, Arc::new(Metrics::default()));
        let responder = Responder::new(outbox);
        let answer = responder.wait_for(1, to_seq(1));
        drop(answer);
        assert_eq!(responder.waiting(), 0);
        tokio::time::timeout(Duration::from_secs(5), responder.all_answered())
            .await
            .expect("nothing waits");
    }

    /// A client that does not read its answers: the one that does not fit marks the
    /// connection, and its loop is woken to close it.
    #[tokio::test]
    async fn an_answer_that_does_not_fit_the_outbox_wakes_the_connection_to_close_it() {
        let outbox = Outbox::new(64, Arc::new(Metrics::default()));
        outbox.push(Outgoing::Frame(vec![0; 60])).unwrap();
        let responder = Responder::new(outbox);
        let changed = responder.changed();
        let answer = responder.wait_for(1, to_seq(1));
        answer.send(appended());
        assert!(responder.refused());
        tokio::time::timeout(Duration::from_secs(5), changed)
            .await
            .expect("the connection is woken");
    }

    #[tokio::test]
    async fn a_connection_at_the_limit_is_woken_when_an_answer_makes_room() {
        let outbox = Outbox::new(1 << 20, Arc::new(Metrics::default()));
        let responder = Responder::new(outbox);
        let mut answers: Vec<Answer> = (0..Responder::LIMIT as u32)
            .map(|id| responder.wait_for(id, to_seq(1)))
            .collect();
        assert!(!responder.has_room());
        let changed = responder.changed();
        answers.pop().unwrap().send(appended());
        assert!(responder.has_room());
        tokio::time::timeout(Duration::from_secs(5), changed)
            .await
            .expect("woken when room is made");
    }

    /// The loop still holds its `changed` waiter (registered in an earlier turn) when it
    /// waits for its last answer: that waiter must not take the wake-up meant for the
    /// close.
    #[tokio::test]
    async fn a_waiter_left_from_the_loop_does_not_keep_the_close_waiting() {
        let outbox = Outbox::new(1 << 20, Arc::new(Metrics::default()));
        let responder = Responder::new(outbox);
        let answer = responder.wait_for(1, to_seq(1));
        let stale = responder.changed();
        tokio::pin!(stale);
        assert!(
            futures_poll_once(stale.as_mut()).await.is_none(),
            "nothing to wake yet"
        );
        let closing = tokio::spawn({
            let responder = responder.clone();
            async move { responder.all_answered().await }
        });
        tokio::task::yield_now().await;
        answer.send(appended());
        tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .expect("the close goes on although an older waiter is registered")
            .unwrap();
    }

    /// Polls `future` once: `Some` if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[tokio::test]
    async fn a_closing_connection_waits_for_its_last_answer() {
        let outbox = Outbox::new(1 << 20, Arc::new(Metrics::default()));
        let responder = Responder::new(outbox.clone());
        let answer = responder.wait_for(3, to_seq(9));
        let closing = tokio::spawn({
            let responder = responder.clone();
            async move { responder.all_answered().await }
        });
        tokio::task::yield_now().await;
        assert!(!closing.is_finished(), "an answer is still due");
        answer.send(appended());
        tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .expect("the close goes on once answered")
            .unwrap();
        assert_eq!(queued(&outbox).await.len(), 1);
    }
}
