//! The inbox: Welcomes (invitations) deposited by other accounts. The members' keys
//! of a room joined this way are pinned or checked (see [`crate::contacts`]).

use std::collections::HashSet;

use hearth_protocol::limits::MAX_INBOX_FETCH;
use hearth_protocol::{Handle, InboxEntry, Request, Response, RoomId, Seq};
use openmls::prelude::*;

use super::authentication::{member_identities, Unverified};
use super::ops::WelcomeInto;
use super::room::{Room, RoomExtra, RoomRecord, Status};
use super::{lock, unexpected, Inner};
use crate::content::InboxMessage;
use crate::error::{mls, ClientError};
use crate::events::{ClientEvent, Invitation};
use crate::mls::join_point::{JoinPoint, JOIN_POINT_EXTENSION};
use crate::mls::{handle_of, join_config, parse_message, Engine, RoomSettings};
use crate::transcript::Transcript;

impl Inner {
    /// Fetches, handles and acknowledges every inbox entry, then catches up the private
    /// conversations joined without an invitation step.
    pub(crate) async fn fetch_inbox(&self) -> Result<(), ClientError> {
        let joined = self.fetch_inbox_entries().await?;
        for id in joined {
            let Ok(room) = self.room(id) else { continue };
            let mut room = room.lock().await;
            self.catch_up(&mut room).await?;
            self.follow_up(&mut room).await?;
            self.update_after_joining(&mut room).await;
            drop(room);
            self.greet(id).await;
        }
        Ok(())
    }

    /// Handles every inbox entry; returns the direct rooms joined at once.
    async fn fetch_inbox_entries(&self) -> Result<Vec<RoomId>, ClientError> {
        let _one_at_a_time = self.inbox_lock.lock().await;
        let mut joined = Vec::new();
        let mut waited = HashSet::new();
        loop {
            let entries = match self
                .call(Request::FetchInbox {
                    after: 0,
                    limit: MAX_INBOX_FETCH,
                })
                .await?
            {
                Response::Inbox(entries) => entries,
                other => return Err(unexpected(&other)),
            };
            if entries.is_empty() {
                return Ok(joined);
            }
            let full = entries.len() >= MAX_INBOX_FETCH as usize;
            let mut ids = Vec::with_capacity(entries.len());
            let shared = self.shared_identities().await;
            for entry in &entries {
                match self.take_inbox_entry(entry, &shared, &mut waited).await? {
                    Ok(Took::Taken(direct)) => joined.extend(direct),
                    Ok(Took::Later) => continue, // not acknowledged: fetched again
                    Err(e) => tracing::warn!("inbox entry {} dropped: {e}", entry.id),
                }
                ids.push(entry.id);
            }
            if ids.is_empty() {
                return Ok(joined);
            }
            match self.call(Request::AckInbox { ids }).await? {
                Response::Done => {}
                other => return Err(unexpected(&other)),
            }
            if !full {
                return Ok(joined);
            }
        }
    }

    /// The identity keys of everyone in a private room we have joined (a public room's
    /// members are strangers who let themselves in).
    async fn shared_identities(&self) -> HashSet<[u8; 32]> {
        let mut keys = HashSet::new();
        for room in self.room_handles() {
            let room = room.lock().await;
            let public = room.settings().map_or(true, |s| s.public_name.is_some());
            if room.removed || room.rec.status != Status::Joined || public {
                continue;
            }
            keys.extend(room.members().into_iter().map(|m| m.account.0));
        }
        keys
    }

