//! Key rotation: an account moves to a new identity key, and the old key is retired.

use hearth_protocol::limits::MAX_ROTATIONS_KEPT;

use super::*;
use crate::store::ROTATION_COOLDOWN_SECS;

/// One link of an account's chain as stored: the rotation and when the relay took it.
#[derive(Serialize, Deserialize)]
pub(super) struct RotationRecord {
    pub time: u64,
    pub rotation: KeyRotation,
}

impl Tx<'_> {
    /// Applies [`WriteOp::RotateKey`]: everything keyed by the old key moves to the new
    /// one in this transaction, so a crash leaves either the old binding or the new.
    pub(super) fn rotate_key(
        &mut self,
        rotation: KeyRotation,
        now: u64,
    ) -> Result<OpResult, StoreError> {
        let (old, new) = (rotation.from, rotation.to);
        let Some(mut record) = self.account(&old)? else {
            return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
        };
        let mut chain: Vec<RotationRecord> =
            match self.rotations.read()?.get(record.handle.as_str())? {
                Some(v) => decode(v.value())?,
                None => Vec::new(),
            };
        if chain
            .last()
            .is_some_and(|last| now < last.time.saturating_add(ROTATION_COOLDOWN_SECS))
        {
            return Ok(Err(err(
                ErrorCode::RateLimited,
                "this account's key was rotated less than an hour ago; try again later",
            )));
        }
        if record.banned {
            return Ok(Err(err(ErrorCode::Banned, "this account is banned here")));
        }
        if self.account(&new)?.is_some() || self.retired.read()?.get(new.0.as_slice())?.is_some() {
            return Ok(Err(err(
                ErrorCode::AlreadyRegistered,
                "the new key is already in use (or was given up before)",
            )));
        }
        // KeyPackages name the old key in their leaf: nobody could use them any more.
        let mut freed = 0u64;
        let lo = key2(&old.0, 0);
        let hi = key2(&old.0, u64::MAX);
        let packages: Vec<(Vec<u8>, u64)> = self
            .key_packages
            .read()?
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
            .map(|item| item.map(|(k, v)| (k.value().to_vec(), object_cost(v.value().len()))))
            .collect::<Result<_, _>>()?;
        for (key, len) in packages {
            self.key_packages.write()?.remove(key.as_slice())?;
            freed += len;
        }
        if let Some(v) = self.last_resort.write()?.remove(old.0.as_slice())? {
            freed += object_cost(v.value().len());
        }
        let mut used = old.0.to_vec();
        used.extend_from_slice(b"/used");
        self.last_resort.write()?.remove(used.as_slice())?;
        // The inbox keeps its ids under the new key.
        let entries: Vec<(Vec<u8>, Vec<u8>)> = self
            .inbox
            .read()?
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
            .map(|item| item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (key, value) in entries {
            self.inbox.write()?.remove(key.as_slice())?;
            let id = tail_u64(&key);
            self.inbox
                .write()?
                .insert(key2(&new.0, id).as_slice(), value.as_slice())?;
        }
        self.accounts.write()?.remove(old.0.as_slice())?;
        record.account = new;
        record.used_bytes = record.used_bytes.saturating_sub(freed);
        self.put_account(&record)?;
        self.handles
            .write()?
            .insert(record.handle.as_str(), new.0.as_slice())?;
        self.retired
            .write()?
            .insert(old.0.as_slice(), new.0.as_slice())?;
        // Room admins are per-room pseudonyms and listings name nobody (decision 0013):
        // no room record knows the account's key.
        chain.push(RotationRecord {
            time: now,
            rotation,
        });
        if chain.len() > MAX_ROTATIONS_KEPT {
            chain.drain(..chain.len() - MAX_ROTATIONS_KEPT);
        }
        self.rotations
            .write()?
            .insert(record.handle.as_str(), encode(&chain)?.as_slice())?;
        Ok(Ok(Applied::Account(record)))
    }

    /// The account that holds `key` now: its own, or, for a retired key, the one its
    /// rotations lead to (entries stored under an old key are refunded to the account).
    pub(super) fn account_following_rotations(
        &self,
        key: &AccountKey,
    ) -> Result<Option<AccountRecord>, StoreError> {
        let mut key = *key;
        for _ in 0..=MAX_ROTATIONS_KEPT {
            if let Some(record) = self.account(&key)? {
                return Ok(Some(record));
            }
            match self.retired.read()?.get(key.0.as_slice())? {
                Some(next) => match <[u8; 32]>::try_from(next.value()) {
                    Ok(next) => key = AccountKey(next),
                    Err(_) => return Ok(None),
                },
                None => return Ok(None),
            }
        }
        Ok(None)
    }
}
