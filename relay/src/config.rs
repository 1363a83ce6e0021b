//! The relay's configuration: a TOML file whose every field has a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hearth_protocol::RelayAddress;
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
    /// Bytes an account may keep stored (unless given its own quota): what is its alone,
    /// its KeyPackages, its listings in the public directory and the rooms it created
    /// (512 bytes each). Every stored object counts its payload plus a fixed overhead for
    /// what the relay keeps around it (128 bytes for a KeyPackage, 256 for a listing; see
    /// `store::OBJECT_OVERHEAD_BYTES`), so empty objects are not free. Room messages count
    /// against their room (`quota_bytes_per_room`), invitations against the recipient's
    /// inbox (`inbox_bytes_per_account`). Hits only that account.
    pub quota_bytes_per_account: u64,
    /// Bytes one room's log may hold: every message and commit counts its payload plus
    /// 128 bytes (256 for a commit) until it expires. The room pays for its log, not its
    /// authors, so the relay stores no author with an entry (decision 0013). Refused with
    /// `QuotaExceeded`. Hits that room's members (a member flooding a room is kicked by its
    /// admins); `min_free_bytes` still guards the disk as a whole.
    pub quota_bytes_per_room: u64,
    /// Bytes one account's inbox may hold (invitations waiting to be picked up), each
    /// entry counting 128 bytes more than its payload. The inbox is charged to its
    /// recipient, since the relay stores no sender (decision 0013); depositors are
    /// rate-limited. Refused with `QuotaExceeded`. Hits those inviting that account until
    /// its client picks up what waits (it does on connecting).
    pub inbox_bytes_per_account: u64,
    /// Rooms one account may create on this relay. The relay keeps a room as long as its
    /// members may write to it (it cannot tell an abandoned room from a quiet one), so
    /// this counts every room the account created. Refused with `QuotaExceeded`. Hits only
    /// that account; a household member creates a few rooms and one per private
    /// conversation, far below the default.
    pub max_rooms_per_account: u64,
    /// Rooms one account may list in the public directory (or rename there) per day,
    /// counted in memory only (a listing names no account in the store, decision 0013;
    /// a restart forgets the count). Members refreshing a listing after a commit are not
    /// counted. Refused with `RateLimited`. Hits only that account.
    pub max_public_rooms_per_account: u64,
    /// Rooms the public directory holds at most. A listing's bytes are charged to its
    /// room (`quota_bytes_per_room`). Refused with `QuotaExceeded` when full: this bound
    /// hits everyone who wants to list a new room, which is why listing is also limited
    /// per account and per day (`max_public_rooms_per_account`) and by the rooms an
    /// account may create at all.
    pub max_public_rooms: u64,
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
    /// Room connections (decision 0013 part 5: connections that never sign in and carry
    /// one room's requests, authorised by its capability) per address (an IPv6 /64). A
    /// connection counts once it presented a capability the room takes; when an address
    /// has this many and another arrives, the oldest connection of the room with the most
    /// connections from that address gives way (its client opens it again), so a flood
    /// with one room's capability pushes out its own. A household shares one address: the
    /// default lets eight people with twenty rooms each, and their reconnects, in with
    /// room to spare. Hits only that address, and there only connections holding a room's
    /// capability, that is members; strangers never get past the unauthenticated pool.
    pub max_room_connections_per_ip: usize,
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
    /// Where family members reach the relay, printed in its address and in every invite:
    /// a host name or IP address, with `:PORT` when the router forwards another external
    /// port (see [`PublicAddress`]). Without it, a relay listening on all interfaces has
    /// no address to give, and mints no invite. `--public-host` overrides it for one run;
    /// `hearth-relay set-address` writes it here.
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
    /// The largest attachment (an encrypted blob, padded: up to 12 % above the file's own
    /// size) one upload may store. Refused with `TooLarge` before anything is written.
    pub max_file_bytes: u64,
    /// Bytes of attachments one room may keep stored (charged to the room, never to an
    /// account: decision 0014), counted in full from the start of an upload and given
    /// back when retention deletes the blob. Refused with `QuotaExceeded`. Hits only that
    /// room's uploads; its messages are charged separately.
    pub blob_quota_bytes_per_room: u64,
    /// Bytes of attachments all rooms together may keep stored, counted like
    /// `blob_quota_bytes_per_room`. Refused with `QuotaExceeded`. Hits every room's
    /// uploads once one account has filled it through rooms of its own (up to
    /// `max_rooms_per_account` of them); messages go on, and the owner takes the space back
    /// with `hearth-relay drop-files ROOM` (rooms listed by `hearth-relay inspect`).
    pub blob_quota_bytes_total: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0u16; 8], hearth_protocol::address::DEFAULT_PORT)),
            data_dir: default_data_dir(),
            max_envelope_bytes: hearth_protocol::limits::DEFAULT_MAX_ENVELOPE_LEN,
            quota_bytes_per_account: 256 * 1024 * 1024,
            quota_bytes_per_room: 256 * 1024 * 1024,
            inbox_bytes_per_account: 16 * 1024 * 1024,
            max_rooms_per_account: 1000,
            max_public_rooms_per_account: 20,
            max_public_rooms: hearth_protocol::limits::MAX_PUBLIC_ROOMS as u64,
            max_key_packages_per_account: 200,
            rate_per_second: 200.0,
            rate_burst: 400,
            max_connections_per_ip: 32,
            max_room_connections_per_ip: 256,
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
            max_file_bytes: 100 * 1024 * 1024,
            blob_quota_bytes_per_room: 1024 * 1024 * 1024,
            blob_quota_bytes_total: 8 * 1024 * 1024 * 1024,
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

