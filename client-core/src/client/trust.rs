//! Contacts on the client: pinning keys where they are observed, blocking sends to a
//! person whose key changed, and the user's decisions (trust, verify). The record
//! logic is in [`crate::contacts`].

use hearth_protocol::{ErrorCode, Handle, Request, Response};

use super::room::Room;
use super::{unexpected, Client, Inner};
use crate::contacts::{self, ContactWrites, Observed, StoredState};
use crate::error::ClientError;
use crate::events::ClientEvent;
use crate::Contact;

impl Client {
    /// Whether `handle`'s changed key (not accepted yet) follows from the pinned one by key
    /// rotations signed by each key given up, as the relay's directory lists them now (see
    /// [`super::rotation`]): a `hearth rotate-key`, not a stranger. Still to be compared
    /// in person, since whoever held the old key could have signed it.
    pub async fn key_change_is_signed_rotation(
        &self,
        handle: &Handle,
    ) -> Result<bool, ClientError> {
        let Some(record) = contacts::load(self.inner.profile.store(), handle)? else {
            return Ok(false);
        };
        let StoredState::Changed { new } = record.state else {
            return Ok(false);
        };
        let info = match self
            .inner
            .call(Request::LookupAccount {
                handle: handle.clone(),
            })
            .await?
        {
            Response::Account(info) => info,
            other => return Err(unexpected(&other)),
        };
        let (from, to) = (
            hearth_protocol::AccountKey(record.key),
            hearth_protocol::AccountKey(new),
        );
        Ok(info.account == to
            && super::rotation::rotation_is_signed(handle, &from, &to, &info.rotations))
    }

    /// Every contact (never the profile's own handle), sorted by handle.
    pub fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        contacts::load_all(self.inner.profile.store())
    }

    /// One contact. A handle never seen before is looked up in the relay's directory and
    /// its key pinned (trust on first use); `None` if the relay has no such account or
    /// the handle is our own.
    pub async fn contact(&self, handle: &Handle) -> Result<Option<Contact>, ClientError> {
        if handle == self.inner.profile.handle() {
            return Ok(None);
        }
        if let Some(record) = contacts::load(self.inner.profile.store(), handle)? {
            return Ok(Some(record.contact(handle.clone())));
        }
        let Some(key) = self.inner.lookup_account(handle).await? else {
            return Ok(None);
        };
        self.inner.observe_keys(&[(handle.clone(), key)])?;
        Ok(contacts::load(self.inner.profile.store(), handle)?.map(|r| r.contact(handle.clone())))
    }

    /// Accepts the key `handle` presents now (after a [`ClientEvent::KeyChanged`]): sending
    /// to them works again. A handle never seen before is looked up and pinned.
    /// Fails with [`ClientError::KeyNotVouched`] when the relay's directory does not give
    /// `handle` the new key (someone else's key can never be pinned to a handle).
    pub async fn trust(&self, handle: &Handle) -> Result<(), ClientError> {
        self.decide(handle, true, |record, now| record.trust(now))
            .await
    }

    /// Records whether the safety number compared in person matched. `true` also accepts
    /// a changed key (the number was computed with it); `false` withdraws an earlier
    /// verification and leaves a changed key blocked.
    pub async fn mark_verified(&self, handle: &Handle, verified: bool) -> Result<(), ClientError> {
        self.decide(handle, verified, |record, now| {
            record.mark_verified(verified, now)
        })
        .await
    }

    /// Applies a user's decision; `accepts` says whether it accepts a changed key, which
    /// the relay's directory must then vouch for.
    async fn decide(
        &self,
        handle: &Handle,
        accepts: bool,
        change: impl FnOnce(&mut contacts::ContactRecord, u64),
    ) -> Result<(), ClientError> {
        if handle == self.inner.profile.handle() {
            return Err(ClientError::Other(
                "that is you: your own key needs no trust decision".into(),
            ));
        }
        let Some(contact) = self.contact(handle).await? else {
            return Err(ClientError::NoSuchUser(handle.clone()));
        };
        if let crate::TrustState::Changed { new, .. } = contact.state {
            if accepts && !self.inner.directory_vouches(handle, &new).await? {
                return Err(ClientError::KeyNotVouched {
                    handle: handle.clone(),
                });
            }
        }
        let store = self.inner.profile.store();
        // Under the engine lock, like every other write of contacts, so a key observed
        // while we decide is not lost.
        let mut engine = self.inner.engine();
        let mut record = contacts::load(store, handle)?
            .ok_or_else(|| ClientError::NoSuchUser(handle.clone()))?;
        if record.trust_state() != contact.state {
            return Err(ClientError::Other(format!(
                "{handle}'s key changed again while deciding: look at it again"
            )));
        }
        change(&mut record, contacts::now_secs());
        let writes = ContactWrites(vec![(handle.clone(), record)]);
        engine.persist(store, |batch| writes.save(batch))
    }
}

impl Inner {
    /// The identity key we hold for `handle`: the pinned contact's current key, else the
    /// relay directory's (pinned now, trust on first use). `None`: no such account.
    pub(crate) async fn identity_of(
        &self,
        handle: &Handle,
    ) -> Result<Option<hearth_protocol::AccountKey>, ClientError> {
        if let Some(record) = contacts::load(self.profile.store(), handle)? {
            return Ok(Some(hearth_protocol::AccountKey(record.current())));
        }
        let Some(key) = self.lookup_account(handle).await? else {
            return Ok(None);
        };
        self.observe_keys(&[(handle.clone(), key)])?;
        Ok(Some(hearth_protocol::AccountKey(key)))
    }

