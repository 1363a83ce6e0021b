//! Owner commands: over a Unix socket `<data>/admin.sock` (mode 0600) while the relay
//! runs, or directly on the store when it does not.
//!
//! The socket speaks the protocol's framing (4-byte big-endian length + postcard) with
//! [`AdminRequest`] and [`AdminResponse`]. Only the relay's owner can open the socket:
//! the data dir is 0700 and the socket 0600.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::frame::{decode_body, encode_frame};
use hearth_protocol::limits::{LENGTH_PREFIX_LEN, MAX_FRAME_LEN};
use hearth_protocol::{Handle, Invite, RelayAddress};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::config::RelayConfig;
use crate::server::{relay_address, tls, STORE_FILE};
use crate::service::{invite_op, MetricsSnapshot, Relay};
use crate::store::sync_times::SyncHistogram;
use crate::store::{
    AccountRecord, Applied, AuditRecord, InviteRecord, RedbStore, StoreError, StoreStats, WriteOp,
};

/// The socket's file name in the data dir.
pub const SOCKET_FILE: &str = "admin.sock";

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Talking to the running relay failed.
    #[error("admin socket: {0}")]
    Io(#[from] std::io::Error),
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The answer could not be decoded.
    #[error("admin protocol: {0}")]
    Protocol(String),
    /// The relay refused the command.
    #[error("{0}")]
    Refused(String),
    /// The certificate could not be read or created.
    #[error("{0}")]
    Server(#[from] crate::server::ServerError),
    /// No relay was ever created in this data directory (owner commands never create one).
    #[error("no relay in {}", .0.display())]
    NoRelay(PathBuf),
    /// The data directory belongs to another user (the packaged relay's `hearth` user).
    #[error("permission denied on {}", .0.display())]
    PermissionDenied(PathBuf),
    /// The running relay's answer does not decode, or it could not decode the request: it
    /// is another version of `hearth-relay` than this command (a package upgraded while
    /// the old relay still runs). The string is the decoder's error, or the relay's.
    #[error(
        "the running relay and this hearth-relay command do not understand each other \
         ({0}): the relay is probably another version, still running since an upgrade; \
         restart it (`sudo systemctl restart hearth-relay`) and try again"
    )]
    OtherVersion(String),
}

/// A command from the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Mint an invite.
    Invite {
        /// Registrations allowed.
        uses: u32,
        /// Seconds until it expires.
        expires_secs: Option<u64>,
        /// The public address (`host` or `host:port`, see [`crate::config::PublicAddress`])
        /// to put in the invite instead of the relay's own: the config file's, which may
        /// have changed since the relay started, or `--public-host`.
        public_host: Option<String>,
    },
    /// List accounts.
    Accounts,
    /// Ban an account.
    Ban {
        /// Whose.
        handle: Handle,
    },
    /// Lift a ban.
    Unban {
        /// Whose.
        handle: Handle,
    },
    /// List invites.
    Invites,
    /// Revoke invites whose id starts with a prefix.
    RevokeInvites {
        /// Hex prefix of the invite id.
        prefix: String,
    },
    /// Relay status.
    Status,
    /// Set (or clear) an account's quota.
    Quota {
        /// Whose.
        handle: Handle,
        /// Bytes (`None`: the relay's default).
        bytes: Option<u64>,
    },
    /// Recent suspicious events, counted per kind, address and hour.
    Audit {
        /// How many rows.
        limit: u32,
    },
    /// What the store holds per table, and whether any record links an account to a room
    /// (decision 0013).
    Inspect,
    /// Delete the files (attachments) of one room.
    DropFiles {
        /// The room's id in hex, or the start of it (as `inspect` lists rooms).
        room: String,
    },
}

