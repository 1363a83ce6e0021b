//! Where the passphrase comes from: a file, the environment, or the terminal.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

/// Environment variable scripts may use to pass the passphrase.
pub const PASSPHRASE_ENV: &str = "HEARTH_PASSPHRASE";

/// Environment variable scripts may use to pass a new passphrase to `hearth passphrase`.
pub const NEW_PASSPHRASE_ENV: &str = "HEARTH_NEW_PASSPHRASE";

/// Environment variable scripts may use to pass the passphrase of a backup file.
pub const BACKUP_PASSPHRASE_ENV: &str = "HEARTH_BACKUP_PASSPHRASE";

/// Reads the passphrase of a backup file from [`BACKUP_PASSPHRASE_ENV`], else the
/// terminal (asked twice when `choose`, i.e. when making a backup).
pub fn read_backup(choose: bool) -> Result<Zeroizing<String>> {
    let purpose = if choose {
        Purpose::Choose
    } else {
        Purpose::Unlock
    };
    if let Ok(value) = std::env::var(BACKUP_PASSPHRASE_ENV) {
        return check(Zeroizing::new(value), purpose);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no backup passphrase given: set {BACKUP_PASSPHRASE_ENV} when not on a terminal");
    }
    if !choose {
        let value = Zeroizing::new(rpassword::prompt_password("Backup passphrase: ")?);
        return check(value, purpose);
    }
    let first = Zeroizing::new(rpassword::prompt_password(
        "Passphrase for the backup (needed to restore it): ",
    )?);
    let second = Zeroizing::new(rpassword::prompt_password("Repeat it: ")?);
    if first != second {
        bail!("the two passphrases differ: no backup was written, try again");
    }
    check(first, purpose)
}

/// Why the passphrase is asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Unlock an existing profile.
    Unlock,
    /// Choose a new passphrase (asked twice on a terminal).
    Choose,
}

/// Reads a passphrase from `file` (first line), else the environment variable `env`, else
/// the terminal.
pub fn read(file: Option<&Path>, env: &str, purpose: Purpose) -> Result<Zeroizing<String>> {
    if let Some(path) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the passphrase file {}", path.display()))?,
        );
        let line = Zeroizing::new(text.lines().next().unwrap_or("").to_string());
        return check(line, purpose);
    }
    if let Ok(value) = std::env::var(env) {
        return check(Zeroizing::new(value), purpose);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no passphrase given: use --passphrase-file FILE or set {env} when not on a terminal"
        );
    }
    match purpose {
        Purpose::Unlock => {
            let value = Zeroizing::new(rpassword::prompt_password("Passphrase: ")?);
            check(value, purpose)
        }
        Purpose::Choose => {
            let first = Zeroizing::new(rpassword::prompt_password("New passphrase: ")?);
            let second = Zeroizing::new(rpassword::prompt_password("Repeat it: ")?);
            if first != second {
                bail!("the two passphrases differ: nothing was changed, try again");
            }
            check(first, purpose)
        }
    }
}

/// Rejects passphrases that protect nothing.
fn check(value: Zeroizing<String>, purpose: Purpose) -> Result<Zeroizing<String>> {
    if purpose == Purpose::Choose && value.chars().count() < 8 {
        bail!("the passphrase is too short: use at least 8 characters (a few words work well)");
    }
    if value.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(value)
}
