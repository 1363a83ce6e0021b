//! `hearth demo`: the whole system in one process, on embedded defaults.
//!
//! A real relay on 127.0.0.1 with a temporary store, three real clients (alice, bob and
//! carol) talking to it over QUIC, a room, messages, a removal, and a look at what the
//! relay actually stored.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hearth_core::{fingerprint, Client, Profile};
use hearth_protocol::{Handle, Invite, RoomId, Seq};
use hearth_relay::config::RelayConfig;

/// The passphrase of the demo's throwaway profiles.
const DEMO_PASSPHRASE: &str = "demo passphrase, not for real use";

/// Runs the demonstration and prints what happens.
pub async fn run() -> Result<()> {
    let temp = tempfile::Builder::new().prefix("hearth-demo-").tempdir()?;
    step("Starting a relay on 127.0.0.1 with a fresh store");
    let config = RelayConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: temp.path().join("relay"),
        ..RelayConfig::default()
    };
    let relay = hearth_relay::server::start(config)
        .await
        .context("cannot start the demo relay")?;
    println!("  relay address: {}", relay.address());

    step("Creating alice, bob and carol, each registered with a one-time invite");
    let mut people = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let token = relay
            .relay()
            .mint_invite(1, Some(Duration::from_secs(600)))?;
        let invite = Invite {
            relay: relay.address(),
            token,
        };
        let client = register(temp.path(), name, &invite).await?;
        println!("  {name:<6} fingerprint {}", client.profile().fingerprint());
        people.push(client);
    }
    let [alice, bob, carol] = <[Client; 3]>::try_from(people)
        .map_err(|_| anyhow::anyhow!("three people were created"))?;
    let safety = fingerprint::safety_number(&alice.profile().account(), &bob.profile().account());
    println!("  safety number of alice and bob (both see the same): {safety}");

    step("alice creates the room \"Home sweet home\" and invites bob and carol");
    let room = alice.create_room("Home sweet home").await?;
    for handle in ["bob", "carol"] {
        alice.invite(room, &Handle::new(handle)?).await?;
    }
    for person in [&bob, &carol] {
        caught_up(person).await?;
        let invitation = person
            .invitations()
            .await?
            .into_iter()
            .find(|inv| inv.room == room)
            .context("the invitation arrived")?;
        person.accept_invitation(room).await?;
        println!(
            "  {} accepted {}'s invitation to {}",
            person.profile().handle(),
            invitation.from,
            invitation.name
        );
    }

    step("Everyone talks");
    say(&alice, room, "Dinner at seven tonight?").await?;
    say(&bob, room, "Yes! I'll bring bread.").await?;
    say(&carol, room, "Count me in.").await?;
    for person in [&alice, &bob, &carol] {
        caught_up(person).await?;
    }
    show_history(&bob, room).await?;

    step("alice removes carol; the room gets new keys carol does not have");
    alice.remove_member(room, &Handle::new("carol")?).await?;
    say(
        &alice,
        room,
        "Planning carol's surprise party: Saturday at three.",
    )
    .await?;
    caught_up(&bob).await?;
    let carol_sync = carol.sync().await;
    show_history(&bob, room).await?;
    let carol_saw = carol
        .history(room, 100, None)
        .await
        .map(|items| items.iter().any(|i| i.text.contains("surprise")))
        .unwrap_or(false);
    ensure!(
        !carol_saw,
        "carol must not read messages sent after her removal"
    );
    let carol_still_member = carol.rooms().await?.iter().any(|r| r.id == room);
    ensure!(
        !carol_still_member,
        "carol's client must know she was removed"
    );
    let carol_send = carol.send_text(room, "can I still write?").await;
    ensure!(
        carol_send.is_err(),
        "carol must not be able to send after her removal"
    );
    println!(
        "  carol's client knows she was removed (sync: {}).",
        describe(&carol_sync)
    );
    println!("  her history ends before the surprise message; sending now fails:");
    if let Err(err) = carol_send {
        println!("    {err}");
    }

    step("What the relay stored");
    let store = relay.relay().store();
    let stats = store.stats()?;
    println!(
        "  {} accounts, {} room(s), {} room entries, {} inbox entries, {} payload bytes",
        stats.accounts, stats.rooms, stats.entries, stats.inbox, stats.bytes
    );
    println!(
        "  the room's log, as the relay sees it (id {}):",
        room.to_hex()
    );
    for entry in store.entries(&room, Seq(1), Seq(u64::MAX), 100)? {
        println!(
            "    #{:<3} {:<8} {:>5} bytes of ciphertext",
            entry.seq.0,
            format!("{:?}", entry.kind).to_lowercase(),
            entry.payload.len()
        );
    }
    let secrets = [
        "Dinner at seven",
        "bring bread",
        "Count me in",
        "surprise party",
        "Home sweet home",
    ];
    let report = scan_for_plaintext(relay.data_dir(), &secrets)?;
    println!(
        "  {} files, {} bytes on disk; searched them for every message and the room name:",
        report.files, report.bytes
    );
    ensure!(
        report.found.is_empty(),
        "plaintext found in the relay's files: {:?}",
        report.found
    );
    println!("  none found. The relay holds only ciphertext, key packages and routing data.");

    for client in [alice, bob, carol] {
        client.close().await;
    }
    relay.shutdown().await?;

    step("Do it for real");
    println!("  On the Raspberry Pi:   sudo apt install ./hearth-relay_*_arm64.deb   # prints its address and a first invite");
    println!("                         (or: hearth-relay --public-host raspberrypi.local)");
    println!("  For each person:       sudo hearth-relay invite    # prints one invite line");
    println!("  On each laptop:        hearth init --invite 'hearth://…' --name alice");
    println!("                         hearth fingerprint          # compare in person");
    println!("                         hearth room create family && hearth room invite family bob");
    println!("                         hearth chat family");
    println!("  See docs/user-guide.md and docs/deploy-pi.md.");
    Ok(())
}

