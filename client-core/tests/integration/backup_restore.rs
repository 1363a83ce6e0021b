//! Moving a profile to a new machine with an encrypted backup, against a real relay.

use crate::common;

use common::{h, Relay};
use hearth_core::backup::{export_backup, import_backup, BackupError};
use hearth_core::{Client, ClientError, ClientEvent, Profile};

const BACKUP_PASS: &str = "backup passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_profile_catches_up_self_updates_and_keeps_talking() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;

    let room = common::room_with(&alice, &[&bob], "Family").await;
    alice.c().send_text(room, "one").await.unwrap();
    bob.wait_text("one").await;
    alice.c().mark_verified(&h("bob"), true).await.unwrap();

    let file = relay.dir.path().join("alice.backup");
    export_backup(alice.c().profile(), &file, BACKUP_PASS).unwrap();
    let exported_epoch = alice.c().rooms().await.unwrap()[0].epoch;

    // The old machine keeps going for a moment after the export (its sender ratchet
    // moves past the backup's), then stops for good.
    alice
        .c()
        .send_text(room, "from the old machine")
        .await
        .unwrap();
    bob.wait_text("from the old machine").await;
    alice.client.take().unwrap().close().await;
    bob.c().send_text(room, "while you moved").await.unwrap();

    // A wrong passphrase and a damaged file are refused, and leave nothing behind.
    let target = relay.profile_dir("alice-new");
    let err = import_backup(&file, "not the passphrase", &target).unwrap_err();
    assert!(matches!(err, BackupError::WrongPassphrase), "{err:?}");
    assert!(err.to_string().contains("wrong backup passphrase"), "{err}");
    let damaged = relay.dir.path().join("damaged.backup");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    let err = import_backup(&damaged, BACKUP_PASS, &target).unwrap_err();
    assert!(matches!(err, BackupError::Damaged(_)), "{err:?}");
    assert!(!Profile::exists(&target));

    let profile = import_backup(&file, BACKUP_PASS, &target).unwrap();
    assert_eq!(profile.handle(), &h("alice"));
    let restored = Client::connect(profile).await.unwrap();

    // Caught up on what bob sent meanwhile, and moved the room to a fresh epoch.
    let texts: Vec<String> = restored
        .history(room, 100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(texts.contains(&"while you moved".to_string()), "{texts:?}");
    let rooms = restored.rooms().await.unwrap();
    assert!(
        rooms[0].epoch > exported_epoch,
        "epoch {} after the restore, {exported_epoch} in the backup",
        rooms[0].epoch
    );
    assert!(restored.rooms_needing_reinvite().unwrap().is_empty());
    // Contacts and verification came along.
    assert!(restored
        .contact(&h("bob"))
        .await
        .unwrap()
        .unwrap()
        .is_verified());

    // Without the self-update this would reuse a ratchet position the old machine
    // already used, and bob would refuse it.
    restored.send_text(room, "back again").await.unwrap();
    bob.wait_text("back again").await;
    bob.c().send_text(room, "welcome back").await.unwrap();
    let mut events = restored.events();
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(event) = events.recv().await {
            if matches!(&event, ClientEvent::Message(m) if m.text == "welcome back") {
                return;
            }
        }
    })
    .await
    .expect("the restored profile receives bob's reply");
    bob.c().sync().await.unwrap();
    assert_eq!(
        bob.c().rooms().await.unwrap()[0].epoch,
        restored.rooms().await.unwrap()[0].epoch
    );

    // A second connection does not self-update again.
    let epoch = restored.rooms().await.unwrap()[0].epoch;
    restored.close().await;
    let again = Client::connect(Profile::open(&target, BACKUP_PASS).unwrap())
        .await
        .unwrap();
    assert_eq!(again.rooms().await.unwrap()[0].epoch, epoch);
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_the_backup_cannot_follow_needs_a_reinvite() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let _carol = relay.user("carol").await;

    let room = common::room_with(&alice, &[&bob], "Family").await;

    let file = relay.dir.path().join("alice.backup");
    export_backup(alice.c().profile(), &file, BACKUP_PASS).unwrap();
    // The old machine commits after the export: the backup's epoch ends in a commit of
    // our own leaf that the restored state cannot process.
    alice.c().invite(room, &h("carol")).await.unwrap();
    alice.c().send_text(room, "carol is here").await.unwrap();
    bob.wait_text("carol is here").await;
    alice.client.take().unwrap().close().await;

    let target = relay.profile_dir("alice-new");
    let profile = import_backup(&file, BACKUP_PASS, &target).unwrap();
    // Connecting works; the room is reported, not a panic or a failed connection.
    let restored = Client::connect(profile).await.unwrap();
    assert_eq!(restored.rooms_needing_reinvite().unwrap(), vec![room]);
    let err = restored.send_text(room, "hello?").await.unwrap_err();
    assert!(
        matches!(err, ClientError::NeedsReinvite(ref r) if r.id == room),
        "{err:?}"
    );
    assert!(err.to_string().contains("invite you again"), "{err}");
    restored.close().await;
}
