//! Room administration: kick, ban, unban, roles, name, topic, disappearing messages, and
//! the policy-checked commit they (and invites and leaves) are built with.
//!
//! Every change is checked twice on this side: [`policy::may`] before anything is built
//! (so a member who is not an admin gets [`ClientError::NotAdmin`] and nothing is sent),
//! then [`check_staged`] on the staged commit itself, the very check every other member
//! runs before merging it.

use std::time::{Duration, SystemTime};

use hearth_protocol::{AccountKey, Handle, Request, Response, RoomId};
use openmls::prelude::*;

use super::process::check_staged;
use super::room::{account_of, Room};
use super::{room_error, unexpected, Inner};
use crate::error::{mls, ClientError};
use crate::events::RoomPolicy;
use crate::mls::join_point::JoinPoint;
use crate::mls::{BannedIdentity, Engine, RoomSettings};
use crate::policy::{self, next_membership, Action, PolicyViolation};

/// The commit and maybe a Welcome, as built.
pub(crate) type CommitMessages = (MlsMessageOut, Option<MlsMessageOut>);

/// Builds and stages one commit that removes `remove`, adds `add` and applies `edit` to
/// the settings, together with every pending leave proposal (which the commit builder
/// always includes). The settings' membership part (member list, admins, owner passing)
/// is derived by [`next_membership`]; a settings change rides in the same commit as a
/// GroupContextExtensions proposal. A commit that adds people carries `join_point` (our
/// transcript position before it) in the Welcome's GroupInfo. The staged commit is
/// checked against the policy exactly as the other members will check it; if it fails,
/// it is dropped.
pub(crate) fn build_commit(
    id: RoomId,
    group: &mut MlsGroup,
    engine: &Engine,
    remove: &[LeafNodeIndex],
    add: &[KeyPackage],
    join_point: Option<JoinPoint>,
    edit: impl FnOnce(&mut RoomSettings),
) -> Result<CommitMessages, ClientError> {
    let refused = |reason| ClientError::PolicyRefused {
        room: id.into(),
        reason,
    };
    let before = RoomSettings::read(group.extensions())
        .map_err(|e| refused(PolicyViolation::Unsupported(e.to_string())))?;
    let leaving: Vec<LeafNodeIndex> = group
        .pending_proposals()
        .filter_map(|p| match p.proposal() {
            Proposal::Remove(r) => Some(r.removed()),
            _ => None,
        })
        .collect();
    let own_removes: Vec<LeafNodeIndex> = remove
        .iter()
        .filter(|leaf| !leaving.contains(leaf))
        .copied()
        .collect();
    let removed = leaving
        .iter()
        .chain(&own_removes)
        .map(|leaf| {
            group
                .member_at(*leaf)
                .and_then(|m| account_of(&m.signature_key))
        })
        .collect::<Option<Vec<AccountKey>>>()
        .ok_or_else(|| refused(PolicyViolation::Membership))?;
    let added = add
        .iter()
        .map(|kp| account_of(kp.leaf_node().signature_key().as_slice()))
        .collect::<Option<Vec<AccountKey>>>()
        .ok_or_else(|| refused(PolicyViolation::Membership))?;
    let mut after = next_membership(&before, &removed, &added).map_err(refused)?;
    edit(&mut after);
    after.normalize();

    let signer = engine.signer_for(group);
    let mut builder = group
        .commit_builder()
        .propose_removals(own_removes)
        .propose_adds(add.iter().cloned());
    if after != before {
        builder = builder
            .propose_group_context_extensions(after.extensions()?)
            .map_err(mls)?;
    }
    let mut builder = builder.load_psks(engine.provider.storage()).map_err(mls)?;
    if let (Some(point), false) = (join_point, add.is_empty()) {
        // The newcomers' history starts here, signed inside the Welcome's GroupInfo.
        builder = builder
            .create_group_info_with_extensions([point.extension()])
            .map_err(mls)?;
    }
    let bundle = builder
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
    let own = group.own_leaf_index();
    let verdict = match group.pending_commit() {
        Some(staged) => check_staged(group, staged, own),
        None => return Err(ClientError::Mls("commit was not staged".into())),
    };
    if let Err(reason) = verdict {
        group
            .clear_pending_commit(engine.provider.storage())
            .map_err(mls)?;
        return Err(refused(reason));
    }
    Ok((commit, welcome))
}