/// What the relay answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminResponse {
    /// A full invite line.
    Invite(String),
    /// Accounts.
    Accounts(Vec<AccountRecord>),
    /// One account after a change.
    Account(AccountRecord),
    /// Invites.
    Invites(Vec<InviteRecord>),
    /// How many invites were revoked.
    Revoked(u64),
    /// Status.
    Status(StatusReport),
    /// Audit rows, oldest window first.
    Audit(Vec<AuditRecord>),
    /// The store's tables as [`crate::inspect`] sees them.
    Inspect(crate::inspect::InspectReport),
    /// What `DropFiles` deleted.
    FilesDropped(crate::blobs::Dropped),
    /// The command failed.
    Error(String),
}

/// What `hearth-relay status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Whether a relay process answered.
    pub running: bool,
    /// Seconds since it started.
    pub uptime_secs: Option<u64>,
    /// Its address.
    pub address: Option<String>,
    /// Store totals.
    pub store: StoreStats,
    /// Space on the file system of the data dir (`None` if it cannot be read).
    pub disk: Option<DiskSpace>,
    /// The free-space floor under which nothing new is stored (`min_free_bytes`).
    pub min_free_bytes: u64,
    /// Live counters.
    pub metrics: Option<MetricsSnapshot>,
    /// How long the running relay's disk syncs took since it started (`None` when no
    /// relay runs).
    pub disk_syncs: Option<SyncHistogram>,
}

/// Space on the file system holding the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpace {
    /// Bytes the relay (an unprivileged user) can still write.
    pub free_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

impl DiskSpace {
    /// The space on the file system holding `path`.
    pub fn of(path: &Path) -> std::io::Result<DiskSpace> {
        let stats = rustix::fs::statvfs(path)?;
        Ok(DiskSpace {
            free_bytes: stats.f_bavail.saturating_mul(stats.f_frsize),
            total_bytes: stats.f_blocks.saturating_mul(stats.f_frsize),
        })
    }
}

