//! The family scenario end to end, with the real relay and real clients over QUIC:
//! alice creates a room, invites bob and carol, all talk; alice removes carol, who can read
//! nothing after that; bob and alice carry on. The relay and every client restart between
//! steps, and the relay's files never contain plaintext or the room name.

use std::path::Path;

use hearth_core::{Client, ClientEvent};
use hearth_protocol::RoomId;
use hearth_tests::{wait_for, Person, TestRelay};

const ROOM_NAME: &str = "Kitchen table 4417";

async fn texts(client: &Client, room: RoomId) -> Vec<String> {
    client
        .history(room, 1000, None)
        .await
        .expect("history is readable")
        .into_iter()
        .map(|item| format!("{}: {}", item.sender, item.text))
        .collect()
}

async fn join(client: &Client, room: RoomId) {
    client.sync().await.expect("sync succeeds");
    let invitations = client.invitations().await.expect("invitations are listed");
    let invitation = invitations
        .iter()
        .find(|inv| inv.room == room)
        .expect("the invitation is pending after sync");
    assert_eq!(
        invitation.name, ROOM_NAME,
        "the invitation carries the room's name"
    );
    assert_eq!(invitation.from.as_str(), "alice");
    client
        .accept_invitation(room)
        .await
        .expect("the invitation is accepted");
}

/// Closes every client, restarts the relay on its store, and reconnects every client.
async fn restart_all(
    relay: &mut TestRelay,
    clients: [Client; 3],
    people: [&Person; 3],
) -> [Client; 3] {
    for client in clients {
        client.close().await;
    }
    relay.restart().await;
    let [a, b, c] = people;
    [a.connect().await, b.connect().await, c.connect().await]
}

fn scan_files(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("the data dir is readable") {
            let entry = entry.expect("directory entries are readable");
            if entry.file_type().expect("file type").is_dir() {
                stack.push(entry.path());
            } else {
                let bytes = std::fs::read(entry.path()).expect("files are readable");
                for needle in needles {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(format!("{needle} in {}", entry.path().display()));
                    }
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn family_room_survives_restarts_and_removal() {
    let mut relay = TestRelay::start().await;
    let base = tempfile::tempdir().expect("temp dir");
    let (alice_p, alice) = Person::register(&relay, base.path(), "alice").await;
    let (bob_p, bob) = Person::register(&relay, base.path(), "bob").await;
    let (carol_p, carol) = Person::register(&relay, base.path(), "carol").await;

    let room = alice
        .create_room(ROOM_NAME)
        .await
        .expect("alice creates the room");
    alice
        .invite(room, &bob_p.handle)
        .await
        .expect("alice invites bob");
    alice
        .invite(room, &carol_p.handle)
        .await
        .expect("alice invites carol");
    join(&bob, room).await;
    join(&carol, room).await;

    // Live delivery: bob waits for alice's message as an event.
    let mut bob_events = bob.events();
    alice
        .send_text(room, "secret-one from alice")
        .await
        .expect("alice sends");
    let received = wait_for(
        &mut bob_events,
        "alice's first message",
        |event| match event {
            ClientEvent::Message(item) if item.text == "secret-one from alice" => {
                Some(item.clone())
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(received.sender.as_str(), "alice");
    assert!(!received.own);
    bob.send_text(room, "secret-two from bob")
        .await
        .expect("bob sends");
    carol
        .send_text(room, "secret-three from carol")
        .await
        .expect("carol sends");

    // Restart everything: the relay and all three clients.
    let [alice, bob, carol] = restart_all(
        &mut relay,
        [alice, bob, carol],
        [&alice_p, &bob_p, &carol_p],
    )
    .await;
    for client in [&alice, &bob, &carol] {
        client.sync().await.expect("sync after restart");
    }
    let expected = vec![
        "alice: secret-one from alice".to_string(),
        "bob: secret-two from bob".to_string(),
        "carol: secret-three from carol".to_string(),
    ];
    for client in [&alice, &bob, &carol] {
        assert_eq!(
            texts(client, room).await,
            expected,
            "everyone has the same history"
        );
    }

    // alice removes carol.
    let mut carol_events = carol.events();
    alice
        .remove_member(room, &carol_p.handle)
        .await
        .expect("alice removes carol");
    carol.sync().await.expect("carol's sync still succeeds");
    wait_for(
        &mut carol_events,
        "carol's removal notice",
        |event| match event {
            ClientEvent::RemovedFromRoom { room: r, by, .. } if *r == room => Some(by.clone()),
            _ => None,
        },
    )
    .await;
    alice
        .send_text(room, "secret-four after the removal")
        .await
        .expect("alice sends after the removal");

    // Restart again between steps.
    let [alice, bob, carol] = restart_all(
        &mut relay,
        [alice, bob, carol],
        [&alice_p, &bob_p, &carol_p],
    )
    .await;
    for client in [&alice, &bob] {
        client.sync().await.expect("sync after the second restart");
    }
    let _ = carol.sync().await;

    let bob_texts = texts(&bob, room).await;
    assert!(bob_texts.contains(&"alice: secret-four after the removal".to_string()));
    bob.send_text(room, "secret-five bob carries on")
        .await
        .expect("bob still sends");
    alice.sync().await.expect("alice syncs");
    assert!(texts(&alice, room)
        .await
        .contains(&"bob: secret-five bob carries on".to_string()));

    let carol_texts = carol.history(room, 1000, None).await.unwrap_or_default();
    assert!(
        carol_texts
            .iter()
            .all(|item| !item.text.contains("secret-four") && !item.text.contains("secret-five")),
        "carol must not read anything after her removal: {:?}",
        carol_texts.iter().map(|i| &i.text).collect::<Vec<_>>()
    );
    let members: Vec<String> = alice
        .members(room)
        .await
        .expect("members")
        .into_iter()
        .map(|m| m.handle.to_string())
        .collect();
    assert_eq!(members.len(), 2, "alice and bob remain: {members:?}");

    for client in [alice, bob, carol] {
        client.close().await;
    }
    let data_dir = relay.data_dir();
    let _kept = relay.stop().await;
    let leaks = scan_files(
        &data_dir,
        &[
            "secret-one",
            "secret-two",
            "secret-three",
            "secret-four",
            "secret-five",
            ROOM_NAME,
        ],
    );
    assert!(
        leaks.is_empty(),
        "plaintext in the relay's files: {leaks:?}"
    );
}
