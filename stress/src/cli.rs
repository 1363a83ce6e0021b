//! The `hearth` CLI as a child process: every command in its own process (no agent),
//! with the test-speed KDF, so it can be SIGKILLed in the middle of an operation.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::process::Command;

/// How long a command that is not meant to be killed may take.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl Finished {
    /// Exit status 0.
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// The relay refused the command with `RateLimited`.
    pub fn rate_limited(&self) -> bool {
        self.stderr.contains("(RateLimited)")
    }

    /// The error the command printed, on one line.
    pub fn error_line(&self) -> String {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or_else(|| self.stderr.lines().next().unwrap_or(""))
            .to_string()
    }
}

/// How a command that may be killed ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It ended by itself before the kill.
    Finished(Finished),
    /// It was SIGKILLed after this long.
    Killed(Duration),
}

/// One profile's CLI.
#[derive(Debug, Clone)]
pub struct Cli {
    binary: PathBuf,
    profile: PathBuf,
    /// Commands the relay refused with `RateLimited` and [`Cli::run_patiently`] retried.
    refused: Arc<AtomicU64>,
}

impl Cli {
    /// The CLI for the profile in `profile`.
    pub fn new(profile: &Path) -> Result<Cli> {
        Ok(Cli {
            binary: crate::binaries::cli()?,
            profile: profile.to_path_buf(),
            refused: Arc::default(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("HEARTH_PROFILE", &self.profile)
            .env("HEARTH_PASSPHRASE", crate::PASSPHRASE)
            .env("HEARTH_NO_AGENT", "1")
            .env("HEARTH_TEST_FAST_KDF", "1")
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `hearth ARGS` to the end (killed after [`PATIENCE`]).
    pub async fn run(&self, args: &[&str]) -> Result<Finished> {
        match self.run_or_kill(args, PATIENCE).await? {
            Outcome::Finished(f) => Ok(f),
            Outcome::Killed(after) => {
                anyhow::bail!("hearth {} did not end within {after:?}", args.join(" "))
            }
        }
    }

    /// [`Cli::run`], again every half second for up to `patience` while the relay
    /// refuses the connection with `RateLimited` (e.g. too many sessions of this account
    /// still open after earlier processes were killed); counted in [`Cli::refused`].
    pub async fn run_patiently(&self, args: &[&str], patience: Duration) -> Result<Finished> {
        let deadline = Instant::now() + patience;
        loop {
            let out = self.run(args).await?;
            if out.ok() || !out.rate_limited() || Instant::now() > deadline {
                return Ok(out);
            }
            self.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// How many times [`Cli::run_patiently`] was refused with `RateLimited`.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Runs `hearth ARGS`, and SIGKILLs it if it is still running after `kill_after`.
    pub async fn run_or_kill(&self, args: &[&str], kill_after: Duration) -> Result<Outcome> {
        let started = Instant::now();
        let child = self
            .command(args)
            .spawn()
            .with_context(|| format!("start hearth {}", args.join(" ")))?;
        let pid = child.id();
        let output = child.wait_with_output();
        tokio::pin!(output);
        match tokio::time::timeout(kill_after, &mut output).await {
            Ok(out) => {
                let out = out.context("wait for hearth")?;
                Ok(Outcome::Finished(Finished {
                    status: out.status,
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    took: started.elapsed(),
                }))
            }
            Err(_) => {
                let killed = started.elapsed();
                if let Some(pid) = pid {
                    // `wait_with_output` owns the child: kill by pid, then reap through it.
                    std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status()
                        .context("run kill -KILL")?;
                }
                let out = output.await.context("reap hearth")?;
                if out.status.success() {
                    // It finished in the instant between the timeout and the kill.
                    return Ok(Outcome::Finished(Finished {
                        status: out.status,
                        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                        took: killed,
                    }));
                }
                Ok(Outcome::Killed(killed))
            }
        }
    }
}
