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
//! Directory answers need the network, and processing holds the engine lock, which is
//! never held across I/O. So processing that meets a handle with neither a matching pin
//! nor a directory answer undoes itself and returns [`Unverified::Lookup`]; the async
//! caller asks the directory ([`Inner::look_up_identities`]) and processes again.

use std::collections::HashMap;

use hearth_protocol::{AccountKey, Handle};
use openmls::prelude::*;

use super::Inner;
use crate::contacts;
use crate::error::ClientError;
use crate::mls::handle_of;

/// How many directory answers are kept in memory (about 80 bytes each); the map is
/// cleared when full. Pins, not this map, are what lasts.
const MAX_DIRECTORY_ANSWERS: usize = 1024;

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

/// The relay directory's answers fetched in this session: handle -> the key it gives
/// (`None`: no such account).
#[derive(Default)]
pub(crate) struct DirectoryAnswers(HashMap<Handle, Option<[u8; 32]>>);

impl DirectoryAnswers {
    fn insert(&mut self, handle: Handle, key: Option<[u8; 32]>) {
        if self.0.len() >= MAX_DIRECTORY_ANSWERS {
            self.0.clear();
        }
        self.0.insert(handle, key);
    }

    /// Forgets what the directory said about `handle` (before asking again).
    pub(crate) fn forget(&mut self, handle: &Handle) {
        self.0.remove(handle);
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

fn identity(credential: &Credential, key: &[u8]) -> Result<(Handle, [u8; 32]), ClientError> {
    let handle = handle_of(credential)
        .ok_or_else(|| ClientError::Mls("a member's credential is not a valid handle".into()))?;
    let key = <[u8; 32]>::try_from(key)
        .map_err(|_| ClientError::Mls("a member's identity key is malformed".into()))?;
    Ok((handle, key))
}

/// Checks that a commit leaves the committer's identity as it was: the leaf its
/// UpdatePath installs has the same credential and signature key as the committer's
/// current leaf in `group` (the group before the commit).
pub(crate) fn check_identity_kept(
    group: &MlsGroup,
    staged: &StagedCommit,
    committer: LeafNodeIndex,
) -> Result<(), Unverified> {
    let Some(new) = staged.update_path_leaf_node() else {
        return Ok(());
    };
    let Some(old) = group.member_at(committer) else {
        return Ok(()); // not a member: the policy refuses it
    };
    if *new.credential() == old.credential
        && new.signature_key().as_slice() == old.signature_key.as_slice()
    {
        return Ok(());
    }
    let by = handle_of(&old.credential);
    let claimed = handle_of(new.credential())
        .or_else(|| by.clone())
        .unwrap_or_else(|| Handle::new("unknown").expect("a valid handle literal"));
    let mut key = [0u8; 32];
    let new_key = new.signature_key().as_slice();
    let n = new_key.len().min(32);
    key[..n].copy_from_slice(&new_key[..n]);
    Err(Unverified::Impostor(Impostor {
        claimed,
        key: AccountKey(key),
        by,
    }))
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
                if *key != self.profile.account().0 {
                    return Err(impostor());
                }
                continue;
            }
            // An unreadable contact counts as no pin: the directory decides.
            let pinned = contacts::load(store, handle).ok().flatten();
            if pinned.is_some_and(|record| record.key == *key) {
                continue;
            }
            match answers.0.get(handle) {
                None => lookups.push(handle.clone()),
                Some(Some(vouched)) if vouched == key => {}
                Some(_) => return Err(impostor()),
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

    /// Asks the relay's directory who holds each handle and keeps the answers for
    /// [`Inner::verify_identities`].
    pub(crate) async fn look_up_identities(&self, handles: &[Handle]) -> Result<(), ClientError> {
        for handle in handles {
            let key = self.lookup_account(handle).await?;
            super::lock(&self.directory).insert(handle.clone(), key);
        }
        Ok(())
    }

    /// Whether the relay's directory gives `handle` exactly `key` (asked now).
    pub(crate) async fn directory_vouches(
        &self,
        handle: &Handle,
        key: &AccountKey,
    ) -> Result<bool, ClientError> {
        super::lock(&self.directory).forget(handle);
        self.look_up_identities(std::slice::from_ref(handle))
            .await?;
        Ok(super::lock(&self.directory).0.get(handle) == Some(&Some(key.0)))
    }
}
