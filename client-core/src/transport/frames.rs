//! A [`Link`] over any byte stream pair carrying hearth frames: a writer behind a lock,
//! and a reader task that routes responses to their callers by id and forwards events.
//! When the stream ends, the reader learns why the connection closed (if the transport
//! can tell, see [`FrameLink::start_watching`]) before it ends the event stream, so the
//! client finds the reason on the link ([`Link::close_reason`]) as soon as it sees the
//! end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
    writer.write_all(&bytes).await.map_err(|e| e.to_string())?;
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
        mut reader: R,
        mut buf: Vec<u8>,
        writer: W,
        on_close: Box<dyn Fn() + Send + Sync>,
        closed_by: ClosedBy,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Event>) {
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let close_reason = Arc::new(Mutex::new(None));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let link = Arc::new(FrameLink {
            writer: tokio::sync::Mutex::new(writer),
            pending: pending.clone(),
            next_id: AtomicU32::new(1),
            closed: closed.clone(),
            close_reason: close_reason.clone(),
            on_close,
        });
        tokio::spawn(async move {
            loop {
                match read_frame::<_, ServerFrame>(&mut reader, &mut buf).await {
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
            let written = {
                let mut writer = self.writer.lock().await;
                write_frame(&mut *writer, &frame).await
            };
            if let Err(e) = written {
                lock(&self.pending).remove(&id);
                tracing::debug!("relay connection write failed: {e}");
                return Err(TransportError::Closed);
            }
            if self.closed.load(Ordering::SeqCst) {
                lock(&self.pending).remove(&id);
            }
            rx.await.map_err(|_| TransportError::Closed)
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
