//! Public rooms and new-account notices (docs/decisions/0005-public-rooms.md).
//!
//! A room is public when its policy says so: `RoomSettings::public_name` is set, by an
//! admin, in a commit every member checks. Its members then keep a listing in the relay's
//! directory: the public name and a GroupInfo of the current epoch (with the ratchet tree
//! and the external public key), re-published by whoever commits, right after the commit.
//!
//! Anyone registered joins with an MLS **external commit** built on that GroupInfo. The
//! relay appends it only if it was built for the room's current epoch, and rotates the
//! capability with it exactly as for a member's commit, so a commit on a stale GroupInfo
//! can never take the room away from its members. Members accept an external commit only
//! in a public room, only from an identity not on the ban list, and only if it does
//! nothing but add the joiner. An external commit cannot carry a settings change, so the
//! joiner's first act as a member is a **join record**: a commit that appends it to the
//! settings' member list and changes nothing else ([`check_join_record`]).
//!
//! The GroupInfo also carries the publisher's transcript mark (seq and hash) in a private
//! extension, signed with the GroupInfo, so the joiner continues the room's transcript
//! from there instead of starting a fork of it.

use std::time::Duration;

use hearth_protocol::limits::{MAX_PUBLIC_NAME_LEN, MAX_READ_ENTRIES};
use hearth_protocol::{
    AccountKey, EntryKind, ErrorCode, Handle, PublicRoomInfo, Request, Response, RoomId, Seq,
};
use openmls::prelude::*;

use super::admin::build_commit;
use super::authentication::{member_identities, Unverified};
use super::labels::Named;
use super::process::Effects;
use super::room::{account_of, Room, RoomRecord, Status};
use super::{room_error, unexpected, Client, Inner};
use crate::error::{mls, ClientError};
use crate::events::ClientEvent;
use crate::mls::config::capabilities;
use crate::mls::join_point::{JoinPoint, JOIN_POINT_EXTENSION};
use crate::mls::{handle_of, join_config, parse_message, Engine, RoomSettings};
use crate::policy::{self, Action, Changes, PolicyViolation};
use crate::transcript::Transcript;

/// How often joining is tried while the listing is stale or another commit wins.
const JOIN_ATTEMPTS: u32 = 8;
/// The first wait before fetching a stale listing again; doubled per attempt.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// One room of the relay's directory of public rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRoom {
    /// The room.
    pub room: RoomId,
    /// The name it is published under.
    pub public_name: String,
    /// Whether we are a member.
    pub joined: bool,
}

impl Client {
    /// Makes `room` public under `public_name` (admins): a commit records it in the room
    /// policy, then the room is listed in the relay's directory, where anyone registered
    /// on the relay can see the name and join without an invitation. The name, the member
    /// list and the members' keys become visible to the relay and to every account.
    pub async fn publish_room(&self, room: RoomId, public_name: &str) -> Result<(), ClientError> {
        self.inner
            .publish_room(room, public_name)
            .named(&self.inner)
            .await
    }

    /// Makes `room` private again (admins): a commit records it, then the listing is
    /// taken out of the directory.
    pub async fn unpublish_room(&self, room: RoomId) -> Result<(), ClientError> {
        self.inner.unpublish_room(room).named(&self.inner).await
    }

    /// The relay's directory of public rooms, ordered by name.
    pub async fn public_rooms(&self) -> Result<Vec<PublicRoom>, ClientError> {
        let listed = match self.inner.call(Request::ListPublicRooms).await? {
            Response::PublicRooms(rooms) => rooms,
            other => return Err(unexpected(&other)),
        };
        let mut out = Vec::with_capacity(listed.len());
        for PublicRoomInfo {
            room, public_name, ..
        } in listed
        {
            let joined = match self.inner.room(room) {
                Ok(handle) => {
                    let r = handle.lock().await;
                    !r.removed && r.rec.status == Status::Joined
                }
                Err(_) => false,
            };
            out.push(PublicRoom {
                room,
                public_name,
                joined,
            });
        }
        Ok(out)
    }

