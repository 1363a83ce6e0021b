//! How rooms are named to the user: by name, with a short id only where the name alone
//! does not tell which room is meant (issue 12).
//!
//! The decision (one function for errors, notices and lists): a room is shown as its
//! name (`@NICK` for a private conversation, by its other member), followed by ` (old)`
//! once an admin rebuilt it as a new room, followed by ` [01d573c3]` (the first 8 hex
//! digits of its id) when another room known here is shown the same way. A room whose
//! name is not known here is `room 01d573c3`.
//!
//! Errors carry a [`RoomRef`], so a [`ClientError`] displays without the client: inside
//! the library an error names a room by id only ([`RoomRef::from`] a [`RoomId`]); the
//! public [`Client`] methods fill in the names on the way out ([`Inner::named`]), when
//! no room is locked, so the name and the ambiguity are those of the moment the error
//! is returned. Events carry bare ids: a user interface names them with
//! [`Client::room_refs`] when it shows them, as it does for the lists it draws.
//!
//! Names are chosen by the rooms' members: whatever shows them must make them inert
//! (the CLI does, for errors and notices alike).

use std::collections::HashMap;
use std::fmt;

use hearth_protocol::RoomId;

use super::{Client, Inner};
use crate::error::ClientError;

/// A room as it is named to the user. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomRef {
    /// The room.
    pub id: RoomId,
    /// Its name as its members set it, or `@NICK` for a private conversation (`None`:
    /// the room is not known here). Someone else's text: make it inert to print it.
    pub name: Option<String>,
    /// An admin rebuilt the room as a new one: this is the old room, shown as
    /// `name (old)` and never chosen by its name (see [`Client::find_room`]).
    pub old: bool,
    /// Another room known here is shown the same way: the short id goes beside the name.
    pub ambiguous: bool,
}

impl RoomRef {
    /// The first 8 hex digits of the room's id, as lists and hints show it.
    pub fn short_id(&self) -> String {
        short_id(self.id)
    }

    /// The name as shown, without the short id: `family`, `family (old)`, `@alice`
    /// (`None` when the name is not known here).
    pub fn label(&self) -> Option<String> {
        self.name.as_ref().map(|name| {
            if self.old {
                format!("{name} (old)")
            } else {
                name.clone()
            }
        })
    }
}

impl From<RoomId> for RoomRef {
    /// A room named by id only (its name is filled in by the client, see the module
    /// documentation).
    fn from(id: RoomId) -> Self {
        RoomRef {
            id,
            name: None,
            old: false,
            ambiguous: false,
        }
    }
}

impl fmt::Display for RoomRef {
    /// `family`, `family (old)`, `family [01d573c3]`, or `room 01d573c3` when the name
    /// is not known. Not inert: the name is as its members set it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.label() {
            Some(label) if self.ambiguous => write!(f, "{label} [{}]", self.short_id()),
            Some(label) => f.write_str(&label),
            None => write!(f, "room {}", self.short_id()),
        }
    }
}

/// The first 8 hex digits of a room id.
pub fn short_id(id: RoomId) -> String {
    id.to_hex()[..8].to_string()
}

/// Marks the refs whose labels (compared case-insensitively, as rooms are looked up by
/// name) are shared with another ref.
fn mark_ambiguous(refs: &mut [RoomRef]) {
    let key = |r: &RoomRef| r.label().map(|l| l.to_lowercase());
    let mut counts: HashMap<String, usize> = HashMap::new();
    for label in refs.iter().filter_map(key) {
        *counts.entry(label).or_default() += 1;
    }
    for r in refs.iter_mut() {
        r.ambiguous = key(r).is_some_and(|l| counts.get(&l).copied().unwrap_or(0) > 1);
    }
}

