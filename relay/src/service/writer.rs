//! Group commit: one thread drains every pending write into one durable transaction.
//!
//! Connections enqueue [`WriteOp`]s with where the result goes: a oneshot a task waits
//! on, or, for a QUIC connection's requests, the connection's outbox, where the writer
//! queues the response itself (see [`super::responder`]). The committer, a thread of its
//! own, takes whatever is queued (up to [`MAX_BATCH`]) and applies it with
//! [`Store::apply`] (one fsync for the whole batch); a task on the async thread then
//! publishes the appended entries to subscribers in order, and only then answers. While
//! one batch is being committed, the next one queues up, so throughput grows with the
//! number of concurrent writers; and as soon as a commit is durable, the committer
//! starts on the batch gathered meanwhile while the finished one is fanned out and
//! answered (a pipeline: the disk waits neither for the fan-out nor for the async thread
//! to wake up, and the fan-out happens while the next fsync runs).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hearth_protocol::{ErrorCode, WireError};
use tokio::sync::{mpsc, oneshot};

use super::audit::AuditLog;
use super::hub::Hub;
use super::metrics::Metrics;
use super::responder::Answer;
use super::Notifier;
use crate::store::{Applied, OpResult, Store, WriteOp};

/// The most ops committed in one transaction.
pub const MAX_BATCH: usize = 4096;

struct Job {
    op: WriteOp,
    reply: Waiter,
}

/// Where an op's result goes once its batch is durable.
enum Waiter {
    /// A task awaiting it.
    Task(oneshot::Sender<OpResult>),
    /// The connection that asked, as the response to its request (see
    /// [`super::responder`]).
    Connection(Answer),
    /// Nobody (audit records).
    Nobody,
}

impl Waiter {
    fn send(self, result: OpResult) {
        match self {
            // A task that stopped waiting does not need it.
            Waiter::Task(reply) => drop(reply.send(result)),
            Waiter::Connection(answer) => answer.send(result),
            Waiter::Nobody => {}
        }
    }
}

/// The queue into the committer.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Queued>,
}

/// The free-space floor of the store's file system (see
/// [`crate::config::RelayConfig::min_free_bytes`]): below it, ops that would store
/// something new are refused before they reach the store, so a full disk never fails a
/// write transaction (after which the store would refuse every write), and logins are
/// answered from a read.
pub struct DiskFloor {
    dir: PathBuf,
    min_free: AtomicU64,
    /// A free space to report instead of the disk's (`u64::MAX`: none).
    pretend: AtomicU64,
}

impl DiskFloor {
    /// A floor of `min_free` bytes on the file system holding `dir`.
    pub fn new(dir: PathBuf, min_free: u64) -> Self {
        Self {
            dir,
            min_free: AtomicU64::new(min_free),
            pretend: AtomicU64::new(u64::MAX),
        }
    }

