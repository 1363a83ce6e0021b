//! The relay load: one publisher and k subscribers of one room, 1 KiB envelopes, against
//! the real relay and the raw fan-out in turn, in the same invocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hearth_protocol::frame::decode_body;
use hearth_protocol::{Cap, Event, Request, Response, RoomId, Seq, ServerFrame};
use tokio::sync::{oneshot, Semaphore};

use crate::servers::Server;
use crate::stats::Latencies;
use crate::wire::{read_body, Conn};

/// Which server a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// hearth-relay: hello, accounts, a room, durable appends.
    Relay,
    /// The raw quinn fan-out.
    Raw,
}

/// One run's shape.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Subscribers.
    pub k: usize,
    /// Envelopes published.
    pub messages: usize,
    /// Envelopes per second, or as fast as the window allows.
    pub rate: Option<u64>,
    /// Envelope size in bytes.
    pub size: usize,
    /// Appends the publisher keeps in flight.
    pub window: usize,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Deliveries (envelope x subscriber) per second, first send to last delivery.
    pub deliveries_per_s: f64,
    /// Acknowledged appends per second.
    pub appends_per_s: f64,
    /// Server CPU time per delivery, µs.
    pub cpu_us_per_delivery: f64,
    /// Send-to-delivery latencies.
    pub latency: Latencies,
}

/// The cap of every bench room (the relay keeps only its hash).
const CAP: Cap = Cap([7; 32]);
/// Guard against a hang: no run of the load takes this long.
const GUARD: Duration = Duration::from_secs(600);

static HANDLES: AtomicU64 = AtomicU64::new(0);

fn handle() -> String {
    format!("b{}", HANDLES.fetch_add(1, Ordering::Relaxed))
}

/// The microseconds since `epoch`, stamped in the first 8 bytes of each envelope.
fn stamp(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

fn envelope(epoch: Instant, size: usize) -> Vec<u8> {
    let mut p = stamp(epoch).to_be_bytes().to_vec();
    p.resize(size.max(8), 0x5a);
    p
}

fn latency_of(epoch: Instant, payload: &[u8]) -> u32 {
    let mut b = [0u8; 8];
    if payload.len() >= 8 {
        b.copy_from_slice(&payload[..8]);
    }
    stamp(epoch)
        .saturating_sub(u64::from_be_bytes(b))
        .min(u64::from(u32::MAX)) as u32
}

/// A publisher connected and ready (a room created on the relay).
struct Publisher {
    conn: Conn,
    room: RoomId,
}

async fn publisher(server: &Server, mode: Mode) -> Result<Publisher> {
    let room = RoomId::random();
    match mode {
        Mode::Relay => {
            let mut conn = Conn::register(&server.address, &handle()).await?;
            conn.request(Request::CreateRoom {
                room,
                cap_hash: CAP.hash(),
                retention_secs: None,
                // Any key: the bench changes no room settings.
                admin: hearth_protocol::AdminKey([0xad; 32]),
            })
            .await
            .context("creating the bench room")?;
            Ok(Publisher { conn, room })
        }
        Mode::Raw => {
            let mut conn = Conn::open(&server.address).await?;
            conn.send.write_all(b"P").await?;
            Ok(Publisher { conn, room })
        }
    }
}

/// Connects a subscriber of `room` from `from` and starts its reader; resolves `ready`
/// once the subscription is in place.
async fn subscriber(
    server: &Server,
    mode: Mode,
    room: RoomId,
    from: Seq,
    count: usize,
    epoch: Instant,
) -> Result<(
    oneshot::Receiver<()>,
    tokio::task::JoinHandle<Result<Vec<u32>>>,
    quinn::Connection,
)> {
    let (mut conn, first) = match mode {
        Mode::Relay => {
            let mut conn = Conn::register(&server.address, &handle()).await?;
            let frame = conn.frame(Request::Subscribe {
                room,
                cap: CAP,
                from,
            })?;
            (conn, frame)
        }
        Mode::Raw => (Conn::open(&server.address).await?, b"S".to_vec()),
    };
    conn.send.write_all(&first).await?;
    let (ready, is_ready) = oneshot::channel();
    let quic = conn.conn.clone();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready);
        let mut latencies = Vec::with_capacity(count);
        // The send stream and the endpoint live as long as the reader: dropping the
        // stream would finish it, which tells the relay the client is done.
        let Conn {
            mut recv,
            send: _send,
            endpoint: _endpoint,
            ..
        } = conn;
        while latencies.len() < count {
            let body = read_body(&mut recv)
                .await?
                .context("the server closed a subscriber's stream")?;
            match mode {
                Mode::Raw if body.is_empty() => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Mode::Raw => latencies.push(latency_of(epoch, &body)),
                Mode::Relay => match decode_body::<ServerFrame>(&body)? {
                    ServerFrame::Response { result, .. } => {
                        result.map_err(|e| anyhow::anyhow!("subscribe refused: {e:?}"))?;
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    ServerFrame::Event(Event::Entries { room: r, entries }) if r == room => {
                        for e in &entries {
                            latencies.push(latency_of(epoch, &e.payload));
                        }
                    }
                    ServerFrame::Event(Event::SubscriptionEnded { .. }) => {
                        bail!("the relay ended a bench subscription")
                    }
                    ServerFrame::Event(_) => {}
                },
            }
        }
        Ok(latencies)
    });
    Ok((is_ready, task, quic))
}

