//! disk-full: the real `hearth-relay` process with its data on a small tmpfs it mounts
//! (needs root; `--no-mount` raises the free-space floor in the config instead). Each
//! cycle fills the file system with a ballast file to below the relay's `min_free_bytes`
//! floor, checks that writes are refused with `StorageFull` while logins and reads keep
//! working and `hearth-relay status` says FULL, deletes the ballast and checks that
//! writes resume without a restart. A last phase runs with no floor at all and fills the
//! disk for real (ENOSPC inside the store): the relay must not go on running with a
//! store that refuses every write; it should exit non-zero (for systemd to restart it),
//! and after a restart with space back nothing acknowledged is missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hearth_core::ClientError;
use hearth_protocol::{ErrorCode, RoomId};
use hearth_relay::admin::DiskSpace;
use hearth_stress::people::{room_with, Person};
use hearth_stress::relay::RelayProcess;
use hearth_stress::stats::{ms, percentile};

#[derive(Parser, Debug)]
#[command(
    about = "Fill the relay's disk past its floor and back; check refusals, reads, logins, recovery"
)]
struct Args {
    /// Fill / free cycles.
    #[arg(long, default_value_t = 3)]
    cycles: u32,
    /// Size of the tmpfs the relay's data lives on (MiB).
    #[arg(long, default_value_t = 48)]
    size_mib: u64,
    /// The relay's free-space floor, min_free_bytes (MiB).
    #[arg(long, default_value_t = 8)]
    floor_mib: u64,
    /// Writes attempted while the disk is full, per cycle.
    #[arg(long, default_value_t = 20)]
    attempts: u32,
    /// Do not mount a tmpfs: raise the floor above the free space in the config instead
    /// (lowering it again then needs a relay restart).
    #[arg(long)]
    no_mount: bool,
    /// Skip the last phase (no floor, a really full disk).
    #[arg(long)]
    skip_enospc: bool,
    /// Write the relay's standard error to a file on the small file system too (as
    /// `hearth-relay 2>>log` beside its data would), not beside it.
    #[arg(long)]
    log_on_data_fs: bool,
    /// Keep the temp directory and print where it is (the tmpfs is unmounted).
    #[arg(long)]
    keep: bool,
}

