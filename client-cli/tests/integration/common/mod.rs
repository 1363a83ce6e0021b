//! Running the real `hearth` binary against a real relay started in this process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use hearth_protocol::Invite;
use hearth_relay::config::RelayConfig;
use hearth_relay::server::RunningRelay;

/// The passphrase every test profile uses.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A relay on 127.0.0.1:0 with a store in a temporary directory.
pub struct Env {
    relay: Option<RunningRelay>,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn start() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = RelayConfig {
            listen: "127.0.0.1:0".parse().expect("socket address"),
            data_dir: dir.path().join("relay"),
            ..RelayConfig::default()
        };
        let relay = hearth_relay::server::start(config)
            .await
            .expect("relay starts");
        Env {
            relay: Some(relay),
            dir,
        }
    }

    /// The running relay.
    pub fn relay(&self) -> &RunningRelay {
        self.relay.as_ref().expect("the relay runs")
    }

    /// Stops the relay; returns its address, for [`Env::restart`].
    pub async fn stop(&mut self) -> std::net::SocketAddr {
        let running = self.relay.take().expect("the relay runs");
        let addr = running.local_addr();
        running.shutdown().await.expect("the relay stops");
        addr
    }

    /// Starts the relay again on `addr` with the same store.
    pub async fn restart(&mut self, addr: std::net::SocketAddr) {
        let config = RelayConfig {
            listen: addr,
            data_dir: self.dir.path().join("relay"),
            ..RelayConfig::default()
        };
        self.relay = Some(
            hearth_relay::server::start(config)
                .await
                .expect("relay starts again"),
        );
    }

    pub fn invite(&self) -> Invite {
        let token = self
            .relay()
            .relay()
            .mint_invite(1, Some(Duration::from_secs(3600)))
            .expect("invite minted");
        Invite {
            relay: self.relay().address(),
            token,
        }
    }

    pub fn profile(&self, name: &str) -> PathBuf {
        self.dir.path().join("people").join(name)
    }

    /// `hearth init` for `name`; panics unless it succeeds.
    pub async fn init(&self, name: &str) -> PathBuf {
        let profile = self.profile(name);
        let invite = self.invite().to_string();
        let out = hearth(&profile, &["init", "--invite", &invite, "--name", name]).await;
        assert_success(&out, "init");
        profile
    }
}

/// `owner` creates room `name` and invites every other profile (named by the last part of
/// its directory), who each join; panics unless every step succeeds.
pub async fn room_with(owner: &Path, name: &str, members: &[&Path]) {
    assert_success(
        &hearth(owner, &["room", "create", name]).await,
        "room create",
    );
    for member in members {
        let handle = member
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile directories are named after their handle");
        assert_success(
            &hearth(owner, &["room", "invite", name, handle]).await,
            "room invite",
        );
        assert_success(&hearth(member, &["room", "join", name]).await, "room join");
    }
}

/// Runs `hearth` with a profile and the test passphrase in the environment.
pub async fn hearth(profile: &Path, args: &[&str]) -> Output {
    hearth_with(profile, args, &[("HEARTH_PASSPHRASE", PASSPHRASE)]).await
}

/// Runs `hearth` with extra environment variables.
pub async fn hearth_with(profile: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
    command
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env_remove("HEARTH_PASSPHRASE")
        .env_remove("HEARTH_PROFILE")
        .env("HEARTH_TEST_FAST_KDF", "1")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("hearth finishes within a minute")
        .expect("hearth runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// Parses every stdout line as JSON.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}
