//! The servers under load, each its own process: the real `hearth-relay` binary on a
//! fresh data dir, and the raw quinn fan-out (`hearth-bench raw-server`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hearth_protocol::RelayAddress;
use hearth_relay::store::sync_times::SyncHistogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procfs::{self, Sample};

/// The relay configuration of the load: open registration and no rate limit or quota
/// (the load would hit them on purpose); everything else is the default.
const RELAY_CONFIG: &str = r#"# written by hearth-bench
listen = "127.0.0.1:0"
open_registration = true
rate_per_second = 1000000000.0
rate_burst = 4000000000
quota_bytes_per_account = 1125899906842624
"#;

/// A server process under load.
pub struct Server {
    child: Child,
    /// The process /proc is read for (the server itself, not a wrapper).
    pub pid: u32,
    /// Where clients connect.
    pub address: RelayAddress,
    /// The relay's data dir (the raw server has none; a temp dir for the fsync probe).
    pub dir: PathBuf,
}

fn command(wrap: &[String], program: &Path) -> Command {
    match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl Server {
    /// Starts `bin` (hearth-relay) on a fresh data dir under `base`, prefixed by `wrap`
    /// (e.g. `taskset -c 1`).
    pub async fn relay(bin: &Path, base: &Path, wrap: &[String]) -> Result<Server> {
        Self::relay_with(bin, base, wrap, "").await
    }

    /// [`Server::relay`] with `extra` lines appended to its configuration.
    pub async fn relay_with(
        bin: &Path,
        base: &Path,
        wrap: &[String],
        extra: &str,
    ) -> Result<Server> {
        let dir = base.join("relay");
        let config = base.join("relay.toml");
        std::fs::write(&config, format!("{RELAY_CONFIG}{extra}"))?;
        let log = std::fs::File::create(base.join("relay.log"))?;
        let mut cmd = command(wrap, bin);
        cmd.arg("--data")
            .arg(&dir)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        Self::spawn(cmd, "hearth-relay", dir).await
    }

    /// The relay's disk syncs since it started, from its admin socket (`hearth-relay
    /// status`). Errors: no relay answers on the socket, or it keeps no sync times.
    pub async fn disk_syncs(&self) -> Result<SyncHistogram> {
        use hearth_relay::admin::{ask_running, AdminRequest, AdminResponse};
        match ask_running(&self.dir, &AdminRequest::Status)
            .await?
            .context("no relay answers on its admin socket")?
        {
            AdminResponse::Status(status) => {
                status.disk_syncs.context("the relay reports no disk syncs")
            }
            other => bail!("unexpected answer to status: {other:?}"),
        }
    }

    /// Starts this binary's raw fan-out server, prefixed by `wrap`.
    pub async fn raw(base: &Path, wrap: &[String]) -> Result<Server> {
        let me = std::env::current_exe().context("cannot find the bench binary")?;
        let dir = base.join("raw");
        std::fs::create_dir_all(&dir)?;
        let mut cmd = command(wrap, &me);
        cmd.arg("raw-server")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        Self::spawn(cmd, "hearth-bench", dir).await
    }

    async fn spawn(mut cmd: Command, name: &str, dir: PathBuf) -> Result<Server> {
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(a) = line.strip_prefix("relay address: ") {
                    return Ok::<_, anyhow::Error>(Some(a.trim().to_string()));
                }
            }
            Ok(None)
        })
        .await
        .with_context(|| format!("{name} did not print its address within 60 s"))??;
        let Some(address) = address else {
            bail!("{name} exited before printing its address (see its log)");
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let address: RelayAddress = address.parse().context("server address")?;
        let wrapper = child.id().context("no pid")?;
        let pid = procfs::find_named(wrapper, name).unwrap_or(wrapper);
        Ok(Server {
            child,
            pid,
            address,
            dir,
        })
    }

    /// CPU time and memory now.
    pub fn sample(&self) -> Result<Sample> {
        procfs::sample(self.pid)
    }

    /// Stops the process.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The `hearth-relay` binary: `--relay-bin`, else next to this one.
pub fn relay_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name("hearth-relay");
    if sibling.exists() {
        return Ok(sibling);
    }
    bail!(
        "no hearth-relay binary next to {}: build it with `cargo build --release -p hearth-relay -p hearth-bench` or pass --relay-bin",
        me.display()
    )
}
