//! What travels inside MLS application messages and inbox deposits.
//!
//! Both are versioned, postcard-encoded enums. Their decoders read bytes that came from
//! other people's devices (after MLS decryption, or straight from the relay for inbox
//! entries), so they return errors on garbage and never panic; fuzz targets call
//! [`Content::decode`] and [`InboxMessage::decode`] directly.

use hearth_protocol::{Handle, RoomId, Seq};
use serde::{Deserialize, Serialize};

/// The largest encoded content accepted (well above any text a person types).
pub const MAX_CONTENT_LEN: usize = 60 * 1024;

/// Why bytes could not be read as content or an inbox message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// A version this build does not know (sent by a newer client).
    #[error("message format version {0} is not supported by this version of hearth: update it")]
    UnknownVersion(u32),
    /// The bytes are not a valid encoding.
    #[error("malformed message content: {0}")]
    Malformed(String),
    /// The bytes exceed [`MAX_CONTENT_LEN`].
    #[error("message content of {0} bytes is too large")]
    TooLarge(usize),
}

/// The sender's view of the room log when it sent a message: its last processed
/// sequence number and the transcript hash there (see [`crate::transcript`]).
pub type TranscriptMark = (Seq, [u8; 32]);

/// Application content of one MLS application message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// Version 1.
    V1 {
        /// What the message says or does.
        body: Body,
        /// The sender's transcript position when sending.
        transcript: TranscriptMark,
    },
}

/// The meaning of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A text message, optionally replying to an earlier one.
    Text {
        /// The text.
        text: String,
        /// The message replied to.
        reply_to: Option<Seq>,
    },
    /// Replaces the text of an earlier message of the same sender.
    Edit {
        /// The edited message.
        target: Seq,
        /// The new text.
        text: String,
    },
    /// Withdraws an earlier message of the same sender.
    Delete {
        /// The withdrawn message.
        target: Seq,
    },
    /// The sender has read everything up to `up_to`.
    Receipt {
        /// The last message read.
        up_to: Seq,
    },
    /// The sender came online or went offline.
    Presence {
        /// Online or not.
        online: bool,
    },
    /// Something about the room itself.
    RoomEvent(RoomEvent),
    /// The sender's profile: the display name it chose (shown next to its handle, never
    /// instead of it). Not stored in history.
    Profile {
        /// The display name.
        display_name: String,
    },
    /// Nothing but the transcript mark every content carries: sent now and then so
    /// that members who do not write still compare their histories (a partition shows
    /// as a fork). Not stored in history.
    Head,
    /// A reaction to an earlier message (one per sender and emoji: the same reaction
    /// again changes nothing). Shown as a count under the target; refused unless
    /// [`valid_reaction`] holds.
    React {
        /// The message reacted to.
        target: Seq,
        /// The reaction, usually one emoji (at most [`MAX_REACTION_LEN`] bytes).
        emoji: String,
    },
    /// A file: where its encrypted blob is at the relay, its key, and what it is
    /// (decision 0014). Stored in history like a text, its caption as the text.
    File(crate::attachment::FileMessage),
}

/// The longest reaction accepted, in bytes: room for an emoji sequence such as a family
/// with skin tones (41 bytes), not for a message.
pub const MAX_REACTION_LEN: usize = 64;

/// Whether `emoji` may be a reaction: 1 to [`MAX_REACTION_LEN`] bytes with no space, no
/// control character and no invisible or bidi formatting character (the zero width
/// joiner that builds emoji sequences aside). Others' reactions that fail it are
/// ignored, our own are refused before sending: a reaction is drawn in a tight spot
/// under a message, where it must not move or hide text.
pub fn valid_reaction(emoji: &str) -> bool {
    !emoji.is_empty()
        && emoji.len() <= MAX_REACTION_LEN
        && emoji.chars().all(|c| {
            !(c.is_control()
                || c.is_whitespace()
                || matches!(c, '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}'
                    | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200c}'
                    | '\u{200e}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}'
                    | '\u{3164}' | '\u{feff}' | '\u{ffa0}' | '\u{fff9}'..='\u{fffb}'
                    | '\u{e0000}'..='\u{e007f}'))
        })
}

