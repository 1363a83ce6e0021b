//! A [`Link`] over any byte stream pair carrying hearth frames: a writer behind a lock,
//! and a reader task that routes responses to their callers by id and forwards events.
//! When the stream ends, the reader learns why the connection closed (if the transport
//! can tell, see [`FrameLink::start_watching`]) before it ends the event stream, so the
//! client finds the reason on the link ([`Link::close_reason`]) as soon as it sees the
//! end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_protocol::frame::{decode_frame, encode_frame};
use hearth_protocol::limits::MAX_FRAME_LEN;
use hearth_protocol::{ClientFrame, CloseReason, Event, Request, Response, ServerFrame, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{BoxFuture, Link, TransportError};

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Result<Response, WireError>>>>>;

/// How long the reader waits, once the stream ended, for the connection to say why it
/// closed. The relay closes the connection right after it finished the stream, so this
/// is a round trip; it bounds a stream that ends while its connection stays open.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// How long a call waits while the relay sends nothing at all on the link. The relay
/// answers every request (most within milliseconds; a write after its disk sync) and
/// sends a waiting client what it queued before the answer, so a minute of silence
/// with a call outstanding means a relay that stopped serving this connection: the link
/// closes, the call fails with [`TransportError::Closed`], and the client reconnects as
/// after any lost connection instead of waiting forever. Any bytes read count as the
/// relay speaking (a large frame arriving slowly is not silence), and a call whose
/// request still has to reach the relay behind others gets [`SLOWEST_UPLOAD`] time
/// for the unanswered bytes written before it and its own.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// The slowest upload a call waits for, in bytes per second (8 kbit/s): a request is
/// handed to QUIC's send buffer at once, and the relay can only answer once it has all of
/// it, so a 512 KiB file piece on a slow uplink gets up to 512 s more than
/// [`SILENCE_LIMIT`].
pub const SLOWEST_UPLOAD: u64 = 1024;

/// Completes when the connection under a link has closed: why the relay closed it, if
/// it did (`None`: lost, or closed by us).
pub type ClosedBy = BoxFuture<'static, Option<CloseReason>>;

/// A framed request/response link.
pub struct FrameLink<W> {
    writer: tokio::sync::Mutex<W>,
    pending: Pending,
    next_id: AtomicU32,
    closed: Arc<AtomicBool>,
    close_reason: Arc<Mutex<Option<CloseReason>>>,
    on_close: Box<dyn Fn() + Send + Sync>,
    heard: Arc<LastHeard>,
    /// Bytes of the requests written (or being written) whose calls have not ended.
    unanswered: Arc<AtomicU64>,
}

/// Takes a call's request bytes off [`FrameLink::unanswered`] when the call ends, however
/// it ends (answered, failed, or dropped by its caller).
struct Unanswered {
    total: Arc<AtomicU64>,
    bytes: u64,
}

impl Unanswered {
    /// Counts `bytes` more; returns the guard and the total with them.
    fn add(total: &Arc<AtomicU64>, bytes: u64) -> (Self, u64) {
        let now = total.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let guard = Self {
            total: total.clone(),
            bytes,
        };
        (guard, now)
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A reader that notes in [`LastHeard`] every read that brought bytes.
struct Heard<R> {
    inner: R,
    heard: Arc<LastHeard>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Heard<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.heard.stamp();
        }
        polled
    }
}

/// When the reader last read bytes off the link (a tokio clock, so tests can pause it).
struct LastHeard {
    start: tokio::time::Instant,
    /// Milliseconds from `start`.
    at_ms: AtomicU64,
}

impl LastHeard {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            at_ms: AtomicU64::new(0),
        }
    }

    /// Notes that bytes (or the end of the stream) were read just now.
    fn stamp(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the link has been silent for [`SILENCE_LIMIT`], as things stand.
    fn limit(&self) -> tokio::time::Instant {
        self.start + Duration::from_millis(self.at_ms.load(Ordering::Relaxed)) + SILENCE_LIMIT
    }
}

/// The most room a connection's read buffer keeps between frames, in bytes.
const KEPT_READ_BUFFER: usize = 64 * 1024;

