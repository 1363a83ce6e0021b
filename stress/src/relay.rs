//! The real `hearth-relay` binary as a child process: started on a temp data dir,
//! SIGKILLed, restarted on the same address with the same data.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hearth_protocol::{Invite, RelayAddress};

/// A running (or killed) relay process.
pub struct RelayProcess {
    child: Child,
    /// The address clients use (with the pinned key).
    pub address: RelayAddress,
    /// Where it listens (kept across restarts).
    pub listen: SocketAddr,
    data: PathBuf,
    config: Option<PathBuf>,
    log: PathBuf,
    /// How long the last start took until the relay said it was serving.
    pub last_start: Duration,
}

impl RelayProcess {
    /// Starts the relay on `listen` (e.g. `127.0.0.1:0`) with its data in `data`, and an
    /// optional config file. Its standard error (warnings) goes to `data/../relay.log`.
    pub fn spawn(data: &Path, listen: &str, config: Option<&Path>) -> Result<RelayProcess> {
        Self::spawn_logging(data, listen, config, &data.with_extension("log"))
    }

    /// [`RelayProcess::spawn`] with the relay's standard error appended to `log`.
    pub fn spawn_logging(
        data: &Path,
        listen: &str,
        config: Option<&Path>,
        log: &Path,
    ) -> Result<RelayProcess> {
        let log = log.to_path_buf();
        let started = Instant::now();
        let (child, address) = start(data, listen, config, &log)?;
        let listen = SocketAddr::new(
            address
                .host
                .parse()
                .context("the relay address names an IP")?,
            address.port,
        );
        Ok(RelayProcess {
            child,
            address,
            listen,
            data: data.to_path_buf(),
            config: config.map(Path::to_path_buf),
            log,
            last_start: started.elapsed(),
        })
    }

    /// The process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The file the relay's standard error goes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// SIGKILL (no clean shutdown, no CONNECTION_CLOSE) and wait for the process to end.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("SIGKILL the relay")?;
        self.child.wait().context("reap the relay")?;
        Ok(())
    }

    /// Starts the relay again on the same address with the same data and config.
    pub fn restart(&mut self) -> Result<()> {
        let started = Instant::now();
        let listen = self.listen.to_string();
        let (child, address) = start(&self.data, &listen, self.config.as_deref(), &self.log)?;
        if address.port != self.address.port {
            bail!(
                "the relay came back on port {} instead of {}",
                address.port,
                self.address.port
            );
        }
        self.child = child;
        self.last_start = started.elapsed();
        Ok(())
    }

    /// Starts the relay again with another config file (it must be stopped).
    pub fn restart_with(&mut self, config: Option<&Path>) -> Result<()> {
        self.config = config.map(Path::to_path_buf);
        self.restart()
    }

    /// SIGTERM (a clean stop) and wait, at most `timeout`, for the process to end.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("run kill -TERM")?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// The resident set size in KiB, from `/proc/<pid>/status` (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id())
    }

    /// Mints an invite with `uses` registrations through `hearth-relay invite` (the
    /// running relay's admin socket).
    pub fn mint_invite(&self, uses: u32) -> Result<Invite> {
        let mut command = Command::new(crate::binaries::relay()?);
        command.arg("--data").arg(&self.data);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let out = command
            .args(["invite", "--uses", &uses.to_string(), "--expires", "never"])
            .env_remove("HEARTH_RELAY_PUBLIC_HOST")
            .output()
            .context("run hearth-relay invite")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .split_whitespace()
            .find(|w| w.starts_with("hearth://") && w.contains("/invite/"))
            .ok_or_else(|| {
                anyhow!(
                    "hearth-relay invite printed no invite ({}): {}{}",
                    out.status,
                    stdout,
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        line.parse::<Invite>()
            .map_err(|e| anyhow!("invite {line:?} does not parse: {e}"))
    }

    /// Runs `hearth-relay status` and returns what it printed.
    pub fn status(&self) -> Result<String> {
        let mut command = Command::new(crate::binaries::relay()?);
        command.arg("--data").arg(&self.data);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let out = command
            .arg("status")
            .output()
            .context("run hearth-relay status")?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// The last `lines` error lines the relay wrote to its log (colours stripped).
    pub fn log_errors(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let errors: Vec<String> = text
            .lines()
            .filter(|l| l.contains("ERROR") || l.starts_with("Error"))
            .map(strip_ansi)
            .collect();
        errors[errors.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `line` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Spawns the relay and reads its banner until it says where its data is (it serves by
/// then); the rest of its standard output is drained by a thread.
fn start(
    data: &Path,
    listen: &str,
    config: Option<&Path>,
    log: &Path,
) -> Result<(Child, RelayAddress)> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let mut command = Command::new(crate::binaries::relay()?);
    command.args(["--listen", listen, "--data"]).arg(data);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .env_remove("HEARTH_RELAY_PUBLIC_HOST")
        .env(
            "RUST_LOG",
            std::env::var("HEARTH_STRESS_RELAY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .context("start hearth-relay")?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut address = None;
    for line in lines.by_ref() {
        let line = line.context("relay stdout")?;
        if let Some(rest) = line.strip_prefix("relay address: ") {
            address = Some(
                rest.parse::<RelayAddress>()
                    .map_err(|e| anyhow!("relay address {rest:?}: {e}"))?,
            );
        }
        if line.starts_with("data: ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    match address {
        Some(address) => Ok((child, address)),
        None => {
            let status = child.wait()?;
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            bail!(
                "the relay ended ({status}) before serving: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        }
    }
}
