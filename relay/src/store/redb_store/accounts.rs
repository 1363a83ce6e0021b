//! Accounts and the key directory: registration with invites, KeyPackage stock.

use super::*;

impl Tx<'_> {
    pub(super) fn register(
        &mut self,
        account: AccountKey,
        handle: Handle,
        invite: Option<[u8; 32]>,
        open: bool,
        now: u64,
    ) -> Result<OpResult, StoreError> {
        let mut invite_record = None;
        match invite {
            None if !open => {
                return Ok(Err(err(
                    ErrorCode::InviteRequired,
                    "this relay needs an invite to register",
                )))
            }
            None => {}
            Some(hash) => {
                let Some(v) = self.invites.read()?.get(hash.as_slice())? else {
                    return Ok(Err(err(
                        ErrorCode::InviteInvalid,
                        "unknown or revoked invite",
                    )));
                };
                let record: InviteRecord = decode(v.value())?;
                if record.expires.is_some_and(|t| t <= now) {
                    return Ok(Err(err(ErrorCode::InviteExpired, "the invite has expired")));
                }
                if record.uses_left == 0 {
                    return Ok(Err(err(ErrorCode::InviteSpent, "the invite is used up")));
                }
                invite_record = Some(record);
            }
        }
        if self.account(&account)?.is_some()
            || self.retired.read()?.get(account.0.as_slice())?.is_some()
        {
            return Ok(Err(err(
                ErrorCode::AlreadyRegistered,
                "this key is already registered",
            )));
        }
        if self.handles.read()?.get(handle.as_str())?.is_some() {
            return Ok(Err(err(ErrorCode::HandleTaken, "the handle is taken")));
        }
        if let Some(mut record) = invite_record {
            record.uses_left -= 1;
            self.invites
                .write()?
                .insert(record.hash.as_slice(), encode(&record)?.as_slice())?;
        }
        let record = AccountRecord {
            account,
            handle: handle.clone(),
            created: now,
            last_seen: now,
            banned: false,
            used_bytes: 0,
            quota_bytes: None,
            next_inbox_id: 0,
            next_key_package_id: 0,
        };
        self.put_account(&record)?;
        self.handles
            .write()?
            .insert(handle.as_str(), account.0.as_slice())?;
        Ok(Ok(Applied::Account(record)))
    }

    pub(super) fn stock(&self, account: &AccountKey) -> Result<(u32, bool), StoreError> {
        stock_of(self.key_packages.read()?, self.last_resort.read()?, account)
    }

    pub(super) fn publish(
        &mut self,
        account: AccountKey,
        packages: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
        quota: u64,
        max_stock: u64,
    ) -> Result<OpResult, StoreError> {
        let lo = key2(&account.0, 0);
        let hi = key2(&account.0, u64::MAX);
        let stored = self
            .key_packages
            .read()?
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
            .count() as u64;
        let adding = packages.len() as u64;
        // Over the limit, expired packages (of no use to anyone) make room, if this
        // publish goes through; their lifetimes are only checked then, as that costs a
        // signature check each.
        let mut expired = Vec::new();
        if stored.saturating_add(adding) > max_stock {
            for item in self
                .key_packages
                .read()?
                .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
            {
                let (k, v) = item?;
                if crate::key_packages::is_expired(v.value()) {
                    expired.push((k.value().to_vec(), object_cost(v.value().len())));
                }
            }
            let live = stored - expired.len() as u64;
            if live.saturating_add(adding) > max_stock {
                return Ok(Err(WireError::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "this account has {live} key packages on the relay and may keep at most \
                         {max_stock} (max_key_packages_per_account): publish fewer; they are \
                         used up one per invitation"
                    ),
                )));
            }
        }
        let refund: u64 = expired.iter().map(|(_, cost)| cost).sum();
        let mut bytes: u64 = packages.iter().map(|p| object_cost(p.len())).sum();
        let old_last = match self.last_resort.read()?.get(account.0.as_slice())? {
            Some(v) => object_cost(v.value().len()),
            None => 0,
        };
        if let Some(l) = &last_resort {
            bytes += object_cost(l.len());
        }
        // The expired packages' refund counts before the charge, so the space they free
        // can be used by this publish.
        if let Err(e) = self.charge(&account, bytes.saturating_sub(refund), quota)? {
            return Ok(Err(e));
        }
        let Some(mut record) = self.account(&account)? else {
            return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
        };
        if refund > bytes {
            record.used_bytes = record.used_bytes.saturating_sub(refund - bytes);
        }
        for (k, _) in &expired {
            self.key_packages.write()?.remove(k.as_slice())?;
        }
        for package in packages {
            record.next_key_package_id += 1;
            self.key_packages.write()?.insert(
                key2(&account.0, record.next_key_package_id).as_slice(),
                package.as_slice(),
            )?;
        }
        if let Some(l) = last_resort {
            self.last_resort
                .write()?
                .insert(account.0.as_slice(), l.as_slice())?;
            self.last_resort
                .write()?
                .remove(used_key(&account).as_slice())?;
            record.used_bytes = record.used_bytes.saturating_sub(old_last);
        }
        self.put_account(&record)?;
        let (available, last_resort) = self.stock(&account)?;
        Ok(Ok(Applied::Stock {
            available,
            last_resort,
        }))
    }

    pub(super) fn take_key_package(&mut self, handle: Handle) -> Result<OpResult, StoreError> {
        let Some(mut record) = self.by_handle(&handle)? else {
            return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
        };
        let account = record.account;
        let lo = key2(&account.0, 0);
        let hi = key2(&account.0, u64::MAX);
        // The oldest package still valid; expired ones on the way are dropped.
        let mut first = None;
        let mut expired = Vec::new();
        for item in self
            .key_packages
            .read()?
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
        {
            let (k, v) = item?;
            if crate::key_packages::is_expired(v.value()) {
                expired.push((k.value().to_vec(), object_cost(v.value().len())));
                continue;
            }
            first = Some((k.value().to_vec(), v.value().to_vec()));
            break;
        }
        for (k, len) in &expired {
            self.key_packages.write()?.remove(k.as_slice())?;
            record.used_bytes = record.used_bytes.saturating_sub(*len);
        }
        if let Some((k, package)) = first {
            self.key_packages.write()?.remove(k.as_slice())?;
            record.used_bytes = record.used_bytes.saturating_sub(object_cost(package.len()));
            self.put_account(&record)?;
            return Ok(Ok(Applied::KeyPackage {
                account,
                package,
                last_resort: false,
            }));
        }
        if !expired.is_empty() {
            self.put_account(&record)?;
        }
        let package = self
            .last_resort
            .read()?
            .get(account.0.as_slice())?
            .map(|v| v.value().to_vec())
            .filter(|p| !crate::key_packages::is_expired(p));
        match package {
            Some(package) => {
                // Reused until replaced; the stock says it is used so its owner replaces
                // it (issue 11: the last-resort package is rotated after use).
                self.last_resort
                    .write()?
                    .insert(used_key(&account).as_slice(), &[][..])?;
                Ok(Ok(Applied::KeyPackage {
                    account,
                    package,
                    last_resort: true,
                }))
            }
            None => Ok(Err(err(
                ErrorCode::NoKeyPackage,
                "the account has no KeyPackage left",
            ))),
        }
    }
}

pub(super) fn stock_of(
    key_packages: &impl ReadableTable<Bytes, Bytes>,
    last_resort: &impl ReadableTable<Bytes, Bytes>,
    account: &AccountKey,
) -> Result<(u32, bool), StoreError> {
    let lo = key2(&account.0, 0);
    let hi = key2(&account.0, u64::MAX);
    let mut available = 0usize;
    for item in key_packages.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
        let (_, v) = item?;
        if !crate::key_packages::is_expired(v.value()) {
            available += 1;
        }
    }
    let has_last = last_resort
        .get(account.0.as_slice())?
        .is_some_and(|v| !crate::key_packages::is_expired(v.value()))
        && last_resort.get(used_key(account).as_slice())?.is_none();
    Ok((u32::try_from(available).unwrap_or(u32::MAX), has_last))
}

/// The key (beside the account's own in the last-resort table) marking that its
/// last-resort package was handed out since it was published.
fn used_key(account: &AccountKey) -> Vec<u8> {
    let mut key = account.0.to_vec();
    key.extend_from_slice(b"/used");
    key
}
