//! `hearth-bench client`: what the client side costs through hearth-core (MLS, the
//! encrypted store and its batches, the relay session), against a relay process.
//!
//! Profiles use cheap test KDF parameters (`HEARTH_TEST_FAST_KDF=1`): unlocking a
//! profile is measured by `cargo bench -p hearth-core --bench unlock`, not here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hearth_core::transport::quic::QuicConnector;
use hearth_core::{Client, ClientEvent, Profile};
use hearth_protocol::{Handle, RelayAddress};

use crate::procfs;
use crate::servers::{self, Server};
use crate::stats::Latencies;

const PASSPHRASE: &str = "bench passphrase, never a real one";

/// The client figures' knobs (see `hearth-bench client --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The hearth-relay binary [default: next to hearth-bench]
    #[arg(long, value_name = "PATH")]
    pub relay_bin: Option<PathBuf>,
    /// Messages sent one by one while the receiver is live (send to receive latency).
    #[arg(long, default_value_t = 200)]
    pub live: usize,
    /// Messages the receiver catches up on after being offline.
    #[arg(long, default_value_t = 10_000)]
    pub catch_up: usize,
    /// Members of the room joined at the end (the joiner is the last).
    #[arg(long, default_value_t = 25)]
    pub members: usize,
    /// Characters per text message.
    #[arg(long, default_value_t = 1000)]
    pub text: usize,
    /// Rooms of one person for the room-connection figures (one connection each; the
    /// relay takes 256 per address by default).
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
}

/// What a person with many rooms costs: each room has its own connection that never
/// signs in (decision 0013), opened after a random pause.
struct RoomFigures {
    rooms: usize,
    /// Connect + sync of every room, with the default pauses and with none.
    connect_jittered: Duration,
    connect_unjittered: Duration,
    /// Relay RSS with only the account's connection (the person's client closed, another
    /// signed in), and with every room's connection open.
    rss_without_kib: u64,
    rss_with_kib: u64,
}

/// Connects `dir`'s profile and syncs every room (which opens every room's connection);
/// returns the client and the wall time.
async fn connect_all_rooms(dir: &Path) -> Result<(Client, Duration)> {
    let t = Instant::now();
    let client = reconnect(dir).await?;
    // Until every room is caught up: one whose connection the relay refused for now is
    // followed again in the background (sync says so with `NotConnected`).
    loop {
        match client.sync().await {
            Err(hearth_core::ClientError::NotConnected)
                if client.is_connected() && t.elapsed() < Duration::from_secs(120) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => break result?,
        }
    }
    Ok((client, t.elapsed()))
}

async fn room_figures(
    relay: &Server,
    people: &Path,
    address: &RelayAddress,
    rooms: usize,
) -> Result<RoomFigures> {
    let (dir, carol) = register(people, address, "carol").await?;
    for i in 0..rooms {
        carol.create_room(&format!("room {i}")).await?;
    }
    carol.close().await;
    // Someone signed in meanwhile, so that the relay's figure without carol's rooms is
    // of a live relay, not an idle one.
    let (_, dave) = register(people, address, "dave").await?;
    let rss_without_kib = relay.sample()?.rss_kib;
    let (carol, connect_jittered) = connect_all_rooms(&dir).await?;
    let rss_with_kib = relay.sample()?.rss_kib;
    carol.close().await;
    let jitter = hearth_core::client::room_jitter();
    hearth_core::client::set_room_jitter(Duration::ZERO);
    let measured = connect_all_rooms(&dir).await;
    hearth_core::client::set_room_jitter(jitter);
    let (carol, connect_unjittered) = measured?;
    carol.close().await;
    dave.close().await;
    Ok(RoomFigures {
        rooms,
        connect_jittered,
        connect_unjittered,
        rss_without_kib,
        rss_with_kib,
    })
}

/// This process's CPU time in µs, from `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`: exact
/// to the nanosecond, where /proc counts 10 ms ticks (a join's few ms read as 0).
fn self_cpu_us() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

async fn register(base: &Path, relay: &RelayAddress, name: &str) -> Result<(PathBuf, Client)> {
    let dir = base.join(name);
    let profile = Profile::create(&dir, PASSPHRASE, Handle::new(name)?, relay.clone())?;
    let client = Client::register_with(profile, None, Arc::new(QuicConnector::new(relay.clone())))
        .await
        .with_context(|| format!("registering {name}"))?;
    Ok((dir, client))
}

async fn reconnect(dir: &Path) -> Result<Client> {
    let profile = Profile::open(dir, PASSPHRASE)?;
    Ok(Client::connect(profile).await?)
}

async fn join(client: &Client, room: hearth_protocol::RoomId) -> Result<()> {
    client.sync().await?;
    if !client.invitations().await?.iter().any(|i| i.room == room) {
        bail!("the invitation did not arrive");
    }
    client.accept_invitation(room).await?;
    Ok(())
}

