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
    /// Bytes an account may keep stored (unless given its own quota). Every stored object
    /// counts its payload plus a fixed overhead for what the relay keeps around it (128
    /// bytes for a message, inbox entry or KeyPackage, 256 for a commit or listing, 512
    /// for a room; see `store::OBJECT_OVERHEAD_BYTES`), so empty objects are not free.
    /// Hits only that account.
    pub quota_bytes_per_account: u64,
    /// Rooms one account may create on this relay. The relay keeps a room as long as its
    /// members may write to it (it cannot tell an abandoned room from a quiet one), so
    /// this counts every room the account created. Refused with `QuotaExceeded`. Hits only
    /// that account; a household member creates a few rooms and one per private
    /// conversation, far below the default.
    pub max_rooms_per_account: u64,
    /// Rooms one account may have listed in the public directory at once (listing or
    /// renaming counts against the admin who does it; members refreshing a listing after
    /// a commit are not counted). Refused with `QuotaExceeded`. Hits only that account.
    /// The directory also answers round-robin by lister, so one account's listings
    /// cannot crowd out another's.
    pub max_public_rooms_per_account: u64,
    /// One-use KeyPackages one account may keep on the relay (the client keeps 20 and
    /// tops up below 10). Expired ones make room. Refused with `QuotaExceeded`. Hits only
    /// that account.
    pub max_key_packages_per_account: u64,
    /// Sustained requests per second per account.
    pub rate_per_second: f64,
    /// Requests an account may send in a burst.
    pub rate_burst: u32,
    /// Connections from one IP address that have not authenticated yet (handshakes in
    /// progress, and connections before their `Auth`). Authenticated connections do not
    /// count (`max_sessions_per_account` bounds those). When a new one comes over the
    /// limit, the oldest unauthenticated one from that address is closed to make room, so a
    /// flood of idle handshakes from the household's shared address cannot keep a member
    /// out: the member's connection authenticates within a round trip. Only connections
    /// whose address QUIC has validated (a retry round trip) count at all.
    pub max_connections_per_ip: usize,
    /// Failed authentications from one IP address within 5 minutes after which new
    /// connections from it are refused for up to 5 minutes, unless anyone authenticated
    /// from that address within the last day: an address the household uses is never
    /// blocked (restarting the relay forgets who did). Failures for one account key from
    /// one address are throttled separately (one attempt per connection after 20).
    pub max_failed_logins_per_address: u32,
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
    /// `--public-host` overrides it.
    pub public_host: Option<String>,
    /// Bytes that must stay free on the data directory's file system: below this, the
    /// relay refuses to store anything new (with `StorageFull`) and keeps serving reads,
    /// logins and deletions, so a full disk never breaks the store.
    pub min_free_bytes: u64,
    /// Bytes the relay keeps queued for one connection (events and responses it has not
    /// written yet; see `service::outbox`). Room history a client catches up on fills at
    /// most half and then waits for the client to read; answers and challenges may use the
    /// rest, and a connection that would go past it is closed (close code 3, "not
    /// reading"). Hits only a connection that stops reading while it keeps asking: one
    /// person's one device, never the household.
    pub max_queued_bytes_per_connection: usize,
    /// Seconds a connection may go without accepting any of the bytes queued for it before
    /// it is closed (close code 3, "not reading"). Hits only that connection; a slow link
    /// that keeps reading, however slowly, is never closed.
    pub write_stall_secs: u64,
    /// Simultaneous authenticated connections of one account (one device's key). A
    /// connection over the limit signs in all the same, and the account's session the
    /// relay has heard from least recently is closed to make room (close code 5,
    /// "replaced"): mostly one whose process vanished and would otherwise count until its
    /// idle timeout. Only the key's holder can open sessions of the account, so this hits
    /// only that account's own sessions, never others at the same address. Together with
    /// `max_queued_bytes_per_connection` it bounds the memory one account can hold.
    pub max_sessions_per_account: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0u16; 8], hearth_protocol::address::DEFAULT_PORT)),
            data_dir: default_data_dir(),
            max_envelope_bytes: hearth_protocol::limits::DEFAULT_MAX_ENVELOPE_LEN,
            quota_bytes_per_account: 256 * 1024 * 1024,
            max_rooms_per_account: 1000,
            max_public_rooms_per_account: 20,
            max_key_packages_per_account: 200,
            rate_per_second: 200.0,
            rate_burst: 400,
            max_connections_per_ip: 32,
            max_failed_logins_per_address: 200,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 60,
            reauth_interval_secs: 3600,
            reauth_grace_secs: 30,
            retention_secs: 30 * 24 * 3600,
            sweep_interval_secs: 600,
            open_registration: false,
            public_host: None,
            min_free_bytes: 64 * 1024 * 1024,
            max_queued_bytes_per_connection: 4 * 1024 * 1024,
            write_stall_secs: 60,
            max_sessions_per_account: 16,
        }
    }
}

