//! Hostile clients (issue 13): readers that stop reading, too many sessions of one
//! account. Each test runs the real relay on 127.0.0.1:0 with a real store and speaks
//! raw frames over real QUIC, then checks that an honest client is still served.

use crate::common;

use common::{cap, close_of, eventually, new_account, payload, Client, Identity, WAIT};
use hearth_protocol::{CloseReason, ErrorCode, Request, Response, RoomId, Seq};
use hearth_relay::server::close;
use hearth_relay::RunningRelay;

/// Entries in the large room, and their payload size: 6 MB, more than any queue, window
/// and socket buffer on the way.
const ENTRIES: u32 = 100;
const ENTRY_BYTES: usize = 60 * 1024;

/// A room of [`ENTRIES`] entries of [`ENTRY_BYTES`] each, written by `alice` (pipelined).
async fn large_room(alice: &mut Client) -> RoomId {
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    let mut ids = Vec::new();
    for tag in 0..ENTRIES {
        ids.push(
            alice
                .send(Request::Append {
                    room,
                    cap: cap(0),
                    payload: payload(tag, ENTRY_BYTES),
                })
                .await,
        );
    }
    for id in ids {
        assert!(matches!(
            alice.response(id).await,
            Ok(Response::Appended { .. })
        ));
    }
    room
}

/// A member whose QUIC stack grants the relay only a few KiB of flow credit: once that
/// is used, nothing more gets through until it reads (and it never does).
async fn stingy_member(relay: &RunningRelay, handle: &str) -> (Client, Identity) {
    let token = relay.relay().mint_invite(1, None).expect("invite");
    let id = Identity::new();
    let mut client = Client::connect_with(&relay.address(), |t| {
        t.stream_receive_window(16_384u32.into());
        t.receive_window(32_768u32.into());
    })
    .await;
    client
        .register(&id, Some(token), handle)
        .await
        .expect("registration");
    (client, id)
}

/// The relay's close code and reason, or `None` when the close frame was lost and the
/// connection ended by a stateless reset.
async fn close_or_reset(conn: &quinn::Connection) -> Option<(u32, String)> {
    match tokio::time::timeout(std::time::Duration::from_secs(20), conn.closed())
        .await
        .expect("the relay closes the connection in time")
    {
        quinn::ConnectionError::ApplicationClosed(close) => Some((
            u32::try_from(u64::from(close.error_code)).expect("small code"),
            String::from_utf8_lossy(&close.reason).into_owned(),
        )),
        quinn::ConnectionError::Reset => None,
        other => panic!("closed otherwise: {other:?}"),
    }
}

/// The relay closed `conn` as not reading, for `why` (`QueueFull` or `Stalled`). Its
/// CONNECTION_CLOSE can be lost like any packet (on a loaded machine the stingy client's
/// socket drops some); the client then learns of the close by a stateless reset, and the
/// relay's own count says it closed a reader that did not read.
async fn closed_as_not_reading(relay: &RunningRelay, conn: &quinn::Connection, why: CloseReason) {
    match close_or_reset(conn).await {
        Some((code, reason)) => {
            assert_eq!(code, close::NOT_READING, "{reason}");
            assert_eq!(CloseReason::parse(code.into(), reason.as_bytes()), why);
        }
        None => assert!(relay.relay().metrics().slow_readers >= 1),
    }
}

