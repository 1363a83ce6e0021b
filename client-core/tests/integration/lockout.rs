//! Issue 10: nobody can wipe a room's log under the others, and a relay whose log went
//! backwards is reported, never a silent dead room. Real relay on 127.0.0.1:0; the
//! hostile member is built on raw requests (`common::hostile`).

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::hostile::Hostile;
use common::{copy_dir, h, room_with, Relay, User};
use hearth_core::{ClientEvent, ConsistencyWarning};
use hearth_protocol::{EntryKind, ErrorCode, Request, RoomId};
use hearth_relay::store::WriteOp;

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn set_retention(hostile: &Hostile, room: RoomId, secs: u64) -> Result<(), ErrorCode> {
    let group = hostile.group(room);
    hostile
        .call(Request::SetRetention {
            room,
            cap: hostile.engine.cap(&group).unwrap(),
            retention_secs: Some(secs),
            proof: None,
        })
        .await
        .map(|_| ())
        .map_err(|e| e.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_wipe_a_rooms_log_or_keep_it_forever() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut carol = relay.user("carol").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&bob, &carol, &mallory], "Home").await;
    let hostile = Hostile::take_over(&mut mallory).await;

    // Zero (wipe everything at the next sweep) is refused outright.
    assert_eq!(
        set_retention(&hostile, room, 0).await,
        Err(ErrorCode::BadRequest)
    );
    assert_eq!(relay.room_record(room).retention_secs, None);

    // Any other change is an admin's, which the relay checks (decision 0009): a member
    // can neither shorten nor stretch it.
    assert_eq!(
        set_retention(&hostile, room, 60).await,
        Err(ErrorCode::Forbidden)
    );
    assert_eq!(
        set_retention(&hostile, room, u64::MAX).await,
        Err(ErrorCode::Forbidden)
    );
    assert_eq!(relay.room_record(room).retention_secs, None);

    // A short one set by an admin only ever removes messages: carol, away meanwhile,
    // still follows every commit.
    alice
        .c()
        .set_expiry(room, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(relay.room_record(room).retention_secs, Some(60));
    carol.client.take().unwrap().close().await;
    alice.c().rename(room, "Home, renamed").await.unwrap();
    alice.c().kick(room, &h("mallory")).await.unwrap();
    alice
        .c()
        .send_text(room, "while carol was away")
        .await
        .unwrap();
    let an_hour_later = SystemTime::now() + Duration::from_secs(3600);
    relay.sweep_at(unix(an_hour_later));
    let kept = relay.stored_entries(room);
    assert!(kept.iter().all(|e| e.kind == EntryKind::Commit), "{kept:?}");
    assert!(
        kept.len() >= 2,
        "the rename and the kick are kept: {kept:?}"
    );

    carol.restart().await;
    carol.c().sync().await.unwrap();
    let rooms = carol.c().rooms().await.unwrap();
    let home = rooms.iter().find(|r| r.id == room).expect("still a member");
    assert_eq!(home.name, "Home, renamed");
    assert_eq!(home.members, vec![h("alice"), h("bob"), h("carol")]);
    carol
        .c()
        .send_text(room, "back, and caught up")
        .await
        .unwrap();
    bob.wait_text("back, and caught up").await;
    // Her history has a hole where the messages expired: marks on either side must not
    // turn that into a fork that holds anyone's messages back.
    for round in 0..2 {
        let from_alice = format!("alice, round {round}");
        alice.c().send_text(room, &from_alice).await.unwrap();
        carol.wait_text(&from_alice).await;
        let from_carol = format!("carol, round {round}");
        carol.c().send_text(room, &from_carol).await.unwrap();
        bob.wait_text(&from_carol).await;
    }
    for user in [&alice, &bob, &carol] {
        assert_eq!(user.c().fork(room).await.unwrap(), None);
    }

    // The longest a room can ask for is the relay's own retention: past it, the sweep
    // removes even the commits ("forever" is not kept forever).
    alice
        .c()
        .set_expiry(room, Some(Duration::from_secs(u64::MAX / 2)))
        .await
        .unwrap();
    assert_eq!(relay.room_record(room).retention_secs, Some(u64::MAX / 2));
    let retention = relay
        .running
        .as_ref()
        .unwrap()
        .relay()
        .config()
        .retention_secs;
    relay.sweep_at(unix(SystemTime::now()) + retention + 3600);
    assert!(relay.stored_entries(room).is_empty());
}

/// Alice and Bob in a room; a copy of the relay's data is taken after "one", then Alice
/// sends "two" and "three", and the relay comes back from the copy while Alice is
/// closed (Bob stays open and reconnects by himself). Alice's client is left closed.
async fn back_from_an_old_copy_while_alice_is_away() -> (Relay, User, User, RoomId) {
    let mut relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    alice.c().send_text(room, "one").await.unwrap();
    bob.wait_text("one").await;
    // Reconnecting commits what is due on connection (the owner's first update), so that
    // afterwards only messages are written.
    alice.restart().await;
    bob.restart().await;
    bob.c().sync().await.unwrap();

    // A copy of the relay's data now...
    let data = relay.dir.path().join("relay");
    let copy = relay.dir.path().join("relay-copy");
    let addr = relay.stop().await;
    copy_dir(&data, &copy);
    relay.start_on(addr).await;
    alice.restart().await;
    bob.restart().await;
    alice.c().send_text(room, "two").await.unwrap();
    alice.c().send_text(room, "three").await.unwrap();
    bob.wait_text("three").await;

    // ...is what the relay comes back with.
    alice.client.take().unwrap().close().await;
    relay.stop().await;
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&copy, &data);
    relay.start_on(addr).await;
    (relay, alice, bob, room)
}

