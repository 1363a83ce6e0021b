//! One connection's outgoing queue, bounded in bytes (issue 13, item 5).
//!
//! Everything the relay sends a connection after the hello goes through its [`Outbox`]:
//! catch-up and live room entries, inbox and registration notices, re-authentication
//! challenges and (from the QUIC driver) responses. A separate task writes the queue to
//! the stream, so a client that does not read never blocks the connection's request
//! loop, its deadlines or its ban.
//!
//! The queue counts the bytes it holds (queued, and the item being written) against
//! `max_bytes` ([`crate::config::RelayConfig::max_queued_bytes_per_connection`]), in two
//! tiers:
//!
//! - what can wait (catch-up reads of a room log) only fills the first half and then
//!   waits for room ([`Outbox::send`]); what need not arrive (inbox hints) is dropped and
//!   live pushes fall back to catching up ([`Outbox::try_push`]), so a slow but honest
//!   reader is never disconnected for reading a large room slowly;
//! - what cannot wait (responses, re-authentication challenges) may use the whole bound
//!   ([`Outbox::push`]); past it the push fails and the driver closes the connection: a
//!   client that keeps asking without reading the answers is disconnected.
//!
//! An empty queue always takes one item, so an item larger than the bound still goes out.
//!
//! Live room entries arrive already encoded ([`Outgoing::Shared`]): the hub encodes each
//! run of entries once and every subscriber's queue holds the same bytes (issue 15). The
//! connection's writer takes everything queued at once ([`Outbox::next_batch`]) and hands
//! it to QUIC in one write, and is woken only when an item lands in an empty queue.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hearth_protocol::frame::{decode_body, encode_frame, FrameError};
use hearth_protocol::limits::{LENGTH_PREFIX_LEN, MAX_FRAME_LEN};
use hearth_protocol::{Entry, Event, RoomId, ServerFrame};
use tokio::sync::Notify;

use super::metrics::Metrics;

/// Bytes counted for an event besides its payloads (ids, lengths, framing).
const EVENT_OVERHEAD: usize = 64;
/// Bytes counted per room entry besides its payload (seq, kind, time, cap hash).
const ENTRY_OVERHEAD: usize = 64;

/// Something queued for the connection.
#[derive(Debug)]
pub enum Outgoing {
    /// A pushed event (encoded by the writer, split into frames if needed).
    Event(Event),
    /// A frame the driver encoded already (a response).
    Frame(Vec<u8>),
    /// Whole frames encoded once and shared by every connection they go to (live room
    /// entries; see [`encode_entries`]).
    Shared(Bytes),
}

impl Outgoing {
    /// The bytes this item is counted for: its encoded length for a frame, the payloads
    /// plus a fixed overhead for an event (payloads dominate; an exact count would mean
    /// encoding twice).
    pub fn cost(&self) -> usize {
        match self {
            Outgoing::Frame(bytes) => bytes.len(),
            Outgoing::Shared(bytes) => bytes.len(),
            Outgoing::Event(Event::Entries { entries, .. }) => {
                EVENT_OVERHEAD
                    + entries
                        .iter()
                        .map(|e| e.payload.len() + ENTRY_OVERHEAD)
                        .sum::<usize>()
            }
            Outgoing::Event(_) => EVENT_OVERHEAD,
        }
    }
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The queue holds too many bytes for this kind of item.
    #[error("the connection's outgoing queue is full")]
    Full,
    /// The connection is ending.
    #[error("the connection is closing")]
    Closed,
}

#[derive(Default)]
struct State {
    items: VecDeque<(Outgoing, usize)>,
    /// Events of shared frames already taken by [`Outbox::recv`], not yet returned.
    decoded: VecDeque<Event>,
    /// Bytes of `items` plus the item being written.
    held: usize,
    closed: bool,
}

