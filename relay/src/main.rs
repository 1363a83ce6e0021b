//! `hearth-relay`: run the relay, or manage it (invites, accounts, bans, status).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hearth_protocol::Handle;
use hearth_relay::admin::{self, AdminRequest, AdminResponse};
use hearth_relay::config::{default_data_dir, RelayConfig};

/// The hearth relay: a small durable QUIC relay for a household's encrypted messages.
///
/// With no command, runs the relay. On first start it creates the data dir, a default
/// config file, a certificate, and prints the relay address and a first invite.
/// The other commands manage a running relay through its admin socket, or the data dir
/// directly when the relay is stopped.
#[derive(Parser, Debug)]
#[command(
    name = "hearth-relay",
    version,
    about,
    long_about,
    after_help = "Examples:\n  \
        hearth-relay --public-host pi.local          run the relay (first start prints an invite)\n  \
        hearth-relay invite --uses 1                 one invite line per family member (7 days)\n  \
        hearth-relay status                          is it running, what does it store"
)]
struct Cli {
    /// Data directory (store, certificate, admin socket) [default: <user data dir>/hearth-relay]
    #[arg(long, global = true, value_name = "DIR", env = "HEARTH_RELAY_DATA")]
    data: Option<PathBuf>,
    /// Config file [default: <data>/hearth-relay.toml]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP address to listen on, e.g. [::]:7443 or 127.0.0.1:0 [default: from config, [::]:7443]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Host name or IP that family members reach the relay at, e.g. pi.local; printed in the
    /// relay address and in invites (overrides public_host in the config) [default: from
    /// config, else the listen IP]
    #[arg(long, global = true, value_name = "HOST", env = "HEARTH_RELAY_PUBLIC_HOST",
          value_parser = parse_public_host)]
    public_host: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mint an invite and print it as one line to give to a family member.
    ///
    /// The invite carries the relay's address: its host is --public-host if given, else
    /// the running relay's (or the config's) public_host.
    Invite {
        /// How many registrations the invite allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Expire after this long, e.g. 24h, 30days, or "never".
        #[arg(long, value_name = "DURATION", default_value = "7days", value_parser = parse_expiry)]
        expires: Expiry,
    },
    /// List accounts: handle, key, created, last seen, storage used.
    Accounts,
    /// Ban an account: refused at authentication; open connections close at re-auth.
    Ban {
        /// The account's handle.
        handle: Handle,
    },
    /// Lift a ban.
    Unban {
        /// The account's handle.
        handle: Handle,
    },
    /// List invites (ids, uses left, expiry), or revoke some.
    Invites {
        /// Revoke the invites whose id starts with this.
        #[arg(long, value_name = "PREFIX")]
        revoke: Option<String>,
    },
    /// Show uptime, address, accounts, rooms, stored envelopes and bytes, connections.
    Status,
    /// Set an account's storage quota, e.g. 512M, 2G, or "default".
    Quota {
        /// The account's handle.
        handle: Handle,
        /// Size in bytes with optional K/M/G suffix, or "default".
        size: String,
    },
    /// Show recent suspicious events (failed auth, invite misuse, limits hit), counted per
    /// kind, address and hour.
    Audit {
        /// How many rows (the latest).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// How long an invite stays valid; `None` is never expiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expiry(Option<Duration>);

fn parse_expiry(text: &str) -> Result<Expiry, String> {
    if text.trim().eq_ignore_ascii_case("never") {
        return Ok(Expiry(None));
    }
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err("an invite needs a positive lifetime, or \"never\"".into()),
        Ok(d) => Ok(Expiry(Some(d))),
        Err(e) => Err(format!("{e}: use e.g. 24h, 7days or never")),
    }
}

/// Prints a line of the running relay's banner. Nobody reading stdout (a closed pipe)
/// must not stop the relay, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: the journal (systemd) would keep the escape codes.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run(cli))
}

fn load_config(cli: &Cli, write_default: bool) -> Result<RelayConfig> {
    let data = cli.data.clone().unwrap_or_else(default_data_dir);
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| data.join("hearth-relay.toml"));
    if write_default && cli.config.is_none() {
        hearth_relay::server::create_private_dir(&data)
            .with_context(|| format!("cannot create the data dir {}", data.display()))?;
        if RelayConfig::write_default_if_missing(&path)? {
            say!("wrote a default config to {}", path.display());
        }
    }
    let mut config = RelayConfig::load(&path)?;
    if cli.data.is_some() || config.data_dir == default_data_dir() {
        config.data_dir = data;
    }
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(host) = &cli.public_host {
        config.public_host = Some(host.clone());
    }
    Ok(config)
}