/// Runs a read of the store on a blocking thread: the relay's one async thread drives
/// every connection (decision 0017), and some reads scan whole tables.
async fn read<T: Send + 'static>(
    relay: &Relay,
    read: impl FnOnce(&dyn crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AdminError> {
    let store = relay.store().clone();
    tokio::task::spawn_blocking(move || read(&*store))
        .await
        .map_err(|e| AdminError::Protocol(e.to_string()))?
        .map_err(AdminError::from)
}

/// Carries out `request` on `relay`.
pub async fn execute(
    relay: &Relay,
    address: &RelayAddress,
    running: bool,
    request: AdminRequest,
) -> AdminResponse {
    let result = execute_inner(relay, address, running, request).await;
    result.unwrap_or_else(|e| AdminResponse::Error(e.to_string()))
}

async fn execute_inner(
    relay: &Relay,
    address: &RelayAddress,
    running: bool,
    request: AdminRequest,
) -> Result<AdminResponse, AdminError> {
    let refused = |e: hearth_protocol::WireError| AdminError::Refused(e.message);
    Ok(match request {
        AdminRequest::Invite {
            uses,
            expires_secs,
            public_host,
        } => {
            let address = invite_address(relay.config(), address, public_host.as_deref())?;
            let (token, op) = invite_op(uses, expires_secs.map(Duration::from_secs));
            relay.write(op).await.map_err(refused)?;
            AdminResponse::Invite(
                Invite {
                    relay: address,
                    token,
                }
                .to_string(),
            )
        }
        AdminRequest::Accounts => AdminResponse::Accounts(read(relay, |s| s.accounts()).await?),
        AdminRequest::Ban { handle } => {
            let banned = account(
                relay
                    .write(WriteOp::SetBanned {
                        handle,
                        banned: true,
                    })
                    .await
                    .map_err(refused)?,
            )?;
            if let AdminResponse::Account(record) = &banned {
                // At once, not at the next re-authentication.
                let closed = relay.shared.notifier.disconnect(&record.account);
                // And its room connections, which never signed in: every room connection
                // must be admitted again with a token of a new key, which the banned
                // account cannot get (decision 0016).
                relay.shared.admission.replace(std::time::Instant::now());
                tracing::info!(handle = %record.handle, sessions = closed, "account banned; its sessions closed");
            }
            banned
        }
        AdminRequest::Unban { handle } => account(
            relay
                .write(WriteOp::SetBanned {
                    handle,
                    banned: false,
                })
                .await
                .map_err(refused)?,
        )?,
        AdminRequest::Quota { handle, bytes } => account(
            relay
                .write(WriteOp::SetQuota {
                    handle,
                    quota: bytes,
                })
                .await
                .map_err(refused)?,
        )?,
        AdminRequest::Invites => AdminResponse::Invites(read(relay, |s| s.invites()).await?),
        AdminRequest::RevokeInvites { prefix } => {
            if prefix.is_empty() {
                return Err(AdminError::Refused("give the start of an invite id".into()));
            }
            match relay
                .write(WriteOp::RevokeInvites { prefix })
                .await
                .map_err(refused)?
            {
                Applied::Count(n) => AdminResponse::Revoked(n),
                _ => AdminResponse::Revoked(0),
            }
        }
        AdminRequest::Status => AdminResponse::Status(StatusReport {
            running,
            uptime_secs: running.then(|| relay.uptime().as_secs()),
            address: Some(address.to_string()),
            store: read(relay, |s| s.stats()).await?,
            disk: DiskSpace::of(&relay.config().data_dir)
                .inspect_err(|e| tracing::warn!(error = %e, "cannot read the disk space"))
                .ok(),
            min_free_bytes: relay.config().min_free_bytes,
            metrics: running.then(|| relay.metrics()),
            disk_syncs: running.then(|| relay.store().sync_times()).flatten(),
        }),
        AdminRequest::Audit { limit } => {
            relay.flush_audit().await;
            AdminResponse::Audit(read(relay, move |s| s.audit(limit)).await?)
        }
        AdminRequest::Inspect => {
            // On a read snapshot (it reads the whole store).
            let mut report = read(relay, |s| s.inspect()).await?;
            report.blobs = relay.blobs().rooms();
            AdminResponse::Inspect(report)
        }
        AdminRequest::DropFiles { room } => {
            let room = room_with_files(relay, &room)?;
            let dropped = relay.blobs().drop_room(&room);
            tracing::info!(
                files = dropped.files,
                bytes = dropped.bytes,
                "the owner deleted a room's files"
            );
            AdminResponse::FilesDropped(dropped)
        }
    })
}

/// The one room holding files whose hex id starts with `prefix`.
fn room_with_files(relay: &Relay, prefix: &str) -> Result<hearth_protocol::RoomId, AdminError> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AdminError::Refused(
            "give a room's id in hex (or its start), as `hearth-relay inspect` lists rooms with files".into(),
        ));
    }
    let matching: Vec<_> = relay
        .blobs()
        .rooms()
        .into_iter()
        .map(|r| r.room)
        .filter(|room| room.to_hex().starts_with(&prefix))
        .collect();
    match matching.as_slice() {
        [room] => Ok(*room),
        [] => Err(AdminError::Refused(format!(
            "no room whose id starts with {prefix} holds files: `hearth-relay inspect` lists those that do"
        ))),
        more => Err(AdminError::Refused(format!(
            "{} rooms with files have ids starting with {prefix}: give more of the id",
            more.len()
        ))),
    }
}

/// The address an invite carries: `public_host` if given, else the relay's own, unless
/// that is only a stand-in for "this machine" (no public host, listening on all
/// interfaces): an invite nobody else can use is refused, with what to do instead.
fn invite_address(
    config: &RelayConfig,
    own: &RelayAddress,
    public_host: Option<&str>,
) -> Result<RelayAddress, AdminError> {
    match public_host {
        Some(text) => {
            let public: crate::config::PublicAddress = text.parse().map_err(AdminError::Refused)?;
            Ok(RelayAddress {
                host: public.host,
                port: public.port.unwrap_or(own.port),
                pin: own.pin,
            })
        }
        None if !config.has_public_address() => Err(AdminError::Refused(format!(
            "the relay has no public address, so the invite would name {}, which only this \
             machine reaches: set the address family members use once with \
             `hearth-relay set-address HOST[:PORT]` (e.g. raspberrypi.local, or a dynamic DNS \
             name), or give --public-host HOST[:PORT] for this invite",
            own.host_port()
        ))),
        None => Ok(own.clone()),
    }
}

