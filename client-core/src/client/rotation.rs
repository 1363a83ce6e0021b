//! Key rotation (`hearth rotate-key`): this device moves to a new identity key, after a
//! suspected theft or simply on a schedule the user keeps.
//!
//! The steps, each resumable after a crash at any point between them:
//!
//! 1. A new key is generated and stored as pending in the profile
//!    ([`Profile::begin_rotation`](crate::profile::Profile)), before anything else sees it.
//! 2. The relay is asked to re-bind the account ([`Request::RotateKey`]) with a
//!    [`KeyRotation`] signed by the old key, plus the new key's signature over the same
//!    statement. From then on the relay refuses the old key. If the answer is lost, the
//!    next connection finds out: the old key is refused and the pending one is accepted.
//! 3. The pending key becomes the identity; the old one is kept as *previous* while some
//!    room's own leaf still holds it (those rooms keep signing with it).
//! 4. Fresh KeyPackages are published (the relay dropped the old key's).
//! 5. Each room gets a commit whose UpdatePath installs a leaf with the new key, signed
//!    with the old one (RFC 9420 section 12.4.2: receivers verify a commit against the
//!    committer's leaf before it). Rooms that could not be reached now move at the next
//!    connection; once none holds the old key, it is forgotten.
//!
//! Members seeing a commit change someone's key accept it only when the relay's directory
//! lists a chain of signed rotations from the key the room held to the new one
//! ([`rotation_is_signed`]); then their pin follows the rotation (a verified contact
//! becomes trusted, to be compared again) and they are told ([`ClientEvent::KeyRotated`]).
//! Anything else stays an impostor (see [`super::authentication`]).

use hearth_protocol::{rotation_message, AccountKey, Handle, KeyRotation, Request, Response};
use openmls::prelude::*;

use super::ops::Built;
use super::room::{account_of, Status};
use super::{store_err, unexpected, Client, Inner, KEY_PACKAGE_STOCK};
use crate::error::{mls, ClientError};
use crate::events::ClientEvent;
use crate::identity::verify as verify_signature;
use crate::mls::{RoomSettings, ROOM_SETTINGS_EXTENSION};

/// What [`Client::rotate_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The key given up.
    pub old: AccountKey,
    /// The key now in use.
    pub new: AccountKey,
    /// Rooms that hold the new key now.
    pub rooms_moved: usize,
    /// Rooms still holding the old key (tried again at the next connection).
    pub rooms_left: usize,
}

/// Whether `chain` (the directory's rotations of `handle`, oldest first) leads from the
/// key `from` to the key `to` through statements each signed by the key it gives up.
pub fn rotation_is_signed(
    handle: &Handle,
    from: &AccountKey,
    to: &AccountKey,
    chain: &[KeyRotation],
) -> bool {
    let mut at = *from;
    for link in chain.iter().skip_while(|link| link.from != *from) {
        if link.from != at {
            return false;
        }
        let message = rotation_message(handle, &link.from, &link.to);
        if !verify_signature(&link.from, &message, &link.signature) {
            return false;
        }
        at = link.to;
        if at == *to {
            return true;
        }
    }
    false
}

/// Stages a commit that moves our own leaf to the current identity key, signed with the
/// key the leaf holds now (`engine.previous`).
pub(crate) fn build_key_rotation(
    group: &mut MlsGroup,
    engine: &crate::mls::Engine,
) -> Result<Built, ClientError> {
    let old = engine.signer_for(group);
    let from = account_of(old.public()).ok_or_else(|| ClientError::Mls("malformed key".into()))?;
    // The room settings name members by key: ours moves with us, in the same commit.
    let settings = RoomSettings::read(group.extensions())
        .map_err(|e| ClientError::Mls(e.to_string()))?
        .with_key_replaced(&from, &engine.account());
    let mut extensions: Vec<Extension> = group
        .extensions()
        .iter()
        .filter(|e| e.extension_type() != ExtensionType::Unknown(ROOM_SETTINGS_EXTENSION))
        .cloned()
        .collect();
    extensions.push(Extension::Unknown(
        ROOM_SETTINGS_EXTENSION,
        UnknownExtension(settings.encode()),
    ));
    // Pending proposals (someone leaving) are left for the commit that handles them: the
    // settings here only swap our key.
    let bundle = group
        .commit_builder()
        .consume_proposal_store(false)
        .propose_group_context_extensions(Extensions::from_vec(extensions).map_err(mls)?)
        .map_err(mls)?
        .load_psks(engine.provider.storage())
        .map_err(mls)?
        .build_with_new_signer(
            engine.provider.rand(),
            engine.provider.crypto(),
            old,
            NewSignerBundle {
                signer: &engine.signer,
                credential_with_key: engine.credential.clone(),
            },
            |_| true,
        )
        .map_err(mls)?
        .stage_commit(&engine.provider)
        .map_err(mls)?;
    let (commit, welcome, _) = bundle.into_messages();
    Ok(Some((commit, welcome)))
}

