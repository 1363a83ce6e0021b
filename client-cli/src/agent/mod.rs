//! One background agent per profile, like ssh-agent.
//!
//! The first command that needs the profile unlocks it (one passphrase, one Argon2id
//! derivation) and starts `hearth agent run` in the background. The agent holds the
//! profile and the relay connection, receives live, and runs every later `hearth` command
//! for its callers over a Unix socket in the profile directory ([`SOCKET`], mode 0600):
//! one-shot commands then return without unlocking or connecting, while a chat is open,
//! and several chats can be open at once. Output and questions travel over the socket
//! ([`wire`], [`crate::console`]); a chat's line editor stays in the caller's terminal.
//!
//! The agent forgets the key (stops) on `hearth lock`, after `--timeout` if one was
//! given, on SIGTERM, and when its socket file is removed or replaced (the profile was
//! deleted, or another agent took over). `--no-agent` (or `HEARTH_NO_AGENT=1`) runs a
//! command in its own process as before, taking the profile's lock for its duration.

pub mod caller;
pub mod notify;
pub mod outbox;
pub mod server;
pub mod wire;

use std::path::{Path, PathBuf};

use crate::cli::Command;

/// The agent's socket, in the profile directory.
pub const SOCKET: &str = "agent.sock";
/// The agent's log (standard error), in the profile directory.
pub const LOG: &str = "agent.log";
/// Environment variable that turns the agent off for a command (`1`).
pub const NO_AGENT_ENV: &str = "HEARTH_NO_AGENT";

/// The socket of the agent of the profile in `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}

/// Where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// In this process, without the profile (help, completions, the demo) or on a profile
    /// that does not exist yet (init, import).
    Here,
    /// In the profile's agent, started if needed.
    Agent,
    /// In this process, after stopping the agent: the command needs the profile's store
    /// to itself (a new passphrase, a backup written from the store).
    HereAfterLock,
}

/// Where `command` runs.
pub fn route(command: &Command) -> Route {
    match command {
        Command::Init(_)
        | Command::ImportBackup { .. }
        | Command::Demo
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Agent(_)
        | Command::Lock => Route::Here,
        Command::Passphrase | Command::ExportBackup { .. } | Command::Relay(_) => {
            Route::HereAfterLock
        }
        _ => Route::Agent,
    }
}
