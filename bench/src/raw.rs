//! The reference: a raw quinn fan-out with nothing durable, the transport alone.
//!
//! Same TLS (1.3, ring), ALPN and send window as the relay, one bidirectional stream per
//! connection, length-prefixed frames. A connection's first byte says what it is: `S`, a
//! subscriber (answered with an empty frame once registered), or `P`, a publisher whose
//! every frame is queued to every subscriber as one shared buffer and then answered with
//! an empty frame. Each subscriber's queue is written by its own task, as many frames per
//! write as are waiting. This is the floor the relay is held against: what it costs to
//! move the bytes, with no store, no authentication and no encoding.
//!
//! It runs as its own process (`hearth-bench raw-server`), so its CPU time and memory are
//! read from /proc exactly like the relay's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use hearth_protocol::limits::MAX_FRAME_LEN;
use hearth_protocol::{Pin, RelayAddress, ALPN};
use tokio::sync::mpsc;

/// Frames queued per subscriber before the publisher waits (about 4 MiB of 1 KiB frames,
/// the relay's default queue bound).
const QUEUE_FRAMES: usize = 4096;
/// The relay's per-connection send window (`server::tls::SEND_WINDOW`).
const SEND_WINDOW: u64 = 2 * 1024 * 1024;
/// The empty frame: a subscriber's "registered", a publisher's acknowledgement.
const EMPTY: [u8; 4] = [0; 4];

type Subscribers = Arc<Mutex<Vec<mpsc::Sender<Bytes>>>>;

/// Runs the raw fan-out server on 127.0.0.1:0 until killed; prints its address first.
pub async fn serve() -> Result<()> {
    let key_pair = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["hearth-relay".to_string()])?.self_signed(&key_pair)?;
    let cert_der = cert.der().clone();
    let parsed = rustls::server::ParsedCertificate::try_from(&cert_der)?;
    let pin = Pin::of_spki(parsed.subject_public_key_info().as_ref());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(60).try_into()?));
    transport.send_window(SEND_WINDOW);
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    server.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse()?)?;
    let port = endpoint.local_addr()?.port();
    let address = RelayAddress {
        host: "127.0.0.1".into(),
        port,
        pin,
    };
    println!("relay address: {address}");
    let subscribers: Subscribers = Arc::default();
    while let Some(incoming) = endpoint.accept().await {
        let subscribers = subscribers.clone();
        // A connection ends when the bench closes it; nothing to report.
        tokio::spawn(async move {
            let _ = connection(incoming, subscribers).await;
        });
    }
    Ok(())
}

async fn connection(incoming: quinn::Incoming, subscribers: Subscribers) -> Result<()> {
    let conn = incoming.await?;
    let (mut send, mut recv) = conn.accept_bi().await?;
    let mut role = [0u8; 1];
    recv.read_exact(&mut role).await?;
    match role[0] {
        b'S' => {
            let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE_FRAMES);
            subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(tx);
            send.write_all(&EMPTY).await?;
            let mut batch = Vec::with_capacity(256);
            while rx.recv_many(&mut batch, 256).await > 0 {
                send.write_all_chunks(&mut batch).await?;
                batch.clear();
            }
            Ok(())
        }
        b'P' => {
            let mut waiting = Vec::new();
            loop {
                let mut prefix = [0u8; 4];
                if recv.read_exact(&mut prefix).await.is_err() {
                    return Ok(());
                }
                let len = u32::from_be_bytes(prefix) as usize;
                anyhow::ensure!(len <= MAX_FRAME_LEN, "oversized frame");
                let mut frame = vec![0u8; 4 + len];
                frame[..4].copy_from_slice(&prefix);
                recv.read_exact(&mut frame[4..]).await?;
                let frame = Bytes::from(frame);
                {
                    let mut subs = subscribers.lock().unwrap_or_else(|p| p.into_inner());
                    subs.retain(|tx| match tx.try_send(frame.clone()) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            waiting.push(tx.clone());
                            true
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    });
                }
                // A full queue holds the publisher back, as the relay's would.
                for tx in waiting.drain(..) {
                    let _ = tx.send(frame.clone()).await;
                }
                send.write_all(&EMPTY)
                    .await
                    .context("acknowledging to the publisher")?;
            }
        }
        other => anyhow::bail!("unknown role byte {other}"),
    }
}
