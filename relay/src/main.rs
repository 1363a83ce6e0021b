//! `hearth-relay`: run the relay, or manage it (invites, accounts, bans, status).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use hearth_protocol::Handle;
use hearth_relay::admin::{self, AdminError, AdminRequest, AdminResponse};
use hearth_relay::config::RelayConfig;
use hearth_relay::location::{self, Found, Location, Search, CONFIG_FILE, SYSTEM_DATA_DIR};
use hearth_relay::server::{STORE_FILE, STORE_JOURNAL_FILES};

/// The hearth relay: a small durable QUIC relay for a household's encrypted messages.
///
/// With no command, runs the relay. The first start creates the data dir, a commented
/// config file, a certificate and the store, and prints the relay address and a first
/// invite (once the relay has a public address: --public-host or `set-address`).
/// The other commands manage an existing relay (they never create one): through its
/// admin socket while it runs, or on its data dir directly when it is stopped. Without
/// --data or --config they find your own relay (<user data dir>/hearth-relay) or the
/// packaged one (/etc/hearth/relay.toml, data in /var/lib/hearth/relay; run them with
/// sudo).
#[derive(Parser, Debug)]
#[command(
    name = "hearth-relay",
    version,
    about,
    long_about,
    after_help = "Examples:\n  \
        hearth-relay --public-host raspberrypi.local        run (first start prints an invite)\n  \
        hearth-relay set-address home.example.org:17443     the address invites name from now on\n  \
        hearth-relay invite --uses 1                        one invite line per family member (7 days)\n  \
        hearth-relay status                                 is it running, what does it store\n  \
        sudo hearth-relay invite                            the same for the packaged relay"
)]
struct Cli {
    /// Data directory (store, certificate, admin socket) [default: your relay in <user data
    /// dir>/hearth-relay, else the packaged one in /var/lib/hearth/relay]
    #[arg(long, global = true, value_name = "DIR", env = "HEARTH_RELAY_DATA")]
    data: Option<PathBuf>,
    /// Config file [default: <data>/hearth-relay.toml, or /etc/hearth/relay.toml for the
    /// packaged relay]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP address to listen on, e.g. [::]:7443 or 127.0.0.1:0 [default: from config, [::]:7443]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where family members reach the relay, for its address and invites: a host name or
    /// IP, and :PORT if the router forwards another port, e.g. raspberrypi.local,
    /// home.example.org:17443, [2001:db8::7]. Overrides public_host in the config for this
    /// command (a new config keeps it) [default: from config]
    #[arg(long, global = true, value_name = "HOST[:PORT]", env = "HEARTH_RELAY_PUBLIC_HOST",
          value_parser = parse_public_host)]
    public_host: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a relay without starting it: data dir, config, certificate, store; print its
    /// address and the first invite.
    ///
    /// What the first start does too. Give --public-host so the invite names an address
    /// family members can reach; it is kept in the config.
    Init {
        /// UDP address the relay will listen on, kept in the config [default: [::]:7443]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Set where family members reach the relay (kept in the config; every invite names it).
    ///
    /// A host name or IP address, and :PORT when the router forwards another external
    /// port: raspberrypi.local, 192.168.1.20, home.example.org:17443, [2001:db8::7]:17443.
    /// People who joined with an older address move with `hearth relay set-address`.
    SetAddress {
        /// HOST or HOST:PORT (IPv6 in brackets when a port follows).
        #[arg(value_name = "HOST[:PORT]", value_parser = parse_public_host)]
        address: String,
    },
    /// Mint an invite and print it as one line to give to a family member.
    ///
    /// The invite names the relay's public address (public_host in the config, or
    /// --public-host). Run it again whenever an invite was lost; `invites --revoke`
    /// cancels the lost one.
    Invite {
        /// How many registrations the invite allows (at least 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
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
    /// Print what the relay stores, table by table (records, bytes), and whether any
    /// record holds an account (key, handle or hash) together with a room id.
    Inspect,
    /// Delete the files (attachments) one room keeps at the relay, before retention would.
    ///
    /// For when one room's files fill the relay's file space (`blob_quota_bytes_total`),
    /// and uploads everywhere are refused. `inspect` lists the rooms holding files, by
    /// id and size; the relay knows no room's name or members. Members asking for a
    /// deleted file are told the relay no longer holds it; messages are not touched.
    DropFiles {
        /// The room's id, or enough of its start to name one room (as `inspect` lists it).
        room: String,
    },
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write hearth-relay.1 and one page per command into a
    /// directory.
    Man {
        /// Write the pages here (created if missing).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
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
        Ok(d) if d.as_secs() > hearth_relay::config::MAX_TIMER_SECS => Err(
            "that is more than 100 years: use \"never\" for an invite that does not expire".into(),
        ),
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

/// Bounds glibc's malloc to two arenas by starting the relay again (the same process:
/// `exec`) with `MALLOC_ARENA_MAX=2`, unless that variable is set already.
///
/// glibc gives each thread that allocates while the others' arenas are busy an arena of
/// its own, up to eight per core, and memory freed into one arena is not reused by the
/// others. The relay's threads (tokio's workers and the blocking threads that commit and
/// read the store) each took one, which made a third of its peak memory: reading back
/// 100,000 entries with 25 clients connected peaked at 32 MiB RSS with the default and at
/// 22.5 MiB with two arenas, at the same throughput (issue 15; `hearth-bench relay`).
/// The variable is read when the process starts, before `main`, hence the `exec`; setting
/// it yourself (any value) keeps the relay from restarting itself.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_ARENA_MAX";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` returns only if it failed; then the relay runs on as it is.
    let error = command.args(args).env(VAR, "2").exec();
    eprintln!("note: could not restart with {VAR}=2 ({error}); running with more memory");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas() {}

fn main() -> Result<()> {
    bound_malloc_arenas();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: the journal (systemd) would keep the escape codes.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        );
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        // systemd's journal stamps every line itself.
        builder.without_time().init();
    } else {
        builder.init();
    }
    let cli = Cli::parse();
    // One thread drives every connection; the store commits and reads on tokio's
    // blocking threads (decision 0017).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        None => serve(&cli).await,
        Some(Command::Init { listen }) => init(&cli, *listen).await,
        Some(Command::SetAddress { address }) => set_address(&cli, address),
        Some(Command::Completions { shell }) => completions(*shell),
        Some(Command::Man { out_dir }) => man(out_dir.as_deref()),
        Some(command) => owner(&cli, command).await,
    }
}

