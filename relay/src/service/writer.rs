//! Group commit: one task drains every pending write into one durable transaction.
//!
//! Connections enqueue [`WriteOp`]s and wait on a oneshot. The writer takes whatever is
//! queued (up to [`MAX_BATCH`]), applies it with [`Store::apply`] on a blocking thread
//! (one fsync for the whole batch), publishes appended entries to subscribers in order,
//! and only then answers the waiters. While one batch is being committed, the next one
//! queues up, so throughput grows with the number of concurrent writers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hearth_protocol::{ErrorCode, WireError};
use tokio::sync::{mpsc, oneshot};

use super::hub::Hub;
use super::metrics::Metrics;
use super::Notifier;
use crate::store::{Applied, OpResult, Store, WriteOp};

/// The most ops committed in one transaction.
pub const MAX_BATCH: usize = 4096;

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<OpResult>,
}

/// The queue into the writer task.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
}

/// The free-space floor of the store's file system (see
/// [`crate::config::RelayConfig::min_free_bytes`]): below it, ops that would store
/// something new are refused before they reach the store, so a full disk never fails a
/// write transaction (after which the store would refuse every write), and logins are
/// answered from a read.
pub struct DiskFloor {
    dir: PathBuf,
    min_free: AtomicU64,
}

impl DiskFloor {
    /// A floor of `min_free` bytes on the file system holding `dir`.
    pub fn new(dir: PathBuf, min_free: u64) -> Self {
        Self {
            dir,
            min_free: AtomicU64::new(min_free),
        }
    }

    /// Changes the floor (tests; an owner freeing space needs nothing: it is measured
    /// before every batch).
    pub fn set(&self, min_free: u64) {
        self.min_free.store(min_free, Ordering::SeqCst);
    }

    /// Whether the free space is under the floor now (unknown counts as enough).
    fn low(&self) -> bool {
        crate::admin::DiskSpace::of(&self.dir)
            .is_ok_and(|d| d.free_bytes < self.min_free.load(Ordering::SeqCst))
    }
}

/// The error answered for ops that would store something new while the disk is low.
pub(crate) fn storage_full() -> WireError {
    WireError::new(
        ErrorCode::StorageFull,
        "the relay's disk is nearly full, so it stores nothing new; its owner needs to free space (reading still works)",
    )
}

/// Whether an op only reads, deletes or changes what is stored in place (allowed while the
/// disk is low), as opposed to adding something.
fn frees_or_keeps(op: &WriteOp) -> bool {
    matches!(
        op,
        WriteOp::AckInbox { .. }
            | WriteOp::TakeKeyPackage { .. }
            | WriteOp::RevokeInvites { .. }
            | WriteOp::SetBanned { .. }
            | WriteOp::SetQuota { .. }
            | WriteOp::SetRetention { .. }
            | WriteOp::UnpublishRoom { .. }
            | WriteOp::Sweep { .. }
    )
}

/// The internal error answered when the store fails.
pub(crate) fn internal() -> WireError {
    WireError::new(ErrorCode::Internal, "the relay failed to store this; retry")
}

impl Writer {
    /// Starts the writer task.
    pub(crate) fn spawn(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        notifier: Arc<Notifier>,
        metrics: Arc<Metrics>,
        floor: Arc<DiskFloor>,
    ) -> (Self, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(MAX_BATCH);
        let (close, closed) = oneshot::channel();
        let task = tokio::spawn(run(rx, closed, store, hub, notifier, metrics, floor));
        (Self { tx }, close, task)
    }

    /// Queues `op` (waiting if the queue is full) and returns where its result will arrive.
    pub(crate) async fn enqueue(&self, op: WriteOp) -> oneshot::Receiver<OpResult> {
        let (reply, rx) = oneshot::channel();
        // If the writer is gone, `reply` is dropped and the receiver reports it.
        let _ = self.tx.send(Job { op, reply }).await;
        rx
    }

