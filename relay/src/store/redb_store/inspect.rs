//! [`Store::inspect`] for [`RedbStore`]: every table's raw records through
//! [`crate::inspect`], on one read snapshot (the relay keeps running meanwhile).

use crate::inspect::{InspectReport, Markers, TableScan};

use super::*;

/// Feeds every record of the tables of `txn` to `scan`, table by table, as raw bytes
/// (text keys as their UTF-8, integers as 8 big-endian bytes).
fn each_table(
    txn: &redb::ReadTransaction,
    mut scan: impl FnMut(&str, &mut dyn FnMut() -> Option<Result<(Vec<u8>, Vec<u8>), StoreError>>),
) -> Result<(), StoreError> {
    macro_rules! table {
        ($def:expr, $name:expr, |$k:ident, $v:ident| $key:expr, $value:expr) => {{
            let table = txn.open_table($def)?;
            let mut iter = table.iter()?;
            scan($name, &mut || {
                iter.next().map(|item| {
                    let ($k, $v) = item?;
                    Ok(($key, $value))
                })
            });
        }};
    }
    let bytes_tables = [
        (ACCOUNTS, "accounts"),
        (INVITES, "invites"),
        (KEY_PACKAGES, "key_packages"),
        (LAST_RESORT, "last_resort"),
        (INBOX, "inbox"),
        (ROOMS, "rooms"),
        (ENTRIES, "entries"),
        (AUDIT_COUNTS, "audit_counts"),
        (LISTINGS, "listings"),
        (RETIRED, "retired"),
        (ROOM_ADMINS, "room_admins"),
        (LEGACY_ADMINS, "legacy_admins"),
        (COMMIT_CAPS, "commit_caps"),
    ];
    for (def, name) in bytes_tables {
        table!(def, name, |k, v| k.value().to_vec(), v.value().to_vec());
    }
    for (def, name) in [(HANDLES, "handles"), (ROTATIONS, "rotations")] {
        table!(
            def,
            name,
            |k, v| k.value().as_bytes().to_vec(),
            v.value().to_vec()
        );
    }
    for (def, name) in [(EPOCHS, "epochs"), (COMMITS, "commits")] {
        table!(
            def,
            name,
            |k, v| k.value().to_vec(),
            v.value().to_be_bytes().to_vec()
        );
    }
    table!(
        AUDIT,
        "audit",
        |k, v| k.value().to_be_bytes().to_vec(),
        v.value().to_vec()
    );
    table!(
        ROOMS_CREATED,
        "rooms_created",
        |k, v| k.value().as_bytes().to_vec(),
        v.value().to_be_bytes().to_vec()
    );
    table!(
        META,
        "meta",
        |k, v| k.value().as_bytes().to_vec(),
        v.value().to_be_bytes().to_vec()
    );
    Ok(())
}

impl RedbStore {
    /// The markers of every account (current and retired keys, with handles) and room
    /// the store holds, to scan something else for them (a log, a file).
    pub fn markers(&self) -> Result<Markers, StoreError> {
        Self::markers_in(&self.db.begin_read()?)
    }

    fn markers_in(txn: &redb::ReadTransaction) -> Result<Markers, StoreError> {
        let mut accounts: Vec<(AccountKey, Option<Handle>)> = Vec::new();
        for item in txn.open_table(ACCOUNTS)?.iter()? {
            let (k, v) = item?;
            let handle = decode::<AccountRecord>(v.value()).ok().map(|r| r.handle);
            if let Ok(key) = <[u8; 32]>::try_from(k.value()) {
                accounts.push((AccountKey(key), handle));
            }
        }
        for item in txn.open_table(RETIRED)?.iter()? {
            let (k, _) = item?;
            if let Ok(key) = <[u8; 32]>::try_from(k.value()) {
                accounts.push((AccountKey(key), None));
            }
        }
        let mut rooms = Vec::new();
        for item in txn.open_table(ROOMS)?.iter()? {
            let (k, _) = item?;
            if let Ok(id) = <[u8; 16]>::try_from(k.value()) {
                rooms.push(RoomId(id));
            }
        }
        Ok(Markers::new(
            accounts.iter().map(|(k, h)| (*k, h.as_ref())),
            rooms,
        ))
    }

    /// [`Store::inspect`].
    pub(super) fn inspect_tables(&self) -> Result<InspectReport, StoreError> {
        let txn = self.db.begin_read()?;
        let markers = Self::markers_in(&txn)?;
        let mut tables = Vec::new();
        let mut failed = None;
        each_table(&txn, |name, next| {
            let mut scan = TableScan::new(&markers, name);
            while let Some(item) = next() {
                match item {
                    Ok((k, v)) => scan.record(&k, &v),
                    Err(e) => {
                        failed.get_or_insert(e);
                        break;
                    }
                }
            }
            tables.push(scan.finish());
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let (accounts, rooms) = markers.counts();
        Ok(InspectReport {
            accounts,
            rooms,
            tables,
            // The blob store is beside the database: the caller adds it.
            blobs: Vec::new(),
        })
    }
}