    /// Reports `free` bytes free instead of measuring the disk, `None` to measure again
    /// (tests and drills: a disk filling up without filling one).
    pub fn pretend_free(&self, free: Option<u64>) {
        self.pretend
            .store(free.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Free bytes on the disk (or what [`DiskFloor::pretend_free`] said); `None` when
    /// unknown.
    fn free(&self) -> Option<u64> {
        match self.pretend.load(Ordering::SeqCst) {
            u64::MAX => crate::admin::DiskSpace::of(&self.dir)
                .ok()
                .map(|d| d.free_bytes),
            free => Some(free),
        }
    }

    /// Whether `bytes` more can be written and the floor still be kept (unknown counts as
    /// enough): a file's upload is refused once the rest of it would not fit, so a disk
    /// filled by files still takes messages.
    pub(crate) fn room_for(&self, bytes: u64) -> bool {
        self.free()
            .is_none_or(|free| free >= self.min_free.load(Ordering::SeqCst).saturating_add(bytes))
    }

    /// Changes the floor (tests; an owner freeing space needs nothing: it is measured
    /// before every batch).
    pub fn set(&self, min_free: u64) {
        self.min_free.store(min_free, Ordering::SeqCst);
    }

    /// Whether the free space is under the floor now (unknown counts as enough).
    pub(crate) fn low(&self) -> bool {
        !self.room_for(0)
    }
}

/// Whether the store has failed a durable write (an I/O error: a disk that filled up
/// despite the floor, or a failing one). redb then refuses every later write until the
/// database is opened again, so the relay process should end and be restarted by its
/// service manager (`hearth-relay` exits non-zero; systemd's `Restart=on-failure`).
#[derive(Default)]
pub struct StoreHealth {
    failed: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl StoreHealth {
    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a durable write has failed.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Waits until a durable write fails.
    pub async fn failure(&self) {
        loop {
            let notified = self.notify.notified();
            if self.has_failed() {
                return;
            }
            notified.await;
        }
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
    /// Starts the committer thread and the fan-out task. Returns the queue, the close
    /// signal (or drop it) and the fan-out task's handle, which ends once everything
    /// queued before the close is committed and answered and the store let go.
    pub(crate) fn spawn(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        notifier: Arc<Notifier>,
        metrics: Arc<Metrics>,
        (floor, health): (Arc<DiskFloor>, Arc<StoreHealth>),
        audit: Arc<AuditLog>,
    ) -> (Self, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(MAX_BATCH);
        let (close, closed) = oneshot::channel();
        let task = spawn_pipeline(
            rx,
            tx.downgrade(),
            closed,
            store,
            (hub, notifier, metrics),
            (floor, health, audit),
        );
        (Self { tx }, close, task)
    }

    /// Queues `op` (waiting if the queue is full) and returns where its result will arrive.
    pub(crate) async fn enqueue(&self, op: WriteOp) -> oneshot::Receiver<OpResult> {
        let (reply, rx) = oneshot::channel();
        // If the writer is gone, `reply` is dropped and the receiver reports it.
        let _ = self
            .tx
            .send(Queued::Job(Job {
                op,
                reply: Waiter::Task(reply),
            }))
            .await;
        rx
    }

    /// Queues `op` (waiting if the queue is full); once it is durable, `answer` queues
    /// the response on its connection. If the writer is gone, `answer` is dropped and
    /// its connection stops waiting for it.
    pub(crate) async fn enqueue_answered(&self, op: WriteOp, answer: Answer) {
        let _ = self
            .tx
            .send(Queued::Job(Job {
                op,
                reply: Waiter::Connection(answer),
            }))
            .await;
    }

    /// Queues `op` and waits for its durable result.
    pub(crate) async fn submit(&self, op: WriteOp) -> OpResult {
        self.enqueue(op)
            .await
            .await
            .unwrap_or_else(|_| Err(internal()))
    }
}

/// How often counted audit records are written when no other write carries them.
const AUDIT_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// What the queue into the committer carries.
// Nearly every item is a job: boxing it would allocate once per op.
#[allow(clippy::large_enum_variant)]
enum Queued {
    /// An op and where its result goes.
    Job(Job),
    /// Write the audit records counted so far, even with no op to carry them.
    FlushAudit,
    /// Commit what is queued, then stop.
    Close,
}

/// A batch the committer finished (durable, or failed), for the fan-out and the answers.
struct Done {
    replies: Vec<Waiter>,
    /// `Err` when the store panicked.
    outcome: std::thread::Result<Result<Vec<OpResult>, crate::store::StoreError>>,
}

/// Finished batches that may wait for the fan-out: the committer goes on with the next
/// batch meanwhile, and stops when this many wait (each holds its batch's entries).
const DONE_QUEUE: usize = 1;

/// Starts the committer thread and the task that fans out and answers what it commits.
/// The handle returned ends once the fan-out has ended (after the committer's last batch)
/// and the committer has let go of the store.
fn spawn_pipeline(
    rx: mpsc::Receiver<Queued>,
    queue: mpsc::WeakSender<Queued>,
    closed: oneshot::Receiver<()>,
    store: Arc<dyn Store>,
    (hub, notifier, metrics): (Arc<Hub>, Arc<Notifier>, Arc<Metrics>),
    (floor, health, audit): (Arc<DiskFloor>, Arc<StoreHealth>, Arc<AuditLog>),
) -> tokio::task::JoinHandle<()> {
    let (done_tx, done_rx) = mpsc::channel(DONE_QUEUE);
    let (gone_tx, gone) = oneshot::channel::<()>();
    let committer_audit = audit.clone();
    let committer_health = health.clone();
    let spawned = std::thread::Builder::new()
        .name("hearth-commit".into())
        .spawn(move || {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                commit_loop(rx, &done_tx, &store, &floor, &committer_audit)
            }));
            if ran.is_err() {
                // Nothing is committed any more: the relay exits to be restarted, as
                // on a failed durable write.
                tracing::error!("the commit thread panicked; stopping");
                committer_health.fail();
            }
            // The store goes before anyone is told the committer ended: whoever waits
            // for the writer to stop may open the store file again right after.
            drop(store);
            drop(done_tx);
            let _ = gone_tx.send(());
        });
    if let Err(e) = spawned {
        // The queue's receiver went with the closure: every op is then refused as the
        // writer being gone, and the relay answers `Internal`.
        tracing::error!(error = %e, "cannot start the commit thread");
    }
    // The close and the audit ticks reach the committer through its queue, in order
    // after what is queued. Sent from their own task: the fan-out must never wait for
    // room in the queue, or a full queue and a committer waiting for the fan-out would
    // wait on each other.
    tokio::spawn(async move {
        let mut flush = tokio::time::interval(AUDIT_FLUSH);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(closed);
        loop {
            tokio::select! {
                _ = &mut closed => break,
                _ = flush.tick() => {
                    if !audit.is_empty() {
                        let Some(tx) = queue.upgrade() else { return };
                        // A full queue carries the records with its next batch anyway.
                        let _ = tx.try_send(Queued::FlushAudit);
                    }
                }
            }
        }
        if let Some(tx) = queue.upgrade() {
            let _ = tx.send(Queued::Close).await;
        }
    });
    let fan_out = tokio::spawn(fan_out_and_answer(
        done_rx,
        (hub, notifier, metrics),
        health,
    ));
    tokio::spawn(async move {
        // Even if the fan-out ended early (a panic), the handle resolves only once the
        // committer has let go of the store.
        let _ = fan_out.await;
        let _ = gone.await;
    })
}

async fn fan_out_and_answer(
    mut done: mpsc::Receiver<Done>,
    (hub, notifier, metrics): (Arc<Hub>, Arc<Notifier>, Arc<Metrics>),
    health: Arc<StoreHealth>,
) {
    while let Some(batch) = done.recv().await {
        finish(batch, &hub, &notifier, &metrics, &health);
    }
}

/// The committer (issue 15): takes whatever is queued (up to [`MAX_BATCH`]), commits it
/// with one fsync, hands the results to the fan-out, and goes straight on with what
/// queued meanwhile. The fan-out and the answers of one batch run on the async thread
/// while the next batch commits; the disk never waits for them, nor for a wake-up of the
/// async thread between two commits.
fn commit_loop(
    mut rx: mpsc::Receiver<Queued>,
    done: &mpsc::Sender<Done>,
    store: &Arc<dyn Store>,
    floor: &DiskFloor,
    audit: &AuditLog,
) {
    let mut jobs = Vec::new();
    loop {
        // Sleeps only when nothing is left to commit. After the close this drains the
        // queue, waiting for whoever had taken a slot in it, and ends with `None`.
        let Some(first) = rx.blocking_recv() else {
            return;
        };
        take(first, &mut jobs, &mut rx);
        // What queued meanwhile (during the previous commit) joins. (Yielding here to let
        // the async thread queue the rest of a burst was tried: on one core it showed no
        // clear gain over the noise, so the loop stays simple.)
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => take(item, &mut jobs, &mut rx),
                Err(_) => break,
            }
        }
        // Every wake-up commits, with the audit records counted so far (a
        // `FlushAudit` or the close may bring nothing else).
        if let Some(batch) = commit(&mut jobs, store, floor, audit) {
            if done.blocking_send(batch).is_err() {
                // The fan-out is gone (the runtime is shutting down): the waiters are
                // dropped, which their connections count as answered.
                return;
            }
        }
    }
}

