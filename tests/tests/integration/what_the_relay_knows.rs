//! Issue 16, decision 0013: nothing the relay stores, and no line it logs at `info`, links
//! an account to a room.
//!
//! A household's week through the real relay binary (127.0.0.1:0, its log at `info`
//! captured) and real clients: three people, two rooms with different members,
//! invitations, messages, display names, presence, a kick. Then `hearth-relay inspect`
//! asks the running relay what it knows, and once it stopped the same scan
//! ([`hearth_relay::inspect`]) runs over its store, its other files and its log.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hearth_core::store::{set_test_kdf_params, KdfParams};
use hearth_core::{Client, Profile};
use hearth_protocol::{Handle, Invite, RelayAddress, RoomId};
use hearth_relay::inspect::{scan_log, Verdict};
use hearth_relay::store::RedbStore;
use hearth_relay::Store;

/// The relay binary the workspace build put beside this test's executable.
fn relay_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows where it runs from");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let binary = dir.join("hearth-relay");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo nextest run --workspace)",
        binary.display()
    );
    binary
}

/// A relay process with its log going to `<dir>/relay.log`.
struct RelayProcess {
    child: Child,
    data: PathBuf,
    log: PathBuf,
    address: RelayAddress,
}

impl RelayProcess {
    fn start(dir: &Path, log_filter: &str) -> RelayProcess {
        let data = dir.join("relay");
        let log = dir.join("relay.log");
        let mut child = Command::new(relay_binary())
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .env_remove("HEARTH_RELAY_PUBLIC_HOST")
            .env("RUST_LOG", log_filter)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("relay binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut address = None;
        for line in lines.by_ref() {
            let line = line.expect("stdout line");
            if let Some(rest) = line.strip_prefix("relay address: ") {
                address = Some(rest.parse::<RelayAddress>().expect("address parses"));
            }
            if line.starts_with("data: ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        RelayProcess {
            child,
            data,
            log,
            address: address.expect("relay printed its address"),
        }
    }

    /// Runs an owner command against the running relay.
    fn owner(&self, args: &[&str]) -> std::process::Output {
        Command::new(relay_binary())
            .args(args)
            .arg("--data")
            .arg(&self.data)
            .env_remove("HEARTH_RELAY_PUBLIC_HOST")
            .output()
            .expect("owner command runs")
    }

    fn invite(&self) -> Invite {
        let host = format!("127.0.0.1:{}", self.address.port);
        let out = self.owner(&["invite", "--public-host", &host]);
        let text = String::from_utf8_lossy(&out.stdout);
        let start = text.find("hearth://").expect("an invite was printed");
        text[start..]
            .split_whitespace()
            .next()
            .expect("invite")
            .parse()
            .expect("invite parses")
    }

    /// Stops the relay as its service manager would (SIGTERM) and waits for it.
    fn stop(mut self) -> (PathBuf, PathBuf) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        self.child.wait().expect("the relay exits");
        (self.data.clone(), self.log.clone())
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn person(dir: &Path, relay: &RelayProcess, name: &str) -> Client {
    let profile = Profile::create(
        &dir.join(name),
        "correct horse battery staple",
        Handle::new(name).expect("valid handle"),
        relay.address.clone(),
    )
    .expect("profile");
    Client::register(profile, &relay.invite())
        .await
        .expect("registers")
}

async fn join(client: &Client, room: RoomId) {
    client.sync().await.expect("sync");
    client
        .accept_invitation(room)
        .await
        .expect("the invitation is accepted");
}

fn handle(name: &str) -> Handle {
    Handle::new(name).expect("valid handle")
}

/// The family's week. With `pending_invitation`, carol is offline when she is invited to
/// the garden room, so her invitation waits in her inbox on the relay.
async fn family_week(dir: &Path, pending_invitation: bool, log_filter: &str) -> RelayProcess {
    set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
    // Room connections open in random order after short pauses, not the 1 s of real use.
    hearth_core::set_room_jitter(std::time::Duration::from_millis(30));
    let relay = RelayProcess::start(dir, log_filter);
    let alice = person(dir, &relay, "alice").await;
    let bobby = person(dir, &relay, "bobby").await;
    let carol = person(dir, &relay, "carol").await;
    for (client, name) in [
        (&alice, "Alice K"),
        (&bobby, "Bobby K"),
        (&carol, "Carol K"),
    ] {
        client.set_display_name(name).await.expect("display name");
    }

    // The kitchen: all three. The garden: alice and bobby.
    let kitchen = alice.create_room("Kitchen 5521").await.expect("room");
    alice
        .invite(kitchen, &handle("bobby"))
        .await
        .expect("invite");
    alice
        .invite(kitchen, &handle("carol"))
        .await
        .expect("invite");
    join(&bobby, kitchen).await;
    join(&carol, kitchen).await;
    let garden = bobby.create_room("Garden 8830").await.expect("room");
    bobby
        .invite(garden, &handle("alice"))
        .await
        .expect("invite");
    join(&alice, garden).await;
    for client in [&alice, &bobby, &carol] {
        client.announce_presence().await;
    }
    alice.send_text(kitchen, "dinner at 7").await.expect("sent");
    carol.send_text(kitchen, "late, sorry").await.expect("sent");
    bobby
        .send_text(garden, "the roses need water")
        .await
        .expect("sent");
    alice.send_text(garden, "on it").await.expect("sent");
    alice.kick(kitchen, &handle("carol")).await.expect("kicked");
    // An owner's changes at the relay: an admin granted (the relay's list of admin
    // pseudonyms changes with the commit) and a disappearing-message timer (the room's
    // retention at the relay).
    bobby.sync().await.expect("sync");
    alice
        .grant_admin(kitchen, &handle("bobby"))
        .await
        .expect("granted");
    alice
        .set_expiry(kitchen, Some(std::time::Duration::from_secs(7 * 24 * 3600)))
        .await
        .expect("timer set");
    bobby.sync().await.expect("sync");
    bobby.send_text(kitchen, "just us now").await.expect("sent");
    carol.close().await;
    if pending_invitation {
        bobby
            .invite(garden, &handle("carol"))
            .await
            .expect("invite");
    }
    alice.close().await;
    bobby.close().await;
    relay
}

/// The scan of the stopped relay's store, its other files and its log.
fn scan_stopped(data: &Path, log: &Path) -> hearth_relay::inspect::InspectReport {
    let store = RedbStore::open(&data.join(hearth_relay::server::STORE_FILE)).expect("store");
    let mut report = store.inspect().expect("inspect");
    let markers = store.markers().expect("markers");
    let text = std::fs::read_to_string(log).expect("log");
    assert!(text.contains("registered"), "the log is at info: {text}");
    report.tables.push(scan_log(&markers, "log (info)", &text));
    for entry in std::fs::read_dir(data).expect("data dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == hearth_relay::server::STORE_FILE || !path.is_file() {
            continue; // the store is scanned table by table above
        }
        let bytes = std::fs::read(&path).expect("file");
        let mut scan = hearth_relay::inspect::TableScan::new(&markers, &name);
        scan.record(&[], &bytes);
        report.tables.push(scan.finish());
    }
    // Connection events name the address, account events the account, never both.
    for line in text.lines() {
        let (account, _) = markers.find(line.as_bytes());
        assert!(
            !(account && line.contains("127.0.0.1")),
            "a log line links an address to an account: {line}"
        );
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_relay_stores_or_logs_links_an_account_to_a_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let relay = family_week(dir.path(), false, "info").await;

    // The owner's tool, through the running relay's admin socket.
    let out = relay.owner(&["inspect"]);
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{printed}");
    assert!(out.status.success(), "inspect: {printed}");
    assert!(
        printed.contains("no other record links an account to a room"),
        "{printed}"
    );
    // Since part 5 the room admins are pseudonyms: their table links nothing, and a store
    // created since keeps no legacy list by account either.
    for table in ["room_admins", "legacy_admins"] {
        let line = printed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .unwrap_or_else(|| panic!("no line for {table}: {printed}"));
        assert!(line.ends_with("no account with a room"), "{line}");
    }
    assert!(!printed.contains("by design"), "{printed}");

    let (data, log) = relay.stop();
    let report = scan_stopped(&data, &log);
    let table = |name: &str| {
        report
            .tables
            .iter()
            .find(|t| t.table == name)
            .unwrap_or_else(|| panic!("no table {name}"))
    };
    // The scan sees what it should: entries of both rooms, accounts in their tables.
    assert_eq!((report.accounts, report.rooms), (3, 2));
    assert!(table("entries").records >= 10 && table("entries").with_room > 0);
    assert_eq!(
        table("entries").with_account,
        0,
        "no entry names its author"
    );
    assert!(table("accounts").with_account == 3);
    // Decision 0013 part 5: the relay knows each room's admins by per-room pseudonyms
    // only, a reverted commit's author is removed by a commit instead of barred, and a
    // listing names nobody; nothing is left that links an account to a room.
    let admins = table("room_admins");
    assert!(admins.records >= 2, "both rooms list admins: {admins:?}");
    assert_eq!(
        admins.with_account, 0,
        "an admin listed by account: {admins:?}"
    );
    assert_eq!(admins.verdict, Verdict::NoLink);
    for gone in ["barred", "listers", "listed_by"] {
        assert!(
            report.tables.iter().all(|t| t.table != gone),
            "the table {gone} is still there"
        );
    }
    let links: Vec<_> = report
        .tables
        .iter()
        .filter(|t| t.verdict != Verdict::NoLink)
        .collect();
    assert!(
        links.is_empty(),
        "records link accounts to rooms: {links:#?}"
    );
}

/// An invitation waiting in an inbox is sealed to its recipient (decision 0013 part 1):
/// neither the room nor the inviter can be read from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_waiting_in_an_inbox_does_not_name_its_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let relay = family_week(dir.path(), true, "info").await;
    let (data, log) = relay.stop();
    let report = scan_stopped(&data, &log);
    let inbox = report
        .tables
        .iter()
        .find(|t| t.table == "inbox")
        .expect("inbox table");
    assert!(inbox.records >= 1, "carol's invitation waits: {inbox:?}");
    assert_eq!(inbox.with_room, 0, "an inbox entry names a room: {inbox:?}");
    assert_eq!(inbox.verdict, Verdict::NoLink);
    // Nor its time: to the second it matched the Add commit's in the room's log (attack
    // 16), so only the day is kept.
    let store = RedbStore::open(&data.join(hearth_relay::server::STORE_FILE)).expect("store");
    let carol = store
        .account_by_handle(&handle("carol"))
        .expect("read")
        .expect("carol");
    let waiting = store
        .inbox_within(&carol.account, 0, 100, 1 << 20)
        .expect("inbox");
    assert!(!waiting.is_empty());
    for entry in waiting {
        assert_eq!(
            entry.time % 86_400,
            0,
            "an inbox entry's time: {}",
            entry.time
        );
    }
}

/// One `room request` line of the relay's debug log: which connection (session) asked
/// what of which room, and as which account if it signed in (`-` if not).
#[derive(Debug)]
struct RoomRequest {
    session: String,
    account: String,
    room: String,
    request: String,
}

/// The value of `key=` in a log line (quotes taken off).
fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let value = line[at..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_string())
}

/// Decision 0013 part 5, from the relay's own view: the family's week again, with the
/// relay logging at `debug` which connection asks what of which room. No connection
/// that signed in carries a room's traffic: the account's connection names a room only
/// to create it. The rooms' reads, subscriptions, messages, commits, presence, display
/// names and the owner's changes at the relay (an admin granted, a timer set) all travel
/// on connections that never signed in, one room each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_in_connection_carries_no_rooms_traffic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let relay = family_week(
        dir.path(),
        false,
        "info,hearth_relay::service::session=debug",
    )
    .await;
    let (_, log) = relay.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    let requests: Vec<RoomRequest> = text
        .lines()
        .filter(|line| line.contains("room request"))
        .map(|line| RoomRequest {
            session: field(line, "session").expect("session"),
            account: field(line, "account").expect("account"),
            room: field(line, "room").expect("room"),
            request: field(line, "request").expect("request"),
        })
        .collect();
    let signed_in: Vec<_> = requests.iter().filter(|r| r.account != "-").collect();
    let anonymous: Vec<_> = requests.iter().filter(|r| r.account == "-").collect();

    // The two rooms were created on signed-in connections, and nothing else of a room
    // went there.
    let created: std::collections::BTreeSet<_> = signed_in.iter().map(|r| &r.room).collect();
    assert_eq!(created.len(), 2, "{signed_in:#?}");
    assert!(
        signed_in.iter().all(|r| r.request == "CreateRoom"),
        "a signed-in connection carried a room's traffic: {signed_in:#?}"
    );

    // Everything else went on room connections, each of one room only: an owner's
    // changes at the relay too (attack 16: they went on the signed-in connection).
    for kind in ["Subscribe", "Read", "Append", "Commit", "SetRetention"] {
        assert!(
            anonymous.iter().any(|r| r.request == kind),
            "no {kind} on a room connection: {anonymous:#?}"
        );
    }
    let mut rooms_of: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        Default::default();
    for r in &anonymous {
        rooms_of
            .entry(r.session.as_str())
            .or_default()
            .insert(r.room.as_str());
    }
    assert!(
        rooms_of.len() >= 5,
        "one connection per person and room: {rooms_of:?}"
    );
    for (session, rooms) in &rooms_of {
        assert_eq!(
            rooms.len(),
            1,
            "session {session} carried several rooms: {rooms:?}"
        );
    }
    // No room connection is also a signed-in one.
    for r in &signed_in {
        assert!(
            !rooms_of.contains_key(r.session.as_str()),
            "session {} both signed in and carried a room",
            r.session
        );
    }
}