/// The relay `cli` means (see [`location::locate`]); creates nothing.
fn locate(cli: &Cli) -> Result<Location> {
    let search = Search::new(cli.data.clone(), cli.config.clone());
    let loc = location::locate(&search)?;
    if loc.found == Found::User && search.system_config.exists() {
        // Both exist (say root tried a relay by hand before installing the package): say
        // which one this command means, so an invite is not given out for the wrong one.
        let packaged = RelayConfig::load(&search.system_config)
            .ok()
            .map(|c| c.data_dir)
            .filter(|d| *d != hearth_relay::config::default_data_dir())
            .unwrap_or_else(|| PathBuf::from(SYSTEM_DATA_DIR));
        eprintln!(
            "note: this is your own relay in {}, not the packaged one ({}); pass --data {} \
             for that",
            loc.data_dir().display(),
            search.system_config.display(),
            packaged.display()
        );
    }
    Ok(loc)
}

/// `config` with this command's flags applied.
fn with_flags(mut config: RelayConfig, cli: &Cli, listen: Option<SocketAddr>) -> RelayConfig {
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(host) = &cli.public_host {
        config.public_host = Some(host.clone());
    }
    config
}

/// Whether a relay was created at `loc`; refuses (saying what to pass) when none was.
fn require_relay(loc: &Location, command: &str) -> Result<()> {
    let data = loc.data_dir();
    match std::fs::metadata(data.join(STORE_FILE)) {
        Ok(meta) if meta.is_file() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(permission_denied(data, command))
        }
        _ => Err(no_relay(loc, command)),
    }
}