    /// The key the relay's directory gives for `handle` (`None`: no such account).
    pub(crate) async fn lookup_account(
        &self,
        handle: &Handle,
    ) -> Result<Option<[u8; 32]>, ClientError> {
        match self
            .call(Request::LookupAccount {
                handle: handle.clone(),
            })
            .await
        {
            Ok(Response::Account(info)) if &info.handle == handle => Ok(Some(info.account.0)),
            Ok(Response::Account(_)) => Err(ClientError::Other(format!(
                "the relay answered a lookup of {handle} with another account"
            ))),
            Ok(other) => Err(unexpected(&other)),
            Err(e) if e.code() == Some(ErrorCode::UnknownAccount) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Trust on first use: the contact records to write for keys seen together in one
    /// operation, to [`ContactWrites::save`] in that operation's batch. Adds a
    /// [`ClientEvent::KeyChanged`] for each known handle presenting a new key (once per
    /// change). Our own handle is skipped. Call it under the engine lock.
    pub(crate) fn check_contacts(
        &self,
        seen: &[(Handle, [u8; 32])],
        events: &mut Vec<ClientEvent>,
    ) -> ContactWrites {
        self.contact_writes(seen, events).unwrap_or_else(|e| {
            tracing::warn!("contacts unreadable: {e}");
            ContactWrites::default()
        })
    }

    fn contact_writes(
        &self,
        seen: &[(Handle, [u8; 32])],
        events: &mut Vec<ClientEvent>,
    ) -> Result<ContactWrites, ClientError> {
        let store = self.profile.store();
        let now = contacts::now_secs();
        let mut writes = ContactWrites::default();
        for (handle, key) in seen {
            if handle == self.profile.handle() {
                continue;
            }
            if writes.observe(store, handle, *key, now)? == Observed::Changed {
                tracing::warn!("the identity key of {handle} changed");
                events.push(ClientEvent::KeyChanged {
                    handle: handle.clone(),
                });
            }
        }
        Ok(writes)
    }

    /// Observes keys outside any MLS operation (directory lookups), persisting at once.
    pub(crate) fn observe_keys(&self, seen: &[(Handle, [u8; 32])]) -> Result<(), ClientError> {
        let mut events = Vec::new();
        {
            let mut engine = self.engine();
            let writes = self.contact_writes(seen, &mut events)?;
            if !writes.is_empty() {
                engine.persist(self.profile.store(), |batch| writes.save(batch))?;
            }
        }
        for event in events {
            self.emit(event);
        }
        Ok(())
    }

    /// The key package the relay gave for an invitee: pins or checks its key, and
    /// refuses the invitation while that person's key change is undecided.
    pub(crate) fn check_invitee(&self, handle: &Handle, key: [u8; 32]) -> Result<(), ClientError> {
        self.observe_keys(&[(handle.clone(), key)])?;
        self.refuse_changed(handle)
    }

    /// Refuses to send to a room while a member's key change is undecided, or while the
    /// room holds a key for someone that is not the key accepted for them (judged by key,
    /// not by handle).
    pub(crate) fn check_sendable(&self, room: &Room) -> Result<(), ClientError> {
        for member in self.members_judged(room) {
            match member.trust {
                Some(crate::TrustState::Changed { old, .. }) => {
                    let pending = contacts::load(self.profile.store(), &member.handle)?
                        .is_some_and(|r| matches!(r.state, StoredState::Changed { .. }));
                    return Err(if pending || old == member.account {
                        ClientError::KeyChanged {
                            handle: member.handle,
                        }
                    } else {
                        ClientError::UnacceptedKey {
                            room: room.id.into(),
                            handle: member.handle,
                        }
                    });
                }
                _ => continue,
            }
        }
        Ok(())
    }

    /// The members of a room, each with how far its key is trusted, judged by the key the
    /// room holds (see [`crate::events::Member::trust`]).
    pub(crate) fn members_judged(&self, room: &Room) -> Vec<crate::events::Member> {
        let store = self.profile.store();
        let mut members = room.members();
        for member in &mut members {
            if &member.handle == self.profile.handle() {
                continue;
            }
            let Ok(Some(record)) = contacts::load(store, &member.handle) else {
                continue;
            };
            // A room a signed rotation has not reached yet still holds the old key.
            let rotated_away = || {
                contacts::rotated_away(store, &member.handle)
                    .is_ok_and(|keys| keys.contains(&member.account.0))
            };
            member.trust = Some(if record.key == member.account.0 {
                record.trust_state()
            } else if rotated_away() {
                crate::TrustState::Trusted
            } else {
                crate::TrustState::Changed {
                    old: hearth_protocol::AccountKey(record.key),
                    new: member.account,
                }
            });
        }
        members
    }

    fn refuse_changed(&self, handle: &Handle) -> Result<(), ClientError> {
        match contacts::load(self.profile.store(), handle)? {
            Some(record) if matches!(record.state, StoredState::Changed { .. }) => {
                Err(ClientError::KeyChanged {
                    handle: handle.clone(),
                })
            }
            _ => Ok(()),
        }
    }
}