impl Body {
    /// Whether this is something the user says (a message, an edit, a deletion, a
    /// receipt, a reaction), as opposed to what the client says for them (presence, profile, head,
    /// room notices).
    pub fn is_said(&self) -> bool {
        matches!(
            self,
            Body::Text { .. }
                | Body::Edit { .. }
                | Body::Delete { .. }
                | Body::Receipt { .. }
                | Body::React { .. }
                | Body::File(_)
        )
    }
}

/// Room-level notices carried as application content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomEvent {
    /// The sender asked to leave; another member commits the removal.
    Leaving,
    /// An admin re-created this room as a new group (the old one broke, DESIGN 4):
    /// its members are invited there.
    Rebuilt {
        /// The new room.
        room: RoomId,
    },
}

/// The decoded pieces of a tagged encoding: a version number, then the version's value.
#[derive(Serialize, Deserialize)]
struct Tagged<T> {
    version: u32,
    value: T,
}

impl Content {
    /// Version-1 content.
    pub fn v1(body: Body, transcript: TranscriptMark) -> Self {
        Content::V1 { body, transcript }
    }

    /// The body, whatever the version.
    pub fn body(&self) -> &Body {
        match self {
            Content::V1 { body, .. } => body,
        }
    }

    /// The sender's transcript mark, whatever the version.
    pub fn transcript(&self) -> TranscriptMark {
        match self {
            Content::V1 { transcript, .. } => *transcript,
        }
    }

    /// Encodes the content (a version number, then the fields).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Content::V1 { body, transcript } => encode_tagged(1, &(body, transcript)),
        }
    }

    /// Decodes untrusted bytes; unknown versions and garbage are errors.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        let (version, rest) = split_version(bytes)?;
        match version {
            1 => {
                let (body, transcript) = decode_exact::<(Body, TranscriptMark)>(rest)?;
                Ok(Content::V1 { body, transcript })
            }
            other => Err(ContentError::UnknownVersion(other)),
        }
    }
}

/// What one account deposits in another's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxMessage {
    /// An invitation into a room: an MLS Welcome plus where to start reading.
    Welcome {
        /// The room joined.
        room: RoomId,
        /// The MLS Welcome message (TLS-codec bytes).
        #[serde(with = "serde_bytes")]
        welcome: Vec<u8>,
        /// The first sequence number the new member reads (the one after the commit
        /// that added it).
        start_seq: Seq,
        /// The inviter's transcript hash at `start_seq - 1`.
        transcript_hash: [u8; 32],
        /// Who invited (as claimed; checked against the Welcome's signer).
        from: Handle,
    },
}

impl InboxMessage {
    /// Encodes the message (a version number, then the fields).
    pub fn encode(&self) -> Vec<u8> {
        encode_tagged(1, self)
    }

    /// Decodes untrusted bytes; unknown versions and garbage are errors.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        let (version, rest) = split_version(bytes)?;
        match version {
            1 => decode_exact(rest),
            other => Err(ContentError::UnknownVersion(other)),
        }
    }
}

fn encode_tagged<T: Serialize>(version: u32, value: &T) -> Vec<u8> {
    // Serializing plain data (strings, integers, byte arrays) into a Vec cannot fail.
    postcard::to_allocvec(&Tagged { version, value }).unwrap_or_default()
}

fn split_version(bytes: &[u8]) -> Result<(u32, &[u8]), ContentError> {
    if bytes.len() > MAX_CONTENT_LEN {
        return Err(ContentError::TooLarge(bytes.len()));
    }
    postcard::take_from_bytes::<u32>(bytes).map_err(|e| ContentError::Malformed(e.to_string()))
}

