//! `hearth contacts`, `hearth verify NICK`, `hearth trust NICK`: the keys you know, and
//! your decisions about them.

use anyhow::{bail, Context, Result};
use hearth_core::contacts::{load_all, Contact, TrustState};
use hearth_core::safety_number;
use serde_json::json;

use super::identity::qr;
use crate::cli::GlobalArgs;
use crate::inert::inert;
use crate::output;
use crate::session;

/// Keys are pinned on first sight; said plainly wherever contacts are shown.
const TOFU_NOTE: &str = "Keys are trusted the first time hearth sees them (trust on first use). \
Only comparing safety numbers in person (`hearth verify NICK`) proves a key is really theirs.";

/// The state as one word, for text and JSON.
fn state_word(contact: &Contact) -> &'static str {
    match contact.state {
        TrustState::Trusted => "trusted",
        TrustState::Verified => "verified",
        TrustState::Changed { .. } => "changed",
    }
}

/// `hearth contacts`: works offline, from the profile alone.
pub fn contacts(global: &GlobalArgs) -> Result<()> {
    let profile = session::profile(global)?;
    let contacts = load_all(profile.store())?;
    if global.json {
        for c in &contacts {
            outln!(
                "{}",
                json!({
                    "handle": c.handle.as_str(),
                    "fingerprint": c.fingerprint.to_string(),
                    "state": state_word(c),
                    "verified": c.is_verified(),
                    "first_seen": output::timestamp(c.first_seen),
                })
            );
        }
        return Ok(());
    }
    if contacts.is_empty() {
        outln!("No contacts yet: people are added when you first share a room with them.");
    }
    for c in &contacts {
        let note = match c.state {
            TrustState::Verified => "verified".to_string(),
            TrustState::Trusted => "not verified (trusted on first use)".to_string(),
            TrustState::Changed { .. } => format!(
                "KEY CHANGED: compare safety numbers (hearth verify {0}) or accept it (hearth trust {0})",
                c.handle
            ),
        };
        outln!("{:<16} {}  {note}", c.handle.as_str(), c.fingerprint);
    }
    outln!();
    outln!("{TOFU_NOTE}");
    Ok(())
}

/// `hearth verify NICK [--yes|--no]`: shows the safety number and records the answer.
pub async fn verify(global: &GlobalArgs, nick: &str, answer: Option<bool>) -> Result<()> {
    let handle = session::parse_handle(nick)?;
    let client = session::connect(global).await?;
    let result = async {
        if &handle == client.profile().handle() {
            bail!(crate::error::UsageError(
                "that is you: verify someone else, and show them `hearth fingerprint`".into()
            ));
        }
        let Some(contact) = client.contact(&handle).await? else {
            bail!("no user named {handle} on this relay: check the spelling (`hearth room members ROOM` lists handles)");
        };
        let number = safety_number(&client.profile().account(), &contact.account);
        if !global.json {
            if contact.is_changed() {
                if client
                    .key_change_is_signed_rotation(&handle)
                    .await
                    .unwrap_or(false)
                {
                    outln!("!! {handle} moved to a new identity key, signed by the old one (hearth rotate-key). Whoever held the old key could have done that: compare the new safety number in person.");
                } else {
                    outln!("!! {handle}'s identity key CHANGED since you first saw it. If they did not set up hearth again, someone may be impersonating them.");
                }
                outln!();
            }
            outln!("Safety number with {handle}:");
            outln!("  {number}");
            outln!();
            outln!("{}", qr(&number.digits()));
            outln!("{handle} sees the same number on their device (hearth verify {}). Compare them in person.", client.profile().handle());
            // The rooms you share: the same code at the same epoch means the same room.
            let shared: Vec<_> = client
                .rooms()
                .await?
                .into_iter()
                .filter(|r| r.members.contains(&handle))
                .collect();
            if !shared.is_empty() {
                outln!();
                outln!("Rooms you share, to compare too (same epoch, same code):");
                for room in shared {
                    let code = client.room_code(room.id).await?;
                    outln!(
                        "  {:<24} epoch {:<4} {code}",
                        inert(&room.name),
                        code.epoch
                    );
                }
            }
        }
        let answer = match answer {
            Some(answer) => Some(answer),
            None if !global.json && crate::console::is_terminal() => Some(ask_match().await?),
            None => None,
        };
        if let Some(matched) = answer {
            client
                .mark_verified(&handle, matched)
                .await
                .context("cannot store the answer")?;
        }
        let state = client
            .contact(&handle)
            .await?
            .map(|c| state_word(&c))
            .unwrap_or("unknown");
        if global.json {
            outln!(
                "{}",
                json!({"handle": handle.as_str(), "safety_number": number.to_string(), "matched": answer, "state": state})
            );
            return Ok(());
        }
        match answer {
            Some(true) => outln!("Marked {handle} as verified."),
            Some(false) => outln!(
                "Not verified. If the numbers really differ, do not trust messages from {handle} until you have found out why{}.",
                if contact.is_changed() {
                    "; sending to them stays blocked"
                } else {
                    ""
                }
            ),
            None => outln!(
                "Nothing recorded: run `hearth verify {handle} --yes` (or --no) once you have compared."
            ),
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

/// Asks "Do the numbers match? [y/N]" on the terminal.
async fn ask_match() -> Result<bool> {
    session::confirm("Do the numbers match?").await
}

/// `hearth trust NICK`: accepts the key someone presents now.
pub async fn trust(global: &GlobalArgs, nick: &str) -> Result<()> {
    let handle = session::parse_handle(nick)?;
    let client = session::connect(global).await?;
    let result = async {
        let before = client.contact(&handle).await?;
        let Some(before) = before else {
            bail!("no user named {handle} on this relay: check the spelling");
        };
        client.trust(&handle).await?;
        let after = client
            .contact(&handle)
            .await?
            .context("the contact disappeared")?;
        if global.json {
            outln!(
                "{}",
                json!({"handle": handle.as_str(), "fingerprint": after.fingerprint.to_string(), "state": state_word(&after), "was_changed": before.is_changed()})
            );
        } else if before.is_changed() {
            outln!("Accepted {handle}'s new key ({}). Sending to {handle} works again.", after.fingerprint);
            outln!("It is not verified: compare safety numbers in person with `hearth verify {handle}`.");
        } else {
            outln!(
                "{handle}'s key ({}) is already accepted ({}); nothing changed.",
                after.fingerprint,
                state_word(&after)
            );
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}
