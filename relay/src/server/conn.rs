//! One connection: hello, authentication deadline, pipelined requests, pushed events,
//! re-authentication, and a clean close.

use std::net::SocketAddr;
use std::time::Duration;

use hearth_protocol::frame::decode_body;
use hearth_protocol::limits::{LENGTH_PREFIX_LEN, MAX_FRAME_LEN, TLS_EXPORTER_LABEL};
use hearth_protocol::{
    ClientFrame, ClientHello, CloseReason, ErrorCode, Response, ServerHello, WireError,
};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

use super::admission::{Admission, Slot};
use crate::service::outbox::{encode_event, Outgoing, PushError};
use crate::service::responder::{encoded, response_frame};
use crate::service::{Metrics, Outbox, Relay, Responder, Session};

/// Requests handled in one turn of a connection's loop, when the client sent several
/// (the loop's other work is looked at in between).
const REQUESTS_PER_TURN: usize = 64;

/// What the reader task saw.
enum Inbound {
    Frame(Vec<u8>),
    TooLarge(usize),
    Truncated,
    End,
}

/// How a connection ended, for the log line.
type Outcome = std::borrow::Cow<'static, str>;

/// QUIC application close codes the relay ends a connection with; the reason is a token
/// of [`hearth_protocol::close`] (the one table of codes and reasons, documented in
/// docs/protocol.md).
pub mod close {
    pub use hearth_protocol::close::code::*;
}

/// Completes the handshake of a connection from a blocked address only to close it with
/// the reason, so a person at that address learns why instead of "cannot reach the
/// relay". It holds an unauthenticated slot like any connection, so this costs no more
/// than one the relay would have served.
pub(crate) async fn refuse_blocked(incoming: quinn::Incoming, relay: Relay, slot: Slot) {
    let handshake = Duration::from_secs(relay.config().handshake_timeout_secs.max(1));
    let evicted = slot.evicted();
    let handshaken = tokio::select! {
        handshaken = timeout(handshake, incoming) => handshaken,
        _ = evicted.notified() => return,
    };
    let Ok(Ok(conn)) = handshaken else {
        return;
    };
    let reason = CloseReason::AddressBlocked {
        secs: u32::try_from(crate::service::BLOCK_WINDOW.as_secs()).unwrap_or(u32::MAX),
    };
    conn.close(reason.code().into(), reason.reason().as_bytes());
    // Keep the slot until the close is sent.
    let _ = timeout(Duration::from_secs(1), conn.closed()).await;
    drop(slot);
}

pub(crate) async fn serve(
    incoming: quinn::Incoming,
    relay: Relay,
    shutdown: watch::Receiver<bool>,
    slot: Slot,
    rooms: Admission,
) {
    let started = Instant::now();
    let peer = incoming.remote_address();
    let handshake = Duration::from_secs(relay.config().handshake_timeout_secs.max(1));
    let metrics = relay.shared.metrics.clone();
    let evicted = slot.evicted();
    let handshaken = tokio::select! {
        handshaken = timeout(handshake, incoming) => handshaken,
        _ = evicted.notified() => {
            tracing::info!(%peer, "handshake gave way to a newer connection from this address");
            return;
        }
    };
    let conn = match handshaken {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "tls handshake failed");
            return;
        }
        Err(_) => {
            Metrics::bump(&metrics.handshake_timeouts);
            tracing::warn!(%peer, "tls handshake timed out");
            return;
        }
    };
    let mut exporter = [0u8; 32];
    if conn
        .export_keying_material(&mut exporter, TLS_EXPORTER_LABEL, b"")
        .is_err()
    {
        let reason = CloseReason::Internal;
        conn.close(reason.code().into(), reason.reason().as_bytes());
        return;
    }
    Metrics::bump(&metrics.connections_total);
    metrics
        .connections
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut session = relay.session(peer.ip().to_canonical(), exporter);
    let outcome = drive(
        &conn,
        &mut session,
        &relay,
        shutdown,
        peer,
        handshake,
        (slot, rooms),
    )
    .await;
    metrics
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    // A connection event names the address, never the account; their link is for debug
    // only (decision 0013).
    tracing::info!(
        %peer,
        outcome = %outcome,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection ended"
    );
    if let Some(account) = session.account() {
        tracing::debug!(%peer, account = %account.short(), "connection of this account ended");
    }
}

