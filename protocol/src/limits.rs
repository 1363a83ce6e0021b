//! Protocol constants: versions, ALPN and size limits.

/// The protocol version this build speaks (2: key rotation, `AccountInfo::rotations`;
/// 3: room admins as per-room pseudonyms that sign relay-side changes, decision 0013;
/// 4: room connections admitted by anonymous tokens, decision 0016).
pub const PROTOCOL_VERSION: u16 = 4;

/// Every protocol version this build can speak, newest first.
pub const SUPPORTED_VERSIONS: &[u16] = &[PROTOCOL_VERSION];

/// The ALPN identifier negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"hearth/1";

/// Hard upper bound for one frame (length prefix excluded): 1 MiB.
///
/// No configuration can raise it; relays may set a lower envelope limit.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Default upper bound for one envelope payload (an MLS message, a Welcome, a KeyPackage).
pub const DEFAULT_MAX_ENVELOPE_LEN: usize = 64 * 1024;

/// The most entries a relay returns for one read.
pub const MAX_READ_ENTRIES: u32 = 1000;

/// The most KeyPackages one publish request may carry.
pub const MAX_KEY_PACKAGES_PER_PUBLISH: usize = 100;

/// The most inbox entries returned by one fetch.
pub const MAX_INBOX_FETCH: u32 = 500;

/// Length of the length prefix in front of every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// TLS exporter label used to bind authentication to one connection.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-hearth-auth-v1";

/// Length of the TLS exporter value and of auth challenges.
pub const CHALLENGE_LEN: usize = 32;

/// The longest name a room may be published under in the directory, in bytes.
pub const MAX_PUBLIC_NAME_LEN: usize = 64;

/// The most rooms one directory listing returns.
pub const MAX_PUBLIC_ROOMS: usize = 1000;

/// The shortest retention a room may ask for (`SetRetention`, `CreateRoom`), in seconds.
/// Shorter would let one member wipe a room's log under everyone else; commits are kept
/// for the relay's own retention whatever the room asks (see docs/protocol.md).
pub const MIN_ROOM_RETENTION_SECS: u64 = 60;

/// How many key rotations of one account the relay keeps (and lists in its directory).
pub const MAX_ROTATIONS_KEPT: usize = 8;

/// How many admins (owner included) the relay keeps for one room.
pub const MAX_ROOM_ADMINS: usize = 64;

/// How many accounts the relay bars from committing in one room (authors of reverted
/// commits; the oldest is forgotten first).
pub const MAX_BARRED_PER_ROOM: usize = 64;

/// The most bytes of a blob one [`crate::Request::PutBlob`] carries or one
/// [`crate::Request::GetBlob`] returns: 512 KiB and a little (eight 64 KiB chunks with
/// their tags), well under [`MAX_FRAME_LEN`].
pub const MAX_BLOB_PIECE: usize = 512 * 1024 + 8 * 16;