/// Where family members reach the relay: a host name or IP address, and the port when it
/// differs from the one the relay listens on (a router forwarding another external port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicAddress {
    /// Host name, IPv4 or IPv6 address (IPv6 without brackets).
    pub host: String,
    /// The external port; `None`: the port the relay listens on.
    pub port: Option<u16>,
}

impl std::fmt::Display for PublicAddress {
    /// `host`, `host:port`, `fd00::1` or `[fd00::1]:port`: the form the config keeps.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            None => f.write_str(&self.host),
            Some(port) if self.host.contains(':') => write!(f, "[{}]:{port}", self.host),
            Some(port) => write!(f, "{}:{port}", self.host),
        }
    }
}

impl std::str::FromStr for PublicAddress {
    type Err = String;

    /// Reads `pi.local`, `192.168.1.20`, `home.example.org:17443`, `fd00::1`,
    /// `[fd00::1]` or `[2001:db8::7]:17443`. A scheme, path or pin is refused.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let hint = "give a host name or IP address and, if the router forwards another \
                    port, the port: e.g. raspberrypi.local, 192.168.1.20, \
                    home.example.org:17443 or [2001:db8::7]:17443";
        let bad_port = |port: &str| {
            format!("public address {text:?}: {port:?} is not a port (1-65535): {hint}")
        };
        let parse_port = |port: &str| match port.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad_port(port)),
            Ok(port) => Ok(port),
        };
        let (host, port, bracketed) = if let Some(inner) = text.strip_prefix('[') {
            let Some((host, after)) = inner.split_once(']') else {
                return Err(format!(
                    "public address {text:?} lacks its closing ']': {hint}"
                ));
            };
            let port = match after.strip_prefix(':') {
                Some(port) => Some(parse_port(port)?),
                None if after.is_empty() => None,
                None => return Err(format!("public address {text:?}: {hint}")),
            };
            (host, port, true)
        } else if text.matches(':').count() == 1 {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            (host, Some(parse_port(port)?), false)
        } else {
            // No colon, or an IPv6 address without brackets (and so without a port).
            (text, None, false)
        };
        if host.is_empty() {
            return Err(format!("public address {text:?} has no host: {hint}"));
        }
        if host.len() > 253 {
            return Err(format!("public host is longer than 253 characters: {hint}"));
        }
        let char_ok = |c: char| c.is_ascii_alphanumeric() || ".-_:%".contains(c);
        if let Some(bad) = host.chars().find(|&c| !char_ok(c)) {
            return Err(format!("public address {text:?} contains {bad:?}: {hint}"));
        }
        if host.contains(':') || bracketed {
            // Only an IPv6 address (with an optional %zone) may contain colons.
            let ip = host.split_once('%').map_or(host, |(ip, _)| ip);
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!(
                    "public address {text:?} is neither a host name nor an IPv6 address: {hint}"
                ));
            }
        } else {
            // A host name or IPv4 address: labels of letters, digits, '-' and '_'
            // (a final dot is allowed); a %zone belongs to IPv6 addresses only.
            let name = host.strip_suffix('.').unwrap_or(host);
            if host.contains('%') || name.split('.').any(str::is_empty) {
                return Err(format!(
                    "public address {text:?} is not a host name: {hint}"
                ));
            }
        }
        let ip = host.split_once('%').map_or(host, |(ip, _)| ip);
        if ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return Err(format!(
                "public address {text:?} means \"any address\": nobody can connect to it. Give \
                 the address people reach this machine at instead: {hint}"
            ));
        }
        Ok(PublicAddress {
            host: host.to_string(),
            port,
        })
    }
}

