//! Why the relay closed a connection: the one table of QUIC application close codes and
//! reasons (documented in docs/protocol.md, "Closes and connection limits").
//!
//! The relay closes with a code and a reason. The code is the class ([`code`]); the
//! reason is a short ASCII token from this table, optionally followed by one space and a
//! decimal number (`replaced 16`, `address-blocked 300`). A client reads both with
//! [`CloseReason::parse`] and shows its **own** text for the token ([`CloseReason`]'s
//! `Display`), never the bytes the relay sent: they are remote text. A token this
//! version does not know (or a code that does not match its token) becomes
//! [`CloseReason::Unknown`], described by its code alone.

use std::fmt;

/// The QUIC application close codes the relay uses.
pub mod code {
    /// The conversation ended normally (the client finished, the relay shut down).
    pub const DONE: u32 = 0;
    /// The relay failed.
    pub const INTERNAL: u32 = 1;
    /// The handshake, the authentication or a re-authentication was not done in time.
    pub const TIMEOUT: u32 = 2;
    /// The client does not read what the relay sends it.
    pub const NOT_READING: u32 = 3;
    /// The relay refused the client (an error frame said why where the protocol has one).
    pub const REFUSED: u32 = 4;
    /// A newer session of the same account took this one's place (the account was at
    /// its session limit).
    pub const REPLACED: u32 = 5;
}

/// Longest reason the relay sends (a token, a space and a number fit well within it).
pub const MAX_REASON_LEN: usize = 64;

/// Why the relay closed a connection, as read from its close code and reason token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Code 0, `finished`: the client ended its side (or the connection was lost).
    Finished,
    /// Code 0, `shutting-down`: the relay is stopping (a restart or an update).
    ShuttingDown,
    /// Code 1, `internal`: the relay failed.
    Internal,
    /// Code 2, `hello-timeout`: no hello within the handshake time.
    HelloTimeout,
    /// Code 2, `auth-timeout`: no authentication within the handshake time.
    AuthTimeout,
    /// Code 2, `reauth-timeout`: a re-authentication challenge was not answered in time.
    ReauthTimeout,
    /// Code 2, `readmit-timeout`: a room connection was not admitted again in time after
    /// the relay changed its admission key (decision 0016).
    ReadmitTimeout,
    /// Code 3, `queue-full`: the client kept asking without reading the answers, past
    /// the relay's per-connection byte bound.
    QueueFull,
    /// Code 3, `stalled`: the client read nothing the relay sent for too long.
    Stalled,
    /// Code 4, `banned`: the account is banned from this relay.
    Banned,
    /// Code 4, `key-rotated`: the account's key was replaced by a key rotation (from this
    /// or another connection); the old key signs in no more.
    KeyRotated,
    /// Code 4, `address-blocked SECS`: the address is blocked for up to `secs` seconds
    /// after many failed logins from it.
    AddressBlocked {
        /// How long the block lasts at the most.
        secs: u32,
    },
    /// Code 4, `auth-failures`: too many failed authentications on this connection, or
    /// for this key from this address.
    AuthFailures,
    /// Code 4, `preauth-limit`: too many requests before authenticating.
    PreauthLimit,
    /// Code 4, `malformed-frame`: a frame that does not decode.
    MalformedFrame,
    /// Code 4, `oversized-frame`: a frame over the size limit.
    OversizedFrame,
    /// Code 4, `version`: no common protocol version.
    Version,
    /// Code 4, `gave-way`: too many connections from this address not yet
    /// authenticated; the oldest (this one) made room for a newer one.
    GaveWay,
    /// Code 5, `replaced MAX`: the account had `max` sessions open; a newer one took the
    /// place of this one (the one the relay had heard from least recently).
    Replaced {
        /// The relay's per-account session limit.
        max: u32,
    },
    /// A code and reason this version does not know (shown by code only).
    Unknown {
        /// The close code.
        code: u32,
    },
}

