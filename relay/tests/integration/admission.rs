//! Hostile admission (decision 0016): unadmitted room requests, forged tokens, tokens of
//! another key, points and proofs that are garbage, and a room connection that keeps
//! guessing tokens.

use crate::common;

use common::{cap, new_account, start_relay, Client};
use hearth_protocol::auth::AdminProof;
use hearth_protocol::{
    AdminKey, AdmissionKey, AdmissionToken, BlindedToken, BlobId, CapHash, CloseReason, ErrorCode,
    Request, Response, RoomId, Seq, Signature, ADMISSION_BATCH,
};

/// Every request a room's capability authorises, for `room`.
fn room_requests(room: RoomId) -> Vec<Request> {
    let proof = || AdminProof {
        admin: AdminKey([7; 32]),
        signature: Signature([7; 64]),
    };
    let requests = vec![
        Request::Append {
            room,
            cap: cap(0),
            payload: b"x".to_vec(),
        },
        Request::Commit {
            room,
            cap: cap(0),
            next_cap_hash: cap(1).hash(),
            payload: b"x".to_vec(),
            admins: None,
        },
        Request::Read {
            room,
            cap: cap(0),
            from: Seq(1),
            limit: 10,
        },
        Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1),
        },
        Request::Unsubscribe { room },
        Request::RoomStatus { room, cap: cap(0) },
        Request::PutBlob {
            room,
            cap: cap(0),
            blob: BlobId([1; 16]),
            total: 1,
            offset: 0,
            data: vec![1],
        },
        Request::BlobStatus {
            room,
            cap: cap(0),
            blob: BlobId([1; 16]),
        },
        Request::GetBlob {
            room,
            cap: cap(0),
            blob: BlobId([1; 16]),
            offset: 0,
            len: 1,
        },
        Request::SetRetention {
            room,
            cap: cap(0),
            retention_secs: Some(60),
            proof: Some(proof()),
        },
        Request::UnpublishRoom {
            room,
            cap: cap(0),
            proof: Some(proof()),
        },
        Request::SetRoomAdmins {
            room,
            cap: cap(0),
            admins: vec![AdminKey([7; 32])],
            proof: Some(proof()),
        },
        Request::RevertCommit {
            room,
            cap: cap(0),
            seq: Seq(1),
            next_cap_hash: CapHash([1; 32]),
            payload: b"x".to_vec(),
            proof: proof(),
        },
    ];
    // A new variant must be added here too.
    assert!(requests.iter().all(|r| r.capability_room() == Some(room)));
    requests
}

/// Not one of a room's requests passes without admission, whatever its kind, blobs
/// included, even with the room's right capability; the room is untouched.
#[tokio::test]
async fn no_room_request_of_any_kind_passes_without_admission() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let address = relay.address();
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;

    for request in room_requests(room) {
        let what = format!("{request:?}");
        let mut link = Client::connect(&address).await;
        let refused = link.request(request).await;
        assert!(
            matches!(&refused, Err(e) if e.code == ErrorCode::NotAdmitted),
            "{what}: {refused:?}"
        );
    }
    let mut link = Client::room_connection(&address, &mut alice).await;
    assert!(matches!(
        link.request(Request::Read {
            room,
            cap: cap(0),
            from: Seq(1),
            limit: 10
        })
        .await,
        Ok(Response::Entries { ref entries, .. }) if entries.is_empty()
    ));
}

