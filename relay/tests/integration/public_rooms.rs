//! The directory of public rooms and joining by external commit, over real QUIC.

use crate::common;

use common::mls::MlsUser;
use common::{cap, new_account, start_relay, Client};
use hearth_protocol::{
    EntryKind, ErrorCode, Event, PublicRoomInfo, Request, Response, RoomId, Seq, WireError,
};

fn code(r: Result<Response, WireError>) -> ErrorCode {
    match r {
        Err(e) => e.code,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

fn appended(r: Result<Response, WireError>) -> Seq {
    match r {
        Ok(Response::Appended { seq }) => seq,
        other => panic!("expected Appended, got {other:?}"),
    }
}

async fn create(c: &mut Client, room: RoomId) {
    c.request(Request::CreateRoom {
        room,
        cap_hash: cap(0).hash(),
        retention_secs: None,
        admin: hearth_protocol::AdminKey([0; 32]),
    })
    .await
    .expect("room created");
}

async fn publish(c: &mut Client, room: RoomId, n: u8, epoch: u64) -> Result<Response, WireError> {
    c.request(Request::PublishRoom {
        room,
        cap: cap(n),
        public_name: "Family board".into(),
        group_info: vec![n; 300],
        epoch,
        proof: None,
    })
    .await
}

async fn publish_info(
    c: &mut Client,
    room: RoomId,
    n: u8,
    epoch: u64,
    group_info: Vec<u8>,
) -> Result<Response, WireError> {
    c.request(Request::PublishRoom {
        room,
        cap: cap(n),
        public_name: "Family board".into(),
        group_info,
        epoch,
        proof: None,
    })
    .await
}

async fn listed(c: &mut Client) -> Vec<PublicRoomInfo> {
    match c.request(Request::ListPublicRooms).await {
        Ok(Response::PublicRooms(rooms)) => rooms,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn publish_list_fetch_and_unpublish() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut dave, _) = new_account(&relay, "dave").await;
    let (public, private) = (RoomId::random(), RoomId::random());
    create(&mut alice, public).await;
    create(&mut alice, private).await;
    assert!(listed(&mut dave).await.is_empty());

    assert_eq!(
        code(publish(&mut alice, public, 0, 1).await),
        ErrorCode::StaleEpoch,
        "a GroupInfo of another epoch is refused"
    );
    assert_eq!(
        code(publish(&mut dave, public, 9, 0).await),
        ErrorCode::Forbidden,
        "publishing needs the room's capability"
    );
    assert_eq!(
        code(
            alice
                .request(Request::PublishRoom {
                    room: public,
                    cap: cap(0),
                    public_name: "x".repeat(65),
                    group_info: vec![0; 10],
                    epoch: 0,
                    proof: None,
                })
                .await
        ),
        ErrorCode::TooLarge
    );
    assert_eq!(
        code(
            alice
                .request(Request::PublishRoom {
                    room: public,
                    cap: cap(0),
                    public_name: "board".into(),
                    group_info: vec![0; 70_000],
                    epoch: 0,
                    proof: None,
                })
                .await
        ),
        ErrorCode::TooLarge,
        "the GroupInfo is an envelope and has the envelope limit"
    );
    assert_eq!(publish(&mut alice, public, 0, 0).await, Ok(Response::Done));

    let rooms = listed(&mut dave).await;
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].room, public);
    assert_eq!(rooms[0].public_name, "Family board");
    assert_eq!(rooms[0].epoch, 0);
    assert_eq!(
        dave.request(Request::FetchGroupInfo { room: public }).await,
        Ok(Response::GroupInfo {
            group_info: vec![0; 300],
            epoch: 0
        })
    );
    // A private room looks like no room at all to outsiders.
    assert_eq!(
        code(
            dave.request(Request::FetchGroupInfo { room: private })
                .await
        ),
        ErrorCode::UnknownRoom
    );
    assert_eq!(
        code(
            dave.request(Request::JoinPublic {
                room: private,
                epoch: 0,
                next_cap_hash: cap(7).hash(),
                payload: vec![1; 50],
            })
            .await
        ),
        ErrorCode::UnknownRoom
    );
    assert_eq!(
        code(
            dave.request(Request::UnpublishRoom {
                room: public,
                cap: cap(9),
                proof: None,
            })
            .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        alice
            .request(Request::UnpublishRoom {
                room: public,
                cap: cap(0),
                proof: None,
            })
            .await,
        Ok(Response::Done)
    );
    assert!(listed(&mut dave).await.is_empty());
    assert_eq!(
        code(dave.request(Request::FetchGroupInfo { room: public }).await),
        ErrorCode::UnknownRoom
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn joining_rotates_the_cap_and_stale_epochs_are_refused() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let (mut alice, alice_id) = new_account(&relay, "alice").await;
    let (mut dave, dave_id) = new_account(&relay, "dave").await;
    let (mut erin, erin_id) = new_account(&relay, "erin").await;
    let room = RoomId::random();
    let alice_mls = MlsUser::new(&alice_id, "alice");
    let group = alice_mls.create_group(&room.0);
    create(&mut alice, room).await;
    alice
        .request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await
        .unwrap();
    // Epoch 0 -> 1 by a member's commit, then published at epoch 1.
    appended(
        alice
            .request(Request::Commit {
                room,
                cap: cap(0),
                next_cap_hash: cap(1).hash(),
                payload: vec![1; 20],
                admins: None,
            })
            .await,
    );
    let info = alice_mls.group_info(&group);
    assert_eq!(
        publish_info(&mut alice, room, 1, 1, info.clone()).await,
        Ok(Response::Done)
    );
    let Ok(Response::GroupInfo { epoch, group_info }) =
        dave.request(Request::FetchGroupInfo { room }).await
    else {
        panic!("group info expected");
    };
    assert_eq!((epoch, &group_info), (1, &info));
    let (dave_group, join) = MlsUser::new(&dave_id, "dave").external_commit(&group_info);
    assert_eq!(
        code(
            dave.request(Request::JoinPublic {
                room,
                epoch: 0,
                next_cap_hash: cap(2).hash(),
                payload: join.clone(),
            })
            .await
        ),
        ErrorCode::StaleEpoch,
        "an external commit on an old epoch never rotates the cap"
    );
    let seq = appended(
        dave.request(Request::JoinPublic {
            room,
            epoch,
            next_cap_hash: cap(2).hash(),
            payload: join.clone(),
        })
        .await,
    );
    assert_eq!(seq, Seq(2));

    // The members see the join as a commit ending their epoch.
    let mut seen = Vec::new();
    loop {
        match alice.event().await {
            Event::Entries { entries, .. } => seen.extend(entries),
            Event::SubscriptionEnded { next, .. } => {
                assert_eq!(next, Seq(2));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let last = seen.last().expect("entries pushed");
    assert_eq!(
        last.seq,
        Seq(1),
        "the first subscription ends at epoch 0's commit"
    );
    let (entries, _) = read(&mut alice, room, 1).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].kind, EntryKind::Commit);
    assert_eq!(entries[1].payload, join);

    // The old cap is stale now; the joiner's works.
    assert_eq!(
        code(alice.append(room, cap(1), vec![3]).await),
        ErrorCode::StaleEpoch
    );
    appended(dave.append(room, cap(2), vec![4]).await);
    // The listing is stale until a member re-publishes it.
    assert_eq!(
        code(erin.request(Request::FetchGroupInfo { room }).await),
        ErrorCode::StaleEpoch
    );
    let erin_mls = MlsUser::new(&erin_id, "erin");
    let (_, stale_join) = erin_mls.external_commit(&info);
    assert_eq!(
        code(
            erin.request(Request::JoinPublic {
                room,
                epoch: 1,
                next_cap_hash: cap(5).hash(),
                payload: stale_join,
            })
            .await
        ),
        ErrorCode::StaleEpoch
    );
    assert_eq!(listed(&mut erin).await[0].epoch, 1);
    let dave_info = MlsUser::new(&dave_id, "dave").group_info(&dave_group);
    assert_eq!(
        publish_info(&mut dave, room, 2, 2, dave_info.clone()).await,
        Ok(Response::Done)
    );
    let (_, erin_join) = erin_mls.external_commit(&dave_info);
    appended(
        erin.request(Request::JoinPublic {
            room,
            epoch: 2,
            next_cap_hash: cap(5).hash(),
            payload: erin_join,
        })
        .await,
    );
    relay.shutdown().await.unwrap();
}

/// Issue 9/10: the relay reads a `JoinPublic` before it rotates anything. Garbage, a
/// commit under another account's handle, and a join built on another room's GroupInfo
/// are refused; the members' capability stays.
#[tokio::test]
async fn external_joins_that_are_not_the_joiners_own_are_refused_before_anything_moves() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let (mut alice, alice_id) = new_account(&relay, "alice").await;
    let (mut eve, eve_id) = new_account(&relay, "eve").await;
    let room = RoomId::random();
    let alice_mls = MlsUser::new(&alice_id, "alice");
    let group = alice_mls.create_group(&room.0);
    create(&mut alice, room).await;
    let info = alice_mls.group_info(&group);
    assert_eq!(
        publish_info(&mut alice, room, 0, 0, info.clone()).await,
        Ok(Response::Done)
    );
    let other = alice_mls.create_group(&RoomId::random().0);
    let attempts = [
        ("garbage", vec![0x42; 300]),
        (
            "another's handle",
            MlsUser::new(&eve_id, "alice").external_commit(&info).1,
        ),
        (
            "another room",
            MlsUser::new(&eve_id, "eve")
                .external_commit(&alice_mls.group_info(&other))
                .1,
        ),
    ];
    for (what, payload) in attempts {
        let refused = eve
            .request(Request::JoinPublic {
                room,
                epoch: 0,
                next_cap_hash: cap(9).hash(),
                payload,
            })
            .await;
        assert_eq!(code(refused), ErrorCode::Forbidden, "{what}");
    }
    // Nothing appended, the cap did not move, and each refusal is in the audit feed (the
    // writer applies operations in order: the audit records precede this append).
    appended(alice.append(room, cap(0), vec![1]).await);
    let (entries, _) = read(&mut alice, room, 0).await;
    assert_eq!(entries.len(), 1);
    let audit = relay.relay().store().audit(100).unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|r| r.kind == "join-refused")
            .map(|r| r.count)
            .sum::<u64>(),
        3,
        "{audit:?}"
    );
    relay.shutdown().await.unwrap();
}