/// The longest a timer setting may be (100 years; `*_secs` of handshake, idle,
/// re-authentication and sweeps). A larger value means "never" to whoever wrote it, but the
/// relay adds it to the clock, and near `i64::MAX` seconds that addition panics (found by
/// the fuzz target `config`), so such a file is refused when it loads.
pub const MAX_TIMER_SECS: u64 = 100 * 365 * 24 * 3600;

/// `<platform data dir>/hearth-relay`, or `./hearth-relay-data` if there is none.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("hearth-relay"))
        .unwrap_or_else(|| PathBuf::from("hearth-relay-data"))
}

/// Checks a host name or IP address for the relay address and invites (`pi.local`,
/// `192.168.1.20`, `fd00::1`, or `[fd00::1]`) and returns it in the form addresses carry
/// (IPv6 without brackets). A port or a scheme is refused: the port comes from `listen`.
pub fn check_public_host(text: &str) -> Result<String, String> {
    let text = text.trim();
    let bracketed = text.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host = bracketed.unwrap_or(text);
    let hint = "give only a host name or IP address, e.g. pi.local or 192.168.1.20 \
                (the port comes from listen / --listen)";
    if host.is_empty() {
        return Err(format!("public host is empty: {hint}"));
    }
    if host.len() > 253 {
        return Err(format!("public host is longer than 253 characters: {hint}"));
    }
    let char_ok = |c: char| c.is_ascii_alphanumeric() || ".-_:%".contains(c);
    if let Some(bad) = host.chars().find(|&c| !char_ok(c)) {
        return Err(format!("public host {text:?} contains {bad:?}: {hint}"));
    }
    if host.contains(':') || bracketed.is_some() {
        // Only an IPv6 address (with an optional %zone) may contain colons.
        let ip = host.split_once('%').map_or(host, |(ip, _)| ip);
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "public host {text:?} is neither a host name nor an IPv6 address: {hint}"
            ));
        }
    }
    Ok(host.to_string())
}

/// The commented configuration written on first start.
pub const DEFAULT_CONFIG_TOML: &str = r#"# hearth-relay configuration. Every setting is optional; the values shown are the defaults.
# Command-line flags (--listen, --public-host, --data) override the file.

# UDP address to listen on. "[::]:7443" listens on all interfaces (IPv6 and IPv4).
# listen = "[::]:7443"

# Host name printed in the relay address and invites (e.g. "pi.local"). Default: the bound IP.
# public_host = "pi.local"

# Allow anyone who can reach the relay to register without an invite.
# open_registration = false

# Largest envelope (one message, Welcome or KeyPackage) in bytes.
# max_envelope_bytes = 65536

# Bytes each account may keep stored on the relay (256 MiB). Each stored object counts a
# fixed overhead on top of its payload (128 bytes for a message, 512 for a room).
# quota_bytes_per_account = 268435456

# Per account: rooms it may create (the relay keeps a room while its members may write to
# it), rooms it may list in the public directory, and one-use key packages it may keep
# (clients keep 20).
# max_rooms_per_account = 1000
# max_public_rooms_per_account = 20
# max_key_packages_per_account = 200

