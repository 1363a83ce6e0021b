//! Signed log heads (issue 10): every content a member sends carries its transcript mark
//! (the last seq it processed and its hash there), and a mark that does not match ours
//! is a fork. Members who do not write would never show theirs, so a relay could keep
//! two halves of a quiet room on different histories. Now and then each member sends a
//! [`Body::Head`] (content with nothing but the mark, signed like every MLS message) to
//! each room whose log moved since its last mark, so a partition shows as a fork within
//! one exchange. A head is due in a room where others wrote a message or a commit since
//! our last content, where we said nothing for [`HEAD_QUIET`], or the first time in a
//! session; heads and presence are not news, so heads never answer heads. A fork holds
//! the room's messages back until the user acknowledges it ([`Client::acknowledge_fork`]).

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use hearth_protocol::{RoomId, Seq};

use super::room::Status;
use super::{lock, Client, Inner};
use crate::content::Body;
use crate::error::ClientError;
use crate::fingerprint::RoomCode;

/// How often a connected client looks whether heads are due.
pub const HEAD_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// A head is due in a room where we said nothing for this long, even without news.
pub const HEAD_QUIET: Duration = Duration::from_secs(6 * 3600);
/// The time over which the periodic round's heads and scheduled updates are spread, in
/// a random order with random pauses (decision 0013 part 5: one client's writes to
/// several rooms within milliseconds would tie those rooms' connections together).
pub const ROUND_SPREAD: Duration = Duration::from_secs(5 * 60);

/// The most to pause before each of `due` rooms' turn in a periodic round: the rounds
/// spread over [`ROUND_SPREAD`] at most; none while room connections open without a
/// pause either (tests set [`super::set_room_jitter`] to zero).
fn round_gap(due: usize) -> Duration {
    if super::room_jitter().is_zero() || due < 2 {
        return Duration::ZERO;
    }
    ROUND_SPREAD / u32::try_from(due).unwrap_or(u32::MAX)
}

impl Client {
    /// Sends a head to every joined room now, whatever the schedule; returns how many
    /// were sent (to compare histories on demand, e.g. before checking a room's code).
    pub async fn exchange_heads(&self) -> usize {
        self.inner.send_heads(true, false).await
    }

    /// The user has looked at a fork in `room` (compared the room's code with someone,
    /// see [`Client::room_code`]): sending messages there works again.
    pub async fn acknowledge_fork(&self, room: RoomId) -> Result<(), ClientError> {
        let room = self.inner.named(self.inner.room(room)).await?;
        let mut room = room.lock().await;
        if room.rec.extra.fork.take().is_some() {
            let mut engine = self.inner.engine();
            engine.persist(self.inner.profile.store(), |batch| room.save(batch))?;
        }
        Ok(())
    }

    /// The code of `room` at its current epoch, to compare with another member in person
    /// (see [`crate::fingerprint::RoomCode`]).
    pub async fn room_code(&self, room: RoomId) -> Result<RoomCode, ClientError> {
        let room = self.inner.named(self.inner.room(room)).await?;
        let room = room.lock().await;
        let authenticator = room.group.epoch_authenticator();
        Ok(RoomCode::new(
            room.group.epoch().as_u64(),
            authenticator.as_slice(),
        ))
    }

    /// Where the history of `room` forked, if a fork is waiting for the user.
    pub async fn fork(&self, room: RoomId) -> Result<Option<Seq>, ClientError> {
        let room = self.inner.named(self.inner.room(room)).await?;
        let room = room.lock().await;
        Ok(room.rec.extra.fork)
    }
}

impl Inner {
    /// Our own content landed at `seq` in `room`.
    pub(crate) fn mark_sent(&self, room: RoomId, seq: Seq) {
        let mut sent = lock(&self.marks_sent);
        let last = sent.entry(room).or_insert((seq, Instant::now()));
        if seq >= last.0 {
            *last = (seq, Instant::now());
        }
    }

    /// Someone else wrote something that matters at `seq` in `room` (a message or a
    /// commit; heads and presence are not news, so heads never answer heads).
    pub(crate) fn saw_news(&self, room: RoomId, seq: Seq) {
        let mut news = lock(&self.news);
        let last = news.entry(room).or_insert(seq);
        *last = (*last).max(seq);
    }