fn account(applied: Applied) -> Result<AdminResponse, AdminError> {
    match applied {
        Applied::Account(record) => Ok(AdminResponse::Account(record)),
        _ => Err(AdminError::Protocol("unexpected answer".into())),
    }
}

/// Reads one frame body from the admin socket (`None`: the peer closed between frames).
/// Public for the fuzz target `admin_socket` only.
#[doc(hidden)]
pub async fn read_frame<R: AsyncReadExt + Unpin>(
    stream: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; LENGTH_PREFIX_LEN];
    match stream.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Binds the admin socket `<data_dir>/admin.sock` (mode 0600), replacing a stale one.
/// Done before the relay reports that it runs, so an owner command started right after
/// finds the socket. `None` (logged): the relay runs without owner commands while up.
pub fn bind(data_dir: &Path) -> Option<tokio::net::UnixListener> {
    let path = data_dir.join(SOCKET_FILE);
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "admin socket unavailable");
            return None;
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            tracing::error!(error = %e, "cannot restrict the admin socket; closing it");
            drop(listener);
            let _ = std::fs::remove_file(&path);
            return None;
        }
    }
    Some(listener)
}

/// Serves the admin socket bound by [`bind`] until shutdown.
pub async fn serve(
    data_dir: PathBuf,
    listener: Option<tokio::net::UnixListener>,
    relay: Relay,
    address: RelayAddress,
    mut shutdown: watch::Receiver<bool>,
) {
    let path = data_dir.join(SOCKET_FILE);
    let Some(listener) = listener else {
        return;
    };
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let relay = relay.clone();
        let address = address.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            while let Ok(Some(body)) = read_frame(&mut stream).await {
                let response = match decode_body::<AdminRequest>(&body) {
                    Ok(request) => execute(&relay, &address, true, request).await,
                    Err(e) => AdminResponse::Error(format!("{UNREADABLE_REQUEST}: {e}")),
                };
                let Ok(bytes) = encode_frame(&response, MAX_FRAME_LEN) else {
                    break;
                };
                if stream.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}

/// Sends `request` to the relay running on `config.data_dir`, or, if none runs, carries
/// it out on the store directly.
pub async fn request(
    config: &RelayConfig,
    request: AdminRequest,
) -> Result<AdminResponse, AdminError> {
    match ask_running(&config.data_dir, &request).await? {
        Some(response) => Ok(response),
        None => offline(config, request).await,
    }
}

/// Sends `request` over the admin socket of the relay running on `data_dir` and reads its
/// answer. `Ok(None)`: nothing listens on the socket (no relay runs there). Errors:
/// [`AdminError::PermissionDenied`] when the socket belongs to another user, `Io` or
/// `Protocol` when the relay hangs up, [`AdminError::OtherVersion`] when its answer does
/// not decode.
pub async fn ask_running(
    data_dir: &Path,
    request: &AdminRequest,
) -> Result<Option<AdminResponse>, AdminError> {
    let mut stream = match tokio::net::UnixStream::connect(data_dir.join(SOCKET_FILE)).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(AdminError::PermissionDenied(data_dir.to_path_buf()))
        }
        Err(_) => return Ok(None),
    };
    let bytes =
        encode_frame(request, MAX_FRAME_LEN).map_err(|e| AdminError::Protocol(e.to_string()))?;
    stream.write_all(&bytes).await?;
    let body = read_frame(&mut stream)
        .await?
        .ok_or_else(|| AdminError::Protocol("the relay closed the admin socket".into()))?;
    match decode_body(&body) {
        // A relay of another version that could not read the request (one it does not
        // know, from a newer `hearth-relay`) says so with this prefix, in every version.
        Ok(AdminResponse::Error(message)) if message.starts_with(UNREADABLE_REQUEST) => {
            Err(AdminError::OtherVersion(message))
        }
        Ok(response) => Ok(Some(response)),
        Err(e) => Err(AdminError::OtherVersion(e.to_string())),
    }
}

