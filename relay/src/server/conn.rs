//! One connection: hello, authentication deadline, pipelined requests, pushed events,
//! re-authentication, and a clean close.

use std::net::SocketAddr;
use std::time::Duration;

use hearth_protocol::frame::{decode_body, encode_frame};
use hearth_protocol::limits::{LENGTH_PREFIX_LEN, MAX_FRAME_LEN, TLS_EXPORTER_LABEL};
use hearth_protocol::{
    ClientFrame, ClientHello, Entry, ErrorCode, Event, Response, ServerFrame, ServerHello,
    WireError,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

use crate::service::{Metrics, Relay, Reply, Session};

/// Requests of one connection waiting for a commit at the same time.
const MAX_IN_FLIGHT: usize = 1024;
/// Payload bytes per pushed event, so every frame stays under the hard frame limit.
const EVENT_BYTES: usize = MAX_FRAME_LEN / 2;

/// What the reader task saw.
enum Inbound {
    Frame(Vec<u8>),
    TooLarge(usize),
    Truncated,
    End,
}

/// How a connection ended, for the log line.
type Outcome = std::borrow::Cow<'static, str>;

pub(crate) async fn serve(
    incoming: quinn::Incoming,
    relay: Relay,
    shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let peer = incoming.remote_address();
    let handshake = Duration::from_secs(relay.config().handshake_timeout_secs.max(1));
    let metrics = relay.shared.metrics.clone();
    let conn = match timeout(handshake, incoming).await {
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
        conn.close(1u32.into(), b"internal error");
        return;
    }
    Metrics::bump(&metrics.connections_total);
    metrics
        .connections
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut session = relay.session(peer.ip().to_canonical(), exporter);
    let outcome = drive(&conn, &mut session, &relay, shutdown, peer, handshake).await;
    metrics
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        %peer,
        account = %session.account().map(|a| a.short()).unwrap_or_else(|| "-".into()),
        outcome = %outcome,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection ended"
    );
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

struct Writer {
    send: quinn::SendStream,
}

impl Writer {
    async fn frame(&mut self, frame: &ServerFrame) -> Result<(), Outcome> {
        let bytes = encode_frame(frame, MAX_FRAME_LEN)
            .map_err(|e| Outcome::from(format!("encode: {e}")))?;
        self.send
            .write_all(&bytes)
            .await
            .map_err(|_| Outcome::from("peer went away"))
    }

    async fn hello(&mut self, hello: &ServerHello) -> Result<(), Outcome> {
        let bytes = encode_frame(hello, MAX_FRAME_LEN)
            .map_err(|e| Outcome::from(format!("encode: {e}")))?;
        self.send
            .write_all(&bytes)
            .await
            .map_err(|_| Outcome::from("peer went away"))
    }

    async fn response(
        &mut self,
        id: u32,
        result: Result<Response, WireError>,
    ) -> Result<(), Outcome> {
        self.frame(&ServerFrame::Response { id, result }).await
    }

    async fn event(&mut self, event: Event) -> Result<(), Outcome> {
        match event {
            Event::Entries { room, entries } => {
                for chunk in split_entries(entries) {
                    self.frame(&ServerFrame::Event(Event::Entries {
                        room,
                        entries: chunk,
                    }))
                    .await?;
                }
                Ok(())
            }
            other => self.frame(&ServerFrame::Event(other)).await,
        }
    }

    /// Finishes the stream and waits (briefly) until the peer has everything.
    async fn finish(&mut self) {
        let _ = self.send.finish();
        let _ = timeout(Duration::from_secs(2), self.send.stopped()).await;
    }
}

/// Splits entries into runs whose payloads stay under [`EVENT_BYTES`].
fn split_entries(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        if !current.is_empty() && bytes + entry.payload.len() > EVENT_BYTES {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += entry.payload.len() + 32;
        current.push(entry);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

async fn drive(
    conn: &quinn::Connection,
    session: &mut Session,
    relay: &Relay,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
    handshake: Duration,
) -> Outcome {
    let metrics = relay.shared.metrics.clone();
    let auth_deadline = Instant::now() + handshake;
    let (send, recv) = match timeout(handshake, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(_)) => return "closed before opening a stream".into(),
        Err(_) => {
            Metrics::bump(&metrics.handshake_timeouts);
            conn.close(2u32.into(), b"handshake timeout");
            return "handshake timeout".into();
        }
    };
    let mut out = Writer { send };
    let (tx, mut rx) = mpsc::channel(64);
    let reader = tokio::spawn(read_frames(recv, tx, relay.config().max_frame_bytes()));
    let outcome = run(
        conn,
        session,
        relay,
        &mut out,
        &mut rx,
        &mut shutdown,
        peer,
        auth_deadline,
    )
    .await;
    reader.abort();
    out.finish().await;
    conn.close(0u32.into(), b"bye");
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn run(
    conn: &quinn::Connection,
    session: &mut Session,
    relay: &Relay,
    out: &mut Writer,
    rx: &mut mpsc::Receiver<Inbound>,
    shutdown: &mut watch::Receiver<bool>,
    peer: SocketAddr,
    auth_deadline: Instant,
) -> Outcome {
    let metrics = relay.shared.metrics.clone();
    // 1. Hello.
    let first = tokio::select! {
        item = rx.recv() => item,
        _ = sleep_until(auth_deadline) => {
            Metrics::bump(&metrics.handshake_timeouts);
            return "no hello in time".into();
        }
    };
    let hello = match first {
        Some(Inbound::Frame(body)) => decode_body::<ClientHello>(&body),
        _ => return "closed before hello".into(),
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(_) => {
            Metrics::bump(&metrics.malformed);
            tracing::warn!(%peer, "malformed hello");
            let _ = out
                .hello(&ServerHello::Rejected {
                    supported: hearth_protocol::SUPPORTED_VERSIONS.to_vec(),
                    message: "malformed hello".into(),
                })
                .await;
            return "malformed hello".into();
        }
    };
    let answer = session.hello(&hello);
    if let Err(e) = out.hello(&answer).await {
        return e;
    }
    if let ServerHello::Rejected { .. } = answer {
        return "version rejected".into();
    }

    // 2. Requests, events, re-authentication.
    let interval = Duration::from_secs(relay.config().reauth_interval_secs.max(1));
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut reauth_at = far;
    let mut pending: JoinSet<(u32, Result<Response, WireError>)> = JoinSet::new();
    let mut ending: Option<Outcome> = None;
    let banned = session.ended();
    while ending.is_none() {
        let deadline = match (session.account(), session.reauth_deadline()) {
            (None, _) => auth_deadline,
            (Some(_), Some(at)) => Instant::from_std(at),
            (Some(_), None) => far,
        };
        tokio::select! {
            item = rx.recv(), if pending.len() < MAX_IN_FLIGHT => {
                match item {
                    Some(Inbound::Frame(body)) => match decode_body::<ClientFrame>(&body) {
                        Ok(frame) => {
                            let was_authenticated = session.account().is_some();
                            match session.start(frame.request).await {
                                Reply::Ready(result) => {
                                    if let Err(e) = out.response(frame.id, result).await {
                                        return e;
                                    }
                                }
                                Reply::Pending(wait) => {
                                    pending.spawn(async move { (frame.id, wait.wait().await) });
                                }
                            }
                            if !was_authenticated && session.account().is_some() {
                                reauth_at = Instant::now() + interval;
                            }
                            if let Some(reason) = session.close_reason() {
                                ending = Some(reason.into());
                            }
                        }
                        Err(_) => {
                            Metrics::bump(&metrics.malformed);
                            tracing::warn!(%peer, len = body.len(), "malformed frame; closing");
                            relay.shared.audit("malformed-frame", Some(peer.ip()), session.account().as_ref(), "undecodable request");
                            let _ = out.response(0, Err(WireError::new(ErrorCode::BadRequest, "malformed frame"))).await;
                            ending = Some("malformed frame".into());
                        }
                    },
                    Some(Inbound::TooLarge(len)) => {
                        Metrics::bump(&metrics.too_large);
                        tracing::warn!(%peer, len, "oversized frame; closing");
                        relay.shared.audit("oversized-frame", Some(peer.ip()), session.account().as_ref(), &format!("{len} bytes"));
                        let _ = out.response(0, Err(WireError::new(ErrorCode::TooLarge, format!("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")))).await;
                        ending = Some("oversized frame".into());
                    }
                    Some(Inbound::Truncated) => {
                        Metrics::bump(&metrics.malformed);
                        ending = Some("stream ended mid-frame".into());
                    }
                    Some(Inbound::End) | None => ending = Some("client finished".into()),
                }
            }
            Some(done) = pending.join_next(), if !pending.is_empty() => {
                if let Ok((id, result)) = done {
                    if let Err(e) = out.response(id, result).await {
                        return e;
                    }
                }
            }
            Some(event) = session.events().recv() => {
                if let Err(e) = out.event(event).await {
                    return e;
                }
            }
            _ = sleep_until(reauth_at), if session.account().is_some() && session.reauth_deadline().is_none() => {
                let event = session.reauthenticate();
                reauth_at = Instant::now() + interval;
                if let Err(e) = out.event(event).await {
                    return e;
                }
            }
            _ = sleep_until(deadline) => {
                Metrics::bump(&metrics.handshake_timeouts);
                ending = Some(if session.account().is_some() {
                    "re-authentication not answered in time".into()
                } else {
                    "not authenticated in time".into()
                });
            }
            // A reconnect is then refused with `Banned`, which tells the client why.
            _ = banned.notified() => ending = Some("account banned".into()),
            _ = shutdown.changed() => ending = Some("relay shutting down".into()),
            _ = conn.closed() => return "connection lost".into(),
        }
    }
    // 3. Let started commits finish and answer them before closing.
    while let Some(done) = pending.join_next().await {
        if let Ok((id, result)) = done {
            if out.response(id, result).await.is_err() {
                break;
            }
        }
    }
    ending.unwrap_or_else(|| "closed".into())
}
