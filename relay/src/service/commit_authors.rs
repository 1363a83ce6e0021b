//! Who wrote a room's latest commits, in memory only (decision 0013).
//!
//! The store keeps no author with a room entry. One thing still needs it: when an admin
//! undoes a commit the members refused ([`hearth_protocol::Request::RevertCommit`],
//! decision 0009), its author is barred from committing in that room again. Admins revert
//! as soon as they see a refused commit, so the relay remembers the authors of each room's
//! last [`PER_ROOM`] commits here, for the rooms committed to most recently (at most
//! [`MAX_ROOMS`]). After a restart it remembers none: a revert then still undoes the
//! commit and ends the refused epochs, but bars nobody, and the admins remove the author
//! with a commit of their own. Part 5 of decision 0013 replaces barring altogether.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use hearth_protocol::{AccountKey, RoomId, Seq};

/// Commits remembered per room.
pub const PER_ROOM: usize = 16;
/// Rooms remembered; past it, the room committed to least recently is forgotten.
pub const MAX_ROOMS: usize = 4096;

#[derive(Default)]
struct Inner {
    rooms: HashMap<RoomId, (u64, VecDeque<(Seq, AccountKey)>)>,
    clock: u64,
}

/// The authors of recent commits, by room.
#[derive(Default)]
pub struct CommitAuthors {
    inner: Mutex<Inner>,
}

impl CommitAuthors {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the map consistent before anything can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers that `author` wrote the commit at `seq` of `room`.
    pub fn committed(&self, room: RoomId, seq: Seq, author: AccountKey) {
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        if !inner.rooms.contains_key(&room) && inner.rooms.len() >= MAX_ROOMS {
            let oldest = inner
                .rooms
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(room, _)| *room);
            if let Some(oldest) = oldest {
                inner.rooms.remove(&oldest);
            }
        }
        let (used, list) = inner.rooms.entry(room).or_default();
        *used = clock;
        list.push_back((seq, author));
        while list.len() > PER_ROOM {
            list.pop_front();
        }
    }

    /// The authors remembered for `room`, oldest first.
    pub fn of(&self, room: &RoomId) -> Vec<(Seq, AccountKey)> {
        self.lock()
            .rooms
            .get(room)
            .map(|(_, list)| list.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_commits_of_the_latest_rooms() {
        let authors = CommitAuthors::default();
        let (a, b) = (AccountKey([1; 32]), AccountKey([2; 32]));
        let room = RoomId([7; 16]);
        for n in 1..=(PER_ROOM as u64 + 4) {
            authors.committed(room, Seq(n), if n % 2 == 0 { a } else { b });
        }
        let kept = authors.of(&room);
        assert_eq!(kept.len(), PER_ROOM);
        assert_eq!(kept[0].0, Seq(5));
        assert_eq!(kept.last().unwrap(), &(Seq(PER_ROOM as u64 + 4), a));
        for n in 0..MAX_ROOMS as u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            authors.committed(RoomId(id), Seq(1), a);
        }
        assert!(authors.of(&room).is_empty(), "the least recent room went");
        assert_eq!(authors.lock().rooms.len(), MAX_ROOMS);
    }
}
