//! Live fan-out of room entries to subscriptions, without gaps or duplicates.
//!
//! Each subscription is either *catching up* (its task reads the store, at most
//! [`CATCH_UP_BYTES`] at a time, and waits for room in the connection's byte-bounded
//! [`Outbox`]) or *live* (the writer pushes new entries to it right after each
//! durable commit, with `Outbox::try_push`). Everything is decided under the hub's lock:
//!
//! - the writer publishes batches in commit order and records the highest seq it has
//!   published per room (`published`); every entry up to `published` is in the store;
//! - a catching-up task goes live only when its next seq is above `published`, so every
//!   entry it has not read will be published after that moment and reach it;
//! - a live subscription that cannot keep up (its outbox more than half full) or sees a gap falls back to
//!   catching up from its next seq.
//!
//! A run of entries is encoded once per distinct slice that subscriptions take of it
//! (normally one: every live subscription is at the run's first seq), and those bytes
//! are shared by every subscription's outbox (issue 15): no entry is cloned or encoded
//! per subscriber.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use hearth_protocol::{CapHash, Entry, EntryKind, Event, RoomId, Seq};
use tokio::sync::Notify;

use super::outbox::{encode_entry_refs, Outbox, PushError};
use crate::store::{Store, StoreError};

/// Entries per event while catching up.
const CATCH_UP_CHUNK: u32 = 256;
/// Payload bytes per event while catching up: the read stops there, so one event never
/// holds more than this (plus one entry) however large the room's entries are.
const CATCH_UP_BYTES: usize = 256 * 1024;

struct Sub {
    id: u64,
    tx: Arc<Outbox>,
    cap: CapHash,
    next: Seq,
    live: bool,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct RoomSubs {
    published: u64,
    subs: Vec<Sub>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<RoomId, RoomSubs>,
    next_id: u64,
}

/// Every live subscription of the relay.
#[derive(Default)]
pub(crate) struct Hub {
    inner: Mutex<Inner>,
}

/// A subscription's identity, to cancel it.
pub(crate) struct SubscriptionHandle {
    pub(crate) room: RoomId,
    pub(crate) id: u64,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // breaks invariants worse than a lost subscription, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a subscription of `room` from `from` with capability hash `cap` and
    /// starts its task. The caller has checked the capability.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        room: RoomId,
        cap: CapHash,
        from: Seq,
        tx: Arc<Outbox>,
    ) -> SubscriptionHandle {
        let wake = Arc::new(Notify::new());
        let id = {
            let mut inner = self.lock();
            inner.next_id += 1;
            let id = inner.next_id;
            inner.rooms.entry(room).or_default().subs.push(Sub {
                id,
                tx: tx.clone(),
                cap,
                next: Seq(from.0.max(1)),
                live: false,
                wake: wake.clone(),
            });
            id
        };
        let hub = self.clone();
        let task = tokio::spawn(async move {
            hub.catch_up(store, room, cap, id, tx, wake).await;
        });
        SubscriptionHandle { room, id, task }
    }

    /// Removes a subscription (its task is aborted by the caller).
    pub(crate) fn unsubscribe(&self, room: &RoomId, id: u64) {
        let mut inner = self.lock();
        if let Some(rs) = inner.rooms.get_mut(room) {
            rs.subs.retain(|s| s.id != id);
            if rs.subs.is_empty() {
                inner.rooms.remove(room);
            }
        }
    }

    /// A commit was reverted (see [`crate::store::WriteOp::RevertCommit`]): the epoch it
    /// began, `ended`, is over. Its live subscriptions go back to reading the store, which
    /// tells them so (`SubscriptionEnded`).
    pub(crate) fn epoch_reverted(&self, room: RoomId, ended: CapHash) {
        let mut inner = self.lock();
        if let Some(rs) = inner.rooms.get_mut(&room) {
            for sub in rs.subs.iter_mut().filter(|s| s.cap == ended) {
                sub.live = false;
                sub.wake.notify_one();
            }
        }
    }

    /// Pushes freshly committed entries (in commit order) to live subscriptions.
    pub(crate) fn publish(&self, appended: &[(RoomId, Entry, Option<CapHash>)]) {
        let mut inner = self.lock();
        let mut i = 0;
        while i < appended.len() {
            let room = appended[i].0;
            let mut j = i;
            while j < appended.len() && appended[j].0 == room {
                j += 1;
            }
            // A run of entries of one room, in seq order.
            let run = &appended[i..j];
            if let Some(rs) = inner.rooms.get_mut(&room) {
                if let Some(last) = run.last() {
                    rs.published = rs.published.max(last.1.seq.0);
                }
                let mut encoded = Encoded::default();
                rs.subs
                    .retain_mut(|sub| deliver(room, sub, run, &mut encoded));
                if rs.subs.is_empty() {
                    inner.rooms.remove(&room);
                }
            }
            i = j;
        }
    }