    /// Joins a public room without an invitation (an MLS external commit on its published
    /// GroupInfo). Retries, with a short wait, while the listing is being refreshed after
    /// a commit. Returns once we are a member and the room is subscribed.
    pub async fn join_public(&self, room: RoomId) -> Result<(), ClientError> {
        self.inner.join_public(room).named(&self.inner).await
    }

    /// Asks the relay for (or stops) [`ClientEvent::AccountRegistered`] notices about new
    /// accounts, for this connection.
    pub async fn watch_registrations(&self, on: bool) -> Result<(), ClientError> {
        match self.inner.call(Request::WatchRegistrations { on }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

/// Checks a name to publish a room under, as the relay will.
fn check_public_name(name: &str) -> Result<String, ClientError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ClientError::Other(
            "a public room name cannot be empty".into(),
        ));
    }
    if name.len() > MAX_PUBLIC_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ClientError::Other(format!(
            "a public room name has at most {MAX_PUBLIC_NAME_LEN} bytes and no control characters"
        )));
    }
    Ok(name.to_string())
}

impl Inner {
    /// A pushed notice that a new account registered on the relay.
    pub(crate) fn account_registered(&self, handle: Handle, account: AccountKey) {
        tracing::debug!("new account {handle} ({})", account.short());
        self.emit(ClientEvent::AccountRegistered { handle });
    }

    async fn publish_room(&self, id: RoomId, public_name: &str) -> Result<(), ClientError> {
        let name = check_public_name(public_name)?;
        self.set_public(id, Some(name)).await?;
        let mut room = self.usable_room(id).await?;
        // The commit above published already; this makes sure, and reports failures.
        self.republish(&mut room).await
    }

