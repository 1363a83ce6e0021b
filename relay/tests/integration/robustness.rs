//! Bad input, limits, and durability across a SIGKILL of the real binary.

use crate::common;

use std::io::BufRead;
use std::process::{Command, Stdio};

use common::{
    cap, close_of, connect_raw, new_account, payload, read_body, start_relay, tag, Client,
    Identity, WAIT,
};
use hearth_protocol::frame::{decode_body, encode_frame};
use hearth_protocol::limits::MAX_FRAME_LEN;
use hearth_protocol::{
    ClientHello, ErrorCode, Invite, RelayAddress, Request, Response, RoomId, Seq, ServerFrame,
    ServerHello,
};

async fn hello(raw: &mut common::Raw) {
    let versions = hearth_protocol::SUPPORTED_VERSIONS.to_vec();
    let frame = encode_frame(&ClientHello { versions }, MAX_FRAME_LEN).unwrap();
    raw.send.write_all(&frame).await.unwrap();
    let body = tokio::time::timeout(WAIT, read_body(&mut raw.recv))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        decode_body::<ServerHello>(&body).unwrap(),
        ServerHello::Accepted { .. }
    ));
}

/// Reads frames until the relay ends the stream; returns the error codes it answered.
async fn codes_until_closed(raw: &mut common::Raw) -> Vec<ErrorCode> {
    let mut codes = Vec::new();
    while let Some(body) = tokio::time::timeout(WAIT, read_body(&mut raw.recv))
        .await
        .expect("relay closes in time")
    {
        if let Ok(ServerFrame::Response { result: Err(e), .. }) = decode_body::<ServerFrame>(&body)
        {
            codes.push(e.code);
        }
    }
    codes
}

