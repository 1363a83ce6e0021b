//! Room logs: ordering under concurrency, capability rotation, live fan-out.

use crate::common;

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
                retention_secs: None,
                admin: hearth_protocol::AdminKey([0; 32]),
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
                retention_secs: Some(3600),
                proof: None,
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
            proof: None,
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

/// Decision 0013 part 5: the relay knows a room's admins only by per-room pseudonyms and
/// takes a relay-side change only signed by one it lists. A member holding the current
/// capability signs with its own pseudonym, or forges the owner's: refused, whatever
/// account its connection belongs to. A revert must carry a removal commit that starts a
/// new epoch.
#[tokio::test]
async fn a_member_cannot_pose_as_a_rooms_admin_at_the_relay() {
    use hearth_protocol::{AdminAction, AdminProof, CapHash, Signature};
    let (relay, _dir) = start_relay(|_| {}).await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut mallory, _) = new_account(&relay, "mallory").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    let refused = |r: Result<Response, hearth_protocol::WireError>| match r {
        Err(e) => e.code,
        Ok(other) => panic!("expected a refusal, got {other:?}"),
    };
    // Her own pseudonym, validly signed: not one the relay lists.
    let own = Request::SetRetention {
        room,
        cap: cap(0),
        retention_secs: Some(3600),
        proof: None,
    };
    assert_eq!(refused(mallory.request(own).await), ErrorCode::Forbidden);
    let own = Request::SetRoomAdmins {
        room,
        cap: cap(0),
        admins: vec![mallory.admin_key()],
        proof: None,
    };
    assert_eq!(refused(mallory.request(own).await), ErrorCode::Forbidden);
    let own = Request::UnpublishRoom {
        room,
        cap: cap(0),
        proof: None,
    };
    assert_eq!(refused(mallory.request(own).await), ErrorCode::Forbidden);
    // The owner's pseudonym with a signature she cannot make, or alice's signature
    // over another change.
    let forged = AdminProof {
        admin: alice.admin_key(),
        signature: Signature([7; 64]),
    };
    let request = Request::SetRetention {
        room,
        cap: cap(0),
        retention_secs: Some(3600),
        proof: Some(forged.clone()),
    };
    assert_eq!(
        refused(mallory.send_and_wait_as_is(request).await),
        ErrorCode::Forbidden
    );
    let replayed = alice.admin_proof(room, &cap(0), &AdminAction::Unpublish);
    let request = Request::SetRoomAdmins {
        room,
        cap: cap(0),
        admins: vec![mallory.admin_key()],
        proof: Some(replayed),
    };
    assert_eq!(
        refused(mallory.send_and_wait_as_is(request).await),
        ErrorCode::Forbidden
    );
    // A commit that would take the list over, signed by her.
    let action = AdminAction::CommitAdmins {
        next_cap_hash: cap(1).hash(),
        admins: vec![mallory.admin_key()],
    };
    let list = hearth_protocol::AdminList {
        admins: vec![mallory.admin_key()],
        proof: mallory.admin_proof(room, &cap(0), &action),
    };
    let commit = Request::Commit {
        room,
        cap: cap(0),
        next_cap_hash: cap(1).hash(),
        payload: b"commit".to_vec(),
        admins: Some(list),
    };
    assert_eq!(refused(mallory.request(commit).await), ErrorCode::Forbidden);
    // A revert: by her, or by alice without a removal, or with one that starts no new
    // epoch, is refused.
    appended(
        mallory
            .request(Request::Commit {
                room,
                cap: cap(0),
                next_cap_hash: cap(1).hash(),
                payload: b"refused".to_vec(),
                admins: None,
            })
            .await,
    );
    let revert = |c: &Client, payload: Vec<u8>, next: CapHash| {
        let action = AdminAction::Revert {
            seq: Seq(1),
            next_cap_hash: next,
            removal: <sha2::Sha256 as sha2::Digest>::digest(&payload).into(),
        };
        Request::RevertCommit {
            room,
            cap: cap(0),
            seq: Seq(1),
            next_cap_hash: next,
            proof: c.admin_proof(room, &cap(0), &action),
            payload,
        }
    };
    let r = revert(&mallory, b"removal".to_vec(), cap(2).hash());
    assert_eq!(refused(mallory.request(r).await), ErrorCode::Forbidden);
    let r = revert(&alice, Vec::new(), cap(2).hash());
    assert_eq!(refused(alice.request(r).await), ErrorCode::BadRequest);
    let r = revert(&alice, b"removal".to_vec(), cap(1).hash());
    assert_eq!(refused(alice.request(r).await), ErrorCode::Forbidden);
    // The real thing: the removal lands right after the refused commit, and the
    // capability mallory's commit began (and the restored one) read no further.
    let r = revert(&alice, b"removal".to_vec(), cap(2).hash());
    assert_eq!(appended(alice.request(r).await), Seq(2));
    assert_eq!(
        refused(mallory.append(room, cap(1), b"x".to_vec()).await),
        ErrorCode::StaleEpoch
    );
    assert_eq!(
        refused(mallory.append(room, cap(0), b"x".to_vec()).await),
        ErrorCode::StaleEpoch
    );
    appended(alice.append(room, cap(2), b"on".to_vec()).await);
    relay.shutdown().await.unwrap();
}

