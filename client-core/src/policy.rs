//! Room policy (DESIGN 7): who may change what in a room, as pure functions over
//! [`RoomSettings`] (the group-context extension that holds the policy's data).
//!
//! The rules:
//! - The creator is the **owner**. The owner grants and revokes admin rights.
//! - **Admins** (the owner included) invite, kick, ban, unban, rename, set the topic and
//!   the disappearing-message timer. Kicking or banning an admin takes the owner; nobody
//!   can kick or ban the owner.
//! - **Members** send, update their own keys and leave. Any member may commit a pending
//!   leave (the designated committer usually is not an admin).
//! - The settings track every member in join order. When the owner leaves, ownership
//!   passes to the longest-standing admin, else the longest-standing member. "Longest
//!   standing" is membership order, not the order of admin grants.
//! - A banned identity is never a member, and cannot be added until unbanned.
//! - A **direct** room (a private conversation, `/msg`) never has more than two members,
//!   is never published, and stays direct.
//! - Each member announces its own **room pseudonym** (decision 0013, part 5;
//!   [`crate::pseudonym`]) in the commit it makes right after joining: nobody may put,
//!   change or take away another member's. The admins' (the owner's first) are what the
//!   relay lists as the room's admins, so a member cannot pose as an admin there, and a
//!   leaving owner can hand the relay's list to an heir who never was an admin.
//!
//! Every client runs [`check_commit`] on every commit before merging it (and on its own
//! commits before sending them), so all honest members accept or refuse a commit alike.
//! [`next_membership`] is the one place where the membership-derived part of the
//! settings (member list, admins, owner) is computed, by committers and checkers alike.

use std::collections::BTreeSet;

use hearth_protocol::{AccountKey, AdminKey};

use crate::events::Role;
use crate::mls::RoomSettings;

/// A change to a room that needs a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Add someone.
    Invite,
    /// Remove someone.
    Kick,
    /// Remove someone and put them on the ban list.
    Ban,
    /// Take someone off the ban list.
    Unban,
    /// Change the room's name.
    Rename,
    /// Change the room's topic.
    SetTopic,
    /// Change the disappearing-message timer.
    SetExpiry,
    /// Make someone an admin.
    GrantAdmin,
    /// Take admin rights away.
    RevokeAdmin,
    /// Kick or ban an admin.
    KickAdmin,
    /// Re-create the room as a new group.
    Rebuild,
    /// Make the room public (listed, open to join) or private again.
    Publish,
    /// Change a group-context extension other than the room settings.
    ChangeExtensions,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Invite => "invite people",
            Action::Kick => "kick members",
            Action::Ban => "ban members",
            Action::Unban => "unban people",
            Action::Rename => "rename the room",
            Action::SetTopic => "set the topic",
            Action::SetExpiry => "set disappearing messages",
            Action::GrantAdmin => "grant admin rights",
            Action::RevokeAdmin => "revoke admin rights",
            Action::KickAdmin => "kick or ban an admin",
            Action::Rebuild => "rebuild the room",
            Action::Publish => "make the room public or private",
            Action::ChangeExtensions => "change the room's group-context extensions",
        })
    }
}

/// Why a commit (or a change about to be made) breaks the room policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// The committer is not in the room's member list.
    #[error("the committer is not a member of the room")]
    NotAMember,
    /// Only admins may do this.
    #[error("only an admin may {0}")]
    NotAdmin(Action),
    /// Only the owner may do this.
    #[error("only the owner may {0}")]
    NotOwner(Action),
    /// Nobody may kick or ban the owner.
    #[error("the owner cannot be kicked or banned")]
    OwnerRemoved,
    /// A banned identity was added.
    #[error("a banned identity was added")]
    BannedAdded,
    /// A banned identity is still a member.
    #[error("a banned identity is still a member")]
    BannedMember,
    /// The member list does not follow the adds and removes of the commit.
    #[error("the settings' member list does not match the commit's adds and removes")]
    Membership,
    /// Ownership moved other than to the longest-standing admin, else member.
    #[error("ownership did not pass to the longest-standing admin or member")]
    Owner,
    /// An admin who is not a member, or the owner listed as an admin.
    #[error("the admin list names someone who is not a plain member")]
    Admins,
    /// A private conversation gets a third member, is published, or stops being direct.
    #[error("a private conversation is between two people only")]
    Direct,
    /// A pseudonym put, changed or taken away for someone other than the committer, or
    /// kept for someone who is not a member.
    #[error("a room pseudonym may only be announced by its own member")]
    Pseudonym,
    /// Something the policy does not allow at all (a proposal type, a missing setting).
    #[error("{0}")]
    Unsupported(String),
}