/// Forged tokens, a token of another key, keys and points that are not points, the
/// identity: each is refused with an error (never a panic), and the relay goes on
/// admitting honest connections.
#[tokio::test]
async fn forged_tokens_and_garbage_points_are_refused_and_the_relay_goes_on() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let address = relay.address();
    let (mut alice, _) = new_account(&relay, "alice").await;
    let mut probe = Client::connect(&address).await;
    let key = match probe.request(Request::AdmissionKey).await {
        Ok(Response::AdmissionKey(key)) => key,
        other => panic!("{other:?}"),
    };
    let good = alice.admission_token(key).await;

    let mut forged = good.clone();
    forged.output[0] ^= 1;
    let mut other_input = good.clone();
    other_input.input[31] ^= 1;
    let zero = AdmissionToken {
        input: [0; 32],
        output: [0; 64],
    };
    let admits = [
        (key, forged),
        (key, other_input),
        (key, zero.clone()),
        // Not a point, the identity, a point that is not the relay's key.
        (AdmissionKey([0xff; 32]), good.clone()),
        (AdmissionKey([0; 32]), good.clone()),
        (AdmissionKey([1; 32]), zero),
    ];
    for (key, token) in admits {
        let mut link = Client::connect(&address).await;
        let refused = link.request(Request::Admit { key, token }).await;
        assert!(
            matches!(&refused, Err(e) if e.code == ErrorCode::NotAdmitted),
            "{refused:?}"
        );
    }

    // Batches of garbage on the signed-in connection: not points, the identity, the
    // wrong size, a key that is not the relay's.
    let batches = [
        (key, vec![BlindedToken([0xff; 32]); ADMISSION_BATCH]),
        (key, vec![BlindedToken([0; 32]); ADMISSION_BATCH]),
        (key, vec![]),
        (key, vec![BlindedToken([0; 32]); ADMISSION_BATCH * 64]),
        (
            AdmissionKey([0xff; 32]),
            vec![BlindedToken([0; 32]); ADMISSION_BATCH],
        ),
    ];
    for (key, blinded) in batches {
        let refused = alice
            .request(Request::IssueAdmission { key, blinded })
            .await;
        assert!(
            matches!(&refused, Err(e) if matches!(e.code, ErrorCode::BadRequest | ErrorCode::StaleEpoch | ErrorCode::RateLimited)),
            "{refused:?}"
        );
    }

    // The good token still admits (tokens are not used up by a refusal).
    let mut link = Client::connect(&address).await;
    assert!(matches!(
        link.request(Request::Admit { key, token: good }).await,
        Ok(Response::Done)
    ));
}

/// A room connection (admitted once, then following its room) cannot keep guessing
/// tokens: after a few that do not check out it is closed, as a connection that keeps
/// failing to sign in is.
#[tokio::test]
async fn a_room_connection_that_keeps_presenting_bad_tokens_is_closed() {
    let (relay, _dir) = start_relay(|_| {}).await;
    let address = relay.address();
    let (mut alice, _) = new_account(&relay, "alice").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    let mut link = Client::room_connection(&address, &mut alice).await;
    assert!(matches!(
        link.request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1)
        })
        .await,
        Ok(Response::Done)
    ));
    let key = match link.request(Request::AdmissionKey).await {
        Ok(Response::AdmissionKey(key)) => key,
        other => panic!("{other:?}"),
    };
    // Each one is refused; the fifth closes the connection (without the limit it would
    // go on forever, each costing the relay a hash to the curve and a log line).
    for i in 0..5u32 {
        let mut token = AdmissionToken {
            input: [0; 32],
            output: [0; 64],
        };
        token.input[..4].copy_from_slice(&i.to_be_bytes());
        let refused = link.request(Request::Admit { key, token }).await;
        assert!(
            matches!(&refused, Err(e) if e.code == ErrorCode::NotAdmitted),
            "{refused:?}"
        );
    }
    let (code, reason) = common::close_of(&link.raw.conn).await;
    assert_eq!(code, CloseReason::AuthFailures.code());
    assert_eq!(reason, "auth-failures");
}

