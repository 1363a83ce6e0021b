//! Room operations: create, invite, accept, send, leave, and the machinery they share
//! (catching up, subscribing, the commit-and-retry loop). Kicks, bans and settings
//! changes are in `admin`.

use hearth_protocol::limits::MAX_READ_ENTRIES;
use hearth_protocol::{AccountKey, ErrorCode, Handle, Request, Response, RoomId, Seq};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;

use super::admin::build_commit;
use super::room::{account_of, is_pending_leaf, Inflight, Room, RoomRecord, Status};
use super::{room_error, unexpected, Inner};
use crate::content::{Body, Content, InboxMessage};
use crate::error::{mls, ClientError};
use crate::events::ClientEvent;
use crate::mls::join_point::JoinPoint;
use crate::mls::{create_config, handle_of, RoomSettings};
use crate::policy::Action;
use crate::store::Table;
use crate::transcript::Transcript;

/// How often each member commits a fresh leaf in each room (post-compromise security in
/// a quiet room).
pub const SELF_UPDATE_EVERY: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// What a Welcome into a room may do (see [`Inner::make_room_for_welcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WelcomeInto {
    /// Be taken: the room is not (or no longer) here.
    NewRoom,
    /// Replace the pending invitation, if its group is at a later epoch than this one.
    LaterThan(u64),
    /// Nothing: we are in the room (a duplicate deposit).
    Nothing,
    /// Not yet: we hold the room as joined but have not caught it up on this connection
    /// (see [`super::inbox::Took::Later`]).
    Later,
    /// Another task holds the room (an operation on it, a catch-up, or a moment's look
    /// at every room): wait until it lets go, then look again.
    Busy,
}

/// How often a commit is retried after losing the race for an epoch.
const COMMIT_ATTEMPTS: usize = 8;

/// What a commit builder returns: the commit and maybe a Welcome.
pub(crate) type Built = Option<(MlsMessageOut, Option<MlsMessageOut>)>;

/// What the relay is told of the room's admins with a commit (decision 0009).
pub(crate) struct AdminsAfter {
    /// The owner's pseudonym, then the other admins', as the commit leaves them.
    pub admins: Vec<hearth_protocol::AdminKey>,
    /// Whether someone loses admin rights (or ownership) by the commit.
    pub demotes: bool,
}

/// The room's admins as a staged commit leaves them, when it changes them and we (`me`,
/// our key in the room) are the owner before or after it (the relay takes a new list
/// only from the owner it lists).
pub(crate) fn admins_after(
    group: &MlsGroup,
    staged: &StagedCommit,
    me: Option<AccountKey>,
) -> Option<AdminsAfter> {
    let before = RoomSettings::read(group.extensions()).ok()?;
    let after = RoomSettings::read(staged.group_context().extensions()).ok()?;
    let me = me?;
    if before.owner != me && after.owner != me {
        return None;
    }
    let (before, after) = (before.admin_keys(), after.admin_keys());
    // An owner without a pseudonym yet has no list to give (its client announces one).
    if before == after || after.is_empty() {
        return None;
    }
    let demotes = before.first() != after.first() || before.iter().any(|k| !after.contains(k));
    Some(AdminsAfter {
        admins: after,
        demotes,
    })
}

/// Stages a commit that gives us a fresh leaf (new keys, same identity; in a room that
/// still holds the key a rotation gave up, the new identity key, see `rotation`).
pub(crate) fn build_self_update(
    group: &mut MlsGroup,
    engine: &crate::mls::Engine,
) -> Result<Built, ClientError> {
    if engine.holds_previous_key(group) {
        return super::rotation::build_key_rotation(group, engine);
    }
    let signer = engine.signer_for(group);
    // Our room pseudonym rides along when the room does not have it yet (the update right
    // after joining, or the first one in a room from before every member announced one):
    // so that a leaving owner can hand the relay's list of admins to us as its heir
    // (decision 0013, part 5).
    let mut announce = None;
    if let (Some(me), Ok(before)) = (
        account_of(signer.public()),
        RoomSettings::read(group.extensions()),
    ) {
        let mine = engine.room_admin_key(group).public();
        if before.members.contains(&me) && before.pseudonym_of(&me) != Some(mine) {
            let mut after = before.clone();
            after.set_pseudonym(me, mine);
            after.normalize();
            announce = Some(after.extensions()?);
        }
    }
    // Not `MlsGroup::self_update`, which would also commit pending proposals (someone
    // leaving) without the settings following them: every member would refuse it.
    let mut builder = group
        .commit_builder()
        .consume_proposal_store(false)
        .force_self_update(true);
    if let Some(extensions) = announce {
        builder = builder
            .propose_group_context_extensions(extensions)
            .map_err(mls)?;
    }
    let bundle = builder
        .load_psks(engine.provider.storage())
        .map_err(mls)?
        .build(
            engine.provider.rand(),
            engine.provider.crypto(),
            signer,
            |_| true,
        )
        .map_err(mls)?
        .stage_commit(&engine.provider)
        .map_err(mls)?;
    let (commit, welcome, _) = bundle.into_messages();
    Ok(Some((commit, welcome)))
}

