//! client-kill-loop: the room admin runs the real `hearth` CLI (one process per command,
//! no agent) to invite and kick people, and the process is SIGKILLed at a random moment
//! of the command (connecting, committing, depositing the Welcome...). The invitees are
//! in-process clients that accept whatever invitation arrives. Afterwards membership
//! must be consistent: everyone the admin lists as a member has the room and reads a new
//! message (no ghost), nobody outside the list still has it, and inviting someone again
//! while their invitation is pending works. Exits non-zero if not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hearth_protocol::{Handle, RoomId};
use hearth_stress::cli::{Cli, Outcome};
use hearth_stress::people::{lock, Person};
use hearth_stress::relay::RelayProcess;
use hearth_stress::stats::{ms, percentile};
use hearth_stress::Rng;

#[derive(Parser, Debug)]
#[command(about = "SIGKILL the admin's hearth CLI during invites and kicks; check membership")]
struct Args {
    /// How many admin commands to SIGKILL.
    #[arg(long, default_value_t = 30)]
    kills: u32,
    /// In-process people the admin invites and kicks [default: kills / 5 + 2, at least
    /// 4: the relay lets one account take another's KeyPackages 10 times in 10 minutes,
    /// and every invite, killed or not, may take one].
    #[arg(long)]
    invitees: Option<usize>,
    /// Seed of the random choices (printed; repeat a run's choices with it).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the temp directory (relay data, relay log, profiles) and print where it is.
    #[arg(long)]
    keep: bool,
}

const ROOM: &str = "stress";

/// How long a command the loop needs may be refused with `RateLimited` (sessions of
/// killed processes still open on the relay) before the run gives up.
const PATIENCE: Duration = Duration::from_secs(120);

