//! Relay addresses and invites as people copy them around.
//!
//! - A relay address: `hearth://HOST:PORT/#PIN`, where PIN is the URL-safe base64 SHA-256
//!   of the relay certificate's public key.
//! - An invite: `hearth://HOST:PORT/invite/TOKEN#PIN`.
//!
//! HOST may be a name, an IPv4 address or a bracketed IPv6 address.

use std::fmt;
use std::str::FromStr;

use crate::ids::{InviteToken, Pin};

/// The default UDP port of a relay.
pub const DEFAULT_PORT: u16 = 7443;

/// Why an address or invite could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// It does not start with `hearth://`.
    #[error("a relay address starts with hearth:// (got {0:?})")]
    Scheme(String),
    /// The `#PIN` part is missing or not a valid pin.
    #[error("the relay address lacks a valid #pin after the host: ask the relay owner for the full address")]
    Pin,
    /// The host or port is missing or invalid.
    #[error("invalid host or port in relay address {0:?}")]
    HostPort(String),
    /// The invite token is missing or invalid.
    #[error("invalid invite token: copy the whole invite line the relay owner gave you")]
    Token,
}

/// Where a relay is and which key it must present.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RelayAddress {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// The pinned public key hash.
    pub pin: Pin,
}

impl RelayAddress {
    /// `host:port` as a socket address string (IPv6 bracketed).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hearth://{}/#{}", self.host_port(), self.pin)
    }
}

impl FromStr for RelayAddress {
    type Err = AddressError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port, path, pin) = split(text)?;
        if !path.is_empty() {
            return Err(AddressError::HostPort(text.chars().take(80).collect()));
        }
        Ok(RelayAddress { host, port, pin })
    }
}

/// An invitation to register on a relay: its address plus a token.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Invite {
    /// The relay.
    pub relay: RelayAddress,
    /// The registration token.
    pub token: InviteToken,
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hearth://{}/invite/{}#{}",
            self.relay.host_port(),
            self.token.encode(),
            self.relay.pin
        )
    }
}

impl FromStr for Invite {
    type Err = AddressError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port, path, pin) = split(text)?;
        let token = path
            .strip_prefix("invite/")
            .and_then(InviteToken::decode)
            .ok_or(AddressError::Token)?;
        Ok(Invite {
            relay: RelayAddress { host, port, pin },
            token,
        })
    }
}

/// Splits `hearth://HOST:PORT/PATH#PIN` into its parts.
fn split(text: &str) -> Result<(String, u16, &str, Pin), AddressError> {
    let text = text.trim();
    let rest = text
        .strip_prefix("hearth://")
        .ok_or_else(|| AddressError::Scheme(text.chars().take(80).collect()))?;
    let (rest, pin) = rest.rsplit_once('#').ok_or(AddressError::Pin)?;
    let pin = Pin::decode(pin).ok_or(AddressError::Pin)?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let bad = || AddressError::HostPort(authority.chars().take(80).collect());
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return Err(bad()),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().map_err(|_| bad())?),
            None => (authority.to_string(), DEFAULT_PORT),
        }
    };
    let host_char_ok = |c: char| c.is_ascii_alphanumeric() || ".-_:%".contains(c);
    if host.is_empty() || host.len() > 253 || !host.chars().all(host_char_ok) {
        return Err(bad());
    }
    Ok((host, port, path, pin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_names_ipv4_and_ipv6() {
        let pin = Pin([5; 32]);
        for (host, text_host) in [
            ("pi.local", "pi.local"),
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "[::1]"),
        ] {
            let text = format!("hearth://{text_host}:7443/#{pin}");
            let addr: RelayAddress = text.parse().unwrap();
            assert_eq!(addr.host, host);
            assert_eq!(addr.port, 7443);
            assert_eq!(addr.to_string(), text);
        }
    }

    #[test]
    fn default_port_and_errors() {
        let pin = Pin([5; 32]);
        let addr: RelayAddress = format!("hearth://pi.local/#{pin}").parse().unwrap();
        assert_eq!(addr.port, DEFAULT_PORT);
        assert_eq!(
            "http://x/#a".parse::<RelayAddress>(),
            Err(AddressError::Scheme("http://x/#a".into()))
        );
        assert_eq!(
            "hearth://x:1/".parse::<RelayAddress>(),
            Err(AddressError::Pin)
        );
        assert!(format!("hearth://x:99999/#{pin}")
            .parse::<RelayAddress>()
            .is_err());
        assert_eq!(
            format!("hearth://x:1/invite/zz#{pin}").parse::<Invite>(),
            Err(AddressError::Token)
        );
    }

    proptest! {
        #[test]
        fn invites_round_trip(token in any::<[u8; 16]>(), pin in any::<[u8; 32]>(), port in any::<u16>()) {
            let invite = Invite {
                relay: RelayAddress { host: "pi.local".into(), port, pin: Pin(pin) },
                token: InviteToken(token),
            };
            prop_assert_eq!(invite.to_string().parse::<Invite>(), Ok(invite));
        }

        #[test]
        fn parsing_garbage_never_panics(text in ".{0,100}") {
            let _ = text.parse::<RelayAddress>();
            let _ = text.parse::<Invite>();
            let _ = format!("hearth://{text}").parse::<Invite>();
        }
    }
}
