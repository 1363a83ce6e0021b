//! Inboxes: what is addressed to one account alone, charged to that account's inbox.
//!
//! No inbox entry says who deposited it (decision 0013): the relay stores the recipient,
//! an id, the day and the (sealed) payload. So the bytes are counted against the
//! recipient's inbox, bounded by `inbox_bytes_per_account`; a depositor is bounded by the
//! service's rate limit on deposits, kept in memory. A flooding member fills one person's
//! inbox at most, and that person's client drains it.

use super::*;

/// The grain of an inbox entry's stored time: a day (UTC). Finer, the time of an
/// invitation (a Welcome deposited right after its Add commit) would match the commit's
/// in the room's log and tie the recipient's account to the room in what the relay
/// stores; the recipient's client dates the invitation by its own clock instead.
pub const INBOX_TIME_GRAIN_SECS: u64 = 86_400;

/// The refusal of a deposit into a full inbox.
fn inbox_full(quota: u64) -> WireError {
    WireError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "the recipient's inbox on this relay is full ({quota} bytes, \
             inbox_bytes_per_account): they pick up what waits there the next time they \
             connect; try again later"
        ),
    )
}

impl Tx<'_> {
    /// The bytes `account`'s inbox holds, each entry counted as [`object_cost`] of its
    /// stored record (payload and time: a few bytes more than the payload).
    pub(super) fn inbox_bytes(&self, account: &AccountKey) -> Result<u64, StoreError> {
        let lo = key2(&account.0, 0);
        let hi = key2(&account.0, u64::MAX);
        let mut bytes = 0u64;
        for item in self
            .inbox
            .read()?
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
        {
            let (_, v) = item?;
            bytes = bytes.saturating_add(object_cost(v.value().len()));
        }
        Ok(bytes)
    }

    /// [`WriteOp::Deposit`]: the entry is stored with the start of its day (UTC) as its
    /// time, see [`INBOX_TIME_GRAIN_SECS`].
    pub(super) fn deposit(
        &mut self,
        to: AccountKey,
        payload: Vec<u8>,
        now: u64,
        inbox_quota: u64,
    ) -> Result<OpResult, StoreError> {
        // A Welcome made from a KeyPackage of a key since rotated still reaches its owner.
        let Some(mut recipient) = self.account_following_rotations(&to)? else {
            return Ok(Err(err(ErrorCode::UnknownAccount, "no such account")));
        };
        let to = recipient.account;
        // The day only: to the second, an invitation's time matched its Add commit's in
        // the room's log, which joined the recipient's account to the room (attack 16).
        let time = now - now % INBOX_TIME_GRAIN_SECS;
        let stored = encode(&StoredInbox { time, payload })?;
        let held = self.inbox_bytes(&to)?;
        if held.saturating_add(object_cost(stored.len())) > inbox_quota {
            return Ok(Err(inbox_full(inbox_quota)));
        }
        recipient.next_inbox_id += 1;
        let id = recipient.next_inbox_id;
        self.put_account(&recipient)?;
        self.inbox
            .write()?
            .insert(key2(&to.0, id).as_slice(), stored.as_slice())?;
        Ok(Ok(Applied::Deposited { to }))
    }
}
