//! The relay's configuration: a TOML file whose every field has a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the configuration could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or writing the file failed.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Everything an owner may tune. Unknown fields are refused so typos are noticed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Where the store, certificate and admin socket live.
    pub data_dir: PathBuf,
    /// Largest payload of one envelope (room entry, inbox entry, KeyPackage).
    pub max_envelope_bytes: usize,
    /// Bytes an account may keep stored (unless given its own quota).
    pub quota_bytes_per_account: u64,
    /// Sustained requests per second per account.
    pub rate_per_second: f64,
    /// Requests an account may send in a burst.
    pub rate_burst: u32,
    /// Simultaneous connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Seconds a new connection has to say hello and authenticate.
    pub handshake_timeout_secs: u64,
    /// Seconds of silence before a connection is dropped.
    pub idle_timeout_secs: u64,
    /// Seconds between re-authentication challenges.
    pub reauth_interval_secs: u64,
    /// Seconds a client has to answer a re-authentication challenge.
    pub reauth_grace_secs: u64,
    /// Seconds entries are kept when a room sets no retention.
    pub retention_secs: u64,
    /// Seconds between retention sweeps.
    pub sweep_interval_secs: u64,
    /// Allow registration without an invite.
    pub open_registration: bool,
    /// Host name to print in addresses and invites (default: the bound IP).
    pub public_host: Option<String>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0u16; 8], hearth_protocol::address::DEFAULT_PORT)),
            data_dir: default_data_dir(),
            max_envelope_bytes: hearth_protocol::limits::DEFAULT_MAX_ENVELOPE_LEN,
            quota_bytes_per_account: 256 * 1024 * 1024,
            rate_per_second: 200.0,
            rate_burst: 400,
            max_connections_per_ip: 32,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 60,
            reauth_interval_secs: 3600,
            reauth_grace_secs: 30,
            retention_secs: 30 * 24 * 3600,
            sweep_interval_secs: 600,
            open_registration: false,
            public_host: None,
        }
    }
}

/// `<platform data dir>/hearth-relay`, or `./hearth-relay-data` if there is none.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("hearth-relay"))
        .unwrap_or_else(|| PathBuf::from("hearth-relay-data"))
}

/// The commented configuration written on first start.
pub const DEFAULT_CONFIG_TOML: &str = r#"# hearth-relay configuration. Every setting is optional; the values shown are the defaults.
# Command-line flags (--listen, --data) override the file.

# UDP address to listen on. "[::]:7443" listens on all interfaces (IPv6 and IPv4).
# listen = "[::]:7443"

# Host name printed in the relay address and invites (e.g. "pi.local"). Default: the bound IP.
# public_host = "pi.local"

# Allow anyone who can reach the relay to register without an invite.
# open_registration = false

# Largest envelope (one message, Welcome or KeyPackage) in bytes.
# max_envelope_bytes = 65536

# Bytes each account may keep stored on the relay (256 MiB).
# quota_bytes_per_account = 268435456

# Per-account request rate: sustained requests per second, and burst size.
# rate_per_second = 200.0
# rate_burst = 400

# Simultaneous connections from one IP address.
# max_connections_per_ip = 32

# Seconds to complete hello + authentication; seconds of silence before a connection drops.
# handshake_timeout_secs = 10
# idle_timeout_secs = 60

# Re-authentication challenge interval on long connections, and the time to answer it.
# reauth_interval_secs = 3600
# reauth_grace_secs = 30

# Seconds messages are kept when a room sets no retention of its own (30 days),
# and seconds between sweeps that delete expired messages.
# retention_secs = 2592000
# sweep_interval_secs = 600
"#;

impl RelayConfig {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.message().to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the commented default configuration to `path` unless a file is there.
    /// Returns whether it wrote one.
    pub fn write_default_if_missing(path: &Path) -> Result<bool, ConfigError> {
        if path.exists() {
            return Ok(false);
        }
        std::fs::write(path, DEFAULT_CONFIG_TOML).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(true)
    }

    /// The largest frame body accepted from a client.
    pub fn max_frame_bytes(&self) -> usize {
        hearth_protocol::limits::MAX_FRAME_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        let parsed: RelayConfig = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, RelayConfig::default());
        let uncommented: String = DEFAULT_CONFIG_TOML
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = "))
                    .unwrap_or("")
            })
            .filter(|l| !l.starts_with("public_host"))
            .collect::<Vec<_>>()
            .join("\n");
        let parsed: RelayConfig = toml::from_str(&uncommented).unwrap();
        assert_eq!(parsed, RelayConfig::default());
    }

    #[test]
    fn typos_are_refused() {
        assert!(toml::from_str::<RelayConfig>("listen_addr = \"[::]:1\"").is_err());
    }
}
