//! Relay throughput and latency: 25 subscribers on one room, writers appending 1 KiB
//! envelopes durably over real QUIC on loopback, store on a temp dir.
//!
//! Run: `cargo bench -p hearth-relay --bench relay-bench`
//! Prints deliveries/second unpaced, p50/p99 end-to-end latency at 200 msg/s, peak RSS.

#[path = "../tests/integration/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cap, new_account, start_relay, Client};
use hearth_protocol::{Event, Request, Response, RoomId, Seq};
use tokio::sync::Mutex;

const SUBSCRIBERS: usize = 25;
const WRITERS: usize = 4;
const UNPACED: usize = 20_000;
const WINDOW: usize = 256;
const PACED_RATE: u64 = 200;
const PACED_SECS: u64 = 10;
const ENVELOPE: usize = 1024;

fn envelope(epoch: Instant) -> Vec<u8> {
    let mut p = (epoch.elapsed().as_micros() as u64).to_be_bytes().to_vec();
    p.resize(ENVELOPE, 0x5a);
    p
}

fn sent_at(payload: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&payload[..8]);
    u64::from_be_bytes(b)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Receives entries until `count` arrived; returns per-entry latencies in µs.
async fn receive(mut c: Client, epoch: Instant, count: usize) -> (Client, Vec<u64>) {
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        if let Event::Entries { entries, .. } = c.event().await {
            let now = epoch.elapsed().as_micros() as u64;
            for e in entries {
                latencies.push(now.saturating_sub(sent_at(&e.payload)));
            }
        }
    }
    (c, latencies)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (relay, _dir) = start_relay(|c| {
        c.rate_per_second = 1e9;
        c.rate_burst = u32::MAX;
        c.quota_bytes_per_account = u64::MAX;
    })
    .await;
    let epoch = Instant::now();
    let room = RoomId::random();
    let (mut owner, _) = new_account(&relay, "owner").await;
    owner
        .request(Request::CreateRoom {
            room,
            cap_hash: cap(0).hash(),
            retention_secs: None,
            // Any key: the bench changes no room settings.
            admin: hearth_protocol::AdminKey([0xad; 32]),
        })
        .await
        .expect("room");
    let mut subscribers = Vec::new();
    for s in 0..SUBSCRIBERS {
        let (mut c, _) = new_account(&relay, &format!("sub{s}")).await;
        c.request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await
        .expect("subscribe");
        subscribers.push(c);
    }
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        writers.push(new_account(&relay, &format!("writer{w}")).await.0);
    }

    // 1. Unpaced: writers pipeline WINDOW appends each.
    let start = Instant::now();
    let receivers: Vec<_> = subscribers
        .into_iter()
        .map(|c| tokio::spawn(receive(c, epoch, UNPACED)))
        .collect();
    let per_writer = UNPACED / WRITERS;
    let mut tasks = Vec::new();
    for mut c in writers.drain(..) {
        tasks.push(tokio::spawn(async move {
            let mut in_flight = std::collections::VecDeque::new();
            let mut sent = 0;
            while sent < per_writer || !in_flight.is_empty() {
                while sent < per_writer && in_flight.len() < WINDOW {
                    in_flight.push_back(
                        c.send(Request::Append {
                            room,
                            cap: cap(0),
                            payload: envelope(epoch),
                        })
                        .await,
                    );
                    sent += 1;
                }
                if let Some(id) = in_flight.pop_front() {
                    match c.response(id).await {
                        Ok(Response::Appended { .. }) => {}
                        other => panic!("append failed: {other:?}"),
                    }
                }
            }
            c
        }));
    }
    for t in tasks {
        writers.push(t.await.expect("writer"));
    }
    let acked = start.elapsed();
    let mut subscribers = Vec::new();
    for r in receivers {
        subscribers.push(r.await.expect("subscriber").0);
    }
    let delivered = start.elapsed();
    let deliveries = (UNPACED * SUBSCRIBERS) as f64 / delivered.as_secs_f64();
    println!(
        "unpaced: {UNPACED} x {ENVELOPE} B appends by {WRITERS} writers (window {WINDOW}) in {:.2} s = {:.0} durable appends/s",
        acked.as_secs_f64(),
        UNPACED as f64 / acked.as_secs_f64()
    );
    println!(
        "unpaced: {} deliveries to {SUBSCRIBERS} subscribers in {:.2} s = {:.0} deliveries/s",
        UNPACED * SUBSCRIBERS,
        delivered.as_secs_f64(),
        deliveries
    );

    // 2. Paced: one writer at PACED_RATE msg/s; latency from send to each subscriber.
    let count = (PACED_RATE * PACED_SECS) as usize;
    let receivers: Vec<_> = subscribers
        .into_iter()
        .map(|c| tokio::spawn(receive(c, epoch, count)))
        .collect();
    let writer = Arc::new(Mutex::new(writers.remove(0)));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / PACED_RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = Vec::new();
    for _ in 0..count {
        ticker.tick().await;
        let writer = writer.clone();
        let mut c = writer.lock().await;
        pending.push(
            c.send(Request::Append {
                room,
                cap: cap(0),
                payload: envelope(epoch),
            })
            .await,
        );
        // Read whatever answers have arrived without stalling the pace for long.
        while pending.len() > 8 {
            let id = pending.remove(0);
            c.response(id).await.expect("append");
        }
    }
    {
        let mut c = writer.lock().await;
        for id in pending {
            c.response(id).await.expect("append");
        }
    }
    let mut latencies = Vec::new();
    for r in receivers {
        latencies.extend(r.await.expect("subscriber").1);
    }
    latencies.sort_unstable();
    println!(
        "paced {PACED_RATE} msg/s for {PACED_SECS} s, {} deliveries: latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    match peak_rss_kib() {
        Some(kib) => println!(
            "peak RSS (relay + {} clients in one process): {:.1} MiB",
            SUBSCRIBERS + WRITERS + 1,
            kib as f64 / 1024.0
        ),
        None => println!("peak RSS: unavailable"),
    }
    drop(owner);
    relay.shutdown().await.expect("shutdown");
}