/// The relay is restored from a copy of its data taken before the last messages (a
/// file-level backup, or a relay that withdraws entries on purpose): clients that have
/// more than the relay now has are told, and the room keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_log_that_went_back_is_reported() {
    // Alice opens her profile afterwards; Bob reconnected by himself (his account and
    // room connections). Each is told once, by the client that finds the shorter log: a
    // client restarted after that would find nothing left to tell (its transcript
    // already follows the relay's log), so neither is restarted once the relay is back.
    let (_relay, mut alice, mut bob, room) = back_from_an_old_copy_while_alice_is_away().await;
    alice.restart().await;
    for user in [&mut alice, &mut bob] {
        let (ours, theirs) = rewound(user).await;
        assert!(theirs < ours, "{theirs:?} < {ours:?}");
    }
    // Told, not dead: the room still carries messages both ways.
    bob.c().send_text(room, "still here").await.unwrap();
    alice.wait_text("still here").await;
}

/// The first rewound warning `user` reports, as (ours, the relay's).
async fn rewound(user: &mut User) -> (hearth_protocol::Seq, hearth_protocol::Seq) {
    match user
        .wait_for("a rewound log", |e| {
            matches!(
                e,
                ClientEvent::Consistency {
                    warning: ConsistencyWarning::Rewound { .. },
                    ..
                }
            )
        })
        .await
    {
        ClientEvent::Consistency {
            warning: ConsistencyWarning::Rewound { ours, relay },
            ..
        } => (ours, relay),
        _ => unreachable!("wait_for returns a matching event"),
    }
}

/// The relay is restored from an old copy and others write on before a client comes
/// back: its log then ends *after* the client's, with other entries at the seqs the
/// client had. The client is told where the logs part, and reads the entries written
/// there instead of skipping them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_log_rewritten_past_where_we_were_is_reported_and_read() {
    // Alice is away while the relay comes back from the copy; Bob, still open, finds the
    // shorter log and writes past where Alice was.
    let (_relay, mut alice, mut bob, room) = back_from_an_old_copy_while_alice_is_away().await;
    let (bob_had, parted) = rewound(&mut bob).await;
    assert!(parted < bob_had, "{parted:?} < {bob_had:?}");
    // The room's own connection may have caught up before the account's is back.
    for text in ["four", "five", "six"] {
        while let Err(e) = bob.c().send_text(room, text).await {
            assert!(matches!(e, hearth_core::ClientError::NotConnected), "{e}");
            bob.wait_for("the account's connection", |e| {
                matches!(
                    e,
                    ClientEvent::Connection(hearth_core::ConnectionState::Connected)
                )
            })
            .await;
        }
    }

    alice.restart().await;
    let (alice_had, alice_parted) = rewound(&mut alice).await;
    assert_eq!(alice_had, bob_had, "both had the same log");
    assert_eq!(
        alice_parted, parted,
        "and are told the same place where it parts"
    );
    for text in ["four", "five", "six"] {
        alice.wait_text(text).await;
    }
    alice.c().send_text(room, "seen").await.unwrap();
    bob.wait_text("seen").await;
}

/// What the relay holds for a room can drift from the room's settings (an update lost to
/// a crash between the commit and the relay, a relay restored from an old copy). Admins
/// read it back when they connect, set it back to the room's timer, and are told. A member
/// cannot change it (decision 0009).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_changed_behind_the_rooms_back_is_read_back_and_restored() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut mallory = relay.user("mallory").await;
    let room = room_with(&alice, &[&mallory], "Home").await;
    let hostile = Hostile::take_over(&mut mallory).await;
    assert_eq!(
        set_retention(&hostile, room, 60).await,
        Err(ErrorCode::Forbidden)
    );
    // The relay's copy drifts anyway (as if an admin's update had been lost), and so does
    // its list of the room's admins.
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    // Alice's pseudonym for the room, as the relay lists it.
    let alice_key = store.room_admins(&room).unwrap()[0];
    for op in [
        WriteOp::SetRetention {
            room,
            cap_hash: store.room(&room).unwrap().unwrap().current,
            retention_secs: Some(60),
            admin: Some(alice_key),
        },
        WriteOp::SetRoomAdmins {
            room,
            cap_hash: store.room(&room).unwrap().unwrap().current,
            admin: Some(alice_key),
            account: None,
            admins: vec![alice_key, hearth_protocol::AdminKey([0x66; 32])],
        },
    ] {
        store.apply(vec![op]).unwrap().remove(0).unwrap();
    }
    assert_eq!(relay.room_record(room).retention_secs, Some(60));

    alice.restart().await;
    match alice
        .wait_for("the retention put back", |e| {
            matches!(e, ClientEvent::RetentionRestored { .. })
        })
        .await
    {
        ClientEvent::RetentionRestored { room: r, found } => {
            assert_eq!(r, room);
            assert_eq!(found, Some(Duration::from_secs(60)));
        }
        _ => unreachable!("wait_for returns a matching event"),
    }
    assert_eq!(
        relay.room_record(room).retention_secs,
        None,
        "the room has no timer"
    );
    assert_eq!(store.room_admins(&room).unwrap(), vec![alice_key]);
}