fn no_relay(loc: &Location, command: &str) -> anyhow::Error {
    let data = loc.data_dir().display();
    match loc.found {
        Found::Nothing => anyhow!(
            "no relay found: there is none in {data} and no packaged relay ({}). Create one \
             with `hearth-relay init --public-host HOST[:PORT]` (or start one with \
             `hearth-relay --public-host HOST[:PORT]`), or pass --data DIR for a relay \
             elsewhere",
            location::SYSTEM_CONFIG
        ),
        _ => anyhow!(
            "no relay in {data} (no {STORE_FILE}): `hearth-relay {command}` never creates \
             one. Pass the data directory of your relay with --data DIR (the packaged \
             service keeps it in {SYSTEM_DATA_DIR}), or create a relay there with \
             `hearth-relay init --data {data}`"
        ),
    }
}

fn permission_denied(data: &Path, command: &str) -> anyhow::Error {
    anyhow!(
        "cannot open {}: it belongs to the user the relay runs as. Run the command as that \
         user or with sudo: `sudo hearth-relay {command}` (for a relay of your own \
         elsewhere, pass its --data DIR)",
        data.display()
    )
}

/// Refuses to run, as root, a relay whose data dir belongs to another user (the packaged
/// relay's belongs to `hearth`): files it made there as root (the admin socket, a room's
/// file store) would stay root's, and the service could no longer write them.
fn refuse_root_in_anothers_dir(loc: &Location) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let data = loc.data_dir();
    let Ok(meta) = std::fs::metadata(data) else {
        return Ok(());
    };
    if !rustix::process::geteuid().is_root() || meta.uid() == 0 {
        return Ok(());
    }
    let user = user_name(meta.uid()).unwrap_or_else(|| "hearth".into());
    bail!(
        "{} belongs to the user {user}, not root: run the relay as that user, e.g. `sudo \
         runuser -u {user} -- hearth-relay --config {}` (or `sudo systemctl start \
         hearth-relay` for the packaged relay), so that every file it makes stays that user's",
        data.display(),
        loc.config_file.display()
    )
}

/// The name of the user `uid` in /etc/passwd, if there is one.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        let printable = !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic());
        (id == uid && printable).then(|| name.to_string())
    })
}

/// Checks that the relay can listen on `listen` before anything is created, so a first
/// start that cannot bind leaves no half-made relay behind.
fn check_port_free(listen: SocketAddr) -> Result<()> {
    std::net::UdpSocket::bind(listen).map(drop).map_err(|e| {
        anyhow!(
            "cannot listen on {listen}: {e}. {}",
            listen_hint(listen, &e)
        )
    })
}

/// What to do when the relay cannot listen on `listen`.
fn listen_hint(listen: SocketAddr, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let port = listen.port();
    match e.kind() {
        ErrorKind::AddrInUse => "Is another relay running there (`hearth-relay status`, \
             `systemctl status hearth-relay`)? Stop it, or choose another address with \
             --listen (e.g. --listen [::]:7444)"
            .into(),
        ErrorKind::AddrNotAvailable => format!(
            "This machine has no address {}: listen on all of its addresses instead \
             (--listen [::]:{port}, or listen = \"[::]:{port}\" in the config); the address \
             family members use is public_host (`hearth-relay set-address`)",
            listen.ip()
        ),
        ErrorKind::PermissionDenied if port < 1024 => format!(
            "Ports below 1024 need a privilege the relay does not have: use a port from \
             1024 up (the default is 7443) and, if people must reach another port, forward \
             it in the router and give it with `hearth-relay set-address HOST:{port}`"
        ),
        _ if listen.is_ipv6() => format!(
            "If this machine has IPv6 turned off, listen on IPv4 only: --listen \
             0.0.0.0:{port}, or listen = \"0.0.0.0:{port}\" in the config"
        ),
        _ => "Choose another address with --listen (e.g. --listen [::]:7444)".into(),
    }
}

