//! soak: many in-process clients in several rooms sending and receiving for a while,
//! against the real `hearth-relay` process, whose resident memory (`VmRSS` of
//! `/proc/<pid>/status`) is sampled every second. Afterwards every acknowledged message
//! must be in every member's history of its room exactly once, at its seq, and must have
//! been pushed to every other member. Exits non-zero if not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;
use hearth_protocol::{RoomId, Seq};
use hearth_stress::people::{compare, lock, room_with, Person};
use hearth_stress::relay::{rss_kib, RelayProcess};
use hearth_stress::stats::{mib, ms, percentile};
use hearth_stress::Rng;

#[derive(Parser, Debug)]
#[command(about = "Clients in rooms sending for a while; relay RSS every second; nothing lost")]
struct Args {
    /// How long the clients send (seconds).
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// How many clients.
    #[arg(long, default_value_t = 25)]
    clients: usize,
    /// How many rooms (the clients are shared out evenly).
    #[arg(long, default_value_t = 5)]
    rooms: usize,
    /// Messages per second each client sends (0: as fast as acknowledged).
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Seed of the send jitter (printed).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Default)]
struct SendLog {
    acked: Vec<(Seq, String)>,
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(Rng::clock_seed);
    hearth_stress::log_from_env();
    hearth_stress::fast_kdf();
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    println!(
        "soak: {} clients in {} rooms, {} s, {} msg/s per client, {} B each, seed {seed}",
        args.clients, args.rooms, args.duration_secs, args.rate, args.size
    );
    let relay = tokio::task::block_in_place(|| {
        RelayProcess::spawn(&dir.path().join("relay"), "127.0.0.1:0", None)
    })?;
    let pid = relay.pid();
    let invite = relay.mint_invite(args.clients as u32 + 1)?;
    let mut people = Vec::new();
    for i in 0..args.clients {
        people.push(Person::register(&dir.path().join("people"), &format!("p{i}"), &invite).await?);
    }
    let rooms = args.rooms.max(1);
    let mut room_of = vec![RoomId([0; 16]); args.clients];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); rooms];
    for i in 0..args.clients {
        members[i % rooms].push(i);
    }
    let mut room_ids = Vec::new();
    for (r, group) in members.iter().enumerate() {
        let Some((&owner, rest)) = group.split_first() else {
            continue;
        };
        let others: Vec<&Person> = rest.iter().map(|&i| &people[i]).collect();
        let id = room_with(&people[owner], &others, &format!("room{r}")).await?;
        for &i in group {
            room_of[i] = id;
        }
        room_ids.push(id);
    }
    let setup = started.elapsed();
    println!("set up in {:.1} s; relay pid {pid}", setup.as_secs_f64());

    // RSS every second.
    let rss: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (rss, stop) = (rss.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                if let Some(kib) = rss_kib(pid) {
                    lock(&rss).push(kib);
                }
            }
        })
    };
    let load_started = Instant::now();
    let deadline = load_started + Duration::from_secs(args.duration_secs);
    let mut tasks = Vec::new();
    for (i, person) in people.iter().enumerate() {
        let client = person.client.clone();
        let room = room_of[i];
        let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
        let (rate, size) = (args.rate, args.size);
        tasks.push(tokio::spawn(async move {
            let mut log = SendLog::default();
            let pad = "x".repeat(size.saturating_sub(12));
            let mut n = 0u64;
            // Spread the first sends over one interval.
            let interval = if rate > 0.0 {
                Duration::from_secs_f64(1.0 / rate)
            } else {
                Duration::ZERO
            };
            let mut next = Instant::now() + interval.mul_f64(rng.range(0, 1000) as f64 / 1000.0);
            while Instant::now() < deadline {
                if !interval.is_zero() {
                    tokio::time::sleep_until(next.into()).await;
                    // ±20 % jitter around the rate.
                    next += interval.mul_f64(0.8 + rng.range(0, 400) as f64 / 1000.0);
                }
                let text = format!("c{i}-{n} {pad}");
                n += 1;
                let t = Instant::now();
                match client.send_text(room, &text).await {
                    Ok(seq) => {
                        log.latencies.push(t.elapsed());
                        log.acked.push((seq, text));
                    }
                    Err(e) => log.errors.push(e.to_string()),
                }
            }
            log
        }));
    }
    let mut logs = Vec::new();
    for task in tasks {
        logs.push(task.await?);
    }
    let load_time = load_started.elapsed();
    for person in &people {
        person.sync_within(Duration::from_secs(30)).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.await;

    // Check every room at every member.
    let (mut lost, mut duplicated, mut misplaced, mut not_pushed, mut pushed) =
        (0, 0, 0, 0, 0usize);
    for (r, group) in members.iter().enumerate() {
        let Some(&room) = room_ids.get(r) else {
            continue;
        };
        let acked: Vec<(Seq, String)> = group
            .iter()
            .flat_map(|&i| logs[i].acked.iter().cloned())
            .collect();
        for &i in group {
            let history = people[i].history(room).await?;
            let d = compare(&history, &acked);
            for line in d.details.iter().take(10) {
                eprintln!("{}: {line}", people[i].handle);
            }
            lost += d.lost;
            duplicated += d.duplicated;
            misplaced += d.misplaced;
            let got: std::collections::HashSet<Seq> = lock(&people[i].watch.messages)
                .iter()
                .filter(|(rm, _, _)| *rm == room)
                .map(|(_, s, _)| *s)
                .collect();
            // Pushed to everyone but the sender (whose own copy may not be an event).
            for &j in group.iter().filter(|&&j| j != i) {
                for (seq, _) in &logs[j].acked {
                    if got.contains(seq) {
                        pushed += 1;
                    } else {
                        not_pushed += 1;
                    }
                }
            }
        }
    }
    let acked: usize = logs.iter().map(|l| l.acked.len()).sum();
    let errors: Vec<&String> = logs.iter().flat_map(|l| l.errors.iter()).collect();
    let latencies: Vec<Duration> = logs
        .iter()
        .flat_map(|l| l.latencies.iter().copied())
        .collect();
    let rss = lock(&rss).clone();
    let warnings: usize = people.iter().map(|p| lock(&p.watch.warnings).len()).sum();
    let secs = load_time.as_secs_f64();
    println!();
    println!(
        "clients / rooms:           {} / {}",
        args.clients,
        room_ids.len()
    );
    println!(
        "load time:                 {secs:.1} s (setup {:.1} s)",
        setup.as_secs_f64()
    );
    println!(
        "acknowledged messages:     {acked} ({:.1} msg/s)",
        acked as f64 / secs
    );
    println!(
        "pushed to other members:   {pushed} ({:.1} deliveries/s)",
        pushed as f64 / secs
    );
    println!(
        "send latency:              p50 {} p99 {} max {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.iter().max().copied())
    );
    println!(
        "send errors:               {} {:?}",
        errors.len(),
        errors.iter().take(3).collect::<Vec<_>>()
    );
    println!("lost (must be 0):          {lost}");
    println!("duplicated (must be 0):    {duplicated}");
    println!("misplaced (must be 0):     {misplaced}");
    println!("never pushed (must be 0):  {not_pushed}");
    println!("consistency warnings:      {warnings}");
    println!(
        "relay RSS:                 min {} median {} max {} ({} samples, first {}, last {})",
        mib(rss.iter().min().copied()),
        mib(percentile(&rss, 50.0)),
        mib(rss.iter().max().copied()),
        rss.len(),
        mib(rss.first().copied()),
        mib(rss.last().copied())
    );
    println!(
        "total time:                {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for person in people {
        person.close().await;
    }
    drop(relay);
    if lost + duplicated + misplaced + not_pushed > 0 {
        bail!("FAILED: see the figures above");
    }
    println!("OK");
    Ok(())
}