/// How the relay answers a request it cannot decode, followed by `: ` and the decoder's
/// error (the same text since the first version: commands recognise it).
const UNREADABLE_REQUEST: &str = "bad admin request";

/// Carries out `request` on the store of a relay that is not running. Refuses with
/// [`AdminError::NoRelay`] when no relay was created in `config.data_dir`, and creates
/// nothing then.
pub async fn offline(
    config: &RelayConfig,
    request: AdminRequest,
) -> Result<AdminResponse, AdminError> {
    let data_dir: &Path = &config.data_dir;
    match std::fs::metadata(data_dir.join(STORE_FILE)) {
        Ok(meta) if meta.is_file() => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(AdminError::PermissionDenied(data_dir.to_path_buf()))
        }
        _ => return Err(AdminError::NoRelay(data_dir.to_path_buf())),
    }
    let store = RedbStore::open(&data_dir.join(STORE_FILE)).map_err(|e| match e {
        StoreError::Db(redb::Error::DatabaseAlreadyOpen) => AdminError::Refused(
            "the relay is running but its admin socket does not answer; restart it".into(),
        ),
        other => AdminError::Store(other),
    })?;
    // The certificate was made with the store (a relay missing it would make a new one on
    // start, so the invite carries the pin it will present).
    let identity = tls::load_or_generate(data_dir)?;
    let address = relay_address(config, config.listen, identity.pin);
    let relay = Relay::new(config.clone(), Arc::new(store));
    let response = execute(&relay, &address, false, request).await;
    relay.close().await;
    Ok(response)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A relay of an older version answers `status` without the fields added since (a
    /// `StatusReport` from before `disk_syncs` lacks its last byte): the owner is told to
    /// restart it, not shown a decoder's error alone.
    #[tokio::test]
    async fn an_answer_from_another_version_says_to_restart_the_relay() {
        let report = StatusReport {
            running: true,
            uptime_secs: Some(5),
            address: None,
            store: StoreStats::default(),
            disk: None,
            min_free_bytes: 0,
            metrics: None,
            disk_syncs: None,
        };
        let body = postcard::to_stdvec(&AdminResponse::Status(report)).unwrap();
        let older = &body[..body.len() - 1];
        let mut frame = u32::try_from(older.len()).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(older);
        says_to_restart_when_the_relay_answers(frame).await;
    }

    /// An older relay, asked something it does not know, answers that it cannot read the
    /// request: the command says to restart it, as for an answer it cannot read.
    #[tokio::test]
    async fn a_request_the_running_relay_cannot_read_says_to_restart_it() {
        let answer = AdminResponse::Error(
            "bad admin request: Found an enum variant that is not known".into(),
        );
        says_to_restart_when_the_relay_answers(encode_frame(&answer, MAX_FRAME_LEN).unwrap()).await;
    }

    /// Asks for the status of a relay that reads the request and answers `frame`, and
    /// checks that the command's error is [`AdminError::OtherVersion`], saying to restart.
    async fn says_to_restart_when_the_relay_answers(frame: Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::UnixListener::bind(dir.path().join(SOCKET_FILE)).unwrap();
        let relay = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let request = read_frame(&mut stream).await.unwrap().unwrap();
            assert_eq!(
                decode_body::<AdminRequest>(&request).unwrap(),
                AdminRequest::Status
            );
            stream.write_all(&frame).await.unwrap();
        });
        let error = ask_running(dir.path(), &AdminRequest::Status)
            .await
            .unwrap_err();
        assert!(matches!(error, AdminError::OtherVersion(_)), "{error}");
        assert!(error.to_string().contains("restart"), "{error}");
        relay.await.unwrap();
    }

    /// No relay listens: the answer is `None`, so `request` falls back to the store.
    #[tokio::test]
    async fn no_socket_means_no_running_relay() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ask_running(dir.path(), &AdminRequest::Status)
            .await
            .unwrap()
            .is_none());
    }
}
