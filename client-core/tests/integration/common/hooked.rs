//! A connector whose links hand every request to a hook first: tests that count, delay
//! or lose a client's requests to a real relay write only what they do per request.

use std::sync::Arc;

use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{BoxFuture, Connection, Connector, Link, TransportError};
use hearth_protocol::{Request, Response, WireError};

/// What a request's answer is on a link: the relay's result, or the transport's failure.
pub type Answer = Result<Result<Response, WireError>, TransportError>;

/// What a [`Hooked`] connector does with each request of each connection it opens.
pub trait Hook: Send + Sync + 'static {
    /// Answers `request`, which the client made on `link` (a connection to the real
    /// relay); forwards it unchanged by default.
    fn call<'a>(&'a self, link: &'a dyn Link, request: Request) -> BoxFuture<'a, Answer> {
        link.call(request)
    }
}

/// Opens real QUIC connections whose requests go through `H` first.
pub struct Hooked<H: Hook> {
    connector: QuicConnector,
    hook: Arc<H>,
}

impl<H: Hook> Hooked<H> {
    /// Connections opened by `connector`, each request through `hook`.
    pub fn new(connector: QuicConnector, hook: Arc<H>) -> Self {
        Self { connector, hook }
    }
}

struct HookedLink<H: Hook> {
    link: Arc<dyn Link>,
    hook: Arc<H>,
}

impl<H: Hook> Link for HookedLink<H> {
    fn call(&self, request: Request) -> BoxFuture<'_, Answer> {
        self.hook.call(&*self.link, request)
    }

    fn close(&self) {
        self.link.close();
    }

    fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    fn close_reason(&self) -> Option<hearth_protocol::close::CloseReason> {
        self.link.close_reason()
    }
}

impl<H: Hook> Connector for Hooked<H> {
    fn connect(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let mut conn = self.connector.connect().await?;
            conn.link = Arc::new(HookedLink {
                link: conn.link,
                hook: self.hook.clone(),
            });
            Ok(conn)
        })
    }

    fn address(&self) -> String {
        self.connector.address()
    }
}
