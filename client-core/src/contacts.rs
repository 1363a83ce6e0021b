//! Contacts: the identity key remembered for each handle, and whether it was verified.
//!
//! Keys are pinned on first sight (trust on first use): the first key a handle presents,
//! in a room, in an invitation's key package or in the relay's directory, is remembered.
//! From then on, a different key for that handle is a [`TrustState::Changed`]: the user
//! is warned once ([`ClientEvent::KeyChanged`](crate::ClientEvent::KeyChanged)), and
//! sending to a room that person is in, or inviting them, fails with
//! [`ClientError::KeyChanged`](crate::ClientError::KeyChanged) until the user accepts
//! the new key ([`Client::trust`](crate::Client::trust)) or compares safety numbers and
//! marks it verified ([`Client::mark_verified`](crate::Client::mark_verified)).
//!
//! Records live in [`Table::Contacts`], key = the handle, value = postcard of
//! [`ContactRecord`]. They are written in the same batch as the MLS operation that
//! observed the key. (The first hearth versions stored the bare 32-byte key; such values
//! read as a trusted, unverified contact.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_protocol::{AccountKey, Handle};
use serde::{Deserialize, Serialize};

use crate::error::{store as store_err, ClientError};
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::store::{EncryptedStore, Table, WriteBatch};

/// How far a contact's key is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustState {
    /// Pinned on first sight; nobody compared safety numbers yet.
    Trusted,
    /// The user compared safety numbers with this person and they matched.
    Verified,
    /// The handle now presents a different key than the pinned one. Sending to them
    /// waits until the user accepts the new key or verifies it.
    Changed {
        /// The key pinned before.
        old: AccountKey,
        /// The key presented now.
        new: AccountKey,
    },
}

/// A person this profile has seen, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Their handle.
    pub handle: Handle,
    /// The key they present now (after a change: the new one, not yet accepted).
    pub account: AccountKey,
    /// The fingerprint of `account`.
    pub fingerprint: Fingerprint,
    /// Trusted on first use, verified, or changed.
    pub state: TrustState,
    /// When the pinned key was first seen (or last accepted).
    pub first_seen: SystemTime,
}

impl Contact {
    /// Whether safety numbers were compared for the current key.
    pub fn is_verified(&self) -> bool {
        self.state == TrustState::Verified
    }

    /// Whether the key changed and the user has not decided yet.
    pub fn is_changed(&self) -> bool {
        matches!(self.state, TrustState::Changed { .. })
    }
}

/// The stored form of a contact's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredState {
    /// Pinned on first sight.
    Trusted,
    /// Safety numbers compared and matched.
    Verified,
    /// A different key was seen; the pinned one stays until the user decides.
    Changed {
        /// The key presented now.
        new: [u8; 32],
    },
}

/// One contact as stored in [`Table::Contacts`] (key = the handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecord {
    /// Format version (1).
    pub version: u8,
    /// The pinned (accepted) key.
    pub key: [u8; 32],
    /// When `key` was first seen or accepted, seconds since the Unix epoch.
    pub first_seen: u64,
    /// Trusted, verified or changed.
    pub state: StoredState,
}

/// What observing a key did to a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Nothing new: the key is the pinned one, or the change was already reported.
    Same,
    /// A handle seen for the first time; its key is now pinned.
    Pinned,
    /// A known handle presents a new key: warn the user (once).
    Changed,
}

impl ContactRecord {
    /// A contact pinned now on first sight.
    pub fn first_sight(key: [u8; 32], now: u64) -> Self {
        ContactRecord {
            version: 1,
            key,
            first_seen: now,
            state: StoredState::Trusted,
        }
    }