async fn read_frames(mut recv: quinn::RecvStream, tx: mpsc::Sender<Inbound>, max: usize) {
    loop {
        let mut prefix = [0u8; LENGTH_PREFIX_LEN];
        match recv.read_exact(&mut prefix).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => {
                let _ = tx.send(Inbound::End).await;
                return;
            }
            Err(quinn::ReadExactError::FinishedEarly(_)) => {
                let _ = tx.send(Inbound::Truncated).await;
                return;
            }
            Err(quinn::ReadExactError::ReadError(_)) => {
                let _ = tx.send(Inbound::End).await;
                return;
            }
        }
        let len = u32::from_be_bytes(prefix) as usize;
        if len > max {
            // Refuse before buffering anything of the body.
            let _ = tx.send(Inbound::TooLarge(len)).await;
            return;
        }
        let mut body = vec![0u8; len];
        match recv.read_exact(&mut body).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(_)) => {
                let _ = tx.send(Inbound::Truncated).await;
                return;
            }
            Err(quinn::ReadExactError::ReadError(_)) => {
                let _ = tx.send(Inbound::End).await;
                return;
            }
        }
        if tx.send(Inbound::Frame(body)).await.is_err() {
            return;
        }
    }
}

/// How the task writing a connection's [`Outbox`] ended.
#[derive(Debug)]
enum WriteEnd {
    /// The queue was closed and everything in it written.
    Finished,
    /// Nothing was accepted for `write_stall_secs`: the client does not read.
    Stalled,
    /// The stream or connection is gone.
    PeerGone,
    /// A frame could not be encoded (a bug; never the client's bytes).
    Encode(String),
}

/// Writes `chunks`, failing if the stream accepts nothing for `stall` (it accepts as
/// much as the client's flow credit allows, so a slow reader that reads keeps going).
/// The chunks go to QUIC as they are, without a copy.
async fn write_progress(
    send: &mut quinn::SendStream,
    chunks: &mut [Bytes],
    stall: Duration,
) -> Result<(), WriteEnd> {
    let mut done = 0;
    while done < chunks.len() {
        match timeout(stall, send.write_chunks(&mut chunks[done..])).await {
            Ok(Ok(written)) => {
                done += written.chunks;
                // Chunks emptied by the write count as written too.
                while done < chunks.len() && chunks[done].is_empty() {
                    done += 1;
                }
            }
            Ok(Err(_)) => return Err(WriteEnd::PeerGone),
            Err(_) => return Err(WriteEnd::Stalled),
        }
    }
    Ok(())
}

/// Bytes the writer takes from the outbox for one write (issue 15: one write, and one
/// wake-up of the QUIC driver, for everything queued rather than per item).
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// The connection's writer task: writes what is queued until the queue is closed and
/// empty, then finishes the stream and waits (briefly) until the peer has it all.
async fn write_out(mut send: quinn::SendStream, outbox: Arc<Outbox>, stall: Duration) -> WriteEnd {
    let mut items = Vec::new();
    let mut chunks = Vec::new();
    while let Some(cost) = outbox.next_batch(&mut items, WRITE_BATCH_BYTES).await {
        let mut result = Ok(());
        for item in items.drain(..) {
            match item {
                Outgoing::Frame(bytes) => chunks.push(Bytes::from(bytes)),
                Outgoing::Shared(bytes) => chunks.push(bytes),
                Outgoing::Event(event) => match encode_event(event) {
                    Ok(bytes) => chunks.push(bytes),
                    Err(e) => {
                        result = Err(WriteEnd::Encode(e.to_string()));
                        break;
                    }
                },
            }
        }
        if result.is_ok() {
            result = write_progress(&mut send, &mut chunks, stall).await;
        }
        chunks.clear();
        outbox.written(cost);
        if let Err(end) = result {
            return end;
        }
    }
    let _ = send.finish();
    let _ = timeout(Duration::from_secs(2), send.stopped()).await;
    WriteEnd::Finished
}

