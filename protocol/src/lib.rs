//! Wire types for hearth: what a client and a relay say to each other.
//!
//! Map of the crate:
//! - [`admission`]: anonymous admission tokens for room connections (RFC 9497 VOPRF).
//! - [`ids`]: newtypes for everything that names something (rooms, accounts, sequence
//!   numbers, handles, capabilities, invite tokens).
//! - [`messages`]: the handshake, requests, responses, pushed events and errors.
//! - [`frame`]: length-prefixed postcard framing with hard size limits.
//! - [`auth`]: the exact bytes a client signs to prove its identity on one connection.
//! - [`address`]: `hearth://host:port/#pin` relay addresses and invites.
//! - [`close`]: the close codes and reasons the relay ends connections with.
//! - [`limits`]: protocol constants (versions, frame limits, ALPN).
//!
//! The crate does no I/O: it only turns values into bytes and bytes into values, and
//! every decoder of network bytes returns an error on garbage, never panics.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod admission;
pub mod auth;
pub mod close;
pub mod frame;
pub mod ids;
pub mod limits;
pub mod messages;

pub use address::{AddressError, Invite, RelayAddress};
pub use admission::{
    AdmissionKey, AdmissionProof, AdmissionToken, BlindedToken, EvaluatedToken, ADMISSION_BATCH,
};
pub use auth::{admin_message, rotation_message, AdminAction, AdminList, AdminProof, KeyRotation};
pub use close::{CloseReason, Retry};
pub use frame::{decode_frame, encode_frame, FrameError};
pub use ids::{
    AccountKey, AdminKey, BlobId, Cap, CapHash, Handle, HandleError, InviteToken, Pin, RoomId, Seq,
    Signature,
};
pub use limits::{ALPN, PROTOCOL_VERSION, SUPPORTED_VERSIONS};
pub use messages::{
    AccountInfo, ClientFrame, ClientHello, Entry, EntryKind, ErrorCode, Event, InboxEntry,
    PublicRoomInfo, Request, Response, ServerFrame, ServerHello, WireError,
};
