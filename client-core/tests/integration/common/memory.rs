//! An in-process transport: the relay's protocol service (`hearth_relay::Session`)
//! without sockets or TLS, with a fixed fake TLS exporter value.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hearth_core::transport::{BoxFuture, Connection, Connector, Link, TransportError};
use hearth_protocol::{ClientHello, Request, Response, ServerHello, WireError, SUPPORTED_VERSIONS};
use hearth_relay::service::Reply;
use tokio::sync::{mpsc, oneshot};

/// The exporter value both sides use in-process.
pub const FAKE_EXPORTER: [u8; 32] = [0x42; 32];

type Call = (Request, oneshot::Sender<Result<Response, WireError>>);

pub struct MemoryConnector {
    pub relay: hearth_relay::Relay,
}

struct MemoryLink {
    calls: mpsc::UnboundedSender<Call>,
    closed: Arc<AtomicBool>,
}

impl Link for MemoryLink {
    fn call(
        &self,
        request: Request,
    ) -> BoxFuture<'_, Result<Result<Response, WireError>, TransportError>> {
        Box::pin(async move {
            if self.closed.load(Ordering::SeqCst) {
                return Err(TransportError::Closed);
            }
            let (tx, rx) = oneshot::channel();
            self.calls
                .send((request, tx))
                .map_err(|_| TransportError::Closed)?;
            rx.await.map_err(|_| TransportError::Closed)
        })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

impl Connector for MemoryConnector {
    fn connect(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let mut session = self
                .relay
                .session("127.0.0.1".parse().unwrap(), FAKE_EXPORTER);
            let challenge = match session.hello(&ClientHello {
                versions: SUPPORTED_VERSIONS.to_vec(),
            }) {
                ServerHello::Accepted { challenge, .. } => challenge,
                ServerHello::Rejected { message, .. } => {
                    return Err(TransportError::Version(message))
                }
            };
            let (calls_tx, mut calls) = mpsc::unbounded_channel::<Call>();
            let (events_tx, events) = mpsc::unbounded_channel();
            let closed = Arc::new(AtomicBool::new(false));
            let closed_task = closed.clone();
            tokio::spawn(async move {
                loop {
                    if closed_task.load(Ordering::SeqCst) {
                        break;
                    }
                    tokio::select! {
                        call = calls.recv() => {
                            let Some((request, reply)) = call else { break };
                            match session.start(request).await {
                                Reply::Ready(result) => { let _ = reply.send(result); }
                                Reply::Pending(pending) => {
                                    tokio::spawn(async move { let _ = reply.send(pending.wait().await); });
                                }
                            }
                        }
                        event = session.events().recv() => {
                            let Some(event) = event else { break };
                            if events_tx.send(event).is_err() { break; }
                        }
                    }
                }
            });
            Ok(Connection {
                link: Arc::new(MemoryLink {
                    calls: calls_tx,
                    closed,
                }),
                events,
                challenge,
                exporter: FAKE_EXPORTER,
            })
        })
    }

    fn address(&self) -> String {
        "in-process relay".into()
    }
}