impl RoomSettings {
    /// The role of an account, if it is a member.
    pub fn role(&self, account: &AccountKey) -> Option<Role> {
        if *account == self.owner {
            Some(Role::Owner)
        } else if self.admins.contains(account) {
            Some(Role::Admin)
        } else if self.members.contains(account) {
            Some(Role::Member)
        } else {
            None
        }
    }

    /// Whether an account is the owner or an admin.
    pub fn is_admin(&self, account: &AccountKey) -> bool {
        *account == self.owner || self.admins.contains(account)
    }

    /// The settings with one member's key replaced (a signed key rotation, see
    /// [`crate::client::rotation`]): the same person keeps the same place and roles.
    pub fn with_key_replaced(&self, old: &AccountKey, new: &AccountKey) -> RoomSettings {
        let swap = |key: &AccountKey| if key == old { *new } else { *key };
        let mut after = self.clone();
        after.owner = swap(&self.owner);
        after.admins = self.admins.iter().map(swap).collect();
        after.members = self.members.iter().map(swap).collect();
        // The pseudonym stays until its admin announces the one of the new key.
        after.pseudonyms = self.pseudonyms.iter().map(|(a, p)| (swap(a), *p)).collect();
        after
    }

    /// The pseudonym `account` announced for this room, if any.
    pub fn pseudonym_of(&self, account: &AccountKey) -> Option<AdminKey> {
        self.pseudonyms
            .iter()
            .find(|(a, _)| a == account)
            .map(|(_, p)| *p)
    }

    /// Sets `account`'s own pseudonym (kept sorted by account).
    pub fn set_pseudonym(&mut self, account: AccountKey, pseudonym: AdminKey) {
        self.pseudonyms.retain(|(a, _)| *a != account);
        self.pseudonyms.push((account, pseudonym));
        self.pseudonyms.sort();
    }

    /// The admin pseudonyms the relay should list, in the form it keeps them (decisions
    /// 0009, 0013): the owner's first, then the other admins' sorted. Admins who have not
    /// announced one yet are left out; empty while the owner has not (the relay's list
    /// needs an owner).
    pub fn admin_keys(&self) -> Vec<AdminKey> {
        let Some(owner) = self.pseudonym_of(&self.owner) else {
            return Vec::new();
        };
        let mut admins: Vec<AdminKey> = self
            .admins
            .iter()
            .filter(|a| **a != self.owner)
            .filter_map(|a| self.pseudonym_of(a))
            .filter(|p| *p != owner)
            .collect();
        admins.sort();
        admins.dedup();
        std::iter::once(owner).chain(admins).collect()
    }

    /// Whether the relay's list of admin pseudonyms (from `RoomStatus`) is the one the
    /// admins announced here. A list the room does not know names someone who can change
    /// the room's settings at the relay without being its admin.
    pub fn relay_admins_match(&self, relay: &[AdminKey]) -> bool {
        relay == self.admin_keys().as_slice()
    }

    /// Whether an identity is on the ban list.
    pub fn is_banned(&self, account: &AccountKey) -> bool {
        self.banned.iter().any(|b| b.account == *account)
    }

    /// Sorts and deduplicates the admin and ban lists (the canonical form committers
    /// write).
    pub fn normalize(&mut self) {
        self.admins.sort();
        self.admins.dedup();
        let (owner, admins, members) = (self.owner, self.admins.clone(), self.members.clone());
        self.pseudonyms
            .retain(|(a, _)| *a == owner || admins.contains(a) || members.contains(a));
        self.pseudonyms.sort();
        self.pseudonyms.dedup_by(|a, b| a.0 == b.0);
        self.banned.sort();
        self.banned.dedup_by(|a, b| a.account == b.account);
    }
}

