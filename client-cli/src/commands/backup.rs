//! `hearth export-backup FILE` and `hearth import-backup FILE`: moving a profile to a new
//! machine.

use std::path::Path;

use anyhow::{bail, Context, Result};
use hearth_core::attachment::human_size;
use hearth_core::backup::{export_backup_with, import_backup, FILES_DIR};
use hearth_core::{Client, Profile};
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::inert::inert;
use crate::passphrase::{self, Purpose};
use crate::session;

/// What the user must know after a restore.
const OLD_COPY_WARNING: &str = "This profile now continues on this machine. Stop using the copy on the old machine: \
delete it (its profile directory) or at least never start hearth with it again. Both copies \
share one identity, and a message sent from the old copy could reuse encryption keys this one uses.";

/// `hearth export-backup FILE [--files]`.
pub fn export(global: &GlobalArgs, file: &Path, files: bool) -> Result<()> {
    if file.exists() {
        bail!(crate::error::UsageError(format!(
            "{} already exists: choose a new file name",
            file.display()
        )));
    }
    let profile = session::open_profile(global)?;
    let backup_passphrase = passphrase::read_backup(true)?;
    let saved = export_backup_with(&profile, file, &backup_passphrase, files)
        .with_context(|| format!("cannot write the backup to {}", file.display()))?;
    if let Some(warning) = session::fast_kdf_warning("backup") {
        errln!("{warning}");
    }
    if global.json {
        outln!(
            "{}",
            json!({"backup": file.display().to_string(), "handle": profile.handle().as_str(),
                "downloaded_files": saved.count, "downloaded_bytes": saved.bytes, "files_included": saved.included})
        );
    } else {
        outln!(
            "Backup of {} written to {} (encrypted with the backup passphrase).",
            profile.handle(),
            file.display()
        );
        let downloaded = profile.dir().join(FILES_DIR);
        match (saved.count, saved.included) {
            (0, _) => outln!("Downloaded files: none in {}.", downloaded.display()),
            (n, true) => outln!(
                "Downloaded files: included ({n}, {}, from {}).",
                human_size(saved.bytes),
                downloaded.display()
            ),
            (n, false) => outln!(
                "Downloaded files: not included ({n}, {}, in {}); add --files to include them.",
                human_size(saved.bytes),
                downloaded.display()
            ),
        }
        outln!(
            "It holds your identity key: keep it somewhere safe, and do not forget its passphrase."
        );
        outln!(
            "To move to a new machine: `hearth import-backup {}` there, then stop using this one.",
            file.display()
        );
    }
    Ok(())
}

/// `hearth import-backup FILE`: restore into the profile directory, set the profile's
/// passphrase, then connect once so every room catches up and starts a fresh epoch.
pub async fn import(global: &GlobalArgs, file: &Path) -> Result<()> {
    let dir = session::profile_dir(global);
    if Profile::exists(&dir) {
        bail!(
            "a profile already exists in {}: restore into a new directory with --profile DIR",
            dir.display()
        );
    }
    if !file.is_file() {
        bail!(crate::error::UsageError(format!(
            "no backup file at {}",
            file.display()
        )));
    }
    let backup_passphrase = passphrase::read_backup(false)?;
    let profile = import_backup(file, &backup_passphrase, &dir)
        .with_context(|| format!("cannot restore {}", file.display()))?;
    // The profile's own passphrase: the usual one (file, environment or asked), so the
    // backup passphrase is not left protecting the everyday store.
    let profile_passphrase = passphrase::read(
        global.passphrase_file.as_deref(),
        passphrase::PASSPHRASE_ENV,
        Purpose::Choose,
    )
    .context("the backup was restored, but choosing the profile passphrase failed; it is the backup passphrase for now (change it with `hearth passphrase`)")?;
    profile
        .change_passphrase(&profile_passphrase)
        .context("the backup was restored, but setting the profile passphrase failed; it is the backup passphrase for now")?;
    let handle = profile.handle().clone();
    let relay = profile.relay().to_string();
    if !global.json {
        errln!(
            "Restored {handle} into {}. Connecting to {relay} to catch up ...",
            dir.display()
        );
    }
    // Catching up and the self-update of every room happen inside connect.
    let outcome = match Client::connect(profile).await {
        Ok(client) => {
            let stuck = client.rooms_needing_reinvite()?;
            let mut names = Vec::new();
            for room in client.rooms().await? {
                if stuck.contains(&room.id) {
                    names.push(room.name);
                }
            }
            client.close().await;
            Ok(names)
        }
        Err(err) => Err(err),
    };
    if global.json {
        let (connected, stuck) = match &outcome {
            Ok(names) => (true, names.clone()),
            Err(_) => (false, Vec::new()),
        };
        outln!(
            "{}",
            json!({"handle": handle.as_str(), "profile": dir.display().to_string(), "connected": connected, "rooms_needing_reinvite": stuck, "notice": OLD_COPY_WARNING})
        );
        return Ok(());
    }
    match outcome {
        Ok(stuck) => {
            outln!("Welcome back, {handle}: your rooms, contacts and history are here.");
            for name in stuck {
                outln!("!! Room {} moved on too far for this backup: ask one of its admins to remove you from it and invite you again.", inert(&name));
            }
        }
        Err(err) => {
            outln!(
                "Restored {handle}, but the relay could not be reached ({}).",
                inert(&err.to_string())
            );
            outln!("Your rooms catch up and renew their keys the next time hearth connects, before anything is sent.");
        }
    }
    outln!();
    outln!("{OLD_COPY_WARNING}");
    Ok(())
}
