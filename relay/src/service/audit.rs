//! The audit feed's first stop: suspicious events counted in memory per kind and address,
//! then written by the group-commit writer with its next batch (see
//! [`crate::store::AuditRecord`] for how the store keeps them).
//!
//! Counting here first means a flood of refusals costs one map update each, never a write
//! each, and is never dropped for lack of room in the writer's queue: the map holds at most
//! [`MAX_PENDING`] (kind, address) pairs and counts further addresses in one row per
//! kind, like the store does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use hearth_protocol::AccountKey;

use crate::store::{AuditRecord, AUDIT_OTHER_ADDRESSES};

/// Distinct (kind, address) pairs held between two writes.
pub const MAX_PENDING: usize = 1024;

/// Audit records not yet written, merged per kind and address.
#[derive(Default)]
pub struct AuditLog {
    pending: Mutex<HashMap<(String, Option<String>), AuditRecord>>,
}

impl AuditLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Option<String>), AuditRecord>> {
        // Every update leaves the map consistent before anything can panic.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one event, under its address's [`super::AddressKey`] (an IPv6 address by
    /// its /64, so one host walking its addresses gets one row, not 256).
    pub fn record(
        &self,
        now: u64,
        kind: &str,
        ip: Option<IpAddr>,
        account: Option<&AccountKey>,
        detail: &str,
    ) {
        let record = AuditRecord::once(
            now,
            kind,
            ip.map(|i| super::AddressKey::of(i).to_string()),
            account.map(|a| a.short()),
            detail,
        );
        let mut pending = self.lock();
        let mut key = (record.kind.clone(), record.ip.clone());
        if !pending.contains_key(&key) && pending.len() >= MAX_PENDING {
            key.1 = Some(AUDIT_OTHER_ADDRESSES.to_string());
        }
        match pending.get_mut(&key) {
            Some(row) => row.absorb(&record),
            None => {
                let mut record = record;
                record.ip.clone_from(&key.1);
                pending.insert(key, record);
            }
        }
    }

    /// Takes everything counted so far, to be written.
    pub fn take(&self) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = self.lock().drain().map(|(_, r)| r).collect();
        records.sort_by_key(|r| r.time);
        records
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_counted_in_bounded_memory() {
        let log = AuditLog::default();
        let home: IpAddr = "192.0.2.1".parse().unwrap();
        log.record(10, "auth-failed", Some(home), None, "AuthFailed");
        for i in 0..5_000u32 {
            let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            log.record(11, "malformed-hello", Some(ip), None, "garbage");
        }
        log.record(12, "auth-failed", Some(home), None, "AuthFailed");
        let records = log.take();
        assert!(records.len() <= MAX_PENDING + 1);
        let failed: Vec<_> = records.iter().filter(|r| r.kind == "auth-failed").collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(
            (failed[0].count, failed[0].time, failed[0].last),
            (2, 10, 12)
        );
        let flood: u64 = records
            .iter()
            .filter(|r| r.kind == "malformed-hello")
            .map(|r| r.count)
            .sum();
        assert_eq!(flood, 5_000, "every event counted");
        assert!(log.is_empty());
    }

    #[test]
    fn an_ipv6_64_is_one_row_and_mapped_ipv4_is_ipv4() {
        let log = AuditLog::default();
        for i in 0..300u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, 0, 0, 1));
            log.record(10, "auth-failed", Some(ip), None, "AuthFailed");
        }
        log.record(
            11,
            "auth-failed",
            Some("::ffff:192.0.2.1".parse().unwrap()),
            None,
            "x",
        );
        log.record(
            12,
            "auth-failed",
            Some("192.0.2.1".parse().unwrap()),
            None,
            "x",
        );
        let records = log.take();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[0].ip.as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(records[0].count, 300);
        assert_eq!(records[1].ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(records[1].count, 2);
    }
}