/// The settings after a commit that removes `removed` and adds `added` (in that order)
/// and changes nothing else: the member list follows, removed admins lose the role, and
/// a removed owner is replaced by the longest-standing remaining admin, else member.
///
/// Fails when a removed account is not a member or an added one already is.
pub fn next_membership(
    before: &RoomSettings,
    removed: &[AccountKey],
    added: &[AccountKey],
) -> Result<RoomSettings, PolicyViolation> {
    let mut after = before.clone();
    for account in removed {
        let at = after
            .members
            .iter()
            .position(|m| m == account)
            .ok_or(PolicyViolation::Membership)?;
        after.members.remove(at);
    }
    for account in added {
        if after.members.contains(account) {
            return Err(PolicyViolation::Membership);
        }
        after.members.push(*account);
    }
    after.admins.retain(|a| after.members.contains(a));
    let kept = after.members.clone();
    after.pseudonyms.retain(|(a, _)| kept.contains(a));
    if !after.members.contains(&after.owner) {
        let heir = after
            .members
            .iter()
            .find(|m| after.admins.contains(m))
            .or_else(|| after.members.first())
            .copied();
        if let Some(heir) = heir {
            after.owner = heir;
            after.admins.retain(|a| *a != heir);
        }
    }
    Ok(after)
}

/// A removal in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// Who is removed.
    pub account: AccountKey,
    /// They proposed it themselves (leaving).
    pub by_self: bool,
}

/// What a commit does to membership, and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The member who made the commit.
    pub committer: AccountKey,
    /// Removals, in the commit's order.
    pub removed: Vec<Removal>,
    /// Accounts added, in the commit's order.
    pub added: Vec<AccountKey>,
}

fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

/// Checks a commit against the policy in force before it: `before` is the settings of
/// the current epoch, `after` the settings the commit installs (equal to `before` when
/// it carries no settings change).
pub fn check_commit(
    before: &RoomSettings,
    changes: &Changes,
    after: &RoomSettings,
) -> Result<(), PolicyViolation> {
    let committer = &changes.committer;
    if !before.members.contains(committer) {
        return Err(PolicyViolation::NotAMember);
    }
    let admin = before.is_admin(committer);
    let owner = before.owner == *committer;
    let need_admin = |action| {
        if admin {
            Ok(())
        } else {
            Err(PolicyViolation::NotAdmin(action))
        }
    };
    let need_owner = |action| {
        if owner {
            Ok(())
        } else {
            Err(PolicyViolation::NotOwner(action))
        }
    };

    for removal in changes.removed.iter().filter(|r| !r.by_self) {
        if removal.account == before.owner {
            return Err(PolicyViolation::OwnerRemoved);
        }
        need_admin(Action::Kick)?;
        if before.admins.contains(&removal.account) {
            need_owner(Action::KickAdmin)?;
        }
    }
    if !changes.added.is_empty() {
        need_admin(Action::Invite)?;
    }
    if changes.added.iter().any(|a| after.is_banned(a)) {
        return Err(PolicyViolation::BannedAdded);
    }

    if after.direct != before.direct
        || (after.direct && (after.members.len() > 2 || after.public_name.is_some()))
    {
        return Err(PolicyViolation::Direct);
    }

    let removed: Vec<AccountKey> = changes.removed.iter().map(|r| r.account).collect();
    let base = next_membership(before, &removed, &changes.added)?;
    if after.members != base.members {
        return Err(PolicyViolation::Membership);
    }
    if after.owner != base.owner {
        return Err(PolicyViolation::Owner);
    }

    let (admins_before, admins_after) = (set(&base.admins), set(&after.admins));
    if admins_before != admins_after {
        if admins_after.difference(&admins_before).next().is_some() {
            need_owner(Action::GrantAdmin)?;
        }
        if admins_before.difference(&admins_after).next().is_some() {
            need_owner(Action::RevokeAdmin)?;
        }
    }
    if admins_after.contains(&after.owner)
        || !admins_after.iter().all(|a| after.members.contains(a))
    {
        return Err(PolicyViolation::Admins);
    }

    if after.name != before.name {
        need_admin(Action::Rename)?;
    }
    if after.topic != before.topic {
        need_admin(Action::SetTopic)?;
    }
    if after.expire_secs != before.expire_secs {
        need_admin(Action::SetExpiry)?;
    }
    if after.public_name != before.public_name {
        need_admin(Action::Publish)?;
    }

    // Room pseudonyms: each put or changed only by its own member (MLS authenticates
    // the committer), and only members (admins and the owner included) have one. One
    // that goes is one whose account is no longer a member, or the committer's own.
    let holds =
        |s: &RoomSettings, account: &AccountKey| s.is_admin(account) || s.members.contains(account);
    for (account, pseudonym) in &after.pseudonyms {
        if !holds(after, account) {
            return Err(PolicyViolation::Pseudonym);
        }
        // (A key rotation moves an entry to the new key, with the same pseudonym.)
        let known = before.pseudonyms.iter().any(|(_, p)| p == pseudonym);
        if before.pseudonym_of(account) != Some(*pseudonym) && account != committer && !known {
            return Err(PolicyViolation::Pseudonym);
        }
    }
    for (account, _) in &before.pseudonyms {
        let gone = after.pseudonym_of(account).is_none();
        if gone && holds(after, account) && account != committer {
            return Err(PolicyViolation::Pseudonym);
        }
    }
    let mut accounts: Vec<&AccountKey> = after.pseudonyms.iter().map(|(a, _)| a).collect();
    accounts.dedup();
    if accounts.len() != after.pseudonyms.len() {
        return Err(PolicyViolation::Pseudonym);
    }

    let (banned_before, banned_after) = (set(&before.banned), set(&after.banned));
    for newly in banned_after.difference(&banned_before) {
        need_admin(Action::Ban)?;
        if newly.account == before.owner {
            return Err(PolicyViolation::OwnerRemoved);
        }
        if before.admins.contains(&newly.account) {
            need_owner(Action::KickAdmin)?;
        }
    }
    if banned_before.difference(&banned_after).next().is_some() {
        need_admin(Action::Unban)?;
    }
    if after
        .banned
        .iter()
        .any(|b| after.members.contains(&b.account))
    {
        return Err(PolicyViolation::BannedMember);
    }
    Ok(())
}

