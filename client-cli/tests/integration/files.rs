//! Issue 17: files through the real `hearth` binary and a real relay: `send-file`,
//! `history`, `save` and `open`, and a `send-file` or `save` killed half way that goes on
//! when run again.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{assert_success, hearth, json_lines, stdout, Env, PASSPHRASE};

const MARKER: &[u8] = b"HEARTH-CLI-PLAINTEXT-MARKER";

/// `len` pseudo-random bytes with [`MARKER`] in the middle.
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
    bytes[len / 2..len / 2 + MARKER.len()].copy_from_slice(MARKER);
    bytes
}

/// The id of the newest file message in `profile`'s history of `room`.
async fn last_file_id(profile: &Path, room: &str) -> String {
    let out = hearth(profile, &["history", room]).await;
    assert_success(&out, "history");
    let text = stdout(&out);
    let at = text
        .rfind("[file ")
        .unwrap_or_else(|| panic!("no file in {text}"));
    text[at + "[file ".len()..]
        .split(']')
        .next()
        .unwrap()
        .to_string()
}

/// `hearth` run in its own process (no agent), as a child the test can kill.
fn own_process(profile: &Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--profile")
        .arg(profile)
        .arg("--no-agent")
        .args(args)
        .env_remove("HEARTH_PROFILE")
        .env("HEARTH_PASSPHRASE", PASSPHRASE)
        .env("HEARTH_TEST_FAST_KDF", "1")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("hearth runs")
}

