//! The relay's long-lived self-signed certificate and the QUIC/TLS configuration.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::{Pin, ALPN};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::ServerError;
use crate::config::RelayConfig;

/// File holding the certificate (DER).
pub const CERT_FILE: &str = "relay-cert.der";
/// File holding the private key (PKCS#8 DER, mode 0600).
pub const KEY_FILE: &str = "relay-key.der";

/// The relay's certificate, key and the pin clients check.
pub struct Identity {
    /// The self-signed certificate.
    pub cert: CertificateDer<'static>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub pin: Pin,
}

/// The relay's QUIC endpoint settings that must survive a restart: the key of its
/// stateless resets (RFC 9000 section 10.3) and the key its connection IDs are checked
/// with, both derived from its TLS private key. So a relay restarted after a crash
/// recognises the connection IDs it gave out before and answers their packets with a reset
/// the clients accept: they reconnect at once instead of waiting out their idle timeout.
pub fn endpoint_config(identity: &Identity) -> quinn::EndpointConfig {
    use sha2::{Digest, Sha256};
    let derive = |label: &[u8]| {
        let mut seed = Sha256::new();
        seed.update(label);
        seed.update(identity.key.secret_der());
        zeroize::Zeroizing::new(seed.finalize())
    };
    let reset = derive(b"hearth-stateless-reset-v1\0");
    let cid = derive(b"hearth-connection-ids-v1\0");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset,
    )));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// The pin of a DER certificate: SHA-256 of its SubjectPublicKeyInfo, exactly as a client
/// computes it from the certificate the relay presents.
pub fn pin_of_cert(cert: &CertificateDer<'_>) -> Result<Pin, ServerError> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)
        .map_err(|e| ServerError::Certificate(e.to_string()))?;
    Ok(Pin::of_spki(parsed.subject_public_key_info().as_ref()))
}

/// Reads the pin of the certificate stored in `data_dir`, if there is one.
pub fn stored_pin(data_dir: &Path) -> Result<Option<Pin>, ServerError> {
    match std::fs::read(data_dir.join(CERT_FILE)) {
        Ok(der) => pin_of_cert(&CertificateDer::from(der)).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::Io(e)),
    }
}

/// Loads the certificate from `data_dir`, or generates and stores one (ECDSA P-256).
pub fn load_or_generate(data_dir: &Path) -> Result<Identity, ServerError> {
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        let cert = CertificateDer::from(std::fs::read(&cert_path)?);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(std::fs::read(&key_path)?));
        let pin = pin_of_cert(&cert)?;
        return Ok(Identity { cert, key, pin });
    }
    let cert_err = |e: rcgen::Error| ServerError::Certificate(e.to_string());
    let key_pair = rcgen::KeyPair::generate().map_err(cert_err)?;
    let params =
        rcgen::CertificateParams::new(vec!["hearth-relay".to_string()]).map_err(cert_err)?;
    let cert = params.self_signed(&key_pair).map_err(cert_err)?;
    let key_der = key_pair.serialize_der();
    write_private(&key_path, &key_der)?;
    write_private(&cert_path, cert.der().as_ref())?;
    let cert = cert.der().clone();
    let pin = pin_of_cert(&cert)?;
    Ok(Identity {
        cert,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)),
        pin,
    })
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // A link planted at `path` (by whoever else can write the data directory) is not
    // followed: the key is never written through it somewhere else.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Bytes quinn keeps per connection written but not acknowledged (see
/// `TransportConfig::send_window`): with the relay's own queue
/// (`max_queued_bytes_per_connection`) it bounds what one connection holds. 2 MiB still
/// carries 20 MB/s at 100 ms of round trip.
pub const SEND_WINDOW: u64 = 2 * 1024 * 1024;

/// The quinn server configuration: TLS 1.3 with ring, ALPN `hearth/1`, one stream.
pub fn server_config(
    identity: &Identity,
    config: &RelayConfig,
) -> Result<quinn::ServerConfig, ServerError> {
    let tls_err = |e: rustls::Error| ServerError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    let idle = Duration::from_secs(config.idle_timeout_secs.max(1));
    transport.max_idle_timeout(Some(
        idle.try_into()
            .map_err(|_| ServerError::Tls("idle timeout too large".into()))?,
    ));
    // quinn keeps up to this much of what was written and not yet acknowledged per
    // connection (10 MB by default), on top of the relay's own queue: a client granting
    // flow credit but never acknowledging would hold it all.
    transport.send_window(SEND_WINDOW);
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    server.transport_config(Arc::new(transport));
    Ok(server)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A link planted where the key goes (by whoever else can write the data directory)
    /// is not followed: generating fails and the link's target is left as it was.
    #[test]
    fn a_planted_link_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"not yours").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(KEY_FILE)).unwrap();
        assert!(load_or_generate(dir.path()).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"not yours");
    }
}
