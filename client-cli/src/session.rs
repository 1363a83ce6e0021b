//! Opening the profile and connecting to the relay, shared by every command.

use std::path::PathBuf;

use anyhow::{Context, Result};
use hearth_core::{Client, Profile};
use hearth_protocol::{Handle, RoomId};

use crate::cli::GlobalArgs;
use crate::error::UsageError;
use crate::passphrase::{self, Purpose};

/// The profile directory in use.
pub fn profile_dir(global: &GlobalArgs) -> PathBuf {
    global.profile.clone().unwrap_or_else(Profile::default_dir)
}

/// Unlocks the profile with the passphrase.
pub fn open_profile(global: &GlobalArgs) -> Result<Profile> {
    let dir = profile_dir(global);
    if !Profile::exists(&dir) {
        anyhow::bail!(
            "no profile in {}: create one with `hearth init --invite <INVITE> --name <HANDLE>`, or pass --profile DIR",
            dir.display()
        );
    }
    let passphrase = passphrase::read(
        global.passphrase_file.as_deref(),
        passphrase::PASSPHRASE_ENV,
        Purpose::Unlock,
    )?;
    Profile::open(&dir, &passphrase)
        .with_context(|| format!("cannot open the profile in {}", dir.display()))
}

/// Unlocks the profile, connects to its relay and catches up.
pub async fn connect(global: &GlobalArgs) -> Result<Client> {
    let profile = open_profile(global)?;
    let relay = profile.relay().to_string();
    let client = Client::connect(profile)
        .await
        .with_context(|| format!("cannot connect to the relay {relay}"))?;
    client
        .sync()
        .await
        .context("cannot catch up with the relay")?;
    Ok(client)
}

/// Parses a handle typed by the user.
pub fn parse_handle(text: &str) -> Result<Handle> {
    let text = text.trim_start_matches('@');
    Handle::new(text).map_err(|err| UsageError(err.to_string()).into())
}

/// Resolves a room typed by the user (name or id prefix) among the user's rooms.
pub async fn resolve_room(client: &Client, text: &str) -> Result<RoomId> {
    client.find_room(text).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "no room called {text:?}: `hearth room list` shows your rooms and invitations"
        )
    })
}

/// How a room was joined by [`join`].
pub enum Joined {
    /// An invitation from `from` was accepted.
    Invitation {
        /// Who invited us.
        from: Handle,
    },
    /// A public room was joined without an invitation.
    Public,
    /// We were already a member.
    AlreadyMember,
}

/// Joins the room the user named: a pending invitation first, else a public room listed on
/// the relay under that name, else one of our rooms. Returns the room, its name and how.
pub async fn join(client: &Client, text: &str) -> Result<(RoomId, String, Joined)> {
    let wanted = text.to_lowercase();
    let matches = |name: &str, room: &RoomId| {
        name.to_lowercase() == wanted || (wanted.len() >= 4 && room.to_hex().starts_with(&wanted))
    };
    let mut invitations: Vec<_> = client
        .invitations()
        .await?
        .into_iter()
        .filter(|inv| matches(&inv.name, &inv.room))
        .collect();
    if invitations.len() > 1 {
        let ids: Vec<String> = invitations
            .iter()
            .map(|inv| inv.room.to_hex()[..8].to_string())
            .collect();
        anyhow::bail!(
            "{} invitations match {:?}: name the one you mean by its id ({})",
            ids.len(),
            crate::inert::inert(text),
            ids.join(", ")
        );
    }
    if let Some(inv) = invitations.pop() {
        client.accept_invitation(inv.room).await?;
        return Ok((inv.room, inv.name, Joined::Invitation { from: inv.from }));
    }
    if let Some(room) = client.find_room(text).await? {
        return Ok((room, text.to_string(), Joined::AlreadyMember));
    }
    let public = client.public_rooms().await?;
    if let Some(listed) = public
        .into_iter()
        .find(|p| matches(&p.public_name, &p.room))
    {
        client.join_public(listed.room).await?;
        return Ok((listed.room, listed.public_name, Joined::Public));
    }
    anyhow::bail!(
        "no invitation to {text:?} and no public room of that name: `hearth room list` shows both"
    )
}

/// Asks `question` with ` [y/N] ` on the terminal; true only for y or yes.
pub fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, Write};
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}
