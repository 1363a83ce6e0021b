//! kill-loop: SIGKILLs the real `hearth-relay` process again and again while several
//! writers send and several subscribers listen in one room, restarting it each time on
//! the same address with the same data. Afterwards every envelope the relay acknowledged
//! (`send_text` returned `Ok(seq)`) must be in every member's history exactly once, at
//! its seq, in order, and every subscriber must have been pushed each of them exactly
//! once, in seq order (resumed without gaps). Exits non-zero if not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;
use hearth_protocol::{RoomId, Seq};
use hearth_stress::people::{compare, lock, room_with, Person};
use hearth_stress::relay::RelayProcess;
use hearth_stress::stats::{ms, percentile};
use hearth_stress::Rng;

#[derive(Parser, Debug)]
#[command(
    about = "SIGKILL the relay under load; check no acknowledged message is lost or duplicated"
)]
struct Args {
    /// How many times to SIGKILL the relay.
    #[arg(long, default_value_t = 100)]
    kills: u32,
    /// Clients sending messages as fast as the relay acknowledges them.
    #[arg(long, default_value_t = 3)]
    writers: usize,
    /// Clients only listening.
    #[arg(long, default_value_t = 3)]
    subscribers: usize,
    /// Shortest time under load between everyone being back and the next kill (ms).
    #[arg(long, default_value_t = 100)]
    min_gap_ms: u64,
    /// Longest time under load between everyone being back and the next kill (ms).
    #[arg(long, default_value_t = 800)]
    max_gap_ms: u64,
    /// How long a client may take to reconnect before it counts as stuck (s).
    #[arg(long, default_value_t = 60)]
    reconnect_timeout_secs: u64,
    /// Seed of the random gaps (printed; repeat a run's choices with it).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the temp directory (relay data, relay log, profiles) and print where it is.
    #[arg(long)]
    keep: bool,
}

/// One acknowledged message.
#[derive(Debug, Clone)]
struct Acked {
    seq: Seq,
    text: String,
}

/// What one writer did.
#[derive(Default)]
struct WriterLog {
    acked: Vec<Acked>,
    /// Attempts that returned an error (their text may or may not be stored).
    failed: Vec<String>,
    errors: HashMap<String, u64>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(Rng::clock_seed);
    let mut rng = Rng::new(seed);
    hearth_stress::log_from_env();
    hearth_stress::fast_kdf();
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    println!(
        "kill-loop: {} kills, {} writers, {} subscribers, gap {}..{} ms, seed {seed}",
        args.kills, args.writers, args.subscribers, args.min_gap_ms, args.max_gap_ms
    );

    let relay = Arc::new(Mutex::new(tokio::task::block_in_place(|| {
        RelayProcess::spawn(&dir.path().join("relay"), "127.0.0.1:0", None)
    })?));
    let invite = lock(&relay).mint_invite(1000)?;
    let people_dir = dir.path().join("people");
    let mut writers = Vec::new();
    for i in 0..args.writers {
        writers.push(Person::register(&people_dir, &format!("writer{i}"), &invite).await?);
    }
    let mut subscribers = Vec::new();
    for i in 0..args.subscribers {
        subscribers.push(Person::register(&people_dir, &format!("sub{i}"), &invite).await?);
    }
    let (owner, rest) = writers.split_first().expect("at least one writer");
    let others: Vec<&Person> = rest.iter().chain(subscribers.iter()).collect();
    let room = room_with(owner, &others, "kill-loop").await?;
    let (pid, log) = {
        let relay = lock(&relay);
        (relay.pid(), relay.log().to_path_buf())
    };
    println!(
        "set up {} people in one room in {:.1} s; relay pid {pid}, log {}",
        writers.len() + subscribers.len(),
        started.elapsed().as_secs_f64(),
        log.display()
    );

