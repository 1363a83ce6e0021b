//! hearth client library: identity, MLS rooms, encrypted store, relay session.
//!
//! Map of the crate (foundation):
//! - [`identity`]: the device's Ed25519 key pair (also its MLS signature key).
//! - [`fingerprint`]: fingerprints and safety numbers people compare to verify keys.
//! - [`store`]: the encrypted local store, one redb file per profile.
//! - [`profile`]: a profile directory = identity + store, unlocked by a passphrase.
//! - [`backup`]: passphrase-encrypted export and import of a whole profile.
//! - [`clock`]: the relay's clock, which ages and expiry are judged by.
//! - [`contacts`]: identity keys pinned on first use, verification, key changes.
//!
//! Map of the crate (rooms and session):
//! - [`client`]: the [`Client`] API: connect, rooms, messages, history, events.
//! - [`transport`]: talking to a relay (QUIC with a pinned key; pluggable for tests).
//! - [`mls`]: openmls provider, group configuration, persistence of MLS state.
//! - [`content`]: versioned application content and inbox messages.
//! - [`attachment`]: files sealed in chunks under a key of their own (decision 0014).
//! - [`sealed`]: inbox payloads sealed to the recipient, with the sender inside (HPKE).
//! - [`transcript`]: transcript hashes that expose dropped or forked room logs.
//! - [`policy`]: room roles and rules, checked on every commit.
//! - [`history`]: locally stored messages (and their expiry).
//! - [`events`]: what the client reports ([`ClientEvent`]) and the records it returns.
//! - [`error`]: the client's error type, [`ClientError`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backup;
pub mod clock;
pub mod contacts;
pub mod fingerprint;
pub mod identity;
pub mod profile;
mod secret;
pub mod store;

pub mod attachment;
pub mod client;
pub mod content;
pub mod error;
pub mod events;
pub mod history;
pub mod mls;
pub mod policy;
pub mod pseudonym;
pub mod sealed;
pub mod transcript;
pub mod transport;

pub use client::{
    Client, Delivery, Impostor, PastRoom, QueuedMessage, RoomRef, RotationReport,
    PRESENCE_HEARTBEAT, PRESENCE_TTL,
};
pub use contacts::{Contact, TrustState};
pub use error::ClientError;
pub use events::{
    ClientEvent, ConnectionState, ConsistencyWarning, HistoryItem, Invitation, Member, Role,
    RoomPolicy, RoomSummary,
};
pub use fingerprint::{fingerprint, safety_number, Fingerprint, SafetyNumber};
pub use history::{MessageChange, Reaction};
pub use identity::{verify, Identity};
pub use profile::Profile;
pub use store::{EncryptedStore, StoreError, Table, WriteBatch};