/// Adds one item from the queue to the batch being gathered.
fn take(item: Queued, jobs: &mut Vec<Job>, rx: &mut mpsc::Receiver<Queued>) {
    match item {
        Queued::Job(job) => jobs.push(job),
        // The wake-up itself is the point: its batch takes the audit records.
        Queued::FlushAudit => {}
        // Nothing can queue after this; what did before is committed.
        Queued::Close => rx.close(),
    }
}

/// Commits `jobs` (with the audit records counted so far) and takes them out; `None`
/// when there was nothing to commit: no op left (none queued, or the disk is low and
/// all were answered) and no audit record to write.
fn commit(
    jobs: &mut Vec<Job>,
    store: &Arc<dyn Store>,
    floor: &DiskFloor,
    audit: &AuditLog,
) -> Option<Done> {
    let low = floor.low();
    if !jobs.is_empty() && low {
        refuse_growth(jobs, store);
    }
    // Audit records counted before any write of this batch was queued go with it, so
    // an acknowledged write means they are stored. While the disk is low they stay
    // counted in memory (bounded) until there is space.
    if !low {
        for record in audit.take() {
            jobs.push(Job {
                op: WriteOp::Audit(record),
                reply: Waiter::Nobody,
            });
        }
    }
    if jobs.is_empty() {
        return None;
    }
    let (ops, replies): (Vec<_>, Vec<_>) = jobs.drain(..).map(|j| (j.op, j.reply)).unzip();
    // A panic in the store is answered as a failed batch, as an I/O error would be; the
    // committer goes on.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.apply(ops)));
    Some(Done { replies, outcome })
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
                job.reply.send(answer);
            }
            _ => job.reply.send(Err(storage_full())),
        }
    }
    *jobs = kept;
}

