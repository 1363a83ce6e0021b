//! `hearth-bench relay`: the rounds, the medians and the table.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::fsync::Probe;
use crate::load::{self, Mode, Outcome, Scenario};
use crate::procfs;
use crate::servers::{self, Server};
use crate::stats::{median, Latencies};
use hearth_relay::store::sync_times::SyncHistogram;

/// The load's knobs (see `hearth-bench relay --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// The hearth-relay binary [default: next to hearth-bench]
    #[arg(long, value_name = "PATH")]
    pub relay_bin: Option<PathBuf>,
    /// Rounds of every run; each figure is the median over the rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Envelopes per unpaced run.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Subscribers of the room (the k=25 runs; the k=1 runs have one).
    #[arg(long, default_value_t = 25)]
    pub subscribers: usize,
    /// Envelope size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Appends the publisher keeps in flight in the unpaced runs.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Envelopes per second of the paced run.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Seconds of the paced run.
    #[arg(long, default_value_t = 10)]
    pub paced_secs: u64,
    /// Entries of the memory phase: a room filled with this many, then read back from
    /// seq 1 by one subscriber while 24 more clients stay connected (0: skip).
    #[arg(long, default_value_t = 100_000)]
    pub store_entries: usize,
    /// A command both servers are started under, e.g. "taskset -c 1" or
    /// "systemd-run --user --scope -p MemoryMax=256M taskset -c 1" (the Pi stand-in).
    #[arg(long, value_name = "CMD")]
    pub wrap: Option<String>,
    /// Run only these runs (k25, k1, paced; comma-separated), e.g. while profiling.
    #[arg(long, value_delimiter = ',', value_name = "RUNS")]
    pub only: Vec<String>,
    /// A short run to try the tool: 1 round, 4000 envelopes, 3 s paced, 10k readback.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Default)]
struct Runs {
    relay: Vec<Outcome>,
    raw: Vec<Outcome>,
}

impl Runs {
    fn of(&mut self, mode: Mode) -> &mut Vec<Outcome> {
        match mode {
            Mode::Relay => &mut self.relay,
            Mode::Raw => &mut self.raw,
        }
    }
}

fn med(runs: &[Outcome], f: impl Fn(&Outcome) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
}

