//! hearth-relay: a thin, durable QUIC relay that stores only ciphertext.
//!
//! Map of the crate:
//! - [`config`]: [`config::RelayConfig`], read from a commented TOML file.
//! - [`store`]: the [`store::Store`] trait (operations, not key-value) and its redb
//!   implementation; batches of writes commit in one fsynced transaction.
//! - [`service`]: the protocol logic without sockets: [`service::Relay`] (shared state,
//!   group-commit writer, live fan-out) and one [`service::Session`] per connection.
//! - [`server`]: the quinn accept loop, TLS certificate and per-connection driver;
//!   [`server::start`] runs a relay in-process and returns a [`server::RunningRelay`].
//! - [`blobs`]: encrypted attachments as files beside the store, uploaded in fsynced
//!   pieces, charged to their room, deleted with its retention (decision 0014).
//! - [`external_join`]: the check of an external commit (a public-room join) before it is
//!   appended, the one MLS message the relay reads.
//! - [`key_packages`]: the check of KeyPackages on publish (they must name their
//!   publisher) and of their lifetime when handed out.
//! - [`inspect`]: what the relay knows: a scan of every stored record for accounts and
//!   rooms found together (`hearth-relay inspect`, decision 0013).
//! - [`admin`]: owner commands over a Unix socket in the data dir, or directly on the
//!   store when no relay runs.
//! - [`location`]: which data dir and config file a command means when not told (the
//!   user's own relay or the packaged one), without creating either.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod blobs;
pub mod config;
pub mod external_join;
pub mod inspect;
pub mod key_packages;
pub mod location;
pub mod server;
pub mod service;
pub mod store;

pub use config::RelayConfig;
pub use server::{start, RunningRelay, ServerError};
pub use service::{Relay, Session};
pub use store::{RedbStore, Store, StoreError};