/// A batch is durable (or failed): publishes its entries, then answers its waiters.
fn finish(
    Done { replies, outcome }: Done,
    hub: &Hub,
    notifier: &Notifier,
    metrics: &Metrics,
    health: &StoreHealth,
) {
    let count = replies.len();
    let mut results = match outcome {
        Ok(Ok(results)) if results.len() == count => results,
        Ok(Ok(_)) => {
            tracing::error!("store answered a batch with the wrong number of results");
            vec![Err(internal()); count]
        }
        Ok(Err(e)) => {
            // Marked failed before anything is logged: with standard error on the
            // same full disk, writing the log line can fail too (and tracing's report
            // of that panics), and the relay must still stop (found by stress/disk-full).
            if matches!(
                e,
                crate::store::StoreError::Db(_) | crate::store::StoreError::Io(_)
            ) {
                health.fail();
            }
            tracing::error!(error = %e, ops = count, "durable commit failed; batch refused");
            vec![Err(internal()); count]
        }
        Err(_) => {
            tracing::error!(ops = count, "the store panicked; batch refused");
            vec![Err(internal()); count]
        }
    };
    let mut appended = Vec::new();
    for result in &mut results {
        match result {
            Ok(Applied::Appended { room, entry, ended }) => {
                // The answer needs only the seq: the payload moves on to the subscribers
                // instead of being copied.
                let payload = std::mem::take(&mut entry.payload);
                appended.push((
                    *room,
                    hearth_protocol::Entry {
                        payload,
                        ..entry.clone()
                    },
                    *ended,
                ));
            }
            Ok(Applied::Deposited { to }) => notifier.inbox_arrived(to),
            Ok(Applied::Reverted {
                room,
                ended,
                entry,
                restored,
            }) => {
                hub.epoch_reverted(*room, *ended);
                // The reverting commit goes to the subscribers of the restored epoch, as
                // any commit does (it ends that epoch for them).
                appended.push((*room, entry.clone(), Some(*restored)));
            }
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
        reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        AccountRecord, AuditRecord, InviteRecord, ListingRecord, RedbStore, RoomAccess, RoomRecord,
        StoreError, StoreStats,
    };
    use hearth_protocol::{
        AccountKey, CapHash, Entry, Handle, InboxEntry, KeyRotation, RoomId, Seq,
    };

    /// A store whose writes go through its function (its reads go to the store).
    struct WithApply<F>(RedbStore, F);

    impl<F> Store for WithApply<F>
    where
        F: Fn(&RedbStore, Vec<WriteOp>) -> Result<Vec<OpResult>, StoreError> + Send + Sync,
    {
        fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<OpResult>, StoreError> {
            (self.1)(&self.0, ops)
        }
        fn account(&self, a: &AccountKey) -> Result<Option<AccountRecord>, StoreError> {
            self.0.account(a)
        }
        fn rotations(&self, h: &Handle) -> Result<Vec<KeyRotation>, StoreError> {
            self.0.rotations(h)
        }
        fn room_admins(&self, r: &RoomId) -> Result<Vec<hearth_protocol::AdminKey>, StoreError> {
            self.0.room_admins(r)
        }
        fn account_by_handle(&self, h: &Handle) -> Result<Option<AccountRecord>, StoreError> {
            self.0.account_by_handle(h)
        }
        fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
            self.0.accounts()
        }
        fn key_package_stock(&self, a: &AccountKey) -> Result<(u32, bool), StoreError> {
            self.0.key_package_stock(a)
        }
        fn inbox(&self, a: &AccountKey, after: u64, n: u32) -> Result<Vec<InboxEntry>, StoreError> {
            self.0.inbox(a, after, n)
        }
        fn room(&self, r: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
            self.0.room(r)
        }
        fn access(&self, r: &RoomId, c: &CapHash) -> Result<Option<RoomAccess>, StoreError> {
            self.0.access(r, c)
        }
        fn entries(&self, r: &RoomId, f: Seq, t: Seq, n: u32) -> Result<Vec<Entry>, StoreError> {
            self.0.entries(r, f, t, n)
        }
        fn listing(&self, r: &RoomId) -> Result<Option<(ListingRecord, u64)>, StoreError> {
            self.0.listing(r)
        }
        fn listings(&self, n: usize) -> Result<Vec<(RoomId, ListingRecord)>, StoreError> {
            self.0.listings(n)
        }
        fn invites(&self) -> Result<Vec<InviteRecord>, StoreError> {
            self.0.invites()
        }
        fn audit(&self, n: u32) -> Result<Vec<AuditRecord>, StoreError> {
            self.0.audit(n)
        }
        fn stats(&self) -> Result<StoreStats, StoreError> {
            self.0.stats()
        }
        fn inspect(&self) -> Result<crate::inspect::InspectReport, StoreError> {
            self.0.inspect()
        }
        fn sweep_scan(
            &self,
            c: &crate::store::SweepCursor,
            now: u64,
            r: u64,
            n: usize,
        ) -> Result<crate::store::SweepScan, StoreError> {
            self.0.sweep_scan(c, now, r, n)
        }
    }

    /// Ops that arrive while a batch commits are gathered into the next batch and every
    /// one is answered (the pipeline never drops a waiter), in the order they queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ops_queued_during_a_commit_are_all_answered() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("s.redb")).unwrap());
        let (writer, _close, _task) = Writer::spawn(
            store,
            Arc::new(Hub::default()),
            Arc::new(Notifier::default()),
            Arc::new(Metrics::default()),
            (
                Arc::new(DiskFloor::new(dir.path().to_path_buf(), 0)),
                Arc::new(StoreHealth::default()),
            ),
            Arc::new(AuditLog::default()),
        );
        let mut waiting = Vec::new();
        for round in 0..4u64 {
            for i in 0..64u64 {
                waiting.push(
                    writer
                        .enqueue(WriteOp::Sweep {
                            now: round * 1000 + i,
                            retention_secs: 1,
                            max_deletions: 1,
                        })
                        .await,
                );
            }
            tokio::task::yield_now().await;
        }
        for answer in waiting {
            assert!(
                matches!(answer.await, Ok(Ok(_))),
                "every queued op is answered with its result"
            );
        }
    }

    fn spawn_writer(
        store: Arc<dyn Store>,
        dir: &std::path::Path,
    ) -> (Writer, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        spawn_writer_auditing(store, dir, Arc::new(AuditLog::default()))
    }

    fn spawn_writer_auditing(
        store: Arc<dyn Store>,
        dir: &std::path::Path,
        audit: Arc<AuditLog>,
    ) -> (Writer, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        Writer::spawn(
            store,
            Arc::new(Hub::default()),
            Arc::new(Notifier::default()),
            Arc::new(Metrics::default()),
            (
                Arc::new(DiskFloor::new(dir.to_path_buf(), 0)),
                Arc::new(StoreHealth::default()),
            ),
            audit,
        )
    }

    fn sweep(now: u64) -> WriteOp {
        WriteOp::Sweep {
            now,
            retention_secs: 1,
            max_deletions: 1,
        }
    }

    /// Closing commits and answers everything queued before the close, and once the
    /// writer's task has ended the committer has let go of the store: its file opens
    /// again at once (the owner's offline commands do that right after a shutdown).
    #[tokio::test]
    async fn a_close_commits_what_is_queued_and_lets_go_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        for _ in 0..20 {
            let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).unwrap());
            let (writer, close, task) = spawn_writer(store, dir.path());
            let mut waiting = Vec::new();
            for i in 0..100 {
                waiting.push(writer.enqueue(sweep(i)).await);
            }
            close.send(()).unwrap();
            task.await.unwrap();
            for answer in waiting {
                assert!(matches!(answer.await, Ok(Ok(_))), "answered before the end");
            }
            assert!(
                matches!(
                    writer.submit(sweep(1)).await,
                    Err(e) if e.code == ErrorCode::Internal
                ),
                "nothing is taken after the close"
            );
            RedbStore::open(&path).expect("the store file is free again");
        }
    }

    /// Writes racing the close from other threads are each committed or refused, never
    /// left waiting: after the close the committer drains the queue until every sender
    /// that had taken a slot in it has put its op there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_racing_the_close_are_all_answered() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..20 {
            let store: Arc<dyn Store> = Arc::new(RedbStore::in_memory().unwrap());
            let (writer, close, task) = spawn_writer(store, dir.path());
            let mut racers = tokio::task::JoinSet::new();
            for r in 0..4u64 {
                let writer = writer.clone();
                racers.spawn(async move {
                    for i in 0..100 {
                        let answered = tokio::time::timeout(
                            std::time::Duration::from_secs(10),
                            writer.submit(sweep(r * 1000 + i)),
                        )
                        .await;
                        assert!(answered.is_ok(), "a write racing the close hung");
                    }
                });
            }
            tokio::task::yield_now().await;
            close.send(()).unwrap();
            while let Some(raced) = racers.join_next().await {
                raced.unwrap();
            }
            task.await.unwrap();
        }
    }

    /// Audit records counted before the close are written by it, with no op to carry
    /// them and before the next tick.
    #[tokio::test]
    async fn a_close_writes_the_audit_records_counted_so_far() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let audit = Arc::new(AuditLog::default());
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).unwrap());
        let (_writer, close, task) = spawn_writer_auditing(store, dir.path(), audit.clone());
        audit.record(7, "test-event", None, None, "counted before the close");
        close.send(()).unwrap();
        task.await.unwrap();
        let stored = RedbStore::open(&path).unwrap().audit(10).unwrap();
        assert!(stored.iter().any(|r| r.kind == "test-event"), "{stored:?}");
    }

    /// A panic in the store is answered as a failed batch, and the committer goes on.
    #[tokio::test]
    async fn a_store_that_panics_fails_its_batch_and_the_next_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let panicked = std::sync::atomic::AtomicBool::new(false);
        let store = WithApply(
            RedbStore::in_memory().unwrap(),
            move |s: &RedbStore, ops| {
                if !panicked.swap(true, Ordering::SeqCst) {
                    panic!("a bug in the store");
                }
                s.apply(ops)
            },
        );
        let (writer, _close, _task) = spawn_writer(Arc::new(store), dir.path());
        let refused = writer.submit(sweep(1)).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Internal);
        assert!(
            writer.submit(sweep(2)).await.is_ok(),
            "the next batch commits"
        );
    }

    /// A failed durable write is answered as such and marks the store failed, which the
    /// relay binary waits on to exit (and be restarted).
    #[tokio::test]
    async fn a_failed_durable_write_marks_the_store_failed() {
        let dir = tempfile::tempdir().unwrap();
        // A disk that fails every write (reads work).
        let store: Arc<dyn Store> = Arc::new(WithApply(
            RedbStore::in_memory().unwrap(),
            |_: &RedbStore, _| {
                Err(StoreError::Io(std::io::Error::other(
                    "No space left on device",
                )))
            },
        ));
        let health = Arc::new(StoreHealth::default());
        let (writer, _close, _task) = Writer::spawn(
            store,
            Arc::new(Hub::default()),
            Arc::new(Notifier::default()),
            Arc::new(Metrics::default()),
            (
                Arc::new(DiskFloor::new(dir.path().to_path_buf(), 0)),
                health.clone(),
            ),
            Arc::new(AuditLog::default()),
        );
        assert!(!health.has_failed());
        let refused = writer
            .submit(WriteOp::Sweep {
                now: 1,
                retention_secs: 1,
                max_deletions: 1,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Internal);
        assert!(health.has_failed());
        tokio::time::timeout(std::time::Duration::from_secs(1), health.failure())
            .await
            .expect("the failure is signalled");
    }
}