/// What a client should do about reconnecting after a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reconnecting may work at once (a restart, a timeout, a passing limit).
    Soon,
    /// Reconnecting works only after about this many seconds.
    After(u32),
    /// Reconnecting will not help until a person acts (a ban lifted, another client
    /// closed, a software update): try rarely.
    Futile,
}

/// Every reason with its fixed code and token (the numbers in the ones that carry one are
/// placeholders). [`CloseReason::parse`] walks it.
const TABLE: [(CloseReason, u32, &str); 19] = [
    (CloseReason::Finished, code::DONE, "finished"),
    (CloseReason::ShuttingDown, code::DONE, "shutting-down"),
    (CloseReason::Internal, code::INTERNAL, "internal"),
    (CloseReason::HelloTimeout, code::TIMEOUT, "hello-timeout"),
    (CloseReason::AuthTimeout, code::TIMEOUT, "auth-timeout"),
    (CloseReason::ReauthTimeout, code::TIMEOUT, "reauth-timeout"),
    (
        CloseReason::ReadmitTimeout,
        code::TIMEOUT,
        "readmit-timeout",
    ),
    (CloseReason::QueueFull, code::NOT_READING, "queue-full"),
    (CloseReason::Stalled, code::NOT_READING, "stalled"),
    (CloseReason::Banned, code::REFUSED, "banned"),
    (CloseReason::KeyRotated, code::REFUSED, "key-rotated"),
    (
        CloseReason::AddressBlocked { secs: 0 },
        code::REFUSED,
        "address-blocked",
    ),
    (CloseReason::AuthFailures, code::REFUSED, "auth-failures"),
    (CloseReason::PreauthLimit, code::REFUSED, "preauth-limit"),
    (
        CloseReason::MalformedFrame,
        code::REFUSED,
        "malformed-frame",
    ),
    (
        CloseReason::OversizedFrame,
        code::REFUSED,
        "oversized-frame",
    ),
    (CloseReason::Version, code::REFUSED, "version"),
    (CloseReason::GaveWay, code::REFUSED, "gave-way"),
    (CloseReason::Replaced { max: 0 }, code::REPLACED, "replaced"),
];

impl CloseReason {
    /// The close code.
    pub fn code(&self) -> u32 {
        match self {
            CloseReason::Unknown { code } => *code,
            known => TABLE
                .iter()
                .find(|(r, _, _)| same_kind(r, known))
                .map_or(code::INTERNAL, |(_, code, _)| *code),
        }
    }