    /// The subscription's task: reads the store until caught up, then waits while live.
    async fn catch_up(
        &self,
        store: Arc<dyn Store>,
        room: RoomId,
        cap: CapHash,
        id: u64,
        tx: Arc<Outbox>,
        wake: Arc<Notify>,
    ) {
        let Some(mut next) = self.next_of(&room, id) else {
            return;
        };
        loop {
            let access = off_workers(&store, move |store| store.access(&room, &cap)).await;
            let (record, access) = match access {
                Ok(Some((record, Ok(access)))) => (record, access),
                Ok(_) => return self.unsubscribe(&room, id),
                Err(e) => {
                    tracing::error!(error = %e, "subscription read failed");
                    return self.unsubscribe(&room, id);
                }
            };
            let last = access.last_readable(record.head);
            if next < Seq(record.first) {
                next = Seq(record.first);
            }
            if next <= last {
                let read = off_workers(&store, move |store| {
                    store.entries_within(&room, next, last, CATCH_UP_CHUNK, CATCH_UP_BYTES)
                });
                let entries = match read.await {
                    Ok(entries) => entries,
                    Err(e) => {
                        tracing::error!(error = %e, "subscription read failed");
                        return self.unsubscribe(&room, id);
                    }
                };
                match entries.last() {
                    Some(e) => next = e.seq.next(),
                    None => next = last.next(),
                }
                if !entries.is_empty() && tx.send(Event::Entries { room, entries }).await.is_err() {
                    return self.unsubscribe(&room, id);
                }
                continue;
            }
            if let crate::store::Access::Ended { .. } = access {
                self.unsubscribe(&room, id);
                let _ = tx.send(Event::SubscriptionEnded { room, next }).await;
                return;
            }
            // Caught up with what was committed when we read: go live if nothing newer
            // has been published since.
            {
                let mut inner = self.lock();
                let Some(rs) = inner.rooms.get_mut(&room) else {
                    return;
                };
                let published = rs.published;
                let Some(sub) = rs.subs.iter_mut().find(|s| s.id == id) else {
                    return;
                };
                if next.0 > published {
                    sub.next = next;
                    sub.live = true;
                } else {
                    continue;
                }
            }
            loop {
                wake.notified().await;
                match self.state_of(&room, id) {
                    None => return,
                    // A stale wake-up: still live, the writer is pushing.
                    Some((_, true)) => continue,
                    Some((n, false)) => {
                        next = n;
                        break;
                    }
                }
            }
        }
    }

    fn next_of(&self, room: &RoomId, id: u64) -> Option<Seq> {
        self.state_of(room, id).map(|(next, _)| next)
    }

    fn state_of(&self, room: &RoomId, id: u64) -> Option<(Seq, bool)> {
        let inner = self.lock();
        let rs = inner.rooms.get(room)?;
        rs.subs
            .iter()
            .find(|s| s.id == id)
            .map(|s| (s.next, s.live))
    }
}

/// Runs a store read on tokio's blocking pool, so catching up on a large room never holds
/// up the async thread.
async fn off_workers<T: Send + 'static>(
    store: &Arc<dyn Store>,
    read: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || read(&*store))
        .await
        .unwrap_or(Err(StoreError::Closed))
}

/// The encodings of slices of one run made during one publish, shared by every
/// subscription that takes the same slice.
#[derive(Default)]
struct Encoded {
    slices: Vec<(Range<usize>, Option<Bytes>)>,
}

impl Encoded {
    /// The frames of `run[range]`; `None` if they do not encode (then the subscription
    /// reads the store instead).
    fn of(
        &mut self,
        room: RoomId,
        run: &[(RoomId, Entry, Option<CapHash>)],
        range: Range<usize>,
    ) -> Option<Bytes> {
        if let Some((_, bytes)) = self.slices.iter().find(|(r, _)| *r == range) {
            return bytes.clone();
        }
        let entries: Vec<&Entry> = run[range.clone()].iter().map(|(_, e, _)| e).collect();
        let bytes = match encode_entry_refs(room, &entries) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::error!(error = %e, "live entries do not encode; subscribers read the store");
                None
            }
        };
        self.slices.push((range, bytes.clone()));
        bytes
    }
}

/// Delivers `run` to one subscription; returns whether to keep it.
fn deliver(
    room: RoomId,
    sub: &mut Sub,
    run: &[(RoomId, Entry, Option<CapHash>)],
    encoded: &mut Encoded,
) -> bool {
    if !sub.live {
        return true;
    }
    // The slice of the run this subscription takes: from its next seq, contiguous, up
    // to and including a commit that ends its epoch.
    let mut start = None;
    let mut end = 0;
    let mut ended = false;
    for (i, (_, entry, ended_cap)) in run.iter().enumerate() {
        if entry.seq < sub.next {
            continue;
        }
        if entry.seq != sub.next {
            // A gap cannot happen with in-order publication; recover by reading the store.
            break;
        }
        start.get_or_insert(i);
        end = i + 1;
        sub.next = entry.seq.next();
        if entry.kind == EntryKind::Commit && *ended_cap == Some(sub.cap) {
            ended = true;
            break;
        }
    }
    if let Some(start) = start {
        let first = run[start].1.seq;
        let pushed = match encoded.of(room, run, start..end) {
            Some(frames) => sub.tx.try_push_shared(frames),
            None => Err(PushError::Full),
        };
        match pushed {
            Ok(()) => {}
            Err(PushError::Closed) => return false,
            Err(PushError::Full) => {
                // Too slow for live pushes: catch up from the store at its own pace.
                sub.next = first;
                sub.live = false;
                sub.wake.notify_one();
                return true;
            }
        }
    }
    let gap = run.last().is_some_and(|(_, e, _)| e.seq >= sub.next) && !ended;
    if ended {
        match sub.tx.try_push(Event::SubscriptionEnded {
            room,
            next: sub.next,
        }) {
            Ok(()) => {
                sub.wake.notify_one();
                return false;
            }
            Err(PushError::Closed) => return false,
            Err(PushError::Full) => {
                sub.live = false;
                sub.wake.notify_one();
                return true;
            }
        }
    }
    if gap {
        sub.live = false;
        sub.wake.notify_one();
    }
    true
}
