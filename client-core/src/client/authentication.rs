//! The application's authentication service (RFC 9420 section 5.3.1, RFC 9750 section 6):
//! every identity that enters a room's ratchet tree, or changes in it, is checked here
//! before the change is merged. MLS authenticates keys; this module binds them to people.
//!
//! A member's identity is the pair (handle, identity key) of its leaf: the handle in the
//! BasicCredential, the key as the leaf's signature key. The rules:
//!
//! - **Nobody changes identity in a room.** The leaf a commit's UpdatePath installs for
//!   the committer keeps the committer's credential and signature key (Update proposals
//!   are refused by the policy altogether). A commit that changes either is an impostor.
//! - **Identities entering a room** (every leaf of a Welcome's tree, an Add, an external
//!   join) must be held by the local pin for that handle or, where there is no pin or it
//!   holds another key, by the relay's directory. A key the directory vouches for but the
//!   pin does not is an ordinary key change, left to the user (see [`crate::contacts`]);
//!   a key that neither holds is an impostor, and the change is refused.
//! - Our own handle with a key other than ours is always an impostor.
//!
//! The directory needs the network, and processing holds the engine lock, which is never
//! held across I/O. So processing that meets a handle with neither a matching pin nor a
//! fresh copy of the directory undoes itself and returns [`Unverified::Lookup`]; the
//! async caller fetches the directory ([`Inner::look_up_identities`], the whole list, so
//! the relay does not learn who is being checked) and processes again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearth_protocol::{AccountKey, Handle, Request, Response};
use openmls::prelude::*;

use super::Inner;
use crate::contacts;
use crate::error::ClientError;
use crate::mls::handle_of;

/// How long a copy of the relay's directory counts as fresh enough to refuse someone on
/// its word. An older copy is fetched again first (someone may have just registered).
const DIRECTORY_FRESH: Duration = Duration::from_secs(10);

/// Someone presenting an identity that is not theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impostor {
    /// The handle they claimed.
    pub claimed: Handle,
    /// The identity key they presented with it.
    pub key: AccountKey,
    /// The member who brought them in or made the change (the committer, the inviter);
    /// `None` for someone bringing themselves in (an external join, a Welcome sent in
    /// the name it claims), known only by `key`.
    pub by: Option<Handle>,
}

impl std::fmt::Display for Impostor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fp = crate::fingerprint::fingerprint(&self.key);
        match &self.by {
            Some(by) if *by == self.claimed => write!(
                f,
                "{by} tried to change their identity key in the room (to {fp}); refused"
            ),
            Some(by) => write!(
                f,
                "{by} tried to bring in someone posing as {} (key {fp}); refused",
                self.claimed
            ),
            None => write!(
                f,
                "someone posing as {} (key {fp}) tried to get into the room; refused",
                self.claimed
            ),
        }
    }
}

/// Why identities could not be accepted (yet).
#[derive(Debug)]
pub(crate) enum Unverified {
    /// Ask the relay's directory about these handles, then process again.
    Lookup(Vec<Handle>),
    /// Someone claims an identity that is not theirs.
    Impostor(Impostor),
}

/// The relay's directory as last fetched (`ListAccounts`): handle -> identity key. The
/// whole list is fetched, never single handles, so the relay does not learn whom a room
/// brings in (a household has dozens of accounts; the list is bounded by the relay's
/// frame size).
#[derive(Default)]
pub(crate) struct DirectoryAnswers {
    accounts: HashMap<Handle, [u8; 32]>,
    /// Each account's chain of signed key rotations (see [`super::rotation`]).
    rotations: HashMap<Handle, Vec<hearth_protocol::KeyRotation>>,
    fetched: Option<Instant>,
    /// When a key change by each handle last made us fetch the directory: a member
    /// committing key changes nobody signed gets one fetch per [`KEY_CHANGE_LOOKUP_EVERY`].
    key_change_lookups: HashMap<Handle, Instant>,
}