#[tokio::test]
async fn bad_input_is_refused_and_the_relay_keeps_serving() {
    let (relay, _dir) = start_relay(|c| c.handshake_timeout_secs = 2).await;
    let address = relay.address();

    // Unknown version: a clear rejection naming both sides' versions.
    let mut raw = connect_raw(&address).await;
    let frame = encode_frame(&ClientHello { versions: vec![7] }, MAX_FRAME_LEN).unwrap();
    raw.send.write_all(&frame).await.unwrap();
    let body = read_body(&mut raw.recv).await.unwrap();
    match decode_body::<ServerHello>(&body).unwrap() {
        ServerHello::Rejected { supported, message } => {
            assert_eq!(supported, hearth_protocol::SUPPORTED_VERSIONS.to_vec());
            let ours = format!("{:?}", hearth_protocol::SUPPORTED_VERSIONS);
            assert!(
                message.contains("[7]") && message.contains(&ours),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        read_body(&mut raw.recv).await.is_none(),
        "closed after rejection"
    );

    // A malformed hello.
    let mut raw = connect_raw(&address).await;
    raw.send
        .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let body = read_body(&mut raw.recv).await.unwrap();
    assert!(matches!(
        decode_body::<ServerHello>(&body).unwrap(),
        ServerHello::Rejected { .. }
    ));

    // A malformed request: BadRequest once, then closed.
    let mut raw = connect_raw(&address).await;
    hello(&mut raw).await;
    raw.send
        .write_all(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    assert_eq!(
        codes_until_closed(&mut raw).await,
        vec![ErrorCode::BadRequest]
    );

    // An oversized frame: TooLarge before the body is read, then closed.
    let mut raw = connect_raw(&address).await;
    hello(&mut raw).await;
    raw.send
        .write_all(&(2_000_000u32).to_be_bytes())
        .await
        .unwrap();
    assert_eq!(
        codes_until_closed(&mut raw).await,
        vec![ErrorCode::TooLarge]
    );

    // A truncated frame: the stream ends mid-frame; the relay closes.
    let mut raw = connect_raw(&address).await;
    hello(&mut raw).await;
    raw.send.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.unwrap();
    raw.send.finish().unwrap();
    assert!(codes_until_closed(&mut raw).await.is_empty());

    // A hello but no authentication: closed at the handshake timeout.
    let mut raw = connect_raw(&address).await;
    hello(&mut raw).await;
    assert!(codes_until_closed(&mut raw).await.is_empty());

    // An oversized envelope inside a valid frame is a per-request error, not a close.
    let (mut c, _) = new_account(&relay, "alice").await;
    let room = RoomId::random();
    c.request(Request::CreateRoom {
        room,
        cap_hash: cap(0).hash(),
        retention_secs: None,
        admin: hearth_protocol::AdminKey([0; 32]),
    })
    .await
    .unwrap();
    let big = c.append(room, cap(0), vec![0; 70_000]).await;
    assert_eq!(big.unwrap_err().code, ErrorCode::TooLarge);
    assert_eq!(c.request(Request::Ping).await.unwrap(), Response::Pong);

    // The relay still serves new clients.
    let (mut d, _) = new_account(&relay, "bob").await;
    assert_eq!(d.request(Request::Ping).await.unwrap(), Response::Pong);
    let metrics = relay.relay().metrics();
    assert!(
        metrics.malformed >= 2 && metrics.too_large >= 2,
        "{metrics:?}"
    );
    relay.shutdown().await.unwrap();
}

/// Connections not yet authenticated are limited per address, and the oldest gives way
/// to a newer one (so idle connections cannot keep a member out); authenticated ones do
/// not count.
#[tokio::test]
async fn unauthenticated_connections_per_ip_are_limited_oldest_first() {
    let (relay, _dir) = start_relay(|c| c.max_connections_per_ip = 2).await;
    let address = relay.address();
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut bob, _) = new_account(&relay, "bob").await;
    let first = Client::connect(&address).await;
    let mut second = Client::connect(&address).await;
    let mut third = Client::connect(&address).await;
    let (code, reason) = close_of(&first.raw.conn).await;
    assert_eq!(code, hearth_relay::server::close::REFUSED, "{reason}");
    assert_eq!(
        hearth_protocol::CloseReason::parse(code.into(), reason.as_bytes()),
        hearth_protocol::CloseReason::GaveWay
    );
    for c in [&mut second, &mut third, &mut alice, &mut bob] {
        assert_eq!(c.request(Request::Ping).await.unwrap(), Response::Pong);
    }
    let metrics = relay.relay().metrics();
    assert_eq!(metrics.unauthenticated_evicted, 1, "{metrics:?}");
    assert!(metrics.retries >= 5, "every address validated: {metrics:?}");
    relay.shutdown().await.unwrap();
}

/// A burst of failed authentications from an address nobody has signed in from: each is
/// audited, the address is blocked once there are `max_failed_logins_per_address`, the
/// block itself is audited, and the owner sees it all with `hearth-relay audit` whether
/// the relay runs or not. (An address someone signed in from is never blocked:
/// `hostile.rs`.)
#[tokio::test]
async fn failed_authentications_are_audited_and_block_the_address() {
    use hearth_relay::admin::{self, AdminRequest, AdminResponse};
    use hearth_relay::service::MAX_AUTH_FAILURES;
    use hearth_relay::store::AuditRecord;
    const BLOCK_AFTER_FAILURES: u32 = 20;

    let (relay, _dir) =
        start_relay(|c| c.max_failed_logins_per_address = BLOCK_AFTER_FAILURES).await;
    let address = relay.address();
    let config = relay.relay().config().clone();
    let alice = Identity::new();

    // Someone tries a key with forged signatures; the relay closes each connection after
    // a few failures, so the burst takes several connections.
    let mut failures = 0;
    while failures < BLOCK_AFTER_FAILURES {
        let mut c = Client::connect(&address).await;
        for _ in 0..MAX_AUTH_FAILURES.min(BLOCK_AFTER_FAILURES - failures) {
            let result = c
                .request(Request::Auth {
                    account: alice.account(),
                    signature: hearth_protocol::Signature([7; 64]),
                })
                .await;
            assert_eq!(result.unwrap_err().code, ErrorCode::AuthFailed);
            failures += 1;
        }
        c.until_closed().await;
    }
    // The address is blocked, and a connection from it is told so.
    let (_endpoint, blocked) = common::handshake(&address).await.expect("handshake");
    let (code, reason) = close_of(&blocked).await;
    assert_eq!(code, hearth_relay::server::close::REFUSED);
    assert_eq!(
        hearth_protocol::CloseReason::parse(code.into(), reason.as_bytes()),
        hearth_protocol::CloseReason::AddressBlocked { secs: 300 }
    );
    let metrics = relay.relay().metrics();
    assert_eq!(metrics.auth_failures, u64::from(BLOCK_AFTER_FAILURES));
    assert!(metrics.connections_refused >= 1, "{metrics:?}");

    // Audit records are written in the background, in order with every other write: an
    // acknowledged write (this invite) means the earlier records are on disk.
    let invite = admin::request(
        &config,
        AdminRequest::Invite {
            uses: 1,
            expires_secs: Some(60),
            public_host: None,
        },
    )
    .await
    .unwrap();
    assert!(matches!(invite, AdminResponse::Invite(_)), "{invite:?}");

    let check = |records: Vec<AuditRecord>| {
        // Counted in one row per kind, address and hour (unless the hour turned meanwhile).
        let failed: Vec<_> = records.iter().filter(|r| r.kind == "auth-failed").collect();
        assert!(!failed.is_empty() && failed.len() <= 2, "{records:#?}");
        let count: u64 = failed.iter().map(|r| r.count).sum();
        assert_eq!(count, u64::from(BLOCK_AFTER_FAILURES), "{records:#?}");
        for r in &failed {
            assert_eq!(r.ip.as_deref(), Some("127.0.0.1"));
            assert_eq!(r.account, Some(alice.account().short()));
            assert_eq!(r.detail, "AuthFailed");
        }
        let blocked: Vec<_> = records.iter().filter(|r| r.kind == "ip-blocked").collect();
        assert_eq!(blocked.len(), 1, "audited once per block: {records:#?}");
        assert_eq!(blocked[0].count, 1, "audited once per block: {records:#?}");
        assert_eq!(blocked[0].ip.as_deref(), Some("127.0.0.1"));
        assert!(
            blocked[0]
                .detail
                .starts_with(&format!("{BLOCK_AFTER_FAILURES} failed authentications")),
            "{}",
            blocked[0].detail
        );
    };
    let audit = |response: AdminResponse| match response {
        AdminResponse::Audit(records) => records,
        other => panic!("{other:?}"),
    };
    let limit = 2 * BLOCK_AFTER_FAILURES;
    check(audit(
        admin::request(&config, AdminRequest::Audit { limit })
            .await
            .unwrap(),
    ));

    // The same from the store when the relay is stopped.
    relay.shutdown().await.unwrap();
    check(audit(
        admin::offline(&config, AdminRequest::Audit { limit })
            .await
            .unwrap(),
    ));
}

/// The relay binary, its printed address and first invite.
struct Spawned {
    child: std::process::Child,
    address: RelayAddress,
    invite: Option<Invite>,
}

fn spawn_relay(data: &std::path::Path, extra_args: &[&str]) -> Spawned {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth-relay"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra_args)
        .env_remove("HEARTH_RELAY_PUBLIC_HOST")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (mut address, mut invite) = (None, None);
    for line in lines.by_ref() {
        let line = line.expect("stdout line");
        if let Some(rest) = line.strip_prefix("relay address: ") {
            address = Some(
                rest.parse::<RelayAddress>()
                    .expect("printed address parses"),
            );
        }
        if let Some(i) = line.find("hearth://").filter(|_| line.contains("/invite/")) {
            invite = Some(line[i..].parse::<Invite>().expect("printed invite parses"));
        }
        if line.starts_with("data: ") {
            break;
        }
    }
    // Keep draining stdout so the relay never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let address = address.expect("relay printed its address");
    assert_ne!(address.port, 0, "the real port is printed");
    Spawned {
        child,
        address,
        invite,
    }
}

#[tokio::test]
async fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("hearth-relay.toml"),
        "rate_per_second = 100000.0\nrate_burst = 100000\n",
    )
    .unwrap();

    let mut relay = tokio::task::spawn_blocking({
        let data = data.clone();
        move || spawn_relay(&data, &[])
    })
    .await
    .unwrap();
    let invite = relay.invite.take().expect("first start prints an invite");
    assert_eq!(invite.relay, relay.address);
    let id = Identity::new();
    let mut c = Client::connect(&relay.address).await;
    c.register(&id, Some(invite.token), "alice").await.unwrap();
    let room = RoomId::random();
    c.request(Request::CreateRoom {
        room,
        cap_hash: cap(0).hash(),
        retention_secs: None,
        admin: hearth_protocol::AdminKey([0; 32]),
    })
    .await
    .unwrap();

    // Stream appends with many in flight; kill the relay after 300 acknowledgements.
    let mut acked: Vec<(Seq, u32)> = Vec::new();
    let mut in_flight = std::collections::VecDeque::new();
    let mut next_tag = 0u32;
    while acked.len() < 300 {
        while in_flight.len() < 32 {
            let rid = c
                .send(Request::Append {
                    room,
                    cap: cap(0),
                    payload: payload(next_tag, 1024),
                })
                .await;
            in_flight.push_back((rid, next_tag));
            next_tag += 1;
        }
        let (rid, t) = in_flight.pop_front().unwrap();
        match c.try_response(rid).await {
            Some(Ok(Response::Appended { seq })) => acked.push((seq, t)),
            other => panic!("unexpected {other:?}"),
        }
    }
    relay.child.kill().expect("SIGKILL");
    relay.child.wait().unwrap();
    drop(c);

    let mut relay = tokio::task::spawn_blocking({
        let data = data.clone();
        move || spawn_relay(&data, &[])
    })
    .await
    .unwrap();
    assert!(relay.invite.is_none(), "no new invite on restart");
    let mut c = Client::connect(&relay.address).await;
    c.auth(&id).await.unwrap();
    let mut entries = Vec::new();
    let mut from = Seq(1);
    let last = loop {
        match c
            .request(Request::Read {
                room,
                cap: cap(0),
                from,
                limit: 1000,
            })
            .await
            .unwrap()
        {
            Response::Entries { entries: got, last } => {
                let done = got.last().map(|e| e.seq) == Some(last) || got.is_empty();
                if let Some(e) = got.last() {
                    from = e.seq.next();
                }
                entries.extend(got);
                if done {
                    break last;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(last.0 >= 300);
    assert_eq!(
        entries.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        (1..=last.0).collect::<Vec<_>>(),
        "contiguous seqs after the crash"
    );
    for (seq, t) in &acked {
        let e = &entries[(seq.0 - 1) as usize];
        assert_eq!(tag(&e.payload), *t, "acknowledged append {seq:?} kept");
    }
    // Appends keep going after the restart.
    let r = c.append(room, cap(0), payload(9999, 8)).await.unwrap();
    assert_eq!(r, Response::Appended { seq: last.next() });
    relay.child.kill().unwrap();
    relay.child.wait().unwrap();
}

#[test]
fn public_host_flag_names_the_host_in_addresses_and_invites() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut relay = spawn_relay(&data, &["--public-host", "pi.local"]);
    assert_eq!(relay.address.host, "pi.local");
    let invite = relay.invite.take().expect("first start prints an invite");
    assert_eq!(invite.relay, relay.address);

    // `invite` asks the running relay; the flag still names the host it is given.
    let minted = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth-relay"))
            .arg("invite")
            .arg("--data")
            .arg(&data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("HEARTH_RELAY_PUBLIC_HOST")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse::<Invite>()
            .unwrap()
    };
    assert_eq!(minted(&[]).relay, relay.address);
    let other = minted(&["--public-host", "[fd00::7]"]);
    assert_eq!(other.relay.host, "fd00::7");
    assert_eq!(other.relay.port, relay.address.port);
    assert_eq!(other.relay.pin, relay.address.pin);

    // A router forwarding another external port: the invite names that port.
    let forwarded = minted(&["--public-host", "home.example.org:17443"]);
    assert_eq!(forwarded.relay.host, "home.example.org");
    assert_eq!(forwarded.relay.port, 17443);
    assert_eq!(forwarded.relay.pin, relay.address.pin);

    let out = Command::new(env!("CARGO_BIN_EXE_hearth-relay"))
        .args(["invite", "--public-host", "hearth://pi.local", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a scheme in --public-host is a usage error"
    );
    relay.child.kill().unwrap();
    relay.child.wait().unwrap();
}

/// Issue 18: `shutdown()` returns only once the UDP port is released, so the relay can
/// bind the same address again at once, with clients connected each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_on_the_same_port_fifty_times_in_a_row() {
    let (mut relay, dir) = start_relay(|_| {}).await;
    let addr = relay.local_addr();
    for round in 0..50 {
        // A live, authenticated connection, so shutdown has a connection to drain.
        let (mut client, _) = new_account(&relay, &format!("user{round}")).await;
        assert!(matches!(
            client.request(Request::Ping).await,
            Ok(Response::Pong)
        ));
        relay.shutdown().await.expect("clean shutdown");
        let config = hearth_relay::RelayConfig {
            listen: addr,
            data_dir: dir.path().join("relay"),
            ..hearth_relay::RelayConfig::default()
        };
        relay = hearth_relay::start(config)
            .await
            .unwrap_or_else(|e| panic!("restart {round} on {addr} failed: {e}"));
        assert_eq!(relay.local_addr(), addr);
    }
    relay.shutdown().await.unwrap();
}

/// Issue 13: with the disk (nearly) full the relay stores nothing new and says why, keeps
/// serving logins, reads and deletions, and stores again as soon as there is space: it
/// never gets as far as a failed write, after which the store would refuse every write.
#[tokio::test]
async fn a_full_disk_refuses_new_data_but_keeps_serving_and_recovers() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let (mut alice, alice_id) = new_account(&relay, "alice").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    alice.append(room, cap(0), payload(1, 100)).await.unwrap();

    // Less free space than the floor: the disk counts as full.
    relay.relay().disk_floor().set(u64::MAX);
    let refused = alice
        .append(room, cap(0), payload(2, 100))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::StorageFull);
    assert!(refused.message.contains("disk"), "{}", refused.message);
    let refused = alice
        .request(Request::CreateRoom {
            room: RoomId::random(),
            cap_hash: cap(0).hash(),
            retention_secs: None,
            admin: hearth_protocol::AdminKey([0; 32]),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::StorageFull);
    // A login (a fresh connection) and a read still work.
    let mut again = Client::connect(&relay.address()).await;
    again.auth(&alice_id).await.expect("logins need no write");
    match again
        .request(Request::Read {
            room,
            cap: cap(0),
            from: Seq(1),
            limit: 10,
        })
        .await
        .unwrap()
    {
        Response::Entries { entries, .. } => assert_eq!(entries.len(), 1),
        other => panic!("unexpected {other:?}"),
    }

    // Space comes back: stored again, without a restart.
    relay.relay().disk_floor().set(0);
    alice.append(room, cap(0), payload(3, 100)).await.unwrap();
}
