//! Issue 17: the relay process SIGKILLed in the middle of an upload (decision 0014). The
//! client resumes by itself once the relay is back, the file is held once and arrives
//! whole, and an upload nobody finishes is deleted by the sweep.

use crate::relay_process;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};

use hearth_core::store::{set_test_kdf_params, KdfParams};
use hearth_core::{Client, Profile};
use hearth_protocol::{Handle, Invite, RelayAddress};
use hearth_relay::blobs::{BlobLimits, BlobStore, UNFINISHED_SECS};
use relay_process::spawn_relay;

/// `len` pseudo-random bytes.
fn content(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The blob files under the relay's data directory: (complete, unfinished).
fn blob_files(data: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = (Vec::new(), Vec::new());
    let Ok(rooms) = std::fs::read_dir(data.join("blobs")) else {
        return files;
    };
    for room in rooms {
        for file in std::fs::read_dir(room.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "part") {
                files.1.push(path);
            } else {
                files.0.push(path);
            }
        }
    }
    files
}

async fn start(data: &Path, listen: String) -> (Child, RelayAddress, Option<Invite>) {
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || spawn_relay(&data, &listen))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_killed_mid_upload_the_client_resumes_and_the_file_is_held_once() {
    set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let (relay, address, invite) = start(&data, "127.0.0.1:0".into()).await;
    let listen = format!("127.0.0.1:{}", address.port);
    let profile = Profile::create(
        &dir.path().join("alice"),
        "correct horse",
        Handle::new("alice").unwrap(),
        address.clone(),
    )
    .unwrap();
    let alice = Client::register(
        profile,
        &invite.expect("a fresh relay prints its first invite"),
    )
    .await
    .unwrap();
    let room = alice.create_room("Home").await.unwrap();
    let bytes = content(12 * 1024 * 1024);
    let src = dir.path().join("film.mkv");
    std::fs::write(&src, &bytes).unwrap();

    // A third of the way in, the relay is killed (no goodbye reaches the client) and
    // started again on the same port with the same data.
    let third = tokio::sync::Notify::new();
    let fired = AtomicBool::new(false);
    let told = |done: u64, total: u64| {
        if done * 3 >= total && !fired.swap(true, Ordering::SeqCst) {
            third.notify_one();
        }
    };
    let killer = async {
        third.notified().await;
        let mut relay = relay;
        relay.kill().expect("SIGKILL");
        relay.wait().unwrap();
        let (_, held) = blob_files(&data);
        assert_eq!(held.len(), 1, "an unfinished upload at the kill");
        start(&data, listen.clone()).await.0
    };
    let (sent, mut relay) = tokio::join!(alice.send_file(room, &src, None, &told), killer);
    let sent = sent.expect("the upload goes on after the relay is back");
    assert_eq!(sent.resumed_from, 0, "resumed within the same run");
    let (complete, unfinished) = blob_files(&data);
    assert_eq!((complete.len(), unfinished.len()), (1, 0), "held once");

    // Whole, as sent.
    let items = alice.history(room, 10, None).await.unwrap();
    let text = &items
        .iter()
        .rev()
        .find(|i| i.text.starts_with("[file "))
        .unwrap()
        .text;
    let id = text["[file ".len()..]
        .split(']')
        .next()
        .unwrap()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let saved = alice.save_file(&id, out.path(), &|_, _| {}).await.unwrap();
    assert!(std::fs::read(&saved.path).unwrap() == bytes, "not whole");

    // An upload that nobody goes on with (killed, and its sender gave up) is left as
    // an unfinished blob: the sweep deletes it after a day; the complete one stays.
    let second = dir.path().join("second.mkv");
    std::fs::write(&second, content(4 * 1024 * 1024)).unwrap();
    let third = tokio::sync::Notify::new();
    let fired = AtomicBool::new(false);
    let told = |done: u64, total: u64| {
        if done * 3 >= total && !fired.swap(true, Ordering::SeqCst) {
            third.notify_one();
        }
    };
    tokio::select! {
        r = alice.send_file(room, &second, None, &told) => panic!("finished: {r:?}"),
        () = third.notified() => {}
    }
    alice.close().await;
    relay.kill().expect("SIGKILL");
    relay.wait().unwrap();
    assert_eq!(blob_files(&data).1.len(), 1);
    let store = BlobStore::open(
        &data,
        BlobLimits {
            max_file_bytes: u64::MAX,
            quota_bytes_per_room: u64::MAX,
            quota_bytes_total: u64::MAX,
        },
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let month = 30 * 24 * 3600;
    assert_eq!(store.sweep(now + 60, |_| Some(month)), 0);
    assert_eq!(store.sweep(now + UNFINISHED_SECS + 60, |_| Some(month)), 1);
    let (complete, unfinished) = blob_files(&data);
    assert_eq!((complete.len(), unfinished.len()), (1, 0), "no orphan left");
}
