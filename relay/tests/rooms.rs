//! Room logs: ordering under concurrency, capability rotation, live fan-out.

mod common;

use common::{cap, new_account, payload, start_relay, tag, Client};
use hearth_protocol::{EntryKind, ErrorCode, Event, Request, Response, RoomId, Seq};

fn appended(r: Result<Response, hearth_protocol::WireError>) -> Seq {
    match r {
        Ok(Response::Appended { seq }) => seq,
        other => panic!("expected Appended, got {other:?}"),
    }
}

async fn read_all(c: &mut Client, room: RoomId, n: u8) -> (Vec<hearth_protocol::Entry>, Seq) {
    let mut all = Vec::new();
    let mut from = Seq(1);
    loop {
        match c
            .request(Request::Read {
                room,
                cap: cap(n),
                from,
                limit: 1000,
            })
            .await
            .unwrap()
        {
            Response::Entries { entries, last } => {
                let done = entries.is_empty() || entries.last().map(|e| e.seq) == Some(last);
                if let Some(e) = entries.last() {
                    from = e.seq.next();
                }
                all.extend(entries);
                if done {
                    return (all, last);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn concurrent_writers_get_contiguous_ordered_seqs() {
    let (relay, _dir) = start_relay(|c| c.rate_burst = 10_000).await;
    let room = RoomId::random();
    let (mut owner, _) = new_account(&relay, "owner").await;
    owner.create_room(room, cap(0).hash()).await;
    let mut tasks = Vec::new();
    for w in 0..4u32 {
        let (mut c, _) = new_account(&relay, &format!("writer{w}")).await;
        tasks.push(tokio::spawn(async move {
            // Pipeline all 50, then collect the answers.
            let mut ids = Vec::new();
            for i in 0..50u32 {
                ids.push(
                    c.send(Request::Append {
                        room,
                        cap: cap(0),
                        payload: payload(w * 1000 + i, 32),
                    })
                    .await,
                );
            }
            let mut seqs = Vec::new();
            for id in ids {
                seqs.push(appended(c.response(id).await));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for (w, t) in tasks.into_iter().enumerate() {
        let seqs = t.await.unwrap();
        // One connection's pipelined appends keep their order.
        assert!(seqs.windows(2).all(|p| p[0] < p[1]), "writer {w} order");
        all.extend(seqs);
    }
    all.sort();
    assert_eq!(all, (1..=200).map(Seq).collect::<Vec<_>>());
    let (entries, last) = read_all(&mut owner, room, 0).await;
    assert_eq!(last, Seq(200));
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=200).map(Seq).collect::<Vec<_>>()
    );
    // Per writer, payload order matches seq order.
    for w in 0..4u32 {
        let tags: Vec<u32> = entries
            .iter()
            .map(|e| tag(&e.payload))
            .filter(|t| t / 1000 == w)
            .collect();
        assert_eq!(tags, (0..50).map(|i| w * 1000 + i).collect::<Vec<_>>());
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn capabilities_rotate_with_commits() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let room = RoomId::random();
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut mallory, _) = new_account(&relay, "mallory").await;
    alice.create_room(room, cap(0).hash()).await;
    assert_eq!(
        alice
            .request(Request::CreateRoom {
                room,
                cap_hash: cap(0).hash(),
                retention_secs: None
            })
            .await
            .unwrap_err()
            .code,
        ErrorCode::RoomExists
    );
    assert_eq!(appended(alice.append(room, cap(0), vec![1]).await), Seq(1));
    assert_eq!(
        appended(mallory.append(room, cap(0), vec![2]).await),
        Seq(2)
    );

    // Alice removes mallory: a commit with the next epoch's cap hash.
    let commit = Request::Commit {
        room,
        cap: cap(0),
        next_cap_hash: cap(1).hash(),
        payload: vec![3],
        admins: None,
    };
    assert_eq!(appended(alice.request(commit).await), Seq(3));
    // A concurrent commit for the same epoch loses with StaleEpoch.
    let late = Request::Commit {
        room,
        cap: cap(0),
        next_cap_hash: cap(9).hash(),
        payload: vec![4],
        admins: None,
    };
    assert_eq!(
        mallory.request(late).await.unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    // Mallory's old cap can no longer write...
    assert_eq!(
        mallory
            .append(room, cap(0), vec![5])
            .await
            .unwrap_err()
            .code,
        ErrorCode::StaleEpoch
    );
    // ...or change retention; an unknown cap is forbidden.
    assert_eq!(
        mallory
            .request(Request::SetRetention {
                room,
                cap: cap(0),
                retention_secs: Some(3600)
            })
            .await
            .unwrap_err()
            .code,
        ErrorCode::StaleEpoch
    );
    assert_eq!(
        mallory
            .append(room, cap(7), vec![5])
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        mallory
            .request(Request::Read {
                room,
                cap: cap(7),
                from: Seq(1),
                limit: 10
            })
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        mallory
            .request(Request::Read {
                room: RoomId([0; 16]),
                cap: cap(0),
                from: Seq(1),
                limit: 10
            })
            .await
            .unwrap_err()
            .code,
        ErrorCode::UnknownRoom
    );
    // The new epoch continues.
    assert_eq!(appended(alice.append(room, cap(1), vec![6]).await), Seq(4));
    alice
        .request(Request::SetRetention {
            room,
            cap: cap(1),
            retention_secs: Some(3600),
        })
        .await
        .unwrap();

    // The old cap reads up to and including the commit that ended its epoch, never past.
    let (old, last) = read_all(&mut mallory, room, 0).await;
    assert_eq!(last, Seq(3));
    assert_eq!(
        old.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(old[2].kind, EntryKind::Commit);
    match mallory
        .request(Request::Read {
            room,
            cap: cap(0),
            from: Seq(4),
            limit: 10,
        })
        .await
        .unwrap()
    {
        Response::Entries { entries, last } => {
            assert!(entries.is_empty());
            assert_eq!(last, Seq(3));
        }
        other => panic!("unexpected {other:?}"),
    }
    let (new, last) = read_all(&mut alice, room, 1).await;
    assert_eq!(last, Seq(4));
    assert_eq!(new.len(), 4);

    // A subscription with the old cap gets the backlog up to the commit, then ends.
    mallory
        .request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(2),
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        match mallory.event().await {
            Event::Entries { entries, .. } => got.extend(entries.iter().map(|e| e.seq.0)),
            Event::SubscriptionEnded { room: r, next } => {
                assert_eq!(r, room);
                assert_eq!(next, Seq(4));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![2, 3]);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn live_entries_reach_every_subscriber_in_order() {
    let (relay, _dir) = start_relay(|c| c.rate_burst = 10_000).await;
    let room = RoomId::random();
    let (mut writer, _) = new_account(&relay, "writer").await;
    writer.create_room(room, cap(0).hash()).await;
    // Some backlog before anyone subscribes.
    for i in 0..10 {
        appended(writer.append(room, cap(0), payload(i, 16)).await);
    }
    let mut subscribers = Vec::new();
    for s in 0..5 {
        let (mut c, _) = new_account(&relay, &format!("sub{s}")).await;
        c.request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await
        .unwrap();
        subscribers.push(c);
    }
    // Live appends race with the subscribers' backlog reads; then a commit ends the epoch.
    let mut ids = Vec::new();
    for i in 10..300 {
        ids.push(
            writer
                .send(Request::Append {
                    room,
                    cap: cap(0),
                    payload: payload(i, 16),
                })
                .await,
        );
    }
    ids.push(
        writer
            .send(Request::Commit {
                room,
                cap: cap(0),
                next_cap_hash: cap(1).hash(),
                payload: payload(300, 16),
                admins: None,
            })
            .await,
    );
    ids.push(
        writer
            .send(Request::Append {
                room,
                cap: cap(1),
                payload: payload(301, 16),
            })
            .await,
    );
    for id in ids {
        writer.response(id).await.unwrap();
    }
    for (s, c) in subscribers.iter_mut().enumerate() {
        let mut seqs = Vec::new();
        loop {
            match c.event().await {
                Event::Entries { entries, .. } => {
                    for e in entries {
                        assert_eq!(tag(&e.payload) as u64 + 1, e.seq.0);
                        seqs.push(e.seq.0);
                    }
                }
                Event::SubscriptionEnded { next, .. } => {
                    assert_eq!(next, Seq(302));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            seqs,
            (1..=301).collect::<Vec<_>>(),
            "subscriber {s}: no gaps, no duplicates"
        );
        // Re-subscribing with the new cap continues where the old one ended.
        c.request(Request::Subscribe {
            room,
            cap: cap(1),
            from: Seq(302),
        })
        .await
        .unwrap();
        match c.event().await {
            Event::Entries { entries, .. } => assert_eq!(entries[0].seq, Seq(302)),
            other => panic!("unexpected {other:?}"),
        }
    }
    relay.shutdown().await.unwrap();
}

/// Decision 0013: a room is entered by its capability alone. Its creator and admin is
/// refused without the right one like anyone else, and an account the relay never saw in
/// the room gets in with it.
#[tokio::test]
async fn the_capability_alone_opens_a_room_whoever_holds_it() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let room = RoomId::random();
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut stranger, _) = new_account(&relay, "stranger").await;
    alice.create_room(room, cap(0).hash()).await;
    assert_eq!(appended(alice.append(room, cap(0), vec![1]).await), Seq(1));
    for who in [&mut alice, &mut stranger] {
        let wrong = cap(5);
        assert_eq!(
            who.append(room, wrong.clone(), vec![2])
                .await
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );
        for request in [
            Request::Subscribe {
                room,
                cap: wrong.clone(),
                from: Seq(1),
            },
            Request::Read {
                room,
                cap: wrong.clone(),
                from: Seq(1),
                limit: 10,
            },
            Request::Commit {
                room,
                cap: wrong.clone(),
                next_cap_hash: cap(6).hash(),
                payload: vec![3],
                admins: None,
            },
        ] {
            assert_eq!(
                who.request(request).await.unwrap_err().code,
                ErrorCode::Forbidden
            );
        }
    }
    // The right capability works from an account that never wrote there before.
    assert_eq!(
        appended(stranger.append(room, cap(0), vec![4]).await),
        Seq(2)
    );
    stranger
        .request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match stranger.event().await {
            Event::Entries { entries, .. } => got.extend(entries.iter().map(|e| e.seq.0)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![1, 2]);
    relay.shutdown().await.unwrap();
}

/// Decision 0013 part 5: a connection that never signs in reads, follows and writes a
/// room with its capability, and nothing else. Without the capability (none, a wrong
/// one, another room's) it gets nothing, is counted like any connection that has not
/// authenticated, and is closed when its time to authenticate is up.
#[tokio::test]
async fn a_connection_that_never_signs_in_gets_a_room_by_its_capability_alone() {
    let (relay, _dir) = start_relay(|c| c.handshake_timeout_secs = 2).await;
    let room = RoomId::random();
    let other = RoomId::random();
    let (mut alice, _) = new_account(&relay, "alice").await;
    alice.create_room(room, cap(0).hash()).await;
    alice.create_room(other, cap(9).hash()).await;
    assert_eq!(appended(alice.append(room, cap(0), vec![1]).await), Seq(1));

    // A stranger with no account: a wrong capability, another room's, none at all.
    let mut stranger = Client::connect(&relay.address()).await;
    for request in [
        Request::Append {
            room,
            cap: cap(5),
            payload: vec![2],
        },
        Request::Append {
            room,
            cap: cap(9),
            payload: vec![2],
        },
        Request::Subscribe {
            room,
            cap: cap(5),
            from: Seq(1),
        },
        Request::Read {
            room,
            cap: cap(9),
            from: Seq(1),
            limit: 10,
        },
        Request::Commit {
            room,
            cap: cap(5),
            next_cap_hash: cap(6).hash(),
            payload: vec![3],
            admins: None,
        },
        Request::RoomStatus { room, cap: cap(5) },
    ] {
        assert_eq!(
            stranger.request(request).await.unwrap_err().code,
            ErrorCode::Forbidden
        );
    }
    for request in [
        Request::CreateRoom {
            room: RoomId::random(),
            cap_hash: cap(7).hash(),
            retention_secs: None,
        },
        Request::SetRetention {
            room,
            cap: cap(0),
            retention_secs: None,
        },
        Request::ListAccounts,
        // Even with the right capability, a commit that changes the relay's list of
        // admins takes the owner's signed-in connection.
        Request::Commit {
            room,
            cap: cap(0),
            next_cap_hash: cap(1).hash(),
            payload: vec![3],
            admins: Some(vec![]),
        },
    ] {
        assert_eq!(
            stranger.request(request).await.unwrap_err().code,
            ErrorCode::Unauthenticated
        );
    }
    // Nothing was written, and the stranger gets no time beyond the sign-in deadline.
    stranger.until_closed().await;
    let (code, _) = common::close_of(&stranger.raw.conn).await;
    assert_eq!(
        code,
        hearth_protocol::CloseReason::AuthTimeout.code(),
        "a connection without a capability is closed like any that does not sign in"
    );

    // A room connection: the capability alone, no account, and it stays open past the
    // sign-in deadline while it follows the room.
    let mut member = Client::connect(&relay.address()).await;
    member
        .request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await
        .unwrap();
    assert_eq!(appended(member.append(room, cap(0), vec![4]).await), Seq(2));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(appended(alice.append(room, cap(0), vec![5]).await), Seq(3));
    let mut got = Vec::new();
    while got.len() < 3 {
        match member.event().await {
            Event::Entries { entries, .. } => got.extend(entries.iter().map(|e| e.seq.0)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![1, 2, 3]);
    // It is a room's connection, not an account's: it cannot sign in, nor reach another
    // room without that room's capability.
    assert_eq!(
        member
            .request(Request::Read {
                room: other,
                cap: cap(0),
                from: Seq(1),
                limit: 10,
            })
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        member
            .auth(&common::Identity::new())
            .await
            .unwrap_err()
            .code,
        ErrorCode::BadRequest
    );
    relay.shutdown().await.unwrap();
}