impl Client {
    /// Moves this device to a new identity key (see the module documentation): the relay
    /// re-binds the account, then every room gets a commit installing the new key. Fails
    /// without changing anything when the relay refuses; an answer lost on the way is
    /// sorted out at the next connection.
    pub async fn rotate_key(&self) -> Result<RotationReport, ClientError> {
        let inner = &self.inner;
        let profile = &inner.profile;
        if profile.previous_identity().map_err(store_err)?.is_some() {
            let (_, left) = inner.move_rooms_to_new_key().await;
            if left > 0 {
                return Err(ClientError::Other(format!(
                    "the last key rotation has not reached {left} room(s) yet; connect again once the relay is reachable, or leave those rooms, then rotate again"
                )));
            }
        }
        let old = profile.identity();
        let next = profile.begin_rotation().map_err(store_err)?;
        let (from, to) = (old.account(), next.account());
        let message = rotation_message(profile.handle(), &from, &to);
        let request = Request::RotateKey {
            rotation: KeyRotation {
                from,
                to,
                signature: old.sign(&message),
            },
            proof: next.sign(&message),
        };
        match inner.call(request).await? {
            Response::Authenticated { .. } => {}
            other => return Err(unexpected(&other)),
        }
        inner.adopt_rotated_key()?;
        inner.publish_key_packages(KEY_PACKAGE_STOCK, true).await?;
        let (rooms_moved, rooms_left) = inner.move_rooms_to_new_key().await;
        Ok(RotationReport {
            old: from,
            new: to,
            rooms_moved,
            rooms_left,
        })
    }
}

impl Inner {
    /// The relay accepted the rotation: the pending key becomes ours, in the profile and
    /// the engine (which keeps the old signer for rooms not moved yet).
    pub(crate) fn adopt_rotated_key(&self) -> Result<(), ClientError> {
        // (A no-op when signing in finished it already.)
        self.profile.finish_rotation().map_err(store_err)?;
        let previous = self
            .profile
            .previous_identity()
            .map_err(store_err)?
            .map(|identity| identity.mls_signer());
        self.engine()
            .rotate(self.profile.identity().mls_signer(), previous);
        Ok(())
    }

    /// Commits the new key into every room whose own leaf still holds the previous one;
    /// forgets the previous key once none does. Returns (rooms moved, rooms left).
    pub(crate) async fn move_rooms_to_new_key(&self) -> (usize, usize) {
        if self.engine().previous.is_none() {
            return (0, 0);
        }
        let (mut moved, mut left) = (0, 0);
        for room in self.room_handles() {
            let mut room = room.lock().await;
            if room.removed || !self.engine().holds_previous_key(&room.group) {
                continue;
            }
            if room.rec.status != Status::Joined {
                // An invitation not accepted yet: accepting it commits a fresh leaf,
                // which takes the new key (see `ops::build_self_update`).
                left += 1;
                continue;
            }
            match self.self_update(&mut room).await {
                Ok(()) => moved += 1,
                Err(e) => {
                    tracing::warn!("room {}: moving to the new key failed: {e}", room.id);
                    left += 1;
                }
            }
        }
        if left == 0 {
            match self.profile.forget_previous_identity() {
                Ok(()) => self.engine().previous = None,
                Err(e) => tracing::warn!("forgetting the previous key failed: {e}"),
            }
        }
        (moved, left)
    }

