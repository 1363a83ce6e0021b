//! Issue 17: files sent through a real relay (decision 0014).

use crate::common;

use common::hostile::Hostile;
use common::{h, room_with, Relay, User};
use hearth_core::{ClientError, ClientEvent};
use hearth_protocol::{BlobId, Cap, ErrorCode, Request, Response, RoomId};
use hearth_relay::RelayConfig;

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
        text.contains("too large")
            && text.contains("1.0 MiB")
            && text.contains("send a smaller file"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_file_quota_is_refused_through_the_relay_with_a_clear_error() {
    let relay = Relay::start_with(|c| c.blob_quota_bytes_per_room = 3 * 1024 * 1024 / 2).await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "family").await;
    let src = relay.dir.path().join("scan.pdf");
    std::fs::write(&src, content(1024 * 1024)).unwrap();
    alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    let e = alice
        .c()
        .send_file(room, &src, None, &quiet)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("1.5 MiB") && text.contains("wait for older files to expire"),
        "{text}"
    );
    // The room's messages are charged apart: they still go.
    alice.c().send_text(room, "still here").await.unwrap();
    bob.wait_text("still here").await;
}

/// One account filling the relay's file space through rooms of its own hits every room's
/// uploads (not messages) until the owner deletes that room's files with `drop-files`
/// (through the running relay's admin socket, as `hearth-relay drop-files` does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_wide_file_cap_hits_uploads_not_messages_and_the_owner_takes_a_rooms_files_back()
{
    let relay = Relay::start_with(|c| c.blob_quota_bytes_total = 3 * 1024 * 1024 / 2).await;
    let mallory = relay.user("mallory").await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let hoard = mallory.c().create_room("hoard").await.unwrap();
    let family = room_with(&alice, &[&bob], "family").await;
    let src = relay.dir.path().join("big.bin");
    std::fs::write(&src, content(1024 * 1024)).unwrap();
    mallory
        .c()
        .send_file(hoard, &src, None, &quiet)
        .await
        .unwrap();

    let e = alice
        .c()
        .send_file(family, &src, None, &quiet)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("1.5 MiB of files for all rooms together"),
        "{text}"
    );
    alice
        .c()
        .send_text(family, "messages still go")
        .await
        .unwrap();
    bob.wait_text("messages still go").await;

    let running = relay.running.as_ref().unwrap();
    let config = running.relay().config().clone();
    let drop_files = |room: String| {
        hearth_relay::admin::request(
            &config,
            hearth_relay::admin::AdminRequest::DropFiles { room },
        )
    };
    match drop_files("zz".into()).await.unwrap() {
        hearth_relay::admin::AdminResponse::Error(e) => assert!(e.contains("in hex"), "{e}"),
        other => panic!("{other:?}"),
    }
    match drop_files(family.to_hex()).await.unwrap() {
        hearth_relay::admin::AdminResponse::Error(e) => {
            assert!(e.contains("holds files"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let hoard_dir = config.data_dir.join("blobs").join(hoard.to_hex());
    assert!(hoard_dir.exists());
    match drop_files(hoard.to_hex()[..8].to_uppercase())
        .await
        .unwrap()
    {
        hearth_relay::admin::AdminResponse::FilesDropped(dropped) => {
            assert_eq!(dropped.room, hoard);
            assert_eq!((dropped.files, dropped.busy), (1, 0));
            assert!(dropped.bytes > 1024 * 1024, "{dropped:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !hoard_dir.exists(),
        "the room's files are gone from the disk"
    );
    assert_eq!(running.relay().blobs().total_bytes(), 0);

    alice
        .c()
        .send_file(family, &src, None, &quiet)
        .await
        .unwrap();
    let id = file_id(&mut bob).await;
    let out = tempfile::tempdir().unwrap();
    let saved = bob.c().save_file(&id, out.path(), &quiet).await.unwrap();
    assert_eq!(std::fs::read(saved.path).unwrap(), content(1024 * 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_an_upload_refuses_the_file_and_messages_still_go() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "family").await;
    let bytes = content(6 * 1024 * 1024);
    let src = relay.dir.path().join("video.mp4");
    std::fs::write(&src, &bytes).unwrap();

    // After the first pieces the disk is (said to be) 1 MiB above the floor: too little
    // for the rest of the file, enough for messages.
    let floor = RelayConfig::default().min_free_bytes;
    let running = relay.running.as_ref().unwrap();
    let filling = |done: u64, _total: u64| {
        if done >= 2 * 1024 * 1024 {
            running
                .relay()
                .disk_floor()
                .pretend_free(Some(floor + 1024 * 1024));
        }
    };
    let e = alice
        .c()
        .send_file(room, &src, None, &filling)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::StorageFull), "{e}");
    assert!(
        e.to_string().contains("no room for the rest of this file"),
        "{e}"
    );
    let blobs = running.relay().blobs();
    assert_eq!(blobs.count(), 1);

    // Messages go on, both ways.
    alice.c().send_text(room, "the disk is full").await.unwrap();
    bob.wait_text("the disk is full").await;
    bob.c().send_text(room, "messages still go").await.unwrap();

    // Space freed: the same file resumes where the relay stopped, and arrives once.
    running.relay().disk_floor().pretend_free(None);
    let sent = alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    assert!(sent.resumed_from >= 2 * 1024 * 1024, "{sent:?}");
    assert_eq!(blobs.count(), 1);
    let id = file_id(&mut bob).await;
    let out = tempfile::tempdir().unwrap();
    let saved = bob.c().save_file(&id, out.path(), &quiet).await.unwrap();
    assert!(std::fs::read(&saved.path).unwrap() == bytes, "not whole");
}

/// Each way a hostile uploader can mangle the chunks of a blob it announces.
#[derive(Debug, Clone, Copy)]
enum Mangle {
    Tamper,
    Reorder,
    Truncate,
    Duplicate,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_chunks_from_a_hostile_uploader_are_refused_at_download() {
    use hearth_core::attachment::{AttachmentError, Encryptor, CHUNK_SIZE, TAG_LEN};
    use hearth_core::content::Body;

    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "family").await;
    let alice = Hostile::take_over(&mut alice).await;
    let mut group = alice.group(room);
    let sealed_chunk = CHUNK_SIZE as usize + TAG_LEN;

    for mangle in [
        Mangle::Tamper,
        Mangle::Reorder,
        Mangle::Truncate,
        Mangle::Duplicate,
    ] {
        let plain = content(4 * CHUNK_SIZE as usize);
        let mut sealer = Encryptor::new(&plain[..], plain.len() as u64).unwrap();
        let mut blob_bytes = Vec::new();
        while sealer.next_chunk(&mut blob_bytes).unwrap() {}
        let blob = BlobId::random();
        let message = sealer
            .finish(
                blob,
                format!("{mangle:?}.bin"),
                "application/octet-stream".into(),
                None,
            )
            .unwrap();
        match mangle {
            Mangle::Tamper => blob_bytes[sealed_chunk + 100] ^= 1,
            Mangle::Reorder => {
                let (first, rest) = blob_bytes.split_at_mut(sealed_chunk);
                first.swap_with_slice(&mut rest[..sealed_chunk]);
            }
            // The announced size stays; the relay holds less.
            Mangle::Truncate => blob_bytes.truncate(2 * sealed_chunk),
            Mangle::Duplicate => {
                let copy = blob_bytes[..sealed_chunk].to_vec();
                blob_bytes[sealed_chunk..2 * sealed_chunk].copy_from_slice(&copy);
            }
        }
        let cap = alice.engine.cap(&group).unwrap();
        let stored = alice
            .call(Request::PutBlob {
                room,
                cap,
                blob,
                total: blob_bytes.len() as u64,
                offset: 0,
                data: blob_bytes,
            })
            .await;
        assert!(
            matches!(stored, Ok(Response::BlobStored { .. })),
            "{stored:?}"
        );
        alice
            .send_body(room, &mut group, Body::File(message))
            .await
            .unwrap();

        let id = file_id(&mut bob).await;
        let out = tempfile::tempdir().unwrap();
        let e = bob
            .c()
            .save_file(&id, out.path(), &quiet)
            .await
            .unwrap_err();
        let ClientError::Attachment(refused) = &e else {
            panic!("{mangle:?}: {e}");
        };
        match (mangle, refused) {
            (Mangle::Tamper, AttachmentError::Tampered { chunk: 1 })
            | (
                Mangle::Reorder,
                AttachmentError::Reordered {
                    chunk: 0,
                    belongs: 1,
                },
            )
            | (Mangle::Truncate, AttachmentError::Truncated { .. })
            | (
                Mangle::Duplicate,
                AttachmentError::Duplicated {
                    chunk: 1,
                    copy_of: 0,
                },
            ) => {}
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("the download is refused"), "{e}");
        // Nothing is left under any name, not even the part file.
        let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
        assert!(left.is_empty(), "{mangle:?}: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disappearing_timer_deletes_a_rooms_files_at_the_relay_and_the_clients() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "family").await;
    let hour = std::time::Duration::from_secs(3600);
    alice.c().set_expiry(room, Some(hour)).await.unwrap();
    let src = relay.dir.path().join("note.txt");
    std::fs::write(&src, content(200_000)).unwrap();
    alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    let id = file_id(&mut bob).await;

    let running = relay.running.as_ref().unwrap();
    let blobs = running.relay().blobs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Not yet due: kept.
    let kept = running.relay().sweep(now + 60).await.unwrap();
    assert_eq!(kept.blobs, 0);
    assert_eq!(blobs.count(), 1);
    // Past the timer: the blob and its charge go.
    let swept = running.relay().sweep(now + 3600 + 60).await.unwrap();
    assert_eq!(swept.blobs, 1);
    assert_eq!(blobs.count(), 0);
    assert_eq!(blobs.room_bytes(&room), 0);
    assert!(files_under(&relay.dir.path().join("relay"))
        .iter()
        .all(|p| !p.to_string_lossy().contains("blobs")));
    // The clients drop the message and its key with it.
    let later = std::time::SystemTime::now() + hour + std::time::Duration::from_secs(60);
    bob.c().purge_expired(later).await.unwrap();
    let gone = bob
        .c()
        .save_file(&id, relay.dir.path(), &quiet)
        .await
        .unwrap_err();
    assert!(matches!(gone, ClientError::NoSuchFile(_)), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_and_download_resume_after_a_restart() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "family").await;
    let bytes = content(6 * 1024 * 1024);
    let src = relay.dir.path().join("album.zip");
    std::fs::write(&src, &bytes).unwrap();

    // The upload stops half way (the process ended: the future is dropped).
    let half = tokio::sync::Notify::new();
    let told = |done: u64, total: u64| {
        if done * 2 >= total && done < total {
            half.notify_one();
        }
    };
    tokio::select! {
        r = alice.c().send_file(room, &src, None, &told) => panic!("finished: {r:?}"),
        () = half.notified() => {}
    }
    let blobs = relay.running.as_ref().unwrap().relay().blobs().clone();
    assert_eq!(blobs.count(), 1);
    // Run again: the same blob goes on from what the relay holds.
    alice.restart().await;
    let sent = alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    assert!(sent.resumed_from >= 3 * 1024 * 1024, "{sent:?}");
    assert_eq!(blobs.count(), 1, "the file is held once");
    let id = file_id(&mut bob).await;

    // The download stops half way too, then goes on from the part file.
    let out = tempfile::tempdir().unwrap();
    let half = tokio::sync::Notify::new();
    let told = |done: u64, total: u64| {
        if done * 2 >= total && done < total {
            half.notify_one();
        }
    };
    tokio::select! {
        r = bob.c().save_file(&id, out.path(), &told) => panic!("finished: {r:?}"),
        () = half.notified() => {}
    }
    bob.restart().await;
    let saved = bob.c().save_file(&id, out.path(), &quiet).await.unwrap();
    assert!(saved.resumed_from >= 2 * 1024 * 1024, "{saved:?}");
    assert!(std::fs::read(&saved.path).unwrap() == bytes, "not whole");
    let left: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("album.zip")]);
}

/// Seals `plain` as a hostile member would, uploads it whole under `blob` and announces
/// it in `room` under `name`; returns the message it sent.
async fn hostile_file(
    mallory: &Hostile,
    group: &mut openmls::prelude::MlsGroup,
    room: RoomId,
    blob: BlobId,
    name: &str,
    plain: &[u8],
) -> hearth_core::attachment::FileMessage {
    use hearth_core::attachment::Encryptor;
    let mut sealer = Encryptor::new(plain, plain.len() as u64).unwrap();
    let mut sealed = Vec::new();
    while sealer.next_chunk(&mut sealed).unwrap() {}
    let message = sealer
        .finish(blob, name.into(), "image/jpeg".into(), None)
        .unwrap();
    let cap = mallory.engine.cap(group).unwrap();
    let stored = mallory
        .call(Request::PutBlob {
            room,
            cap,
            blob,
            total: sealed.len() as u64,
            offset: 0,
            data: sealed,
        })
        .await;
    assert!(
        matches!(stored, Ok(Response::BlobStored { .. })),
        "{stored:?}"
    );
    announce(mallory, group, room, message.clone()).await;
    message
}

async fn announce(
    mallory: &Hostile,
    group: &mut openmls::prelude::MlsGroup,
    room: RoomId,
    message: hearth_core::attachment::FileMessage,
) {
    let sent = mallory
        .send_body(room, group, hearth_core::content::Body::File(message))
        .await;
    assert!(matches!(sent, Ok(Response::Appended { .. })), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_file_names_are_saved_inside_the_chosen_directory_under_safe_names() {
    use hearth_core::attachment::MAX_SAVED_NAME_LEN;

    let relay = Relay::start().await;
    let mut mallory = relay.user("mallory").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&mallory, &[&bob], "family").await;
    let mallory = Hostile::take_over(&mut mallory).await;
    let mut group = mallory.group(room);

    let longest = format!("{}.jpg", "x".repeat(251));
    let names: [(&str, &str); 5] = [
        ("../../.bashrc", "bashrc"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\AppData\\evil.bat", "evil.bat"),
        ("a\u{1b}[2J\u{202e}gpj.exe\u{2028}", "a_[2J_gpj.exe_"),
        (&longest, ""),
    ];
    let top = tempfile::tempdir().unwrap();
    let out = top.path().join("downloads");
    std::fs::create_dir(&out).unwrap();
    for (i, (name, safe)) in names.iter().enumerate() {
        let plain = content(1000 + i);
        hostile_file(&mallory, &mut group, room, BlobId::random(), name, &plain).await;
        let id = file_id(&mut bob).await;
        let saved = bob
            .c()
            .save_file(&id, &out, &quiet)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(saved.path.parent(), Some(out.as_path()), "{name:?}");
        let file_name = saved.path.file_name().unwrap().to_str().unwrap();
        if safe.is_empty() {
            // The longest name a message may carry: cut, its extension kept, and
            // its `.part` file fitted under the 255-byte limit too.
            assert_eq!(file_name.len(), MAX_SAVED_NAME_LEN);
            assert!(file_name.ends_with("x.jpg"), "{file_name}");
        } else {
            assert_eq!(file_name, *safe);
        }
        assert!(std::fs::read(&saved.path).unwrap() == plain, "{name:?}");
    }
    // Nothing was written beside the chosen directory, nothing is left half-done in it.
    let beside: Vec<_> = std::fs::read_dir(top.path()).unwrap().collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), names.len());

    // A name past what a message may carry (10 KiB) makes no file at all: the message
    // says so.
    let plain = content(100);
    hostile_file(
        &mallory,
        &mut group,
        room,
        BlobId::random(),
        &"y".repeat(10 * 1024),
        &plain,
    )
    .await;
    bob.wait_for(
        "the refused file message",
        |e| matches!(e, ClientEvent::Message(m) if m.text.starts_with("[a file that cannot be opened")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_repeating_a_files_id_cannot_make_it_unsaveable() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut mallory = relay.user("mallory").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&mallory, &bob], "family").await;
    let src = relay.dir.path().join("letter.pdf");
    let bytes = content(200_000);
    std::fs::write(&src, &bytes).unwrap();
    alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    let id = file_id(&mut bob).await;
    let _ = file_id(&mut mallory).await;
    let (_, blob) = blob_of(&mallory, &id);

    // Mallory announces the very same blob id (with a key of hers), then another blob
    // whose id begins alike, so that both the short and the long id match twice.
    let mallory = Hostile::take_over(&mut mallory).await;
    let mut group = mallory.group(room);
    let copied = hostile_file(&mallory, &mut group, room, BlobId::random(), "x.pdf", b"x").await;
    let mut same = copied.clone();
    same.blob = blob;
    announce(&mallory, &mut group, room, same).await;
    let mut prefix = blob;
    prefix.0[4..].copy_from_slice(&BlobId::random().0[4..]);
    hostile_file(&mallory, &mut group, room, prefix, "y.pdf", b"y").await;
    for _ in 0..3 {
        let _ = file_id(&mut bob).await;
    }

    // The first message with the id is the file: it still saves, by either id.
    let out = tempfile::tempdir().unwrap();
    for id in [id.clone(), blob.to_hex()] {
        let saved = bob.c().save_file(&id, out.path(), &quiet).await;
        let saved = saved.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(std::fs::read(&saved.path).unwrap() == bytes, "{id}");
    }
}

/// A member of two rooms copies a file's ids into the other room: the id alone then
/// names two files and is refused saying to name the room; with the room it saves the
/// real file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_files_id_copied_into_another_room_is_told_apart_by_the_room() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut mallory = relay.user("mallory").await;
    let mut bob = relay.user("bob").await;
    let family = room_with(&alice, &[&mallory, &bob], "family").await;
    let other = room_with(&mallory, &[&bob], "other").await;
    let src = relay.dir.path().join("letter.pdf");
    let bytes = content(200_000);
    std::fs::write(&src, &bytes).unwrap();
    alice
        .c()
        .send_file(family, &src, None, &quiet)
        .await
        .unwrap();
    let id = file_id(&mut bob).await;
    let _ = file_id(&mut mallory).await;
    let (_, blob) = blob_of(&mallory, &id);

    let mallory = Hostile::take_over(&mut mallory).await;
    let mut group = mallory.group(other);
    let mut copied = hostile_file(
        &mallory,
        &mut group,
        other,
        BlobId::random(),
        "letter.pdf",
        b"x",
    )
    .await;
    copied.blob = blob;
    announce(&mallory, &mut group, other, copied).await;
    for _ in 0..2 {
        let _ = file_id(&mut bob).await;
    }

    let out = tempfile::tempdir().unwrap();
    for id in [id.clone(), blob.to_hex()] {
        let refused = bob
            .c()
            .save_file(&id, out.path(), &quiet)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("name the room as well"),
            "{refused}"
        );
        let saved = bob
            .c()
            .save_file_in(Some(family), &id, out.path(), &quiet)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(std::fs::read(&saved.path).unwrap() == bytes, "{id}");
    }
    let missing = bob
        .c()
        .save_file_in(Some(RoomId([9; 16])), &id, out.path(), &quiet)
        .await
        .unwrap_err();
    assert!(matches!(missing, ClientError::NoSuchFile(_)), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_removed_members_and_other_rooms_get_no_blob() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let mut dave = relay.user("dave").await;
    let mut carol = relay.user("carol").await;
    let room = room_with(&alice, &[&bob, &dave], "family").await;
    let other = room_with(&alice, &[&bob, &carol], "other").await;
    let src = relay.dir.path().join("scan.pdf");
    std::fs::write(&src, content(100_000)).unwrap();
    alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    // The blob's id, as the relay names its file.
    let held = relay
        .dir
        .path()
        .join("relay")
        .join("blobs")
        .join(room.to_hex());
    let mut held: Vec<_> = std::fs::read_dir(held).unwrap().collect();
    assert_eq!(held.len(), 1);
    let name = held.remove(0).unwrap().file_name();
    let blob = BlobId::from_hex(name.to_str().unwrap()).unwrap();

    let dave = Hostile::take_over(&mut dave).await;
    let dave_cap = dave.engine.cap(&dave.group(room)).unwrap();
    alice.c().kick(room, &h("dave")).await.unwrap();
    let carol = Hostile::take_over(&mut carol).await;
    let other_cap = carol.engine.cap(&carol.group(other)).unwrap();

    let put = |room, cap| Request::PutBlob {
        room,
        cap,
        blob: BlobId::random(),
        total: 100,
        offset: 0,
        data: vec![0; 100],
    };
    let status = |room, cap| Request::BlobStatus { room, cap, blob };
    let get = |room, cap| Request::GetBlob {
        room,
        cap,
        blob,
        offset: 0,
        len: 1024,
    };
    // Carol is registered and in another room, not in this one.
    for request in [
        put(room, other_cap.clone()),
        status(room, other_cap.clone()),
        get(room, other_cap.clone()),
    ] {
        let refused = carol.call(request).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");
    }
    // Her own room's capability names her own room: the blob is not there.
    let refused = carol.call(get(other, other_cap)).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::UnknownBlob, "{refused}");
    // Dave, removed, may neither add files nor probe for them.
    for request in [put(room, dave_cap.clone()), status(room, dave_cap.clone())] {
        let refused = dave.call(request).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::StaleEpoch, "{refused}");
    }
    assert_eq!(relay.running.as_ref().unwrap().relay().blobs().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_a_file_and_where_nothing_can_be_saved_are_refused_saying_what_to_do() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "family").await;

    // A directory, a device (endless, its size 0) and a named pipe (opening it would
    // wait for a writer): each refused before anything is sent.
    let dir = relay.dir.path().join("photos");
    std::fs::create_dir(&dir).unwrap();
    let fifo = relay.dir.path().join("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (path, says) in [
        (
            dir.as_path(),
            "is a directory: send the files in it one by one",
        ),
        (std::path::Path::new("/dev/zero"), "is not a regular file"),
        (fifo.as_path(), "is not a regular file"),
    ] {
        let e = alice
            .c()
            .send_file(room, path, None, &quiet)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(says), "{}: {e}", path.display());
    }
    assert_eq!(relay.running.as_ref().unwrap().relay().blobs().count(), 0);

    let src = relay.dir.path().join("a.txt");
    std::fs::write(&src, b"hello").unwrap();
    alice.c().send_file(room, &src, None, &quiet).await.unwrap();
    let id = file_id(&mut bob).await;
    let missing = relay.dir.path().join("no").join("such");
    let e = bob.c().save_file(&id, &missing, &quiet).await.unwrap_err();
    assert!(e.to_string().contains("create it first (mkdir -p"), "{e}");
    let e = bob.c().save_file(&id, &src, &quiet).await.unwrap_err();
    assert!(
        e.to_string().contains("name a directory to save into"),
        "{e}"
    );
    assert!(!missing.exists());
}