    /// Takes one inbox entry, asking the relay's directory about the identities in it
    /// first when needed. The outer error (the relay went away) leaves the entry in the
    /// inbox; the inner one means the entry is dropped.
    ///
    /// An entry whose room another task holds waits for it once, at most [`BUSY_WAIT`],
    /// and is looked at again; `waited` names the rooms already waited for during this
    /// fetch, whose entries are not waited for again: they are left in the inbox and
    /// fetched again once the room is let go ([`Inner::fetch_when_free`]). The wait
    /// happens under `inbox_lock`: whoever holds a room must not fetch the inbox.
    pub(super) async fn take_inbox_entry(
        &self,
        entry: &InboxEntry,
        shared: &HashSet<[u8; 32]>,
        waited: &mut HashSet<RoomId>,
    ) -> Result<Result<Took, ClientError>, ClientError> {
        let mut lookups = 0;
        loop {
            match self.handle_inbox_entry(entry, shared) {
                Ok(Taken::Lookup(handles)) if lookups < 2 => {
                    lookups += 1;
                    self.look_up_identities(&handles).await?;
                }
                Ok(Taken::Lookup(_)) => {
                    return Ok(Err(ClientError::Other(
                        "the relay's directory did not answer for everyone in the room".into(),
                    )))
                }
                Ok(Taken::Busy(id)) if waited.insert(id) => self.wait_for_room(id).await,
                Ok(Taken::Busy(id)) => {
                    self.fetch_when_free(id);
                    return Ok(Ok(Took::Later));
                }
                Ok(Taken::Later) => return Ok(Ok(Took::Later)),
                Ok(Taken::Done(direct)) => return Ok(Ok(Took::Taken(direct))),
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// Waits until no other task holds room `id`, at most [`BUSY_WAIT`].
    async fn wait_for_room(&self, id: RoomId) {
        if let Ok(room) = self.room(id) {
            let _ = tokio::time::timeout(BUSY_WAIT, room.lock()).await;
        }
    }

    /// Fetches the inbox again once room `id` is let go: a Welcome into it was left in
    /// the inbox while another task held the room, and nothing else would fetch it before
    /// the next deposit or connection. One task per room at a time.
    fn fetch_when_free(&self, id: RoomId) {
        let (Some(me), Ok(room)) = (self.me.upgrade(), self.room(id)) else {
            return;
        };
        if !lock(&self.refetch).insert(id) {
            return;
        }
        self.track(tokio::spawn(async move {
            drop(room.lock().await);
            lock(&me.refetch).remove(&id);
            if let Err(e) = me.fetch_inbox().await {
                tracing::info!("fetching the inbox again for room {id} failed: {e}");
            }
        }));
    }

    /// Takes one Welcome. A private conversation (a direct room of just us and the
    /// inviter) from someone we already share a room with is joined at once and
    /// returned; any other room waits as an invitation. Every identity in the Welcome's
    /// tree is checked first (see [`super::authentication`]).
    fn handle_inbox_entry(
        &self,
        entry: &InboxEntry,
        shared: &HashSet<[u8; 32]>,
    ) -> Result<Taken, ClientError> {
        // Sealed to us with the sender inside (decision 0013): the relay stores no sender
        // and cannot read which room this is about.
        let sealed = crate::sealed::open(&self.profile.identity(), &entry.payload)
            .or_else(|e| {
                // Sealed before our last key rotation, to the key we had then.
                match self.profile.previous_identity().ok().flatten() {
                    Some(previous) => crate::sealed::open(&previous, &entry.payload),
                    None => Err(e),
                }
            })
            .map_err(|e| ClientError::Other(e.to_string()))?;
        let message =
            InboxMessage::decode(&sealed.message).map_err(|e| ClientError::Other(e.to_string()))?;
        // The relay keeps only an entry's day (so that an invitation's time cannot be
        // matched to its Add commit): dated by our clock, never before that day.
        let received = crate::history::secs_of(std::time::SystemTime::now()).max(entry.time);
        let InboxMessage::Welcome {
            room: id,
            welcome,
            from,
            ..
        } = message;
        let into = self.make_room_for_welcome(id)?;
        if into == WelcomeInto::Nothing {
            return Ok(Taken::Done(None)); // already joined (a duplicate deposit)
        }
        if into == WelcomeInto::Later {
            return Ok(Taken::Later);
        }
        if into == WelcomeInto::Busy {
            return Ok(Taken::Busy(id));
        }
        let welcome = match parse_message(&welcome)?.extract() {
            MlsMessageBodyIn::Welcome(welcome) => welcome,
            _ => return Err(ClientError::Mls("inbox entry is not a Welcome".into())),
        };
        let mut engine = self.engine();
        let checkpoint = engine.checkpoint();
        if let WelcomeInto::LaterThan(_) = into {
            // openmls takes no Welcome into a group it holds: the pending invitation's
            // state goes first (and comes back with the checkpoint if this one is older).
            let stored = MlsGroup::load(engine.provider.storage(), &GroupId::from_slice(&id.0))
                .map_err(mls)?;
            if let Some(mut pending) = stored {
                pending.delete(engine.provider.storage()).map_err(mls)?;
            }
        }
        let joined = join_from_welcome(&engine, welcome, id, &from, &sealed.sender);
        let (group, join_point, inviter_leaf) = match joined {
            Ok(joined) => joined,
            Err(e) => {
                // Nothing of a refused Welcome is kept (the key package stays usable).
                engine.restore(checkpoint);
                if let WelcomeInto::LaterThan(_) = into {
                    // Most likely the pending invitation's own Welcome again.
                    tracing::info!(
                        "room {id}: a Welcome beside the invitation held was not taken: {e}"
                    );
                    return Ok(Taken::Done(None));
                }
                return Err(e);
            }
        };
        if let WelcomeInto::LaterThan(pending) = into {
            if group.epoch().as_u64() <= pending {
                engine.restore(checkpoint);
                return Ok(Taken::Done(None)); // not newer than the invitation we hold
            }
        }
        // The inviter first: until it is who it claims to be, nobody is named as `by`.
        let verdict = member_identities(&group).map(|entering| {
            let inviter = entering.iter().find(|(handle, key)| {
                *handle == from
                    && group
                        .member_at(inviter_leaf)
                        .is_some_and(|m| m.signature_key.as_slice() == key)
            });
            match inviter {
                Some(inviter) => self
                    .verify_identities(std::slice::from_ref(inviter), None)
                    .and_then(|()| self.verify_identities(&entering, Some(&from))),
                None => self.verify_identities(&entering, None),
            }
        });
        match verdict {
            Ok(Ok(())) => {}
            Ok(Err(Unverified::Lookup(handles))) => {
                engine.restore(checkpoint);
                return Ok(Taken::Lookup(handles));
            }
            Ok(Err(Unverified::Impostor(impostor))) => {
                engine.restore(checkpoint);
                drop(engine);
                self.emit(ClientEvent::Impostor {
                    room: id,
                    impostor: impostor.clone(),
                });
                return Err(ClientError::Impostor(impostor));
            }
            Err(e) => {
                engine.restore(checkpoint);
                return Err(e);
            }
        }
        let Some(join_point) = join_point else {
            engine.restore(checkpoint);
            return Err(ClientError::Other(format!(
                "the invitation from {from} does not say where the room's history starts for you (an older hearth): ask them to update and invite you again"
            )));
        };
        let settings = RoomSettings::of(group.extensions());
        let direct = settings.as_ref().is_some_and(|s| s.direct) && group.members().count() == 2;
        let name = settings.map(|s| s.name).unwrap_or_default();
        let mut room = Room {
            id,
            rec: RoomRecord {
                version: 1,
                name: name.clone(),
                status: Status::Invited {
                    from: from.clone(),
                    received,
                },
                // Where the inviter signed that our history starts, not what the relay's
                // plaintext wrapper says (`start_seq`, `transcript_hash` are ignored).
                transcript: Transcript::starting_at(Seq(join_point.seq), join_point.hash),
                inflight: None,
                extra: RoomExtra {
                    before_join: true,
                    ..RoomExtra::default()
                },
            },
            group,
            subscribed: None,
            commit_proposals: false,
            orphaned_epoch: None,
            expected_end: None,
            landed_own: None,
            relay_admins: None,
            revert_landed: None,
            removed: false,
        };
        let mut events = Vec::new();
        let seen: Vec<(Handle, [u8; 32])> = room
            .members()
            .into_iter()
            .map(|m| (m.handle, m.account.0))
            .collect();
        let contacts = self.check_contacts(&seen, &mut events);
        // A private message from someone whose key changed waits for the user: they
        // should compare safety numbers before reading or answering.
        let key_changed = events
            .iter()
            .any(|e| matches!(e, ClientEvent::KeyChanged { handle } if *handle == from));
        // Only from someone we already share a room with: anyone registered can push a
        // direct room, and it must not slip in beside the real conversation unasked.
        let known = room
            .members()
            .iter()
            .any(|m| m.handle == from && shared.contains(&m.account.0));
        let join_now = direct && !key_changed && known;
        if join_now {
            room.rec.status = Status::Joined;
        }
        engine.persist(self.profile.store(), |batch| {
            room.save(batch)?;
            // A fresh group from a Welcome owes nothing to a restored backup.
            super::restore::clear_mark(batch, id)?;
            contacts.save(batch)?;
            Ok(())
        })?;
        drop(engine);
        self.insert_room(room);
        for event in events {
            self.emit(event);
        }
        if join_now {
            return Ok(Taken::Done(Some(id)));
        }
        self.emit(ClientEvent::Invited(Invitation {
            room: id,
            name,
            from,
            received: crate::history::time_of(received),
        }));
        Ok(Taken::Done(None))
    }
}

/// What taking an inbox entry came to.
enum Taken {
    /// Taken; `Some` names a private conversation joined at once.
    Done(Option<RoomId>),
    /// Nothing taken yet: ask the directory about these handles first.
    Lookup(Vec<Handle>),
    /// Left in the inbox (see [`Took::Later`]).
    Later,
    /// Nothing taken yet: another task holds this room; wait for it and look again.
    Busy(RoomId),
}

/// The longest an inbox fetch waits for a room another task holds (a catch-up of a long
/// log can hold it longer; the Welcome is then fetched again once the room is let go).
/// Short: the driver fetches the inbox between the relay's pushes, and a re-authentication
/// challenge waits behind it (30 s to answer).
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What came of an inbox entry.
pub(crate) enum Took {
    /// Taken (to be acknowledged); `Some` names a private conversation joined at once.
    Taken(Option<RoomId>),
    /// Left in the inbox for a later fetch: its room is one we hold as joined but have
    /// not caught up on this connection (the relay refused the room's connection for
    /// now). A Welcome back into a room we were removed from is recognised only once the
    /// removal is read; taken before, it would be dropped as a duplicate. Or another task
    /// held its room at each look (fetched again once it lets go).
    Later,
}

/// Joins the group of a Welcome into `id` from `from`: checks that it is for that room and
/// signed by `from`, and reads the join point the inviter signed into its GroupInfo (see
/// [`crate::mls::join_point`]); returns the group, the join point and the inviter's leaf.
/// Storage changes are the caller's to keep or roll back.
fn join_from_welcome(
    engine: &Engine,
    welcome: Welcome,
    id: RoomId,
    from: &Handle,
    sealed_by: &hearth_protocol::AccountKey,
) -> Result<(MlsGroup, Option<JoinPoint>, LeafNodeIndex), ClientError> {
    let builder = StagedWelcome::build_from_welcome(&engine.provider, &join_config(), welcome)
        .map_err(mls)?;
    // Read before the signature check; trusted only once `build` verified the GroupInfo.
    let join_point = JoinPoint::from_extension(
        builder
            .processed_welcome()
            .unverified_group_info()
            .extensions()
            .unknown(JOIN_POINT_EXTENSION),
    );
    // Leaves of members who joined long ago may carry a KeyPackage lifetime that has run
    // out (until their first update): that must not keep anyone out of the room.
    let staged = builder.skip_lifetime_validation().build().map_err(mls)?;
    if staged.group_context().group_id().as_slice() != id.0 {
        return Err(ClientError::Mls("Welcome is for another room".into()));
    }
    let inviter = staged.welcome_sender().map_err(mls)?;
    if handle_of(inviter.credential()).as_ref() != Some(from) {
        return Err(ClientError::Mls(format!(
            "Welcome claims to come from {from} but was signed by someone else"
        )));
    }
    if inviter.signature_key().as_slice() != sealed_by.0.as_slice() {
        return Err(ClientError::Mls(
            "the Welcome was signed by someone other than who sealed it".into(),
        ));
    }
    let inviter_leaf = staged.welcome_sender_index();
    let group = staged.into_group(&engine.provider).map_err(mls)?;
    Ok((group, join_point, inviter_leaf))
}
