//! How the client talks to a relay.
//!
//! A [`Connector`] opens a [`Connection`]: a [`Link`] to send requests and await their
//! responses, and a stream of pushed [`Event`]s that ends when the connection drops. The
//! connection has done the hello exchange (version negotiation) but is not
//! authenticated: the challenge and the connection's TLS exporter value are handed to the
//! client, which signs them with the identity.
//!
//! [`quic::QuicConnector`] is the real transport. Tests plug in an in-process relay by
//! implementing [`Connector`] (see `client-core/tests/integration/common`), so this crate does not
//! depend on the relay.

pub mod frames;
pub mod pin;
pub mod quic;

use std::future::Future;
use std::pin::Pin as StdPin;
use std::sync::Arc;

use hearth_protocol::{CloseReason, Event, Request, Response, WireError};
use tokio::sync::mpsc;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = StdPin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the transport failed (as opposed to the relay refusing a request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The relay's certificate key does not match the pin.
    #[error("the relay at {address} presented a different key than the pinned one")]
    PinMismatch {
        /// The relay's address.
        address: String,
    },
    /// The relay could not be reached or the handshake failed.
    #[error("cannot reach the relay at {address}: {reason}")]
    Unreachable {
        /// The relay's address.
        address: String,
        /// What failed.
        reason: String,
    },
    /// No common protocol version.
    #[error("{0}")]
    Version(String),
    /// The relay closed the connection while it was being set up, and said why (see
    /// [`hearth_protocol::close`]; shown from the client's own table, never the relay's
    /// text).
    #[error("the relay closed the connection: {0}")]
    ClosedByRelay(CloseReason),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
}

/// A request/response channel to a relay.
pub trait Link: Send + Sync {
    /// Sends a request and awaits its response.
    fn call(
        &self,
        request: Request,
    ) -> BoxFuture<'_, Result<Result<Response, WireError>, TransportError>>;
    /// Closes the connection (pending and later calls fail with [`TransportError::Closed`]).
    fn close(&self);
    /// Whether the connection has ended or was closed: later calls fail with
    /// [`TransportError::Closed`]. `false` when the transport cannot tell.
    fn is_closed(&self) -> bool {
        false
    }
    /// Why the relay closed the connection, once it has and said so (known by the time
    /// the connection's event stream ends). `None` while open, when the connection was
    /// lost or closed by us, or when the transport cannot tell.
    fn close_reason(&self) -> Option<CloseReason> {
        None
    }
}

/// An open, version-negotiated, not yet authenticated connection.
pub struct Connection {
    /// Requests and responses.
    pub link: Arc<dyn Link>,
    /// Pushed events; ends when the connection drops.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// The relay's authentication challenge from the hello.
    pub challenge: [u8; 32],
    /// This connection's TLS exporter value (see `hearth_protocol::auth`).
    pub exporter: [u8; 32],
}

/// Opens connections to one relay (again and again, for reconnects).
pub trait Connector: Send + Sync + 'static {
    /// Opens a connection and does the hello exchange.
    fn connect(&self) -> BoxFuture<'_, Result<Connection, TransportError>>;
    /// The relay's address, for messages.
    fn address(&self) -> String;
}
