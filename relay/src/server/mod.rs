//! The QUIC server: accept loop with address validation and per-IP limits on
//! connections not yet authenticated ([`admission`]), and graceful shutdown.
//!
//! [`start`] opens the store, loads or creates the certificate, binds, and spawns the
//! accept loop, the retention sweeper and the admin socket. Each connection runs in its
//! own task ([`conn`]). [`RunningRelay::shutdown`] stops accepting, lets connections
//! finish their in-flight commits, closes them, and stops the writer.

mod admission;
mod conn;
pub use conn::close;
mod runtime;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::RelayAddress;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::RelayConfig;
use crate::service::{unix_now, Metrics, Relay};
use crate::store::{RedbStore, StoreError};

/// File name of the database in the data dir.
pub const STORE_FILE: &str = "relay.redb";
/// The store's journal beside it (decision 0019): the store's last commits, written again
/// into it after a crash.
pub const STORE_JOURNAL_FILES: [&str; 2] = ["relay.redb.journal-0", "relay.redb.journal-1"];

/// How long shutdown waits for connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits, once the endpoint is closed and idle, for quinn's own tasks
/// to end by themselves before aborting them.
const QUIC_RELEASE_GRACE: Duration = Duration::from_secs(3);

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A file or socket operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The certificate could not be created or read.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The TLS configuration was refused.
    #[error("tls: {0}")]
    Tls(String),
    /// A background task failed.
    #[error("task: {0}")]
    Task(String),
}

/// A relay serving in this process.
pub struct RunningRelay {
    relay: Relay,
    local_addr: SocketAddr,
    address: RelayAddress,
    data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    endpoint: quinn::Endpoint,
    runtime: runtime::TrackedRuntime,
}

impl RunningRelay {
    /// The bound address (the real port when listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `hearth://HOST:PORT/#PIN` with `public_host` or the bound IP.
    pub fn address(&self) -> RelayAddress {
        self.address.clone()
    }

    /// The relay's shared state (to mint invites in tests and demos).
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops accepting, lets in-flight requests finish, closes connections and the store.
    /// Returns once every task it started has ended and the UDP port is released, so the
    /// same address can be bound again at once.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        let mut failed = None;
        for task in self.tasks {
            if let Err(e) = task.await {
                failed = Some(ServerError::Task(e.to_string()));
            }
        }
        let reason = hearth_protocol::CloseReason::ShuttingDown;
        self.endpoint
            .close(reason.code().into(), reason.reason().as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        // The last handle: with it gone the endpoint driver ends and drops the socket.
        drop(self.endpoint);
        // Aborts what did not stop in time, so the port is free either way.
        self.runtime.wait_released(QUIC_RELEASE_GRACE).await;
        self.relay.close().await;
        let _ = std::fs::remove_file(self.data_dir.join(crate::admin::SOCKET_FILE));
        tracing::info!("relay stopped");
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Creates `dir` (and parents) and restricts it to its owner.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The address to print: `public_host` (and its port) or the IP, and the bound port
/// (see [`RelayConfig::address`]).
pub fn relay_address(
    config: &RelayConfig,
    addr: SocketAddr,
    pin: hearth_protocol::Pin,
) -> RelayAddress {
    config.address(addr, pin)
}

/// Starts a relay: store, certificate, QUIC endpoint, accept loop, sweeper, admin socket.
pub async fn start(config: RelayConfig) -> Result<RunningRelay, ServerError> {
    let data_dir = config.data_dir.clone();
    create_private_dir(&data_dir)?;
    let store = RedbStore::open(&data_dir.join(STORE_FILE))?;
    let identity = tls::load_or_generate(&data_dir)?;
    let server_config = tls::server_config(&identity, &config)?;
    let runtime = runtime::TrackedRuntime::default();
    let endpoint = quinn::Endpoint::new(
        tls::endpoint_config(&identity),
        Some(server_config),
        std::net::UdpSocket::bind(config.listen)?,
        Arc::new(runtime.clone()),
    )?;
    let local_addr = endpoint.local_addr()?;
    let address = relay_address(&config, local_addr, identity.pin);
    let relay = Relay::new(config, Arc::new(store));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(accept_loop(
            endpoint.clone(),
            relay.clone(),
            shutdown_rx.clone(),
        )),
        tokio::spawn(sweep_loop(relay.clone(), shutdown_rx.clone())),
        tokio::spawn(crate::admin::serve(
            data_dir.clone(),
            crate::admin::bind(&data_dir),
            relay.clone(),
            address.clone(),
            shutdown_rx,
        )),
    ];
    tracing::info!(%local_addr, "relay listening");
    Ok(RunningRelay {
        relay,
        local_addr,
        address,
        data_dir,
        shutdown,
        tasks,
        endpoint,
        runtime,
    })
}

async fn accept_loop(endpoint: quinn::Endpoint, relay: Relay, mut shutdown: watch::Receiver<bool>) {
    let admission = admission::Admission::default();
    // Connections that never sign in and carry rooms (decision 0013 part 5).
    let rooms = admission::Admission::default();
    let mut connections = JoinSet::new();
    let metrics = relay.shared.metrics.clone();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let peer = incoming.remote_address();
        let ip = peer.ip().to_canonical();
        if !incoming.remote_address_validated() && incoming.may_retry() {
            // Stateless: the client proves it receives at its address before anything is
            // kept for it, so bare or spoofed Initials take no slot.
            Metrics::bump(&metrics.retries);
            if let Err(e) = incoming.retry() {
                e.into_incoming().ignore();
            }
            continue;
        }
        let (slot, evicted) = admission.take(ip, relay.config().max_connections_per_ip);
        if evicted {
            Metrics::bump(&metrics.unauthenticated_evicted);
            tracing::info!(%peer, "too many unauthenticated connections from this address; the oldest gives way");
        }
        if relay.is_blocked(ip) {
            Metrics::bump(&metrics.connections_refused);
            tracing::warn!(%peer, "connection refused: address blocked after failed authentications");
            connections.spawn(conn::refuse_blocked(incoming, relay.clone(), slot));
            continue;
        }
        let relay = relay.clone();
        let shutdown = shutdown.clone();
        let rooms = rooms.clone();
        connections.spawn(async move {
            conn::serve(incoming, relay, shutdown, slot, rooms).await;
        });
    }
    // Stop accepting; give connections time to finish what they started.
    endpoint.set_server_config(None);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("connections did not finish in time; closing them");
        connections.shutdown().await;
    }
}

async fn sweep_loop(relay: Relay, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs(relay.config().sweep_interval_secs.max(1));
    let mut next = tokio::time::Instant::now() + Duration::from_secs(5).min(every);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
        next = tokio::time::Instant::now() + every;
        let sweep = tokio::select! {
            sweep = relay.sweep(unix_now()) => sweep,
            _ = shutdown.changed() => return,
        };
        match sweep {
            Ok(t) if t.entries + t.inbox + t.listings + t.epochs > 0 => {
                tracing::info!(
                    entries = t.entries,
                    inbox = t.inbox,
                    listings = t.listings,
                    epochs = t.epochs,
                    batches = t.batches,
                    "retention sweep deleted expired envelopes"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
    }
}
