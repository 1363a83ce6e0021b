//! Group configuration (DESIGN 3) and the room settings group-context extension (the
//! data of the room policy; the rules are in [`crate::policy`]).

use hearth_protocol::{AccountKey, AdminKey, Handle};
use openmls::prelude::*;
use serde::{Deserialize, Serialize};

/// X25519, ChaCha20-Poly1305, SHA-256, Ed25519 (0x0003).
pub const CIPHERSUITE: Ciphersuite =
    Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;

/// The exporter label of room access capabilities (context: the room id).
pub const EXPORT_LABEL: &str = "hearth room access";

/// The private-use extension type carrying [`RoomSettings`] in the group context.
pub const ROOM_SETTINGS_EXTENSION: u16 = 0xff01;

/// The current format version of [`RoomSettings`].
pub const SETTINGS_VERSION: u8 = 2;

/// Room settings and policy, kept in the group context so every member agrees on them
/// and the relay never sees them (DESIGN 7, "Room policy").
///
/// Encoded as one version byte, then the postcard encoding of the fields. Version 2 adds
/// roles, the ban list, the join order and the disappearing-message timer; version 1
/// (name and topic only) was never deployed and is not read.
///
/// Fields added since version 2 ([`SettingsExtra`]) follow in a trailing section that is
/// written only when one of them differs from its default, so the settings of an
/// ordinary room encode exactly as before and stay readable by older clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// The room's name.
    pub name: String,
    /// The room's topic.
    pub topic: String,
    /// The owner (primary admin): grants and revokes admin rights.
    pub owner: AccountKey,
    /// The other admins (never contains the owner), sorted.
    pub admins: Vec<AccountKey>,
    /// Every member, longest-standing first (the owner passes down this list).
    pub members: Vec<AccountKey>,
    /// Identities that may not be added back until unbanned, sorted by key.
    pub banned: Vec<BannedIdentity>,
    /// Messages disappear this many seconds after the relay stored them (`None`: kept).
    pub expire_secs: Option<u64>,
    /// `Some(name)`: the room is public, listed in the relay's directory under `name`,
    /// and anyone registered may join it by an external commit. `None`: private.
    pub public_name: Option<String>,
    /// A private conversation between exactly two people (`/msg`): never more members,
    /// and this flag never changes. Carried in the trailing [`SettingsExtra`] section.
    #[serde(skip)]
    pub direct: bool,
    /// The admins' pseudonyms for this room (decision 0013, part 5; see
    /// [`crate::pseudonym`]): the keys the relay lists as the room's admins, each put here
    /// by its own admin (the room policy refuses anyone else's), sorted by account, only
    /// for the owner and admins. Carried in a second trailing section.
    #[serde(skip)]
    pub pseudonyms: Vec<(AccountKey, AdminKey)>,
}

/// The trailing section of the settings encoding: fields added after version 2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SettingsExtra {
    direct: bool,
}

/// The second trailing section: the admins' pseudonyms (written when there are any).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SettingsPseudonyms {
    pseudonyms: Vec<(AccountKey, AdminKey)>,
}

/// An identity on a room's ban list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BannedIdentity {
    /// The identity key.
    pub account: AccountKey,
    /// The handle it had when banned (for display).
    pub handle: Handle,
}

/// Why the settings extension of a group could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The group context carries no settings extension.
    #[error("the room has no settings")]
    Missing,
    /// A version this build does not know.
    #[error("room settings format {0} is not supported by this version of hearth: update it")]
    UnknownVersion(u8),
    /// The bytes are not a valid encoding.
    #[error("malformed room settings: {0}")]
    Malformed(String),
}

impl RoomSettings {
    /// Settings of a new room: `owner` is its only member.
    pub fn new(name: &str, owner: AccountKey) -> Self {
        RoomSettings {
            name: name.to_string(),
            topic: String::new(),
            owner,
            admins: Vec::new(),
            members: vec![owner],
            banned: Vec::new(),
            expire_secs: None,
            public_name: None,
            direct: false,
            pseudonyms: Vec::new(),
        }
    }

    /// Settings of a new direct room (a private conversation) created by `owner`.
    pub fn direct(name: &str, owner: AccountKey) -> Self {
        RoomSettings {
            direct: true,
            ..Self::new(name, owner)
        }
    }

    /// The settings in a group context, if present and readable.
    pub fn of(extensions: &Extensions<GroupContext>) -> Option<Self> {
        Self::read(extensions).ok()
    }

    /// The settings in a group context.
    pub fn read(extensions: &Extensions<GroupContext>) -> Result<Self, SettingsError> {
        let bytes = extensions
            .unknown(ROOM_SETTINGS_EXTENSION)
            .ok_or(SettingsError::Missing)?;
        Self::decode(&bytes.0)
    }

