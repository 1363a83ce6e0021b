//! The directory of public rooms and joining by external commit, over real QUIC.

mod common;

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
                cap: cap(9)
            })
            .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        alice
            .request(Request::UnpublishRoom {
                room: public,
                cap: cap(0)
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
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut dave, _) = new_account(&relay, "dave").await;
    let (mut erin, _) = new_account(&relay, "erin").await;
    let room = RoomId::random();
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
            })
            .await,
    );
    assert_eq!(publish(&mut alice, room, 1, 1).await, Ok(Response::Done));
    let Ok(Response::GroupInfo { epoch, .. }) =
        dave.request(Request::FetchGroupInfo { room }).await
    else {
        panic!("group info expected");
    };
    assert_eq!(epoch, 1);
    assert_eq!(
        code(
            dave.request(Request::JoinPublic {
                room,
                epoch: 0,
                next_cap_hash: cap(2).hash(),
                payload: vec![2; 40],
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
            payload: vec![2; 40],
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
    assert_eq!(entries[1].payload, vec![2; 40]);

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
    assert_eq!(
        code(
            erin.request(Request::JoinPublic {
                room,
                epoch: 1,
                next_cap_hash: cap(5).hash(),
                payload: vec![5; 40],
            })
            .await
        ),
        ErrorCode::StaleEpoch
    );
    assert_eq!(listed(&mut erin).await[0].epoch, 1);
    assert_eq!(publish(&mut dave, room, 2, 2).await, Ok(Response::Done));
    appended(
        erin.request(Request::JoinPublic {
            room,
            epoch: 2,
            next_cap_hash: cap(5).hash(),
            payload: vec![5; 40],
        })
        .await,
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