/// Figures of the loop.
#[derive(Default)]
struct Tally {
    killed: BTreeMap<&'static str, u32>,
    finished_ok: BTreeMap<&'static str, u32>,
    /// Commands that ended by themselves with an error: op, target, message.
    failed: Vec<(&'static str, String, String)>,
    durations: BTreeMap<&'static str, Vec<Duration>>,
    /// Killable commands refused with `RateLimited` before they did anything.
    rate_limited: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    let guests = args
        .invitees
        .unwrap_or((args.kills as usize / 5 + 2).max(4));
    args.invitees = Some(guests);
    let seed = args.seed.unwrap_or_else(Rng::clock_seed);
    let mut rng = Rng::new(seed);
    hearth_stress::log_from_env();
    hearth_stress::fast_kdf();
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    println!(
        "client-kill-loop: {} kills of the admin's CLI (a process per command, SIGKILL), {} in-process invitees, seed {seed}",
        args.kills, guests
    );
    let relay = tokio::task::block_in_place(|| {
        RelayProcess::spawn(&dir.path().join("relay"), "127.0.0.1:0", None)
    })?;
    let invite = relay.mint_invite(1000)?;
    let admin = Cli::new(&dir.path().join("people").join("admin"))?;
    let init = admin
        .run(&["init", "--invite", &invite.to_string(), "--name", "admin"])
        .await?;
    if !init.ok() {
        bail!("hearth init failed: {}", init.stderr);
    }
    let create = admin.run(&["room", "create", ROOM]).await?;
    if !create.ok() {
        bail!("hearth room create failed: {}", create.stderr);
    }
    let mut invitees = Vec::new();
    for i in 0..guests {
        invitees.push(
            Person::register(&dir.path().join("people"), &format!("guest{i}"), &invite).await?,
        );
    }
    let room = room_id(&admin).await?;

    // Each invitee accepts what arrives, unless paused.
    let stop = Arc::new(AtomicBool::new(false));
    let paused: Arc<Mutex<BTreeSet<Handle>>> = Arc::default();
    let accept_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut acceptors = Vec::new();
    for person in &invitees {
        let (client, handle) = (person.client.clone(), person.handle.clone());
        let (stop, paused, errors) = (stop.clone(), paused.clone(), accept_errors.clone());
        acceptors.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if !lock(&paused).contains(&handle) {
                    accept_pending(&client, room, &handle, &errors).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }

    // Calibration: how long each command takes when it is not killed.
    let mut tally = Tally::default();
    let mut longest: BTreeMap<&'static str, Duration> = BTreeMap::new();
    let mut kills = 0;
    let mut rounds = 0;
    // Invites per invitee: each may take one of their KeyPackages (10 per 10 minutes).
    let mut invites_of: BTreeMap<Handle, u32> = BTreeMap::new();
    while kills < args.kills {
        rounds += 1;
        let members = members(&admin).await?;
        let target = &invitees[rng.index(invitees.len())].handle;
        let op = if members.contains(target) {
            "kick"
        } else {
            *invites_of.entry(target.clone()).or_default() += 1;
            "invite"
        };
        let args_ = ["room", op, ROOM, target.as_str()];
        let outcome = match longest.get(op) {
            // The first two of each kind run to the end, to learn how long they take.
            Some(t) if tally.durations.get(op).is_some_and(|d| d.len() >= 2) => {
                let upto = t.as_millis() as u64 * 11 / 10;
                let after = Duration::from_millis(rng.range(0, upto.max(1)));
                admin.run_or_kill(&args_, after).await?
            }
            _ => Outcome::Finished(admin.run_patiently(&args_, PATIENCE).await?),
        };
        match outcome {
            Outcome::Killed(_) => {
                kills += 1;
                *tally.killed.entry(op).or_default() += 1;
            }
            Outcome::Finished(f) => {
                tally.durations.entry(op).or_default().push(f.took);
                let l = longest.entry(op).or_default();
                *l = (*l).max(f.took);
                if f.ok() {
                    *tally.finished_ok.entry(op).or_default() += 1;
                } else if f.rate_limited() {
                    tally.rate_limited += 1;
                } else {
                    eprintln!("round {rounds}: {op} {target} failed: {}", f.error_line());
                    tally.failed.push((op, target.to_string(), f.error_line()));
                }
            }
        }
        if rounds % 10 == 0 {
            println!(
                "round {rounds}: {kills} kills, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }

    println!("loop done after {rounds} rounds; settling and checking membership");
    // Settle: the admin's next command resumes (and delivers what it still owes); the
    // invitees accept what arrived.
    let list = admin.run_patiently(&["room", "list"], PATIENCE).await?;
    if !list.ok() {
        eprintln!("room list failed: {}", list.error_line());
    }
    let check = settle_and_check(&admin, room, &invitees, Duration::from_secs(20)).await?;

    // Re-inviting someone whose invitation is pending: invite, then invite again before
    // they accept. And everyone outside the room is invited back in.
    let mut reinvite = Vec::new();
    let outside: Vec<&Person> = invitees
        .iter()
        .filter(|p| !check.members.contains(&p.handle))
        .collect();
    // The one invited least so far, so the relay's KeyPackage limit does not interfere.
    let pending_target = outside
        .iter()
        .copied()
        .min_by_key(|p| invites_of.get(&p.handle).copied().unwrap_or(0))
        .or(invitees.first());
    if let Some(p) = pending_target {
        lock(&paused).insert(p.handle.clone());
        if check.members.contains(&p.handle) {
            let kick = admin
                .run_patiently(&["room", "kick", ROOM, p.handle.as_str()], PATIENCE)
                .await?;
            reinvite.push(format!("kick {}: {}", p.handle, verdict(&kick)));
        }
        let first = admin
            .run_patiently(&["room", "invite", ROOM, p.handle.as_str()], PATIENCE)
            .await?;
        reinvite.push(format!(
            "invite {} (they do not accept yet): {}",
            p.handle,
            verdict(&first)
        ));
        let again = admin
            .run_patiently(&["room", "invite", ROOM, p.handle.as_str()], PATIENCE)
            .await?;
        reinvite.push(format!(
            "invite {} again while pending: {}",
            p.handle,
            verdict(&again)
        ));
        lock(&paused).remove(&p.handle);
    }
    for p in &outside {
        if pending_target.is_some_and(|t| t.handle == p.handle) {
            continue;
        }
        let again = admin
            .run_patiently(&["room", "invite", ROOM, p.handle.as_str()], PATIENCE)
            .await?;
        reinvite.push(format!("invite {} back: {}", p.handle, verdict(&again)));
    }
    let after = settle_and_check(&admin, room, &invitees, Duration::from_secs(20)).await?;

    stop.store(true, Ordering::SeqCst);
    for task in acceptors {
        task.abort();
        let _ = task.await;
    }
    let total = started.elapsed();
    println!();
    println!("rounds:                    {rounds}");
    println!(
        "admin CLI SIGKILLs:        {kills} ({})",
        counts(&tally.killed)
    );
    println!(
        "commands that finished:    {} ok ({}), {} failed",
        tally.finished_ok.values().sum::<u32>(),
        counts(&tally.finished_ok),
        tally.failed.len()
    );
    for (op, target, message) in &tally.failed {
        println!("  {op} {target}: {message}");
    }
    for (op, d) in &tally.durations {
        println!(
            "{op:<6} command time:       p50 {} max {}",
            ms(percentile(d, 50.0)),
            ms(d.iter().max().copied())
        );
    }
    println!(
        "refused, too many sessions:  {} killable commands, {} retried commands (sessions of killed processes still open; retried every 0.5 s)",
        tally.rate_limited,
        admin.refused()
    );
    let accept_errors = lock(&accept_errors).clone();
    println!("invitee accept errors:     {}", accept_errors.len());
    for e in accept_errors.iter().take(10) {
        println!("  {e}");
    }
    println!("after the loop:            {}", check.describe());
    for line in &reinvite {
        println!("  {line}");
    }
    println!("after the re-invites:      {}", after.describe());
    println!("total time:                {:.1} s", total.as_secs_f64());
    for person in invitees {
        person.close().await;
    }
    drop(relay);
    if args.keep {
        println!("kept {}", dir.keep().display());
    }
    let reinvite_failed = reinvite.iter().filter(|l| l.contains("FAILED")).count();
    println!("re-invites that failed (must be 0): {reinvite_failed}");
    if !check.consistent()
        || !after.consistent()
        || after.members.len() != guests + 1
        || reinvite_failed > 0
    {
        bail!("FAILED: membership is not consistent (see above)");
    }
    println!("OK");
    Ok(())
}

/// Accepts a pending invitation into `room`, if there is one.
async fn accept_pending(
    client: &hearth_core::Client,
    room: RoomId,
    handle: &Handle,
    errors: &Mutex<Vec<String>>,
) {
    let _ = client.sync().await;
    let invitations = match client.invitations().await {
        Ok(invitations) => invitations,
        Err(e) => {
            lock(errors).push(format!("{handle}: invitations: {e}"));
            return;
        }
    };
    if invitations.iter().any(|i| i.room == room) {
        if let Err(e) = client.accept_invitation(room).await {
            lock(errors).push(format!("{handle}: {e}"));
        }
    }
}

/// The room's id, from `hearth room info --json`.
async fn room_id(admin: &Cli) -> Result<RoomId> {
    let out = admin
        .run_patiently(&["--json", "room", "info", ROOM], PATIENCE)
        .await?;
    let text = out.stdout.trim();
    let value: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or(""))
        .with_context(|| format!("room info --json printed {text:?} {}", out.stderr))?;
    let hex = value
        .get("room")
        .and_then(|v| v.as_str())
        .with_context(|| format!("no room id in {text}"))?;
    RoomId::from_hex(hex).with_context(|| format!("room id {hex}"))
}

/// The members the admin's CLI lists.
async fn members(admin: &Cli) -> Result<BTreeSet<Handle>> {
    Ok(roster(admin).await?.0)
}

/// The members the admin's CLI lists, and which of them it lists as invited but not
/// joined yet (`"pending"`).
async fn roster(admin: &Cli) -> Result<(BTreeSet<Handle>, BTreeSet<Handle>)> {
    let out = admin
        .run_patiently(&["--json", "room", "members", ROOM], PATIENCE)
        .await?;
    if !out.ok() {
        bail!("room members failed: {}", out.stderr);
    }
    let (mut set, mut pending) = (BTreeSet::new(), BTreeSet::new());
    for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)?;
        let handle = value["handle"].as_str().context("member without handle")?;
        let handle = Handle::new(handle).map_err(|e| anyhow::anyhow!("{e}"))?;
        if value["pending"].as_bool() == Some(true) {
            pending.insert(handle.clone());
        }
        set.insert(handle);
    }
    Ok((set, pending))
}

fn verdict(f: &hearth_stress::cli::Finished) -> String {
    if f.ok() {
        "ok".into()
    } else {
        format!("FAILED: {}", f.error_line())
    }
}

fn counts(m: &BTreeMap<&'static str, u32>) -> String {
    m.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Membership as the admin lists it, against what each invitee has.
struct Check {
    members: BTreeSet<Handle>,
    /// Listed by the admin, but the room never became theirs.
    ghosts: Vec<Handle>,
    /// Of the ghosts: listed as invited, and they hold the invitation, not accepted.
    holding_invitation: Vec<Handle>,
    /// Listed and joined, but a message sent afterwards did not arrive.
    cannot_read: Vec<Handle>,
    /// Not listed, yet they still hold the room as joined.
    zombies: Vec<Handle>,
}

impl Check {
    fn consistent(&self) -> bool {
        self.ghosts.is_empty() && self.cannot_read.is_empty() && self.zombies.is_empty()
    }

    fn describe(&self) -> String {
        format!(
            "{} members listed; ghosts (must be 0): {} {:?} (of them holding the invitation: {:?}); cannot read (must be 0): {} {:?}; removed but still joined (must be 0): {} {:?}",
            self.members.len(),
            self.ghosts.len(),
            names(&self.ghosts),
            names(&self.holding_invitation),
            self.cannot_read.len(),
            names(&self.cannot_read),
            self.zombies.len(),
            names(&self.zombies)
        )
    }
}

fn names(v: &[Handle]) -> Vec<&str> {
    v.iter().map(Handle::as_str).collect()
}

/// Waits (up to `patience`) until every listed invitee has the room, then has the admin
/// send a message and checks who reads it.
async fn settle_and_check(
    admin: &Cli,
    room: RoomId,
    invitees: &[Person],
    patience: Duration,
) -> Result<Check> {
    let (members, pending) = roster(admin).await?;
    let joined = |p: &Person| {
        let client = p.client.clone();
        async move {
            client
                .rooms()
                .await
                .map(|rooms| rooms.iter().any(|r| r.id == room))
                .unwrap_or(false)
        }
    };
    let deadline = Instant::now() + patience;
    loop {
        let mut waiting = false;
        for p in invitees {
            if bounded(p, "sync", p.client.sync()).await.is_none() {
                waiting = true;
                continue;
            }
            if Some(members.contains(&p.handle)) != bounded(p, "rooms", joined(p)).await {
                waiting = true;
            }
        }
        if !waiting || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let text = format!("check-{}", Rng::clock_seed());
    let send = admin
        .run_patiently(&["send", ROOM, &text], PATIENCE)
        .await?;
    if !send.ok() {
        bail!("the admin cannot send: {}", send.stderr);
    }
    let mut check = Check {
        members: members.clone(),
        ghosts: Vec::new(),
        holding_invitation: Vec::new(),
        cannot_read: Vec::new(),
        zombies: Vec::new(),
    };
    for p in invitees {
        let listed = members.contains(&p.handle);
        let Some(has) = bounded(p, "rooms", joined(p)).await else {
            check.ghosts.push(p.handle.clone());
            continue;
        };
        if listed && !has {
            check.ghosts.push(p.handle.clone());
            let invited = bounded(p, "invitations", p.client.known_invitations()).await;
            if pending.contains(&p.handle)
                && invited.is_some_and(|i| i.is_ok_and(|i| i.iter().any(|i| i.room == room)))
            {
                check.holding_invitation.push(p.handle.clone());
            }
        } else if !listed && has {
            check.zombies.push(p.handle.clone());
        } else if listed {
            let mut read = false;
            let deadline = Instant::now() + Duration::from_secs(10);
            while !read && Instant::now() < deadline {
                let _ = bounded(p, "sync", p.client.sync()).await;
                read = p.history(room).await?.iter().any(|(_, t)| *t == text);
                if !read {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if !read {
                check.cannot_read.push(p.handle.clone());
            }
        }
    }
    Ok(check)
}

/// How long one client call of the final check may take before it counts as hung.
const CALL_PATIENCE: Duration = Duration::from_secs(30);

/// Awaits `call`, at most [`CALL_PATIENCE`]; a call that does not return is reported
/// (a hung client is a bug) and gives `None`.
async fn bounded<T>(
    p: &Person,
    what: &str,
    call: impl std::future::Future<Output = T>,
) -> Option<T> {
    match tokio::time::timeout(CALL_PATIENCE, call).await {
        Ok(v) => Some(v),
        Err(_) => {
            eprintln!(
                "HUNG: {}'s {what} did not return within {CALL_PATIENCE:?}",
                p.handle
            );
            println!(
                "HUNG: {}'s {what} did not return within {CALL_PATIENCE:?}",
                p.handle
            );
            None
        }
    }
}