    /// Queues `op` and waits for its durable result.
    pub(crate) async fn submit(&self, op: WriteOp) -> OpResult {
        self.enqueue(op)
            .await
            .await
            .unwrap_or_else(|_| Err(internal()))
    }

    /// Queues `op` without waiting for room in the queue or for the result (audit records).
    pub(crate) fn fire(&self, op: WriteOp) {
        let (reply, _) = oneshot::channel();
        let _ = self.tx.try_send(Job { op, reply });
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    mut closed: oneshot::Receiver<()>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    floor: Arc<DiskFloor>,
) {
    let mut jobs = Vec::new();
    loop {
        let last = tokio::select! {
            n = rx.recv_many(&mut jobs, MAX_BATCH) => {
                if n == 0 {
                    break;
                }
                false
            }
            _ = &mut closed => {
                // Finish what is queued, then stop.
                rx.close();
                while let Ok(job) = rx.try_recv() {
                    jobs.push(job);
                }
                true
            }
        };
        if !jobs.is_empty() && floor.low() {
            refuse_growth(&mut jobs, &store);
        }
        if !jobs.is_empty() {
            commit(&mut jobs, &store, &hub, &notifier, &metrics).await;
        }
        if last {
            break;
        }
    }
}

/// The disk is low: answers the ops that would add to the store (`StorageFull`; audit
/// records are dropped) and logins (from a read, without recording when they were seen),
/// and leaves the rest to be committed.
fn refuse_growth(jobs: &mut Vec<Job>, store: &Arc<dyn Store>) {
    let mut kept = Vec::with_capacity(jobs.len());
    for job in jobs.drain(..) {
        match &job.op {
            op if frees_or_keeps(op) => kept.push(job),
            WriteOp::Authenticate { account, .. } => {
                let answer = match store.account(account) {
                    Ok(Some(record)) if record.banned => Err(WireError::new(
                        ErrorCode::Banned,
                        "this account is banned here",
                    )),
                    Ok(Some(record)) => Ok(Applied::Account(record)),
                    Ok(None) => Err(WireError::new(ErrorCode::AuthFailed, "unknown account key")),
                    Err(_) => Err(internal()),
                };
                let _ = job.reply.send(answer);
            }
            _ => {
                let _ = job.reply.send(Err(storage_full()));
            }
        }
    }
    *jobs = kept;
}

async fn commit(
    jobs: &mut Vec<Job>,
    store: &Arc<dyn Store>,
    hub: &Hub,
    notifier: &Notifier,
    metrics: &Metrics,
) {
    {
        let (ops, replies): (Vec<_>, Vec<_>) = jobs.drain(..).map(|j| (j.op, j.reply)).unzip();
        let count = ops.len();
        let store = store.clone();
        let outcome = tokio::task::spawn_blocking(move || store.apply(ops)).await;
        let results = match outcome {
            Ok(Ok(results)) if results.len() == count => results,
            Ok(Ok(_)) => {
                tracing::error!("store answered a batch with the wrong number of results");
                vec![Err(internal()); count]
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, ops = count, "durable commit failed; batch refused");
                vec![Err(internal()); count]
            }
            Err(e) => {
                tracing::error!(error = %e, ops = count, "store task failed; batch refused");
                vec![Err(internal()); count]
            }
        };
        let mut appended = Vec::new();
        for result in &results {
            match result {
                Ok(Applied::Appended { room, entry, ended }) => {
                    appended.push((*room, entry.clone(), *ended));
                }
                Ok(Applied::Deposited { to }) => notifier.inbox_arrived(to),
                Ok(Applied::Reverted { room, ended }) => hub.epoch_reverted(*room, *ended),
                Err(e) if e.code == ErrorCode::QuotaExceeded => {
                    Metrics::bump(&metrics.quota_exceeded);
                    tracing::warn!(refused = "quota-exceeded", "limit hit");
                }
                _ => {}
            }
        }
        if !appended.is_empty() {
            metrics
                .stored
                .fetch_add(appended.len() as u64, std::sync::atomic::Ordering::Relaxed);
            hub.publish(&appended);
        }
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}