/// Runs the load and prints the table; on failure, shows the end of the relay's log.
pub async fn run(a: RelayArgs) -> Result<()> {
    let base = tempfile::Builder::new()
        .prefix("hearth-bench-")
        .tempdir_in(
            std::env::var_os("HEARTH_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
        )?;
    let result = run_in(a, base.path()).await;
    if result.is_err() {
        let log = std::fs::read_to_string(base.path().join("relay.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!("last lines of the relay's log:");
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
    }
    result
}

async fn run_in(mut a: RelayArgs, base: &std::path::Path) -> Result<()> {
    if a.quick {
        a.rounds = 1;
        a.messages = 4_000;
        a.paced_secs = 3;
        a.store_entries = 10_000;
    }
    let bin = servers::relay_binary(a.relay_bin.clone())?;
    let wrap: Vec<String> = a
        .wrap
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    let load_before = procfs::loadavg();
    let relay = Server::relay(&bin, base, &wrap).await?;
    let raw = Server::raw(base, &wrap).await?;
    let idle = relay.sample()?;
    eprintln!(
        "relay pid {} (idle: RSS {:.1} MiB), raw fan-out pid {}, data in {}",
        relay.pid,
        idle.rss_kib as f64 / 1024.0,
        raw.pid,
        base.display()
    );

    let k = a.subscribers;
    let unpaced = |k| Scenario {
        k,
        messages: a.messages,
        rate: None,
        size: a.size,
        window: a.window,
    };
    let paced = Scenario {
        k,
        messages: (a.rate * a.paced_secs) as usize,
        rate: Some(a.rate),
        size: a.size,
        window: a.window,
    };
    let scenarios = [("k25", unpaced(k)), ("k1", unpaced(1)), ("paced", paced)];
    let mut results: Vec<Runs> = scenarios.iter().map(|_| Runs::default()).collect();
    let mut fsync = Vec::new();
    // The relay's own syncs during each of its paced runs (its admin socket).
    let mut relay_syncs: Vec<SyncHistogram> = Vec::new();
    for round in 0..a.rounds {
        for (i, (name, s)) in scenarios.iter().enumerate() {
            if !a.only.is_empty() && !a.only.iter().any(|o| o == name) {
                continue;
            }
            let order = if round % 2 == 0 {
                [Mode::Relay, Mode::Raw]
            } else {
                [Mode::Raw, Mode::Relay]
            };
            for mode in order {
                let server = match mode {
                    Mode::Relay => &relay,
                    Mode::Raw => &raw,
                };
                let probe = if s.rate.is_some() {
                    Some(Probe::start(&relay.dir, Duration::from_millis(10))?)
                } else {
                    None
                };
                // A relay from before it timed its syncs has none to give: that line of
                // the table is left out, the rest stands.
                let syncs_before = if s.rate.is_some() && mode == Mode::Relay {
                    relay
                        .disk_syncs()
                        .await
                        .inspect_err(|e| eprintln!("no disk syncs from the relay: {e:#}"))
                        .ok()
                } else {
                    None
                };
                let o = load::run(server, mode, *s).await?;
                if let Some(p) = probe {
                    let l = p.finish();
                    if mode == Mode::Relay {
                        fsync.push(l);
                    }
                }
                if let Some(before) = syncs_before {
                    if let Ok(after) = relay.disk_syncs().await {
                        relay_syncs.push(after.since(&before));
                    }
                }
                eprintln!(
                    "round {} {name:5} {mode:5?}: {:>9.0} deliveries/s, {:>7.0} appends/s, {:.2} µs CPU/delivery, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    round + 1,
                    o.deliveries_per_s,
                    o.appends_per_s,
                    o.cpu_us_per_delivery,
                    o.latency.ms(0.5),
                    o.latency.ms(0.99),
                    o.latency.ms(1.0)
                );
                results[i].of(mode).push(o);
            }
        }
    }
    let hwm_load = relay.sample()?.hwm_kib;
    let readback = if a.store_entries > 0 {
        eprintln!(
            "memory phase: filling a room with {} entries",
            a.store_entries
        );
        Some(
            load::readback(
                &relay,
                a.store_entries,
                a.size,
                a.window,
                k.saturating_sub(1),
            )
            .await?,
        )
    } else {
        None
    };
    let end = relay.sample()?;
    let raw_end = raw.sample()?;
    let load_after = procfs::loadavg();

    let [k25, k1, pace] = &results[..] else {
        unreachable!("three scenarios")
    };
    let fsync_p = |p: f64| {
        median(
            &fsync
                .iter()
                .map(|l: &Latencies| l.ms(p))
                .collect::<Vec<_>>(),
        )
    };
    println!("## hearth-bench relay");
    println!();
    println!(
        "1 publisher, {k} subscribers (k={k}) or 1 (k=1), {} B envelopes; unpaced: {} envelopes, {} in flight; paced: {} msg/s for {} s. Medians of {} round(s).{}",
        a.size,
        a.messages,
        a.window,
        a.rate,
        a.paced_secs,
        a.rounds,
        a.wrap
            .as_deref()
            .map(|w| format!(" Both servers run under `{w}`."))
            .unwrap_or_default()
    );
    println!(
        "Machine: {}. Load average before {load_before}, after {load_after}.",
        procfs::machine()
    );
    println!();
    println!("| figure | hearth-relay | raw quinn | ratio |");
    println!("|---|---|---|---|");
    // A run left out by `--only` has no rounds: its rows are left out too.
    let row = |name: &str, runs: &Runs, f: &dyn Fn(&Outcome) -> f64, digits: usize| {
        if runs.relay.is_empty() && runs.raw.is_empty() {
            return;
        }
        let (r, q) = (med(&runs.relay, f), med(&runs.raw, f));
        println!("| {name} | {r:.digits$} | {q:.digits$} | {:.2} |", r / q);
    };
    row(
        "deliveries/s, k=25 unpaced",
        k25,
        &|o| o.deliveries_per_s,
        0,
    );
    row("deliveries/s, k=1 unpaced", k1, &|o| o.deliveries_per_s, 0);
    row(
        "server CPU µs per delivery, k=25 unpaced",
        k25,
        &|o| o.cpu_us_per_delivery,
        2,
    );
    row(
        "server CPU µs per delivery, k=1 unpaced",
        k1,
        &|o| o.cpu_us_per_delivery,
        2,
    );
    row("p50 ms, k=25 unpaced", k25, &|o| o.latency.ms(0.5), 2);
    row(
        &format!("p50 ms, paced {} msg/s to {k}", a.rate),
        pace,
        &|o| o.latency.ms(0.5),
        2,
    );
    row(
        &format!("p99 ms, paced {} msg/s to {k}", a.rate),
        pace,
        &|o| o.latency.ms(0.99),
        2,
    );
    row(
        &format!("max ms, paced {} msg/s to {k}", a.rate),
        pace,
        &|o| o.latency.ms(1.0),
        2,
    );
    println!(
        "| peak RSS MiB (VmHWM) over the whole run | {:.1} | {:.1} | {:.2} |",
        end.hwm_kib as f64 / 1024.0,
        raw_end.hwm_kib as f64 / 1024.0,
        end.hwm_kib as f64 / raw_end.hwm_kib.max(1) as f64
    );
    println!();
    let paced_p99 = med(&pace.relay, |o| o.latency.ms(0.99));
    if !pace.relay.is_empty() {
        println!(
            "fdatasync of 1 KiB in the relay's directory during the paced runs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; paced p99 minus fsync p99: {:.2} ms.",
            fsync_p(0.5),
            fsync_p(0.99),
            fsync_p(1.0),
            paced_p99 - fsync_p(0.99)
        );
    }
    if !relay_syncs.is_empty() {
        let syncs_p = |p: f64| {
            median(
                &relay_syncs
                    .iter()
                    .filter_map(|h| h.quantile_ms(p))
                    .collect::<Vec<_>>(),
            )
        };
        println!(
            "The relay's own fdatasyncs (its store's commits, from `status`) during the paced runs: {} per run, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; paced p99 minus their p99: {:.2} ms.",
            median(
                &relay_syncs
                    .iter()
                    .map(|h| h.count() as f64)
                    .collect::<Vec<_>>()
            ),
            syncs_p(0.5),
            syncs_p(0.99),
            syncs_p(1.0),
            paced_p99 - syncs_p(0.99)
        );
    }
    println!(
        "Relay RSS: {:.1} MiB idle with no clients, peak {:.1} MiB after the load runs.",
        idle.rss_kib as f64 / 1024.0,
        hwm_load as f64 / 1024.0
    );
    if let Some(r) = readback {
        println!(
            "Memory phase: {} entries appended at {:.0}/s (peak RSS then {:.1} MiB), read back from seq 1 by one subscriber in {:.2} s ({:.0} entries/s) with {} more clients connected: peak RSS {:.1} MiB, RSS at the end {:.1} MiB.",
            r.entries,
            r.fill_per_s,
            r.hwm_after_fill_kib as f64 / 1024.0,
            r.read_secs,
            r.entries as f64 / r.read_secs,
            k.saturating_sub(1),
            r.hwm_after_read_kib as f64 / 1024.0,
            r.rss_end_kib as f64 / 1024.0
        );
    }
    relay.stop().await;
    raw.stop().await;
    Ok(())
}