/// Creates the data dir and, if missing, a commented config file holding the public host
/// (and for `init` the listen address) given on the command line. `init` also writes the
/// public host into an existing config; a run only uses it (a service must not need to
/// write its config).
fn create_relay_dir(
    loc: &Location,
    cli: &Cli,
    listen: Option<SocketAddr>,
    init: bool,
) -> Result<()> {
    let data = loc.data_dir();
    refuse_foreign_dir(data)?;
    check_identity_files(data)?;
    hearth_relay::server::create_private_dir(data)
        .with_context(|| format!("cannot create the data dir {}", data.display()))?;
    let mut settings: Vec<(&str, toml::Value)> = Vec::new();
    if let Some(host) = &cli.public_host {
        settings.push(("public_host", host.as_str().into()));
    }
    if loc.config_file.exists() {
        if !init {
            return Ok(());
        }
        for (key, value) in settings {
            RelayConfig::set_in_file(&loc.config_file, key, value)
                .map_err(|e| config_write_error(e, &loc.config_file))?;
        }
        return Ok(());
    }
    if cli.config.is_none() && loc.config_file != data.join(CONFIG_FILE) {
        // The packaged config, named by --data: not ours to create.
        return Ok(());
    }
    if let Some(listen) = listen {
        settings.push(("listen", listen.to_string().into()));
    }
    if loc.config_file.parent() != Some(data) {
        let text = data
            .to_str()
            .context("the data dir's path is not UTF-8: choose another with --data")?;
        settings.push(("data_dir", text.into()));
        if let Some(parent) = loc.config_file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
    }
    RelayConfig::write_new(&loc.config_file, &settings)
        .map_err(|e| config_write_error(e, &loc.config_file))?;
    say!("wrote a commented config to {}", loc.config_file.display());
    Ok(())
}

/// What a relay keeps in its data dir (and what may already be there before one is made:
/// `lost+found` of a disk mounted there).
const RELAY_FILES: [&str; 10] = [
    STORE_FILE,
    STORE_JOURNAL_FILES[0],
    STORE_JOURNAL_FILES[1],
    hearth_relay::server::tls::CERT_FILE,
    hearth_relay::server::tls::KEY_FILE,
    CONFIG_FILE,
    "hearth-relay.toml.new",
    admin::SOCKET_FILE,
    "blobs",
    "lost+found",
];

/// Refuses to make a relay in a directory that already holds other things (`--data /tmp`,
/// `--data ~`): the relay restricts its data dir to its owner (mode 0700), which would
/// shut everyone else out of it, and would mix its store with foreign files. A new or
/// empty directory, or one a relay already uses, is fine. (A directory it cannot read is
/// left to the step that creates the relay, which says so.)
fn refuse_foreign_dir(data: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(data) else {
        return Ok(());
    };
    let mut foreign: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !RELAY_FILES.contains(&name.as_str()))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort_unstable();
    // Debug-quoted: a file name may hold control characters.
    let shown: Vec<String> = foreign.iter().take(3).map(|n| format!("{n:?}")).collect();
    bail!(
        "{} already holds other files ({}{}), so it is no place for a relay: the relay makes \
         its data dir private (mode 0700), which would shut everyone else out of it. Give \
         a new or empty directory with --data, e.g. --data {}",
        data.display(),
        shown.join(", "),
        if foreign.len() > shown.len() {
            ", ..."
        } else {
            ""
        },
        data.join("hearth-relay").display()
    )
}

