//! Test harness: a real relay on 127.0.0.1:0 in a temp dir, profiles with cheap KDF
//! parameters, and helpers to wait for events (never sleeping for synchronization).
#![allow(dead_code)]

pub mod hooked;
pub mod hostile;
pub mod memory;

use std::path::PathBuf;
use std::time::Duration;

use hearth_core::store::{set_test_kdf_params, KdfParams};
use hearth_core::{Client, ClientEvent, Profile};
use hearth_protocol::{Handle, Invite, RelayAddress};
use hearth_relay::{RelayConfig, RunningRelay};
use tokio::sync::mpsc::UnboundedReceiver;

pub const PASS: &str = "correct horse";

pub struct Relay {
    pub running: Option<RunningRelay>,
    pub dir: tempfile::TempDir,
}

impl Relay {
    pub async fn start() -> Relay {
        Self::start_with(|_| {}).await
    }

    /// [`Relay::start`] with a tuned configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut RelayConfig)) -> Relay {
        set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
        let dir = tempfile::tempdir().unwrap();
        let mut config = RelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("relay"),
            ..RelayConfig::default()
        };
        tweak(&mut config);
        let running = hearth_relay::start(config).await.unwrap();
        Relay {
            running: Some(running),
            dir,
        }
    }

    pub fn address(&self) -> RelayAddress {
        self.running.as_ref().unwrap().address()
    }

    pub fn invite(&self) -> Invite {
        let running = self.running.as_ref().unwrap();
        let token = running.relay().mint_invite(1, None).unwrap();
        Invite {
            relay: running.address(),
            token,
        }
    }

    pub fn profile_dir(&self, handle: &str) -> PathBuf {
        self.dir.path().join("profiles").join(handle)
    }

    /// Creates a profile and registers it.
    pub async fn user(&self, handle: &str) -> User {
        let dir = self.profile_dir(handle);
        let profile =
            Profile::create(&dir, PASS, Handle::new(handle).unwrap(), self.address()).unwrap();
        let client = Client::register(profile, &self.invite()).await.unwrap();
        let events = client.events();
        User {
            client: Some(client),
            events,
            dir,
        }
    }

    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }
}

pub struct User {
    pub client: Option<Client>,
    pub events: UnboundedReceiver<ClientEvent>,
    pub dir: PathBuf,
}

impl User {
    pub fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Closes the client and opens the profile again (a restart).
    pub async fn restart(&mut self) {
        if let Some(c) = self.client.take() {
            c.close().await;
        }
        let profile = Profile::open(&self.dir, PASS).unwrap();
        let client = Client::connect(profile).await.unwrap();
        self.events = client.events();
        self.client = Some(client);
    }