/// An honest member is served: reads the whole room from the store and appends.
async fn honest_member_is_served(relay: &RunningRelay, room: RoomId, handle: &str) {
    let (mut bob, _) = new_account(relay, handle).await;
    assert_eq!(bob.request(Request::Ping).await.unwrap(), Response::Pong);
    let mut from = Seq(1);
    let mut read = 0;
    while read < ENTRIES {
        match bob
            .request(Request::Read {
                room,
                cap: cap(0),
                from,
                limit: 1000,
            })
            .await
            .unwrap()
        {
            Response::Entries { entries, .. } => {
                assert!(!entries.is_empty());
                read += entries.len() as u32;
                from = entries.last().unwrap().seq.next();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    bob.append(room, cap(0), payload(7, 10)).await.unwrap();
}

/// A member subscribes to a large room, never reads, and keeps asking for more (reads
/// whose answers pile up behind the catch-up): its queue passes the bound, and the relay
/// closes it with the "not reading" code at once (the stall timer is an hour, so it is
/// the byte bound that acts). The bytes it held are given back, and others are served.
#[tokio::test]
async fn a_member_who_asks_without_reading_is_closed_at_the_byte_bound() {
    let (relay, _dir) = start(|c| {
        c.max_queued_bytes_per_connection = 256 * 1024;
        c.write_stall_secs = 3600;
    })
    .await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = large_room(&mut alice).await;

    let (mut mallory, _) = stingy_member(&relay, "mallory").await;
    let subscribe = mallory
        .send(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await;
    for _ in 0..8 {
        mallory
            .send(Request::Read {
                room,
                cap: cap(0),
                from: Seq(1),
                limit: 1000,
            })
            .await;
    }
    let _ = subscribe;
    closed_as_not_reading(&relay, &mallory.raw.conn, CloseReason::QueueFull).await;

    honest_member_is_served(&relay, room, "bob").await;
    let metrics = relay.relay().metrics();
    assert!(metrics.slow_readers >= 1, "{metrics:?}");
    // Everything queued for mallory is released with the connection (alice and bob hold
    // nothing: they read everything).
    eventually("queued bytes released", || {
        relay.relay().metrics().queued_bytes == 0
    })
    .await;
    relay.shutdown().await.unwrap();
}

/// A member subscribes to a large room and never reads anything more, asking nothing:
/// the catch-up waits for room, so its queue stays bounded, and once it has read nothing
/// for `write_stall_secs` it is closed as not reading.
#[tokio::test]
async fn a_member_who_stops_reading_is_closed_after_the_stall_time() {
    let (relay, _dir) = start(|c| c.write_stall_secs = 1).await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = large_room(&mut alice).await;

    let (mut mallory, _) = stingy_member(&relay, "mallory").await;
    mallory
        .send(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await;
    closed_as_not_reading(&relay, &mallory.raw.conn, CloseReason::Stalled).await;
    let max = relay.relay().config().max_queued_bytes_per_connection as u64;
    assert!(
        relay.relay().metrics().queued_bytes <= max,
        "never more than the bound queued"
    );

    honest_member_is_served(&relay, room, "bob").await;
    eventually("queued bytes released", || {
        relay.relay().metrics().queued_bytes == 0
    })
    .await;
    relay.shutdown().await.unwrap();
}

/// The re-authentication deadline fires while the relay's write to the connection is
/// blocked (the client grants no flow credit and reads nothing): the connection is
/// closed for not answering, not kept open by the blocked write.
#[tokio::test]
async fn re_authentication_is_enforced_while_a_write_is_blocked() {
    let (relay, _dir) = start(|c| {
        c.write_stall_secs = 3600;
        c.reauth_interval_secs = 1;
        c.reauth_grace_secs = 1;
    })
    .await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = large_room(&mut alice).await;

    let (mut mallory, _) = stingy_member(&relay, "mallory").await;
    mallory
        .send(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await;
    // The close frame may be lost to the stingy client's socket, as above; a stateless
    // reset within close_or_reset's 20 s then still shows the relay ended it: with the
    // stall time at an hour and the idle timeout at 60 s, only the re-authentication
    // deadline (1 s + 1 s) can have.
    if let Some((code, reason)) = close_or_reset(&mallory.raw.conn).await {
        assert_eq!(code, close::TIMEOUT, "{reason}");
        assert_eq!(reason, "reauth-timeout");
    }
    assert!(relay.relay().config().idle_timeout_secs > 20);
    honest_member_is_served(&relay, room, "bob").await;
    relay.shutdown().await.unwrap();
}

/// One account may hold `max_sessions_per_account` connections; the next one signs in
/// all the same, and the session the relay has heard from least recently is closed to
/// make room, with the close code and reason that say so. The others keep working, and
/// another account at the same address is not affected.
#[tokio::test]
async fn an_account_at_its_session_limit_makes_room_and_says_why() {
    let (relay, _dir) = start(|c| c.max_sessions_per_account = 3).await;
    let address = relay.address();
    let (first, alice) = new_account(&relay, "alice").await;
    let mut open = vec![first];
    for _ in 1..3 {
        let mut c = Client::connect(&address).await;
        c.auth(&alice).await.expect("within the limit");
        open.push(c);
    }
    let mut newcomer = Client::connect(&address).await;
    newcomer.auth(&alice).await.expect("the newcomer signs in");
    // Which one made room depends on when each was last heard from; exactly one did.
    let replaced = {
        let (which, (code, reason)) = tokio::select! {
            c = close_of(&open[0].raw.conn) => (0, c),
            c = close_of(&open[1].raw.conn) => (1, c),
            c = close_of(&open[2].raw.conn) => (2, c),
        };
        assert_eq!(code, close::REPLACED, "{reason}");
        assert_eq!(
            CloseReason::parse(code.into(), reason.as_bytes()),
            CloseReason::Replaced { max: 3 }
        );
        which
    };
    open.remove(replaced);
    assert_eq!(relay.relay().metrics().sessions_refused, 1);
    for c in open.iter_mut().chain([&mut newcomer]) {
        assert_eq!(c.request(Request::Ping).await.unwrap(), Response::Pong);
    }
    let (mut bob, _) = new_account(&relay, "bob").await;
    assert_eq!(bob.request(Request::Ping).await.unwrap(), Response::Pong);
    relay.shutdown().await.unwrap();
}

/// Issue 13: 16 sessions of one account whose processes vanished (killed: no close, no
/// answer, so the relay still counts them until their idle timeout) do not keep the
/// account's 17th session out: it signs in at once, and so do the ones after it.
#[tokio::test]
async fn vanished_sessions_do_not_keep_their_account_out() {
    let (relay, _dir) = start(|_| {}).await;
    let max = relay.relay().config().max_sessions_per_account;
    assert_eq!(max, 16, "the default limit");
    let address = relay.address();
    let (first, alice) = new_account(&relay, "alice").await;
    first.raw.conn.close(0u32.into(), b"done");
    let mut vanished = Vec::new();
    for _ in 0..max {
        let (mut c, vanish) = Client::connect_vanishing(&address).await;
        c.auth(&alice).await.expect("within the limit");
        vanish.now();
        vanished.push(c);
    }
    for n in 0..3 {
        let mut c = Client::connect(&address).await;
        c.auth(&alice)
            .await
            .unwrap_or_else(|e| panic!("session {} refused: {e:?}", max + 1 + n));
        assert_eq!(c.request(Request::Ping).await.unwrap(), Response::Pong);
        vanished.push(c);
    }
    assert_eq!(relay.relay().metrics().sessions_refused, 3);
    relay.shutdown().await.unwrap();
}

/// At the session limit, sessions that vanished make room before one that is alive, even
/// when the live one is the oldest (a chat left open while command-line runs were
/// killed).
#[tokio::test]
async fn at_the_session_limit_vanished_sessions_go_before_a_live_one() {
    let (relay, _dir) = start(|c| c.max_sessions_per_account = 4).await;
    let address = relay.address();
    let (mut live, alice) = new_account(&relay, "alice").await;
    let mut vanished = Vec::new();
    for _ in 1..4 {
        let (mut c, vanish) = Client::connect_vanishing(&address).await;
        c.auth(&alice).await.expect("within the limit");
        vanish.now();
        vanished.push(c);
    }
    // The live one is heard from after the others went silent.
    assert_eq!(live.request(Request::Ping).await.unwrap(), Response::Pong);
    let mut newcomers = Vec::new();
    for _ in 1..4 {
        let mut c = Client::connect(&address).await;
        c.auth(&alice).await.expect("a newcomer signs in");
        newcomers.push(c);
    }
    assert_eq!(relay.relay().metrics().sessions_refused, 3);
    assert_eq!(
        live.request(Request::Ping).await.unwrap(),
        Response::Pong,
        "the live session was kept"
    );
    relay.shutdown().await.unwrap();
}

async fn start(
    tweak: impl FnOnce(&mut hearth_relay::RelayConfig),
) -> (RunningRelay, tempfile::TempDir) {
    common::start_relay(|c| {
        c.rate_burst = 10_000;
        c.rate_per_second = 10_000.0;
        tweak(c);
    })
    .await
}

/// 40 bare QUIC Initials from 127.0.0.1 (a client that never answers the relay): each is
/// answered with a retry packet and takes no slot, so none had to give way, and a member
/// connects and authenticates as usual.
#[tokio::test]
async fn bare_initials_take_no_slot() {
    let (relay, _dir) = start(|c| c.max_connections_per_ip = 4).await;
    let address = relay.address();
    let target = relay.local_addr();
    let config = common::client_config(&address);
    let mut endpoint = quinn_proto::Endpoint::new(
        std::sync::Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let mut sockets = Vec::new();
    for _ in 0..40 {
        let now = std::time::Instant::now();
        let (_, mut conn) = endpoint
            .connect(now, config.clone(), target, "hearth-relay")
            .unwrap();
        let mut datagram = Vec::new();
        let transmit = conn
            .poll_transmit(now, 1, &mut datagram)
            .expect("an Initial");
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket
            .send_to(&datagram[..transmit.size], target)
            .await
            .unwrap();
        sockets.push(socket);
    }
    // The relay answers each with a retry packet, which this client ignores.
    for socket in &sockets {
        let mut answer = [0u8; 2048];
        tokio::time::timeout(WAIT, socket.recv(&mut answer))
            .await
            .expect("an answer in time")
            .unwrap();
    }
    let metrics = relay.relay().metrics();
    assert!(metrics.retries >= 40, "{metrics:?}");
    let (mut alice, _) = new_account(&relay, "alice").await;
    assert_eq!(alice.request(Request::Ping).await.unwrap(), Response::Pong);
    let metrics = relay.relay().metrics();
    assert_eq!(metrics.unauthenticated_evicted, 0, "{metrics:?}");
    assert_eq!(metrics.connections_refused, 0, "{metrics:?}");
    relay.shutdown().await.unwrap();
}

/// 40 connections from 127.0.0.1 complete the handshake and the hello, then sit there
/// without authenticating, more than the address's slots: a member still connects and
/// authenticates (the oldest idle ones gave way), and keeps working.
#[tokio::test]
async fn idle_handshakes_from_the_households_address_do_not_lock_a_member_out() {
    let (relay, _dir) = start(|c| c.max_connections_per_ip = 32).await;
    let address = relay.address();
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(Client::connect(&address).await);
    }
    let (mut alice, _) = new_account(&relay, "alice").await;
    assert_eq!(alice.request(Request::Ping).await.unwrap(), Response::Pong);
    let metrics = relay.relay().metrics();
    assert!(metrics.unauthenticated_evicted >= 9, "{metrics:?}");
    let (code, reason) = close_of(&idle[0].raw.conn).await;
    assert_eq!(code, close::REFUSED);
    assert_eq!(
        CloseReason::parse(code.into(), reason.as_bytes()),
        CloseReason::GaveWay
    );
    relay.shutdown().await.unwrap();
}

/// Failed logins from the household's address, far past the address threshold and for
/// a member's own key: the address is not blocked, since members authenticate from it;
/// the member and a newcomer with an invite still get in.
#[tokio::test]
async fn failed_logins_from_the_households_address_never_lock_out_its_members() {
    let (relay, _dir) = start(|c| c.max_failed_logins_per_address = 20).await;
    let address = relay.address();
    let (alice_conn, alice) = new_account(&relay, "alice").await;
    drop(alice_conn);
    for attempt in 0..60 {
        // Half for alice's own key (past its throttle), half for strangers' keys.
        let key = if attempt % 2 == 0 {
            alice.account()
        } else {
            Identity::new().account()
        };
        let mut c = Client::connect(&address).await;
        let refused = c
            .request(Request::Auth {
                account: key,
                signature: hearth_protocol::Signature([7; 64]),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::AuthFailed);
    }
    let mut again = Client::connect(&address).await;
    again.auth(&alice).await.expect("alice still gets in");
    let (mut carol, _) = new_account(&relay, "carol").await;
    assert_eq!(carol.request(Request::Ping).await.unwrap(), Response::Pong);
    let metrics = relay.relay().metrics();
    assert_eq!(metrics.connections_refused, 0, "{metrics:?}");
    assert!(metrics.auth_failures >= 60, "{metrics:?}");
    relay.shutdown().await.unwrap();
}

/// Before authenticating, a connection gets a few requests answered, then is refused
/// with a reason and closed (and counted and audited).
#[tokio::test]
async fn requests_before_authentication_are_limited() {
    use hearth_relay::service::MAX_REQUESTS_BEFORE_AUTH;
    let (relay, _dir) = start(|_| {}).await;
    let mut c = Client::connect(&relay.address()).await;
    let mut ids = Vec::new();
    for _ in 0..MAX_REQUESTS_BEFORE_AUTH + 4 {
        ids.push(c.send(Request::Ping).await);
    }
    for id in &ids[..MAX_REQUESTS_BEFORE_AUTH as usize] {
        assert_eq!(c.response(*id).await.unwrap(), Response::Pong);
    }
    let refused = c
        .response(ids[MAX_REQUESTS_BEFORE_AUTH as usize])
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited);
    assert!(
        refused.message.contains("authenticate"),
        "{}",
        refused.message
    );
    assert!(
        c.until_closed().await.is_empty(),
        "nothing more is answered"
    );
    let (code, reason) = close_of(&c.raw.conn).await;
    assert_eq!(code, close::REFUSED);
    assert_eq!(
        CloseReason::parse(code.into(), reason.as_bytes()),
        CloseReason::PreauthLimit
    );
    assert_eq!(relay.relay().metrics().preauth_refused, 1);
    // A member is served as usual.
    let (mut alice, _) = new_account(&relay, "alice").await;
    for _ in 0..MAX_REQUESTS_BEFORE_AUTH + 4 {
        assert_eq!(alice.request(Request::Ping).await.unwrap(), Response::Pong);
    }
    relay.shutdown().await.unwrap();
}

/// An oversized or garbage first frame is answered with a rejection that says why, and
/// counted and audited.
#[tokio::test]
async fn bad_first_frames_are_told_counted_and_audited() {
    use hearth_protocol::frame::decode_body;
    use hearth_protocol::ServerHello;
    use hearth_relay::admin::{self, AdminRequest, AdminResponse};

    let (relay, _dir) = start(|_| {}).await;
    let address = relay.address();
    let mut raw = common::connect_raw(&address).await;
    raw.send
        .write_all(&(5_000_000u32).to_be_bytes())
        .await
        .unwrap();
    let body = common::read_body(&mut raw.recv).await.expect("an answer");
    match decode_body::<ServerHello>(&body).unwrap() {
        ServerHello::Rejected { message, .. } => {
            assert!(message.contains("5000000 bytes exceeds"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut raw = common::connect_raw(&address).await;
    raw.send.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
    let body = common::read_body(&mut raw.recv).await.expect("an answer");
    assert!(matches!(
        decode_body::<ServerHello>(&body).unwrap(),
        ServerHello::Rejected { message, .. } if message == "malformed hello"
    ));
    let metrics = relay.relay().metrics();
    assert!(
        metrics.too_large >= 1 && metrics.malformed >= 1,
        "{metrics:?}"
    );
    // An acknowledged write through the same queue: the audit records are on disk.
    let config = relay.relay().config().clone();
    admin::request(
        &config,
        AdminRequest::Invite {
            uses: 1,
            expires_secs: None,
            public_host: None,
        },
    )
    .await
    .unwrap();
    let AdminResponse::Audit(records) = admin::request(&config, AdminRequest::Audit { limit: 50 })
        .await
        .unwrap()
    else {
        panic!("not an audit answer")
    };
    for kind in ["oversized-frame", "malformed-hello"] {
        assert!(
            records
                .iter()
                .any(|r| r.kind == kind && r.ip.as_deref() == Some("127.0.0.1")),
            "{kind} missing: {records:#?}"
        );
    }
    relay.shutdown().await.unwrap();
}

/// Issue 13, item 7: after a failed login, 300 connections send garbage instead of a
/// hello. The audit feed still shows the failed login, and counts every garbage hello
/// (in one row for the address), whether the relay runs or not.
#[tokio::test]
async fn an_audit_flood_does_not_push_out_older_records() {
    use hearth_relay::admin::{self, AdminRequest, AdminResponse};
    use hearth_relay::store::AuditRecord;

    let (relay, _dir) = start(|_| {}).await;
    let address = relay.address();
    let config = relay.relay().config().clone();
    let (_alice_conn, alice) = new_account(&relay, "alice").await;
    let mut c = Client::connect(&address).await;
    let refused = c
        .request(Request::Auth {
            account: alice.account(),
            signature: hearth_protocol::Signature([7; 64]),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::AuthFailed);
    const FLOOD: u64 = 300;
    for _ in 0..FLOOD {
        let mut raw = common::connect_raw(&address).await;
        raw.send.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
        // The rejection: the relay has counted this one.
        common::read_body(&mut raw.recv).await.expect("rejected");
    }
    let check = |records: Vec<AuditRecord>| {
        let failed: Vec<_> = records.iter().filter(|r| r.kind == "auth-failed").collect();
        assert_eq!(
            failed.iter().map(|r| r.count).sum::<u64>(),
            1,
            "{records:#?}"
        );
        assert_eq!(failed[0].account, Some(alice.account().short()));
        let garbage: u64 = records
            .iter()
            .filter(|r| r.kind == "malformed-hello" && r.ip.as_deref() == Some("127.0.0.1"))
            .map(|r| r.count)
            .sum();
        assert_eq!(garbage, FLOOD, "{records:#?}");
    };
    let audit = |response: AdminResponse| match response {
        AdminResponse::Audit(records) => records,
        other => panic!("{other:?}"),
    };
    check(audit(
        admin::request(&config, AdminRequest::Audit { limit: 20 })
            .await
            .unwrap(),
    ));
    honest_member_is_served_without_a_room(&relay).await;
    relay.shutdown().await.unwrap();
    check(audit(
        admin::offline(&config, AdminRequest::Audit { limit: 20 })
            .await
            .unwrap(),
    ));
}

async fn honest_member_is_served_without_a_room(relay: &RunningRelay) {
    let (mut bob, _) = new_account(relay, "bob").await;
    assert_eq!(bob.request(Request::Ping).await.unwrap(), Response::Pong);
}

/// Issue 13: every per-address limit counts an IPv6 address by its /64 (one host may use
/// any address of its /64) and an IPv4-mapped address as IPv4. Sessions are driven
/// in-process here (the relay's own `Session`, real store and writer), since a test
/// cannot send QUIC from many addresses of one /64.
#[tokio::test]
async fn an_ipv6_64_is_one_address_to_every_per_address_limit() {
    use hearth_protocol::{ClientHello, ServerHello, Signature};
    use std::net::IpAddr;
    const BLOCK_AFTER: u32 = 10;
    let (relay, _dir) = start(|c| c.max_failed_logins_per_address = BLOCK_AFTER).await;
    let service = relay.relay();
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let hello = ClientHello {
        versions: vec![hearth_protocol::PROTOCOL_VERSION],
    };
    let fail_from = |from: IpAddr| {
        let mut session = service.session(from, [9; 32]);
        assert!(matches!(
            session.hello(&hello),
            ServerHello::Accepted { .. }
        ));
        async move {
            let refused = session
                .handle(Request::Auth {
                    account: Identity::new().account(),
                    signature: Signature([7; 64]),
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code, ErrorCode::AuthFailed);
        }
    };
    // Failed logins from as many addresses of one /64: the /64 is blocked, another is not.
    for n in 0..BLOCK_AFTER {
        fail_from(ip(&format!("2001:db8:1:2::{:x}", n + 1))).await;
    }
    assert!(service.is_blocked(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
    assert!(!service.is_blocked(ip("2001:db8:1:3::1")));
    // An IPv4 client seen through a dual-stack socket is the IPv4 address.
    for _ in 0..BLOCK_AFTER {
        fail_from(ip("::ffff:192.0.2.7")).await;
    }
    assert!(service.is_blocked(ip("192.0.2.7")));
    assert!(!service.is_blocked(ip("192.0.2.8")));

    // A member who signs in from one address of a /64 vouches for the whole /64: failures
    // from its other addresses never block it.
    let alice = Identity::new();
    let token = service.mint_invite(1, None).unwrap();
    let mut session = service.session(ip("2001:db8:9:9::1"), [1; 32]);
    let ServerHello::Accepted { challenge, .. } = session.hello(&hello) else {
        panic!("hello refused");
    };
    session
        .handle(Request::Register {
            invite: Some(token),
            handle: hearth_protocol::Handle::new("alice").unwrap(),
            account: alice.account(),
            signature: alice.sign(&challenge, &[1; 32]),
        })
        .await
        .expect("registered");
    for n in 0..BLOCK_AFTER * 3 {
        fail_from(ip(&format!("2001:db8:9:9::{:x}", n + 100))).await;
    }
    assert!(!service.is_blocked(ip("2001:db8:9:9::1")));

    // The audit feed has one row per /64, not one per address.
    service.flush_audit().await;
    let rows = service.store().audit(1000).unwrap();
    let failed: Vec<_> = rows.iter().filter(|r| r.kind == "auth-failed").collect();
    let of = |ip: &str| {
        failed
            .iter()
            .find(|r| r.ip.as_deref() == Some(ip))
            .map(|r| r.count)
    };
    assert_eq!(
        of("2001:db8:1:2::/64"),
        Some(u64::from(BLOCK_AFTER)),
        "{failed:?}"
    );
    assert_eq!(of("192.0.2.7"), Some(u64::from(BLOCK_AFTER)), "{failed:?}");
    assert_eq!(
        of("2001:db8:9:9::/64"),
        Some(u64::from(BLOCK_AFTER * 3)),
        "{failed:?}"
    );
    assert_eq!(failed.len(), 3, "{failed:?}");
    relay.shutdown().await.unwrap();
}

/// A member pipelines thousands of appends and never reads: the answers the writer
/// queues after each commit (not the connection's loop) pass the byte bound, and the
/// relay closes the connection as not reading. Its appends are stored, what it held is
/// given back, and others are served.
#[tokio::test]
async fn a_member_who_appends_without_reading_the_answers_is_closed_at_the_byte_bound() {
    let (relay, _dir) = start(|c| {
        c.max_queued_bytes_per_connection = 4096;
        c.write_stall_secs = 3600;
    })
    .await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    let (mut mallory, _) = stingy_member(&relay, "mallory").await;
    // About 12 bytes an answer: 4,000 of them are three times what the stingy flow
    // credit (16 KiB) and the queue (4 KiB) hold.
    for tag in 0..4000u32 {
        mallory
            .send(Request::Append {
                room,
                cap: cap(0),
                payload: payload(tag, 8),
            })
            .await;
    }
    closed_as_not_reading(&relay, &mallory.raw.conn, CloseReason::QueueFull).await;
    assert!(relay.relay().metrics().slow_readers >= 1);
    // The queue was refused only once more answers waited in it than its 4 KiB hold, and
    // an answer is queued only after its append is durable: at least that many of her
    // appends are stored (more land after the close, those the relay had taken).
    let answer = hearth_protocol::frame::encode_frame(
        &hearth_protocol::ServerFrame::Response {
            id: 1000,
            result: Ok(Response::Appended { seq: Seq(1000) }),
        },
        hearth_protocol::limits::MAX_FRAME_LEN,
    )
    .unwrap()
    .len() as u64;
    let head = relay.relay().store().room(&room).unwrap().unwrap().head;
    assert!(
        head > 4096 / answer,
        "head {head}, answers of {answer} bytes"
    );
    honest_member_is_served(&relay, room, "bob").await;
    eventually("queued bytes released", || {
        relay.relay().metrics().queued_bytes == 0
    })
    .await;
    relay.shutdown().await.unwrap();
}