    /// Decodes a stored value (the bare 32-byte key of the first versions included).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if let Ok(key) = <[u8; 32]>::try_from(bytes) {
            return Some(ContactRecord::first_sight(key, 0));
        }
        postcard::from_bytes(bytes).ok()
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of fixed-size fields always encodes.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// The key the handle presents now: the new one after a change, else the pinned one.
    pub fn current(&self) -> [u8; 32] {
        match self.state {
            StoredState::Changed { new } => new,
            _ => self.key,
        }
    }

    /// A key seen for this handle (in a room, a key package, the directory).
    pub fn observe(&mut self, key: [u8; 32]) -> Observed {
        if key == self.key {
            // The pinned key shows up again: a change seen earlier may have been an
            // impostor, but the user still has to decide; keep it as it is.
            return Observed::Same;
        }
        if self.state == (StoredState::Changed { new: key }) {
            return Observed::Same;
        }
        self.state = StoredState::Changed { new: key };
        Observed::Changed
    }

    /// The user accepts the key presented now (`hearth trust`).
    pub fn trust(&mut self, now: u64) {
        if let StoredState::Changed { new } = self.state {
            self.key = new;
            self.first_seen = now;
            self.state = StoredState::Trusted;
        }
    }

    /// The user compared safety numbers (computed with [`ContactRecord::current`]):
    /// `true` accepts and verifies the current key; `false` withdraws a verification,
    /// and leaves a changed key blocked.
    pub fn mark_verified(&mut self, verified: bool, now: u64) {
        match (self.state, verified) {
            (StoredState::Changed { new }, true) => {
                self.key = new;
                self.first_seen = now;
                self.state = StoredState::Verified;
            }
            (StoredState::Changed { .. }, false) => {}
            (_, true) => self.state = StoredState::Verified,
            (_, false) => self.state = StoredState::Trusted,
        }
    }

    /// How far the key is trusted. Cheap, unlike [`ContactRecord::contact`], which also
    /// computes the fingerprint (5,200 SHA-512 rounds): what every send checks.
    pub fn trust_state(&self) -> TrustState {
        match self.state {
            StoredState::Trusted => TrustState::Trusted,
            StoredState::Verified => TrustState::Verified,
            StoredState::Changed { new } => TrustState::Changed {
                old: AccountKey(self.key),
                new: AccountKey(new),
            },
        }
    }

    /// The API view of this record.
    pub fn contact(&self, handle: Handle) -> Contact {
        let account = AccountKey(self.current());
        Contact {
            fingerprint: fingerprint(&account),
            handle,
            account,
            state: self.trust_state(),
            first_seen: UNIX_EPOCH + Duration::from_secs(self.first_seen),
        }
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads one contact record.
pub fn load(store: &EncryptedStore, handle: &Handle) -> Result<Option<ContactRecord>, ClientError> {
    let Some(bytes) = store
        .get(Table::Contacts, handle.as_str().as_bytes())
        .map_err(store_err)?
    else {
        return Ok(None);
    };
    ContactRecord::decode(&bytes)
        .map(Some)
        .ok_or_else(|| ClientError::Store(format!("unreadable contact record for {handle}")))
}

/// Where the keys a contact rotated away from are kept: [`Table::Settings`], this prefix
/// followed by the handle; the value is the keys, 32 bytes each, oldest first.
const ROTATED_AWAY: &str = "rotated-away/";

/// The keys `handle` rotated away from (signed rotations this profile followed): rooms
/// the rotation has not reached yet still hold one of them, and it is judged as the
/// pinned key there. Never accepted for anyone entering a room.
pub fn rotated_away(store: &EncryptedStore, handle: &Handle) -> Result<Vec<[u8; 32]>, ClientError> {
    let key = format!("{ROTATED_AWAY}{handle}");
    let bytes = store
        .get(Table::Settings, key.as_bytes())
        .map_err(store_err)?
        .map(|b| b.to_vec())
        .unwrap_or_default();
    Ok(bytes
        .chunks_exact(32)
        .filter_map(|k| <[u8; 32]>::try_from(k).ok())
        .collect())
}

/// Follows a signed rotation of `handle` from `from` to `to` (see
/// [`crate::client::rotation`]): `to` is pinned as trusted (a verification was of the
/// old key, so it is to be done again), `from` joins the keys rotated away from (the last
/// [`hearth_protocol::limits::MAX_ROTATIONS_KEPT`]).
pub fn put_rotation(
    batch: &mut WriteBatch<'_>,
    store: &EncryptedStore,
    handle: &Handle,
    from: &AccountKey,
    to: &AccountKey,
) -> Result<(), ClientError> {
    let record = ContactRecord::first_sight(to.0, now_secs());
    ContactWrites(vec![(handle.clone(), record)]).save(batch)?;
    let mut away = rotated_away(store, handle)?;
    if !away.contains(&from.0) {
        away.push(from.0);
    }
    let keep = hearth_protocol::limits::MAX_ROTATIONS_KEPT;
    if away.len() > keep {
        away.drain(..away.len() - keep);
    }
    let key = format!("{ROTATED_AWAY}{handle}");
    batch
        .put(Table::Settings, key.as_bytes(), &away.concat())
        .map_err(store_err)
}

/// Every contact, sorted by handle (unreadable records are skipped with a warning).
pub fn load_all(store: &EncryptedStore) -> Result<Vec<Contact>, ClientError> {
    let rows = store.scan(Table::Contacts, b"").map_err(store_err)?;
    let mut out = Vec::new();
    for (key, value) in rows {
        let handle = std::str::from_utf8(&key)
            .ok()
            .and_then(|text| Handle::new(text).ok());
        match (handle, ContactRecord::decode(&value)) {
            (Some(handle), Some(record)) => out.push(record.contact(handle)),
            _ => tracing::warn!("skipping an unreadable contact record"),
        }
    }
    out.sort_by(|a, b| a.handle.as_str().cmp(b.handle.as_str()));
    Ok(out)
}

/// Contact records to write in the batch of the operation that observed them.
#[derive(Debug, Default)]
pub struct ContactWrites(pub(crate) Vec<(Handle, ContactRecord)>);

impl ContactWrites {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds every record to `batch`.
    pub fn save(&self, batch: &mut WriteBatch<'_>) -> Result<(), ClientError> {
        for (handle, record) in &self.0 {
            batch
                .put(
                    Table::Contacts,
                    handle.as_str().as_bytes(),
                    &record.encode(),
                )
                .map_err(store_err)?;
        }
        Ok(())
    }

    /// The record this set would write for `handle`, if any.
    pub fn get(&self, handle: &Handle) -> Option<&ContactRecord> {
        self.0
            .iter()
            .rev()
            .find(|(h, _)| h == handle)
            .map(|(_, r)| r)
    }

    /// Observes `key` for `handle` (stored state as in `store`, plus earlier
    /// observations of this set); records what changed and reports it.
    pub fn observe(
        &mut self,
        store: &EncryptedStore,
        handle: &Handle,
        key: [u8; 32],
        now: u64,
    ) -> Result<Observed, ClientError> {
        let known = match self.get(handle) {
            Some(record) => Some(*record),
            None => load(store, handle)?,
        };
        let (record, observed) = match known {
            None => (ContactRecord::first_sight(key, now), Observed::Pinned),
            Some(mut record) => {
                let observed = record.observe(key);
                (record, observed)
            }
        };
        if observed != Observed::Same {
            self.0.push((handle.clone(), record));
        }
        Ok(observed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: [u8; 32] = [1; 32];
    const K2: [u8; 32] = [2; 32];
    const K3: [u8; 32] = [3; 32];

    #[test]
    fn first_sight_then_same_key_is_quiet() {
        let mut r = ContactRecord::first_sight(K1, 10);
        assert_eq!(r.state, StoredState::Trusted);
        assert_eq!(r.observe(K1), Observed::Same);
        assert_eq!(r.state, StoredState::Trusted);
        assert_eq!(r.current(), K1);
    }

    #[test]
    fn a_new_key_is_reported_once_and_keeps_the_pinned_one() {
        let mut r = ContactRecord::first_sight(K1, 10);
        assert_eq!(r.observe(K2), Observed::Changed);
        assert_eq!(r.state, StoredState::Changed { new: K2 });
        assert_eq!(r.key, K1, "the pinned key stays until the user decides");
        assert_eq!(r.current(), K2);
        assert_eq!(r.observe(K2), Observed::Same, "warned once");
        assert_eq!(r.observe(K1), Observed::Same);
        assert_eq!(r.state, StoredState::Changed { new: K2 }, "still blocked");
        assert_eq!(
            r.observe(K3),
            Observed::Changed,
            "yet another key warns again"
        );
        assert_eq!(r.state, StoredState::Changed { new: K3 });
    }

    #[test]
    fn trust_accepts_the_new_key() {
        let mut r = ContactRecord::first_sight(K1, 10);
        r.mark_verified(true, 11);
        assert_eq!(r.state, StoredState::Verified);
        r.observe(K2);
        r.trust(20);
        assert_eq!(r.key, K2);
        assert_eq!(r.first_seen, 20);
        assert_eq!(r.state, StoredState::Trusted, "a new key is not verified");
        assert_eq!(r.observe(K2), Observed::Same);
        assert_eq!(
            r.observe(K1),
            Observed::Changed,
            "the old key is now a change"
        );
    }

    #[test]
    fn trust_without_a_change_keeps_verification() {
        let mut r = ContactRecord::first_sight(K1, 10);
        r.mark_verified(true, 11);
        r.trust(12);
        assert_eq!(r.state, StoredState::Verified);
        assert_eq!(r.first_seen, 10);
    }

    #[test]
    fn verification_answers() {
        let mut r = ContactRecord::first_sight(K1, 10);
        r.mark_verified(true, 11);
        assert_eq!(r.state, StoredState::Verified);
        r.mark_verified(false, 12);
        assert_eq!(r.state, StoredState::Trusted);

        r.observe(K2);
        r.mark_verified(false, 13);
        assert_eq!(
            r.state,
            StoredState::Changed { new: K2 },
            "numbers that do not match leave the change blocked"
        );
        r.mark_verified(true, 14);
        assert_eq!((r.key, r.state), (K2, StoredState::Verified));
    }

    #[test]
    fn records_round_trip_and_legacy_values_read() {
        let mut r = ContactRecord::first_sight(K1, 1_700_000_000);
        r.observe(K2);
        assert_eq!(ContactRecord::decode(&r.encode()), Some(r));
        assert_eq!(
            ContactRecord::decode(&K3),
            Some(ContactRecord::first_sight(K3, 0))
        );
        assert_eq!(ContactRecord::decode(b"junk"), None);
    }

    #[test]
    fn api_view() {
        let mut r = ContactRecord::first_sight(K1, 5);
        let c = r.contact(Handle::new("bob").unwrap());
        assert_eq!(c.state, TrustState::Trusted);
        assert_eq!(c.account, AccountKey(K1));
        assert_eq!(c.fingerprint, fingerprint(&AccountKey(K1)));
        assert!(!c.is_verified() && !c.is_changed());
        r.observe(K2);
        let c = r.contact(Handle::new("bob").unwrap());
        assert_eq!(
            c.state,
            TrustState::Changed {
                old: AccountKey(K1),
                new: AccountKey(K2)
            }
        );
        assert_eq!(c.account, AccountKey(K2));
        assert!(c.is_changed());
    }
}