    async fn unpublish_room(&self, id: RoomId) -> Result<(), ClientError> {
        self.set_public(id, None).await?;
        let room = self.usable_room(id).await?;
        let cap = self.engine().cap(&room.group)?;
        let proof = self.engine().room_admin_key(&room.group).prove(
            &id,
            &cap,
            &hearth_protocol::AdminAction::Unpublish,
        );
        match self
            .call(Request::UnpublishRoom {
                room: id,
                cap,
                proof: Some(proof),
            })
            .await
            .map_err(|e| room_error(id, e))?
        {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Commits `public_name` into the room policy (admins), unless it is already so.
    async fn set_public(&self, id: RoomId, public_name: Option<String>) -> Result<(), ClientError> {
        let mut room = self.usable_room(id).await?;
        self.catch_up(&mut room).await?;
        self.allowed(&room, Action::Publish, None)?;
        let me = self.profile.account();
        self.commit_change(&mut room, |group, engine, _| {
            let before =
                RoomSettings::read(group.extensions()).map_err(|e| ClientError::PolicyRefused {
                    room: id.into(),
                    reason: PolicyViolation::Unsupported(e.to_string()),
                })?;
            policy::may(&before, &me, Action::Publish, None).map_err(|reason| {
                ClientError::PolicyRefused {
                    room: id.into(),
                    reason,
                }
            })?;
            if before.public_name == public_name {
                return Ok(None);
            }
            let wanted = public_name.clone();
            build_commit(id, group, engine, &[], &[], None, move |s| {
                s.public_name = wanted
            })
            .map(Some)
        })
        .await?;
        Ok(())
    }

    /// Lists the room in the relay's directory with a GroupInfo of our current epoch, if
    /// the room policy says it is public.
    pub(crate) async fn republish(&self, room: &mut Room) -> Result<(), ClientError> {
        if room.removed || room.rec.status != Status::Joined {
            return Ok(());
        }
        let Some(public_name) = room.settings().ok().and_then(|s| s.public_name) else {
            return Ok(());
        };
        let (cap, group_info, epoch, key) = {
            let engine = self.engine();
            let (seq, hash) = room.rec.transcript.mark();
            let mark = JoinPoint { seq: seq.0, hash };
            let group_info = room
                .group
                .export_group_info_with_additional_extensions(
                    engine.provider.crypto(),
                    engine.signer_for(&room.group),
                    true,
                    [mark.extension()],
                )
                .map_err(mls)?
                .to_bytes()
                .map_err(mls)?;
            (
                engine.cap(&room.group)?,
                group_info,
                room.group.epoch().as_u64(),
                engine.room_admin_key(&room.group),
            )
        };
        // Signed as an admin; the relay takes it from a member too when it only
        // refreshes the listing under the same name.
        let action = hearth_protocol::AdminAction::Publish {
            public_name: public_name.clone(),
            epoch,
        };
        let proof = Some(key.prove(&room.id, &cap, &action));
        match self
            .call(Request::PublishRoom {
                room: room.id,
                cap,
                public_name,
                group_info,
                epoch,
                proof,
            })
            .await
            .map_err(|e| room_error(room.id, e))?
        {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// [`Self::republish`] after a commit of ours: a failure only delays joiners (any
    /// member re-publishes on its next commit or reconnect), so it is logged, not raised.
    pub(crate) async fn republish_quietly(&self, room: &mut Room) {
        if let Err(e) = self.republish(room).await {
            tracing::warn!("room {}: re-publishing the listing failed: {e}", room.id);
        }
    }

    /// After (re)connecting: re-publish our public rooms whose listing is missing or of
    /// another epoch (the member who committed last may have gone offline before doing
    /// it, or the listing expired).
    pub(crate) async fn refresh_listings(&self) -> Result<(), ClientError> {
        let mut ours = Vec::new();
        for handle in self.room_handles() {
            let room = handle.lock().await;
            let public = room
                .settings()
                .ok()
                .is_some_and(|s| s.public_name.is_some());
            if public && !room.removed && room.rec.status == Status::Joined {
                ours.push((room.id, room.group.epoch().as_u64(), handle.clone()));
            }
        }
        if ours.is_empty() {
            return Ok(());
        }
        let listed = match self.call(Request::ListPublicRooms).await? {
            Response::PublicRooms(rooms) => rooms,
            other => return Err(unexpected(&other)),
        };
        for (id, epoch, handle) in ours {
            let fresh = listed.iter().any(|l| l.room == id && l.epoch == epoch);
            if !fresh {
                let mut room = handle.lock().await;
                self.republish_quietly(&mut room).await;
            }
        }
        Ok(())
    }

    async fn join_public(&self, id: RoomId) -> Result<(), ClientError> {
        if let Ok(handle) = self.room(id) {
            let room = handle.lock().await;
            if !room.removed && room.rec.status == Status::Joined {
                return Ok(());
            }
        }
        let mut wait = FIRST_RETRY;
        for _ in 0..JOIN_ATTEMPTS {
            match self.try_join_public(id).await {
                Err(e) if e.code() == Some(ErrorCode::StaleEpoch) => {
                    // The room just moved on; a member re-publishes it right after.
                    tracing::debug!("room {id}: listing is stale; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Ok(()) => {
                    self.greet(id).await;
                    return Ok(());
                }
                other => return other,
            }
        }
        Err(ClientError::Contention(id.into()))
    }

    /// One attempt: fetch the GroupInfo, build the external commit, have the relay append
    /// it, then set the room up and record ourselves in the member list.
    pub(super) async fn try_join_public(&self, id: RoomId) -> Result<(), ClientError> {
        // Everyone in the published tree is checked against the directory before we
        // join: anyone registered can publish a tree naming anyone.
        self.look_up_identities(&[]).await?;
        let (group_info, epoch) = match self.call(Request::FetchGroupInfo { room: id }).await {
            Ok(Response::GroupInfo { group_info, epoch }) => (group_info, epoch),
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(room_error(id, e)),
        };
        let group_info = match parse_message(&group_info)?.extract() {
            MlsMessageBodyIn::GroupInfo(info) => info,
            _ => return Err(ClientError::Mls("the listing holds no GroupInfo".into())),
        };
        if group_info.group_id().as_slice() != id.0 {
            return Err(ClientError::Mls("the GroupInfo is for another room".into()));
        }
        let mark = JoinPoint::from_extension(group_info.extensions().unknown(JOIN_POINT_EXTENSION));
        let (mut group, payload, cap) = {
            let engine = self.engine();
            let me = engine.account();
            let (mut group, bundle) = MlsGroup::external_commit_builder()
                .with_config(join_config())
                .build_group(&engine.provider, group_info, engine.credential.clone())
                .map_err(mls)?
                .leaf_node_parameters(
                    LeafNodeParameters::builder()
                        .with_capabilities(capabilities())
                        .build(),
                )
                .load_psks(engine.provider.storage())
                .map_err(mls)?
                .build(
                    engine.provider.rand(),
                    engine.provider.crypto(),
                    &engine.signer,
                    |_| true,
                )
                .map_err(mls)?
                .finalize(&engine.provider)
                .map_err(mls)?;
            // The members will refuse the commit unless the policy allows it: check first.
            let settings = RoomSettings::read(group.extensions()).ok();
            let impostor = match member_identities(&group)
                .map(|members| self.verify_identities(&members, None))
            {
                Ok(Ok(())) => None,
                Ok(Err(Unverified::Impostor(impostor))) => Some(impostor),
                Ok(Err(Unverified::Lookup(_))) => {
                    let _ = group.delete(engine.provider.storage());
                    return Err(ClientError::Other(
                        "the relay's directory changed while joining: try again".into(),
                    ));
                }
                Err(e) => {
                    let _ = group.delete(engine.provider.storage());
                    return Err(e);
                }
            };
            let refusal = match &settings {
                _ if impostor.is_some() => impostor.clone().map(ClientError::Impostor),
                Some(s) if s.is_banned(&me) => Some(ClientError::Banned {
                    room: id.into(),
                    handle: self.profile.handle().clone(),
                }),
                Some(s) if s.direct => Some(ClientError::PolicyRefused {
                    room: id.into(),
                    reason: PolicyViolation::Direct,
                }),
                Some(s) if s.public_name.is_some() => None,
                _ => Some(ClientError::PolicyRefused {
                    room: id.into(),
                    reason: PolicyViolation::Unsupported("the room is not public".into()),
                }),
            };
            if let Some(e) = refusal {
                let _ = group.delete(engine.provider.storage());
                if let Some(impostor) = impostor {
                    self.emit(ClientEvent::Impostor { room: id, impostor });
                }
                return Err(e);
            }
            let payload = bundle.into_commit().to_bytes().map_err(mls)?;
            // finalize() merged the commit: the group is at the epoch it starts.
            let cap = engine.cap(&group)?;
            (group, payload, cap)
        };
        let outcome = self
            .call(Request::JoinPublic {
                room: id,
                epoch,
                next_cap_hash: cap.hash(),
                payload: payload.clone(),
            })
            .await;
        let seq = match outcome {
            Ok(Response::Appended { seq }) => seq,
            other => {
                let _ = group.delete(self.engine().provider.storage());
                return match other {
                    Ok(other) => Err(unexpected(&other)),
                    Err(e) => Err(room_error(id, e)),
                };
            }
        };
        let transcript = self
            .joined_transcript(id, &cap, mark, seq, &payload)
            .await?;
        let mut room = self.install_joined(id, group, transcript)?;
        // Our first act as a member: the join record (the commit also re-publishes).
        let me = self.profile.account();
        let recorded = self
            .commit_change(&mut room, |group, engine, _| {
                let listed = RoomSettings::read(group.extensions())
                    .map(|s| s.members.contains(&me))
                    .unwrap_or(true);
                if listed {
                    return Ok(None);
                }
                build_commit(id, group, engine, &[], &[], None, |s| s.members.push(me)).map(Some)
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!("room {id}: recording ourselves as a member failed: {e}");
        }
        self.catch_up(&mut room).await
    }

    /// Our transcript after our external commit at `seq`: continued from the publisher's
    /// mark through the entries between it and our commit (read with the new epoch's
    /// capability, which reads the whole log), then our commit.
    async fn joined_transcript(
        &self,
        id: RoomId,
        cap: &hearth_protocol::Cap,
        mark: Option<JoinPoint>,
        seq: Seq,
        payload: &[u8],
    ) -> Result<Transcript, ClientError> {
        let Some(mark) = mark.filter(|m| m.seq < seq.0) else {
            // Without a mark we cannot continue it: start at our commit. Marks of older
            // seqs are then simply not checked.
            let mut t = Transcript::starting_at(Seq(seq.0.saturating_sub(1)), [0; 32]);
            t.observe(seq, EntryKind::Commit, payload);
            return Ok(t);
        };
        let mut transcript = Transcript::starting_at(Seq(mark.seq), mark.hash);
        let mut from = Seq(mark.seq).next();
        while from < seq {
            let response = self
                .call(Request::Read {
                    room: id,
                    cap: cap.clone(),
                    from,
                    limit: MAX_READ_ENTRIES.min(u32::try_from(seq.0 - from.0).unwrap_or(u32::MAX)),
                })
                .await
                .map_err(|e| room_error(id, e))?;
            let Response::Entries { entries, .. } = response else {
                return Err(unexpected(&response));
            };
            let Some(last) = entries.iter().map(|e| e.seq).filter(|s| *s < seq).max() else {
                break;
            };
            for entry in entries.iter().filter(|e| e.seq < seq) {
                transcript.observe(entry.seq, entry.kind, &entry.payload);
            }
            from = last.next();
        }
        transcript.observe(seq, EntryKind::Commit, payload);
        Ok(transcript)
    }

    /// Stores the room we just joined and returns it locked.
    fn install_joined(
        &self,
        id: RoomId,
        group: MlsGroup,
        transcript: Transcript,
    ) -> Result<tokio::sync::OwnedMutexGuard<Room>, ClientError> {
        let name = RoomSettings::of(group.extensions())
            .map(|s| s.name)
            .unwrap_or_default();
        let room = Room {
            id,
            rec: RoomRecord {
                version: 1,
                name,
                status: Status::Joined,
                transcript,
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
        let mut events = Vec::new();
        {
            let mut engine = self.engine();
            let seen: Vec<(Handle, [u8; 32])> = room
                .members()
                .into_iter()
                .map(|m| (m.handle, m.account.0))
                .collect();
            let contacts = self.check_contacts(&seen, &mut events);
            engine.persist(self.profile.store(), |batch| {
                room.save(batch)?;
                super::restore::clear_mark(batch, id)?;
                contacts.save(batch)?;
                Ok(())
            })?;
        }
        self.insert_room(room);
        for event in events {
            self.emit(event);
        }
        let handle = self.room(id)?;
        handle
            .try_lock_owned()
            .map_err(|_| ClientError::Other("the joined room is busy".into()))
    }
}

/// Merges an external commit (someone joining by themselves) if the room policy allows
/// it: the room is public, the joiner is not banned and not already listed, and the
/// commit does nothing but add them. Called by `process` for commits whose sender is a
/// new member.
pub(crate) fn merge_external_commit(
    engine: &Engine,
    room: &mut Room,
    staged: StagedCommit,
    joiner: &Handle,
    fx: &mut Effects,
) -> Result<(), ClientError> {
    let refuse = |why: &str| {
        Err(ClientError::CommitRefused {
            room: room.id.into(),
            by: Some(joiner.clone()),
            reason: format!("joining by themselves breaks the room's policy: {why}"),
        })
    };
    let Ok(before) = room.settings() else {
        return refuse("the room has no readable policy");
    };
    if before.public_name.is_none() {
        return refuse("the room is private");
    }
    if staged
        .queued_proposals()
        .any(|p| !matches!(p.proposal(), Proposal::ExternalInit(_)))
    {
        return refuse("an external commit may only add the joiner");
    }
    let Some(leaf) = staged.update_path_leaf_node() else {
        return refuse("no leaf for the joiner");
    };
    let Some(account) = account_of(leaf.signature_key().as_slice()) else {
        return refuse("the joiner's key is malformed");
    };
    if handle_of(leaf.credential()).as_ref() != Some(joiner) {
        return refuse("the joiner's credential does not match");
    }
    // By key, and by handle: a banned person who rotated their key is still banned.
    if before.is_banned(&account) || before.banned.iter().any(|b| b.handle == *joiner) {
        return refuse("they are banned");
    }
    if before.members.contains(&account)
        || room
            .group
            .members()
            .any(|m| m.signature_key.as_slice() == account.0.as_slice())
    {
        return refuse("they are already a member");
    }
    if RoomSettings::of(staged.group_context().extensions()).as_ref() != Some(&before)
        || super::process::other_extensions(staged.group_context().extensions())
            != super::process::other_extensions(room.group.extensions())
    {
        return refuse("an external commit may not change the room's settings");
    }
    fx.contacts.push((joiner.clone(), account.0));
    fx.events.push(ClientEvent::MemberJoined {
        room: room.id,
        handle: joiner.clone(),
    });
    room.group
        .merge_staged_commit(&engine.provider, staged)
        .map_err(mls)?;
    room.subscribed = None;
    room.commit_proposals = false;
    Ok(())
}

/// The policy for a join record: a commit that only appends to the member list people
/// who are in the group but not yet listed (because they joined by an external commit).
/// Returns `None` when the commit is not a join record (the regular policy applies).
pub(crate) fn check_join_record(
    group: &MlsGroup,
    before: &RoomSettings,
    changes: &Changes,
    after: &RoomSettings,
) -> Option<Result<(), PolicyViolation>> {
    if !changes.added.is_empty()
        || !changes.removed.is_empty()
        || after.members.len() <= before.members.len()
        || !after.members.starts_with(&before.members)
    {
        return None;
    }
    let recorded = &after.members[before.members.len()..];
    let verdict = (|| {
        if before.public_name.is_none() {
            return Err(PolicyViolation::Unsupported(
                "only a public room records members who joined by themselves".into(),
            ));
        }
        for (i, account) in recorded.iter().enumerate() {
            let in_group = group
                .members()
                .any(|m| m.signature_key.as_slice() == account.0.as_slice());
            if !in_group || recorded[..i].contains(account) {
                return Err(PolicyViolation::Membership);
            }
            if before.is_banned(account) {
                return Err(PolicyViolation::BannedMember);
            }
        }
        let mut unchanged = after.clone();
        unchanged.members.truncate(before.members.len());
        if unchanged != *before {
            return Err(PolicyViolation::Unsupported(
                "a join record changes nothing but the member list".into(),
            ));
        }
        Ok(())
    })();
    Some(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_names_are_checked_before_sending() {
        assert_eq!(
            check_public_name("  Family board ").unwrap(),
            "Family board"
        );
        assert!(check_public_name(" ").is_err());
        assert!(check_public_name("a\tb").is_err());
        assert!(check_public_name(&"x".repeat(MAX_PUBLIC_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn only_admins_make_a_room_public() {
        let k = |b: u8| AccountKey([b; 32]);
        let mut before = RoomSettings::new("Family", k(0));
        before.members.push(k(1));
        let mut after = before.clone();
        after.public_name = Some("Family board".into());
        let by = |c: u8| Changes {
            committer: k(c),
            removed: Vec::new(),
            added: Vec::new(),
        };
        assert_eq!(policy::check_commit(&before, &by(0), &after), Ok(()));
        assert_eq!(
            policy::check_commit(&before, &by(1), &after),
            Err(PolicyViolation::NotAdmin(Action::Publish))
        );
    }
}