    /// Waits for the first event matching `pred` (other events are skipped).
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ClientEvent) -> bool,
    ) -> ClientEvent {
        let deadline = Duration::from_secs(20);
        tokio::time::timeout(deadline, async {
            loop {
                match self.events.recv().await {
                    Some(e) if pred(&e) => return e,
                    Some(_) => continue,
                    None => panic!("event stream ended while waiting for {what}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Syncs until `room`'s members are exactly `want` (by handle, in the client's
    /// order), waiting for the next event between looks (a revert's removal lands after
    /// the refusal that caused it).
    pub async fn wait_members(&mut self, room: hearth_protocol::RoomId, want: &[&str]) {
        for _ in 0..64 {
            let _ = self.c().sync().await;
            let now: Vec<String> = self
                .c()
                .members(room)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.handle.to_string())
                .collect();
            if now == want {
                return;
            }
            self.wait_for(
                &format!("the members to become {want:?} (now {now:?})"),
                |_| true,
            )
            .await;
        }
        panic!("the members of {room} never became {want:?}");
    }

    /// Waits for a text message with `text`.
    pub async fn wait_text(&mut self, text: &str) {
        let t = text.to_string();
        self.wait_for(
            text,
            move |e| matches!(e, ClientEvent::Message(m) if m.text == t),
        )
        .await;
    }

    pub async fn texts(&self, room: hearth_protocol::RoomId) -> Vec<String> {
        self.c()
            .history(room, 1000, None)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect()
    }
}

pub fn h(s: &str) -> Handle {
    Handle::new(s).unwrap()
}

/// The relay's owner bans `handle` through the running relay's admin socket.
pub async fn ban(relay: &hearth_relay::RunningRelay, handle: &str) {
    let banned = hearth_relay::admin::request(
        relay.relay().config(),
        hearth_relay::admin::AdminRequest::Ban { handle: h(handle) },
    )
    .await
    .unwrap();
    assert!(
        matches!(banned, hearth_relay::admin::AdminResponse::Account(ref a) if a.banned),
        "{banned:?}"
    );
}

/// `owner` creates a room named `name`, then invites and admits every one of `others`.
pub async fn room_with(owner: &User, others: &[&User], name: &str) -> hearth_protocol::RoomId {
    let room = owner.c().create_room(name).await.unwrap();
    for user in others {
        owner
            .c()
            .invite(room, user.c().profile().handle())
            .await
            .unwrap();
        user.c().sync().await.unwrap();
        user.c().accept_invitation(room).await.unwrap();
    }
    room
}

impl Relay {
    /// Appends raw bytes to a room log behind the clients' backs (as a malicious relay
    /// or insider could), with the room's current capability.
    pub fn inject(
        &self,
        room: hearth_protocol::RoomId,
        _author: hearth_protocol::AccountKey,
        payload: Vec<u8>,
    ) {
        use hearth_relay::store::WriteOp;
        let store = self.running.as_ref().unwrap().relay().store().clone();
        let record = store.room(&room).unwrap().unwrap();
        let results = store
            .apply(vec![WriteOp::Append {
                room,
                cap_hash: record.current,
                payload,
                next_cap_hash: None,
                admins: None,
                now: 1,
                room_quota: u64::MAX,
            }])
            .unwrap();
        for r in results {
            r.unwrap();
        }
    }

    /// The payload of the latest entry of a room log.
    pub fn last_payload(&self, room: hearth_protocol::RoomId) -> Vec<u8> {
        let store = self.running.as_ref().unwrap().relay().store().clone();
        let record = store.room(&room).unwrap().unwrap();
        let head = hearth_protocol::Seq(record.head);
        let entries = store.entries(&room, head, head, 1).unwrap();
        entries.last().unwrap().payload.clone()
    }
}

impl Relay {
    /// Stops the relay and starts it again on the same address with the same data.
    pub async fn restart(&mut self) {
        let addr = self.stop().await;
        self.start_on(addr).await;
    }

    /// Stops the relay (its data stays); returns the address it listened on.
    pub async fn stop(&mut self) -> std::net::SocketAddr {
        let running = self.running.take().unwrap();
        let addr = running.local_addr();
        running.shutdown().await.unwrap();
        addr
    }

    /// Starts the relay on `addr` with the data in its directory.
    pub async fn start_on(&mut self, addr: std::net::SocketAddr) {
        let config = RelayConfig {
            listen: addr,
            data_dir: self.dir.path().join("relay"),
            ..RelayConfig::default()
        };
        self.running = Some(hearth_relay::start(config).await.unwrap());
    }
}

/// Copies a directory tree (a file-level copy, as a backup tool or disk image makes).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Relay {}

impl Relay {
    /// Appends raw bytes to a room log as a commit, behind the clients' backs, without
    /// rotating the capability (so members who refuse the commit keep access).
    pub fn inject_commit(
        &self,
        room: hearth_protocol::RoomId,
        author: hearth_protocol::AccountKey,
        payload: Vec<u8>,
    ) {
        self.inject_commit_to(room, author, payload, None)
    }

    /// Appends raw bytes to a room log as a commit that rotates the capability to
    /// `next` (as the relay does for any commit a member with the cap sends), or keeps
    /// it (`None`).
    pub fn inject_commit_to(
        &self,
        room: hearth_protocol::RoomId,
        _author: hearth_protocol::AccountKey,
        payload: Vec<u8>,
        next: Option<hearth_protocol::CapHash>,
    ) {
        use hearth_relay::store::WriteOp;
        let store = self.running.as_ref().unwrap().relay().store().clone();
        let record = store.room(&room).unwrap().unwrap();
        let next = next.unwrap_or(record.current);
        let results = store
            .apply(vec![WriteOp::Append {
                room,
                cap_hash: record.current,
                payload,
                next_cap_hash: Some(next),
                admins: None,
                now: 1,
                room_quota: u64::MAX,
            }])
            .unwrap();
        for r in results {
            r.unwrap();
        }
    }

    /// The relay's metadata of a room log.
    pub fn room_record(&self, room: hearth_protocol::RoomId) -> hearth_relay::store::RoomRecord {
        let store = self.running.as_ref().unwrap().relay().store().clone();
        store.room(&room).unwrap().unwrap()
    }

    /// Every entry of a room log the relay still stores.
    pub fn stored_entries(&self, room: hearth_protocol::RoomId) -> Vec<hearth_protocol::Entry> {
        let store = self.running.as_ref().unwrap().relay().store().clone();
        store
            .entries(
                &room,
                hearth_protocol::Seq(0),
                hearth_protocol::Seq(u64::MAX),
                u32::MAX,
            )
            .unwrap()
    }

    /// Runs the relay's retention sweep as if the clock read `now` (seconds since the
    /// Unix epoch): the same store operation the relay's sweep loop applies.
    pub fn sweep_at(&self, now: u64) {
        use hearth_relay::store::WriteOp;
        let running = self.running.as_ref().unwrap();
        let store = running.relay().store().clone();
        let results = store
            .apply(vec![WriteOp::Sweep {
                now,
                retention_secs: running.relay().config().retention_secs,
                max_deletions: 50_000,
            }])
            .unwrap();
        for r in results {
            r.unwrap();
        }
    }
}