/// A connection's outgoing queue; see the module documentation.
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when an item is queued or the queue is closed.
    queued: Notify,
    /// Wakes senders waiting for room.
    drained: Notify,
    max_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// An empty queue bounded at `max_bytes`, counted in `metrics.queued_bytes`.
    pub(crate) fn new(max_bytes: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            drained: Notify::new(),
            max_bytes: max_bytes.max(2),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update below leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` if the bytes held stay within `limit` (or nothing is held).
    fn enqueue(&self, item: Outgoing, limit: usize) -> Result<(), (PushError, Outgoing)> {
        let cost = item.cost();
        let wake = {
            let mut state = self.lock();
            if state.closed {
                return Err((PushError::Closed, item));
            }
            if state.held > 0 && state.held.saturating_add(cost) > limit {
                return Err((PushError::Full, item));
            }
            state.held += cost;
            state.items.push_back((item, cost));
            // The writer looks at the queue again before it waits, so it needs waking
            // only for an item that lands in an empty queue.
            state.items.len() == 1
        };
        self.metrics
            .queued_bytes
            .fetch_add(cost as u64, Ordering::Relaxed);
        if wake {
            self.queued.notify_one();
        }
        Ok(())
    }

    /// Queues what cannot wait (a response, a re-authentication challenge) within the
    /// whole bound. `Full` means the client is not reading: close the connection.
    pub fn push(&self, item: Outgoing) -> Result<(), PushError> {
        self.enqueue(item, self.max_bytes).map_err(|(e, _)| e)
    }

    /// Queues an event that may be dropped or sent later, within half the bound.
    pub(crate) fn try_push(&self, event: Event) -> Result<(), PushError> {
        self.enqueue(Outgoing::Event(event), self.max_bytes / 2)
            .map_err(|(e, _)| e)
    }

    /// Queues frames shared with other connections (live entries), within half the bound,
    /// like [`Outbox::try_push`].
    pub(crate) fn try_push_shared(&self, frames: Bytes) -> Result<(), PushError> {
        self.enqueue(Outgoing::Shared(frames), self.max_bytes / 2)
            .map_err(|(e, _)| e)
    }

    /// Queues an event that can wait (catch-up), waiting until it fits in half the
    /// bound. Fails only once the queue is closed.
    pub(crate) async fn send(&self, event: Event) -> Result<(), PushError> {
        let mut item = Outgoing::Event(event);
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            match self.enqueue(item, self.max_bytes / 2) {
                Ok(()) => return Ok(()),
                Err((PushError::Closed, _)) => return Err(PushError::Closed),
                Err((PushError::Full, back)) => item = back,
            }
            drained.await;
        }
    }

    /// The next item to write and its cost, waiting for one; `None` once the queue is
    /// closed and empty. The item's bytes stay counted until [`Outbox::written`].
    pub(crate) async fn next(&self) -> Option<(Outgoing, usize)> {
        loop {
            let queued = self.queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(item) = state.items.pop_front() {
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            queued.await;
        }
    }

    /// Everything queued, up to about `max_bytes` (at least one item), into `out`; waits
    /// for an item. Returns the items' cost, to give back with [`Outbox::written`] once
    /// written; `None` once the queue is closed and empty.
    pub(crate) async fn next_batch(
        &self,
        out: &mut Vec<Outgoing>,
        max_bytes: usize,
    ) -> Option<usize> {
        loop {
            let queued = self.queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            {
                let mut state = self.lock();
                let mut taken = 0usize;
                while let Some((_, cost)) = state.items.front() {
                    if taken > 0 && taken.saturating_add(*cost) > max_bytes {
                        break;
                    }
                    let Some((item, cost)) = state.items.pop_front() else {
                        break;
                    };
                    taken += cost;
                    out.push(item);
                }
                if taken > 0 || !out.is_empty() {
                    return Some(taken);
                }
                if state.closed {
                    return None;
                }
            }
            queued.await;
        }
    }

    /// Items of `cost` bytes taken with [`Outbox::next`] or [`Outbox::next_batch`] have
    /// been written.
    pub(crate) fn written(&self, cost: usize) {
        {
            let mut state = self.lock();
            state.held = state.held.saturating_sub(cost);
        }
        self.metrics
            .queued_bytes
            .fetch_sub(cost as u64, Ordering::Relaxed);
        self.drained.notify_waiters();
    }

    /// The next pushed event, for drivers that take events one by one and answer
    /// requests themselves (in-process transports); response frames are skipped, shared
    /// frames decoded back into their events. Cancel-safe.
    pub async fn recv(&self) -> Option<Event> {
        loop {
            if let Some(event) = self.lock().decoded.pop_front() {
                return Some(event);
            }
            match self.next().await? {
                (Outgoing::Event(event), cost) => {
                    self.written(cost);
                    return Some(event);
                }
                (Outgoing::Frame(_), cost) => self.written(cost),
                (Outgoing::Shared(frames), cost) => {
                    self.written(cost);
                    let events = decode_events(&frames);
                    self.lock().decoded.extend(events);
                }
            }
        }
    }

    /// Refuses further items; the writer still gets what is queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.queued.notify_waiters();
        self.queued.notify_one();
        self.drained.notify_waiters();
    }

    /// Bytes held now (queued and being written).
    pub fn held_bytes(&self) -> usize {
        self.lock().held
    }
}

/// Payload bytes per pushed `Entries` frame, so every frame stays under the hard limit.
pub(crate) const EVENT_BYTES: usize = MAX_FRAME_LEN / 2;

/// Encodes `Event::Entries { room, entries }` as whole frames, one after another in one
/// buffer, each holding at most [`EVENT_BYTES`] of payload (and at least one entry).
pub(crate) fn encode_entries(room: RoomId, entries: Vec<Entry>) -> Result<Bytes, FrameError> {
    encode_entry_refs(room, &entries.iter().collect::<Vec<_>>())
}

/// [`encode_entries`] for entries held elsewhere (the writer's committed batch), without
/// copying them first (issue 15).
pub(crate) fn encode_entry_refs(room: RoomId, entries: &[&Entry]) -> Result<Bytes, FrameError> {
    let total: usize = entries.iter().map(|e| e.payload.len() + 32).sum();
    let mut out = Vec::with_capacity(total + 64);
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        if i > start && bytes + entry.payload.len() > EVENT_BYTES {
            write_entries_frame(room, &entries[start..i], &mut out)?;
            start = i;
            bytes = 0;
        }
        bytes += entry.payload.len() + 32;
    }
    if start < entries.len() {
        write_entries_frame(room, &entries[start..], &mut out)?;
    }
    Ok(Bytes::from(out))
}

/// Appends the frame of `ServerFrame::Event(Event::Entries { room, entries })` to `out`,
/// byte for byte what [`encode_frame`] makes of it: postcard writes the fields of a
/// variant in order and a list as its length then its items, and the entries are the
/// last field, so the frame is the one of an empty list with the list put in place of
/// its length (one zero byte).
fn write_entries_frame(
    room: RoomId,
    entries: &[&Entry],
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let malformed = |e: postcard::Error| FrameError::Malformed(e.to_string());
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX_LEN]);
    let empty = ServerFrame::Event(Event::Entries {
        room,
        entries: Vec::new(),
    });
    let mut buf = postcard::to_extend(&empty, std::mem::take(out)).map_err(malformed)?;
    if buf.pop() != Some(0) {
        return Err(FrameError::Malformed(
            "unexpected encoding of Event::Entries".into(),
        ));
    }
    buf = postcard::to_extend(&EntryList(entries), buf).map_err(malformed)?;
    let len = buf.len() - start - LENGTH_PREFIX_LEN;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    // `len <= MAX_FRAME_LEN`, which fits in u32.
    buf[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    *out = buf;
    Ok(())
}

/// A list of borrowed entries, serialized as `Vec<Entry>` is.
struct EntryList<'a>(&'a [&'a Entry]);

impl serde::Serialize for EntryList<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

/// Encodes any event as whole frames (entries split as by [`encode_entries`]).
pub(crate) fn encode_event(event: Event) -> Result<Bytes, FrameError> {
    match event {
        Event::Entries { room, entries } => encode_entries(room, entries),
        other => Ok(Bytes::from(encode_frame(
            &ServerFrame::Event(other),
            MAX_FRAME_LEN,
        )?)),
    }
}

/// The events in a buffer of whole frames (in-process transports; the relay encoded
/// them, so nothing here is a peer's input).
fn decode_events(mut frames: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    while frames.len() >= LENGTH_PREFIX_LEN {
        let mut prefix = [0u8; LENGTH_PREFIX_LEN];
        prefix.copy_from_slice(&frames[..LENGTH_PREFIX_LEN]);
        let len = u32::from_be_bytes(prefix) as usize;
        let Some(body) = frames.get(LENGTH_PREFIX_LEN..LENGTH_PREFIX_LEN + len) else {
            break;
        };
        if let Ok(ServerFrame::Event(event)) = decode_body::<ServerFrame>(body) {
            out.push(event);
        }
        frames = &frames[LENGTH_PREFIX_LEN + len..];
    }
    out
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let held = self.lock().held;
        self.metrics
            .queued_bytes
            .fetch_sub(held as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_protocol::{Entry, EntryKind, RoomId, Seq};

    /// The frames written from borrowed entries are byte for byte those of the owned
    /// `Event::Entries` (clients decode them as such), split where the payloads pass
    /// `EVENT_BYTES`.
    #[test]
    fn entries_encoded_from_borrowed_entries_are_the_owned_frames() {
        let room = RoomId([3; 16]);
        let entry = |seq: u64, len: usize, commit: bool| Entry {
            seq: Seq(seq),
            kind: if commit {
                EntryKind::Commit
            } else {
                EntryKind::Message
            },
            time: 1_700_000_000 + seq,
            payload: vec![seq as u8; len],
            next_cap_hash: commit.then_some(hearth_protocol::CapHash([9; 32])),
        };
        let cases: Vec<Vec<Entry>> = vec![
            vec![entry(1, 0, false)],
            vec![
                entry(1, 1024, false),
                entry(2, 300, true),
                entry(3, 70_000, false),
            ],
            // Three frames: each next entry would pass EVENT_BYTES.
            (1..=3)
                .map(|seq| entry(seq, EVENT_BYTES - 100, false))
                .collect(),
        ];
        for entries in cases {
            let mut expected = Vec::new();
            let mut run: Vec<Entry> = Vec::new();
            let mut bytes = 0;
            for e in &entries {
                if !run.is_empty() && bytes + e.payload.len() > EVENT_BYTES {
                    let frame = ServerFrame::Event(Event::Entries {
                        room,
                        entries: std::mem::take(&mut run),
                    });
                    expected.extend(encode_frame(&frame, MAX_FRAME_LEN).unwrap());
                    bytes = 0;
                }
                bytes += e.payload.len() + 32;
                run.push(e.clone());
            }
            let frame = ServerFrame::Event(Event::Entries { room, entries: run });
            expected.extend(encode_frame(&frame, MAX_FRAME_LEN).unwrap());
            let refs: Vec<&Entry> = entries.iter().collect();
            let got = encode_entry_refs(room, &refs).unwrap();
            assert_eq!(&got[..], &expected[..]);
            let decoded: Vec<Entry> = decode_events(&got)
                .into_iter()
                .flat_map(|event| match event {
                    Event::Entries { entries, .. } => entries,
                    other => panic!("not entries: {other:?}"),
                })
                .collect();
            assert_eq!(decoded, entries);
        }
    }

    fn entries(bytes: usize) -> Event {
        Event::Entries {
            room: RoomId([1; 16]),
            entries: vec![Entry {
                seq: Seq(1),
                kind: EntryKind::Message,
                time: 0,
                payload: vec![0; bytes],
                next_cap_hash: None,
            }],
        }
    }

    #[tokio::test]
    async fn bounded_in_bytes_in_two_tiers() {
        let metrics = Arc::new(Metrics::default());
        let outbox = Outbox::new(10_000, metrics.clone());
        // An empty queue takes anything, even larger than the bound.
        outbox.try_push(entries(20_000)).unwrap();
        assert_eq!(outbox.try_push(Event::InboxArrived), Err(PushError::Full));
        let (item, cost) = outbox.next().await.unwrap();
        assert!(matches!(item, Outgoing::Event(Event::Entries { .. })));
        assert!(cost > 20_000);
        assert_eq!(
            metrics.queued_bytes.load(Ordering::Relaxed),
            cost as u64,
            "counted while being written"
        );
        outbox.written(cost);
        assert_eq!(metrics.queued_bytes.load(Ordering::Relaxed), 0);

        // What can wait fills half; what cannot wait the rest, then is refused.
        outbox.try_push(entries(4_000)).unwrap();
        assert_eq!(outbox.try_push(entries(2_000)), Err(PushError::Full));
        outbox.push(Outgoing::Frame(vec![0; 5_000])).unwrap();
        assert_eq!(
            outbox.push(Outgoing::Frame(vec![0; 2_000])),
            Err(PushError::Full)
        );
        assert!(outbox.held_bytes() <= 10_000);

        // A waiting sender gets in once the writer drained.
        let waiting = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.send(entries(1_000)).await })
        };
        for _ in 0..2 {
            let (_, cost) = outbox.next().await.unwrap();
            outbox.written(cost);
        }
        waiting.await.unwrap().unwrap();
        outbox.close();
        assert_eq!(outbox.try_push(Event::InboxArrived), Err(PushError::Closed));
        // The queued item is still handed out, then the end.
        let (_, cost) = outbox.next().await.unwrap();
        outbox.written(cost);
        assert!(outbox.next().await.is_none());
        drop(outbox);
        assert_eq!(metrics.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn dropping_a_full_queue_gives_its_bytes_back() {
        let metrics = Arc::new(Metrics::default());
        let outbox = Outbox::new(10_000, metrics.clone());
        outbox.push(Outgoing::Frame(vec![0; 9_000])).unwrap();
        assert_eq!(metrics.queued_bytes.load(Ordering::Relaxed), 9_000);
        drop(outbox);
        assert_eq!(metrics.queued_bytes.load(Ordering::Relaxed), 0);
    }
}
