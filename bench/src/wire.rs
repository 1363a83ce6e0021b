//! The bench's own clients: real QUIC with the relay's pinned key, length-prefixed
//! frames, and the few requests the load needs (hello, register, create room, subscribe,
//! append). Lean on purpose: the figures are the server's, so the clients do no more than
//! a client must.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ed25519_dalek::{Signer, SigningKey};
use hearth_core::transport::pin::PinVerifier;
use hearth_protocol::auth::auth_message;
use hearth_protocol::frame::{decode_body, encode_frame};
use hearth_protocol::limits::{MAX_FRAME_LEN, TLS_EXPORTER_LABEL};
use hearth_protocol::{
    AccountKey, ClientFrame, ClientHello, Handle, RelayAddress, Request, Response, ServerFrame,
    ServerHello, Signature, ALPN,
};

/// The pinned QUIC client configuration for `address`.
pub fn client_config(address: &RelayAddress) -> Result<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier::new(address.pin, provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// One QUIC connection (its own UDP socket, as a separate device would have) with its one
/// bidirectional stream.
pub struct Conn {
    /// Kept so the socket lives as long as the connection.
    pub endpoint: quinn::Endpoint,
    /// The connection.
    pub conn: quinn::Connection,
    /// Towards the server.
    pub send: quinn::SendStream,
    /// From the server.
    pub recv: quinn::RecvStream,
    exporter: [u8; 32],
    next_id: u32,
}

impl Conn {
    /// Connects to `address` and opens the stream.
    pub async fn open(address: &RelayAddress) -> Result<Conn> {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(client_config(address)?);
        let addr: SocketAddr = address.host_port().parse()?;
        let conn = endpoint
            .connect(addr, "hearth-relay")?
            .await
            .context("QUIC handshake with the server failed")?;
        let mut exporter = [0u8; 32];
        conn.export_keying_material(&mut exporter, TLS_EXPORTER_LABEL, b"")
            .map_err(|_| anyhow::anyhow!("no TLS exporter"))?;
        let (send, recv) = conn.open_bi().await?;
        Ok(Conn {
            endpoint,
            conn,
            send,
            recv,
            exporter,
            next_id: 1,
        })
    }

    /// Connects, says hello and registers a fresh account `handle` (the relay is open
    /// for registration).
    pub async fn register(address: &RelayAddress, handle: &str) -> Result<Conn> {
        let mut c = Conn::open(address).await?;
        let hello = encode_frame(
            &ClientHello {
                versions: vec![hearth_protocol::PROTOCOL_VERSION],
            },
            MAX_FRAME_LEN,
        )?;
        c.send.write_all(&hello).await?;
        let body = read_body(&mut c.recv)
            .await?
            .context("the relay closed before its hello")?;
        let challenge = match decode_body::<ServerHello>(&body)? {
            ServerHello::Accepted { challenge, .. } => challenge,
            other => bail!("hello rejected: {other:?}"),
        };
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let account = AccountKey(key.verifying_key().to_bytes());
        let signature = Signature(
            key.sign(&auth_message(&challenge, &c.exporter, &account))
                .to_bytes(),
        );
        c.request(Request::Register {
            invite: None,
            handle: Handle::new(handle).context("bench handle")?,
            account,
            signature,
        })
        .await
        .context("registration")?;
        Ok(c)
    }

    /// Encodes `request` as the next frame (not sent); returns its bytes.
    pub fn frame(&mut self, request: Request) -> Result<Vec<u8>> {
        let id = self.next_id;
        self.next_id += 1;
        Ok(encode_frame(&ClientFrame { id, request }, MAX_FRAME_LEN)?)
    }

    /// Sends `request` and waits for its answer (nothing else may arrive meanwhile).
    pub async fn request(&mut self, request: Request) -> Result<Response> {
        let frame = self.frame(request)?;
        self.send.write_all(&frame).await?;
        loop {
            let body = read_body(&mut self.recv)
                .await?
                .context("the relay closed the stream")?;
            match decode_body::<ServerFrame>(&body)? {
                ServerFrame::Response { result, .. } => {
                    return result.map_err(|e| anyhow::anyhow!("relay refused: {e:?}"))
                }
                ServerFrame::Event(_) => continue,
            }
        }
    }

    /// Closes the connection.
    pub fn close(self) {
        self.conn.close(0u32.into(), b"bench done");
    }
}

/// Reads one frame body; `None` at the end of the stream.
pub async fn read_body(recv: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        bail!("oversized frame of {len} bytes");
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(Some(body))
}