/// How often a member's key changes may make us fetch the directory (see
/// [`DirectoryAnswers::key_change_lookups`]); an honest rotation needs one fetch in all.
const KEY_CHANGE_LOOKUP_EVERY: Duration = Duration::from_secs(600);

impl DirectoryAnswers {
    /// Whether the copy was fetched less than [`DIRECTORY_FRESH`] ago.
    fn fresh(&self) -> bool {
        self.fetched
            .is_some_and(|at| at.elapsed() < DIRECTORY_FRESH)
    }
}

/// A leaf's identity: its handle and identity key, or an error naming what is malformed.
pub(crate) fn identity_of(leaf: &LeafNode) -> Result<(Handle, [u8; 32]), ClientError> {
    identity(leaf.credential(), leaf.signature_key().as_slice())
}

/// The identities of every member of a group (a Welcome's tree); fails on the first
/// malformed one.
pub(crate) fn member_identities(group: &MlsGroup) -> Result<Vec<(Handle, [u8; 32])>, ClientError> {
    group
        .members()
        .map(|m| identity(&m.credential, m.signature_key.as_slice()))
        .collect()
}

/// A signature key as an account key (a malformed one, never from a valid leaf, leaves
/// zeros rather than failing: it matches no account).
fn account_of_key(key: &[u8]) -> AccountKey {
    let mut out = [0u8; 32];
    let n = key.len().min(32);
    out[..n].copy_from_slice(&key[..n]);
    AccountKey(out)
}

fn identity(credential: &Credential, key: &[u8]) -> Result<(Handle, [u8; 32]), ClientError> {
    let handle = handle_of(credential)
        .ok_or_else(|| ClientError::Mls("a member's credential is not a valid handle".into()))?;
    let key = <[u8; 32]>::try_from(key)
        .map_err(|_| ClientError::Mls("a member's identity key is malformed".into()))?;
    Ok((handle, key))
}

/// A member's move to a new identity key, signed off by the directory's rotation chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rotated {
    pub handle: Handle,
    pub from: AccountKey,
    pub to: AccountKey,
}

/// The identities a member's commit adds (from its Add proposals).
pub(crate) fn added_identities(
    staged: &StagedCommit,
) -> Result<Vec<(Handle, [u8; 32])>, ClientError> {
    staged
        .add_proposals()
        .map(|add| identity_of(add.add_proposal().key_package().leaf_node()))
        .collect()
}

impl Inner {
    /// Checks identities entering a room, brought in `by` someone (see the module
    /// documentation). Call it under the engine lock; it reads pins and the answers
    /// already fetched, never the network.
    pub(crate) fn verify_identities(
        &self,
        entering: &[(Handle, [u8; 32])],
        by: Option<&Handle>,
    ) -> Result<(), Unverified> {
        let store = self.profile.store();
        let answers = super::lock(&self.directory);
        let mut lookups = Vec::new();
        for (handle, key) in entering {
            let impostor = || {
                Unverified::Impostor(Impostor {
                    claimed: handle.clone(),
                    key: AccountKey(*key),
                    // Someone bringing themselves in under that name is known by key only.
                    by: by.filter(|by| *by != handle).cloned(),
                })
            };
            if handle == self.profile.handle() {
                // A Welcome made from a KeyPackage of the key we rotated away from is ours
                // too (the room then moves to the new key, see `rotation`).
                // (Read from the profile: the engine lock may be held by our caller.)
                let previous = self.profile.previous_identity().ok().flatten();
                if *key != self.profile.account().0 && previous.map(|p| p.account().0) != Some(*key)
                {
                    return Err(impostor());
                }
                continue;
            }
            // An unreadable contact counts as no pin: the directory decides.
            let pinned = contacts::load(store, handle).ok().flatten();
            if pinned.is_some_and(|record| record.key == *key) {
                continue;
            }
            match answers.accounts.get(handle) {
                Some(vouched) if vouched == key => {}
                // Refused only on the word of a fresh copy of the directory.
                _ if !answers.fresh() => lookups.push(handle.clone()),
                _ => return Err(impostor()),
            }
        }
        if lookups.is_empty() {
            Ok(())
        } else {
            lookups.sort();
            lookups.dedup();
            Err(Unverified::Lookup(lookups))
        }
    }

