//! `hearth-bench files`: a file's upload and download through hearth-core and the real
//! relay process on loopback (issue 17), beside the disk's own write speed and `scp` to
//! localhost in the same run, with the relay's memory while it works.
//!
//! Pin everything to one core with `taskset -c 0 hearth-bench files` (the relay is a
//! child and inherits the mask).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hearth_core::transport::quic::QuicConnector;
use hearth_core::{Client, Profile};
use hearth_protocol::{Handle, RelayAddress};

use crate::procfs;
use crate::servers::{self, Server};
use crate::stats::median;

const PASSPHRASE: &str = "bench passphrase, never a real one";
const MIB: f64 = 1024.0 * 1024.0;

/// The file figures' knobs (see `hearth-bench files --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct FilesArgs {
    /// The hearth-relay binary [default: next to hearth-bench]
    #[arg(long, value_name = "PATH")]
    pub relay_bin: Option<PathBuf>,
    /// The file's size in MiB.
    #[arg(long, default_value_t = 100)]
    pub mib: u64,
    /// Runs of each transfer (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// `scp` the file to this ssh destination too (e.g. `localhost`, or
    /// `-P 2222 localhost`: words before the last are scp options); skipped when it
    /// cannot log in without a password.
    #[arg(long, default_value = "localhost")]
    pub scp_to: String,
}