fn decode_exact<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ContentError> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|e| ContentError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ContentError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body() -> impl Strategy<Value = Body> {
        prop_oneof![
            (".{0,64}", proptest::option::of(any::<u64>())).prop_map(|(text, r)| Body::Text {
                text,
                reply_to: r.map(Seq)
            }),
            (any::<u64>(), ".{0,16}").prop_map(|(t, text)| Body::Edit {
                target: Seq(t),
                text
            }),
            any::<u64>().prop_map(|t| Body::Delete { target: Seq(t) }),
            any::<u64>().prop_map(|t| Body::Receipt { up_to: Seq(t) }),
            any::<bool>().prop_map(|online| Body::Presence { online }),
            Just(Body::RoomEvent(RoomEvent::Leaving)),
            any::<[u8; 16]>().prop_map(|r| Body::RoomEvent(RoomEvent::Rebuilt { room: RoomId(r) })),
            ".{0,40}".prop_map(|display_name| Body::Profile { display_name }),
            Just(Body::Head),
            (any::<u64>(), ".{0,16}").prop_map(|(t, emoji)| Body::React {
                target: Seq(t),
                emoji
            }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 32]>(),
                any::<u64>(),
                ".{0,16}",
                proptest::option::of(".{0,16}")
            )
                .prop_map(|(blob, key, size, name, caption)| Body::File(
                    crate::attachment::FileMessage {
                        blob: hearth_protocol::BlobId(blob),
                        key: crate::attachment::FileKey(key),
                        chunk_size: crate::attachment::CHUNK_SIZE,
                        size,
                        sha256: key,
                        name,
                        media_type: "image/png".into(),
                        caption,
                    }
                )),
        ]
    }

    #[test]
    fn the_body_tags_of_earlier_versions_keep_their_numbers() {
        // postcard writes a variant's index: a new variant goes at the end, or stored
        // and in-flight messages change meaning.
        let tag = |body: Body| Content::v1(body, (Seq(0), [0; 32])).encode()[1];
        assert_eq!(
            tag(Body::Text {
                text: String::new(),
                reply_to: None
            }),
            0
        );
        assert_eq!(tag(Body::Head), 7);
        assert_eq!(
            tag(Body::React {
                target: Seq(1),
                emoji: "+".into()
            }),
            8
        );
        let file = crate::attachment::FileMessage {
            blob: hearth_protocol::BlobId([0; 16]),
            key: crate::attachment::FileKey([0; 32]),
            chunk_size: crate::attachment::CHUNK_SIZE,
            size: 0,
            sha256: [0; 32],
            name: String::new(),
            media_type: String::new(),
            caption: None,
        };
        assert_eq!(tag(Body::File(file)), 9);
    }

    #[test]
    fn reactions_are_short_and_visible() {
        for good in ["👍", "❤️", "👩🏽\u{200d}👩🏽\u{200d}👧🏽\u{200d}👦🏽", "+1", "ok"]
        {
            assert!(valid_reaction(good), "{good:?}");
        }
        for bad in [
            "",
            " ",
            "👍 👍",
            "\u{1b}[2J",
            "\u{202e}👍",
            "👍\u{2066}",
            "\u{200b}",
            "a\nb",
            "\u{e0041}",
            &"👍".repeat(17),
        ] {
            assert!(!valid_reaction(bad), "{bad:?}");
        }
    }

    #[test]
    fn unknown_versions_are_a_clear_error() {
        let bytes = encode_tagged(7, &0u8);
        assert_eq!(
            Content::decode(&bytes),
            Err(ContentError::UnknownVersion(7))
        );
        assert_eq!(
            InboxMessage::decode(&bytes),
            Err(ContentError::UnknownVersion(7))
        );
        assert!(ContentError::UnknownVersion(7)
            .to_string()
            .contains("update"));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = Content::v1(Body::Presence { online: true }, (Seq(1), [0; 32])).encode();
        bytes.push(0);
        assert!(matches!(
            Content::decode(&bytes),
            Err(ContentError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn content_round_trips(body in body(), seq in any::<u64>(), hash in any::<[u8; 32]>()) {
            let content = Content::v1(body, (Seq(seq), hash));
            prop_assert_eq!(Content::decode(&content.encode()), Ok(content));
        }

        #[test]
        fn inbox_round_trips(welcome in proptest::collection::vec(any::<u8>(), 0..200), seq in any::<u64>(), hash in any::<[u8; 32]>(), room in any::<[u8; 16]>()) {
            let message = InboxMessage::Welcome {
                room: RoomId(room), welcome, start_seq: Seq(seq), transcript_hash: hash,
                from: Handle::new("alice").unwrap(),
            };
            prop_assert_eq!(InboxMessage::decode(&message.encode()), Ok(message));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Content::decode(&bytes);
            let _ = InboxMessage::decode(&bytes);
        }
    }
}