/// The relay's store as the format before pseudonyms kept `room`'s admins: by the owner
/// account (`legacy_admins` after the migration), no pseudonyms listed. With
/// `client_saw_a_list`, Alice's client remembers that the relay listed admins for the room
/// before (a relay emptying its list on purpose); without, it does not (a client of the
/// time before pseudonyms, as a real migration meets it). Returns the relay's store and
/// the pseudonym list the relay had.
async fn a_relay_back_without_the_rooms_admins(
    relay: &mut Relay,
    alice: &mut User,
    room: RoomId,
    client_saw_a_list: bool,
) -> (
    std::sync::Arc<dyn hearth_relay::store::Store>,
    Vec<hearth_protocol::AdminKey>,
) {
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    let pseudonym = store.room_admins(&room).unwrap();
    assert_eq!(pseudonym.len(), 1);
    let account = store
        .account_by_handle(&h("alice"))
        .unwrap()
        .unwrap()
        .account;
    drop(store);
    if let Some(c) = alice.client.take() {
        c.close().await;
    }
    if !client_saw_a_list {
        let profile = hearth_core::Profile::open(&alice.dir, common::PASS).unwrap();
        let key = room.0;
        let bytes = profile
            .store()
            .get(hearth_core::Table::Rooms, &key)
            .unwrap()
            .expect("a room record");
        let mut record = hearth_core::client::room::RoomRecord::decode(&bytes).unwrap();
        record.extra.relay_listed_admins = false;
        let mut batch = profile.store().begin().unwrap();
        batch
            .put(hearth_core::Table::Rooms, &key, &record.encode().unwrap())
            .unwrap();
        batch.commit().unwrap();
    }
    let addr = relay.stop().await;
    {
        let store = hearth_relay::store::RedbStore::open(
            &relay
                .dir
                .path()
                .join("relay")
                .join(hearth_relay::server::STORE_FILE),
        )
        .unwrap();
        let by_account = postcard::to_allocvec(&vec![account]).unwrap();
        store.put_raw("room_admins", &room.0, &by_account).unwrap();
        store
            .put_raw("meta", b"format", &2u64.to_be_bytes())
            .unwrap();
    }
    relay.start_on(addr).await;
    let store = relay.running.as_ref().unwrap().relay().store().clone();
    assert!(store.room_admins(&room).unwrap().is_empty());
    (store, pseudonym)
}

/// Attack 16 on decision 0013 part 5: a relay upgraded from the format that listed a
/// room's admins by account keeps that owner account (`legacy_admins`) until the owner's
/// client sets the first list of pseudonyms. Since admins' changes travel on the room's
/// own connection, which never signs in, the client sends this one, the only change the
/// relay takes from an account, on its signed-in connection; the relay then lists its
/// pseudonym, and keeps no account for the room.
#[tokio::test]
async fn a_migrated_rooms_owner_sets_its_first_list_from_its_signed_in_account() {
    let mut relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    let (store, pseudonym) =
        a_relay_back_without_the_rooms_admins(&mut relay, &mut alice, room, false).await;
    alice.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.room_admins(&room).unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the owner's client never set the first list"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.room_admins(&room).unwrap(), pseudonym);
    let report = store.inspect().unwrap();
    assert!(report.unexpected_links().is_empty(), "{report:?}");
    assert!(
        report
            .tables
            .iter()
            .all(|t| t.verdict == hearth_relay::inspect::Verdict::NoLink),
        "the legacy row stayed: {report:?}"
    );
}

/// The same relay, but one that listed the room's admins before and now says it has
/// none, ready to take the first list from the owner's account: a relay finding out who
/// owns which room. The owner's client remembers the relay listed them and does not set
/// the list from its account; it tells the user instead.
#[tokio::test]
async fn a_relay_that_empties_a_rooms_admin_list_does_not_get_the_owners_account_with_it() {
    let mut relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    let (store, _) =
        a_relay_back_without_the_rooms_admins(&mut relay, &mut alice, room, true).await;
    alice.restart().await;
    alice
        .wait_for("the warning", |e| {
            matches!(
                e,
                ClientEvent::Consistency {
                    room: r,
                    warning: ConsistencyWarning::AdminsForgotten,
                } if *r == room
            )
        })
        .await;
    // The client's check of the room is over (it warned instead of setting the list):
    // nothing was set from the account, and the relay still keeps only the legacy row it
    // started with.
    assert!(store.room_admins(&room).unwrap().is_empty());
}