/// Decision 0013 part 5, the first-list hole: a room the relay keeps no list of admin
/// pseudonyms for is nobody's to claim by holding the capability. Here the relay is
/// upgraded from a store whose lists were account keys (format 2): until the owner's
/// account signs in and sets the first list, a member with the current capability,
/// signed in as itself, cannot set it, take it over by a commit, or act as an admin; the
/// owner's account can, once, and from then on only the owner's pseudonym counts.
#[tokio::test]
async fn a_member_cannot_claim_a_room_whose_admins_the_relay_does_not_know_yet() {
    use hearth_protocol::{AdminAction, AdminList};
    let (relay, dir) = start_relay(|_| {}).await;
    let addr = relay.local_addr();
    let (mut alice, alice_id) = new_account(&relay, "alice").await;
    let (mallory, mallory_id) = new_account(&relay, "mallory").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    drop((alice, mallory));
    relay.shutdown().await.unwrap();
    // The store as the relay before part 5 kept it: the room's admins by account.
    {
        let store = hearth_relay::store::RedbStore::open(
            &dir.path()
                .join("relay")
                .join(hearth_relay::server::STORE_FILE),
        )
        .unwrap();
        let by_account = postcard::to_allocvec(&vec![alice_id.account()]).unwrap();
        store.put_raw("room_admins", &room.0, &by_account).unwrap();
        store
            .put_raw("meta", b"format", &2u64.to_be_bytes())
            .unwrap();
    }
    let relay = hearth_relay::start(hearth_relay::RelayConfig {
        listen: addr,
        data_dir: dir.path().join("relay"),
        ..hearth_relay::RelayConfig::default()
    })
    .await
    .unwrap();
    let mut mallory = Client::connect(&relay.address()).await;
    mallory.auth(&mallory_id).await.unwrap();
    let refused = |r: Result<Response, hearth_protocol::WireError>| match r {
        Err(e) => e.code,
        Ok(other) => panic!("expected a refusal, got {other:?}"),
    };
    let set_admins = |c: &Client, admins: Vec<hearth_protocol::AdminKey>| {
        let action = AdminAction::SetAdmins {
            admins: admins.clone(),
        };
        Request::SetRoomAdmins {
            room,
            cap: cap(0),
            proof: Some(c.admin_proof(room, &cap(0), &action)),
            admins,
        }
    };
    // Her own first list, validly signed by her pseudonym.
    let own = set_admins(&mallory, vec![mallory.admin_key()]);
    assert_eq!(refused(mallory.request(own).await), ErrorCode::Forbidden);
    // A commit that would set it.
    let action = AdminAction::CommitAdmins {
        next_cap_hash: cap(1).hash(),
        admins: vec![mallory.admin_key()],
    };
    let commit = Request::Commit {
        room,
        cap: cap(0),
        next_cap_hash: cap(1).hash(),
        payload: b"commit".to_vec(),
        admins: Some(AdminList {
            admins: vec![mallory.admin_key()],
            proof: mallory.admin_proof(room, &cap(0), &action),
        }),
    };
    assert_eq!(refused(mallory.request(commit).await), ErrorCode::Forbidden);
    // What only an admin may do.
    let retention = Request::SetRetention {
        room,
        cap: cap(0),
        retention_secs: Some(3600),
        proof: Some(mallory.admin_proof(
            room,
            &cap(0),
            &AdminAction::SetRetention {
                retention_secs: Some(3600),
            },
        )),
    };
    assert_eq!(
        refused(mallory.request(retention).await),
        ErrorCode::Forbidden
    );
    // Nor can alice's own pseudonym on a connection that never signed in: the first list
    // of a migrated room takes the owner's account.
    let mut link = Client::room_connection(&relay.address(), &mut mallory).await;
    let seed: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(
        [b"test admin".as_slice(), &alice_id.account().0].concat(),
    )
    .into();
    link.admin = ed25519_dalek::SigningKey::from_bytes(&seed);
    let first = set_admins(&link, vec![link.admin_key()]);
    assert_eq!(refused(link.request(first).await), ErrorCode::Forbidden);
    // Alice's account, signed in, sets her pseudonym as the first list, once.
    let mut alice = Client::connect(&relay.address()).await;
    alice.auth(&alice_id).await.unwrap();
    // Not naming someone else as owner.
    let other = set_admins(&alice, vec![mallory.admin_key(), alice.admin_key()]);
    assert_eq!(refused(alice.request(other).await), ErrorCode::Forbidden);
    let first = set_admins(&alice, vec![alice.admin_key()]);
    assert!(matches!(alice.request(first).await, Ok(Response::Done)));
    assert_eq!(
        relay.relay().store().room_admins(&room).unwrap(),
        vec![alice.admin_key()]
    );
    // Now the list is alice's pseudonym's: mallory's claim is refused as before.
    let own = set_admins(&mallory, vec![mallory.admin_key()]);
    assert_eq!(refused(mallory.request(own).await), ErrorCode::Forbidden);
    let report = relay.relay().store().inspect().unwrap();
    assert!(report.unexpected_links().is_empty(), "{report:?}");
    assert!(
        report
            .tables
            .iter()
            .all(|t| t.verdict == hearth_relay::inspect::Verdict::NoLink),
        "{report:?}"
    );
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

    // A connection not admitted (decision 0016): even the right capability is not
    // looked at.
    let mut stranger = Client::connect(&relay.address()).await;
    assert_eq!(
        stranger
            .append(room, cap(0), vec![2])
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotAdmitted
    );
    // Admitted with a token any registered account can take, a stranger to the room: a
    // wrong capability, another room's, none at all.
    stranger.admit(&mut alice).await;
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
            admin: stranger.admin_key(),
        },
        Request::ListAccounts,
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
    // A stranger connected just after it marks when its sign-in deadline has passed.
    let mut member = Client::room_connection(&relay.address(), &mut alice).await;
    let mut witness = Client::connect(&relay.address()).await;
    member
        .request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await
        .unwrap();
    assert_eq!(appended(member.append(room, cap(0), vec![4]).await), Seq(2));
    witness.until_closed().await;
    assert_eq!(appended(alice.append(room, cap(0), vec![5]).await), Seq(3));
    let mut got = Vec::new();
    while got.len() < 3 {
        match member.event().await {
            Event::Entries { entries, .. } => got.extend(entries.iter().map(|e| e.seq.0)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![1, 2, 3]);
    // An admin's change takes an admin's pseudonym here as anywhere: none, or its own,
    // is refused.
    for request in [
        Request::SetRetention {
            room,
            cap: cap(0),
            retention_secs: None,
            proof: None,
        },
        Request::Commit {
            room,
            cap: cap(0),
            next_cap_hash: cap(1).hash(),
            payload: vec![3],
            admins: Some(hearth_protocol::AdminList {
                admins: vec![member.admin_key()],
                proof: member.admin_proof(
                    room,
                    &cap(0),
                    &hearth_protocol::AdminAction::CommitAdmins {
                        next_cap_hash: cap(1).hash(),
                        admins: vec![member.admin_key()],
                    },
                ),
            }),
        },
    ] {
        assert_eq!(
            member.request(request).await.unwrap_err().code,
            ErrorCode::Forbidden
        );
    }
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

/// Decision 0013 part 5: a member removed by a revert (the reverting admin's commit that
/// rotates the capability) is out on connections that never sign in too: the capability
/// it held, and the one its refused commit began, neither read, follow, write nor commit
/// there, and its live subscription on such a connection stops at the removal.
#[tokio::test]
async fn a_removed_members_capability_is_dead_on_room_connections_too() {
    use hearth_protocol::AdminAction;
    let (relay, _dir) = start_relay(|_| {}).await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    // Mallory has only room connections, one per capability she will hold.
    let mut mallory = Client::room_connection(&relay.address(), &mut alice).await;
    mallory
        .request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        })
        .await
        .unwrap();
    appended(
        mallory
            .request(Request::Commit {
                room,
                cap: cap(0),
                next_cap_hash: cap(1).hash(),
                payload: b"refused".to_vec(),
                admins: None,
            })
            .await,
    );
    // Alice's revert: her removal of mallory starts the epoch of cap(2).
    let payload = b"removal".to_vec();
    let action = AdminAction::Revert {
        seq: Seq(1),
        next_cap_hash: cap(2).hash(),
        removal: <sha2::Sha256 as sha2::Digest>::digest(&payload).into(),
    };
    let revert = Request::RevertCommit {
        room,
        cap: cap(0),
        seq: Seq(1),
        next_cap_hash: cap(2).hash(),
        proof: alice.admin_proof(room, &cap(0), &action),
        payload,
    };
    assert_eq!(appended(alice.request(revert).await), Seq(2));
    // Her live subscription has ended (at the end of the epoch it followed).
    let mut seen = Vec::new();
    loop {
        match mallory.event().await {
            Event::Entries { entries, .. } => seen.extend(entries.iter().map(|e| e.seq.0)),
            Event::SubscriptionEnded { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    appended(alice.append(room, cap(2), b"after".to_vec()).await);
    assert!(seen.iter().all(|&seq| seq < 3), "{seen:?}");
    for old in [cap(0), cap(1)] {
        let mut conn = Client::room_connection(&relay.address(), &mut alice).await;
        for request in [
            Request::Append {
                room,
                cap: old.clone(),
                payload: b"x".to_vec(),
            },
            Request::Commit {
                room,
                cap: old.clone(),
                next_cap_hash: cap(9).hash(),
                payload: b"again".to_vec(),
                admins: None,
            },
            Request::RoomStatus {
                room,
                cap: old.clone(),
            },
        ] {
            assert_eq!(
                conn.request(request).await.unwrap_err().code,
                ErrorCode::StaleEpoch
            );
        }
        // Reading past where its epoch ended, or following it: nothing.
        let read = conn
            .request(Request::Read {
                room,
                cap: old.clone(),
                from: Seq(3),
                limit: 10,
            })
            .await;
        assert!(
            !matches!(&read, Ok(Response::Entries { entries, .. }) if !entries.is_empty()),
            "{read:?}"
        );
    }
    // The same requests on the connection she already had.
    assert_eq!(
        mallory
            .append(room, cap(0), b"x".to_vec())
            .await
            .unwrap_err()
            .code,
        ErrorCode::StaleEpoch
    );
    assert!(
        mallory.pending_events().iter().all(
            |e| !matches!(e, Event::Entries { entries, .. } if entries.iter().any(|x| x.seq.0 >= 3))
        ),
        "the entry after her removal reached her"
    );
    relay.shutdown().await.unwrap();
}

/// A flooding client at the household's address opens room connections beyond
/// `max_room_connections_per_ip`: the oldest gives way (closed as such, and audited), the
/// newer ones keep being served, so a flood costs the flooder its own oldest connections
/// rather than locking newcomers out.
#[tokio::test]
async fn room_connections_beyond_the_addresss_limit_close_the_oldest() {
    let (relay, _dir) = start_relay(|c| c.max_room_connections_per_ip = 3).await;
    let room = RoomId::random();
    let (mut alice, _) = new_account(&relay, "alice").await;
    alice.create_room(room, cap(0).hash()).await;
    assert_eq!(appended(alice.append(room, cap(0), vec![1]).await), Seq(1));

    let mut links = Vec::new();
    for _ in 0..4 {
        let mut link = Client::room_connection(&relay.address(), &mut alice).await;
        link.request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(2),
        })
        .await
        .unwrap();
        links.push(link);
    }
    let (code, _) = common::close_of(&links[0].raw.conn).await;
    assert_eq!(code, hearth_protocol::CloseReason::GaveWay.code());
    // The three newer ones still get what is appended.
    assert_eq!(appended(alice.append(room, cap(0), vec![2]).await), Seq(2));
    for link in &mut links[1..] {
        match link.event().await {
            Event::Entries { entries, .. } => assert_eq!(entries[0].seq, Seq(2)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Attack on decision 0013 part 5 (the household shares one address): a member floods
/// room connections with the capability of a room of its own (any account may create
/// one; a removed member's ended capability would do as well). When the address is full,
/// the room with the most connections there gives way, oldest first: the flood pushes
/// out the flooder's own connections, and another member's room connection, the oldest
/// at the address, keeps being served.
#[tokio::test]
async fn a_flood_of_room_connections_from_the_households_address_pushes_out_only_its_own() {
    let (relay, _dir) = start_relay(|c| c.max_room_connections_per_ip = 3).await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut mallory, _) = new_account(&relay, "mallory").await;
    let (kitchen, own) = (RoomId::random(), RoomId::random());
    alice.create_room(kitchen, cap(0).hash()).await;
    mallory.create_room(own, cap(9).hash()).await;
    // Alice's room connection, the first at the address.
    let mut link = Client::room_connection(&relay.address(), &mut alice).await;
    link.request(Request::Subscribe {
        room: kitchen,
        cap: cap(0),
        from: Seq(1),
    })
    .await
    .unwrap();
    let mut flood = Vec::new();
    for _ in 0..4 {
        let mut conn = Client::room_connection(&relay.address(), &mut mallory).await;
        conn.request(Request::Subscribe {
            room: own,
            cap: cap(9),
            from: Seq(1),
        })
        .await
        .unwrap();
        flood.push(conn);
    }
    // Three fit: alice's and mallory's two newest. Mallory's two oldest gave way.
    for conn in &flood[..2] {
        let (code, _) = common::close_of(&conn.raw.conn).await;
        assert_eq!(code, hearth_protocol::CloseReason::GaveWay.code());
    }
    assert_eq!(
        appended(alice.append(kitchen, cap(0), vec![1]).await),
        Seq(1)
    );
    match link.event().await {
        Event::Entries { entries, .. } => assert_eq!(entries[0].seq, Seq(1)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(flood[2..]
        .iter()
        .all(|c| c.raw.conn.close_reason().is_none()));
    relay.shutdown().await.unwrap();
}

/// Attack on decision 0013 part 5: a removed member keeps a room connection that follows
/// the room with its old capability. The relay ends that subscription at the commit that
/// ended the epoch; from then on the connection follows nothing and is closed after
/// `idle_timeout_secs` without a request, like one that never subscribed (it used to stay
/// open for good: the ended subscription still counted as following). A connection that
/// follows the room with the current capability stays.
#[tokio::test]
async fn a_room_connection_whose_subscription_the_relay_ended_is_closed_when_idle() {
    let (relay, _dir) = start_relay(|c| c.idle_timeout_secs = 2).await;
    let keep_alive = |t: &mut quinn::TransportConfig| {
        t.keep_alive_interval(Some(std::time::Duration::from_millis(250)));
    };
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    let subscribe = |cap, from| Request::Subscribe { room, cap, from };
    let mut member = Client::connect_with(&relay.address(), keep_alive).await;
    member.admit(&mut alice).await;
    member.request(subscribe(cap(0), Seq(1))).await.unwrap();
    let mut mallory = Client::connect_with(&relay.address(), keep_alive).await;
    mallory.admit(&mut alice).await;
    mallory.request(subscribe(cap(0), Seq(1))).await.unwrap();
    // The member's commit removing mallory: the epoch of cap(0) ends there.
    let commit = Request::Commit {
        room,
        cap: cap(0),
        next_cap_hash: cap(1).hash(),
        payload: b"remove mallory".to_vec(),
        admins: None,
    };
    assert_eq!(appended(member.request(commit).await), Seq(1));
    for conn in [&mut member, &mut mallory] {
        loop {
            match conn.event().await {
                Event::Entries { .. } => {}
                Event::SubscriptionEnded { .. } => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // The member follows the new epoch; mallory holds no capability that could.
    member.request(subscribe(cap(1), Seq(2))).await.unwrap();
    // A room connection that follows nothing, opened after the member's last request:
    // once it is closed as idle, the member has been without a request as long.
    let mut witness = Client::connect_with(&relay.address(), keep_alive).await;
    witness.admit(&mut alice).await;
    witness
        .request(Request::RoomStatus { room, cap: cap(1) })
        .await
        .unwrap();
    let (code, _) = common::close_of(&mallory.raw.conn).await;
    assert_eq!(code, hearth_protocol::CloseReason::Finished.code());
    let (code, _) = common::close_of(&witness.raw.conn).await;
    assert_eq!(code, hearth_protocol::CloseReason::Finished.code());
    assert_eq!(
        appended(member.append(room, cap(1), b"still here".to_vec()).await),
        Seq(2)
    );
    match member.event().await {
        Event::Entries { entries, .. } => assert_eq!(entries[0].seq, Seq(2)),
        other => panic!("unexpected {other:?}"),
    }
    relay.shutdown().await.unwrap();
}

/// Issue 16's "a banned account still cannot write anywhere", with room connections that
/// never sign in (decision 0016): the relay owner bans mallory while she holds the room's
/// capability, an open room connection following the room, and a hoard of admission
/// tokens taken before the ban. The ban replaces the relay's admission key: every room
/// connection is told, alice's is admitted again with a token of the new key and goes on,
/// mallory's cannot be (her account gets no tokens) and is closed when the grace period
/// ends; her hoarded tokens admit a new connection only until then, and never after.
#[tokio::test]
async fn a_ban_closes_the_banned_members_room_connections_and_no_other() {
    let (relay, _dir) = start_relay(|c| c.reauth_grace_secs = 2).await;
    let address = relay.address();
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut mallory, mallory_id) = new_account(&relay, "mallory").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;

    let mut alice_link = Client::room_connection(&address, &mut alice).await;
    let mut mallory_link = Client::room_connection(&address, &mut mallory).await;
    for link in [&mut alice_link, &mut mallory_link] {
        assert!(matches!(
            link.request(Request::Subscribe {
                room,
                cap: cap(0),
                from: Seq(1)
            })
            .await,
            Ok(Response::Done)
        ));
    }
    let old_key = match mallory_link.request(Request::AdmissionKey).await {
        Ok(Response::AdmissionKey(key)) => key,
        other => panic!("{other:?}"),
    };
    let mut hoard = common::admission_tokens(&mut mallory, old_key).await;
    assert_eq!(
        appended(mallory_link.append(room, cap(0), b"before".to_vec()).await),
        Seq(1)
    );

    common::ban(&relay, "mallory").await;

    // Every room connection is told of the new key, whoever's it is.
    let told = |event: Event| match event {
        Event::Readmit { key } => key,
        other => panic!("expected Readmit, got {other:?}"),
    };
    let new_key = loop {
        match alice_link.event().await {
            Event::Entries { .. } => continue,
            other => break told(other),
        }
    };
    assert_ne!(new_key, old_key);
    let mallory_told = loop {
        match mallory_link.event().await {
            Event::Entries { .. } => continue,
            other => break told(other),
        }
    };
    assert_eq!(mallory_told, new_key, "one key for every connection");

    // Alice is admitted again with a token of the new key from her signed-in connection.
    let token = common::admission_tokens(&mut alice, new_key)
        .await
        .remove(0);
    assert!(matches!(
        alice_link
            .request(Request::Admit {
                key: new_key,
                token
            })
            .await,
        Ok(Response::Done)
    ));
    // Mallory gets no token of it: she cannot sign in to ask for one.
    let mut signed = Client::connect(&address).await;
    assert_eq!(
        signed.auth(&mallory_id).await.unwrap_err().code,
        ErrorCode::Banned
    );
    // Her hoard of the old key still admits within the grace period, and only then.
    let mut late = Client::connect(&address).await;
    assert!(matches!(
        late.request(Request::Admit {
            key: old_key,
            token: hoard.remove(0)
        })
        .await,
        Ok(Response::Done)
    ));
    assert!(matches!(
        mallory_link
            .request(Request::Admit {
                key: old_key,
                token: hoard.remove(0)
            })
            .await,
        Ok(Response::Done)
    ));

    // At the grace period's end both of her connections are closed as not admitted.
    for conn in [&mallory_link.raw.conn, &late.raw.conn] {
        let (code, reason) = common::close_of(conn).await;
        assert_eq!(code, hearth_protocol::CloseReason::ReadmitTimeout.code());
        assert_eq!(reason, "readmit-timeout");
    }
    // A new connection: the old key admits no more, and unadmitted it reaches no room.
    let mut again = Client::connect(&address).await;
    assert_eq!(
        again
            .request(Request::Admit {
                key: old_key,
                token: hoard.remove(0)
            })
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotAdmitted
    );
    assert_eq!(
        again
            .append(room, cap(0), b"after".to_vec())
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotAdmitted
    );
    assert_eq!(
        again
            .request(Request::Read {
                room,
                cap: cap(0),
                from: Seq(1),
                limit: 10
            })
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotAdmitted
    );
    // Alice's connection outlived the grace period and still writes and follows.
    assert_eq!(
        appended(alice_link.append(room, cap(0), b"after".to_vec()).await),
        Seq(2)
    );
    let entries = loop {
        match alice_link.event().await {
            Event::Entries { entries, .. } if entries.iter().any(|e| e.seq == Seq(2)) => {
                break entries
            }
            _ => continue,
        }
    };
    assert_eq!(entries.last().unwrap().payload, b"after");
    relay.shutdown().await.unwrap();
}

/// Attack 16 on decision 0013 part 5: an admin's changes at the relay went on the
/// admin's signed-in connection, so a relay operator who changed a room's retention or
/// admin list in its own store had each admin's client put it back there, showing the
/// relay the admin's account with the room. They are checked by pseudonym, so they now
/// go on a room connection that never signs in: the owner's retention, admin list,
/// unlisting and revert are taken there, and a member's own pseudonym is refused there
/// as on a signed-in connection.
#[tokio::test]
async fn an_admins_changes_at_the_relay_go_on_a_connection_that_never_signs_in() {
    use hearth_protocol::AdminAction;
    let (relay, _dir) = start_relay(|_| {}).await;
    let (mut alice, alice_id) = new_account(&relay, "alice").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    let owner = alice.admin_key();
    // Alice's room connection, holding her pseudonym (not her account).
    let mut link = Client::room_connection(&relay.address(), &mut alice).await;
    let seed: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(
        [b"test admin".as_slice(), &alice_id.account().0].concat(),
    )
    .into();
    link.admin = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert_eq!(link.admin_key(), owner);
    // Mallory's room connection, with her own pseudonym.
    let mut mallory = Client::room_connection(&relay.address(), &mut alice).await;
    drop(alice);
    mallory.admin = ed25519_dalek::SigningKey::from_bytes(&[0x66; 32]);
    let retention = Request::SetRetention {
        room,
        cap: cap(0),
        retention_secs: Some(3600),
        proof: None,
    };
    assert_eq!(
        mallory.request(retention.clone()).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(link.request(retention).await.unwrap(), Response::Done);
    let store = relay.relay().store().clone();
    assert_eq!(
        store.room(&room).unwrap().unwrap().retention_secs,
        Some(3600)
    );
    let second = hearth_protocol::AdminKey([0x22; 32]);
    let set_admins = |c: &Client| {
        let admins = vec![c.admin_key(), second];
        let action = AdminAction::SetAdmins {
            admins: admins.clone(),
        };
        Request::SetRoomAdmins {
            room,
            cap: cap(0),
            proof: Some(c.admin_proof(room, &cap(0), &action)),
            admins,
        }
    };
    assert_eq!(
        mallory
            .request(set_admins(&mallory))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        link.request(set_admins(&link)).await.unwrap(),
        Response::Done
    );
    assert_eq!(store.room_admins(&room).unwrap(), vec![owner, second]);
    // Mallory commits; alice undoes it from her room connection, with her removal.
    appended(
        mallory
            .request(Request::Commit {
                room,
                cap: cap(0),
                next_cap_hash: cap(1).hash(),
                payload: b"refused".to_vec(),
                admins: None,
            })
            .await,
    );
    let revert = |c: &Client| {
        let payload = b"removal".to_vec();
        let action = AdminAction::Revert {
            seq: Seq(1),
            next_cap_hash: cap(2).hash(),
            removal: <sha2::Sha256 as sha2::Digest>::digest(&payload).into(),
        };
        Request::RevertCommit {
            room,
            cap: cap(0),
            seq: Seq(1),
            next_cap_hash: cap(2).hash(),
            proof: c.admin_proof(room, &cap(0), &action),
            payload,
        }
    };
    assert_eq!(
        mallory.request(revert(&mallory)).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(appended(link.request(revert(&link)).await), Seq(2));
    assert_eq!(
        mallory
            .append(room, cap(1), b"x".to_vec())
            .await
            .unwrap_err()
            .code,
        ErrorCode::StaleEpoch
    );
    relay.shutdown().await.unwrap();
}

/// A room connection is not counted among the connections that have not signed in, so
/// its own request rate bounds how often it makes the relay check an admission token
/// (each check is a hash to the curve and a scalar multiplication): a flood of `Admit`
/// on an admitted connection is refused like any flood of room requests.
#[tokio::test]
async fn a_room_connection_flooding_admit_is_rate_limited() {
    let (relay, _dir) = start_relay(|c| {
        c.rate_burst = 5;
        c.rate_per_second = 0.01;
    })
    .await;
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    let mut link = Client::room_connection(&relay.address(), &mut alice).await;
    link.request(Request::Subscribe {
        room,
        cap: cap(0),
        from: Seq(1),
    })
    .await
    .unwrap();
    let key = match link.request(Request::AdmissionKey).await {
        Ok(Response::AdmissionKey(key)) => key,
        other => panic!("{other:?}"),
    };
    let token = alice.admission_token(key).await;
    let mut refused = 0;
    for _ in 0..10 {
        match link
            .request(Request::Admit {
                key,
                token: token.clone(),
            })
            .await
        {
            Ok(Response::Done) => {}
            Err(e) if e.code == ErrorCode::RateLimited => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(refused >= 4, "{refused} of 10 refused");
    relay.shutdown().await.unwrap();
}