/// Runs the client figures and prints them.
pub async fn run(a: ClientArgs) -> Result<()> {
    let bin = servers::relay_binary(a.relay_bin.clone())?;
    let load_before = procfs::loadavg();
    let base = tempfile::Builder::new()
        .prefix("hearth-bench-client-")
        .tempdir()?;
    let relay = Server::relay(&bin, base.path(), &[]).await?;
    let address = relay.address.clone();
    let people = base.path().join("people");
    let text: String = "x".repeat(a.text.max(1));

    let (_, alice) = register(&people, &address, "alice").await?;
    let (bob_dir, bob) = register(&people, &address, "bob").await?;
    let room = alice.create_room("bench pair").await?;
    alice.invite(room, bob.profile().handle()).await?;
    join(&bob, room).await?;

    // 1. Live: one message at a time, from alice's send_text to bob's event.
    let mut events = bob.events();
    let mut sends = Vec::new();
    let mut e2e = Vec::new();
    for i in 0..a.live {
        let body = format!("{i} {text}");
        let t = Instant::now();
        alice.send_text(room, &body).await?;
        sends.push(us(t.elapsed()));
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
                .await
                .context("bob did not receive a live message within 30 s")?
                .context("bob's event stream ended")?;
            if matches!(&event, ClientEvent::Message(item) if item.text == body) {
                break;
            }
        }
        e2e.push(us(t.elapsed()));
    }
    let (live_send, live_e2e) = (Latencies::new(sends), Latencies::new(e2e));
    bob.close().await;

    // 2. Sending while bob is away: wall time and this process's CPU per message.
    let mut sends = Vec::with_capacity(a.catch_up);
    let cpu = self_cpu_us();
    let t = Instant::now();
    for i in 0..a.catch_up {
        let s = Instant::now();
        alice.send_text(room, &format!("{i} {text}")).await?;
        sends.push(us(s.elapsed()));
    }
    let fill_secs = t.elapsed().as_secs_f64();
    let send_cpu = (self_cpu_us() - cpu) as f64 / a.catch_up.max(1) as f64;
    let send = Latencies::new(sends);

    // 3. Catching up: bob comes back and syncs everything he missed.
    let cpu = self_cpu_us();
    let t = Instant::now();
    let bob = reconnect(&bob_dir).await?;
    bob.sync().await?;
    let catch_up = t.elapsed();
    let receive_cpu = (self_cpu_us() - cpu) as f64 / a.catch_up.max(1) as f64;
    let seen = bob.history(room, u32::MAX as usize, None).await?.len();
    if seen < a.catch_up + a.live {
        bail!("bob caught up on only {seen} messages");
    }
    bob.close().await;

    // 4. A room of `members`: alice adds everyone but the last, then the last one; the
    //    last one joins (reads the Welcome, builds the 25-leaf tree, catches up).
    let others = a.members.saturating_sub(1).max(1);
    let mut dirs = Vec::new();
    for i in 0..others {
        let (dir, c) = register(&people, &address, &format!("m{i}")).await?;
        c.close().await;
        dirs.push(dir);
    }
    let big = alice.create_room("bench 25").await?;
    for i in 0..others - 1 {
        alice.invite(big, &Handle::new(&format!("m{i}"))?).await?;
    }
    let last = Handle::new(&format!("m{}", others - 1))?;
    let t = Instant::now();
    alice.invite(big, &last).await?;
    let invite_last = t.elapsed();
    let joiner = reconnect(dirs.last().context("members")?).await?;
    let cpu = self_cpu_us();
    let t = Instant::now();
    join(&joiner, big).await?;
    let joined = t.elapsed();
    let join_cpu = self_cpu_us() - cpu;
    let members = joiner.members(big).await?.len();
    joiner.close().await;
    alice.close().await;

    // 5. Many rooms, each on its own connection.
    let rooms = room_figures(&relay, &people, &address, a.rooms).await?;
    relay.stop().await;

    println!("## hearth-bench client");
    println!();
    println!(
        "Through hearth-core (MLS + encrypted store + relay session) against a hearth-relay process on loopback; {}-character texts. Machine: {}. Load average before {load_before}, after {}.",
        a.text,
        procfs::machine(),
        procfs::loadavg()
    );
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| send (send_text until the relay stored it), {} in a row: p50 / p99 ms | {:.2} / {:.2} |",
        a.catch_up,
        send.ms(0.5),
        send.ms(0.99)
    );
    println!("| send: client CPU µs per message | {send_cpu:.0} |");
    println!(
        "| live, send_text to the receiver's event, {} one at a time: p50 / p99 ms | {:.2} / {:.2} |",
        a.live,
        live_e2e.ms(0.5),
        live_e2e.ms(0.99)
    );
    println!(
        "| live: send_text alone, p50 ms | {:.2} |",
        live_send.ms(0.5)
    );
    println!(
        "| catch-up of {} messages (connect + sync): s, messages/s | {:.2}, {:.0} |",
        a.catch_up,
        catch_up.as_secs_f64(),
        a.catch_up as f64 / catch_up.as_secs_f64()
    );
    println!("| receive (catch-up): client CPU µs per message | {receive_cpu:.0} |");
    println!(
        "| invite the {}th member (commit + Welcome) ms | {:.1} |",
        members,
        invite_last.as_secs_f64() * 1e3
    );
    println!(
        "| join a {members}-member room (fetch + process Welcome + catch up) ms, client CPU ms | {:.1}, {:.1} |",
        joined.as_secs_f64() * 1e3,
        join_cpu as f64 / 1e3
    );
    println!(
        "| connect + sync with {} rooms (one connection each), random pauses of up to {} ms / none: s | {:.2} / {:.2} |",
        rooms.rooms,
        hearth_core::client::room_jitter().as_millis(),
        rooms.connect_jittered.as_secs_f64(),
        rooms.connect_unjittered.as_secs_f64()
    );
    println!(
        "| relay RSS without / with those {} room connections: MiB (KiB per connection) | {:.1} / {:.1} ({:.0}) |",
        rooms.rooms,
        rooms.rss_without_kib as f64 / 1024.0,
        rooms.rss_with_kib as f64 / 1024.0,
        rooms.rss_with_kib.saturating_sub(rooms.rss_without_kib) as f64 / rooms.rooms.max(1) as f64
    );
    println!();
    println!(
        "Sending {} messages one after another took {fill_secs:.1} s.",
        a.catch_up
    );
    Ok(())
}
