//! In-process clients (`hearth_core::Client` over the real QUIC transport), each with a
//! task that records what its event stream says.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hearth_core::events::ConnectionState;
use hearth_core::{Client, ClientEvent, Profile};
use hearth_protocol::{Handle, Invite, RoomId, Seq};

/// What one client's event stream said, with when.
#[derive(Default)]
pub struct Watch {
    /// When the client said it was connected (after the first connection: reconnected).
    pub connected: Mutex<Vec<Instant>>,
    /// When it said the connection dropped.
    pub dropped: Mutex<Vec<Instant>>,
    /// Text messages pushed to it, in the order they came: room, seq, text.
    pub messages: Mutex<Vec<(RoomId, Seq, String)>>,
    /// Consistency warnings (gaps, forks, rewinds) and refused entries, as text.
    pub warnings: Mutex<Vec<String>>,
    /// Rooms it was invited to.
    pub invited: Mutex<Vec<RoomId>>,
}

/// Locks a mutex of a [`Watch`] (a panic elsewhere leaves the data usable).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watch {
    /// The first time it said it was connected at or after `t`.
    pub fn connected_since(&self, t: Instant) -> Option<Instant> {
        lock(&self.connected).iter().copied().find(|&c| c >= t)
    }
}

/// One person: a profile on disk and a client connected to the relay.
pub struct Person {
    /// The handle.
    pub handle: Handle,
    /// The client (shared with the tasks that use it).
    pub client: Arc<Client>,
    /// The profile directory.
    pub dir: PathBuf,
    /// What its event stream said.
    pub watch: Arc<Watch>,
}

impl Person {
    /// Creates a profile under `root/handle` and registers it with `invite`.
    pub async fn register(root: &Path, handle: &str, invite: &Invite) -> Result<Person> {
        let dir = root.join(handle);
        let handle = Handle::new(handle).map_err(|e| anyhow!("handle {handle}: {e}"))?;
        let profile = Profile::create(
            &dir,
            crate::PASSPHRASE,
            handle.clone(),
            invite.relay.clone(),
        )
        .with_context(|| format!("create profile {handle}"))?;
        let client = Client::register(profile, invite)
            .await
            .with_context(|| format!("register {handle}"))?;
        Ok(Self::watching(handle, client, dir))
    }

    /// Opens the profile in `dir` and connects (a fresh login).
    pub async fn connect(dir: &Path) -> Result<Person> {
        let profile = Profile::open(dir, crate::PASSPHRASE).context("open profile")?;
        let handle = profile.handle().clone();
        let client = Client::connect(profile)
            .await
            .with_context(|| format!("connect {handle}"))?;
        Ok(Self::watching(handle, client, dir.to_path_buf()))
    }

    fn watching(handle: Handle, client: Client, dir: PathBuf) -> Person {
        let watch = Arc::new(Watch::default());
        lock(&watch.connected).push(Instant::now());
        let mut events = client.events();
        let w = watch.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let now = Instant::now();
                match event {
                    ClientEvent::Connection(ConnectionState::Connected) => {
                        lock(&w.connected).push(now)
                    }
                    ClientEvent::Connection(ConnectionState::Reconnecting { .. }) => {
                        lock(&w.dropped).push(now)
                    }
                    ClientEvent::Message(m) => lock(&w.messages).push((m.room, m.seq, m.text)),
                    ClientEvent::Consistency { room, warning } => {
                        lock(&w.warnings).push(format!("room {}: {warning}", &room.to_hex()[..8]))
                    }
                    ClientEvent::Rejected { room, seq, reason } => lock(&w.warnings).push(format!(
                        "room {} entry {seq} refused: {reason}",
                        &room.to_hex()[..8]
                    )),
                    ClientEvent::Invited(i) => lock(&w.invited).push(i.room),
                    _ => {}
                }
            }
        });
        Person {
            handle,
            client: Arc::new(client),
            dir,
            watch,
        }
    }

    /// Closes the client (waits for its tasks to stop).
    pub async fn close(self) {
        self.client.shut_down().await;
    }

    /// Syncs, retrying for up to `patience` while the relay is away.
    pub async fn sync_within(&self, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            match self.client.sync().await {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(anyhow!("{} could not sync: {e}", self.handle)),
            }
        }
    }

    /// Every stored text message of `room`, oldest first: (seq, text).
    pub async fn history(&self, room: RoomId) -> Result<Vec<(Seq, String)>> {
        Ok(self
            .client
            .history(room, usize::MAX, None)
            .await?
            .into_iter()
            .map(|m| (m.seq, m.text))
            .collect())
    }
}

/// `owner` creates a room named `name` and brings every one of `others` in (invite,
/// sync, accept).
pub async fn room_with(owner: &Person, others: &[&Person], name: &str) -> Result<RoomId> {
    let room = owner.client.create_room(name).await?;
    for person in others {
        owner
            .client
            .invite(room, &person.handle)
            .await
            .with_context(|| format!("invite {}", person.handle))?;
        person.sync_within(Duration::from_secs(30)).await?;
        person
            .client
            .accept_invitation(room)
            .await
            .with_context(|| format!("{} accepts", person.handle))?;
    }
    Ok(room)
}

/// What a member's history got wrong against what the relay acknowledged.
#[derive(Debug, Default, Clone)]
pub struct Discrepancies {
    /// Acknowledged, not stored.
    pub lost: usize,
    /// Stored more than once (acknowledged or not).
    pub duplicated: usize,
    /// Stored once, at another seq than the one acknowledged.
    pub misplaced: usize,
    /// One line per problem, for the log.
    pub details: Vec<String>,
}

/// Compares a history (seq, text) with the acknowledged messages (seq, text); texts are
/// unique per attempt, so a text stored twice is a duplicate.
pub fn compare(history: &[(Seq, String)], acked: &[(Seq, String)]) -> Discrepancies {
    let mut out = Discrepancies::default();
    let mut at: std::collections::HashMap<&str, Vec<Seq>> = std::collections::HashMap::new();
    let mut by_seq: std::collections::HashMap<Seq, &str> = std::collections::HashMap::new();
    for (seq, text) in history {
        at.entry(text.as_str()).or_default().push(*seq);
        by_seq.insert(*seq, text.as_str());
    }
    for (seq, text) in acked {
        match at.get(text.as_str()).map(Vec::as_slice) {
            None | Some([]) => {
                out.lost += 1;
                let there = by_seq
                    .get(seq)
                    .map_or("nothing".to_string(), |t| format!("{t:.20}"));
                out.details.push(format!(
                    "acknowledged {text:.20} (seq {seq}) is missing; that seq holds {there}"
                ));
            }
            Some([one]) if one == seq => {}
            Some([one]) => {
                out.misplaced += 1;
                out.details.push(format!(
                    "{text:.20} acknowledged at seq {seq}, stored at {one}"
                ));
            }
            Some(_) => {}
        }
    }
    for (text, seqs) in &at {
        if seqs.len() > 1 {
            out.duplicated += 1;
            out.details
                .push(format!("{text:.20} stored {} times: {seqs:?}", seqs.len()));
        }
    }
    out
}