impl Inner {
    /// The sender-side check: may we do `action` (to `target`) in this room now?
    pub(crate) fn allowed(
        &self,
        room: &Room,
        action: Action,
        target: Option<&AccountKey>,
    ) -> Result<RoomSettings, ClientError> {
        let settings = room.settings().map_err(|e| ClientError::PolicyRefused {
            room: room.id.into(),
            reason: PolicyViolation::Unsupported(e.to_string()),
        })?;
        let me = self.profile.account();
        match policy::may(&settings, &me, action, target) {
            Ok(()) => Ok(settings),
            Err(violation) => Err(refusal(room, &settings, violation)),
        }
    }

    /// Commits a settings edit (no membership change) after checking `action`.
    async fn edit_settings<F>(&self, id: RoomId, action: Action, edit: F) -> Result<(), ClientError>
    where
        F: Fn(&mut RoomSettings) + Clone,
    {
        let mut room = self.usable_room(id).await?;
        self.catch_up(&mut room).await?;
        self.allowed(&room, action, None)?;
        let me = self.profile.account();
        self.commit_change(&mut room, |group, engine, _| {
            let before = RoomSettings::read(group.extensions()).ok();
            if let Some(before) = &before {
                policy::may(before, &me, action, None).map_err(|v| ClientError::PolicyRefused {
                    room: id.into(),
                    reason: v,
                })?;
                let mut after = before.clone();
                edit(&mut after);
                after.normalize();
                if after == *before {
                    return Ok(None); // nothing to change (someone else did it already)
                }
            }
            build_commit(id, group, engine, &[], &[], None, edit.clone()).map(Some)
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn kick(
        &self,
        id: RoomId,
        handle: &Handle,
        ban: bool,
    ) -> Result<(), ClientError> {
        if handle == self.profile.handle() {
            if ban {
                return Err(ClientError::PolicyRefused {
                    room: id.into(),
                    reason: PolicyViolation::Unsupported("you cannot ban yourself".into()),
                });
            }
            return self.leave(id).await;
        }
        let action = if ban { Action::Ban } else { Action::Kick };
        let mut room = self.usable_room(id).await?;
        self.catch_up(&mut room).await?;
        let settings = room.settings().map_err(|e| ClientError::PolicyRefused {
            room: id.into(),
            reason: PolicyViolation::Unsupported(e.to_string()),
        })?;
        if room.leaves_named(handle) > 1 {
            // Only possible in a room from before identities were checked (decision 0007).
            return Err(ClientError::Other(format!(
                "two members of room {id} call themselves {handle}, so kicking by name could hit the wrong one: rebuild the room (`hearth room rebuild`) instead"
            )));
        }
        let target = match room.member_by_handle(handle) {
            Some((_, account)) => account,
            None => match settings.banned.iter().find(|b| b.handle == *handle) {
                Some(entry) if ban => entry.account, // already banned and out: nothing to do
                // Banning someone who is not (or no longer) in the room keeps them out:
                // the identity comes from our pinned contacts, else the relay's directory.
                _ if ban => self
                    .identity_of(handle)
                    .await?
                    .ok_or_else(|| ClientError::NoSuchUser(handle.clone()))?,
                _ => {
                    return Err(ClientError::NotAMember {
                        room: id.into(),
                        handle: handle.clone(),
                    })
                }
            },
        };
        self.allowed(&room, action, Some(&target))?;
        let me = self.profile.account();
        let entry = BannedIdentity {
            account: target,
            handle: handle.clone(),
        };
        self.commit_change(&mut room, |group, engine, _| {
            let before =
                RoomSettings::read(group.extensions()).map_err(|e| ClientError::PolicyRefused {
                    room: id.into(),
                    reason: PolicyViolation::Unsupported(e.to_string()),
                })?;
            policy::may(&before, &me, action, Some(&target)).map_err(|v| {
                ClientError::PolicyRefused {
                    room: id.into(),
                    reason: v,
                }
            })?;
            let leaf = group
                .members()
                .find(|m| m.signature_key.as_slice() == target.0.as_slice())
                .map(|m| m.index);
            // Someone else removed them meanwhile: a kick is done; a ban may still need
            // the ban list entry.
            if leaf.is_none() && (!ban || before.is_banned(&target)) {
                return Ok(None);
            }
            let remove: Vec<LeafNodeIndex> = leaf.into_iter().collect();
            let entry = entry.clone();
            build_commit(id, group, engine, &remove, &[], None, move |s| {
                if ban {
                    s.banned.push(entry);
                }
            })
            .map(Some)
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn unban(&self, id: RoomId, handle: &Handle) -> Result<(), ClientError> {
        let account = {
            let mut room = self.usable_room(id).await?;
            self.catch_up(&mut room).await?;
            let settings = self.allowed(&room, Action::Unban, None)?;
            settings
                .banned
                .iter()
                .find(|b| b.handle == *handle)
                .map(|b| b.account)
                .ok_or_else(|| ClientError::NotBanned {
                    room: id.into(),
                    handle: handle.clone(),
                })?
        };
        self.edit_settings(id, Action::Unban, move |s| {
            s.banned.retain(|b| b.account != account)
        })
        .await
    }

    pub(crate) async fn set_admin(
        &self,
        id: RoomId,
        handle: &Handle,
        admin: bool,
    ) -> Result<(), ClientError> {
        let action = if admin {
            Action::GrantAdmin
        } else {
            Action::RevokeAdmin
        };
        let account = {
            let mut room = self.usable_room(id).await?;
            self.catch_up(&mut room).await?;
            let settings = self.allowed(&room, action, None)?;
            let (_, account) =
                room.member_by_handle(handle)
                    .ok_or_else(|| ClientError::NotAMember {
                        room: id.into(),
                        handle: handle.clone(),
                    })?;
            if account == settings.owner {
                return Err(ClientError::PolicyRefused {
                    room: id.into(),
                    reason: PolicyViolation::Unsupported(
                        "the owner's role cannot be changed".into(),
                    ),
                });
            }
            account
        };
        self.edit_settings(id, action, move |s| {
            if admin {
                // Only while still a member: a grant must name a member.
                if s.members.contains(&account) && s.owner != account {
                    s.admins.push(account);
                }
            } else {
                s.admins.retain(|a| *a != account);
            }
        })
        .await
    }

    pub(crate) async fn rename(&self, id: RoomId, name: &str) -> Result<(), ClientError> {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(ClientError::Other("a room name cannot be empty".into()));
        }
        self.edit_settings(id, Action::Rename, move |s| s.name = name.clone())
            .await
    }

    pub(crate) async fn set_topic(&self, id: RoomId, topic: &str) -> Result<(), ClientError> {
        let topic = topic.trim().to_string();
        self.edit_settings(id, Action::SetTopic, move |s| s.topic = topic.clone())
            .await
    }

    /// Sets the timer in the group context, then asks the relay to keep the room's
    /// envelopes no longer than that (with the new epoch's capability).
    pub(crate) async fn set_expiry(
        &self,
        id: RoomId,
        expire: Option<Duration>,
    ) -> Result<(), ClientError> {
        let secs = match expire {
            Some(d) if d.as_secs() == 0 => {
                return Err(ClientError::Other(
                    "messages must be kept at least one second".into(),
                ))
            }
            Some(d) => Some(d.as_secs()),
            None => None,
        };
        self.edit_settings(id, Action::SetExpiry, move |s| s.expire_secs = secs)
            .await?;
        let room = self.usable_room(id).await?;
        let cap = self.engine().cap(&room.group)?;
        let retention_secs = relay_retention_for(secs);
        let proof = self.engine().room_admin_key(&room.group).prove(
            &id,
            &cap,
            &hearth_protocol::AdminAction::SetRetention { retention_secs },
        );
        drop(room);
        match self
            .call(Request::SetRetention {
                room: id,
                cap,
                retention_secs,
                proof: Some(proof),
            })
            .await
            .map_err(|e| room_error(id, e))?
        {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    pub(crate) async fn policy(&self, id: RoomId) -> Result<RoomPolicy, ClientError> {
        let room = self.room(id)?;
        let room = room.lock().await;
        let settings = room.settings().map_err(|e| ClientError::PolicyRefused {
            room: id.into(),
            reason: PolicyViolation::Unsupported(e.to_string()),
        })?;
        let name = |account: &AccountKey| {
            room.handle_of_account(account)
                .unwrap_or_else(|| unknown_handle(account))
        };
        let mut admins: Vec<Handle> = settings.admins.iter().map(name).collect();
        admins.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut banned: Vec<Handle> = settings.banned.iter().map(|b| b.handle.clone()).collect();
        banned.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(RoomPolicy {
            room: id,
            name: settings.name.clone(),
            topic: settings.topic.clone(),
            owner: name(&settings.owner),
            admins,
            banned,
            expire: settings.expire_secs.map(Duration::from_secs),
        })
    }

    /// Re-creates a room as a new group with the same name, topic, timer, ban list,
    /// members and roles (DESIGN 4: the way out of a room an insider broke). Every member
    /// we can fetch a KeyPackage for, whose identity key is the one we know, is added in
    /// one commit that also installs the old policy; they get an invitation. The old room
    /// gets a pointer to the new one if it still accepts messages, and is marked old.
    pub(crate) async fn rebuild(&self, old: RoomId) -> Result<RoomId, ClientError> {
        let me = self.profile.account();
        let (settings, members) = {
            let mut room = self.usable_room(old).await?;
            // A broken room may refuse even reading; rebuild from what we have.
            if let Err(e) = self.catch_up(&mut room).await {
                tracing::warn!("room {old}: catching up before the rebuild failed: {e}");
            }
            let settings = self.allowed(&room, Action::Rebuild, None)?;
            let members: Vec<crate::events::Member> = room
                .members()
                .into_iter()
                .filter(|m| m.account != me && settings.members.contains(&m.account))
                .collect();
            (settings, members)
        };
        let mut packages = Vec::new();
        for member in &members {
            match self.fetch_key_package(&member.handle).await {
                Ok((account, package)) if account == member.account => packages.push(package),
                Ok(_) => tracing::warn!(
                    "rebuild: {} now has another identity key; not re-adding them",
                    member.handle
                ),
                Err(e) => tracing::warn!("rebuild: cannot re-add {}: {e}", member.handle),
            }
        }
        let present: Vec<AccountKey> = std::iter::once(me)
            .chain(
                packages
                    .iter()
                    .filter_map(|kp| account_of(kp.leaf_node().signature_key().as_slice())),
            )
            .collect();
        let absent: Vec<AccountKey> = settings
            .members
            .iter()
            .filter(|m| !present.contains(m))
            .copied()
            .collect();
        let mut policy = next_membership(&settings, &absent, &[]).map_err(|reason| {
            ClientError::PolicyRefused {
                room: old.into(),
                reason,
            }
        })?;
        // Pseudonyms are per room: the old room's mean nothing in the new one (each
        // member announces its own there, ours when we tend it, theirs when they join).
        policy.pseudonyms.clear();
        policy.normalize();

        let new = self.create_room(&settings.name).await?;
        let mut room = self.usable_room(new).await?;
        let extensions = policy.extensions()?;
        // Not through `build_commit`: this first commit hands the roles over from the old
        // room (the owner may be someone else than us, the creator). Nobody checks it
        // but us: the members join after it, from the Welcome.
        let done = self
            .commit_change(&mut room, |group, engine, before| {
                let bundle = group
                    .commit_builder()
                    .propose_adds(packages.iter().cloned())
                    .propose_group_context_extensions(extensions.clone())
                    .map_err(mls)?
                    .load_psks(engine.provider.storage())
                    .map_err(mls)?
                    .create_group_info_with_extensions([before.extension()])
                    .map_err(mls)?
                    .build(
                        engine.provider.rand(),
                        engine.provider.crypto(),
                        &engine.signer,
                        |_| true,
                    )
                    .map_err(mls)?
                    .stage_commit(&engine.provider)
                    .map_err(mls)?;
                let (commit, welcome, _) = bundle.into_messages();
                Ok(Some((commit, welcome)))
            })
            .await?;
        if let Some((_, Some(_))) = done {
            // Owed since the commit was processed (see `outbox`).
            if let Err(e) = self.deliver_owed_welcomes().await {
                tracing::warn!("rebuild: the invitations are delivered later: {e}");
            }
        }
        let cap = self.engine().cap(&room.group)?;
        let retention_secs = relay_retention_for(policy.expire_secs);
        let proof = self.engine().room_admin_key(&room.group).prove(
            &new,
            &cap,
            &hearth_protocol::AdminAction::SetRetention { retention_secs },
        );
        drop(room);
        if policy.expire_secs.is_some() {
            self.call(Request::SetRetention {
                room: new,
                cap,
                retention_secs,
                proof: Some(proof),
            })
            .await?;
        }
        let pointer =
            crate::content::Body::RoomEvent(crate::content::RoomEvent::Rebuilt { room: new });
        if let Err(e) = self.send_body(old, pointer).await {
            tracing::info!("room {old}: could not point to the rebuilt room: {e}");
        }
        // Here at once, pointer or not: the name now means the new room (see `labels`).
        self.mark_rebuilt(old, new).await?;
        Ok(new)
    }

    /// Records that `old` was rebuilt as `new`: `old` is shown as `name (old)` and no
    /// longer found by its name.
    async fn mark_rebuilt(&self, old: RoomId, new: RoomId) -> Result<(), ClientError> {
        let room = self.room(old)?;
        let mut room = room.lock().await;
        room.rec.extra.rebuilt_as = Some(new);
        self.engine()
            .persist(self.profile.store(), |batch| room.save(batch))
    }

    /// Our own admin pseudonym in a room we administer, announced in the room's settings
    /// when it is not there yet (we were just made an admin, or created the room before
    /// pseudonyms) or no longer ours (a key rotation): a commit only we may make (decision
    /// 0013, part 5). Then, as the owner, the relay's list set to the room's when it
    /// differs from what we know the relay holds.
    pub(crate) async fn tend_pseudonyms(&self, room: &mut Room) -> Result<(), ClientError> {
        if room.removed
            || room.rec.status != super::room::Status::Joined
            || room.rec.extra.refused.is_some()
            || room.orphaned_epoch == Some(room.group.epoch().as_u64())
        {
            return Ok(());
        }
        let Ok(settings) = room.settings() else {
            return Ok(());
        };
        let (me, moving, mine) = {
            let engine = self.engine();
            let me = account_of(engine.signer_for(&room.group).public());
            let mine = engine.room_admin_key(&room.group).public();
            (me, engine.holds_previous_key(&room.group), mine)
        };
        let Some(me) = me.filter(|me| !moving && settings.is_admin(me)) else {
            return Ok(());
        };
        if settings.pseudonym_of(&me) != Some(mine) {
            let id = room.id;
            self.commit_change(room, |group, engine, _| {
                let before = RoomSettings::read(group.extensions()).ok();
                if before.is_some_and(|b| b.pseudonym_of(&me) == Some(mine) || !b.is_admin(&me)) {
                    return Ok(None);
                }
                build_commit(id, group, engine, &[], &[], None, move |s| {
                    s.set_pseudonym(me, mine)
                })
                .map(Some)
            })
            .await?;
        }
        let Ok(settings) = room.settings() else {
            return Ok(());
        };
        if settings.owner == me && room.relay_admins.as_ref() != Some(&settings.admin_keys()) {
            self.check_relay_settings(room).await?;
        }
        Ok(())
    }

    /// Reads back what the relay holds for a room (its admins and the retention it
    /// applies). Every member checks the relay's list of admin pseudonyms against the ones
    /// the room's admins announced (a list the room does not know lets someone who is
    /// not its admin change its settings at the relay) and says so; the owner sets the
    /// list back, an admin the retention. The relay takes them only from an admin it lists
    /// (decisions 0009, 0013). They differ after a lost update, a member's commit that
    /// moved the owner, an admin's new pseudonym, or a store migrated to pseudonyms.
    /// Issue 10.
    pub(crate) async fn check_relay_settings(&self, room: &mut Room) -> Result<(), ClientError> {
        let Ok(settings) = room.settings() else {
            return Ok(());
        };
        let (me, moving, key) = {
            let engine = self.engine();
            let me = account_of(engine.signer_for(&room.group).public());
            (
                me,
                engine.holds_previous_key(&room.group),
                engine.room_admin_key(&room.group),
            )
        };
        // A room a key rotation has not reached yet names us by the old key.
        if moving {
            return Ok(());
        }
        let admin = me.is_some_and(|me| settings.is_admin(&me));
        let want = relay_retention_for(settings.expire_secs);
        let cap = self.engine().cap(&room.group)?;
        let (found, admins) = match self
            .call(Request::RoomStatus {
                room: room.id,
                cap: cap.clone(),
            })
            .await
            .map_err(|e| room_error(room.id, e))?
        {
            Response::RoomStatus {
                retention_secs,
                admins,
                ..
            } => (retention_secs, admins),
            other => return Err(unexpected(&other)),
        };
        let want_admins = settings.admin_keys();
        let news = room.relay_admins.as_ref() != Some(&admins);
        room.relay_admins = Some(admins.clone());
        if !admins.is_empty() && !room.rec.extra.relay_listed_admins {
            room.rec.extra.relay_listed_admins = true;
            self.engine()
                .persist(self.profile.store(), |batch| room.save(batch))?;
        }
        if !settings.relay_admins_match(&admins) {
            // An admin's pseudonym not announced yet is the usual reason; one the room
            // does not know at all is someone posing as an admin at the relay.
            let strangers = admins
                .iter()
                .filter(|a| {
                    !settings
                        .pseudonyms
                        .iter()
                        .any(|(who, p)| p == *a && settings.is_admin(who))
                })
                .count();
            if strangers > 0 {
                tracing::warn!(
                    "room {}: the relay lists {strangers} admin key(s) no admin of the room announced; the owner's client sets the list back when it connects",
                    room.id
                );
            }
        }
        // The relay takes a new list only from the owner it lists, or, for a room of a
        // relay upgraded from account keys to pseudonyms, from the owner's account once
        // (decision 0013, part 5).
        let may_set = me.is_some_and(|me| settings.owner == me)
            && admins.first().is_none_or(|owner| *owner == key.public());
        // A list the relay had and now says it has not: not a migration (that happens
        // once, before any list), so no first list from the account, which would show
        // the relay this account with the room.
        let emptied = admins.is_empty() && room.rec.extra.relay_listed_admins;
        if emptied && may_set && news {
            tracing::warn!(
                "room {}: the relay lists no admins for this room although it listed them before: not set from the account",
                room.id
            );
            self.emit(crate::ClientEvent::Consistency {
                room: room.id,
                warning: crate::transcript::ConsistencyWarning::AdminsForgotten,
            });
        }
        let may_set = may_set && !emptied;
        if admins != want_admins && !want_admins.is_empty() && may_set {
            let action = hearth_protocol::AdminAction::SetAdmins {
                admins: want_admins.clone(),
            };
            let proof = Some(key.prove(&room.id, &cap, &action));
            let request = Request::SetRoomAdmins {
                room: room.id,
                cap: cap.clone(),
                admins: want_admins.clone(),
                proof,
            };
            // A list the relay keeps is changed by pseudonym, on the room's connection;
            // only a migrated room's first list takes the owner's signed-in account (and
            // shows the relay that account with the room, once).
            let set = if admins.is_empty() {
                self.call_signed_in(request).await
            } else {
                self.call(request).await
            };
            match set {
                Ok(Response::Done) => {
                    room.relay_admins = Some(want_admins);
                    if !room.rec.extra.relay_listed_admins {
                        room.rec.extra.relay_listed_admins = true;
                        self.engine()
                            .persist(self.profile.store(), |batch| room.save(batch))?;
                    }
                }
                Ok(other) => return Err(unexpected(&other)),
                // A room the relay lists no admins for and keeps no owner account of
                // (older than the relay's lists): nobody can set them any more.
                Err(ClientError::Relay(e))
                    if admins.is_empty() && e.code == hearth_protocol::ErrorCode::Forbidden =>
                {
                    tracing::warn!(
                        "room {}: the relay lists no admins for this room and takes none now ({}); rebuild the room to change its settings at the relay",
                        room.id,
                        e.message
                    );
                }
                Err(e) => return Err(room_error(room.id, e)),
            }
        }
        if found == want || !admin {
            return Ok(());
        }
        let proof = key.prove(
            &room.id,
            &cap,
            &hearth_protocol::AdminAction::SetRetention {
                retention_secs: want,
            },
        );
        match self
            .call(Request::SetRetention {
                room: room.id,
                cap,
                retention_secs: want,
                proof: Some(proof),
            })
            .await
            .map_err(|e| room_error(room.id, e))?
        {
            Response::Done => {}
            other => return Err(unexpected(&other)),
        }
        self.emit(crate::ClientEvent::RetentionRestored {
            room: room.id,
            found: found.map(Duration::from_secs),
        });
        Ok(())
    }

    /// Deletes stored messages of every room that are past the room's timer at `now`;
    /// returns how many were deleted.
    /// `now` is read from the device's clock; ages are judged by the relay's.
    pub(crate) async fn purge_expired(&self, now: SystemTime) -> Result<usize, ClientError> {
        let now = self.clock.relay_time(now);
        let mut deleted = 0;
        for room in self.room_handles() {
            let room = room.lock().await;
            let Some(expire) = room.settings().ok().and_then(|s| s.expire_secs) else {
                continue;
            };
            deleted += crate::history::purge(self.profile.store(), room.id, expire, now)?;
        }
        Ok(deleted)
    }
}

/// The error for a refused change, naming who can do it.
fn refusal(room: &Room, settings: &RoomSettings, violation: PolicyViolation) -> ClientError {
    let name = |a: &AccountKey| {
        room.handle_of_account(a)
            .unwrap_or_else(|| unknown_handle(a))
    };
    match violation {
        PolicyViolation::NotAdmin(action) => {
            let mut admins = vec![name(&settings.owner)];
            admins.extend(settings.admins.iter().map(name));
            ClientError::NotAdmin {
                room: room.id.into(),
                action,
                admins,
            }
        }
        PolicyViolation::NotOwner(action) => ClientError::NotOwner {
            room: room.id.into(),
            action,
            owner: name(&settings.owner),
        },
        reason => ClientError::PolicyRefused {
            room: room.id.into(),
            reason,
        },
    }
}

/// A display handle for an identity whose handle is unknown here.
fn unknown_handle(account: &AccountKey) -> Handle {
    // "unknown-" and 8 hex digits: lowercase alphanumerics and '-', 16 characters, so
    // always a valid handle.
    Handle::new(&format!("unknown-{}", hex::encode(&account.0[..4])))
        .expect("unknown-<hex> is a valid handle")
}

/// The retention to ask the relay for, for a room whose timer is `expire_secs`: the timer,
/// but at least the relay's minimum (clients purge at the exact timer themselves).
pub(crate) fn relay_retention_for(expire_secs: Option<u64>) -> Option<u64> {
    expire_secs.map(|secs| secs.max(hearth_protocol::limits::MIN_ROOM_RETENTION_SECS))
}