impl PublicAddress {
    /// Who else could reach this address, when that is hardly anyone: a loopback address
    /// (`localhost`, `127.0.0.1`, `::1`) reaches only this machine, and an IPv6 link-local
    /// one (`fe80::…`) only the local network segment. `None` for every other address.
    pub fn reach_note(&self) -> Option<String> {
        let host = self.host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host.split_once('%').map_or(host.as_str(), |(ip, _)| ip);
        let loopback = host == "localhost"
            || host.ends_with(".localhost")
            || ip
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let link_local = ip
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_unicast_link_local());
        if loopback {
            Some(format!(
                "{} is a loopback address: only this machine reaches it, so invites naming \
                 it work for nobody else. For family members give the machine's name or \
                 address: `hearth-relay set-address raspberrypi.local` (or a LAN IP, a \
                 dynamic DNS name)",
                self.host
            ))
        } else if link_local {
            Some(format!(
                "{} is an IPv6 link-local address: only devices on the same network segment \
                 reach it, and phones and laptops often cannot use it at all. Prefer the \
                 machine's name or a global address (`ip -6 addr show scope global`)",
                self.host
            ))
        } else {
            None
        }
    }
}

/// Checks a public address for the relay address and invites (see [`PublicAddress`]) and
/// returns it in the form the config keeps (IPv6 bracketed only when a port follows).
pub fn check_public_host(text: &str) -> Result<String, String> {
    text.parse::<PublicAddress>().map(|a| a.to_string())
}

/// The commented configuration written on first start.
pub const DEFAULT_CONFIG_TOML: &str = r#"# hearth-relay configuration. Every setting is optional; the values shown are the defaults.
# Command-line flags (--listen, --public-host, --data) override the file.

# UDP address to listen on. "[::]:7443" listens on all interfaces (IPv6 and IPv4).
# listen = "[::]:7443"

# Where family members reach the relay: printed in its address and in every invite. A host
# name or IP address, plus ":PORT" when the router forwards another external port, e.g.
# "raspberrypi.local", "home.example.org:17443" or "[2001:db8::7]". Without it the relay
# mints no invite (it would name this machine only). `hearth-relay set-address` sets it.
# public_host = "raspberrypi.local"

# Allow anyone who can reach the relay to register without an invite.
# open_registration = false

# Largest envelope (one message, Welcome or KeyPackage) in bytes.
# max_envelope_bytes = 65536

# Bytes each account may keep stored on the relay (256 MiB): its key packages, public
# listings and the rooms it created. Each stored object counts a fixed overhead on top of
# its payload (128 bytes for a key package, 512 for a room).
# quota_bytes_per_account = 268435456

# Bytes one room's messages may take until they expire (256 MiB; 128 bytes of overhead
# per message). The room pays for its log, not its authors: the relay stores no author.
# quota_bytes_per_room = 268435456

# Bytes one account's inbox may hold (16 MiB): invitations waiting to be picked up.
# inbox_bytes_per_account = 16777216

# Per account: rooms it may create (the relay keeps a room while its members may write to
# it), rooms it may list in the public directory per day (counted in memory only), and
# one-use key packages it may keep (clients keep 20).
# max_rooms_per_account = 1000
# max_public_rooms_per_account = 20
# max_key_packages_per_account = 200

# Rooms the public directory holds in all (a listing names no account; its room pays
# for it).
# max_public_rooms = 1000

# Per-account request rate: sustained requests per second, and burst size.
# rate_per_second = 200.0
# rate_burst = 400

# Connections from one IP address that have not authenticated yet; the oldest gives way
# to a new one. Authenticated connections do not count.
# max_connections_per_ip = 32

