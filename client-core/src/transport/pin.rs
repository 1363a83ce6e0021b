//! Certificate pinning: the relay is trusted if its certificate's public key hashes to
//! the pin from the relay address. No CA, no host name check.

use std::sync::{Arc, Mutex};

use hearth_protocol::Pin;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts exactly the certificate whose SubjectPublicKeyInfo matches the pin.
#[derive(Debug)]
pub struct PinVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
    /// Set when a certificate with another key was presented, so the caller can tell a
    /// pin mismatch from other handshake failures.
    pub mismatch: Arc<Mutex<bool>>,
}

impl PinVerifier {
    /// A verifier for `pin`, checking handshake signatures with `provider`.
    pub fn new(pin: Pin, provider: Arc<CryptoProvider>) -> Self {
        PinVerifier {
            pin,
            provider,
            mismatch: Arc::default(),
        }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let spki = spki_of_certificate(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        if Pin::of_spki(spki) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            *self.mismatch.lock().unwrap_or_else(|p| p.into_inner()) = true;
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The client config only enables TLS 1.3 (QUIC requires it).
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One DER TLV: (tag, header+content, content, rest).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    Some((tag, whole, &whole[header..], &input[end..]))
}

/// Extracts the DER SubjectPublicKeyInfo (tag and length included) from an X.509
/// certificate: `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
/// OPTIONAL, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo,
/// ... }, ... }`.
pub fn spki_of_certificate(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    let (tag, _, cert_body, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, _, tbs, _) = tlv(cert_body)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // Optional explicit version [0].
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.3;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = tlv(rest)?.3;
    }
    let (tag, whole, _, _) = tlv(rest)?;
    (tag == SEQUENCE).then_some(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(spki_of_certificate(&[]), None);
        assert_eq!(
            spki_of_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(spki_of_certificate(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }
}