    /// Encodes the settings (version byte, then the fields).
    pub fn encode(&self) -> Vec<u8> {
        // Encoding plain data (strings, integers, byte arrays) into a Vec cannot fail.
        let mut out = vec![SETTINGS_VERSION];
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        let extra = SettingsExtra {
            direct: self.direct,
        };
        if extra != SettingsExtra::default() || !self.pseudonyms.is_empty() {
            out.extend(postcard::to_allocvec(&extra).unwrap_or_default());
        }
        if !self.pseudonyms.is_empty() {
            let section = SettingsPseudonyms {
                pseudonyms: self.pseudonyms.clone(),
            };
            out.extend(postcard::to_allocvec(&section).unwrap_or_default());
        }
        out
    }

    /// Decodes untrusted bytes (from a commit another member made).
    pub fn decode(bytes: &[u8]) -> Result<Self, SettingsError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or_else(|| SettingsError::Malformed("empty".into()))?;
        if version != SETTINGS_VERSION {
            return Err(SettingsError::UnknownVersion(version));
        }
        let (mut settings, tail) = postcard::take_from_bytes::<RoomSettings>(rest)
            .map_err(|e| SettingsError::Malformed(e.to_string()))?;
        if tail.is_empty() {
            return Ok(settings);
        }
        let (extra, tail) = postcard::take_from_bytes::<SettingsExtra>(tail)
            .map_err(|e| SettingsError::Malformed(e.to_string()))?;
        settings.direct = extra.direct;
        if tail.is_empty() {
            return Ok(settings);
        }
        let (section, tail) = postcard::take_from_bytes::<SettingsPseudonyms>(tail)
            .map_err(|e| SettingsError::Malformed(e.to_string()))?;
        settings.pseudonyms = section.pseudonyms;
        if !tail.is_empty() {
            return Err(SettingsError::Malformed(format!(
                "{} trailing bytes",
                tail.len()
            )));
        }
        Ok(settings)
    }

    /// The group-context extensions carrying these settings.
    pub fn extensions(&self) -> Result<Extensions<GroupContext>, crate::error::ClientError> {
        Extensions::from_vec(vec![
            Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
                &[ExtensionType::Unknown(ROOM_SETTINGS_EXTENSION)],
                &[],
                &[],
            )),
            Extension::Unknown(ROOM_SETTINGS_EXTENSION, UnknownExtension(self.encode())),
        ])
        .map_err(crate::error::mls)
    }
}

/// Leaf capabilities every hearth member advertises: our cipher suite and the room
/// settings extension.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        // LastResort: a last-resort KeyPackage lists its own extension, else it fails
        // validation at the inviter and the invitation cannot be made.
        Some(&[
            ExtensionType::Unknown(ROOM_SETTINGS_EXTENSION),
            ExtensionType::LastResort,
        ]),
        None,
        None,
    )
}

/// Every MLS `PrivateMessage` this client sends has its content padded to a multiple of
/// this many bytes (RFC 9420 section 6.3.1, openmls's `padding_size`), so the relay
/// learns a message's size only to the nearest 256 bytes, not the length of the text
/// (issue 16): most household messages look alike.
pub const PADDING_BLOCK: usize = 256;

/// Configuration for creating a room.
pub fn create_config(
    settings: &RoomSettings,
) -> Result<MlsGroupCreateConfig, crate::error::ClientError> {
    Ok(MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(32, 1000))
        .max_past_epochs(3)
        .padding_size(PADDING_BLOCK)
        .capabilities(capabilities())
        .with_group_context_extensions(settings.extensions()?)
        .build())
}

/// Configuration for joining a room from a Welcome.
pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(32, 1000))
        .max_past_epochs(3)
        .padding_size(PADDING_BLOCK)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> AccountKey {
        AccountKey([b; 32])
    }

    proptest! {
        #[test]
        fn settings_round_trip(name in ".{0,40}", topic in ".{0,40}", n in 1u8..20, admins in proptest::collection::vec(any::<u8>(), 0..5), expire in proptest::option::of(any::<u64>())) {
            let mut s = RoomSettings::new(&name, key(0));
            s.topic = topic;
            s.members = (0..n).map(key).collect();
            s.admins = admins.into_iter().map(key).collect();
            s.banned = vec![BannedIdentity { account: key(99), handle: Handle::new("mallory").unwrap() }];
            s.expire_secs = expire;
            s.public_name = expire.map(|_| "Family board".to_string());
            s.direct = n % 2 == 0;
            prop_assert_eq!(RoomSettings::decode(&s.encode()), Ok(s));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = RoomSettings::decode(&bytes);
        }
    }

    #[test]
    fn ordinary_rooms_encode_as_before_and_direct_rooms_add_a_trailing_section() {
        let plain = RoomSettings::new("x", key(1));
        let direct = RoomSettings::direct("x", key(1));
        let encoded = direct.encode();
        assert_eq!(encoded[..encoded.len() - 1], plain.encode()[..]);
        assert_eq!(RoomSettings::decode(&encoded), Ok(direct));
        assert_eq!(RoomSettings::decode(&plain.encode()), Ok(plain));
    }

    #[test]
    fn other_versions_are_a_clear_error() {
        let mut bytes = RoomSettings::new("x", key(1)).encode();
        bytes[0] = 1;
        assert_eq!(
            RoomSettings::decode(&bytes),
            Err(SettingsError::UnknownVersion(1))
        );
        assert!(RoomSettings::decode(&[]).is_err());
    }
}
