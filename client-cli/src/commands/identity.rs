//! Identity commands: init, whoami, fingerprint, passphrase, rotate-key.

use anyhow::{bail, Context, Result};
use hearth_core::{Client, Profile};
use hearth_protocol::Invite;
use serde_json::json;

use crate::cli::{GlobalArgs, InitArgs};
use crate::error::UsageError;
use crate::passphrase::{self, Purpose};
use crate::session;

/// `hearth init`: create the identity, register, print the fingerprint.
pub async fn init(global: &GlobalArgs, args: &InitArgs) -> Result<()> {
    let invite: Invite = args
        .invite
        .parse()
        .map_err(|err| UsageError(format!("{err}")))?;
    let handle = session::parse_handle(&args.name)?;
    let dir = session::profile_dir(global);
    if Profile::exists(&dir) {
        bail!(
            "a profile already exists in {}: use it, or choose another directory with --profile DIR",
            dir.display()
        );
    }
    let passphrase = passphrase::read(
        global.passphrase_file.as_deref(),
        passphrase::PASSPHRASE_ENV,
        Purpose::Choose,
    )?;
    if !global.json {
        errln!("Creating your identity in {} ...", dir.display());
    }
    if let Some(warning) = session::fast_kdf_warning("profile") {
        errln!("{warning}");
    }
    let profile = Profile::create(&dir, &passphrase, handle.clone(), invite.relay.clone())
        .with_context(|| format!("cannot create a profile in {}", dir.display()))?;
    let fingerprint = profile.fingerprint();
    if !global.json {
        errln!("Registering as {handle} on {} ...", invite.relay);
    }
    let client = match Client::register(profile, &invite).await {
        Ok(client) => client,
        Err(err) => {
            // Nothing was registered: remove the fresh profile so `init` can simply be retried.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err).context(
                "registration failed; nothing was kept, fix the cause and run init again",
            );
        }
    };
    client.close().await;
    if global.json {
        outln!(
            "{}",
            json!({"handle": handle.as_str(), "relay": invite.relay.to_string(), "fingerprint": fingerprint.to_string(), "profile": dir.display().to_string()})
        );
    } else {
        outln!("Welcome, {handle}! You are registered on {}.", invite.relay);
        outln!();
        outln!("Your fingerprint (compare it in person with your family):");
        outln!("  {fingerprint}");
        outln!();
        outln!("Next: `hearth room create NAME`, or wait for an invitation and `hearth chat`.");
    }
    Ok(())
}

/// `hearth whoami`.
pub fn whoami(global: &GlobalArgs) -> Result<()> {
    let profile = session::profile(global)?;
    if global.json {
        outln!(
            "{}",
            json!({"handle": profile.handle().as_str(), "relay": profile.relay().to_string(), "fingerprint": profile.fingerprint().to_string(), "profile": profile.dir().display().to_string()})
        );
    } else {
        outln!("handle:      {}", profile.handle());
        outln!("relay:       {}", profile.relay());
        outln!("fingerprint: {}", profile.fingerprint());
        outln!("profile:     {}", profile.dir().display());
    }
    Ok(())
}

/// `hearth fingerprint`: digits and a QR code.
pub fn fingerprint(global: &GlobalArgs) -> Result<()> {
    let profile = session::profile(global)?;
    let fingerprint = profile.fingerprint();
    if global.json {
        outln!(
            "{}",
            json!({"handle": profile.handle().as_str(), "fingerprint": fingerprint.to_string()})
        );
        return Ok(());
    }
    outln!("Fingerprint of {}:", profile.handle());
    outln!("  {fingerprint}");
    outln!();
    outln!("{}", qr(&fingerprint.digits()));
    outln!("Compare these digits in person; a match means the key is really theirs.");
    Ok(())
}

/// `hearth passphrase`: re-wraps the store key under a new passphrase.
pub fn change_passphrase(global: &GlobalArgs) -> Result<()> {
    let profile = session::open_profile(global)?;
    let new = passphrase::read(None, passphrase::NEW_PASSPHRASE_ENV, Purpose::Choose)?;
    profile
        .change_passphrase(&new)
        .context("cannot change the passphrase; the old one still works")?;
    outln!("Passphrase changed.");
    if let Some(warning) = session::weak_passphrase_protection(&profile) {
        errln!("{warning}");
    }
    Ok(())
}

/// A QR code drawn with half-block characters.
/// `hearth rotate-key`: move this profile to a new identity key.
pub async fn rotate_key(global: &GlobalArgs, yes: bool) -> Result<()> {
    if !yes {
        if global.json || !crate::console::is_terminal() {
            return Err(UsageError(
                "rotating the key cannot be undone: add --yes to confirm".into(),
            )
            .into());
        }
        if !session::confirm(
            "Move to a new identity key? Everyone who verified you will have to compare again.",
        )
        .await?
        {
            outln!("Nothing changed.");
            return Ok(());
        }
    }
    let client = session::connect(global).await?;
    let result = client.rotate_key().await;
    client.close().await;
    let report = result.context("the key rotation did not happen (nothing was lost)")?;
    let old = hearth_core::fingerprint(&report.old);
    let new = hearth_core::fingerprint(&report.new);
    if global.json {
        outln!(
            "{}",
            json!({"old_fingerprint": old.to_string(), "fingerprint": new.to_string(), "rooms_moved": report.rooms_moved, "rooms_left": report.rooms_left})
        );
        return Ok(());
    }
    outln!("Your new identity key: {new} (was {old}).");
    outln!(
        "{} room(s) moved to it; the relay refuses the old key from now on.",
        report.rooms_moved
    );
    if report.rooms_left > 0 {
        outln!(
            "{} room(s) could not be reached now; they move the next time hearth connects.",
            report.rooms_left
        );
    }
    outln!(
        "Backups made before this hold the old key: make a new one with `hearth export-backup`."
    );
    Ok(())
}

/// A QR code of `data` in half-block characters, with its quiet zone. On a terminal
/// (and unless NO_COLOR is set) it is drawn black on white whatever the terminal's
/// theme: drawn in the theme's own colours, a dark theme shows it inverted, which many
/// phone scanners do not read.
pub(crate) fn qr(data: &str) -> String {
    let Ok(code) = qrcode::QrCode::new(data.as_bytes()) else {
        return String::new();
    };
    let drawn = code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build();
    let colour = crate::console::is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if !colour {
        return drawn;
    }
    drawn
        .lines()
        .map(|line| format!("{BLACK_ON_WHITE}{line}{RESET}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Black foreground (the dark modules) on a bright white background (the light ones).
const BLACK_ON_WHITE: &str = "\x1b[30;107m";
/// Back to the terminal's own colours.
const RESET: &str = "\x1b[0m";