    /// Commits a fresh leaf in every joined room where ours is older than
    /// [`super::ops::SELF_UPDATE_EVERY`] (errors are logged; the next round retries).
    /// With `spread`, in a random order with a random pause before each (see
    /// [`ROUND_SPREAD`]); without, at once (after connecting, before the queue is sent).
    pub(crate) async fn scheduled_updates(&self, spread: bool) {
        let now = crate::history::secs_of(self.clock.now());
        let is_due = |room: &super::room::Room| {
            let due = room.rec.extra.updated_at + super::ops::SELF_UPDATE_EVERY.as_secs();
            !room.removed && room.rec.status == Status::Joined && due <= now
        };
        let mut due = Vec::new();
        for handle in self.room_handles() {
            if is_due(&*handle.lock().await) {
                due.push(handle);
            }
        }
        let gap = if spread {
            round_gap(due.len())
        } else {
            Duration::ZERO
        };
        super::room_links::shuffle(&mut due);
        for handle in due {
            tokio::time::sleep(super::room_links::random_pause(gap)).await;
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            let mut room = handle.lock().await;
            if !is_due(&room) {
                continue;
            }
            if let Err(e) = self.self_update(&mut room).await {
                tracing::warn!("room {}: the scheduled update failed: {e}", room.id);
            }
        }
    }

    /// Sends a head to each joined room where it is due (see the module documentation),
    /// or to all of them if `all`. With `spread`, in a random order with a random pause
    /// before each (see [`ROUND_SPREAD`]).
    async fn send_heads(&self, all: bool, spread: bool) -> usize {
        let mut due = Vec::new();
        for room in self.room_handles() {
            let room = room.lock().await;
            if room.removed || room.rec.status != Status::Joined {
                continue;
            }
            let sent = lock(&self.marks_sent).get(&room.id).copied();
            let news = lock(&self.news).get(&room.id).copied();
            let is_due = match sent {
                None => true,
                Some((seq, at)) => {
                    news.is_some_and(|news| news > seq) || at.elapsed() >= HEAD_QUIET
                }
            };
            if all || is_due {
                due.push(room.id);
            }
        }
        let gap = if spread {
            round_gap(due.len())
        } else {
            Duration::ZERO
        };
        super::room_links::shuffle(&mut due);
        let mut sent = 0;
        for id in due {
            tokio::time::sleep(super::room_links::random_pause(gap)).await;
            if self.closed.load(Ordering::SeqCst) {
                break;
            }
            match self.send_body(id, Body::Head).await {
                Ok(_) => sent += 1,
                Err(e) => tracing::warn!("room {id}: sending our log head failed: {e}"),
            }
        }
        sent
    }
}

/// Sends heads (and tops KeyPackages up) every [`HEAD_INTERVAL`] until the client is
/// dropped or closed.
pub(crate) async fn head_loop(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(HEAD_INTERVAL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        inner.send_heads(false, true).await;
        inner.scheduled_updates(true).await;
        // A long-running client keeps its KeyPackages topped up too: used ones, expired
        // ones the relay no longer hands out, a last-resort one that was used.
        if let Err(e) = inner.top_up_key_packages().await {
            tracing::warn!("topping up key packages failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rounds_pauses_add_up_to_the_spread_at_most() {
        let before = super::super::room_jitter();
        super::super::set_room_jitter(Duration::from_millis(500));
        for due in [2usize, 3, 7, 100, 10_000] {
            let gap = round_gap(due);
            assert!(gap > Duration::ZERO);
            assert!(
                gap * u32::try_from(due).unwrap() <= ROUND_SPREAD,
                "{due}: {gap:?}"
            );
        }
        // One room has nothing to be tied to.
        assert_eq!(round_gap(1), Duration::ZERO);
        super::super::set_room_jitter(Duration::ZERO);
        assert_eq!(round_gap(10), Duration::ZERO);
        super::super::set_room_jitter(before);
    }
}
