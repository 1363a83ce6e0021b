//! Opening the profile and connecting to the relay, shared by every command.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use hearth_core::{Client, ClientEvent, Profile};
use hearth_protocol::{Handle, RoomId};
use tokio::sync::{broadcast, mpsc};

use crate::cli::GlobalArgs;
use crate::error::UsageError;
use crate::passphrase::{self, Purpose};

/// The profile directory in use.
pub fn profile_dir(global: &GlobalArgs) -> PathBuf {
    global.profile.clone().unwrap_or_else(Profile::default_dir)
}

/// The agent's client, shared by every command it runs, and its events for each of them.
#[derive(Clone)]
pub struct Shared {
    /// The client.
    pub client: Arc<Client>,
    /// Every event of the client, for each command that listens.
    pub events: broadcast::Sender<ClientEvent>,
    /// Security notices not shown by any command yet, oldest first (see
    /// [`Session::missed_notices`]).
    pub notices: Arc<std::sync::Mutex<std::collections::VecDeque<ClientEvent>>>,
}

/// The connected client one command uses: its own, closed when the command ends, or the
/// agent's ([`Shared`]), which stays.
pub struct Session {
    client: Arc<Client>,
    shared: Option<Shared>,
}

impl Deref for Session {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Session {
    /// The client's events from now on (for the agent's client, a copy for this command;
    /// one that falls more than the channel's bound behind skips the oldest).
    pub fn events(&self) -> mpsc::UnboundedReceiver<ClientEvent> {
        let Some(shared) = &self.shared else {
            return self.client.events();
        };
        let mut from = shared.events.subscribe();
        let (to, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match from.recv().await {
                    Ok(event) => {
                        if to.send(event).is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        events
    }

    /// The agent's security notices that no command has shown yet (they arrived while
    /// no chat was open); taken, so the next command does not show them again. Empty for
    /// a command's own client, whose events hold them.
    pub fn missed_notices(&self) -> Vec<ClientEvent> {
        match &self.shared {
            Some(shared) => shared
                .notices
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .drain(..)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Tells the members of our rooms that we are online; the agent already did.
    pub async fn announce_presence(&self) {
        if self.shared.is_none() {
            self.client.announce_presence().await;
        }
    }

    /// Ends the command's use of the client: closes its own, leaves the agent's.
    pub async fn close(self) {
        if self.shared.is_some() {
            return;
        }
        match Arc::try_unwrap(self.client) {
            Ok(client) => client.close().await,
            Err(client) => client.shut_down().await,
        }
    }
}

/// The unlocked profile a command uses: its own, or the agent's.
pub enum ProfileRef {
    /// Opened by this command.
    Own(Box<Profile>),
    /// The agent's.
    Agent(Arc<Client>),
}

impl Deref for ProfileRef {
    type Target = Profile;

    fn deref(&self) -> &Profile {
        match self {
            ProfileRef::Own(profile) => profile,
            ProfileRef::Agent(client) => client.profile(),
        }
    }
}

/// The profile: the agent's when the command runs inside it, else unlocked here.
pub fn profile(global: &GlobalArgs) -> Result<ProfileRef> {
    match crate::console::caller() {
        Some(caller) => Ok(ProfileRef::Agent(caller.session.client.clone())),
        None => open_profile(global).map(|p| ProfileRef::Own(Box::new(p))),
    }
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
    let opened = Profile::open(&dir, &passphrase);
    if let Ok(profile) = &opened {
        if let Some(warning) = weak_passphrase_protection(profile) {
            errln!("{warning}");
        }
    }
    opened.map_err(|e| {
        let agent = crate::agent::socket_path(&dir).exists();
        if matches!(e, hearth_core::StoreError::Locked) && agent {
            anyhow::anyhow!(
                "the profile's agent holds the profile in {}: run the command without --no-agent (or HEARTH_NO_AGENT), or stop the agent with `hearth lock` first",
                dir.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot open the profile in {}", dir.display()))
        }
    })
}

/// The agent's client when the command runs inside it; else unlocks the profile,
/// connects to its relay and catches up.
pub async fn connect(global: &GlobalArgs) -> Result<Session> {
    if let Some(caller) = crate::console::caller() {
        return Ok(Session {
            client: caller.session.client.clone(),
            shared: Some(caller.session.clone()),
        });
    }
    let profile = open_profile(global)?;
    let relay = profile.relay().to_string();
    let client = Client::connect(profile)
        .await
        .with_context(|| format!("cannot connect to the relay {relay}"))?;
    match client.sync().await {
        Ok(()) => {}
        // Connected, but the relay refused a room's own connection for now.
        Err(hearth_core::ClientError::NotConnected) if client.is_connected() => {
            errln!("warning: the relay refused some rooms' connections for now (too many connections from this address); they may show what was last read here: try again in a moment");
        }
        Err(e) => return Err(e).context("cannot catch up with the relay"),
    }
    Ok(Session {
        client: Arc::new(client),
        shared: None,
    })
}

/// Parses a handle typed by the user.
pub fn parse_handle(text: &str) -> Result<Handle> {
    let text = text.trim_start_matches('@');
    Handle::new(text).map_err(|err| UsageError(err.to_string()).into())
}

/// Resolves a room typed by the user (name or id prefix) among the user's rooms.
pub async fn resolve_room(client: &Client, text: &str) -> Result<RoomId> {
    if let Some(room) = client.find_room(text).await? {
        return Ok(room);
    }
    // A room we were removed from or left: its history is still readable.
    client.find_past_room(text).await?.ok_or_else(|| {
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

/// Asks `question` with ` [y/N]` on the terminal; true only for y or yes.
pub async fn confirm(question: &str) -> Result<bool> {
    let line = crate::console::ask(&format!("{question} [y/N]")).await?;
    Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// The warning for a profile whose passphrase is protected by test-only key derivation
/// parameters (made with `HEARTH_TEST_FAST_KDF=1`), unless the test switch is set now.
pub fn weak_passphrase_protection(profile: &Profile) -> Option<String> {
    (profile.kdf_params().is_below_production() && !hearth_core::store::fast_kdf_requested())
        .then(|| {
            "warning: this profile's passphrase is protected by test-only key derivation parameters (it was made with HEARTH_TEST_FAST_KDF=1), which make guessing it thousands of times cheaper: run `hearth passphrase` (with HEARTH_TEST_FAST_KDF unset) to protect it properly".to_string()
        })
}

/// The warning while `HEARTH_TEST_FAST_KDF=1` is set, for `what` a passphrase protects
/// ("profile", "backup") as it is made now.
pub fn fast_kdf_warning(what: &str) -> Option<String> {
    hearth_core::store::fast_kdf_requested().then(|| {
        format!("warning: HEARTH_TEST_FAST_KDF=1 is set: this {what}'s passphrase gets test-only protection that makes guessing it thousands of times cheaper; for a real {what}, do it again without it (a profile: `hearth passphrase`)")
    })
}