async fn run(cli: Cli) -> Result<()> {
    let Some(command) = &cli.command else {
        return serve(load_config(&cli, true)?).await;
    };
    let config = load_config(&cli, false)?;
    let request = match command {
        Command::Invite { uses, expires } => AdminRequest::Invite {
            uses: *uses,
            expires_secs: expires.0.map(|d| d.as_secs().max(1)),
        },
        Command::Accounts => AdminRequest::Accounts,
        Command::Ban { handle } => AdminRequest::Ban {
            handle: handle.clone(),
        },
        Command::Unban { handle } => AdminRequest::Unban {
            handle: handle.clone(),
        },
        Command::Invites {
            revoke: Some(prefix),
        } => AdminRequest::RevokeInvites {
            prefix: prefix.clone(),
        },
        Command::Invites { revoke: None } => AdminRequest::Invites,
        Command::Status => AdminRequest::Status,
        Command::Quota { handle, size } => AdminRequest::Quota {
            handle: handle.clone(),
            bytes: parse_size(size)?,
        },
        Command::Audit { limit } => AdminRequest::Audit { limit: *limit },
    };
    let response = admin::request(&config, request).await.with_context(|| {
        format!(
            "cannot reach the relay data in {}",
            config.data_dir.display()
        )
    })?;
    let response = with_public_host(response, cli.public_host.as_deref());
    let mut out = std::io::stdout().lock();
    match print_response(&mut out, response).and_then(|ok| out.flush().map(|()| ok)) {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        // `hearth-relay status | head -1`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

fn parse_public_host(text: &str) -> Result<String, String> {
    hearth_relay::config::check_public_host(text)
}

/// A running relay answers `invite` with its own address; `--public-host` still wins.
fn with_public_host(response: AdminResponse, host: Option<&str>) -> AdminResponse {
    match (response, host) {
        (AdminResponse::Invite(line), Some(host)) => {
            match line.parse::<hearth_protocol::Invite>() {
                Ok(mut invite) => {
                    invite.relay.host = host.to_string();
                    AdminResponse::Invite(invite.to_string())
                }
                Err(_) => AdminResponse::Invite(line),
            }
        }
        (response, _) => response,
    }
}

async fn serve(config: RelayConfig) -> Result<()> {
    let first_start = !config
        .data_dir
        .join(hearth_relay::server::STORE_FILE)
        .exists();
    let running = hearth_relay::start(config.clone())
        .await
        .with_context(|| format!("cannot start the relay on {}", config.listen))?;
    say!("hearth relay listening on {}", running.local_addr());
    say!("relay address: {}", running.address());
    if first_start {
        let token = running
            .relay()
            .mint_invite(1, Some(Duration::from_secs(7 * 24 * 3600)))
            .context("cannot mint the first invite")?;
        let invite = hearth_protocol::Invite {
            relay: running.address(),
            token,
        };
        say!("first admin invite (one use, 7 days): {invite}");
    }
    if config.public_host.is_none() && config.listen.ip().is_unspecified() {
        say!(
            "tip: pass --public-host HOST (e.g. pi.local) or set public_host in the config so addresses and invites name a host family members can reach"
        );
    }
    say!("data: {}", running.data_dir().display());
    let relay = running.relay().clone();
    tokio::select! {
        signal = wait_for_signal() => signal?,
        () = relay.store_health().failure() => {
            tracing::error!("the store failed a write; exiting so the service manager restarts the relay");
            let _ = running.shutdown().await;
            bail!(
                "the store failed to write (is the disk full or failing?); the relay stopped so that it can be started again (systemd restarts it)"
            );
        }
    }
    tracing::info!("shutting down");
    running.shutdown().await?;
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}

fn parse_size(text: &str) -> Result<Option<u64>> {
    let t = text.trim().to_ascii_lowercase();
    if t == "default" || t == "none" {
        return Ok(None);
    }
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("invalid size {text:?}: use e.g. 512M, 2G or default"))?;
    let mult: u64 = match unit.trim() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => bail!("invalid size {text:?}: use e.g. 512M, 2G or default"),
    };
    Ok(Some(n.saturating_mul(mult)))
}