fn describe(result: &Result<(), hearth_core::ClientError>) -> String {
    match result {
        Ok(()) => "ok".to_string(),
        Err(err) => err.to_string(),
    }
}

fn step(title: &str) {
    println!("\n== {title}");
}

async fn register(base: &Path, name: &str, invite: &Invite) -> Result<Client> {
    let profile = Profile::create(
        &base.join(name),
        DEMO_PASSPHRASE,
        Handle::new(name)?,
        invite.relay.clone(),
    )?;
    Ok(Client::register(profile, invite).await?)
}

/// How long [`caught_up`] waits for a room the relay refused for now.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(10);

/// Catches `client` up. A room the relay refused for now (too many connections from this
/// address: [`Client::sync`] returns `NotConnected` with the client still connected) is
/// followed again in the background, so this asks again for up to [`CATCH_UP_PATIENCE`].
async fn caught_up(client: &Client) -> Result<()> {
    let deadline = tokio::time::Instant::now() + CATCH_UP_PATIENCE;
    loop {
        match client.sync().await {
            Err(hearth_core::ClientError::NotConnected)
                if client.is_connected() && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other.context("catching up with the relay"),
        }
    }
}

async fn say(client: &Client, room: RoomId, text: &str) -> Result<()> {
    client.send_text(room, text).await?;
    println!("  {:<6} says: {text}", client.profile().handle().as_str());
    Ok(())
}

async fn show_history(client: &Client, room: RoomId) -> Result<()> {
    println!("  {}'s history of the room:", client.profile().handle());
    for item in client.history(room, 20, None).await? {
        println!("    {}", crate::output::message_line(&item));
    }
    Ok(())
}

/// What a search of the relay's files found.
struct ScanReport {
    files: usize,
    bytes: u64,
    found: Vec<String>,
}

/// Reads every file under `dir` and looks for each needle's bytes.
fn scan_for_plaintext(dir: &Path, needles: &[&str]) -> Result<ScanReport> {
    let mut report = ScanReport {
        files: 0,
        bytes: 0,
        found: Vec::new(),
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if file_type.is_file() {
                let bytes = std::fs::read(entry.path())?;
                report.files += 1;
                report.bytes += bytes.len() as u64;
                for needle in needles {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        report
                            .found
                            .push(format!("{needle:?} in {}", entry.path().display()));
                    }
                }
            }
        }
    }
    Ok(report)
}