/// Waits (polling the disk: another process writes) until `find` says so.
async fn until(what: &str, mut find: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !find() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// The unfinished files (`*.part`) under `dir` and its subdirectories, with their sizes.
fn parts(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(parts(&path));
        } else if path.extension().is_some_and(|e| e == "part") {
            out.push((path.clone(), entry.metadata().map_or(0, |m| m.len())));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_through_send_file_save_and_open() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    let bytes = content(5 * 1024 * 1024);
    let src = env.dir.path().join("school letter.pdf");
    std::fs::write(&src, &bytes).unwrap();

    let out = hearth(
        &alice,
        &[
            "send-file",
            "family",
            src.to_str().unwrap(),
            "--caption",
            "sign by Friday",
        ],
    )
    .await;
    assert_success(&out, "send-file");
    assert!(
        stdout(&out).starts_with("Sent school letter.pdf (5.0 MiB) to family in"),
        "{}",
        stdout(&out)
    );

    let id = last_file_id(&bob, "family").await;
    let history = stdout(&hearth(&bob, &["history", "family"]).await);
    assert!(
        history.contains(&format!(
            "[file {id}] school letter.pdf (application/pdf, 5.0 MiB): sign by Friday"
        )),
        "{history}"
    );
    let into = env.dir.path().join("downloads");
    std::fs::create_dir_all(&into).unwrap();
    let out = hearth(&bob, &["--json", "save", &id, into.to_str().unwrap()]).await;
    assert_success(&out, "save");
    let saved = json_lines(&out)[0].clone();
    assert_eq!(saved["bytes"], 5 * 1024 * 1024);
    assert_eq!(saved["resumed_from"], 0);
    assert!(
        std::fs::read(into.join("school letter.pdf")).unwrap() == bytes,
        "not byte-identical"
    );

    // The relay's files hold no plaintext.
    let left = parts(&env.dir.path().join("relay"));
    assert!(left.is_empty(), "unfinished uploads are left: {left:?}");
    let mut stack = vec![env.dir.path().join("relay")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                let stored = std::fs::read(&path).unwrap();
                assert!(
                    !stored.windows(MARKER.len()).any(|w| w == MARKER),
                    "plaintext in {}",
                    path.display()
                );
            }
        }
    }

    // `open` saves a checked copy into the profile and hands it to the opener (here a
    // script that copies what it is given).
    let opened = env.dir.path().join("opened.pdf");
    let opener = env.dir.path().join("opener.sh");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\ncp \"$1\" '{}.tmp' && mv '{0}.tmp' '{0}'\n",
            opened.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = hearth(&bob, &["open", &id, "--with", opener.to_str().unwrap()]).await;
    assert_success(&out, "open");
    let copy = bob.join("files").join("school letter.pdf");
    assert!(stdout(&out).contains("Opened"), "{}", stdout(&out));
    until("the opener to run", || opened.exists()).await;
    assert!(
        std::fs::read(&opened).unwrap() == bytes,
        "opened another file"
    );
    // Opened again: the same copy, not a second download.
    let out = hearth(&bob, &["open", &id, "--with", "true"]).await;
    assert_success(&out, "open again");
    let copies = std::fs::read_dir(bob.join("files")).unwrap().count();
    assert_eq!(copies, 1, "{}", copy.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_send_file_or_save_goes_on_when_run_again() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    // The commands below run in their own processes, which the agents would refuse.
    assert_success(&hearth(&alice, &["lock"]).await, "lock");
    assert_success(&hearth(&bob, &["lock"]).await, "lock");
    let bytes = content(40 * 1024 * 1024);
    let src = env.dir.path().join("holiday.mp4");
    std::fs::write(&src, &bytes).unwrap();

    // Killed once the relay holds a few MiB of it.
    let blobs = env.dir.path().join("relay").join("blobs");
    let mut sending = own_process(&alice, &["send-file", "family", src.to_str().unwrap()]);
    until("the upload to begin", || {
        parts(&blobs).iter().any(|(_, len)| *len > 4 * 1024 * 1024)
    })
    .await;
    sending.kill().await.unwrap();
    assert_eq!(parts(&blobs).len(), 1);

    let out = own_process(&alice, &["send-file", "family", src.to_str().unwrap()])
        .wait_with_output()
        .await
        .unwrap();
    assert_success(&out, "send-file again");
    assert!(
        stdout(&out).contains("(resumed: the relay already held"),
        "{}",
        stdout(&out)
    );
    assert!(parts(&blobs).is_empty());
    let held: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .flat_map(|room| std::fs::read_dir(room.unwrap().path()).unwrap())
        .collect();
    assert_eq!(held.len(), 1, "the file is held once");

    // The same for saving: killed once a few MiB are written, then run again.
    let id = last_file_id(&bob, "family").await;
    assert_success(&hearth(&bob, &["lock"]).await, "lock");
    let into = env.dir.path().join("downloads");
    std::fs::create_dir_all(&into).unwrap();
    let mut saving = own_process(&bob, &["save", &id, into.to_str().unwrap()]);
    until("the download to begin", || {
        parts(&into).iter().any(|(_, len)| *len > 4 * 1024 * 1024)
    })
    .await;
    saving.kill().await.unwrap();
    let out = own_process(&bob, &["save", &id, into.to_str().unwrap()])
        .wait_with_output()
        .await
        .unwrap();
    assert_success(&out, "save again");
    assert!(
        stdout(&out).contains("(resumed after the"),
        "{}",
        stdout(&out)
    );
    assert!(
        std::fs::read(into.join("holiday.mp4")).unwrap() == bytes,
        "not byte-identical"
    );
    assert!(parts(&into).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_does_not_hand_a_launcher_to_the_desktop() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    // A "PDF" that a desktop would run: a .desktop launcher.
    let src = env.dir.path().join("invoice.pdf.desktop");
    std::fs::write(
        &src,
        "[Desktop Entry]\nType=Application\nExec=sh -c 'touch pwned'\n",
    )
    .unwrap();
    assert_success(
        &hearth(&alice, &["send-file", "family", src.to_str().unwrap()]).await,
        "send-file",
    );
    let id = last_file_id(&bob, "family").await;
    let out = hearth(&bob, &["open", &id]).await;
    assert!(!out.status.success(), "{}", stdout(&out));
    let said = common::stderr(&out);
    assert!(
        said.contains("would run as a program (.desktop)")
            && said.contains(&format!("hearth open {id} --with PROGRAM")),
        "{said}"
    );
    // A program named by the user is the way round.
    assert_success(
        &hearth(&bob, &["open", &id, "--with", "true"]).await,
        "open --with",
    );
}