async fn read(c: &mut Client, room: RoomId, n: u8) -> (Vec<hearth_protocol::Entry>, Seq) {
    match c
        .request(Request::Read {
            room,
            cap: cap(n),
            from: Seq(1),
            limit: 100,
        })
        .await
    {
        Ok(Response::Entries { entries, last }) => (entries, last),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn registration_notices_reach_watchers_only() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut bob, _) = new_account(&relay, "bob").await;
    assert_eq!(
        alice
            .request(Request::WatchRegistrations { on: true })
            .await,
        Ok(Response::Done)
    );
    let (_carol, carol_id) = new_account(&relay, "carol").await;
    match alice.event().await {
        Event::AccountRegistered { handle, account } => {
            assert_eq!(handle.as_str(), "carol");
            assert_eq!(account, carol_id.account());
        }
        other => panic!("unexpected {other:?}"),
    }
    // Bob never asked: after a round trip he has still seen no event.
    assert_eq!(bob.request(Request::Ping).await, Ok(Response::Pong));
    alice
        .request(Request::WatchRegistrations { on: false })
        .await
        .unwrap();
    bob.request(Request::WatchRegistrations { on: true })
        .await
        .unwrap();
    let (_dan, _) = new_account(&relay, "dan").await;
    match bob.event().await {
        Event::AccountRegistered { handle, .. } => assert_eq!(handle.as_str(), "dan"),
        other => panic!("unexpected {other:?}"),
    }
    // Alice stopped watching: her next frame is the answer to her ping, not a notice.
    assert_eq!(alice.request(Request::Ping).await, Ok(Response::Pong));
    assert!(alice.pending_events().is_empty());
    assert!(bob.pending_events().is_empty());
    // Watching needs an authenticated connection.
    let mut stranger = Client::connect(&relay.address()).await;
    assert_eq!(
        code(
            stranger
                .request(Request::WatchRegistrations { on: true })
                .await
        ),
        ErrorCode::Unauthenticated
    );
    relay.shutdown().await.unwrap();
}