/// The sender-side check before building a change: may `actor` do `action` (to
/// `target`, for kicks and bans)? Gives the same answer [`check_commit`] will give the
/// other members, but before anything is built or sent.
pub fn may(
    policy: &RoomSettings,
    actor: &AccountKey,
    action: Action,
    target: Option<&AccountKey>,
) -> Result<(), PolicyViolation> {
    let owner_only = matches!(
        action,
        Action::GrantAdmin | Action::RevokeAdmin | Action::KickAdmin
    );
    if owner_only {
        if policy.owner != *actor {
            return Err(PolicyViolation::NotOwner(action));
        }
    } else if !policy.is_admin(actor) {
        return Err(PolicyViolation::NotAdmin(action));
    }
    let crowded = action == Action::Invite && policy.members.len() >= 2;
    if policy.direct && (crowded || action == Action::Publish) {
        return Err(PolicyViolation::Direct);
    }
    if let (Action::Kick | Action::Ban, Some(target)) = (action, target) {
        if *target == policy.owner {
            return Err(PolicyViolation::OwnerRemoved);
        }
        if policy.admins.contains(target) && policy.owner != *actor {
            return Err(PolicyViolation::NotOwner(Action::KickAdmin));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mls::BannedIdentity;
    use hearth_protocol::Handle;
    use proptest::prelude::*;

    fn k(b: u8) -> AccountKey {
        AccountKey([b; 32])
    }

    /// Owner 0, admins 1 and 2, members 0..5 in order.
    fn room() -> RoomSettings {
        let mut s = RoomSettings::new("Family", k(0));
        s.members = (0..5).map(k).collect();
        s.admins = vec![k(1), k(2)];
        s
    }

    /// Decision 0013 part 5: each member announces its own pseudonym; nobody can put one
    /// for someone else, change another's, or take one away from a member; revoking an
    /// admin keeps theirs (they are still a member) but takes it off the relay's list,
    /// and a member who goes loses it.
    #[test]
    fn each_member_announces_only_its_own_pseudonym() {
        let p = |b: u8| AdminKey([b; 32]);
        let mut before = room();
        before.set_pseudonym(k(0), p(100));
        let with = |edit: &dyn Fn(&mut RoomSettings)| {
            let mut after = before.clone();
            edit(&mut after);
            after
        };
        // Admin 1 announces its own, and so does member 3: fine.
        let after = with(&|s| s.set_pseudonym(k(1), p(101)));
        assert_eq!(check_commit(&before, &changes(1, &[], &[]), &after), Ok(()));
        assert_eq!(after.admin_keys(), vec![p(100), p(101)]);
        let after = with(&|s| s.set_pseudonym(k(3), p(103)));
        assert_eq!(check_commit(&before, &changes(3, &[], &[]), &after), Ok(()));
        // A member's pseudonym is not an admin's: the relay's list does not change.
        assert_eq!(after.admin_keys(), vec![p(100)]);
        assert!(!after.relay_admins_match(&[p(100), p(103)]));
        // Member 3 announces one for admin 1 or for member 4, or replaces the owner's;
        // admin 2 takes the owner's away; someone not in the room gets one.
        for (committer, edit) in [
            (
                3u8,
                &(|s: &mut RoomSettings| s.set_pseudonym(k(1), p(33))) as &dyn Fn(&mut _),
            ),
            (3, &|s: &mut RoomSettings| s.set_pseudonym(k(4), p(33))),
            (3, &|s: &mut RoomSettings| s.set_pseudonym(k(0), p(33))),
            (2, &|s: &mut RoomSettings| {
                s.pseudonyms.retain(|(a, _)| *a != k(0))
            }),
            (3, &|s: &mut RoomSettings| s.set_pseudonym(k(9), p(33))),
        ] {
            let after = with(edit);
            assert_eq!(
                check_commit(&before, &changes(committer, &[], &[]), &after),
                Err(PolicyViolation::Pseudonym),
                "{after:?}"
            );
        }
        // Nor can anyone take a member's away.
        let mut announced = before.clone();
        announced.set_pseudonym(k(3), p(103));
        let mut taken = announced.clone();
        taken.pseudonyms.retain(|(a, _)| *a != k(3));
        assert_eq!(
            check_commit(&announced, &changes(0, &[], &[]), &taken),
            Err(PolicyViolation::Pseudonym)
        );
        // The owner revokes admin 1: its pseudonym stays (a member's), off the relay's list.
        let mut granted = before.clone();
        granted.set_pseudonym(k(1), p(101));
        let mut revoked = granted.clone();
        revoked.admins.retain(|a| *a != k(1));
        revoked.normalize();
        assert_eq!(revoked.pseudonym_of(&k(1)), Some(p(101)));
        assert_eq!(revoked.admin_keys(), vec![p(100)]);
        assert_eq!(
            check_commit(&granted, &changes(0, &[], &[]), &revoked),
            Ok(())
        );
        // A member who goes loses it.
        let gone = next_membership(&announced, &[k(3)], &[]).unwrap();
        assert_eq!(gone.pseudonym_of(&k(3)), None);
        // The relay's list is checked against what the admins announced.
        assert!(granted.relay_admins_match(&[p(100), p(101)]));
        assert!(!granted.relay_admins_match(&[p(100), p(33)]));
        assert!(!granted.relay_admins_match(&[p(33), p(100), p(101)]));
    }

    fn changes(committer: u8, removed: &[(u8, bool)], added: &[u8]) -> Changes {
        Changes {
            committer: k(committer),
            removed: removed
                .iter()
                .map(|&(a, by_self)| Removal {
                    account: k(a),
                    by_self,
                })
                .collect(),
            added: added.iter().map(|&a| k(a)).collect(),
        }
    }

    fn ban(s: &mut RoomSettings, b: u8) {
        s.banned.push(BannedIdentity {
            account: k(b),
            handle: Handle::new("someone").unwrap(),
        });
        s.normalize();
    }

    fn commit(
        before: &RoomSettings,
        c: &Changes,
        edit: impl FnOnce(&mut RoomSettings),
    ) -> Result<(), PolicyViolation> {
        let removed: Vec<_> = c.removed.iter().map(|r| r.account).collect();
        let mut after = next_membership(before, &removed, &c.added)?;
        edit(&mut after);
        check_commit(before, c, &after)
    }

    #[test]
    fn members_only_send_update_and_leave() {
        let r = room();
        assert_eq!(commit(&r, &changes(3, &[], &[]), |_| {}), Ok(()));
        assert_eq!(commit(&r, &changes(3, &[(4, true)], &[]), |_| {}), Ok(()));
        assert_eq!(
            commit(&r, &changes(3, &[(4, false)], &[]), |_| {}),
            Err(PolicyViolation::NotAdmin(Action::Kick))
        );
        assert_eq!(
            commit(&r, &changes(3, &[], &[9]), |_| {}),
            Err(PolicyViolation::NotAdmin(Action::Invite))
        );
        assert_eq!(
            commit(&r, &changes(3, &[], &[]), |s| s.name = "Mine".into()),
            Err(PolicyViolation::NotAdmin(Action::Rename))
        );
        assert_eq!(
            commit(&r, &changes(3, &[], &[]), |s| s.expire_secs = Some(5)),
            Err(PolicyViolation::NotAdmin(Action::SetExpiry))
        );
        assert_eq!(
            commit(&r, &changes(3, &[], &[]), |s| s.admins.push(k(3))),
            Err(PolicyViolation::NotOwner(Action::GrantAdmin))
        );
    }

    #[test]
    fn a_direct_room_stays_between_two_people() {
        let mut r = RoomSettings::direct("@a+b", k(0));
        assert_eq!(commit(&r, &changes(0, &[], &[1]), |_| {}), Ok(()));
        r.members.push(k(1));
        assert_eq!(
            commit(&r, &changes(0, &[], &[2]), |_| {}),
            Err(PolicyViolation::Direct)
        );
        assert_eq!(
            may(&r, &k(0), Action::Invite, None),
            Err(PolicyViolation::Direct)
        );
        assert_eq!(
            commit(&r, &changes(0, &[], &[]), |s| s.direct = false),
            Err(PolicyViolation::Direct)
        );
        assert_eq!(
            commit(&r, &changes(0, &[], &[]), |s| s.public_name =
                Some("x".into())),
            Err(PolicyViolation::Direct)
        );
        let mut plain = room();
        plain.direct = false;
        assert_eq!(
            commit(&plain, &changes(0, &[], &[]), |s| s.direct = true),
            Err(PolicyViolation::Direct)
        );
    }

    #[test]
    fn admins_manage_members_and_the_owner_manages_admins() {
        let r = room();
        assert_eq!(commit(&r, &changes(1, &[(4, false)], &[9]), |_| {}), Ok(()));
        assert_eq!(
            commit(&r, &changes(1, &[], &[]), |s| s.topic = "t".into()),
            Ok(())
        );
        assert_eq!(
            commit(&r, &changes(1, &[(2, false)], &[]), |_| {}),
            Err(PolicyViolation::NotOwner(Action::KickAdmin))
        );
        assert_eq!(
            commit(&r, &changes(1, &[(0, false)], &[]), |_| {}),
            Err(PolicyViolation::OwnerRemoved)
        );
        assert_eq!(commit(&r, &changes(0, &[(2, false)], &[]), |_| {}), Ok(()));
        assert_eq!(
            commit(&r, &changes(1, &[], &[]), |s| s
                .admins
                .retain(|a| *a != k(2))),
            Err(PolicyViolation::NotOwner(Action::RevokeAdmin))
        );
        assert_eq!(
            commit(&r, &changes(0, &[], &[]), |s| {
                s.admins.push(k(3));
                s.normalize()
            }),
            Ok(())
        );
        assert_eq!(
            commit(&r, &changes(0, &[], &[]), |s| s.admins.push(k(9))),
            Err(PolicyViolation::Admins)
        );
    }

    #[test]
    fn bans_remove_and_block_re_adding() {
        let r = room();
        assert_eq!(
            commit(&r, &changes(1, &[(4, false)], &[]), |s| ban(s, 4)),
            Ok(())
        );
        assert_eq!(
            commit(&r, &changes(1, &[], &[]), |s| ban(s, 4)),
            Err(PolicyViolation::BannedMember)
        );
        assert_eq!(
            commit(&r, &changes(3, &[(4, false)], &[]), |s| ban(s, 4)),
            Err(PolicyViolation::NotAdmin(Action::Kick))
        );
        let mut banned = r.clone();
        banned.members.retain(|m| *m != k(4));
        ban(&mut banned, 4);
        assert_eq!(
            commit(&banned, &changes(1, &[], &[4]), |_| {}),
            Err(PolicyViolation::BannedAdded)
        );
        assert_eq!(
            commit(&banned, &changes(1, &[], &[4]), |s| s.banned.clear()),
            Ok(())
        );
        assert_eq!(
            commit(&banned, &changes(3, &[], &[]), |s| s.banned.clear()),
            Err(PolicyViolation::NotAdmin(Action::Unban))
        );
    }

    #[test]
    fn ownership_passes_to_the_longest_standing_admin_else_member() {
        let r = room();
        let after = next_membership(&r, &[k(0)], &[]).unwrap();
        assert_eq!(after.owner, k(1));
        assert_eq!(after.admins, vec![k(2)]);
        assert_eq!(commit(&r, &changes(3, &[(0, true)], &[]), |_| {}), Ok(()));
        assert_eq!(
            commit(&r, &changes(3, &[(0, true)], &[]), |s| s.owner = k(3)),
            Err(PolicyViolation::Owner)
        );
        let mut plain = RoomSettings::new("x", k(0));
        plain.members = vec![k(0), k(7), k(5)];
        assert_eq!(next_membership(&plain, &[k(0)], &[]).unwrap().owner, k(7));
        // Admin order follows membership, not grant order.
        plain.admins = vec![k(5), k(7)];
        assert_eq!(next_membership(&plain, &[k(0)], &[]).unwrap().owner, k(7));
    }

    #[test]
    fn membership_must_follow_the_commit() {
        let r = room();
        assert_eq!(
            commit(&r, &changes(1, &[], &[3]), |_| {}),
            Err(PolicyViolation::Membership)
        );
        let stale = r.clone();
        assert_eq!(
            check_commit(&r, &changes(1, &[], &[9]), &stale),
            Err(PolicyViolation::Membership)
        );
        assert_eq!(
            commit(&r, &changes(9, &[], &[]), |_| {}),
            Err(PolicyViolation::NotAMember)
        );
    }

    #[test]
    fn may_agrees_with_the_rules() {
        let r = room();
        assert!(may(&r, &k(1), Action::Kick, Some(&k(3))).is_ok());
        assert!(may(&r, &k(1), Action::Kick, Some(&k(2))).is_err());
        assert!(may(&r, &k(0), Action::Kick, Some(&k(2))).is_ok());
        assert!(may(&r, &k(0), Action::Ban, Some(&k(0))).is_err());
        assert!(may(&r, &k(3), Action::Rename, None).is_err());
        assert!(may(&r, &k(1), Action::GrantAdmin, None).is_err());
        assert!(may(&r, &k(0), Action::GrantAdmin, None).is_ok());
    }

    /// A room of 2 to 7 members (key `i` = the `i`-th to join), owner 0, random admins
    /// among 1..n-1; the last member is always a plain member.
    fn arb_room() -> impl Strategy<Value = RoomSettings> {
        (2u8..8, proptest::collection::vec(any::<bool>(), 8)).prop_map(|(n, admin)| {
            let mut s = RoomSettings::new("r", k(0));
            s.members = (0..n).map(k).collect();
            s.admins = (1..n - 1).filter(|i| admin[*i as usize]).map(k).collect();
            s
        })
    }

    proptest! {
        /// Whatever a commit does, `may` and `check_commit` agree for kicks, and the
        /// settings after a checked commit keep the invariants: the owner is a member and
        /// not an admin, admins are members.
        #[test]
        fn kicks_agree_and_invariants_hold(r in arb_room(), a in any::<u8>(), b in any::<u8>(), by_self in any::<bool>()) {
            // Two distinct members, chosen without rejecting cases.
            let n = r.members.len() as u8;
            let committer = a % n;
            let target = (committer + 1 + b % (n - 1)) % n;
            let c = changes(committer, &[(target, by_self)], &[]);
            let result = commit(&r, &c, |_| {});
            if !by_self {
                prop_assert_eq!(result.is_ok(), may(&r, &k(committer), Action::Kick, Some(&k(target))).is_ok());
            } else {
                prop_assert!(result.is_ok());
            }
            if result.is_ok() {
                let after = next_membership(&r, &[k(target)], &[]).unwrap();
                prop_assert!(after.members.contains(&after.owner));
                prop_assert!(!after.admins.contains(&after.owner));
                prop_assert!(after.admins.iter().all(|a| after.members.contains(a)));
            }
        }

        /// A non-admin can never change anything but its own membership.
        #[test]
        fn plain_members_cannot_edit(r in arb_room(), pick in any::<usize>(), name in "[a-z]{1,5}") {
            let plain: Vec<u8> = r
                .members
                .iter()
                .filter(|m| r.role(m) == Some(Role::Member))
                .map(|m| m.0[0])
                .collect();
            let who = plain[pick % plain.len()];
            let renamed = commit(&r, &changes(who, &[], &[]), |s| s.name = format!("X{name}"));
            let banned = commit(&r, &changes(who, &[], &[]), |s| ban(s, 99));
            let added = commit(&r, &changes(who, &[], &[42]), |_| ());
            prop_assert!(renamed.is_err() && banned.is_err() && added.is_err());
        }
    }
}