/// A connection that asked the key just before a ban and is admitted with a token of
/// it in the grace period (hearth's client does this when a ban lands while it opens a
/// room's connection) is told the new key, as the connections admitted before the ban
/// are: otherwise it would be closed at the grace period's end without a word.
#[tokio::test]
async fn a_connection_admitted_with_the_key_a_ban_just_replaced_is_told_the_new_one() {
    let (relay, _dir) = start_relay(|c| c.reauth_grace_secs = 30).await;
    let address = relay.address();
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (_mallory, _) = new_account(&relay, "mallory").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;

    let mut link = Client::connect(&address).await;
    let old = match link.request(Request::AdmissionKey).await {
        Ok(Response::AdmissionKey(key)) => key,
        other => panic!("{other:?}"),
    };
    let token = alice.admission_token(old).await;
    common::ban(&relay, "mallory").await;
    assert!(matches!(
        link.request(Request::Admit { key: old, token }).await,
        Ok(Response::Done)
    ));
    assert!(matches!(
        link.request(Request::Subscribe {
            room,
            cap: cap(0),
            from: Seq(1)
        })
        .await,
        Ok(Response::Done)
    ));
    let new = tokio::time::timeout(common::WAIT, async {
        loop {
            match link.event().await {
                hearth_protocol::Event::Readmit { key } => break key,
                hearth_protocol::Event::Entries { .. } => continue,
                other => panic!("expected Readmit, got {other:?}"),
            }
        }
    })
    .await
    .expect("told the new key");
    assert_ne!(new, old);
    let token = alice.admission_token(new).await;
    assert!(matches!(
        link.request(Request::Admit { key: new, token }).await,
        Ok(Response::Done)
    ));
    // Admitted under the current key: no deadline left, the room answers.
    assert!(matches!(
        link.request(Request::Read {
            room,
            cap: cap(0),
            from: Seq(1),
            limit: 10
        })
        .await,
        Ok(Response::Entries { .. })
    ));
}

/// Two bans in a row: the second drops the first's old key at once, so the banned
/// member's hoard of it admits nothing, her connection still closes at the first grace
/// period's end, and a family connection admitted under the newest key goes on.
#[tokio::test]
async fn two_bans_in_a_row_keep_the_banned_member_out_and_the_family_in() {
    let (relay, _dir) = start_relay(|c| c.reauth_grace_secs = 2).await;
    let address = relay.address();
    let (mut alice, _) = new_account(&relay, "alice").await;
    let (mut mallory, _) = new_account(&relay, "mallory").await;
    let (_dave, _) = new_account(&relay, "dave").await;
    let room = RoomId::random();
    alice.create_room(room, cap(0).hash()).await;
    let mut alice_link = Client::room_connection(&address, &mut alice).await;
    let mut mallory_link = Client::room_connection(&address, &mut mallory).await;
    let old = match mallory_link.request(Request::AdmissionKey).await {
        Ok(Response::AdmissionKey(key)) => key,
        other => panic!("{other:?}"),
    };
    let mut hoard = common::admission_tokens(&mut mallory, old).await;
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

    common::ban(&relay, "mallory").await;
    common::ban(&relay, "dave").await;
    let mut probe = Client::connect(&address).await;
    let newest = match probe.request(Request::AdmissionKey).await {
        Ok(Response::AdmissionKey(key)) => key,
        other => panic!("{other:?}"),
    };
    // The key before the newest is the first ban's, not the original: the hoard is void.
    let refused = mallory_link
        .request(Request::Admit {
            key: old,
            token: hoard.remove(0),
        })
        .await;
    assert!(
        matches!(&refused, Err(e) if e.code == ErrorCode::NotAdmitted),
        "{refused:?}"
    );
    let token = alice.admission_token(newest).await;
    assert!(matches!(
        alice_link
            .request(Request::Admit { key: newest, token })
            .await,
        Ok(Response::Done)
    ));

    let (code, reason) = common::close_of(&mallory_link.raw.conn).await;
    assert_eq!(code, CloseReason::ReadmitTimeout.code());
    assert_eq!(reason, "readmit-timeout");
    // Alice's connection, admitted under the newest key, has no deadline.
    assert!(matches!(
        alice_link
            .request(Request::Read {
                room,
                cap: cap(0),
                from: Seq(1),
                limit: 10
            })
            .await,
        Ok(Response::Entries { .. })
    ));
    assert_eq!(relay.relay().metrics().readmit_timeouts, 1);
}