    /// Checks that a commit leaves the committer's identity as it was: the leaf its
    /// UpdatePath installs has the same credential and signature key as the committer's
    /// current leaf in `group` (the group before the commit). The one change allowed is
    /// a key rotation the relay's directory lists, signed by the key given up
    /// ([`super::rotation::rotation_is_signed`]); it is returned for the pin to follow.
    /// The rotation is usually minutes old, newer than any copy of the directory kept
    /// for other checks, so a key change is refused only on the word of a copy fetched
    /// for this very entry (`looked_up`).
    pub(crate) fn check_identity_kept(
        &self,
        group: &MlsGroup,
        staged: &StagedCommit,
        committer: LeafNodeIndex,
        looked_up: bool,
    ) -> Result<Option<Rotated>, Unverified> {
        let Some(new) = staged.update_path_leaf_node() else {
            return Ok(None);
        };
        let Some(old) = group.member_at(committer) else {
            return Ok(None); // not a member: the policy refuses it
        };
        let new_key = account_of_key(new.signature_key().as_slice());
        let same_credential = *new.credential() == old.credential;
        if same_credential && new.signature_key().as_slice() == old.signature_key.as_slice() {
            return Ok(None);
        }
        let by = handle_of(&old.credential);
        if let (true, Some(handle)) = (same_credential, &by) {
            let from = account_of_key(old.signature_key.as_slice());
            let mut answers = super::lock(&self.directory);
            let chain = answers.rotations.get(handle).map(Vec::as_slice);
            if super::rotation::rotation_is_signed(handle, &from, &new_key, chain.unwrap_or(&[])) {
                return Ok(Some(Rotated {
                    handle: handle.clone(),
                    from,
                    to: new_key,
                }));
            }
            let recently = answers
                .key_change_lookups
                .get(handle)
                .is_some_and(|at| at.elapsed() < KEY_CHANGE_LOOKUP_EVERY);
            if !looked_up && !recently {
                answers
                    .key_change_lookups
                    .insert(handle.clone(), Instant::now());
                return Err(Unverified::Lookup(vec![handle.clone()]));
            }
        }
        let claimed = handle_of(new.credential())
            .or_else(|| by.clone())
            .unwrap_or_else(|| Handle::new("unknown").expect("a valid handle literal"));
        Err(Unverified::Impostor(Impostor {
            claimed,
            key: new_key,
            by,
        }))
    }

    /// Fetches the relay's directory for [`Inner::verify_identities`] (the whole list,
    /// whichever `handles` are in question).
    pub(crate) async fn look_up_identities(&self, handles: &[Handle]) -> Result<(), ClientError> {
        tracing::debug!("asking the directory about {} new handle(s)", handles.len());
        let accounts = match self.call(Request::ListAccounts).await? {
            Response::Accounts(list) => list,
            other => return Err(super::unexpected(&other)),
        };
        let mut answers = super::lock(&self.directory);
        answers.rotations = accounts
            .iter()
            .filter(|info| !info.rotations.is_empty())
            .map(|info| (info.handle.clone(), info.rotations.clone()))
            .collect();
        answers.accounts = accounts
            .into_iter()
            .map(|info| (info.handle, info.account.0))
            .collect();
        answers.fetched = Some(Instant::now());
        Ok(())
    }

    /// The key the last copy of the relay's directory gives `handle`.
    pub(crate) fn directory_key(&self, handle: &Handle) -> Option<[u8; 32]> {
        super::lock(&self.directory).accounts.get(handle).copied()
    }

    /// Whether the relay's directory gives `handle` exactly `key` (asked now).
    pub(crate) async fn directory_vouches(
        &self,
        handle: &Handle,
        key: &AccountKey,
    ) -> Result<bool, ClientError> {
        Ok(self.lookup_account(handle).await? == Some(key.0))
    }
}
