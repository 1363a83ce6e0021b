//! The real transport: QUIC (quinn) with TLS 1.3 (rustls, ring), ALPN `hearth/1`, the
//! relay's key pinned, and all frames on one bidirectional stream.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::limits::TLS_EXPORTER_LABEL;
use hearth_protocol::{
    ClientHello, CloseReason, RelayAddress, ServerHello, ALPN, SUPPORTED_VERSIONS,
};

use super::frames::{read_frame, write_frame, FrameLink};
use super::pin::PinVerifier;
use super::{BoxFuture, Connection, Connector, TransportError};

/// How long connecting (QUIC + TLS + hello) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an idle connection sends a keep-alive (1 s: one small packet a second).
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// How long a connection may hear nothing before it counts as dead: four keep-alives, so
/// a few lost packets on a home Wi-Fi do not drop it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// How long a failed hello waits for the relay's close to learn why (a round trip).
const WHY_WAIT: Duration = Duration::from_secs(2);

/// Why the relay closed `connection`, if it did: its close code and reason read through
/// the fixed table of [`hearth_protocol::close`] (never the relay's text itself).
fn relay_close(error: &quinn::ConnectionError) -> Option<CloseReason> {
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => Some(CloseReason::parse(
            close.error_code.into_inner(),
            &close.reason,
        )),
        _ => None,
    }
}

/// Why the relay closed `connection` (waiting up to [`WHY_WAIT`] for the close), if it did.
async fn why_closed(connection: &quinn::Connection) -> Option<CloseReason> {
    let closed = tokio::time::timeout(WHY_WAIT, connection.closed())
        .await
        .ok()?;
    relay_close(&closed)
}

/// Connects to a relay over QUIC, checking its key against the address's pin.
pub struct QuicConnector {
    relay: RelayAddress,
}

impl QuicConnector {
    /// A connector for `relay`.
    pub fn new(relay: RelayAddress) -> Self {
        QuicConnector { relay }
    }

    async fn open(&self) -> Result<Connection, TransportError> {
        let address = self.relay.to_string();
        let unreachable = |reason: String| TransportError::Unreachable {
            address: address.clone(),
            reason,
        };
        let host_port = self.relay.host_port();
        let addr: SocketAddr = tokio::task::spawn_blocking(move || {
            host_port
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| unreachable("cannot resolve the host name".into()))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinVerifier::new(self.relay.pin, provider.clone()));
        let mismatch = verifier.mismatch.clone();
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| unreachable(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| unreachable(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        // A relay that crashed (no CONNECTION_CLOSE) is noticed within IDLE_TIMEOUT, not
        // quinn's default 30 s; the relay, too, takes the smaller of both sides' idle
        // timeouts, so it notices a vanished client (presence) as fast.
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("a few seconds fit a VarInt"),
        ));
        config.transport_config(Arc::new(transport));

        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().expect("literal socket address")
        } else {
            "0.0.0.0:0".parse().expect("literal socket address")
        };
        let endpoint = quinn::Endpoint::client(bind).map_err(|e| unreachable(e.to_string()))?;
        // The verifier ignores the name; rustls still wants a syntactically valid one.
        let server_name =
            if rustls::pki_types::ServerName::try_from(self.relay.host.as_str()).is_ok() {
                self.relay.host.clone()
            } else {
                "hearth-relay".to_string()
            };
        let connecting = endpoint
            .connect_with(config, addr, &server_name)
            .map_err(|e| unreachable(e.to_string()))?;
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if *mismatch.lock().unwrap_or_else(|p| p.into_inner()) {
                    return Err(TransportError::PinMismatch { address });
                }
                return Err(unreachable(e.to_string()));
            }
            Err(_) => return Err(unreachable("timed out".into())),
        };

        let mut exporter = [0u8; 32];
        connection
            .export_keying_material(&mut exporter, TLS_EXPORTER_LABEL, b"")
            .map_err(|_| unreachable("TLS exporter unavailable".into()))?;

        // A relay that refuses us (an address blocked after failed logins, too many
        // connections signing in from it) completes the handshake only to close with a
        // reason: it is told, not reported as "cannot reach".
        let hello = async {
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
            write_frame(
                &mut send,
                &ClientHello {
                    versions: SUPPORTED_VERSIONS.to_vec(),
                },
            )
            .await?;
            let mut buf = Vec::new();
            let hello = tokio::time::timeout(
                CONNECT_TIMEOUT,
                read_frame::<_, ServerHello>(&mut recv, &mut buf),
            )
            .await
            .map_err(|_| "no answer to hello".to_string())??
            .ok_or_else(|| "the relay closed the connection".to_string())?;
            Ok::<_, String>((send, recv, buf, hello))
        };
        let (send, recv, buf, hello) = match hello.await {
            Ok(answered) => answered,
            Err(e) => {
                return Err(match why_closed(&connection).await {
                    Some(reason) => TransportError::ClosedByRelay(reason),
                    None => unreachable(e),
                })
            }
        };
        let challenge = match hello {
            ServerHello::Accepted { challenge, .. } => challenge,
            ServerHello::Rejected { message, .. } => return Err(TransportError::Version(message)),
        };
        let closer = connection.clone();
        let watched = connection.clone();
        let (link, events) = FrameLink::start_watching(
            recv,
            buf,
            send,
            Box::new(move || closer.close(0u32.into(), b"bye")),
            Box::pin(async move { relay_close(&watched.closed().await) }),
        );
        // Keep the endpoint alive as long as the connection: the reader task owns it.
        let keep = (endpoint, connection);
        tokio::spawn(async move {
            keep.1.closed().await;
            drop(keep);
        });
        Ok(Connection {
            link,
            events,
            challenge,
            exporter,
        })
    }
}

impl Connector for QuicConnector {
    fn connect(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(self.open())
    }

    fn address(&self) -> String {
        self.relay.to_string()
    }
}