impl Inner {
    /// Every room known here, named: joined rooms, pending invitations, rooms we were
    /// removed from (until restart) and past rooms (see [`super::past`]). Locks each room
    /// in turn: never call it while holding a room.
    pub(crate) async fn room_refs(&self) -> Vec<RoomRef> {
        let me = self.profile.handle().clone();
        let mut refs = Vec::new();
        for room in self.room_handles() {
            let room = room.lock().await;
            let direct = room.settings().is_ok_and(|s| s.direct);
            let peer = direct
                .then(|| room.members().into_iter().find(|m| m.handle != me))
                .flatten();
            refs.push(RoomRef {
                id: room.id,
                name: Some(match peer {
                    Some(peer) => format!("@{}", peer.handle),
                    None => room.rec.name.clone(),
                }),
                old: room.rec.extra.rebuilt_as.is_some(),
                ambiguous: false,
            });
        }
        for past in super::past::records(self.profile.store()).unwrap_or_default() {
            if refs.iter().all(|r| r.id != past.id) {
                refs.push(RoomRef {
                    id: past.id,
                    name: Some(past.name),
                    old: false,
                    ambiguous: false,
                });
            }
        }
        mark_ambiguous(&mut refs);
        refs.sort_by_key(|r| r.id);
        refs
    }

    /// `result` with the rooms its error refers to named (see the module documentation).
    pub(crate) async fn named<T>(&self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        match result {
            Ok(value) => Ok(value),
            Err(mut e) => {
                if e.rooms_mut().is_empty() {
                    return Err(e);
                }
                let refs = self.room_refs().await;
                for room in e.rooms_mut() {
                    if let Some(known) = refs.iter().find(|r| r.id == room.id) {
                        *room = known.clone();
                    }
                }
                Err(e)
            }
        }
    }

    /// Reads the room of every pending invitation up to now, so its name is the current
    /// one (an admin may have renamed it since the Welcome). What was said there meanwhile
    /// is processed as [`Inner::accept_invitation`] does; failures are logged (the
    /// invitation then shows the name it came with).
    pub(crate) async fn refresh_invitations(&self) {
        for room in self.room_handles() {
            let mut room = room.lock().await;
            if room.removed || !matches!(room.rec.status, super::room::Status::Invited { .. }) {
                continue;
            }
            if let Err(e) = self.catch_up(&mut room).await {
                tracing::info!(
                    "room {}: reading the invitation's room failed: {e}",
                    room.id
                );
            }
        }
    }
}

/// Names the rooms of the error an operation returns: `op.named(&inner).await` is
/// `inner.named(op.await).await` (see [`Inner::named`]). For the public [`Client`]
/// methods.
pub(crate) trait Named<T>:
    std::future::Future<Output = Result<T, ClientError>> + Sized
{
    /// This operation, then its error's rooms named.
    fn named(self, inner: &Inner) -> impl std::future::Future<Output = Result<T, ClientError>> {
        async move { inner.named(self.await).await }
    }
}

impl<T, F: std::future::Future<Output = Result<T, ClientError>>> Named<T> for F {}

impl Client {
    /// Every room known here (joined, invited, past), named as the user sees it, by id.
    /// See [`RoomRef`].
    pub async fn room_refs(&self) -> Vec<RoomRef> {
        self.inner.room_refs().await
    }

    /// How `room` is named to the user (`room 01d573c3` if it is not known here).
    pub async fn room_ref(&self, room: RoomId) -> RoomRef {
        self.inner
            .room_refs()
            .await
            .into_iter()
            .find(|r| r.id == room)
            .unwrap_or_else(|| room.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(id: u8, name: &str, old: bool) -> RoomRef {
        RoomRef {
            id: RoomId([id; 16]),
            name: Some(name.into()),
            old,
            ambiguous: false,
        }
    }

    #[test]
    fn rooms_show_their_name_and_an_id_only_when_it_is_shared() {
        let mut refs = [
            named(1, "family", false),
            named(2, "Family", false),
            named(3, "family", true),
            named(4, "kids", false),
        ];
        mark_ambiguous(&mut refs);
        let shown: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            shown,
            [
                "family [01010101]",
                "Family [02020202]",
                "family (old)",
                "kids"
            ]
        );
        assert_eq!(
            RoomRef::from(RoomId([0xab; 16])).to_string(),
            "room abababab"
        );
    }
}