    /// The token (`""` for [`CloseReason::Unknown`]).
    pub fn token(&self) -> &'static str {
        TABLE
            .iter()
            .find(|(r, _, _)| same_kind(r, self))
            .map_or("", |(_, _, token)| token)
    }

    /// The reason bytes the relay sends: the token, and its number if it carries one.
    pub fn reason(&self) -> String {
        match self.number() {
            Some(n) => format!("{} {n}", self.token()),
            None => self.token().to_string(),
        }
    }

    fn number(&self) -> Option<u32> {
        match self {
            CloseReason::AddressBlocked { secs } => Some(*secs),
            CloseReason::Replaced { max } => Some(*max),
            _ => None,
        }
    }

    /// Reads a close the relay sent. Never fails: anything not in the table (an unknown
    /// token, a token under another code, a missing or malformed number, more than
    /// [`MAX_REASON_LEN`] bytes) is [`CloseReason::Unknown`] with the code.
    pub fn parse(code: u64, reason: &[u8]) -> CloseReason {
        let code = u32::try_from(code).unwrap_or(u32::MAX);
        let unknown = CloseReason::Unknown { code };
        if reason.len() > MAX_REASON_LEN {
            return unknown;
        }
        let Ok(text) = std::str::from_utf8(reason) else {
            return unknown;
        };
        let (token, number) = match text.split_once(' ') {
            Some((token, number)) => (token, Some(number)),
            None => (text, None),
        };
        let Some((kind, _, _)) = TABLE.iter().find(|(_, c, t)| *c == code && *t == token) else {
            return unknown;
        };
        let number = match number {
            None => None,
            // Digits only (`u32::from_str` would also take a leading `+`), without leading
            // zeros: one way to write each close.
            Some(n)
                if !n.is_empty()
                    && n.len() <= 10
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && (n == "0" || !n.starts_with('0')) =>
            {
                match n.parse::<u32>() {
                    Ok(n) => Some(n),
                    Err(_) => return unknown,
                }
            }
            Some(_) => return unknown,
        };
        match (*kind, number) {
            (CloseReason::AddressBlocked { .. }, Some(secs)) => {
                CloseReason::AddressBlocked { secs }
            }
            (CloseReason::Replaced { .. }, Some(max)) => CloseReason::Replaced { max },
            (CloseReason::AddressBlocked { .. } | CloseReason::Replaced { .. }, None) => unknown,
            (_, Some(_)) => unknown,
            (kind, None) => kind,
        }
    }

    /// Whether reconnecting can help, and when.
    pub fn retry(&self) -> Retry {
        match self {
            CloseReason::Finished
            | CloseReason::ShuttingDown
            | CloseReason::Internal
            | CloseReason::HelloTimeout
            | CloseReason::AuthTimeout
            | CloseReason::ReauthTimeout
            | CloseReason::ReadmitTimeout
            | CloseReason::QueueFull
            | CloseReason::Stalled
            | CloseReason::KeyRotated
            | CloseReason::GaveWay => Retry::Soon,
            CloseReason::AddressBlocked { secs } => Retry::After((*secs).max(1)),
            // Coming straight back would take the place of another of the account's
            // sessions, which would do the same: wait, so they do not take turns.
            CloseReason::Replaced { .. } => Retry::After(30),
            CloseReason::Banned
            | CloseReason::AuthFailures
            | CloseReason::PreauthLimit
            | CloseReason::MalformedFrame
            | CloseReason::OversizedFrame
            | CloseReason::Version => Retry::Futile,
            CloseReason::Unknown { code } => match *code {
                code::REFUSED => Retry::Futile,
                code::REPLACED => Retry::After(30),
                _ => Retry::Soon,
            },
        }
    }
}