/// Publishes `s.messages` envelopes, at `s.rate` or with `s.window` in flight; returns
/// when all are acknowledged, with the moment the last acknowledgement arrived.
async fn publish(p: Publisher, mode: Mode, s: Scenario, epoch: Instant) -> Result<Instant> {
    let Publisher { conn, room } = p;
    let Conn {
        endpoint,
        conn: quic,
        mut send,
        mut recv,
        ..
    } = conn;
    let window = Arc::new(Semaphore::new(s.window.max(1)));
    let acks = {
        let window = window.clone();
        let count = s.messages;
        let quic = quic.clone();
        tokio::spawn(async move {
            let read = async {
                for _ in 0..count {
                    let body = read_body(&mut recv)
                        .await?
                        .context("the server closed the publisher's stream")?;
                    if mode == Mode::Relay {
                        match decode_body::<ServerFrame>(&body)? {
                            ServerFrame::Response {
                                result: Ok(Response::Appended { .. }),
                                ..
                            } => {}
                            ServerFrame::Response { result, .. } => {
                                bail!("append not acknowledged: {result:?}")
                            }
                            ServerFrame::Event(_) => continue,
                        }
                    }
                    window.add_permits(1);
                }
                Ok::<_, anyhow::Error>(())
            };
            let result = read.await;
            if result.is_err() {
                // Stops the sending side too, which then reports this error.
                quic.close(1u32.into(), b"bench: unexpected answer");
            }
            result
        })
    };
    let mut ticker = s.rate.map(|rate| {
        let mut t = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    for id in 0..s.messages {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        if quic.close_reason().is_some() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(60), window.acquire()).await {
            Ok(permit) => permit?.forget(),
            Err(_) => break,
        }
        let payload = envelope(epoch, s.size);
        let frame = match mode {
            Mode::Relay => hearth_protocol::frame::encode_frame(
                &hearth_protocol::ClientFrame {
                    id: id as u32 + 1000,
                    request: Request::Append {
                        room,
                        cap: CAP,
                        payload,
                    },
                },
                hearth_protocol::limits::MAX_FRAME_LEN,
            )?,
            Mode::Raw => {
                let mut f = (payload.len() as u32).to_be_bytes().to_vec();
                f.extend_from_slice(&payload);
                f
            }
        };
        if send.write_all(&frame).await.is_err() {
            break;
        }
    }
    acks.await??;
    let done = Instant::now();
    quic.close(0u32.into(), b"done");
    drop(endpoint);
    Ok(done)
}

/// Runs one scenario against `server` and measures it.
pub async fn run(server: &Server, mode: Mode, s: Scenario) -> Result<Outcome> {
    tokio::time::timeout(GUARD, run_unguarded(server, mode, s))
        .await
        .with_context(|| format!("a {mode:?} run took longer than {GUARD:?}"))?
}

async fn run_unguarded(server: &Server, mode: Mode, s: Scenario) -> Result<Outcome> {
    let epoch = Instant::now();
    let p = publisher(server, mode).await?;
    let mut readers = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..s.k {
        let (ready, task, conn) =
            subscriber(server, mode, p.room, Seq(1), s.messages, epoch).await?;
        ready
            .await
            .context("a subscriber ended before its subscription was in place")?;
        readers.push(task);
        conns.push(conn);
    }
    let before = server.sample()?;
    let start = Instant::now();
    let mut publishing = tokio::spawn(publish(p, mode, s, epoch));
    let receiving = async {
        let mut latencies = Vec::with_capacity(s.k * s.messages);
        for r in readers {
            latencies.extend(r.await??);
        }
        Ok::<_, anyhow::Error>((latencies, Instant::now()))
    };
    tokio::pin!(receiving);
    // A publisher that fails (an append refused) ends the run with its error rather than
    // leaving the subscribers waiting.
    let (received, published) = tokio::select! {
        received = &mut receiving => (received?, publishing.await??),
        published = &mut publishing => {
            let published = published??;
            (receiving.await?, published)
        }
    };
    let (latencies, delivered_at) = received;
    let delivered = delivered_at.duration_since(start);
    let after = server.sample()?;
    let acked = published.duration_since(start);
    for c in conns {
        c.close(0u32.into(), b"done");
    }
    let deliveries = (s.k * s.messages) as f64;
    Ok(Outcome {
        deliveries_per_s: deliveries / delivered.as_secs_f64(),
        appends_per_s: s.messages as f64 / acked.as_secs_f64(),
        cpu_us_per_delivery: after.cpu_us.saturating_sub(before.cpu_us) as f64 / deliveries,
        latency: Latencies::new(latencies),
    })
}

/// What the memory phase measured.
#[derive(Debug, Clone, Default)]
pub struct Readback {
    /// Entries appended to the fill room.
    pub entries: usize,
    /// Acknowledged appends per second while filling (no subscribers).
    pub fill_per_s: f64,
    /// Seconds for one subscriber to catch up on the whole room from seq 1.
    pub read_secs: f64,
    /// Relay peak resident set after filling, KiB.
    pub hwm_after_fill_kib: u64,
    /// Relay peak resident set after reading back, KiB.
    pub hwm_after_read_kib: u64,
    /// Relay resident set at the end, KiB.
    pub rss_end_kib: u64,
}

/// Fills a room with `entries` envelopes (no subscribers), then has one subscriber read
/// it all back from seq 1 while `idle` more clients stay connected.
pub async fn readback(
    server: &Server,
    entries: usize,
    size: usize,
    window: usize,
    idle: usize,
) -> Result<Readback> {
    let epoch = Instant::now();
    let mut idle_conns = Vec::new();
    for _ in 0..idle {
        idle_conns.push(Conn::register(&server.address, &handle()).await?);
    }
    let p = publisher(server, Mode::Relay).await?;
    let room = p.room;
    let s = Scenario {
        k: 0,
        messages: entries,
        rate: None,
        size,
        window,
    };
    let start = Instant::now();
    let fill = publish(p, Mode::Relay, s, epoch)
        .await?
        .duration_since(start);
    let hwm_after_fill_kib = server.sample()?.hwm_kib;
    let start = Instant::now();
    let (ready, task, conn) = subscriber(server, Mode::Relay, room, Seq(1), entries, epoch).await?;
    ready.await.context("the reader's subscription failed")?;
    task.await??;
    let read = start.elapsed();
    conn.close(0u32.into(), b"done");
    let end = server.sample()?;
    for c in idle_conns {
        c.close();
    }
    Ok(Readback {
        entries,
        fill_per_s: entries as f64 / fill.as_secs_f64(),
        read_secs: read.as_secs_f64(),
        hwm_after_fill_kib,
        hwm_after_read_kib: end.hwm_kib,
        rss_end_kib: end.rss_kib,
    })
}