fn when(secs: u64) -> String {
    if secs == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Prints an answer; `Ok(false)` when it was an error (already reported on stderr).
fn print_response(out: &mut impl Write, response: AdminResponse) -> std::io::Result<bool> {
    match response {
        AdminResponse::Invite(line) => writeln!(out, "{line}")?,
        AdminResponse::Accounts(accounts) => {
            if accounts.is_empty() {
                writeln!(
                    out,
                    "no accounts yet: mint an invite with `hearth-relay invite`"
                )?;
            } else {
                writeln!(
                    out,
                    "{:<20} {:<16} {:<20} {:<20} {:>10}  flags",
                    "handle", "key", "created", "last seen", "storage"
                )?;
            }
            for a in accounts {
                writeln!(
                    out,
                    "{:<20} {:<16} {:<20} {:<20} {:>10}  {}{}",
                    a.handle.as_str(),
                    a.account.short(),
                    when(a.created),
                    when(a.last_seen),
                    bytes(a.used_bytes),
                    if a.banned { "banned " } else { "" },
                    a.quota_bytes
                        .map(|q| format!("quota {}", bytes(q)))
                        .unwrap_or_default()
                )?;
            }
        }
        AdminResponse::Account(a) => writeln!(
            out,
            "{}: {}{}",
            a.handle,
            if a.banned { "banned" } else { "not banned" },
            a.quota_bytes
                .map(|q| format!(", quota {}", bytes(q)))
                .unwrap_or_default()
        )?,
        AdminResponse::Invites(invites) => {
            if invites.is_empty() {
                writeln!(out, "no invites")?;
            }
            for i in invites {
                writeln!(
                    out,
                    "{}  uses left {}/{}  created {}  expires {}",
                    i.id(),
                    i.uses_left,
                    i.uses,
                    when(i.created),
                    i.expires.map(when).unwrap_or_else(|| "never".into())
                )?;
            }
        }
        AdminResponse::Revoked(n) => writeln!(out, "revoked {n} invite(s)")?,
        AdminResponse::Status(s) => {
            if s.running {
                writeln!(
                    out,
                    "running, up {}",
                    humantime::format_duration(Duration::from_secs(s.uptime_secs.unwrap_or(0)))
                )?;
            } else {
                writeln!(out, "not running")?;
            }
            if let Some(address) = s.address {
                writeln!(out, "address:   {address}")?;
            }
            writeln!(out, "accounts:  {}", s.store.accounts)?;
            writeln!(out, "rooms:     {}", s.store.rooms)?;
            writeln!(
                out,
                "stored:    {} room entries, {} inbox entries, {}",
                s.store.entries,
                s.store.inbox,
                bytes(s.store.bytes)
            )?;
            writeln!(out, "database:  {}", bytes(s.store.file_bytes))?;
            match s.disk {
                Some(disk) if disk.free_bytes < s.min_free_bytes => writeln!(
                    out,
                    "disk:      {} free of {}: FULL (under the floor of {}); nothing new is stored until space is freed",
                    bytes(disk.free_bytes),
                    bytes(disk.total_bytes),
                    bytes(s.min_free_bytes)
                )?,
                Some(disk) => writeln!(
                    out,
                    "disk:      {} free of {}",
                    bytes(disk.free_bytes),
                    bytes(disk.total_bytes)
                )?,
                None => writeln!(out, "disk:      unknown")?,
            }
            if let Some(m) = s.metrics {
                writeln!(
                    out,
                    "connections: {} open, {} since start, {} refused",
                    m.connections, m.connections_total, m.connections_refused
                )?;
                writeln!(
                    out,
                    "refusals:  {} auth, {} too large, {} malformed, {} rate, {} quota, {} timeouts",
                    m.auth_failures,
                    m.too_large,
                    m.malformed,
                    m.rate_limited,
                    m.quota_exceeded,
                    m.handshake_timeouts
                )?;
                writeln!(
                    out,
                    "slow:      {} queued for connections, {} slow readers closed, {} sessions over the per-account limit",
                    bytes(m.queued_bytes),
                    m.slow_readers,
                    m.sessions_refused
                )?;
                writeln!(
                    out,
                    "admission: {} address validations, {} unauthenticated connections gave way to newer ones, {} closed for asking too much before authenticating",
                    m.retries, m.unauthenticated_evicted, m.preauth_refused
                )?;
            }
        }
        AdminResponse::Audit(records) => {
            if records.is_empty() {
                writeln!(out, "no suspicious events recorded")?;
            }
            for r in records {
                let times = if r.count > 1 {
                    format!("{} times until {}", r.count, when(r.last))
                } else {
                    "once".to_string()
                };
                writeln!(
                    out,
                    "{}  {:<18} ip {:<16} account {:<16} {}: {}",
                    when(r.time),
                    r.kind,
                    r.ip.as_deref().unwrap_or("-"),
                    r.account.as_deref().unwrap_or("-"),
                    times,
                    r.detail
                )?;
            }
        }
        AdminResponse::Error(message) => {
            let hint = if message.contains("no such account") {
                ": check the handle with `hearth-relay accounts`"
            } else {
                ""
            };
            eprintln!("error: {message}{hint}");
            return Ok(false);
        }
    }
    Ok(true)
}
