//! Support for hearth's end-to-end tests: a real relay on 127.0.0.1:0 with a real redb
//! store in a temporary directory, and real clients talking to it over QUIC.
//!
//! Nothing here mocks the relay. Waiting is done on events and on `Client::sync`, never on
//! sleeps; the only timeouts are guards that turn a hang into a failure.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_core::{Client, ClientEvent, Profile};
use hearth_protocol::{Handle, Invite};
use hearth_relay::config::RelayConfig;
use hearth_relay::server::RunningRelay;
use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedReceiver;

/// The passphrase of every test profile.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// How long a test waits for something that should happen before failing.
pub const GUARD: Duration = Duration::from_secs(30);

/// Makes new profiles use cheap Argon2id parameters (tests only).
pub fn fast_kdf() {
    // Set before any profile is created; every test in this crate calls it first.
    std::env::set_var("HEARTH_TEST_FAST_KDF", "1");
}

/// A relay running in this process, with its data in a temporary directory that outlives
/// restarts.
pub struct TestRelay {
    relay: Option<RunningRelay>,
    dir: TempDir,
}

impl TestRelay {
    /// Starts a relay on 127.0.0.1:0 with a fresh store.
    pub async fn start() -> TestRelay {
        TestRelay::start_with(|_| {}).await
    }

    /// Starts a relay on 127.0.0.1:0 with a fresh store and the defaults `configure`
    /// changes (limits a test wants to reach).
    pub async fn start_with(configure: impl FnOnce(&mut RelayConfig)) -> TestRelay {
        fast_kdf();
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let relay = start_on(dir.path(), configure).await;
        TestRelay {
            relay: Some(relay),
            dir,
        }
    }

    /// The running relay.
    pub fn running(&self) -> &RunningRelay {
        self.relay
            .as_ref()
            .expect("the relay runs between start and stop")
    }

    /// The relay's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("relay")
    }

    /// A fresh single-use invite.
    pub fn invite(&self) -> Invite {
        let token = self
            .running()
            .relay()
            .mint_invite(1, Some(Duration::from_secs(3600)))
            .expect("the relay mints invites");
        Invite {
            relay: self.running().address(),
            token,
        }
    }

    /// Stops the relay gracefully and starts it again on the same store and port.
    pub async fn restart(&mut self) {
        let old = self.relay.take().expect("the relay runs");
        let addr = old.local_addr();
        old.shutdown().await.expect("the relay shuts down cleanly");
        let config = RelayConfig {
            listen: addr,
            data_dir: self.data_dir(),
            ..RelayConfig::default()
        };
        self.relay = Some(
            hearth_relay::server::start(config)
                .await
                .expect("the relay restarts on its old port"),
        );
    }

    /// Stops the relay and hands back its directory, so its files can still be inspected.
    pub async fn stop(mut self) -> TempDir {
        if let Some(relay) = self.relay.take() {
            relay
                .shutdown()
                .await
                .expect("the relay shuts down cleanly");
        }
        self.dir
    }
}

async fn start_on(base: &Path, configure: impl FnOnce(&mut RelayConfig)) -> RunningRelay {
    let mut config = RelayConfig {
        listen: "127.0.0.1:0".parse().expect("a valid socket address"),
        data_dir: base.join("relay"),
        ..RelayConfig::default()
    };
    configure(&mut config);
    hearth_relay::server::start(config)
        .await
        .expect("the relay starts on 127.0.0.1:0")
}

/// A person with a profile directory that survives client restarts.
pub struct Person {
    /// Their handle.
    pub handle: Handle,
    /// Their profile directory.
    pub dir: PathBuf,
}

impl Person {
    /// Creates a profile in `base/<name>` and registers it with a fresh invite.
    pub async fn register(relay: &TestRelay, base: &Path, name: &str) -> (Person, Client) {
        let handle = Handle::new(name).expect("test handles are valid");
        let dir = base.join(name);
        let invite = relay.invite();
        let profile = Profile::create(&dir, PASSPHRASE, handle.clone(), invite.relay.clone())
            .expect("a profile can be created");
        let client = Client::register(profile, &invite)
            .await
            .expect("registration with a fresh invite succeeds");
        (Person { handle, dir }, client)
    }

    /// Opens the profile again and connects (a client restart).
    pub async fn connect(&self) -> Client {
        let profile = Profile::open(&self.dir, PASSPHRASE).expect("the profile opens");
        Client::connect(profile)
            .await
            .expect("the client reconnects")
    }
}

/// Waits for the first event that `pick` maps to `Some`, failing after [`GUARD`].
pub async fn wait_for<T>(
    events: &mut UnboundedReceiver<ClientEvent>,
    what: &str,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(GUARD, async {
        while let Some(event) = events.recv().await {
            if let Some(value) = pick(&event) {
                return Some(value);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(value)) => value,
        Ok(None) => panic!("event stream ended while waiting for {what}"),
        Err(_) => panic!("timed out after {GUARD:?} waiting for {what}"),
    }
}
