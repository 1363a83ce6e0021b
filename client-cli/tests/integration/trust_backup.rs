//! `hearth contacts`, `verify`, `trust`, `export-backup` and `import-backup` against a
//! real relay.

use crate::common;

use common::{assert_success, hearth, hearth_with, json_lines, stderr, stdout, Env, PASSPHRASE};

const BACKUP_PASS: &str = "a different backup passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_contacts_and_moving_to_a_new_machine() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;

    // Pinned on first use, not verified yet.
    let out = hearth(&alice, &["--json", "contacts"]).await;
    assert_success(&out, "contacts");
    let contacts = json_lines(&out);
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0]["handle"], "bob");
    assert_eq!(contacts[0]["state"], "trusted");
    assert_eq!(contacts[0]["verified"], false);
    let out = hearth(&alice, &["contacts"]).await;
    assert!(
        stdout(&out).contains("trust on first use"),
        "{}",
        stdout(&out)
    );

    // Both sides see the same safety number; alice records that it matched.
    let out = hearth(&alice, &["--json", "verify", "bob", "--yes"]).await;
    assert_success(&out, "verify --yes");
    let at_alice = json_lines(&out).remove(0);
    assert_eq!(at_alice["matched"], true);
    assert_eq!(at_alice["state"], "verified");
    let out = hearth(&bob, &["--json", "verify", "alice"]).await;
    assert_success(&out, "verify without an answer");
    let at_bob = json_lines(&out).remove(0);
    assert_eq!(at_bob["safety_number"], at_alice["safety_number"]);
    assert!(at_bob["matched"].is_null(), "nothing recorded: {at_bob}");
    let out = hearth(&alice, &["verify", "bob"]).await;
    assert_success(&out, "verify text");
    assert!(stdout(&out).contains("Safety number with bob"));
    let out = hearth(&alice, &["--json", "contacts"]).await;
    assert_eq!(json_lines(&out)[0]["verified"], true);

    let out = hearth(&alice, &["verify", "bob", "--yes", "--no"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "conflicting answers are a usage error"
    );
    let out = hearth(&alice, &["trust", "nobody"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no user named nobody"),
        "{}",
        stderr(&out)
    );
    let out = hearth(&alice, &["--json", "trust", "bob"]).await;
    assert_success(&out, "trust of an unchanged key");
    assert_eq!(json_lines(&out)[0]["was_changed"], false);

    // Export, then the old machine stops; bob keeps talking meanwhile.
    let file = env.dir.path().join("alice.hearth-backup");
    let file_arg = file.to_str().unwrap();
    let backup_env = [
        ("HEARTH_PASSPHRASE", PASSPHRASE),
        ("HEARTH_BACKUP_PASSPHRASE", BACKUP_PASS),
    ];
    let out = hearth_with(&alice, &["export-backup", file_arg], &backup_env).await;
    assert_success(&out, "export-backup");
    assert!(file.is_file());
    assert!(
        stderr(&out).contains("HEARTH_TEST_FAST_KDF=1 is set"),
        "a backup with test KDF parameters is not weak in silence: {}",
        stderr(&out)
    );
    let out = hearth_with(&alice, &["export-backup", file_arg], &backup_env).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "an existing file is not overwritten"
    );
    assert_success(
        &hearth(&bob, &["send", "family", "while you moved"]).await,
        "send",
    );

    // A wrong backup passphrase is refused and leaves no profile behind.
    let moved = env.profile("alice-new-machine");
    let out = hearth_with(
        &moved,
        &["import-backup", file_arg],
        &[
            ("HEARTH_PASSPHRASE", PASSPHRASE),
            ("HEARTH_BACKUP_PASSPHRASE", "not the passphrase"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wrong backup passphrase"),
        "{}",
        stderr(&out)
    );
    assert!(!moved.join("profile.redb").exists());

    let out = hearth_with(&moved, &["import-backup", file_arg], &backup_env).await;
    assert_success(&out, "import-backup");
    let text = stdout(&out);
    assert!(
        text.contains("Stop using the copy on the old machine"),
        "{text}"
    );

    // The restored profile opens with the usual passphrase, caught up and talking.
    let out = hearth(&moved, &["--json", "history", "family", "-n", "50"]).await;
    assert_success(&out, "history");
    assert!(
        json_lines(&out)
            .iter()
            .any(|m| m["text"] == "while you moved"),
        "{}",
        stdout(&out)
    );
    assert_success(
        &hearth(&moved, &["send", "family", "hello from the new machine"]).await,
        "send after restore",
    );
    let out = hearth(&bob, &["--json", "read", "family"]).await;
    assert_success(&out, "read");
    assert!(json_lines(&out)
        .iter()
        .any(|m| m["sender"] == "alice" && m["text"] == "hello from the new machine"));
    let out = hearth(&moved, &["--json", "contacts"]).await;
    assert_eq!(
        json_lines(&out)[0]["verified"],
        true,
        "verification came along"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_moves_to_a_new_key_that_others_follow() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    common::room_with(&alice, "family", &[&bob]).await;
    assert_success(&hearth(&bob, &["verify", "alice", "--yes"]).await, "verify");
    let before = json_lines(&hearth(&alice, &["--json", "whoami"]).await).remove(0);

    // Without a terminal, it has to be confirmed with --yes.
    let out = hearth(&alice, &["rotate-key"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));

    let out = hearth(&alice, &["--json", "rotate-key", "--yes"]).await;
    assert_success(&out, "rotate-key");
    let report = json_lines(&out).remove(0);
    assert_eq!(report["old_fingerprint"], before["fingerprint"]);
    assert_ne!(report["fingerprint"], before["fingerprint"]);
    assert_eq!(report["rooms_moved"], 1);
    let after = json_lines(&hearth(&alice, &["--json", "whoami"]).await).remove(0);
    assert_eq!(after["fingerprint"], report["fingerprint"]);

    // Alice's messages reach bob; his verification was of the old key, so the new one
    // waits for him to compare again before he sends to her.
    assert_success(
        &hearth(&alice, &["send", "family", "same me, new key"]).await,
        "send",
    );
    let out = hearth(&bob, &["read", "family"]).await;
    assert_success(&out, "read");
    assert!(
        stdout(&out).contains("same me, new key"),
        "{}",
        stdout(&out)
    );
    // The rotation is told beside the messages (on standard error).
    assert!(
        stderr(&out).contains("alice moved to a new identity key"),
        "{}",
        stderr(&out)
    );
    let out = hearth(&bob, &["--json", "contacts"]).await;
    let contact = json_lines(&out).remove(0);
    assert_eq!(contact["handle"], "alice");
    assert_eq!(contact["fingerprint"], report["fingerprint"]);
    assert_eq!(contact["verified"], false);
    let out = hearth(&bob, &["send", "family", "welcome back"]).await;
    assert!(!out.status.success(), "blocked until bob decides");
    assert!(
        stderr(&out).contains("hearth verify alice"),
        "{}",
        stderr(&out)
    );
    let out = hearth(&bob, &["verify", "alice"]).await;
    assert!(
        stdout(&out).contains("moved to a new identity key, signed by the old one"),
        "{}",
        stdout(&out)
    );
    assert_success(&hearth(&bob, &["verify", "alice", "--yes"]).await, "verify");
    assert_success(
        &hearth(&bob, &["send", "family", "welcome back"]).await,
        "send",
    );
}