    /// A member's commit changed their key from `from` to `to` and the directory's chain
    /// signs it off. The pin follows only a rotation of the key we accept, to the key the
    /// directory gives the handle now, of a contact not verified in person: then the old
    /// key is remembered as rotated away (rooms the rotation has not reached yet still
    /// show it). A verified contact's new key waits for the user (`verify` or `trust`):
    /// whoever holds the old key could have signed the rotation. Anything else (a chain
    /// from a key we never accepted, to a key the directory no longer gives) is an
    /// ordinary key change, also left to the user. The user is told either way.
    pub(crate) fn follow_rotation(
        &self,
        handle: &Handle,
        from: &AccountKey,
        to: &AccountKey,
        batch: &mut crate::store::WriteBatch<'_>,
    ) -> Result<Option<ClientEvent>, ClientError> {
        use crate::contacts::{ContactRecord, ContactWrites, Observed, StoredState};
        let store = self.profile.store();
        let Some(mut record) = crate::contacts::load(store, handle)? else {
            // Never seen: nothing to follow; pinned as any first sight.
            let first = ContactRecord::first_sight(to.0, crate::contacts::now_secs());
            ContactWrites(vec![(handle.clone(), first)]).save(batch)?;
            return Ok(None);
        };
        if record.key == to.0 {
            return Ok(None); // followed already (another room went first)
        }
        let accepted =
            record.key == from.0 || crate::contacts::rotated_away(store, handle)?.contains(&from.0);
        let plain = accepted
            && self.directory_key(handle) == Some(to.0)
            && matches!(record.state, StoredState::Trusted);
        if plain {
            crate::contacts::put_rotation(batch, store, handle, from, to)?;
            return Ok(Some(ClientEvent::KeyRotated {
                handle: handle.clone(),
                from: *from,
                to: *to,
                was_verified: false,
            }));
        }
        let was_verified = accepted && record.state == StoredState::Verified;
        if record.observe(to.0) == Observed::Same {
            return Ok(None); // this change was reported already
        }
        ContactWrites(vec![(handle.clone(), record)]).save(batch)?;
        Ok(Some(if was_verified {
            ClientEvent::KeyRotated {
                handle: handle.clone(),
                from: *from,
                to: *to,
                was_verified,
            }
        } else {
            ClientEvent::KeyChanged {
                handle: handle.clone(),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn link(handle: &Handle, from: &Identity, to: &Identity) -> KeyRotation {
        let message = rotation_message(handle, &from.account(), &to.account());
        KeyRotation {
            from: from.account(),
            to: to.account(),
            signature: from.sign(&message),
        }
    }

    #[test]
    fn a_chain_of_signed_rotations_leads_from_old_to_new() {
        let alice = Handle::new("alice").unwrap();
        let [a, b, c] = [
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        ];
        let chain = vec![link(&alice, &a, &b), link(&alice, &b, &c)];
        assert!(rotation_is_signed(
            &alice,
            &a.account(),
            &b.account(),
            &chain
        ));
        assert!(rotation_is_signed(
            &alice,
            &a.account(),
            &c.account(),
            &chain
        ));
        assert!(rotation_is_signed(
            &alice,
            &b.account(),
            &c.account(),
            &chain
        ));
        // Not backwards, not for another handle, not to a key outside the chain.
        assert!(!rotation_is_signed(
            &alice,
            &c.account(),
            &a.account(),
            &chain
        ));
        let bob = Handle::new("bob").unwrap();
        assert!(!rotation_is_signed(
            &bob,
            &a.account(),
            &b.account(),
            &chain
        ));
        let stranger = Identity::generate();
        assert!(!rotation_is_signed(
            &alice,
            &a.account(),
            &stranger.account(),
            &chain
        ));
    }

    #[test]
    fn a_link_not_signed_by_the_key_it_gives_up_breaks_the_chain() {
        let alice = Handle::new("alice").unwrap();
        let [a, b, thief] = [
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        ];
        // The thief signs "a -> thief" with its own key: not a's signature.
        let mut forged = link(&alice, &thief, &thief);
        forged.from = a.account();
        assert!(!rotation_is_signed(
            &alice,
            &a.account(),
            &thief.account(),
            &[forged]
        ));
        // A gap in the chain (a -> b missing) does not connect a to thief.
        let chain = vec![link(&alice, &b, &thief)];
        assert!(!rotation_is_signed(
            &alice,
            &a.account(),
            &thief.account(),
            &chain
        ));
    }
}