/// How the request loop ended: the log line, the close (code and reason, see
/// [`hearth_protocol::close`]), and whether to let the writer send what is queued
/// (answers, a rejection) before closing.
struct Ending {
    log: Outcome,
    close: CloseReason,
    drain: bool,
}

impl Ending {
    /// Ends after what is queued was written (the client is told why in a frame).
    fn told(close: CloseReason, log: impl Into<Outcome>) -> Self {
        Self {
            log: log.into(),
            close,
            drain: true,
        }
    }

    /// Ends at once: the writer cannot deliver (the client does not read, or is gone), or
    /// what is queued is of no use any more.
    fn abrupt(close: CloseReason, log: impl Into<Outcome>) -> Self {
        Self {
            log: log.into(),
            close,
            drain: false,
        }
    }

    fn not_reading(relay: &Relay, close: CloseReason, why: &'static str) -> Self {
        Metrics::bump(&relay.shared.metrics.slow_readers);
        Self::abrupt(close, why)
    }
}

/// How the connection ended when the peer ended it: a client that closed it (the normal
/// exit) is not a lost connection.
fn peer_closed(error: &quinn::ConnectionError) -> &'static str {
    match error {
        quinn::ConnectionError::ApplicationClosed(_) => "client closed",
        quinn::ConnectionError::ConnectionClosed(_) => "client closed (transport)",
        quinn::ConnectionError::TimedOut => "connection lost (timed out)",
        quinn::ConnectionError::Reset => "connection lost (reset)",
        _ => "connection lost",
    }
}

/// The close reason of an unauthenticated connection that gave way to a newer one from
/// the same address (see [`super::admission`]).
const GAVE_WAY: &str = "too many unauthenticated connections from this address";

/// How often an authenticated connection checks whether its client was heard from (any
/// packet; clients send a keep-alive every second), for [`Session::heard`].
const HEARD_EVERY: Duration = Duration::from_secs(1);

/// How long a closing connection may take to write what is queued for it.
const DRAIN_GRACE: Duration = Duration::from_secs(4);

async fn drive(
    conn: &quinn::Connection,
    session: &mut Session,
    relay: &Relay,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
    handshake: Duration,
    (slot, rooms): (Slot, Admission),
) -> Outcome {
    let metrics = relay.shared.metrics.clone();
    let auth_deadline = Instant::now() + handshake;
    let evicted = slot.evicted();
    let opened = tokio::select! {
        opened = timeout(handshake, conn.accept_bi()) => opened,
        _ = evicted.notified() => {
            let reason = CloseReason::GaveWay;
            conn.close(reason.code().into(), reason.reason().as_bytes());
            return GAVE_WAY.into();
        }
    };
    let (send, recv) = match opened {
        Ok(Ok(streams)) => streams,
        Ok(Err(_)) => return "closed before opening a stream".into(),
        Err(_) => {
            Metrics::bump(&metrics.handshake_timeouts);
            let reason = CloseReason::HelloTimeout;
            conn.close(reason.code().into(), reason.reason().as_bytes());
            return "handshake timeout".into();
        }
    };
    let outbox = session.outbox();
    let responder = session.answer_in_outbox();
    let stall = Duration::from_secs(relay.config().write_stall_secs.max(1));
    let mut writer = tokio::spawn(write_out(send, outbox.clone(), stall));
    let (tx, mut rx) = mpsc::channel(64);
    let reader = tokio::spawn(read_frames(recv, tx, relay.config().max_frame_bytes()));
    let mut loop_state = Loop {
        conn,
        session,
        relay,
        outbox: &outbox,
        responder,
        writer: &mut writer,
        writer_ended: None,
        peer,
        slot: Some(slot),
        evicted,
        rooms,
        last_request: Instant::now(),
    };
    let ending = loop_state.run(&mut rx, &mut shutdown, auth_deadline).await;
    let writer_ended = loop_state.writer_ended.take();
    reader.abort();
    outbox.close();
    if ending.drain && writer_ended.is_none() {
        if timeout(DRAIN_GRACE, &mut writer).await.is_err() {
            writer.abort();
        }
    } else {
        writer.abort();
    }
    conn.close(ending.close.code().into(), ending.close.reason().as_bytes());
    ending.log
}

