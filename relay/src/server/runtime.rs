//! A quinn runtime that remembers the tasks it spawns, so shutdown can wait for them.
//!
//! quinn drives its endpoint and every connection on tasks of its own, and the UDP
//! socket lives as long as the last of them. [`quinn::TokioRuntime`] spawns them and
//! forgets them, so a relay that dropped its endpoint could not tell when the port was
//! free again: a restart on the same port raced the endpoint driver's last poll and
//! sometimes failed with `EADDRINUSE`. [`TrackedRuntime`] spawns the same tasks on tokio
//! and keeps their handles; [`TrackedRuntime::wait_released`] awaits them all, after
//! which nothing holds the socket.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime};
use tokio::task::JoinHandle;

/// [`TokioRuntime`] plus the handles of the tasks it spawned (finished ones are dropped
/// whenever a new task is spawned, so the list stays as long as the live connections).
#[derive(Debug, Default, Clone)]
pub struct TrackedRuntime {
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TrackedRuntime {
    /// Waits until every task quinn spawned has ended, at most `limit`; then aborts the
    /// ones still running (which drops what they hold, the socket included) and waits
    /// for that. Call it after the endpoint was closed and every `Endpoint` and
    /// `Connection` handle dropped: the endpoint driver ends then, and with it the UDP
    /// socket. Returns whether all ended by themselves.
    pub async fn wait_released(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let next = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).pop();
                match next {
                    // A panicked or cancelled task has ended too.
                    Some(task) => drop(task.await),
                    None => return,
                }
            }
        };
        if tokio::time::timeout(limit, wait).await.is_ok() {
            return true;
        }
        let left: Vec<JoinHandle<()>> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        tracing::warn!(
            tasks = left.len(),
            "QUIC tasks still running at shutdown; aborting them"
        );
        for task in &left {
            task.abort();
        }
        for task in left {
            drop(task.await);
        }
        false
    }
}

impl Runtime for TrackedRuntime {
    fn new_timer(&self, i: Instant) -> Pin<Box<dyn AsyncTimer>> {
        TokioRuntime.new_timer(i)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let handle = tokio::spawn(future);
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        TokioRuntime.wrap_udp_socket(socket)
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }
}