/// Refuses a data dir whose identity is half there, or whose files are symbolic links.
///
/// The certificate and its key are the relay's identity (the pin every family member's
/// client holds): with one of them missing the relay would make a new identity and
/// everyone would be told the relay changed, so it stops and says to restore it. And the
/// relay (root, for the package's `init`) must not write through a link planted in the
/// data dir to a file elsewhere.
fn check_identity_files(data: &Path) -> Result<()> {
    use hearth_relay::server::tls::{CERT_FILE, KEY_FILE};
    refuse_links(data)?;
    let cert = data.join(CERT_FILE).exists();
    let key = data.join(KEY_FILE).exists();
    if cert != key {
        let (missing, present) = if cert {
            (KEY_FILE, CERT_FILE)
        } else {
            (CERT_FILE, KEY_FILE)
        };
        bail!(
            "{} has {present} but not {missing}: together they are the relay's identity, \
             which every family member's client has pinned. Restore {missing} from a backup \
             (see the backup section of deploy-pi.md). Only to give the relay a new identity \
             (everyone is then told it changed and must be invited again), move {present} \
             away too",
            data.display()
        );
    }
    Ok(())
}

/// Refuses a data dir whose certificate, key or store is a symbolic link: the relay, or
/// root running an owner command on a stopped relay, must not open (and change the mode
/// of) a file elsewhere that someone with the service user's rights pointed it at.
fn refuse_links(data: &Path) -> Result<()> {
    use hearth_relay::server::tls::{CERT_FILE, KEY_FILE};
    let [journal_0, journal_1] = STORE_JOURNAL_FILES;
    for name in [CERT_FILE, KEY_FILE, STORE_FILE, journal_0, journal_1] {
        let path = data.join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!(
                "{} is a symbolic link: a relay's files must be plain files in its data dir, \
                 and it does not open them through links. Replace it with the file itself",
                path.display()
            );
        }
    }
    Ok(())
}

fn config_write_error(e: hearth_relay::config::ConfigError, file: &Path) -> anyhow::Error {
    let denied = matches!(&e, hearth_relay::config::ConfigError::Io { source, .. }
        if source.kind() == std::io::ErrorKind::PermissionDenied);
    if denied {
        anyhow!(
            "cannot write {}: permission denied. The packaged relay's config belongs to \
             root: run the command with sudo",
            file.display()
        )
    } else {
        anyhow::Error::new(e)
    }
}

/// What to tell the owner about the first invite of a relay nobody has joined yet: a new
/// invite when none is open (the first start, or a first start that failed half-way),
/// a hint when one is, or how to give the relay an address when it has none.
async fn first_invite(
    relay: &hearth_relay::Relay,
    config: &RelayConfig,
    address: &hearth_protocol::RelayAddress,
) -> Result<()> {
    let store = relay.store();
    if !store.accounts()?.is_empty() {
        return Ok(());
    }
    if !config.has_public_address() {
        say!(
            "no invite yet: the relay has no public address, and an invite would name {}, \
             which only this machine reaches. Set the address family members use with \
             `hearth-relay set-address HOST[:PORT]` (e.g. raspberrypi.local, or a dynamic \
             DNS name and the router's port), then `hearth-relay invite` prints the first \
             invite",
            address.host_port()
        );
        return Ok(());
    }
    let now = hearth_relay::service::unix_now();
    let open = store
        .invites()?
        .iter()
        .any(|i| i.uses_left > 0 && i.expires.is_none_or(|e| e > now));
    if open {
        say!(
            "nobody has registered yet: `hearth-relay invite` prints a new invite if the \
             first one was lost (`hearth-relay invites` lists the open ones)"
        );
        return Ok(());
    }
    let token = relay
        .mint_invite(1, Some(Duration::from_secs(7 * 24 * 3600)))
        .context("cannot mint the first invite")?;
    let invite = hearth_protocol::Invite {
        relay: address.clone(),
        token,
    };
    say!("first admin invite (one use, 7 days): {invite}");
    Ok(())
}