/// The request loop of one connection and what it shares with its writer task.
struct Loop<'a> {
    conn: &'a quinn::Connection,
    session: &'a mut Session,
    relay: &'a Relay,
    outbox: &'a Arc<Outbox>,
    /// Counts the requests waiting for a commit, whose answers the writer queues.
    responder: Arc<Responder>,
    writer: &'a mut tokio::task::JoinHandle<WriteEnd>,
    /// Set once the writer task has ended (its handle must not be polled again).
    writer_ended: Option<()>,
    peer: SocketAddr,
    /// The address's slot for unauthenticated connections, given back at authentication.
    slot: Option<Slot>,
    /// Signalled when a newer connection from the address took the slot.
    evicted: Arc<tokio::sync::Notify>,
    /// The room connections of each address (decision 0013 part 5): a connection that
    /// never signs in moves there from the unauthenticated pool once a room took its
    /// capability.
    rooms: Admission,
    /// When the client last sent a request (a room connection that follows no room is
    /// closed after `idle_timeout_secs` without one).
    last_request: Instant,
}

impl Loop<'_> {
    /// Queues a frame that cannot wait; `Err` when the client is not reading.
    fn push(&self, item: Outgoing) -> Result<(), Ending> {
        match self.outbox.push(item) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => Err(self.not_reading_answers()),
            Err(PushError::Closed) => Err(Ending::abrupt(CloseReason::Finished, "closing")),
        }
    }

    /// Answers a hello that cannot be taken with a rejection saying why, then closes.
    fn reject_hello(&self, message: String, close: CloseReason) -> Ending {
        let rejected = ServerHello::Rejected {
            supported: hearth_protocol::SUPPORTED_VERSIONS.to_vec(),
            message,
        };
        match self.push(encoded(&rejected)) {
            Ok(()) => Ending::told(close, "hello refused"),
            Err(ending) => ending,
        }
    }

    fn respond(&self, id: u32, result: Result<Response, WireError>) -> Result<(), Ending> {
        self.push(response_frame(id, result))
    }

    /// What the writer task's end means for the connection.
    fn writer_end(&mut self, end: Result<WriteEnd, tokio::task::JoinError>) -> Ending {
        self.writer_ended = Some(());
        match end {
            Ok(WriteEnd::Stalled) => {
                tracing::warn!(peer = %self.peer, "client read nothing in time; closing");
                self.relay.shared.audit(
                    "slow-reader",
                    Some(self.peer.ip()),
                    self.session.account().as_ref(),
                    "nothing read within write_stall_secs",
                );
                Ending::not_reading(
                    self.relay,
                    CloseReason::Stalled,
                    "not reading: nothing read in time",
                )
            }
            Ok(WriteEnd::PeerGone) | Ok(WriteEnd::Finished) => {
                Ending::abrupt(CloseReason::Finished, "peer went away")
            }
            Ok(WriteEnd::Encode(e)) => {
                Ending::abrupt(CloseReason::Internal, format!("encode: {e}"))
            }
            Err(e) => Ending::abrupt(CloseReason::Internal, format!("writer task: {e}")),
        }
    }

    async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Inbound>,
        shutdown: &mut watch::Receiver<bool>,
        auth_deadline: Instant,
    ) -> Ending {
        let metrics = self.relay.shared.metrics.clone();
        let peer = self.peer;
        // 1. Hello.
        let first = tokio::select! {
            item = rx.recv() => item,
            _ = sleep_until(auth_deadline) => {
                Metrics::bump(&metrics.handshake_timeouts);
                return Ending::abrupt(CloseReason::HelloTimeout, "no hello in time");
            }
            _ = self.evicted.notified() => return Ending::abrupt(CloseReason::GaveWay, GAVE_WAY),
        };
        let body = match first {
            Some(Inbound::Frame(body)) => body,
            Some(Inbound::TooLarge(len)) => {
                Metrics::bump(&metrics.too_large);
                tracing::warn!(%peer, len, "oversized hello; closing");
                self.relay.shared.audit(
                    "oversized-frame",
                    Some(peer.ip()),
                    None,
                    &format!("hello of {len} bytes"),
                );
                return self.reject_hello(
                    format!(
                        "a hello of {len} bytes exceeds the frame limit of {MAX_FRAME_LEN} bytes"
                    ),
                    CloseReason::OversizedFrame,
                );
            }
            Some(Inbound::Truncated) => {
                Metrics::bump(&metrics.malformed);
                self.relay.shared.audit(
                    "malformed-hello",
                    Some(peer.ip()),
                    None,
                    "stream ended mid-frame",
                );
                return Ending::abrupt(CloseReason::Finished, "stream ended mid-hello");
            }
            Some(Inbound::End) | None => {
                return Ending::abrupt(CloseReason::Finished, "closed before hello")
            }
        };
        let hello = match decode_body::<ClientHello>(&body) {
            Ok(hello) => hello,
            Err(_) => {
                Metrics::bump(&metrics.malformed);
                tracing::warn!(%peer, len = body.len(), "malformed hello");
                self.relay.shared.audit(
                    "malformed-hello",
                    Some(peer.ip()),
                    None,
                    &format!("{} bytes that are not a hello", body.len()),
                );
                return self.reject_hello("malformed hello".into(), CloseReason::MalformedFrame);
            }
        };
        let answer = self.session.hello(&hello);
        if let Err(ending) = self.push(encoded(&answer)) {
            return ending;
        }
        if let ServerHello::Rejected { .. } = answer {
            return Ending::told(CloseReason::Version, "version rejected");
        }

        // 2. Requests, events, re-authentication.
        let interval = Duration::from_secs(self.relay.config().reauth_interval_secs.max(1));
        let idle = Duration::from_secs(self.relay.config().idle_timeout_secs.max(1));
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let mut reauth_at = far;
        let mut ending: Option<Ending> = None;
        let ended = self.session.ended();
        let mut admission_key = self.relay.shared.admission.watch();
        let mut heard_tick = tokio::time::interval(HEARD_EVERY);
        heard_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Made once and polled again on every turn (issue 15: a turn per request, and
        // making these anew registered two timers and four wake-ups each time).
        let conn = self.conn;
        let responder = self.responder.clone();
        let mut closed = std::pin::pin!(conn.closed());
        let mut ended_from_outside = std::pin::pin!(ended.ended());
        let mut shutting_down = std::pin::pin!(shutdown.changed());
        let mut answered = std::pin::pin!(responder.changed());
        let mut reauth_timer = std::pin::pin!(sleep_until(reauth_at));
        let mut deadline_timer = std::pin::pin!(sleep_until(far));
        while ending.is_none() {
            let room_connection = self.session.is_room_connection();
            // A room connection is looked at every `idle` without a request: one that
            // follows a room stays, one that follows none (any more: the relay ends a
            // subscription whose epoch ended) is closed.
            let deadline = match (self.session.account(), self.session.reauth_deadline()) {
                (None, _) if room_connection => self.last_request + idle,
                (None, _) => auth_deadline,
                (Some(_), Some(at)) => Instant::from_std(at),
                (Some(_), None) => far,
            };
            // The relay's admission key changed under this connection (a ban): it must
            // be admitted again by then (decision 0016).
            let readmit = self.session.readmit_deadline().map(Instant::from_std);
            let deadline = readmit.map_or(deadline, |at| at.min(deadline));
            if deadline_timer.deadline() != deadline {
                deadline_timer.as_mut().reset(deadline);
            }
            if reauth_timer.deadline() != reauth_at {
                reauth_timer.as_mut().reset(reauth_at);
            }
            tokio::select! {
                item = rx.recv(), if self.responder.has_room() => {
                    // Every request already received is handled in this turn.
                    let mut item = item;
                    for _ in 0..REQUESTS_PER_TURN {
                        match self.request(item, &mut reauth_at, interval).await {
                            Ok(None) => {}
                            Ok(Some(end)) => {
                                ending = Some(end);
                                break;
                            }
                            Err(end) => return end,
                        }
                        if !self.responder.has_room() {
                            break;
                        }
                        match rx.try_recv() {
                            Ok(next) => item = Some(next),
                            Err(_) => break,
                        }
                    }
                }
                () = answered.as_mut() => {
                    answered.set(responder.changed());
                    if responder.refused() {
                        return self.not_reading_answers();
                    }
                }
                end = &mut *self.writer, if self.writer_ended.is_none() => {
                    return self.writer_end(end);
                }
                () = reauth_timer.as_mut(), if self.session.account().is_some() && self.session.reauth_deadline().is_none() => {
                    let event = self.session.reauthenticate();
                    reauth_at = Instant::now() + interval;
                    if let Err(e) = self.push(Outgoing::Event(event)) {
                        return e;
                    }
                }
                Ok(()) = admission_key.changed() => {
                    let key = *admission_key.borrow_and_update();
                    if let Some(event) = self.session.admission_key_changed(key) {
                        if let Err(e) = self.push(Outgoing::Event(event)) {
                            return e;
                        }
                    }
                }
                () = deadline_timer.as_mut() => {
                    if readmit.is_some_and(|at| Instant::now() >= at) {
                        if self.session.readmit_deadline().is_some() {
                            Metrics::bump(&metrics.readmit_timeouts);
                            tracing::debug!(%peer, "room connection not admitted again in time");
                            ending = Some(Ending::told(CloseReason::ReadmitTimeout, "not admitted again in time"));
                        }
                        continue;
                    }
                    if room_connection {
                        if self.session.subscribes() {
                            self.last_request = Instant::now();
                        } else {
                            ending = Some(Ending::told(CloseReason::Finished, "room connection idle"));
                        }
                        continue;
                    }
                    Metrics::bump(&metrics.handshake_timeouts);
                    ending = Some(if self.session.account().is_some() {
                        Ending::told(CloseReason::ReauthTimeout, "re-authentication not answered in time")
                    } else {
                        Ending::told(CloseReason::AuthTimeout, "not authenticated in time")
                    });
                }
                _ = self.evicted.notified(), if self.slot.is_some() => {
                    ending = Some(Ending::told(CloseReason::GaveWay, GAVE_WAY));
                }
                // Any packet counts (keep-alives too): a client that vanished without
                // closing sends none, and is the first to make room at the session limit.
                _ = heard_tick.tick(), if self.session.account().is_some() => {
                    self.session.packets_received(self.conn.stats().udp_rx.datagrams);
                }
                reason = ended_from_outside.as_mut() => {
                    ending = Some(match reason {
                        // Its place is taken: what it waits for is of no use to anyone
                        // (its commits still land; the client reads them from the log).
                        CloseReason::Replaced { .. } => {
                            Ending::abrupt(reason, "replaced by a newer session of the account")
                        }
                        // A reconnect is then refused with `Banned`, which says why too.
                        reason => Ending::told(reason, reason.token()),
                    });
                }
                _ = shutting_down.as_mut() => ending = Some(Ending::told(CloseReason::ShuttingDown, "relay shutting down")),
                reason = closed.as_mut() => return Ending::abrupt(CloseReason::Finished, peer_closed(&reason)),
            }
        }
        // 3. Let started commits finish and their answers be queued before closing.
        responder.all_answered().await;
        ending.unwrap_or_else(|| Ending::told(CloseReason::Finished, "closed"))
    }

    /// Handles one item from the reader: a request (answered now, or by the writer after
    /// its commit), or the end of the stream. `Ok(Some(ending))` ends the connection
    /// once what was started is answered; `Err` ends it at once.
    async fn request(
        &mut self,
        item: Option<Inbound>,
        reauth_at: &mut Instant,
        interval: Duration,
    ) -> Result<Option<Ending>, Ending> {
        let metrics = &self.relay.shared.metrics;
        let peer = self.peer;
        let Some(Inbound::Frame(body)) = item else {
            return Ok(Some(self.inbound_end(item)));
        };
        self.session.heard();
        self.last_request = Instant::now();
        let Ok(frame) = decode_body::<ClientFrame>(&body) else {
            Metrics::bump(&metrics.malformed);
            tracing::warn!(%peer, len = body.len(), "malformed frame; closing");
            self.relay.shared.audit(
                "malformed-frame",
                Some(peer.ip()),
                self.session.account().as_ref(),
                "undecodable request",
            );
            self.respond(
                0,
                Err(WireError::new(ErrorCode::BadRequest, "malformed frame")),
            )?;
            return Ok(Some(Ending::told(
                CloseReason::MalformedFrame,
                "malformed frame",
            )));
        };
        drop(body);
        let was_authenticated = self.session.account().is_some();
        let was_room_connection = self.session.is_room_connection();
        // `None`: the writer queues the answer after the commit.
        if let Some(result) = self.session.start_as(frame.id, frame.request).await {
            self.respond(frame.id, result)?;
            if let Some(event) = self.session.readmit_notice() {
                self.push(Outgoing::Event(event))?;
            }
        }
        if !was_authenticated && self.session.account().is_some() {
            *reauth_at = Instant::now() + interval;
            // Authenticated connections are bounded per account, not per address.
            self.slot = None;
        }
        if !was_room_connection && self.session.is_room_connection() {
            self.became_room_connection();
        }
        Ok(self
            .session
            .close_reason()
            .map(|reason| Ending::told(reason, reason.token())))
    }

    /// An answer the writer queued did not fit the outbox: the client does not read.
    fn not_reading_answers(&self) -> Ending {
        tracing::warn!(peer = %self.peer, queued = self.outbox.held_bytes(), "client not reading; closing");
        self.relay.shared.audit(
            "slow-reader",
            Some(self.peer.ip()),
            self.session.account().as_ref(),
            "outgoing queue over its bound",
        );
        Ending::not_reading(
            self.relay,
            CloseReason::QueueFull,
            "not reading: too much queued",
        )
    }

    /// The connection presented a capability a room took: it leaves the pool of
    /// unauthenticated connections for the room connections of its address, grouped by
    /// that room. When the address has `max_room_connections_per_ip`, the oldest
    /// connection of the room with the most of them there gives way: a flood with one
    /// room's capability pushes out its own connections, not other members' (the
    /// household shares the address).
    fn became_room_connection(&mut self) {
        let max = self.relay.config().max_room_connections_per_ip;
        let group = self
            .session
            .room_connection_room()
            .map_or(0, |room| u128::from_be_bytes(room.0));
        let (slot, evicted) = self
            .rooms
            .take_in(self.peer.ip().to_canonical(), group, max);
        if evicted {
            Metrics::bump(&self.relay.shared.metrics.unauthenticated_evicted);
            // Which room is not said: a log line at `info` names no room (decision 0013).
            tracing::info!(peer = %self.peer, max, "too many room connections from this address; the oldest of the room with the most gives way");
            self.relay.shared.audit(
                "room-connection-limit",
                Some(self.peer.ip()),
                None,
                &format!("{max} room connections open: the oldest of the room with the most was closed for a newer one"),
            );
        }
        self.evicted = slot.evicted();
        // Gives the unauthenticated slot back.
        self.slot = Some(slot);
    }

    /// The reader task saw something other than a whole frame.
    fn inbound_end(&self, item: Option<Inbound>) -> Ending {
        let metrics = &self.relay.shared.metrics;
        let peer = self.peer;
        match item {
            Some(Inbound::TooLarge(len)) => {
                Metrics::bump(&metrics.too_large);
                tracing::warn!(%peer, len, "oversized frame; closing");
                self.relay.shared.audit(
                    "oversized-frame",
                    Some(peer.ip()),
                    self.session.account().as_ref(),
                    &format!("{len} bytes"),
                );
                let refused = WireError::new(
                    ErrorCode::TooLarge,
                    format!("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes"),
                );
                match self.respond(0, Err(refused)) {
                    Ok(()) => Ending::told(CloseReason::OversizedFrame, "oversized frame"),
                    Err(e) => e,
                }
            }
            Some(Inbound::Truncated) => {
                Metrics::bump(&metrics.malformed);
                Ending::told(CloseReason::Finished, "stream ended mid-frame")
            }
            Some(Inbound::Frame(_)) | Some(Inbound::End) | None => {
                Ending::told(CloseReason::Finished, "client finished")
            }
        }
    }
}