# Per-account request rate: sustained requests per second, and burst size.
# rate_per_second = 200.0
# rate_burst = 400

# Connections from one IP address that have not authenticated yet; the oldest gives way
# to a new one. Authenticated connections do not count.
# max_connections_per_ip = 32

# Failed logins from one address within 5 minutes that block it for 5 minutes, unless
# someone logged in from that address within the last day (a household's address).
# max_failed_logins_per_address = 200

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

# Bytes that must stay free on the disk (64 MiB): below this the relay stores nothing new
# (people are told the relay's disk is full) but keeps serving what it has.
# min_free_bytes = 67108864

# Bytes queued for one connection that is not reading what it is sent (4 MiB), and seconds
# it may go without reading anything; past either it is closed. Hits only that connection.
# max_queued_bytes_per_connection = 4194304
# write_stall_secs = 60

# Connections one account (one device) may have open at once; a newer one takes the place
# of the one heard from least recently (a vanished one first).
# max_sessions_per_account = 16
"#;

impl RelayConfig {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the text of a configuration file (`path` only names it in errors): what
    /// [`RelayConfig::load`] does with the file's contents (also the fuzz target `config`).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        if let Some(host) = &config.public_host {
            let host = check_public_host(host).map_err(|message| ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            })?;
            config.public_host = Some(host);
        }
        for (name, secs) in config.timers() {
            if secs > MAX_TIMER_SECS {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!(
                        "{name} = {secs} is more than 100 years: give at most {MAX_TIMER_SECS}"
                    ),
                });
            }
        }
        Ok(config)
    }

    /// The timer settings, by name (each at most [`MAX_TIMER_SECS`]).
    pub fn timers(&self) -> [(&'static str, u64); 5] {
        [
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("reauth_interval_secs", self.reauth_interval_secs),
            ("reauth_grace_secs", self.reauth_grace_secs),
            ("sweep_interval_secs", self.sweep_interval_secs),
        ]
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
    fn public_hosts_are_checked() {
        for (given, kept) in [
            ("pi.local", "pi.local"),
            (" 192.168.1.20 ", "192.168.1.20"),
            ("fd00::1", "fd00::1"),
            ("[fd00::1]", "fd00::1"),
            ("fe80::1%eth0", "fe80::1%eth0"),
            ("my-pi_2.home.arpa", "my-pi_2.home.arpa"),
        ] {
            assert_eq!(check_public_host(given).as_deref(), Ok(kept), "{given}");
        }
        for bad in [
            "",
            "  ",
            "pi.local:7443",
            "hearth://pi.local",
            "pi local",
            "pi.local/",
            "[pi.local]",
            "h#st",
        ] {
            assert!(check_public_host(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_public_host(&"a".repeat(254)).is_err());
    }

    #[test]
    fn a_bad_public_host_in_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth-relay.toml");
        std::fs::write(&path, "public_host = \"pi.local:7443\"\n").unwrap();
        let err = RelayConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("pi.local:7443"), "{err}");
        std::fs::write(&path, "public_host = \"[fd00::1]\"\n").unwrap();
        let config = RelayConfig::load(&path).unwrap();
        assert_eq!(config.public_host.as_deref(), Some("fd00::1"));
    }

    #[test]
    fn timers_beyond_a_century_are_refused() {
        let path = Path::new("hearth-relay.toml");
        for (name, _) in RelayConfig::default().timers() {
            let at_most = format!("{name} = {MAX_TIMER_SECS}");
            assert!(RelayConfig::parse(&at_most, path).is_ok(), "{at_most}");
            // What someone may write to mean "never": the relay would panic adding it to
            // the clock.
            let never = format!("{name} = {}", i64::MAX);
            let err = RelayConfig::parse(&never, path).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("100 years"), "{err}");
        }
    }

    #[test]
    fn typos_are_refused() {
        assert!(toml::from_str::<RelayConfig>("listen_addr = \"[::]:1\"").is_err());
    }
}
