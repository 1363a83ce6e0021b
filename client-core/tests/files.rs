//! Issue 17: files sent through a real relay (decision 0014).

mod common;

use common::hostile::Hostile;
use common::{h, room_with, Relay, User};
use hearth_core::{ClientError, ClientEvent};
use hearth_protocol::{BlobId, Cap, ErrorCode, Request, Response, RoomId};

const MARKER: &[u8] = b"HEARTH-PLAINTEXT-MARKER-7f3a";

/// `len` bytes of pseudo-random data with [`MARKER`] at the start, middle and end.
fn content(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for at in [0, len / 2, len - MARKER.len()] {
        bytes[at..at + MARKER.len()].copy_from_slice(MARKER);
    }
    bytes
}

fn quiet(_: u64, _: u64) {}

/// Waits for the file message in `user`'s events and returns its short id.
async fn file_id(user: &mut User) -> String {
    let ClientEvent::Message(item) = user
        .wait_for(
            "a file message",
            |e| matches!(e, ClientEvent::Message(m) if m.text.starts_with("[file ")),
        )
        .await
    else {
        unreachable!()
    };
    item.text["[file ".len()..]
        .split(']')
        .next()
        .unwrap()
        .to_string()
}

/// The blob id and room of a file `user` holds in history.
fn blob_of(user: &User, id: &str) -> (RoomId, BlobId) {
    let found = hearth_core::history::find_files(user.c().profile().store(), id).unwrap();
    assert_eq!(found.len(), 1, "{id}");
    (found[0].0, found[0].2.blob)
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if path.is_file() {
            // Not the admin socket.
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_file_arrives_whole_and_the_relay_holds_no_plaintext_nor_gives_it_to_others() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut carol = relay.user("carol").await;
    let room = room_with(&alice, &[&bob], "family").await;

    let bytes = content(20 * 1024 * 1024);
    let src = relay.dir.path().join("holiday.jpg");
    std::fs::write(&src, &bytes).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    alice
        .c()
        .send_file(room, &src, Some("the beach".into()), &progress)
        .await
        .unwrap();
    let seen = seen.into_inner().unwrap();
    let &(done, total) = seen.last().unwrap();
    assert_eq!(done, total, "{seen:?}");
    assert!(seen.len() > 10, "told piece by piece: {seen:?}");

    let id = file_id(&mut bob).await;
    let texts = bob.texts(room).await;
    let shown = texts.iter().find(|t| t.contains(&id)).unwrap();
    assert!(
        shown.contains("holiday.jpg (image/jpeg, 20.0 MiB): the beach"),
        "{shown}"
    );
    let out = tempfile::tempdir().unwrap();
    let saved = bob.c().save_file(&id, out.path(), &quiet).await.unwrap();
    assert_eq!(saved.path, out.path().join("holiday.jpg"));
    assert!(
        std::fs::read(&saved.path).unwrap() == bytes,
        "not byte-identical"
    );
    // Saved again: beside it, never over it.
    let again = bob.c().save_file(&id, out.path(), &quiet).await.unwrap();
    assert_eq!(again.path, out.path().join("holiday (1).jpg"));

    // Nothing the relay wrote holds the file's plaintext.
    let relay_files = files_under(&relay.dir.path().join("relay"));
    assert!(relay_files
        .iter()
        .any(|p| p.to_string_lossy().contains("blobs")));
    for path in relay_files {
        let stored = std::fs::read(&path).unwrap();
        assert!(
            !stored.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext in {}",
            path.display()
        );
    }

    // Carol is no member: no capability of hers opens the room's blobs.
    let (room_id, blob) = blob_of(&bob, &id);
    let carol = Hostile::take_over(&mut carol).await;
    for cap in [Cap([0; 32]), Cap([7; 32])] {
        let refused = carol
            .call(Request::GetBlob {
                room: room_id,
                cap,
                blob,
                offset: 0,
                len: 1024,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_cannot_fetch_files_sent_after_the_removal() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let mut dave = relay.user("dave").await;
    let room = room_with(&alice, &[&bob, &dave], "family").await;

    let src = relay.dir.path().join("before.pdf");
    std::fs::write(&src, content(100_000)).unwrap();
    alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    let before = file_id(&mut dave).await;
    let before_blob = blob_of(&dave, &before).1;

    // Dave keeps the capability of the epoch his removal ends (his client cannot use an
    // evicted group, a modified one keeps what it had).
    let dave = Hostile::take_over(&mut dave).await;
    let cap = dave.engine.cap(&dave.group(room)).unwrap();
    alice.c().kick(room, &h("dave")).await.unwrap();
    let src = relay.dir.path().join("after.pdf");
    std::fs::write(&src, content(100_000)).unwrap();
    alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    let _ = file_id(&mut bob).await;
    let after = file_id(&mut bob).await;
    let after_blob = blob_of(&bob, &after).1;

    let get = |blob| Request::GetBlob {
        room,
        cap: cap.clone(),
        blob,
        offset: 0,
        len: 1024,
    };
    let old = dave.call(get(before_blob)).await;
    assert!(matches!(old, Ok(Response::Blob { .. })), "{old:?}");
    let refused = dave.call(get(after_blob)).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_relays_limit_is_refused_with_a_clear_error() {
    let relay = Relay::start_with(|c| c.max_file_bytes = 1024 * 1024).await;
    let alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "family").await;
    let src = relay.dir.path().join("video.mp4");
    std::fs::write(&src, content(2 * 1024 * 1024)).unwrap();
    let e = alice
        .c()
        .send_file(room, &src, None, &quiet)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TooLarge), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("too large") && text.contains("1.0 MiB"),
        "{text}"
    );
    // Nothing was announced, nothing kept.
    assert!(relay
        .running
        .as_ref()
        .unwrap()
        .relay()
        .blobs()
        .room_bytes(&room)
        .eq(&0));
    // A small one still goes.
    std::fs::write(&src, content(1000)).unwrap();
    alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    // An unknown id is a clear error.
    let missing = alice
        .c()
        .save_file("00000000", relay.dir.path(), &quiet)
        .await
        .unwrap_err();
    assert!(matches!(missing, ClientError::NoSuchFile(_)), "{missing}");
}