/// Pages of a room's log read and held at once while catching up, across all rooms. A
/// page is up to [`MAX_READ_ENTRIES`] entries (at most 512 KiB of them at a relay of
/// this version, and one frame of at most 1 MiB,
/// [`hearth_protocol::limits::MAX_FRAME_LEN`], from any relay), held from its read until
/// it is processed. At a connect every room catches up side by side, so without this
/// bound 100 rooms far behind held up to 100 pages at once; with it, 4, plus a short
/// first read per room ([`FIRST_READ_ENTRIES`]).
pub(crate) const CATCH_UP_PAGES: usize = 4;

/// The entries a catch-up's first read asks for when all of [`CATCH_UP_PAGES`] are
/// taken: it is not held back, because on a room connection just opened it is the first
/// request that shows the room's capability, and the relay closes the oldest of an
/// address's connections that have not shown one. Two, the fewest that still make
/// progress: a read starts at the last entry processed, so it returns that one and the
/// next (the first two of a log nothing of which was processed yet).
const FIRST_READ_ENTRIES: u32 = 2;

/// How long an operation whose answer was lost waits for the log to tell its outcome.
const OUTCOME_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// How often it looks whether the connection is back meanwhile.
const OUTCOME_POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl Inner {
    /// Reads and processes every entry after the last processed one, up to the relay's
    /// head (following epochs as commits are processed), then makes sure the room is
    /// subscribed with the current epoch's capability.
    pub(crate) async fn catch_up(&self, room: &mut Room) -> Result<(), ClientError> {
        if room.removed {
            return Ok(());
        }
        // The room's connection is opened (after its random pause) before a page is
        // taken, so that no page waits for it.
        self.room_link(room.id)
            .await
            .map_err(|e| room_error(room.id, e))?;
        let mut first_read = true;
        loop {
            if room.removed {
                return Ok(());
            }
            // A page is held (read, then processed) under one of the pages at once; a
            // first read goes out at once anyway, short (see `FIRST_READ_ENTRIES`).
            let page = match self.catch_up_pages.try_acquire() {
                Ok(page) => Some(page),
                Err(_) if first_read => None,
                Err(_) => Some(self.catch_up_page().await?),
            };
            let limit = if page.is_some() {
                MAX_READ_ENTRIES
            } else {
                FIRST_READ_ENTRIES
            };
            first_read = false;
            let cap = self.engine().cap(&room.group)?;
            let epoch = room.group.epoch();
            let before = room.rec.transcript.last();
            // From the last entry processed, not after it: the relay must still hold the
            // one we had there (a log restored from an old copy and written on since by
            // others ends after ours, with other entries at our seqs).
            let from = if before.0 == 0 { before.next() } else { before };
            let response = self
                .call(Request::Read {
                    room: room.id,
                    cap: cap.clone(),
                    from,
                    limit,
                })
                .await
                .map_err(|e| room_error(room.id, e))?;
            let Response::Entries { entries, last } = response else {
                return Err(unexpected(&response));
            };
            if entries.len() > limit as usize {
                // More than asked for: what the bound on pages held rests on.
                return Err(ClientError::Other(format!(
                    "the relay answered a read of at most {limit} entries with {}",
                    entries.len()
                )));
            }
            let rewritten = entries.first().is_some_and(|first| {
                first.seq == before
                    && room
                        .rec
                        .transcript
                        .holds(first.seq, first.kind, &first.payload)
                        == Some(false)
            });
            if last < before {
                self.rewind(room, before, last)?;
                continue;
            }
            if rewritten {
                // Read again from where the logs part: this page is not needed, and the
                // reads that look for it are pages too.
                drop(entries);
                let _page = match page {
                    Some(page) => page,
                    None => self.catch_up_page().await?,
                };
                let parted = self.where_logs_part(room, &cap, before).await?;
                self.rewind(room, before, parted)?;
                continue;
            }
            // In store transactions of up to 256 entries (see `process_entries`).
            self.process_entries(room, &entries).await?;
            if room.removed {
                return Ok(());
            }
            let through = room.rec.transcript.last();
            // Through the last entry the relay held for this epoch when it answered, and
            // still in that epoch: another read would come back empty.
            if entries.is_empty()
                || through == before
                || (through >= last && room.group.epoch() == epoch)
            {
                break;
            }
        }
        if room.rec.extra.refused.is_some() {
            if !self.settle_refused(room).await? {
                // Stuck behind a refused commit: no subscription (it would only end at
                // once); `revert::stuck_loop` looks again.
                return Ok(());
            }
            // Undone: the revert appended an admin's commit after the refused one (ours
            // in flight, or another admin's), which ends the capability we hold. Read it
            // before anything else; settling cleared the refusal, so this ends.
            return Box::pin(self.catch_up(room)).await;
        }
        self.resolve_inflight(room)?;
        self.ensure_subscribed(room).await
    }

    /// The relay's log of `room` parts from ours after `parted` (ours went on to
    /// `before`): told, and carried on from there, so the entries it has instead are
    /// processed at the seqs it withdrew (and take their places in our history).
    fn rewind(&self, room: &mut Room, before: Seq, parted: Seq) -> Result<(), ClientError> {
        self.emit(ClientEvent::Consistency {
            room: room.id,
            warning: crate::ConsistencyWarning::Rewound {
                ours: before,
                relay: parted,
            },
        });
        room.rec.transcript.rewind_to(parted);
        let mut engine = self.engine();
        engine.persist(self.profile.store(), |b| room.save(b))?;
        Ok(())
    }

    /// One of the [`CATCH_UP_PAGES`], waiting for it (first come, first served).
    async fn catch_up_page(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ClientError> {
        // The semaphore is never closed.
        self.catch_up_pages
            .acquire()
            .await
            .map_err(|_| ClientError::NotConnected)
    }

    /// The last seq before `differs` (where the relay holds another entry than the one we
    /// processed) at which the relay's log is still ours: the first entry that differs,
    /// read forward from the oldest one our transcript can still check, minus one. When
    /// even that one differs, or it expired at the relay, the oldest checkable seq minus
    /// one (the transcript then starts afresh there if it keeps no hash for it).
    async fn where_logs_part(
        &self,
        room: &Room,
        cap: &hearth_protocol::Cap,
        differs: Seq,
    ) -> Result<Seq, ClientError> {
        let transcript = &room.rec.transcript;
        let Some(oldest) = transcript.oldest_checkable() else {
            return Ok(Seq(differs.0 - 1));
        };
        let mut from = oldest;
        while from < differs {
            let response = self
                .call(Request::Read {
                    room: room.id,
                    cap: cap.clone(),
                    from,
                    limit: MAX_READ_ENTRIES
                        .min(u32::try_from(differs.0 - from.0).unwrap_or(u32::MAX)),
                })
                .await
                .map_err(|e| room_error(room.id, e))?;
            let Response::Entries { entries, .. } = response else {
                return Err(unexpected(&response));
            };
            let Some(last_read) = entries.last().map(|e| e.seq) else {
                break;
            };
            for entry in entries.iter().filter(|e| e.seq < differs) {
                // `None` (a seq after a gap of ours) tells nothing either way.
                if transcript.holds(entry.seq, entry.kind, &entry.payload) == Some(false) {
                    return Ok(Seq(entry.seq.0.saturating_sub(1).max(oldest.0 - 1)));
                }
            }
            from = last_read.next();
        }
        Ok(Seq(differs.0 - 1))
    }

    /// At the head of the log, whatever we sent and did not see there was not stored:
    /// forget it (and the pending commit it stands for).
    pub(crate) fn resolve_inflight(&self, room: &mut Room) -> Result<(), ClientError> {
        if room.rec.inflight.is_none() {
            return Ok(());
        }
        let mut engine = self.engine();
        room.group
            .clear_pending_commit(engine.provider.storage())
            .map_err(mls)?;
        room.rec.inflight = None;
        engine.persist(self.profile.store(), |b| room.save(b))
    }

    async fn ensure_subscribed(&self, room: &mut Room) -> Result<(), ClientError> {
        let epoch = room.group.epoch().as_u64();
        if room.orphaned_epoch == Some(epoch) {
            return Ok(()); // `revert::stuck_loop` looks again
        }
        if room.removed || room.rec.status != Status::Joined || room.subscribed == Some(epoch) {
            return Ok(());
        }
        let cap = self.engine().cap(&room.group)?;
        let from = room.rec.transcript.last().next();
        match self
            .call(Request::Subscribe {
                room: room.id,
                cap,
                from,
            })
            .await
            .map_err(|e| room_error(room.id, e))?
        {
            Response::Done => {
                tracing::debug!(
                    "room {}: subscribed at epoch {epoch} from {from:?}",
                    room.id
                );
                if room.subscribed.is_some_and(|old| old != epoch) {
                    room.expected_end = Some(from);
                }
                room.subscribed = Some(epoch);
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Work left over from processing: committing a member's leave proposal when we are
    /// the designated committer.
    pub(crate) async fn follow_up(&self, room: &mut Room) -> Result<(), ClientError> {
        self.commit_proposals(room).await?;
        // Best effort, like the relay's settings check: a room whose capability just
        // ended under us tends it once it follows again.
        match self.tend_pseudonyms(room).await {
            Err(e @ (ClientError::NotConnected | ClientError::Unreachable { .. })) => Err(e),
            Err(e) => {
                tracing::warn!("room {}: announcing our admin key failed: {e}", room.id);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    async fn commit_proposals(&self, room: &mut Room) -> Result<(), ClientError> {
        if !room.commit_proposals || room.removed {
            return Ok(());
        }
        room.commit_proposals = false;
        let id = room.id;
        self.commit_change(room, |group, engine, _| {
            if group.pending_proposals().next().is_none() {
                return Ok(None);
            }
            // With the settings update the leaves imply (owner passing on included).
            build_commit(id, group, engine, &[], &[], None, |_| {}).map(Some)
        })
        .await
        .map(|_| ())
    }

    /// Locks a room that must be joined and usable.
    pub(crate) async fn usable_room(
        &self,
        id: RoomId,
    ) -> Result<tokio::sync::OwnedMutexGuard<Room>, ClientError> {
        let room = self.room(id)?.lock_owned().await;
        if room.removed {
            return Err(ClientError::RemovedFromRoom(id.into()));
        }
        if room.rec.status != Status::Joined {
            return Err(ClientError::NoSuchRoom(id.into()));
        }
        Ok(room)
    }

    /// Catches up, builds a commit (the builder is handed our transcript position, the
    /// join point a Welcome carries), sends it with the next epoch's capability hash, and
    /// on success processes the log through it (merging it). When another commit won the
    /// epoch (`StaleEpoch`), drops ours, catches up and builds again: invisible to the
    /// user. Returns the commit's seq and Welcome bytes, or `None` if the builder found
    /// nothing to do.
    pub(crate) async fn commit_change<F>(
        &self,
        room: &mut Room,
        mut build: F,
    ) -> Result<Option<(Seq, Option<Vec<u8>>)>, ClientError>
    where
        F: FnMut(&mut MlsGroup, &crate::mls::Engine, JoinPoint) -> Result<Built, ClientError>,
    {
        // Our admins list for the relay, until the relay says it does not take it from us.
        let mut tell_admins = true;
        for _ in 0..COMMIT_ATTEMPTS {
            self.catch_up(room).await?;
            if room.removed {
                return Err(ClientError::RemovedFromRoom(room.id.into()));
            }
            if let Some(refused) = &room.rec.extra.refused {
                return Err(super::revert::stuck(room, refused));
            }
            let (payload, welcome, cap, next_cap_hash, admins, demotes) = {
                let mut engine = self.engine();
                let (seq, hash) = room.rec.transcript.mark();
                let before = JoinPoint { seq: seq.0, hash };
                // Commits carry our transcript mark too, in their authenticated data.
                room.group
                    .set_aad(crate::transcript::encode_mark(room.mark()));
                let built = build(&mut room.group, &engine, before);
                room.group.set_aad(Vec::new());
                let Some((commit, welcome)) = built? else {
                    return Ok(None);
                };
                let payload = commit.to_bytes().map_err(mls)?;
                let welcome = welcome.map(|w| w.to_bytes()).transpose().map_err(mls)?;
                let cap = engine.cap(&room.group)?;
                let staged = room
                    .group
                    .pending_commit()
                    .ok_or_else(|| ClientError::Mls("commit was not staged".into()))?;
                let next = engine.next_cap(staged, &room.id.0)?;
                let me = account_of(engine.signer_for(&room.group).public());
                let told = admins_after(&room.group, staged, me).filter(|_| tell_admins);
                let demotes = told.as_ref().is_some_and(|t| t.demotes);
                let admins = told.map(|t| {
                    let action = hearth_protocol::AdminAction::CommitAdmins {
                        next_cap_hash: next.hash(),
                        admins: t.admins.clone(),
                    };
                    let proof = engine
                        .room_admin_key(&room.group)
                        .prove(&room.id, &cap, &action);
                    hearth_protocol::AdminList {
                        admins: t.admins,
                        proof,
                    }
                });
                room.rec.inflight = Some(match &welcome {
                    // The newcomers' Welcome travels with the commit (see `outbox`).
                    Some(welcome) => Inflight::CommitWithWelcome {
                        payload: payload.clone(),
                        welcome: welcome.clone(),
                        to: staged
                            .add_proposals()
                            .filter_map(|add| {
                                account_of(
                                    add.add_proposal()
                                        .key_package()
                                        .leaf_node()
                                        .signature_key()
                                        .as_slice(),
                                )
                            })
                            .collect(),
                    },
                    None => Inflight::Commit {
                        payload: payload.clone(),
                    },
                });
                engine.persist(self.profile.store(), |b| room.save(b))?;
                (payload, welcome, cap, next.hash(), admins, demotes)
            };
            let told_admins = admins.is_some();
            let told_list = admins.as_ref().map(|a| a.admins.clone());
            let outcome = self
                .call(Request::Commit {
                    room: room.id,
                    cap,
                    next_cap_hash,
                    payload,
                    admins,
                })
                .await;
            match outcome {
                Ok(Response::Appended { seq }) => {
                    if let Some(list) = told_list {
                        room.relay_admins = Some(list);
                    }
                    self.catch_up(room).await?;
                    // A public room's listing is stale now: the committer refreshes it.
                    self.republish_quietly(room).await;
                    return Ok(Some((seq, welcome)));
                }
                Ok(other) => return Err(unexpected(&other)),
                // Outcome unknown (the answer was lost with the connection): the log
                // tells, as soon as it can be read again. Landed: done. Not landed: the
                // change did not happen, so it is tried again. Unreadable for too long:
                // the error, and the in-flight commit stays for the next catch-up.
                Err(e @ (ClientError::NotConnected | ClientError::Unreachable { .. })) => {
                    match self.outcome_of_lost_answer(room).await {
                        Some(Some(seq)) => {
                            self.republish_quietly(room).await;
                            return Ok(Some((seq, welcome)));
                        }
                        Some(None) => continue,
                        None => return Err(e),
                    }
                }
                Err(e) => {
                    self.resolve_inflight(room)?;
                    if told_admins && e.code() == Some(ErrorCode::Forbidden) {
                        if demotes {
                            // Whoever loses their rights here would keep them at the
                            // relay (and could undo this very commit there): no.
                            return Err(ClientError::Other(format!(
                                "the relay does not list you as the owner of room {}, so it would not take away the admin rights this change takes away; connect again to let hearth repair the relay's list, or rebuild the room",
                                room.id
                            )));
                        }
                        // The relay's list is behind the room's (a member's commit moved
                        // the owner): commit without it; the owner repairs it at its next
                        // connection (`check_relay_settings`).
                        tell_admins = false;
                        continue;
                    }
                    if e.code() != Some(ErrorCode::StaleEpoch) {
                        return Err(room_error(room.id, e));
                    }
                    tracing::debug!("room {}: lost the race for an epoch; retrying", room.id);
                }
            }
        }
        Err(ClientError::Contention(room.id.into()))
    }

    /// After an append whose answer was lost: waits (at most [`OUTCOME_WAIT`]) until the
    /// relay can be read, catches up, and says where our entry landed (`Some(Some(seq))`),
    /// that it did not (`Some(None)`), or that the log could not be read (`None`).
    async fn outcome_of_lost_answer(&self, room: &mut Room) -> Option<Option<Seq>> {
        room.landed_own = None;
        let deadline = tokio::time::Instant::now() + OUTCOME_WAIT;
        loop {
            if self
                .link
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
            {
                match self.catch_up(room).await {
                    Ok(()) => return Some(room.landed_own.take().map(|landed| landed.seq)),
                    Err(ClientError::NotConnected | ClientError::Unreachable { .. }) => {}
                    Err(e) => {
                        tracing::info!("room {}: cannot read the log: {e}", room.id);
                        return None;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            // The driver is reconnecting meanwhile (its backoff starts at 250 ms).
            tokio::time::sleep(OUTCOME_POLL).await;
        }
    }

    pub(crate) async fn create_room(&self, name: &str) -> Result<RoomId, ClientError> {
        self.create_room_with(RoomSettings::new(name, self.profile.account()))
            .await
    }

    /// Creates a room with these settings and us as its only member (and our admin
    /// pseudonym for it announced in them).
    pub(crate) async fn create_room_with(
        &self,
        mut settings: RoomSettings,
    ) -> Result<RoomId, ClientError> {
        let id = RoomId::random();
        let (group, cap, admin) = {
            let engine = self.engine();
            let admin = crate::pseudonym::RoomAdminKey::for_identity(&engine.signer, &id).public();
            settings.set_pseudonym(engine.account(), admin);
            let group = MlsGroup::new_with_group_id(
                &engine.provider,
                &engine.signer,
                &create_config(&settings)?,
                GroupId::from_slice(&id.0),
                engine.credential.clone(),
            )
            .map_err(mls)?;
            let cap = engine.cap(&group)?;
            (group, cap, admin)
        };
        let name = settings.name.as_str();
        let response = self
            .call(Request::CreateRoom {
                room: id,
                cap_hash: cap.hash(),
                retention_secs: None,
                admin,
            })
            .await;
        let mut room = Room {
            id,
            rec: RoomRecord {
                version: 1,
                name: name.to_string(),
                status: Status::Joined,
                transcript: Transcript::new(),
                inflight: None,
                extra: Default::default(),
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
        match response {
            Ok(Response::Done) => {}
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => {
                let _ = room.group.delete(self.engine().provider.storage());
                return Err(e);
            }
        }
        self.engine()
            .persist(self.profile.store(), |b| room.save(b))?;
        self.ensure_subscribed(&mut room).await?;
        self.insert_room(room);
        self.greet(id).await;
        Ok(id)
    }

    pub(crate) async fn invite(&self, id: RoomId, handle: &Handle) -> Result<(), ClientError> {
        let mut room = self.usable_room(id).await?;
        self.catch_up(&mut room).await?;
        // Someone invited who has not accepted (the invitation lost, expired, or sent to
        // a device they no longer use) is invited again: the same commit removes the
        // pending leaf and adds a fresh KeyPackage (issue 13's ghost member).
        let pending = match room.leaf_of(handle) {
            Some(leaf) if room.is_pending(leaf) => Some(leaf),
            Some(_) => {
                return Err(ClientError::AlreadyMember {
                    room: id.into(),
                    handle: handle.clone(),
                })
            }
            None => None,
        };
        let settings = self.allowed(&room, Action::Invite, None)?;
        if settings.banned.iter().any(|b| b.handle == *handle) {
            return Err(ClientError::Banned {
                room: id.into(),
                handle: handle.clone(),
            });
        }
        // A Welcome still owed (its deposit failed, the connection dropped before it)
        // may carry a package the relay would hand this connection again: deposited
        // first, it ends that loan, and the fetch below takes a fresh one.
        if let Err(e) = self.deliver_owed_welcomes().await {
            tracing::info!("delivering owed invitations failed (tried again later): {e}");
        }
        let (account, key_package) = self.fetch_key_package(handle).await?;
        // The same identity under another handle is still banned.
        if settings.is_banned(&account) {
            return Err(ClientError::Banned {
                room: id.into(),
                handle: handle.clone(),
            });
        }
        self.check_invitee(handle, account.0)?;
        let done = self
            .commit_change(&mut room, |group, engine, before| {
                // Still pending at this epoch (a retry after `StaleEpoch` sees the
                // group as it is now: they may have accepted meanwhile).
                let theirs = pending.filter(|leaf| {
                    group
                        .member_at(*leaf)
                        .is_some_and(|m| handle_of(&m.credential).as_ref() == Some(handle))
                });
                let remove: Vec<LeafNodeIndex> = match theirs {
                    Some(leaf) if is_pending_leaf(group, leaf) => vec![leaf],
                    Some(_) => {
                        return Err(ClientError::AlreadyMember {
                            room: id.into(),
                            handle: handle.clone(),
                        })
                    }
                    None => Vec::new(),
                };
                build_commit(
                    id,
                    group,
                    engine,
                    &remove,
                    std::slice::from_ref(&key_package),
                    Some(before),
                    |_| {},
                )
                .map(Some)
            })
            .await?;
        let Some((_, Some(_))) = done else {
            return Err(ClientError::Mls(
                "adding a member produced no Welcome".into(),
            ));
        };
        drop(room);
        // The Welcome is owed now (written with the processed commit); delivered here, or
        // at the next connection if this fails: the invitation happened either way.
        if let Err(e) = self.deliver_owed_welcomes().await {
            tracing::warn!("room {id}: {handle}'s invitation is delivered later: {e}");
        }
        Ok(())
    }

    /// Fetches one of `handle`'s KeyPackages from the relay's directory (consuming it)
    /// and checks that it names `handle` and carries the account's key.
    pub(crate) async fn fetch_key_package(
        &self,
        handle: &Handle,
    ) -> Result<(AccountKey, KeyPackage), ClientError> {
        let (account, package) = match self
            .call(Request::FetchKeyPackage {
                handle: handle.clone(),
            })
            .await
        {
            Ok(Response::KeyPackage { account, package }) => (account, package),
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => {
                return Err(match e.code() {
                    Some(ErrorCode::UnknownAccount) => ClientError::NoSuchUser(handle.clone()),
                    Some(ErrorCode::NoKeyPackage) => ClientError::NoKeyPackage(handle.clone()),
                    _ => e,
                })
            }
        };
        let key_package = {
            let engine = self.engine();
            KeyPackageIn::tls_deserialize_exact(package.as_slice())
                .map_err(mls)?
                .validate(engine.provider.crypto(), ProtocolVersion::Mls10)
                .map_err(mls)?
        };
        let leaf = key_package.leaf_node();
        if handle_of(leaf.credential()).as_ref() != Some(handle)
            || leaf.signature_key().as_slice() != account.0.as_slice()
        {
            return Err(ClientError::Mls(format!(
                "the key package the relay gave for {handle} does not belong to {handle}"
            )));
        }
        Ok((account, key_package))
    }

    /// Deposits the Welcome of the commit at `seq` into `to`'s inbox.
    pub(crate) async fn deposit_welcome(
        &self,
        id: RoomId,
        seq: Seq,
        transcript_hash: [u8; 32],
        welcome: Vec<u8>,
        to: AccountKey,
    ) -> Result<(), ClientError> {
        let message = InboxMessage::Welcome {
            room: id,
            welcome,
            start_seq: seq.next(),
            transcript_hash,
            from: self.profile.handle().clone(),
        };
        let payload = crate::sealed::seal(&self.profile.identity(), &to, &message.encode())
            .map_err(|e| ClientError::Other(e.to_string()))?;
        match self.call(Request::Deposit { to, payload }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Commits a fresh leaf of our own (new keys: post-compromise security, RFC 9420
    /// section 16.6), and records when. Done right after joining, since a leaf from a
    /// KeyPackage carries that package's lifetime and, once it runs out, nobody could join
    /// the room any more (openmls checks every leaf's lifetime when joining); then on a
    /// schedule ([`SELF_UPDATE_EVERY`]).
    pub(crate) async fn self_update(&self, room: &mut Room) -> Result<(), ClientError> {
        self.commit_change(room, |group, engine, _| build_self_update(group, engine))
            .await?;
        room.rec.extra.updated_at = crate::history::secs_of(self.clock.now());
        let mut engine = self.engine();
        engine.persist(self.profile.store(), |b| room.save(b))
    }

    /// [`Inner::self_update`] when joining: a failure is logged, not returned (the join
    /// itself worked; the schedule tries again).
    pub(crate) async fn update_after_joining(&self, room: &mut Room) {
        if let Err(e) = self.self_update(room).await {
            tracing::warn!("room {}: the update after joining failed: {e}", room.id);
        }
    }

    pub(crate) async fn accept_invitation(&self, id: RoomId) -> Result<(), ClientError> {
        let room = self
            .room(id)
            .map_err(|_| ClientError::NoSuchInvitation(id.into()))?;
        let mut room = room.lock().await;
        if !matches!(room.rec.status, Status::Invited { .. }) {
            return Err(ClientError::NoSuchInvitation(id.into()));
        }
        // Caught up while still invited: what was said between the invitation and now is
        // processed (the epochs move on) but neither shown nor kept, since the invitee
        // had not said yes to reading it (issue 12). MLS itself would let this client
        // read it: the hiding is ours, see docs/threat-model.md.
        self.catch_up(&mut room).await?;
        room.rec.status = Status::Joined;
        self.engine()
            .persist(self.profile.store(), |b| room.save(b))?;
        self.catch_up(&mut room).await?;
        self.follow_up(&mut room).await?;
        self.update_after_joining(&mut room).await;
        drop(room);
        self.greet(id).await;
        Ok(())
    }

    pub(crate) async fn send_body(&self, id: RoomId, body: Body) -> Result<Seq, ClientError> {
        self.send_body_tracked(id, body, &mut None).await
    }

    /// [`Inner::send_body`], leaving in `attempt` the bytes of the last message it put in
    /// flight (`None`: it failed before it sent anything). After an error, only that
    /// attempt may be taken for this body: an earlier message of the room that landed
    /// meanwhile is another one, even with the same text.
    pub(crate) async fn send_body_tracked(
        &self,
        id: RoomId,
        body: Body,
        attempt: &mut Option<Vec<u8>>,
    ) -> Result<Seq, ClientError> {
        let mut room = self.usable_room(id).await?;
        for _ in 0..COMMIT_ATTEMPTS {
            self.catch_up(&mut room).await?;
            if room.removed {
                return Err(ClientError::RemovedFromRoom(id.into()));
            }
            if let Some(refused) = &room.rec.extra.refused {
                return Err(super::revert::stuck(&room, refused));
            }
            self.finish_restore(&mut room).await?;
            self.check_sendable(&room)?;
            if let (Some(seq), true) = (room.rec.extra.fork, body.is_said()) {
                return Err(ClientError::Forked {
                    room: id.into(),
                    seq,
                });
            }
            let (payload, cap) = {
                let mut engine = self.engine();
                let content = Content::v1(body.clone(), room.mark());
                let signer = engine.signer_for(&room.group);
                let message = room
                    .group
                    .create_message(&engine.provider, signer, &content.encode())
                    .map_err(mls)?;
                let payload = message.to_bytes().map_err(mls)?;
                let cap = engine.cap(&room.group)?;
                room.rec.inflight = Some(Inflight::Message {
                    payload: payload.clone(),
                    body: body.clone(),
                });
                engine.persist(self.profile.store(), |b| room.save(b))?;
                room.landed_own = None; // set again when this one is seen in the log
                *attempt = Some(payload.clone());
                (payload, cap)
            };
            match self
                .call(Request::Append {
                    room: id,
                    cap,
                    payload,
                })
                .await
            {
                Ok(Response::Appended { seq }) => {
                    self.mark_sent(id, seq);
                    // Stored: reading the log after it is the usual catch-up, which the
                    // next one does as well. Its failure must not report an error for a
                    // message that was sent (a queue would send it twice).
                    let read_on = async {
                        self.catch_up(&mut room).await?;
                        self.follow_up(&mut room).await
                    };
                    if let Err(e) = read_on.await {
                        tracing::info!("room {id}: after sending: {e}");
                    }
                    return Ok(seq);
                }
                Ok(other) => return Err(unexpected(&other)),
                Err(e) if e.code() == Some(ErrorCode::StaleEpoch) => continue,
                Err(e) => return Err(room_error(id, e)),
            }
        }
        Err(ClientError::Contention(id.into()))
    }

    /// [`Inner::send_body`], and when its answer was lost with the connection, the log
    /// tells whether it was stored (as [`Inner::commit_change`] does for commits): stored,
    /// its seq; not stored, sent once more; the log unreadable for [`OUTCOME_WAIT`], the
    /// error (the message stays in flight and is recognised at the next catch-up if it
    /// landed).
    pub(crate) async fn send_body_settled(
        &self,
        id: RoomId,
        body: Body,
    ) -> Result<Seq, ClientError> {
        let mut attempt = None;
        let e = match self.send_body_tracked(id, body.clone(), &mut attempt).await {
            Err(e @ (ClientError::NotConnected | ClientError::Unreachable { .. })) => e,
            other => return other,
        };
        // Failed before the message went out: nothing of this send can be in the log.
        let Some(sent) = attempt else {
            return Err(e);
        };
        let outcome = {
            let mut room = self.room(id)?.lock_owned().await;
            let ours = room
                .rec
                .inflight
                .as_ref()
                .is_some_and(|inflight| inflight.payload() == sent.as_slice());
            if !ours {
                // Seen in the log meanwhile (pushed on our subscription), or not.
                return match room.landed_own.take() {
                    Some(landed) if landed.is(&sent) => {
                        self.mark_sent(id, landed.seq);
                        Ok(landed.seq)
                    }
                    _ => Err(e),
                };
            }
            self.outcome_of_lost_answer(&mut room).await
        };
        match outcome {
            Some(Some(seq)) => {
                self.mark_sent(id, seq);
                Ok(seq)
            }
            Some(None) => self.send_body(id, body).await,
            None => Err(e),
        }
    }

    /// Whether a Welcome into `id` may be taken: the room is unknown here, or we were
    /// removed from it (kicked, or banned and since unbanned) and are invited back; then
    /// the old group state and record are dropped first (the history is kept). For an
    /// invitation not accepted yet, a Welcome into a later epoch replaces it (we were
    /// removed and invited again meanwhile: the older one leads only to that removal,
    /// issue 13's ghost member); the caller compares the epochs. `Busy` when another task
    /// holds the room: the caller waits for it and asks again.
    pub(crate) fn make_room_for_welcome(&self, id: RoomId) -> Result<WelcomeInto, ClientError> {
        let Ok(handle) = self.room(id) else {
            return Ok(WelcomeInto::NewRoom);
        };
        if super::lock(&self.behind).contains(&id) {
            return Ok(WelcomeInto::Later);
        }
        // Held by another task: nothing can be told until it lets go (taken for a
        // duplicate, a second invitation after a kick was once acknowledged and lost).
        let Ok(mut room) = handle.try_lock() else {
            return Ok(WelcomeInto::Busy);
        };
        if !room.removed && matches!(room.rec.status, Status::Invited { .. }) {
            return Ok(WelcomeInto::LaterThan(room.group.epoch().as_u64()));
        }
        // Or a room restored from a backup that could not be continued (`restore`).
        if !room.removed && !super::restore::needs_reinvite(self.profile.store(), id)? {
            return Ok(WelcomeInto::Nothing);
        }
        {
            let mut engine = self.engine();
            let _ = room.group.delete(engine.provider.storage());
            engine.persist(self.profile.store(), |b| {
                b.delete(Table::Rooms, &id.0).map_err(crate::error::store)
            })?;
        }
        drop(room);
        self.forget_room(id);
        Ok(WelcomeInto::NewRoom)
    }

    /// Before the owner leaves: tells the relay the room's admins as they will be without
    /// us (the member who commits our leaving may not be an admin the relay takes them
    /// from, and the heir would otherwise have no say there; decision 0009). Best effort:
    /// an admin who connects later repairs it.
    async fn hand_over_relay_admins(&self, room: &Room) {
        let (me, cap, key) = {
            let engine = self.engine();
            (
                account_of(engine.signer_for(&room.group).public()),
                engine.cap(&room.group),
                engine.room_admin_key(&room.group),
            )
        };
        let (Some(me), Ok(settings), Ok(cap)) = (me, room.settings(), cap) else {
            return;
        };
        if settings.owner != me {
            return; // only the owner changes the relay's list
        }
        let Ok(after) = crate::policy::next_membership(&settings, &[me], &[]) else {
            return;
        };
        // Every member announces its pseudonym when it joins, so the heir's is known. An
        // heir who has not (a room from before that, whose heir has not updated since)
        // gets no list: the relay keeps ours, and takes a list from nobody else (an empty
        // one could be claimed by anyone with the capability). The heir rebuilds the
        // room if it needs the relay's admin settings before it can be handed the list.
        let admins = after.admin_keys();
        if admins.is_empty() {
            tracing::info!(
                "room {}: the heir has announced no pseudonym; the relay keeps listing us",
                room.id
            );
            return;
        }
        let action = hearth_protocol::AdminAction::SetAdmins {
            admins: admins.clone(),
        };
        let proof = Some(key.prove(&room.id, &cap, &action));
        if let Err(e) = self
            .call(Request::SetRoomAdmins {
                room: room.id,
                cap,
                admins,
                proof,
            })
            .await
        {
            tracing::info!(
                "room {}: handing over the relay's admin list failed: {e}",
                room.id
            );
        }
    }

    /// Leaving: a self-remove proposal appended as a message; the remaining member with
    /// the lowest leaf index commits it when it processes it. Locally the room is
    /// forgotten at once (its history is kept).
    pub(crate) async fn leave(&self, id: RoomId) -> Result<(), ClientError> {
        let mut room = self.room(id)?.lock_owned().await;
        if !room.removed && room.rec.status == Status::Joined {
            self.catch_up(&mut room).await?;
        }
        if !room.removed && room.rec.status == Status::Joined && room.group.members().count() > 1 {
            self.hand_over_relay_admins(&room).await;
            let (payload, cap) = {
                let mut engine = self.engine();
                let signer = engine.signer_for(&room.group);
                let proposal = room
                    .group
                    .leave_group(&engine.provider, signer)
                    .map_err(mls)?;
                let payload = proposal.to_bytes().map_err(mls)?;
                let cap = engine.cap(&room.group)?;
                engine.persist(self.profile.store(), |b| room.save(b))?;
                (payload, cap)
            };
            match self
                .call(Request::Append {
                    room: id,
                    cap,
                    payload,
                })
                .await
                .map_err(|e| room_error(id, e))?
            {
                Response::Appended { .. } => {}
                other => return Err(unexpected(&other)),
            }
            let _ = self.call(Request::Unsubscribe { room: id }).await;
        }
        {
            let mut engine = self.engine();
            let _ = room.group.delete(engine.provider.storage());
            engine.persist(self.profile.store(), |b| {
                super::past::put(b, &room)?;
                b.delete(Table::Rooms, &id.0).map_err(crate::error::store)
            })?;
        }
        room.removed = true;
        drop(room);
        self.forget_room(id);
        if let Some(me) = Some(self.profile.handle().clone()) {
            self.emit(ClientEvent::MemberLeft {
                room: id,
                handle: me,
            });
        }
        Ok(())
    }
}