# Room connections (they never sign in; each carries a room's requests, authorised by
# its capability) from one IP address; the oldest of the room with the most of them gives
# way to a new one. A household of eight with twenty rooms each needs 160.
# max_room_connections_per_ip = 256

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

# Attachments: the largest one file may be once encrypted and padded (100 MiB; a file
# needs up to 12 % less), the bytes of files one room may keep (1 GiB), and the bytes of
# files all rooms together may keep (8 GiB: fit it to the disk). Files are deleted with
# the room's messages when its retention runs out; `hearth-relay drop-files ROOM` deletes
# one room's files at once (`hearth-relay inspect` lists them per room).
# max_file_bytes = 104857600
# blob_quota_bytes_per_room = 1073741824
# blob_quota_bytes_total = 8589934592
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
        let mut config: Self = toml::from_str(text).map_err(|e| {
            let mut message = e.message().to_string();
            if message.contains("socket address") {
                message.push_str(
                    ": give an IP address and a port (1-65535), e.g. \"[::]:7443\" (every \
                     address of this machine) or \"0.0.0.0:7443\" (IPv4 only); the name \
                     people reach the relay by is public_host",
                );
            }
            if let Some(span) = e.span() {
                let start = span.start.min(text.len());
                let line = text.as_bytes()[..start]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                message = format!("line {line}: {message}");
            }
            ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            }
        })?;
        if let Some(host) = &config.public_host {
            let host = check_public_host(host).map_err(|message| ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            })?;
            config.public_host = Some(host);
        }
        if !(config.rate_per_second.is_finite() && config.rate_per_second > 0.0) {
            // NaN or 0 would let each account make `rate_burst` requests, then none ever.
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "rate_per_second = {} would stop every account after its first burst: give \
                     a number above 0 (the default is 200.0)",
                    config.rate_per_second
                ),
            });
        }
        for (name, value) in config.limits_that_must_not_be_zero() {
            if value == 0 {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!(
                        "{name} = 0 would refuse everyone: give a number above 0, or leave the \
                         line out for the default ({})",
                        RelayConfig::default()
                            .limits_that_must_not_be_zero()
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map_or(0, |(_, v)| *v)
                    ),
                });
            }
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

    /// The limits at which 0 would refuse every request or connection (none of them
    /// means "off"), by name, as `u64`.
    pub fn limits_that_must_not_be_zero(&self) -> [(&'static str, u64); 5] {
        [
            ("max_envelope_bytes", self.max_envelope_bytes as u64),
            (
                "max_sessions_per_account",
                self.max_sessions_per_account as u64,
            ),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            (
                "max_queued_bytes_per_connection",
                self.max_queued_bytes_per_connection as u64,
            ),
            ("rate_burst", u64::from(self.rate_burst)),
        ]
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

    /// The configured public address, if any (checked when the file was read).
    pub fn public_address(&self) -> Option<PublicAddress> {
        self.public_host.as_deref().and_then(|h| h.parse().ok())
    }

    /// Whether the relay has an address someone else can reach: a public host, or a
    /// specific IP it listens on. Without one, addresses name the loopback interface.
    pub fn has_public_address(&self) -> bool {
        self.public_host.is_some() || !self.listen.ip().is_unspecified()
    }

    /// The relay address to print and put in invites, for a relay bound to `bound`:
    /// the public host and port if set, else the bound IP (the loopback address when bound
    /// to all interfaces) and the bound port.
    pub fn address(&self, bound: SocketAddr, pin: hearth_protocol::Pin) -> RelayAddress {
        let public = self.public_address();
        let host = match &public {
            Some(public) => public.host.clone(),
            None if bound.ip().is_unspecified() => {
                if bound.is_ipv6() { "::1" } else { "127.0.0.1" }.to_string()
            }
            None => bound.ip().to_string(),
        };
        RelayAddress {
            host,
            port: public.and_then(|p| p.port).unwrap_or(bound.port()),
            pin,
        }
    }

    /// Writes a new configuration file at `path`: the commented defaults with the given
    /// settings filled in. Refuses to replace an existing file.
    pub fn write_new(path: &Path, settings: &[(&str, toml::Value)]) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = DEFAULT_CONFIG_TOML.to_string();
        for (key, value) in settings {
            text = set_in_text(&text, key, value);
        }
        Self::parse(&text, path)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Sets `key` to `value` in the file at `path`, keeping its comments and other
    /// settings (replaces the file atomically, with its permissions). A missing file is
    /// started from the commented defaults.
    pub fn set_in_file(path: &Path, key: &str, value: toml::Value) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (text, permissions) = match std::fs::read_to_string(path) {
            Ok(text) => (text, std::fs::metadata(path).ok().map(|m| m.permissions())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (DEFAULT_CONFIG_TOML.to_string(), None)
            }
            Err(e) => return Err(io(e)),
        };
        let text = set_in_text(&text, key, &value);
        Self::parse(&text, path)?;
        let mut temp = path.as_os_str().to_owned();
        temp.push(".new");
        let temp = PathBuf::from(temp);
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            if let Some(permissions) = permissions {
                file.set_permissions(permissions)?;
            }
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map_err(io)
    }

    /// The largest frame body accepted from a client.
    pub fn max_frame_bytes(&self) -> usize {
        hearth_protocol::limits::MAX_FRAME_LEN
    }
}