async fn serve(cli: &Cli) -> Result<()> {
    let loc = locate(cli)?;
    if loc.found == Found::System {
        bail!(
            "the packaged relay ({}) runs as a service: start it with `sudo systemctl start \
             hearth-relay` (its log: `journalctl -u hearth-relay`). To run a relay of your \
             own, pass --data DIR",
            loc.config_file.display()
        );
    }
    refuse_root_in_anothers_dir(&loc)?;
    let config = with_flags(loc.config.clone(), cli, cli.listen);
    check_port_free(config.listen)?;
    create_relay_dir(&loc, cli, None, false)?;
    let running = hearth_relay::start(config.clone())
        .await
        .with_context(|| format!("cannot start the relay on {}", config.listen))?;
    say!("hearth relay listening on {}", running.local_addr());
    say!("relay address: {}", running.address());
    if config.has_public_address() {
        // (Without one, `first_invite` says what to do.)
        note_reach(&running.address().host);
    }
    first_invite(running.relay(), &config, &running.address()).await?;
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

async fn init(cli: &Cli, listen: Option<SocketAddr>) -> Result<()> {
    let loc = locate(cli)?;
    let data = loc.data_dir().to_path_buf();
    let missing = matches!(std::fs::metadata(data.join(STORE_FILE)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if loc.found == Found::System && !missing {
        // Nothing named a place, and the packaged relay exists (or is root's to see).
        bail!(
            "the packaged relay exists already ({}, data in {}): `sudo hearth-relay invite` \
             prints an invite for it. To create a relay of your own, pass --data DIR",
            loc.config_file.display(),
            data.display()
        );
    }
    match std::fs::metadata(data.join(STORE_FILE)) {
        Ok(_) => bail!(
            "a relay already exists in {}: start it with `hearth-relay{}` (or `sudo \
             systemctl start hearth-relay` for the packaged one); `hearth-relay invite` \
             prints an invite",
            data.display(),
            if loc.found == Found::Given {
                format!(" --data {}", data.display())
            } else {
                String::new()
            }
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(permission_denied(&data, "init"))
        }
        Err(_) => {}
    }
    create_relay_dir(&loc, cli, listen, true)?;
    let config = RelayConfig {
        data_dir: data.clone(),
        ..RelayConfig::load(&loc.config_file)?
    };
    let config = with_flags(config, cli, listen);
    let identity = hearth_relay::server::tls::load_or_generate(&data)?;
    drop(hearth_relay::RedbStore::open(&data.join(STORE_FILE))?);
    let address = config.address(config.listen, identity.pin);
    say!("created a relay in {}", data.display());
    say!("relay address: {address}");
    if config.has_public_address() {
        note_reach(&address.host);
        let request = AdminRequest::Invite {
            uses: 1,
            expires_secs: Some(7 * 24 * 3600),
            public_host: None,
        };
        match admin::offline(&config, request).await? {
            AdminResponse::Invite(line) => say!("first admin invite (one use, 7 days): {line}"),
            other => bail!("cannot mint the first invite: {other:?}"),
        }
    } else {
        say!(
            "no invite yet: set the address family members reach the relay at with \
             `hearth-relay set-address HOST[:PORT]`, then `hearth-relay invite`"
        );
    }
    Ok(())
}

fn set_address(cli: &Cli, address: &str) -> Result<()> {
    let loc = locate(cli)?;
    if !loc.config_file.exists() {
        require_relay(&loc, "set-address")?;
    }
    RelayConfig::set_in_file(&loc.config_file, "public_host", address.into())
        .map_err(|e| config_write_error(e, &loc.config_file))?;
    let config = RelayConfig::load(&loc.config_file)?;
    if let Some(public) = config.public_address() {
        note_reach(&public.host);
    }
    let port = config
        .public_address()
        .and_then(|a| a.port)
        .unwrap_or(config.listen.port());
    say!(
        "public address set in {}: invites name {} and UDP port {port} from now on",
        loc.config_file.display(),
        config.public_host.as_deref().unwrap_or(address),
    );
    say!(
        "the router must forward UDP port {port} to this machine's port {}; a running relay \
         shows the new address in `status` after a restart. Family members who joined \
         with the old address move with `hearth relay set-address {address}`",
        config.listen.port()
    );
    Ok(())
}

/// What the owner is told after a ban: its room connections close within the grace
/// period (decision 0016), but the person can come back with a new account through an
/// invite that still has uses, or open registration, and keeps the rooms' keys until
/// their admins remove them.
fn ban_note(invites: &[hearth_relay::store::InviteRecord], open_registration: bool) -> String {
    let now = hearth_relay::service::unix_now();
    let open: Vec<_> = invites
        .iter()
        .filter(|i| i.uses_left > 0 && i.expires.is_none_or(|at| at > now))
        .collect();
    let mut note = String::from(
        "their connections are closed now, their rooms' connections within reauth_grace_secs; \
         ask each room's admins to remove them too (/kick or /ban), since they keep the rooms' keys\n",
    );
    if open_registration {
        note.push_str(
            "registration is open on this relay (open_registration): they can register again under another name\n",
        );
    }
    if !open.is_empty() {
        note.push_str(&format!(
            "{} invite(s) can still register accounts, and one they hold would let them back in: {}; revoke with `hearth-relay invites --revoke ID`\n",
            open.len(),
            open.iter().map(|i| i.id()).collect::<Vec<_>>().join(", ")
        ));
    }
    note
}

async fn owner(cli: &Cli, command: &Command) -> Result<()> {
    let loc = locate(cli)?;
    let name = command_name(command);
    require_relay(&loc, name)?;
    refuse_links(loc.data_dir())?;
    let config = with_flags(loc.config.clone(), cli, None);
    let request = match command {
        Command::Invite { uses, expires } => AdminRequest::Invite {
            uses: *uses,
            expires_secs: expires.0.map(|d| d.as_secs().max(1)),
            public_host: config.public_host.clone(),
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
        Command::Inspect => AdminRequest::Inspect,
        Command::DropFiles { room } => AdminRequest::DropFiles { room: room.clone() },
        Command::Init { .. }
        | Command::SetAddress { .. }
        | Command::Completions { .. }
        // `run` dispatches these before: they are not owner commands.
        | Command::Man { .. } => unreachable!("not an owner command"),
    };
    let response = admin::request(&config, request)
        .await
        .map_err(|e| match e {
            AdminError::NoRelay(_) => no_relay(&loc, name),
            AdminError::PermissionDenied(dir) => permission_denied(&dir, name),
            other => anyhow::Error::new(other).context(format!(
                "cannot reach the relay data in {}",
                config.data_dir.display()
            )),
        })?;
    let after_ban = match (&command, &response) {
        (Command::Ban { .. }, AdminResponse::Account(a)) if a.banned => {
            // What a ban does not stop (decision 0016): a new account. Best effort: the
            // ban itself is done.
            let invites = match admin::request(&config, AdminRequest::Invites).await {
                Ok(AdminResponse::Invites(invites)) => invites,
                _ => Vec::new(),
            };
            Some(ban_note(&invites, config.open_registration))
        }
        _ => None,
    };
    let mut out = std::io::stdout().lock();
    let printed = print_response(&mut out, response).and_then(|ok| {
        if let Some(note) = &after_ban {
            out.write_all(note.as_bytes())?;
        }
        out.flush().map(|()| ok)
    });
    match printed {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        // `hearth-relay status | head -1`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// The command's name as typed, for messages.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Init { .. } => "init",
        Command::SetAddress { .. } => "set-address",
        Command::Invite { .. } => "invite",
        Command::Accounts => "accounts",
        Command::Ban { .. } => "ban",
        Command::Unban { .. } => "unban",
        Command::Invites { .. } => "invites",
        Command::Status => "status",
        Command::Quota { .. } => "quota",
        Command::Audit { .. } => "audit",
        Command::Inspect => "inspect",
        Command::DropFiles { .. } => "drop-files",
        Command::Completions { .. } => "completions",
        Command::Man { .. } => "man",
    }
}

/// Prints, on standard error, who else could reach the relay at `host` (its address, as
/// invites name it) when that is hardly anyone (see
/// [`hearth_relay::config::PublicAddress::reach_note`]).
fn note_reach(host: &str) {
    let address = hearth_relay::config::PublicAddress {
        host: host.to_string(),
        port: None,
    };
    if let Some(note) = address.reach_note() {
        eprintln!("note: {note}");
    }
}

fn parse_public_host(text: &str) -> Result<String, String> {
    hearth_relay::config::check_public_host(text)
}

/// Prints completions for `shell` (into memory first: clap_complete panics when its
/// writer fails, e.g. `| head`).
fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hearth-relay", &mut script);
    write_out(&script)
}

/// Prints the man page, or writes one page per command into `out_dir` (the pages the
/// main page names).
fn man(out_dir: Option<&Path>) -> Result<()> {
    match out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            write_out(&page)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            say!(
                "wrote the man pages into {}: e.g. `man -l {}/hearth-relay.1`",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
    }
}

/// Writes `bytes` to standard output; a reader that went away (`| head`) ends quietly.
fn write_out(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
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

/// A time kept in the store (seconds since the epoch) for a table: `-` for none, and
/// "after 9999" past what RFC 3339 can write (an invite minted to last "forever" in
/// seconds, by an older version or another tool: printing it must not stop the listing).
fn when(secs: u64) -> String {
    /// 10000-01-01T00:00:00Z.
    const YEAR_10000: u64 = 253_402_300_800;
    match secs {
        0 => "-".into(),
        YEAR_10000.. => "after 9999".into(),
        _ => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string(),
    }
}

/// The status line of the store's disk syncs: how many since the relay started, and
/// how long they took (every acknowledged write waits for one).
fn disk_syncs(syncs: &hearth_relay::store::sync_times::SyncHistogram) -> String {
    match (
        syncs.quantile_ms(0.5),
        syncs.quantile_ms(0.99),
        syncs.quantile_ms(1.0),
    ) {
        (Some(p50), Some(p99), Some(max)) => format!(
            "disk syncs: {} since start, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms \
             (each acknowledged write waits for one)",
            syncs.count()
        ),
        _ => "disk syncs: none yet".to_string(),
    }
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
            if let Some(syncs) = &s.disk_syncs {
                writeln!(out, "{}", disk_syncs(syncs))?;
            }
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
                writeln!(
                    out,
                    "rooms:     {} room connections admitted by token, {} closed for not being admitted again after a ban",
                    m.admitted, m.readmit_timeouts
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
        AdminResponse::Inspect(report) => {
            for line in hearth_relay::inspect::render(&report) {
                writeln!(out, "{line}")?;
            }
            if !report.unexpected_links().is_empty() {
                return Ok(false);
            }
        }
        AdminResponse::FilesDropped(dropped) => {
            writeln!(
                out,
                "deleted {} file(s), {}, of room {}",
                dropped.files,
                bytes(dropped.bytes),
                dropped.room.to_hex()
            )?;
            if dropped.busy > 0 {
                writeln!(
                    out,
                    "{} file(s) being written to at that moment were left: run it again",
                    dropped.busy
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_time_prints() {
        assert_eq!(when(0), "-");
        assert_eq!(when(86_400), "1970-01-02T00:00:00Z");
        assert_eq!(when(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(when(253_402_300_800), "after 9999");
        assert_eq!(when(u64::MAX), "after 9999");
    }

    #[test]
    fn invite_lifetimes_are_bounded() {
        assert_eq!(parse_expiry("never"), Ok(Expiry(None)));
        assert_eq!(
            parse_expiry("7days"),
            Ok(Expiry(Some(Duration::from_secs(7 * 86_400))))
        );
        assert!(parse_expiry("0s").is_err());
        assert!(parse_expiry("101years").is_err());
        assert!(parse_expiry("18446744073709551615s").is_err());
        assert!(Cli::try_parse_from(["hearth-relay", "invite", "--uses", "0"]).is_err());
        assert!(Cli::try_parse_from(["hearth-relay", "invite", "--uses", "1"]).is_ok());
    }
}
