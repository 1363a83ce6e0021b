//! Group configuration (DESIGN 3) and the room settings group-context extension.

use openmls::prelude::*;
use serde::{Deserialize, Serialize};

/// X25519, ChaCha20-Poly1305, SHA-256, Ed25519 (0x0003).
pub const CIPHERSUITE: Ciphersuite =
    Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;

/// The exporter label of room access capabilities (context: the room id).
pub const EXPORT_LABEL: &str = "hearth room access";

/// The private-use extension type carrying [`RoomSettings`] in the group context.
pub const ROOM_SETTINGS_EXTENSION: u16 = 0xff01;

/// Room settings, kept in the group context so every member agrees on them.
///
/// Postcard-encoded with a leading version; new fields (roles, timers) go into a new
/// version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// Format version (1).
    pub version: u8,
    /// The room's name.
    pub name: String,
    /// The room's topic.
    pub topic: String,
}

impl RoomSettings {
    /// Version-1 settings with a name and no topic.
    pub fn named(name: &str) -> Self {
        RoomSettings {
            version: 1,
            name: name.to_string(),
            topic: String::new(),
        }
    }

    /// The settings in a group context, if present and readable.
    pub fn of(extensions: &Extensions<GroupContext>) -> Option<Self> {
        let bytes = extensions.unknown(ROOM_SETTINGS_EXTENSION)?;
        postcard::from_bytes(&bytes.0).ok()
    }

    /// The group-context extensions carrying these settings.
    pub fn extensions(&self) -> Result<Extensions<GroupContext>, crate::error::ClientError> {
        // Encoding a struct of strings into a Vec cannot fail.
        let bytes = postcard::to_allocvec(self).unwrap_or_default();
        Extensions::from_vec(vec![
            Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
                &[ExtensionType::Unknown(ROOM_SETTINGS_EXTENSION)],
                &[],
                &[],
            )),
            Extension::Unknown(ROOM_SETTINGS_EXTENSION, UnknownExtension(bytes)),
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
        Some(&[ExtensionType::Unknown(ROOM_SETTINGS_EXTENSION)]),
        None,
        None,
    )
}

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
        .build()
}
