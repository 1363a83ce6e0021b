//! Crash safety of the encrypted store: a writer process committing batches is killed
//! with SIGKILL at a random moment; every batch must then be entirely present or entirely
//! absent, and the store must still open with its passphrase.
//!
//! The writer is this same test binary, re-executed with `HEARTH_CRASH_WRITER` set.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth_core::store::{set_test_kdf_params, KdfParams};
use hearth_core::{EncryptedStore, Table};

const PASSPHRASE: &str = "crash test";
/// Keys written by each batch, all with the batch's counter as value.
const KEYS_PER_BATCH: u32 = 16;
const VALUE_LEN: usize = 512;

fn value_of(counter: u64) -> Vec<u8> {
    let mut value = counter.to_be_bytes().to_vec();
    value.resize(VALUE_LEN, (counter % 251) as u8);
    value
}

/// The writer: opens the store and commits batches until killed.
fn writer(path: &Path, start: u64) -> ! {
    let store = EncryptedStore::open(path, PASSPHRASE).expect("writer opens the store");
    println!("ready");
    for counter in start.. {
        let mut batch = store.begin().expect("begin");
        for k in 0..KEYS_PER_BATCH {
            let key = format!("{counter:010}/{k:02}");
            batch
                .put(Table::History, key.as_bytes(), &value_of(counter))
                .expect("put");
        }
        batch
            .put(Table::Meta, b"last", &counter.to_be_bytes())
            .expect("put last");
        // Replacing older batches' keys exercises deletes inside a batch too.
        if counter >= 8 {
            let old = format!("{:010}/", counter - 8);
            batch
                .delete_prefix(Table::History, old.as_bytes())
                .expect("delete_prefix");
        }
        batch.commit().expect("commit");
    }
    unreachable!("the counter space is not exhausted before the kill");
}

/// Checks every batch is whole; returns the last committed counter, if any.
fn check(path: &Path) -> Option<u64> {
    let store = EncryptedStore::open(path, PASSPHRASE).expect("store opens after a crash");
    let last = store
        .get(Table::Meta, b"last")
        .expect("read last")
        .map(|v| u64::from_be_bytes(v[..].try_into().expect("8-byte counter")));
    let entries = store.scan(Table::History, b"").expect("scan");
    let mut counts = std::collections::BTreeMap::<u64, u32>::new();
    for (key, value) in &entries {
        let key = std::str::from_utf8(key).expect("utf-8 key");
        let counter: u64 = key[..10].parse().expect("counter prefix");
        assert_eq!(&value[..], value_of(counter), "value of {key}");
        *counts.entry(counter).or_default() += 1;
    }
    for (counter, count) in &counts {
        assert_eq!(*count, KEYS_PER_BATCH, "batch {counter} is partial");
    }
    match last {
        None => assert!(counts.is_empty()),
        Some(last) => {
            // Exactly the last (up to) 8 batches are live: none lost, none extra.
            let first = last.saturating_sub(7);
            let expected: Vec<u64> = (first..=last).collect();
            assert_eq!(counts.keys().copied().collect::<Vec<_>>(), expected);
        }
    }
    last
}

#[test]
fn batches_survive_sigkill_whole_or_not_at_all() {
    if let Some(path) = std::env::var_os("HEARTH_CRASH_WRITER") {
        let start = std::env::var("HEARTH_CRASH_START")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        writer(Path::new(&path), start);
    }

    set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("crash.redb");
    drop(EncryptedStore::create(&path, PASSPHRASE, KdfParams::TEST_ONLY_FAST).unwrap());

    let exe = std::env::current_exe().unwrap();
    let mut next = 0u64;
    let mut survived = Vec::new();
    for round in 0..4u64 {
        let mut child = Command::new(&exe)
            .args([
                "store_crash::batches_survive_sigkill_whole_or_not_at_all",
                "--exact",
                "--nocapture",
            ])
            .env("HEARTH_CRASH_WRITER", &path)
            .env("HEARTH_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = lines
                .next()
                .expect("writer output")
                .expect("read writer output");
            if line.trim() == "ready" {
                break;
            }
            assert!(Instant::now() < deadline, "writer never got ready");
        }
        // Kill at varying moments, so the kill lands at different points of a commit.
        std::thread::sleep(Duration::from_millis(150 + 97 * round));
        child.kill().unwrap();
        child.wait().unwrap();

        let last = check(&path);
        survived.push(last);
        if let Some(last) = last {
            next = last + 1;
        }
    }
    eprintln!("last committed batch after each kill: {survived:?}");
    // The writer made progress at least once, so the check saw real batches.
    assert!(survived.iter().any(|l| l.is_some()), "{survived:?}");
}