/// Unmounts the tmpfs when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    hearth_stress::log_from_env();
    hearth_stress::fast_kdf();
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let floor = args.floor_mib << 20;
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt)?;
    let mount = if args.no_mount {
        None
    } else {
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={}m", args.size_mib),
                "tmpfs",
            ])
            .arg(&mnt)
            .status()
            .context("run mount")?;
        if !status.success() {
            bail!(
                "cannot mount a tmpfs on {} (needs root): run with --no-mount",
                mnt.display()
            );
        }
        Some(Mount(mnt.clone()))
    };
    let config = dir.path().join("relay.toml");
    let relay_floor = if mount.is_some() {
        floor
    } else {
        // No small file system: a floor above what is free makes the disk count as full.
        DiskSpace::of(&mnt)?.free_bytes + (1 << 30)
    };
    write_config(&config, relay_floor)?;
    println!(
        "disk-full: {} cycles; {}; relay floor min_free_bytes = {} MiB",
        args.cycles,
        if mount.is_some() {
            format!("relay data on a {} MiB tmpfs", args.size_mib)
        } else {
            "no mount: the floor is raised above the free space in the config".into()
        },
        relay_floor >> 20
    );
    let data = mnt.join("relay");
    let mut relay = tokio::task::block_in_place(|| {
        // The log stays off the small file system unless asked (then it fills up too).
        let log = if args.log_on_data_fs {
            &mnt
        } else {
            dir.path()
        }
        .join("relay.log");
        RelayProcess::spawn_logging(&data, "127.0.0.1:0", Some(&config), &log)
    })?;
    let invite = relay.mint_invite(10)?;
    let people = dir.path().join("people");
    let alice = Person::register(&people, "alice", &invite).await?;
    let mut bob = Person::register(&people, "bob", &invite).await?;
    let room = room_with(&alice, &[&bob], "disk").await?;
    let mut acked: Vec<String> = Vec::new();
    let mut n = 0u32;
    let mut send = |alice: &Person, size: usize| {
        n += 1;
        let text = format!("m{n} {}", "x".repeat(size));
        let client = alice.client.clone();
        async move { (client.send_text(room, &text).await, text) }
    };
    for _ in 0..5 {
        let (r, text) = send(&alice, 100).await;
        r.context("a write before the disk fills")?;
        acked.push(text);
    }

    let mut refused = 0u32;
    let mut other_errors: Vec<String> = Vec::new();
    let mut stored_while_full = 0u32;
    let mut logins = Vec::new();
    let mut resumes = Vec::new();
    let mut status_says_full = 0u32;
    let mut first_refusal = String::new();
    let mut failures: Vec<String> = Vec::new();
    for cycle in 1..=args.cycles {
        if mount.is_some() {
            let free = DiskSpace::of(&mnt)?.free_bytes;
            ballast(&mnt.join("ballast"), free.saturating_sub(floor / 2))?;
        }
        println!(
            "cycle {cycle}: free {} MiB (floor {} MiB)",
            DiskSpace::of(&mnt)?.free_bytes >> 20,
            relay_floor >> 20
        );
        // Writes refused with StorageFull.
        for _ in 0..args.attempts {
            match send(&alice, 100).await {
                (Err(ClientError::Relay(e)), _) if e.code == ErrorCode::StorageFull => {
                    refused += 1;
                    if first_refusal.is_empty() {
                        first_refusal = e.message.clone();
                    }
                }
                (Err(e), _) => other_errors.push(e.to_string()),
                (Ok(_), text) => {
                    stored_while_full += 1;
                    acked.push(text);
                }
            }
        }
        match alice.client.create_room("while full").await {
            Err(ClientError::Relay(e)) if e.code == ErrorCode::StorageFull => refused += 1,
            Err(e) => other_errors.push(format!("create room: {e}")),
            Ok(_) => stored_while_full += 1,
        }
        // A fresh login and a read.
        let t = Instant::now();
        let dir_b = bob.dir.clone();
        bob.close().await;
        bob = match Person::connect(&dir_b).await {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!(
                    "cycle {cycle}: login with the disk full failed: {e:#}"
                ));
                bail!("{}", failures.join("\n"));
            }
        };
        logins.push(t.elapsed());
        if let Err(e) = bob.client.sync().await {
            failures.push(format!(
                "cycle {cycle}: a read (sync) with the disk full failed: {e}"
            ));
        }
        let missing = missing_from(&bob, room, &acked).await?;
        if missing > 0 {
            failures.push(format!(
                "cycle {cycle}: bob misses {missing} acknowledged messages"
            ));
        }
        let status = tokio::task::block_in_place(|| relay.status())?;
        if status.contains("FULL") {
            status_says_full += 1;
        } else {
            failures.push(format!(
                "cycle {cycle}: hearth-relay status does not say FULL:\n{status}"
            ));
        }
        // Space back: writes resume by themselves.
        let t = Instant::now();
        if mount.is_some() {
            std::fs::remove_file(mnt.join("ballast"))?;
        } else {
            relay.kill()?;
            write_config(&config, floor)?;
            tokio::task::block_in_place(|| relay.restart())?;
        }
        let deadline = t + Duration::from_secs(30);
        loop {
            match send(&alice, 100).await {
                (Ok(_), text) => {
                    acked.push(text);
                    resumes.push(t.elapsed());
                    break;
                }
                (Err(e), _) if Instant::now() > deadline => {
                    failures.push(format!(
                        "cycle {cycle}: writes did not resume within 30 s: {e}"
                    ));
                    break;
                }
                (Err(_), _) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        if relay.exited()?.is_some() {
            failures.push(format!("cycle {cycle}: the relay process ended"));
        }
        if mount.is_none() {
            // Back to a full disk for the next cycle.
            relay.kill()?;
            write_config(&config, relay_floor)?;
            tokio::task::block_in_place(|| relay.restart())?;
        }
    }

    // No floor, a really full disk.
    let mut enospc = Vec::new();
    if mount.is_some() && !args.skip_enospc {
        if relay.terminate(Duration::from_secs(10))?.is_none() {
            relay.kill()?;
        }
        write_config(&config, 0)?;
        tokio::task::block_in_place(|| relay.restart())?;
        alice.sync_within(Duration::from_secs(20)).await?;
        println!("last phase: no floor, the file system filled to the last byte");
        let free = DiskSpace::of(&mnt)?.free_bytes;
        ballast(&mnt.join("ballast"), free)?;
        enospc.push(format!(
            "no floor, file system filled: {} KiB free",
            DiskSpace::of(&mnt)?.free_bytes >> 10
        ));
        let t = Instant::now();
        let (mut ok, mut errors, mut exit) = (0u32, Vec::<String>::new(), None);
        while t.elapsed() < Duration::from_secs(20) {
            if let Some(status) = relay.exited()? {
                exit = Some((status, t.elapsed()));
                break;
            }
            match send(&alice, 8000).await {
                (Ok(_), text) => {
                    ok += 1;
                    acked.push(text);
                }
                (Err(e), _) => {
                    if errors.len() < 3 && !errors.contains(&e.to_string()) {
                        errors.push(e.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        enospc.push(format!(
            "writes acknowledged on the full disk: {ok}; errors: {errors:?}"
        ));
        match exit {
            Some((status, after)) => enospc.push(format!(
                "the relay exited by itself {} after the disk filled: {status}; its log says:\n{}",
                ms(Some(after)),
                relay.log_errors(3)
            )),
            None => {
                let status = tokio::task::block_in_place(|| relay.status())?;
                enospc.push(format!(
                    "the relay is still running 20 s after the disk filled; status says:\n{status}"
                ));
                // Space back without a restart: does it store again?
                std::fs::remove_file(mnt.join("ballast"))?;
                let back = matches!(send(&alice, 100).await, (Ok(_), _));
                enospc.push(format!(
                    "after freeing space, without a restart, a write {}",
                    if back { "works" } else { "still fails" }
                ));
                if !back {
                    failures.push(
                        "a store that failed a write keeps the relay running and refusing writes"
                            .into(),
                    );
                }
                relay.kill()?;
            }
        }
        let _ = std::fs::remove_file(mnt.join("ballast"));
        write_config(&config, floor)?;
        tokio::task::block_in_place(|| relay.restart())?;
        alice.sync_within(Duration::from_secs(30)).await?;
        match send(&alice, 100).await {
            (Ok(_), text) => acked.push(text),
            (Err(e), _) => failures.push(format!("after the restart, a write fails: {e}")),
        }
        bob.sync_within(Duration::from_secs(30)).await?;
        let missing = missing_from(&bob, room, &acked).await?;
        enospc.push(format!(
            "after a restart with space back: {missing} acknowledged messages missing at bob"
        ));
        if missing > 0 {
            failures.push(format!(
                "{missing} acknowledged messages lost after the real ENOSPC"
            ));
        }
    }

    bob.sync_within(Duration::from_secs(30)).await?;
    let missing = missing_from(&bob, room, &acked).await?;
    if missing > 0 {
        failures.push(format!(
            "{missing} acknowledged messages missing at the end"
        ));
    }
    println!();
    println!("cycles:                         {}", args.cycles);
    println!("writes refused with StorageFull: {refused} (first said: {first_refusal:?})");
    println!("writes stored while full (must be 0): {stored_while_full}");
    println!(
        "other errors while full:        {} {:?}",
        other_errors.len(),
        other_errors.iter().take(3).collect::<Vec<_>>()
    );
    println!(
        "logins with the disk full:      {} ok, p50 {} max {}",
        logins.len(),
        ms(percentile(&logins, 50.0)),
        ms(logins.iter().max().copied())
    );
    println!(
        "status said FULL:               {status_says_full} of {}",
        args.cycles
    );
    println!(
        "writes resumed after freeing:   {} of {}, p50 {} max {} (from freeing the space to the first acknowledged write)",
        resumes.len(),
        args.cycles,
        ms(percentile(&resumes, 50.0)),
        ms(resumes.iter().max().copied())
    );
    println!(
        "acknowledged messages:          {}, missing at the end (must be 0): {missing}",
        acked.len()
    );
    for line in &enospc {
        println!("real ENOSPC: {line}");
    }
    println!(
        "total time:                     {:.1} s",
        started.elapsed().as_secs_f64()
    );
    alice.close().await;
    bob.close().await;
    drop(relay);
    drop(mount);
    if args.keep {
        println!("kept {}", dir.keep().display());
    }
    if !failures.is_empty() || stored_while_full > 0 || resumes.len() as u32 != args.cycles {
        for f in &failures {
            println!("FAILURE: {f}");
        }
        bail!("FAILED: see above");
    }
    println!("OK");
    Ok(())
}

fn write_config(path: &Path, min_free_bytes: u64) -> Result<()> {
    std::fs::write(path, format!("min_free_bytes = {min_free_bytes}\n"))
        .with_context(|| format!("write {}", path.display()))
}

/// Grows the ballast file by up to `bytes` (stops quietly at a full file system).
fn ballast(path: &Path, bytes: u64) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let chunk = vec![0xA5u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        match file.write_all(&chunk[..n]) {
            Ok(()) => left -= n as u64,
            Err(e) if e.raw_os_error() == Some(28) => {
                // ENOSPC: fill the last pages byte by byte is not needed; what is left
                // is below one chunk.
                let mut small = 4096usize.min(n);
                while small > 0 {
                    if file.write_all(&chunk[..small]).is_err() {
                        small /= 2;
                    }
                }
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let _ = file.sync_all();
    Ok(())
}

/// How many of `texts` are not in `person`'s history of `room`.
async fn missing_from(person: &Person, room: RoomId, texts: &[String]) -> Result<usize> {
    let history = person.history(room).await?;
    let have: std::collections::HashSet<&str> = history.iter().map(|(_, t)| t.as_str()).collect();
    Ok(texts.iter().filter(|t| !have.contains(t.as_str())).count())
}