    // The writers: each sends "w<i>-<n>" with a fresh n per attempt, so a text seen
    // twice in a log is a duplicate whatever the attempt's outcome.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer_tasks = Vec::new();
    for (i, writer) in writers.iter().enumerate() {
        let client = writer.client.clone();
        let stop = stop.clone();
        writer_tasks.push(tokio::spawn(async move {
            let mut log = WriterLog::default();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let text = format!("w{i}-{n}");
                n += 1;
                match client.send_text(room, &text).await {
                    Ok(seq) => log.acked.push(Acked { seq, text }),
                    Err(e) => {
                        *log.errors.entry(error_kind(&e)).or_default() += 1;
                        log.failed.push(text);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            log
        }));
    }

    let everyone: Vec<&Person> = writers.iter().chain(subscribers.iter()).collect();
    let mut reconnects = Vec::new();
    let mut restarts = Vec::new();
    let mut stuck = 0u32;
    let timeout = Duration::from_secs(args.reconnect_timeout_secs);
    for k in 1..=args.kills {
        let gap = rng.range(args.min_gap_ms, args.max_gap_ms);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let killed = Instant::now();
        let relay2 = relay.clone();
        let restart = tokio::task::spawn_blocking(move || -> Result<Duration> {
            let mut relay = lock(&relay2);
            relay.kill()?;
            relay.restart()?;
            Ok(relay.last_start)
        })
        .await??;
        restarts.push(restart);
        // Everyone back: each client's first "connected" after the kill.
        let deadline = killed + timeout;
        let mut pending: Vec<usize> = (0..everyone.len()).collect();
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|&i| match everyone[i].watch.connected_since(killed) {
                Some(at) => {
                    reconnects.push(at - killed);
                    false
                }
                None => true,
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for &i in &pending {
            stuck += 1;
            eprintln!(
                "kill {k}: {} not reconnected {timeout:?} after the kill",
                everyone[i].handle
            );
        }
        if k % 10 == 0 || k == args.kills {
            println!(
                "kill {k}/{}: restart {}, reconnect p50 {} p99 {}, {:.0} s",
                args.kills,
                ms(Some(restart)),
                ms(percentile(&reconnects, 50.0)),
                ms(percentile(&reconnects, 99.0)),
                started.elapsed().as_secs_f64()
            );
        }
    }

    // Load off, then everyone catches up with the relay's head.
    tokio::time::sleep(Duration::from_millis(args.min_gap_ms)).await;
    stop.store(true, Ordering::SeqCst);
    let mut logs = Vec::new();
    for task in writer_tasks {
        logs.push(task.await?);
    }
    for person in &everyone {
        person.sync_within(timeout).await?;
    }
    // Pushed messages are recorded by each client's event task: let it drain.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let report = check(room, &everyone, &subscribers, &logs).await?;
    let total = started.elapsed();
    let acked: usize = logs.iter().map(|l| l.acked.len()).sum();
    let failed: usize = logs.iter().map(|l| l.failed.len()).sum();
    let mut errors: HashMap<String, u64> = HashMap::new();
    for log in &logs {
        for (k, v) in &log.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let warnings: usize = everyone.iter().map(|p| lock(&p.watch.warnings).len()).sum();
    println!();
    println!("kills:                     {}", args.kills);
    println!("acknowledged messages:     {acked}");
    println!("lost (must be 0):          {}", report.lost);
    println!("duplicated (must be 0):    {}", report.duplicated);
    println!("out of order (must be 0):  {}", report.misplaced);
    println!("histories differ (must be 0): {}", report.differ);
    println!(
        "live gaps (must be 0):     {} missing, {} repeated, {} out of order pushes",
        report.live_missing, report.live_repeated, report.live_disorder
    );
    println!("consistency warnings:      {warnings}");
    println!("clients stuck (must be 0): {stuck}");
    println!(
        "failed sends:              {failed} ({}); of them stored anyway: {}",
        summary(&errors),
        report.failed_but_stored
    );
    println!(
        "relay restart:             p50 {} p99 {}",
        ms(percentile(&restarts, 50.0)),
        ms(percentile(&restarts, 99.0))
    );
    println!(
        "reconnect after kill:      p50 {} p99 {} max {} ({} reconnects)",
        ms(percentile(&reconnects, 50.0)),
        ms(percentile(&reconnects, 99.0)),
        ms(reconnects.iter().max().copied()),
        reconnects.len()
    );
    println!("room log head:             {}", report.head);
    println!("total time:                {:.1} s", total.as_secs_f64());
    for person in &everyone {
        for w in lock(&person.watch.warnings).iter().take(5) {
            println!("  warning at {}: {w}", person.handle);
        }
    }
    for person in writers.into_iter().chain(subscribers) {
        person.close().await;
    }
    if args.keep {
        println!("kept {}", dir.keep().display());
    }
    if report.lost + report.duplicated + report.misplaced + report.differ > 0
        || report.live_missing + report.live_repeated + report.live_disorder > 0
        || stuck > 0
    {
        bail!("FAILED: see the figures above");
    }
    println!("OK");
    Ok(())
}

#[derive(Default)]
struct Report {
    lost: usize,
    duplicated: usize,
    misplaced: usize,
    differ: usize,
    live_missing: usize,
    live_repeated: usize,
    live_disorder: usize,
    failed_but_stored: usize,
    head: u64,
}

/// Compares what the writers were told with what every member stored and what every
/// subscriber was pushed.
async fn check(
    room: RoomId,
    everyone: &[&Person],
    subscribers: &[Person],
    logs: &[WriterLog],
) -> Result<Report> {
    let mut report = Report::default();
    let acked: Vec<&Acked> = logs.iter().flat_map(|l| l.acked.iter()).collect();
    let mut first: Option<Vec<(Seq, String)>> = None;
    let acked_pairs: Vec<(Seq, String)> = acked.iter().map(|a| (a.seq, a.text.clone())).collect();
    // Each writer's acknowledgements come one after the other: their seqs must rise.
    for log in logs {
        for w in log.acked.windows(2).filter(|w| w[1].seq <= w[0].seq) {
            report.misplaced += 1;
            eprintln!(
                "{} acknowledged at seq {} after {} at seq {}",
                w[1].text, w[1].seq, w[0].text, w[0].seq
            );
        }
    }
    for person in everyone {
        let history = person.history(room).await?;
        report.head = report.head.max(history.last().map_or(0, |(s, _)| s.0));
        let d = compare(&history, &acked_pairs);
        for line in d.details.iter().take(20) {
            eprintln!("{}: {line}", person.handle);
        }
        report.lost += d.lost;
        report.duplicated += d.duplicated;
        report.misplaced += d.misplaced;
        match &first {
            None => first = Some(history),
            Some(f) if *f != history => {
                report.differ += 1;
                eprintln!(
                    "{}: history differs from {}'s",
                    person.handle, everyone[0].handle
                );
            }
            Some(_) => {}
        }
    }
    if let Some(history) = &first {
        let stored: std::collections::HashSet<&str> =
            history.iter().map(|(_, t)| t.as_str()).collect();
        report.failed_but_stored = logs
            .iter()
            .flat_map(|l| l.failed.iter())
            .filter(|t| stored.contains(t.as_str()))
            .count();
    }
    // Pushed to each subscriber: in seq order, once each, every acknowledged one.
    for person in subscribers {
        let pushed: Vec<(Seq, String)> = lock(&person.watch.messages)
            .iter()
            .filter(|(r, _, _)| *r == room)
            .map(|(_, s, t)| (*s, t.clone()))
            .collect();
        let mut seen: HashMap<Seq, usize> = HashMap::new();
        let mut last = Seq(0);
        for (seq, _) in &pushed {
            *seen.entry(*seq).or_default() += 1;
            if *seq <= last {
                report.live_disorder += 1;
            }
            last = last.max(*seq);
        }
        report.live_repeated += seen.values().filter(|&&n| n > 1).count();
        for a in &acked {
            if !seen.contains_key(&a.seq) {
                report.live_missing += 1;
                eprintln!(
                    "{}: {} (seq {}) was never pushed",
                    person.handle, a.text, a.seq
                );
            }
        }
    }
    Ok(report)
}

/// A short name for an error, to count them by kind (a refusal by its code).
fn error_kind(e: &hearth_core::ClientError) -> String {
    if let hearth_core::ClientError::Relay(refused) = e {
        return format!("the relay refused ({:?})", refused.code);
    }
    let text = e.to_string();
    let cut = text.find(':').unwrap_or(text.len()).min(60);
    text[..cut].to_string()
}

fn summary(errors: &HashMap<String, u64>) -> String {
    let mut v: Vec<_> = errors.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join("; ")
}