/// Sets `key = value` in a configuration text: replaces the line that sets it, else the
/// commented example line (`# key = ...`), else appends it.
fn set_in_text(text: &str, key: &str, value: &toml::Value) -> String {
    let line = format!("{key} = {value}");
    let sets = |l: &str, commented: bool| {
        let l = l.trim_start();
        let l = if commented {
            match l.strip_prefix('#') {
                Some(rest) => rest.trim_start(),
                None => return false,
            }
        } else {
            l
        };
        l.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Some(i) = lines.iter().position(|l| sets(l, false)) {
        lines[i] = line;
    } else if let Some(i) = lines.iter().position(|l| sets(l, true)) {
        lines.insert(i + 1, line);
    } else {
        lines.push(line);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
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
    fn public_addresses_are_checked() {
        for (given, kept) in [
            ("pi.local", "pi.local"),
            (" 192.168.1.20 ", "192.168.1.20"),
            ("fd00::1", "fd00::1"),
            ("[fd00::1]", "fd00::1"),
            ("fe80::1%eth0", "fe80::1%eth0"),
            ("my-pi_2.home.arpa", "my-pi_2.home.arpa"),
            ("pi.local:7443", "pi.local:7443"),
            ("home.example.org:17443", "home.example.org:17443"),
            ("203.0.113.9:443", "203.0.113.9:443"),
            ("[2001:db8::7]:17443", "[2001:db8::7]:17443"),
        ] {
            assert_eq!(check_public_host(given).as_deref(), Ok(kept), "{given}");
        }
        for bad in [
            "",
            "  ",
            "hearth://pi.local",
            "pi local",
            "pi.local/",
            "[pi.local]",
            "h#st",
            "pi.local:0",
            "pi.local:70000",
            "pi.local:",
            ":7443",
            "[fd00::1]7443",
            "[fd00::1",
            "a:b:c",
            ".",
            "pi..local",
            ".pi.local",
            "a%b",
            "pi.local%eth0",
            "0.0.0.0",
            "0.0.0.0:7443",
            "::",
            "[::]:7443",
        ] {
            assert!(check_public_host(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_public_host(&"a".repeat(254)).is_err());
        assert_eq!(check_public_host("pi.local.").as_deref(), Ok("pi.local."));
        let parsed: PublicAddress = "[2001:db8::7]:17443".parse().unwrap();
        assert_eq!(
            (parsed.host.as_str(), parsed.port),
            ("2001:db8::7", Some(17443))
        );
    }

    #[test]
    fn a_bad_listen_address_names_its_line_and_the_form_wanted() {
        let path = Path::new("relay.toml");
        for bad in ["\"[::]:99999\"", "\"localhost:7443\"", "\"1.2.3.4\""] {
            let text = format!("# a comment\nlisten = {bad}\n");
            let err = RelayConfig::parse(&text, path).unwrap_err().to_string();
            assert!(
                err.contains("line 2") && err.contains("\"[::]:7443\""),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_rate_that_would_stop_everyone_is_refused() {
        let path = Path::new("relay.toml");
        for bad in ["nan", "0.0", "-1.0", "inf", "-inf"] {
            let text = format!("rate_per_second = {bad}\n");
            let err = RelayConfig::parse(&text, path).unwrap_err().to_string();
            assert!(err.contains("rate_per_second"), "{bad}: {err}");
        }
        let ok = RelayConfig::parse("rate_per_second = 0.5\n", path).unwrap();
        assert_eq!(ok.rate_per_second, 0.5);
    }

    #[test]
    fn a_limit_of_zero_that_would_refuse_everyone_is_refused() {
        let path = Path::new("relay.toml");
        for (name, _) in RelayConfig::default().limits_that_must_not_be_zero() {
            let err = RelayConfig::parse(&format!("{name} = 0\n"), path)
                .unwrap_err()
                .to_string();
            assert!(err.contains(name) && err.contains("above 0"), "{err}");
            RelayConfig::parse(&format!("{name} = 1\n"), path).unwrap();
        }
    }

    #[test]
    fn loopback_and_link_local_addresses_get_a_note() {
        for near in [
            "localhost",
            "LOCALHOST.",
            "pi.localhost",
            "127.0.0.1",
            "127.8.9.1:17443",
            "::1",
            "[::1]:7443",
            "fe80::1%eth0",
        ] {
            let address: PublicAddress = near.parse().unwrap();
            assert!(address.reach_note().is_some(), "{near}: no note");
        }
        for far in [
            "raspberrypi.local",
            "192.168.1.20",
            "home.example.org:17443",
            "2001:db8::7",
            "localhost.example.org",
        ] {
            let address: PublicAddress = far.parse().unwrap();
            assert_eq!(address.reach_note(), None, "{far}");
        }
    }

    #[test]
    fn the_address_takes_the_public_host_and_port() {
        let pin = hearth_protocol::Pin([7; 32]);
        let bound: SocketAddr = "[::]:7443".parse().unwrap();
        let mut config = RelayConfig::default();
        assert!(!config.has_public_address());
        assert_eq!(config.address(bound, pin).host, "::1");
        config.public_host = Some("home.example.org:17443".into());
        let address = config.address(bound, pin);
        assert_eq!(
            (address.host.as_str(), address.port),
            ("home.example.org", 17443)
        );
        config.public_host = Some("raspberrypi.local".into());
        assert_eq!(config.address(bound, pin).port, 7443);
        assert!(config.has_public_address());
        config.public_host = None;
        config.listen = "192.168.1.20:7443".parse().unwrap();
        assert!(config.has_public_address());
    }

    #[test]
    fn a_bad_public_host_in_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth-relay.toml");
        std::fs::write(&path, "public_host = \"pi.local:0\"\n").unwrap();
        let err = RelayConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("pi.local:0"), "{err}");
        std::fs::write(&path, "public_host = \"[fd00::1]\"\n").unwrap();
        let config = RelayConfig::load(&path).unwrap();
        assert_eq!(config.public_host.as_deref(), Some("fd00::1"));
    }

    #[test]
    fn settings_are_written_into_the_commented_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        RelayConfig::write_new(
            &path,
            &[
                ("public_host", "raspberrypi.local".into()),
                ("data_dir", "/var/lib/hearth/relay".into()),
            ],
        )
        .unwrap();
        let config = RelayConfig::load(&path).unwrap();
        assert_eq!(config.public_host.as_deref(), Some("raspberrypi.local"));
        assert_eq!(config.data_dir, Path::new("/var/lib/hearth/relay"));
        assert!(
            RelayConfig::write_new(&path, &[]).is_err(),
            "never replaces a file"
        );

        RelayConfig::set_in_file(&path, "public_host", "home.example.org:17443".into()).unwrap();
        RelayConfig::set_in_file(&path, "public_host", "[2001:db8::7]:17443".into()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("\npublic_host =").count(), 1, "{text}");
        assert!(
            text.contains("# Where family members reach the relay"),
            "comments kept"
        );
        let config = RelayConfig::load(&path).unwrap();
        assert_eq!(config.public_host.as_deref(), Some("[2001:db8::7]:17443"));
        assert_eq!(config.data_dir, Path::new("/var/lib/hearth/relay"));

        let err = RelayConfig::set_in_file(&path, "public_host", "a b".into()).unwrap_err();
        assert!(err.to_string().contains("a b"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "a refused value changes nothing"
        );
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