/// The relay's resident memory, sampled every 20 ms while a transfer runs.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssWatch {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, peak) = (stop.clone(), peak.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(s) = procfs::sample(pid) {
                        peak.fetch_max(s.rss_kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Self { stop, peak, task }
    }

    async fn peak_kib(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

async fn register(base: &Path, relay: &RelayAddress, name: &str) -> Result<Client> {
    let dir = base.join(name);
    let profile = Profile::create(&dir, PASSPHRASE, Handle::new(name)?, relay.clone())?;
    Client::register_with(profile, None, Arc::new(QuicConnector::new(relay.clone())))
        .await
        .with_context(|| format!("registering {name}"))
}

/// Writes `bytes` to `path` in pieces of `piece` bytes, each fsynced when `sync_each`,
/// the whole file fsynced at the end; returns MiB/s.
fn disk_write(path: &Path, bytes: &[u8], piece: usize, sync_each: bool) -> Result<f64> {
    let t = Instant::now();
    let mut file = std::fs::File::create(path)?;
    for part in bytes.chunks(piece) {
        file.write_all(part)?;
        if sync_each {
            file.sync_data()?;
        }
    }
    file.sync_all()?;
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(bytes.len() as f64 / MIB / secs)
}

/// `scp` of `file` to `to` (options, then the host); `None` when it cannot run.
fn scp(file: &Path, to: &str, size: u64) -> Option<f64> {
    let words: Vec<&str> = to.split_whitespace().collect();
    let (host, options) = words.split_last()?;
    let target = format!("{host}:/tmp/hearth-bench-scp-{}", std::process::id());
    let t = Instant::now();
    let status = std::process::Command::new("scp")
        .args([
            "-q",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
        ])
        .args(options)
        .arg(file)
        .arg(&target)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    let secs = t.elapsed().as_secs_f64();
    let _ = std::process::Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(options.iter().map(|o| if *o == "-P" { "-p" } else { *o }))
        .arg(host)
        .arg(format!("rm -f {}", &target[host.len() + 1..]))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    status.success().then(|| size as f64 / MIB / secs)
}

/// Runs the file figures and prints them.
pub async fn run(a: FilesArgs) -> Result<()> {
    let bin = servers::relay_binary(a.relay_bin.clone())?;
    let load_before = procfs::loadavg();
    let base = tempfile::Builder::new()
        .prefix("hearth-bench-files-")
        .tempdir()?;
    let size = a.mib * 1024 * 1024;
    // Room for the padding and tags of the largest file, and one per run in the quota.
    let extra = format!(
        "max_file_bytes = {}\nblob_quota_bytes_per_room = {}\n",
        size * 2,
        size * 2 * (a.runs as u64 + 1)
    );
    let relay = Server::relay_with(&bin, base.path(), &[], &extra).await?;
    let people = base.path().join("people");
    let alice = register(&people, &relay.address, "alice").await?;
    let room = alice.create_room("bench files").await?;

    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let src = base.path().join("file.bin");
    std::fs::write(&src, &bytes)?;
    let out = base.path().join("saved");

    let idle_kib = relay.sample()?.rss_kib;
    let (mut up, mut down, mut up_rss, mut down_rss) = (vec![], vec![], vec![], vec![]);
    let (mut raw, mut raw_pieces, mut scps) = (vec![], vec![], vec![]);
    for run in 0..a.runs {
        raw.push(disk_write(
            &base.path().join("raw.bin"),
            &bytes,
            1 << 20,
            false,
        )?);
        raw_pieces.push(disk_write(
            &base.path().join("raw.bin"),
            &bytes,
            hearth_protocol::limits::MAX_BLOB_PIECE,
            true,
        )?);
        if let Some(speed) = scp(&src, &a.scp_to, size) {
            scps.push(speed);
        }

        let watch = RssWatch::start(relay.pid);
        let t = Instant::now();
        alice.send_file(room, &src, None, &|_, _| {}).await?;
        up.push(size as f64 / MIB / t.elapsed().as_secs_f64());
        up_rss.push(watch.peak_kib().await as f64);

        let history = alice.history(room, 1, None).await?;
        let text = &history.last().context("the file's message")?.text;
        let id = text
            .strip_prefix("[file ")
            .and_then(|t| t.split(']').next())
            .context("a file message")?
            .to_string();
        std::fs::create_dir_all(&out)?;
        let watch = RssWatch::start(relay.pid);
        let t = Instant::now();
        let saved = alice.save_file(&id, &out, &|_, _| {}).await?;
        down.push(size as f64 / MIB / t.elapsed().as_secs_f64());
        down_rss.push(watch.peak_kib().await as f64);
        if std::fs::read(&saved.path)? != bytes {
            anyhow::bail!("run {run}: the saved file differs");
        }
        std::fs::remove_dir_all(&out)?;
    }
    let hwm = relay.sample()?.hwm_kib;
    alice.close().await;
    relay.stop().await;

    let cpus = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Cpus_allowed_list:"))
                .map(|l| l["Cpus_allowed_list:".len()..].trim().to_string())
        })
        .unwrap_or_default();
    println!("## hearth-bench files");
    println!();
    println!(
        "A {} MiB file through hearth-core and a hearth-relay process on loopback, {} runs (medians). CPUs allowed: {cpus}. Machine: {}. Load average before {load_before}, after {}.",
        a.mib,
        a.runs,
        procfs::machine(),
        procfs::loadavg()
    );
    println!();
    println!("| figure | MiB/s |");
    println!("|---|---|");
    println!(
        "| upload (send_file: seal, 512 KiB pieces each fsynced by the relay) | {:.1} |",
        median(&up)
    );
    println!(
        "| download (save_file: fetch, open, check, fsync) | {:.1} |",
        median(&down)
    );
    println!(
        "| disk: write in 1 MiB pieces, one fsync | {:.1} |",
        median(&raw)
    );
    println!(
        "| disk: write in 512 KiB pieces, each fsynced (what the relay does) | {:.1} |",
        median(&raw_pieces)
    );
    match scps.is_empty() {
        true => println!(
            "| scp to {} | not measured: no ssh login without a password there |",
            a.scp_to
        ),
        false => println!("| scp to {} | {:.1} |", a.scp_to, median(&scps)),
    }
    println!();
    println!("| relay memory | MiB |");
    println!("|---|---|");
    println!(
        "| RSS idle (after sign-in) | {:.1} |",
        idle_kib as f64 / 1024.0
    );
    println!(
        "| RSS peak during uploads (median of runs) | {:.1} |",
        median(&up_rss) / 1024.0
    );
    println!(
        "| RSS peak during downloads (median of runs) | {:.1} |",
        median(&down_rss) / 1024.0
    );
    println!("| VmHWM at the end | {:.1} |", hwm as f64 / 1024.0);
    Ok(())
}