fn same_kind(a: &CloseReason, b: &CloseReason) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// What the reason means to the person using the client, and what to do. Fixed text:
/// only the number of the reasons that carry one comes from the relay.
impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Finished => f.write_str("the connection ended"),
            CloseReason::ShuttingDown => {
                f.write_str("the relay is shutting down (a restart or an update)")
            }
            CloseReason::Internal => f.write_str("the relay failed (its owner finds why in its log)"),
            CloseReason::HelloTimeout => f.write_str("the connection said nothing in time"),
            CloseReason::AuthTimeout => f.write_str("signing in took too long"),
            CloseReason::ReauthTimeout => {
                f.write_str("the relay's re-authentication challenge was not answered in time")
            }
            CloseReason::ReadmitTimeout => f.write_str(
                "the relay changed its admission key and this room connection was not admitted again in time",
            ),
            CloseReason::QueueFull => f.write_str(
                "this device asked for more than it read (too much was waiting for it)",
            ),
            CloseReason::Stalled => {
                f.write_str("this device read nothing the relay sent for too long")
            }
            CloseReason::Banned => f.write_str(
                "this account is banned from the relay: ask the relay's owner",
            ),
            CloseReason::KeyRotated => f.write_str(
                "this account's key was replaced (a key rotation): signing in again takes the new key",
            ),
            CloseReason::AddressBlocked { secs } => write!(
                f,
                "this address is blocked for up to {secs} s after many failed logins from it"
            ),
            CloseReason::AuthFailures => f.write_str(
                "too many failed sign-ins: is this the right profile for this relay?",
            ),
            CloseReason::PreauthLimit => f.write_str("too many requests before signing in"),
            CloseReason::MalformedFrame => f.write_str(
                "the relay could not read what this client sent (update hearth?)",
            ),
            CloseReason::OversizedFrame => {
                f.write_str("this client sent a message larger than the relay takes")
            }
            CloseReason::Version => f.write_str(
                "the relay and this client share no protocol version: update the older one",
            ),
            CloseReason::GaveWay => f.write_str(
                "too many connections from this address were signing in at once",
            ),
            CloseReason::Replaced { max } => write!(
                f,
                "this account has the most sessions the relay allows ({max}) and a newer one took this one's place: close other hearth windows"
            ),
            CloseReason::Unknown { code } => match *code {
                code::DONE => f.write_str("the connection ended"),
                code::INTERNAL => f.write_str("the relay failed"),
                code::TIMEOUT => f.write_str("something was not done in time"),
                code::NOT_READING => f.write_str("this device did not read what the relay sent"),
                code::REFUSED => f.write_str("the relay refused this client"),
                code::REPLACED => f.write_str(
                    "a newer session of this account took this one's place: close other hearth windows",
                ),
                code => write!(f, "close code {code}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn every_reason() -> Vec<CloseReason> {
        TABLE
            .iter()
            .map(|(r, _, _)| match r {
                CloseReason::AddressBlocked { .. } => CloseReason::AddressBlocked { secs: 300 },
                CloseReason::Replaced { .. } => CloseReason::Replaced { max: 16 },
                other => *other,
            })
            .collect()
    }

    #[test]
    fn every_reason_reads_back_as_sent() {
        for reason in every_reason() {
            let sent = reason.reason();
            assert!(sent.len() <= MAX_REASON_LEN);
            assert_eq!(
                CloseReason::parse(u64::from(reason.code()), sent.as_bytes()),
                reason,
                "{sent}"
            );
        }
    }

    #[test]
    fn tokens_are_unique() {
        let mut tokens: Vec<_> = TABLE.iter().map(|(_, _, t)| *t).collect();
        tokens.sort_unstable();
        tokens.dedup();
        assert_eq!(tokens.len(), TABLE.len());
    }

    #[test]
    fn anything_else_is_unknown_and_shown_by_code_only() {
        for (code, reason) in [
            (4u64, &b"banned please visit evil.example"[..]),
            (4, b"replaced 16"),
            (5, b"replaced"),
            (5, b"replaced +16"),
            (5, b"replaced 016"),
            (5, b"replaced 99999999999"),
            (4, b"\xff\xfe"),
            (0, b""),
            (9, b"finished"),
        ] {
            let parsed = CloseReason::parse(code, reason);
            assert_eq!(
                parsed,
                CloseReason::Unknown { code: code as u32 },
                "{reason:?}"
            );
        }
        let shown = CloseReason::parse(4, b"visit evil.example").to_string();
        assert!(!shown.contains("evil"), "{shown}");
        assert_eq!(
            CloseReason::parse(u64::MAX, b"x"),
            CloseReason::Unknown { code: u32::MAX }
        );
    }

    #[test]
    fn a_ban_is_futile_to_retry_and_a_restart_is_not() {
        assert_eq!(CloseReason::Banned.retry(), Retry::Futile);
        assert_eq!(CloseReason::ShuttingDown.retry(), Retry::Soon);
        assert_eq!(
            CloseReason::AddressBlocked { secs: 300 }.retry(),
            Retry::After(300)
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_never_keeps_foreign_text(code in any::<u64>(), reason in proptest::collection::vec(any::<u8>(), 0..80)) {
            let parsed = CloseReason::parse(code, &reason);
            // What is shown comes from the table (the only relay-supplied part is a number).
            let shown = parsed.to_string();
            prop_assert!(shown.chars().all(|c| c.is_ascii() && !c.is_ascii_control()));
            if !matches!(parsed, CloseReason::Unknown { .. }) {
                prop_assert_eq!(parsed.reason().into_bytes(), reason);
            }
        }
    }
}