/// Reads one frame of type `T` from `reader`, buffering in `buf` (which keeps at most
/// [`KEPT_READ_BUFFER`] of room after a frame larger than that).
pub async fn read_frame<R: AsyncRead + Unpin, T: serde::de::DeserializeOwned>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<T>, String> {
    loop {
        match decode_frame::<T>(buf, MAX_FRAME_LEN) {
            Ok(Some((value, used))) => {
                buf.drain(..used);
                // A large frame (a page of a room's log: up to 1 MiB) leaves its room
                // behind for the connection's life otherwise, on every connection.
                if buf.capacity() > KEPT_READ_BUFFER && buf.len() <= KEPT_READ_BUFFER {
                    buf.shrink_to(KEPT_READ_BUFFER);
                }
                return Ok(Some(value));
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = reader.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("stream ended in the middle of a frame".into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: serde::Serialize>(
    writer: &mut W,
    value: &T,
) -> Result<(), String> {
    let bytes = encode_frame(value, MAX_FRAME_LEN).map_err(|e| e.to_string())?;
    write_encoded(writer, &bytes).await
}

/// Writes one frame encoded already.
async fn write_encoded<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> Result<(), String> {
    writer.write_all(bytes).await.map_err(|e| e.to_string())?;
    writer.flush().await.map_err(|e| e.to_string())
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameLink<W> {
    /// Starts the reader task over `reader` (already past the hello) and returns the link
    /// and the event stream. `on_close` is called by [`Link::close`].
    pub fn start<R: AsyncRead + Unpin + Send + 'static>(
        reader: R,
        buf: Vec<u8>,
        writer: W,
        on_close: Box<dyn Fn() + Send + Sync>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Event>) {
        Self::start_watching(reader, buf, writer, on_close, Box::pin(async { None }))
    }

    /// [`FrameLink::start`], where `closed_by` tells why the connection closed: once the
    /// stream ends, the reader waits for it (at most [`CLOSE_WAIT`]) and keeps the answer
    /// for [`Link::close_reason`] before it ends the event stream.
    pub fn start_watching<R: AsyncRead + Unpin + Send + 'static>(
        reader: R,
        mut buf: Vec<u8>,
        writer: W,
        on_close: Box<dyn Fn() + Send + Sync>,
        closed_by: ClosedBy,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Event>) {
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let close_reason = Arc::new(Mutex::new(None));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let heard = Arc::new(LastHeard::new());
        let link = Arc::new(FrameLink {
            writer: tokio::sync::Mutex::new(writer),
            pending: pending.clone(),
            next_id: AtomicU32::new(1),
            closed: closed.clone(),
            close_reason: close_reason.clone(),
            on_close,
            heard: heard.clone(),
            unanswered: Arc::default(),
        });
        let mut reader = Heard {
            inner: reader,
            heard: heard.clone(),
        };
        tokio::spawn(async move {
            loop {
                let frame = read_frame::<_, ServerFrame>(&mut reader, &mut buf).await;
                heard.stamp();
                match frame {
                    Ok(Some(ServerFrame::Response { id, result })) => {
                        let waiter = lock(&pending).remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(result);
                        }
                    }
                    Ok(Some(ServerFrame::Event(event))) => {
                        if events_tx.send(event).is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!("relay connection read failed: {e}");
                        break;
                    }
                }
            }
            closed.store(true, Ordering::SeqCst);
            // Dropping the waiters fails their calls with `Closed`.
            lock(&pending).clear();
            if let Ok(Some(reason)) = tokio::time::timeout(CLOSE_WAIT, closed_by).await {
                tracing::info!("the relay closed the connection: {reason}");
                *lock(&close_reason) = Some(reason);
            }
            // Only now: whoever sees the event stream end finds the reason.
            drop(events_tx);
        });
        (link, events_rx)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means another thread panicked while holding it; the map
    // itself is still consistent (inserts and removes are single operations).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<W: AsyncWrite + Unpin + Send + 'static> Link for FrameLink<W> {
    fn call(
        &self,
        request: Request,
    ) -> BoxFuture<'_, Result<Result<Response, WireError>, TransportError>> {
        Box::pin(async move {
            if self.closed.load(Ordering::SeqCst) {
                return Err(TransportError::Closed);
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            lock(&self.pending).insert(id, tx);
            let frame = ClientFrame { id, request };
            let bytes = match encode_frame(&frame, MAX_FRAME_LEN) {
                Ok(bytes) => bytes,
                Err(e) => {
                    lock(&self.pending).remove(&id);
                    tracing::debug!("request not sent: {e}");
                    return Err(TransportError::Closed);
                }
            };
            let (_unanswered, ahead) = Unanswered::add(&self.unanswered, bytes.len() as u64);
            let written = {
                let mut writer = self.writer.lock().await;
                write_encoded(&mut *writer, &bytes).await
            };
            if let Err(e) = written {
                lock(&self.pending).remove(&id);
                tracing::debug!("relay connection write failed: {e}");
                return Err(TransportError::Closed);
            }
            if self.closed.load(Ordering::SeqCst) {
                lock(&self.pending).remove(&id);
            }
            // Silence is counted from the write at the earliest, with time for what is
            // still to reach the relay.
            let earliest = tokio::time::Instant::now()
                + SILENCE_LIMIT
                + Duration::from_secs(ahead / SLOWEST_UPLOAD);
            let limit = || self.heard.limit().max(earliest);
            let mut rx = rx;
            loop {
                tokio::select! {
                    answer = &mut rx => return answer.map_err(|_| TransportError::Closed),
                    () = tokio::time::sleep_until(limit()) => {
                        if limit() > tokio::time::Instant::now() {
                            continue; // bytes came meanwhile
                        }
                        lock(&self.pending).remove(&id);
                        tracing::warn!(
                            "the relay sent nothing for {} s while a request waited; closing the connection",
                            SILENCE_LIMIT.as_secs()
                        );
                        self.close();
                        return Err(TransportError::Closed);
                    }
                }
            }
        })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        lock(&self.pending).clear();
        (self.on_close)();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn close_reason(&self) -> Option<CloseReason> {
        *lock(&self.close_reason)
    }
}

#[cfg(test)]
mod tests {
    use hearth_protocol::ClientFrame;
    use tokio::io::{duplex, split, DuplexStream, ReadHalf, WriteHalf};
    use tokio::time::Instant;

    use super::*;

    type TestLink = Arc<FrameLink<WriteHalf<DuplexStream>>>;

    /// A link over an in-memory pipe, whether `close` was called on it, and the relay's
    /// end of the pipe.
    fn link() -> (TestLink, Arc<AtomicBool>, DuplexStream) {
        link_buffering(64 * 1024)
    }

    /// [`link`] over a pipe that holds `buffer` bytes each way, as QUIC's send buffer
    /// takes a request at once whatever the relay has received of it.
    fn link_buffering(buffer: usize) -> (TestLink, Arc<AtomicBool>, DuplexStream) {
        let (ours, relay) = duplex(buffer);
        let (reader, writer) = split(ours);
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        let (link, events) = FrameLink::start(
            reader,
            Vec::new(),
            writer,
            Box::new(move || flag.store(true, Ordering::SeqCst)),
        );
        // Events are not what these tests look at; the channel must stay open.
        std::mem::forget(events);
        (link, closed, relay)
    }

    async fn next_request(reader: &mut ReadHalf<DuplexStream>, buf: &mut Vec<u8>) -> ClientFrame {
        read_frame(reader, buf).await.unwrap().unwrap()
    }

    /// The relay answers call `id`, then keeps the stream open and says nothing more.
    async fn answer_and_stay(writer: &mut WriteHalf<DuplexStream>, id: u32) {
        let answer = ServerFrame::Response {
            id,
            result: Ok(Response::Pong),
        };
        write_frame(writer, &answer).await.unwrap();
        std::future::pending::<()>().await;
    }

    /// Calls `request` and checks that it was answered, after more than `waited`, on a
    /// link still open.
    async fn answered_after(
        link: &TestLink,
        closed: &AtomicBool,
        request: Request,
        waited: Duration,
    ) {
        let started = Instant::now();
        let answer = link.call(request).await;
        assert!(matches!(answer, Ok(Ok(Response::Pong))), "{answer:?}");
        assert!(started.elapsed() > waited, "{:?}", started.elapsed());
        assert!(!closed.load(Ordering::SeqCst));
        assert!(!link.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_the_relay_never_answers_fails_and_closes_the_link() {
        let (link, closed, relay) = link();
        // The relay reads the request and then says nothing, with the stream open.
        let (mut relay_reader, _relay_writer) = split(relay);
        let relay = tokio::spawn(async move {
            let mut buf = Vec::new();
            next_request(&mut relay_reader, &mut buf).await;
            std::future::pending::<()>().await;
        });
        let started = Instant::now();
        let answer = link.call(Request::Ping).await;
        assert!(matches!(answer, Err(TransportError::Closed)), "{answer:?}");
        assert!(
            started.elapsed() >= SILENCE_LIMIT,
            "{:?}",
            started.elapsed()
        );
        assert!(
            closed.load(Ordering::SeqCst),
            "the connection was not closed"
        );
        assert!(link.is_closed());
        assert!(lock(&link.pending).is_empty(), "the waiter was left behind");
        relay.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn frames_from_the_relay_keep_a_slow_answer_waited_for() {
        let (link, closed, relay) = link();
        // The relay answers only after three times the limit, but sends an event every
        // two thirds of it meanwhile (as a connection catching up receives pages).
        let (mut relay_reader, mut relay_writer) = split(relay);
        let relay = tokio::spawn(async move {
            let mut buf = Vec::new();
            let request = next_request(&mut relay_reader, &mut buf).await;
            for _ in 0..4 {
                tokio::time::sleep(SILENCE_LIMIT * 2 / 3).await;
                write_frame(&mut relay_writer, &ServerFrame::Event(Event::InboxArrived))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(SILENCE_LIMIT / 2).await;
            answer_and_stay(&mut relay_writer, request.id).await;
        });
        answered_after(&link, &closed, Request::Ping, SILENCE_LIMIT * 3).await;
        relay.abort();
    }

    /// 300 KiB in 4 KiB steps, one every 2 s: 150 s, over twice the silence limit.
    const SLOW_BYTES: usize = 300 * 1024;
    const STEP: usize = 4 * 1024;
    const STEP_EVERY: Duration = Duration::from_secs(2);

    #[tokio::test(start_paused = true)]
    async fn a_large_request_the_relay_receives_slowly_is_waited_for() {
        let (link, closed, relay) = link_buffering(4 * 1024 * 1024);
        // The relay takes the request in slowly (a slow uplink), then answers.
        let (mut relay_reader, mut relay_writer) = split(relay);
        let relay = tokio::spawn(async move {
            let mut buf = Vec::new();
            let request: ClientFrame = loop {
                tokio::time::sleep(STEP_EVERY).await;
                let mut step = vec![0u8; STEP];
                let n = relay_reader.read(&mut step).await.unwrap();
                buf.extend_from_slice(&step[..n]);
                if let Some((frame, _)) = decode_frame(&buf, MAX_FRAME_LEN).unwrap() {
                    break frame;
                }
            };
            answer_and_stay(&mut relay_writer, request.id).await;
        });
        let append = Request::Append {
            room: hearth_protocol::RoomId([1; 16]),
            cap: hearth_protocol::Cap([2; 32]),
            payload: vec![3; SLOW_BYTES],
        };
        answered_after(&link, &closed, append, SILENCE_LIMIT * 2).await;
        assert_eq!(link.unanswered.load(Ordering::Relaxed), 0);
        relay.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_frame_arriving_slowly_is_not_silence() {
        let (link, closed, relay) = link();
        // Before the answer the relay sends a large event, slowly (a slow downlink).
        let (mut relay_reader, mut relay_writer) = split(relay);
        let relay = tokio::spawn(async move {
            let mut buf = Vec::new();
            let request = next_request(&mut relay_reader, &mut buf).await;
            let event = ServerFrame::Event(Event::Entries {
                room: hearth_protocol::RoomId([1; 16]),
                entries: vec![hearth_protocol::Entry {
                    seq: hearth_protocol::Seq(1),
                    kind: hearth_protocol::EntryKind::Message,
                    time: 0,
                    payload: vec![3; SLOW_BYTES],
                    next_cap_hash: None,
                }],
            });
            let bytes = encode_frame(&event, MAX_FRAME_LEN).unwrap();
            for step in bytes.chunks(STEP) {
                tokio::time::sleep(STEP_EVERY).await;
                relay_writer.write_all(step).await.unwrap();
            }
            answer_and_stay(&mut relay_writer, request.id).await;
        });
        answered_after(&link, &closed, Request::Ping, SILENCE_LIMIT * 2).await;
        relay.abort();
    }
}
