//! A connector whose links hand every request, and every event the relay pushes, to a
//! hook first: tests that count, delay, lose or rewrite what a client exchanges with a
//! real relay write only what they do with each.

use std::sync::Arc;

use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{BoxFuture, Connection, Connector, Link, TransportError};
use hearth_protocol::{Event, Request, Response, WireError};
use tokio::sync::mpsc;

/// What a request's answer is on a link: the relay's result, or the transport's failure.
pub type Answer = Result<Result<Response, WireError>, TransportError>;

/// What a [`Hooked`] connector does with each request and each pushed event of each
/// connection it opens.
pub trait Hook: Send + Sync + 'static {
    /// Answers `request`, which the client made on `link` (a connection to the real
    /// relay); forwards it unchanged by default.
    fn call<'a>(&'a self, link: &'a dyn Link, request: Request) -> BoxFuture<'a, Answer> {
        link.call(request)
    }

    /// What the client is shown of `event`, which the relay pushed: `None` hides it;
    /// shown unchanged by default.
    fn pushed(&self, event: Event) -> Option<Event> {
        Some(event)
    }
}

/// Opens real QUIC connections whose requests and pushed events go through `H` first.
pub struct Hooked<H: Hook> {
    connector: QuicConnector,
    hook: Arc<H>,
}

impl<H: Hook> Hooked<H> {
    /// Connections opened by `connector`, each request and pushed event through `hook`.
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
            let (shown, events) = mpsc::unbounded_channel();
            let mut pushed = std::mem::replace(&mut conn.events, events);
            let hook = self.hook.clone();
            // Ends (ending the client's stream) when the connection's stream ends.
            tokio::spawn(async move {
                while let Some(event) = pushed.recv().await {
                    if let Some(event) = hook.pushed(event) {
                        if shown.send(event).is_err() {
                            return;
                        }
                    }
                }
            });
            Ok(conn)
        })
    }

    fn address(&self) -> String {
        self.connector.address()
    }
}
