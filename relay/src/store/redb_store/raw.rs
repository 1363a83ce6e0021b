//! Raw writes into the tables, bypassing every check: for the fuzz target `store_values`,
//! which fills a store with arbitrary values (as a damaged disk would) and reads them back
//! through the store's own code. Not an API.

use super::*;

impl RedbStore {
    /// The tables, by name, as [`RedbStore::put_raw`] takes them.
    #[doc(hidden)]
    pub const TABLE_NAMES: [&'static str; 20] = [
        "accounts",
        "handles",
        "invites",
        "key_packages",
        "last_resort",
        "inbox",
        "rooms",
        "epochs",
        "entries",
        "audit",
        "audit_counts",
        "listings",
        "commits",
        "retired",
        "rotations",
        "room_admins",
        "legacy_admins",
        "commit_caps",
        "rooms_created",
        "meta",
    ];

    /// Writes `value` under `key` into the table named `table` (one of
    /// [`RedbStore::TABLE_NAMES`]), unchecked. Text keys must be UTF-8; integer keys and
    /// values are the first 8 bytes, big-endian (zero-padded).
    #[doc(hidden)]
    pub fn put_raw(&self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let int = |bytes: &[u8]| {
            let mut n = [0u8; 8];
            let len = bytes.len().min(8);
            n[..len].copy_from_slice(&bytes[..len]);
            u64::from_be_bytes(n)
        };
        let text = |bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        };
        let txn = self.db.begin_write()?;
        {
            let bytes_table = match table {
                "accounts" => Some(ACCOUNTS),
                "invites" => Some(INVITES),
                "key_packages" => Some(KEY_PACKAGES),
                "last_resort" => Some(LAST_RESORT),
                "inbox" => Some(INBOX),
                "rooms" => Some(ROOMS),
                "entries" => Some(ENTRIES),
                "listings" => Some(LISTINGS),
                "retired" => Some(RETIRED),
                "room_admins" => Some(ROOM_ADMINS),
                "legacy_admins" => Some(LEGACY_ADMINS),
                "commit_caps" => Some(COMMIT_CAPS),
                "audit_counts" => Some(AUDIT_COUNTS),
                _ => None,
            };
            if let Some(definition) = bytes_table {
                txn.open_table(definition)?.insert(key, value)?;
            } else {
                match table {
                    "handles" => {
                        txn.open_table(HANDLES)?
                            .insert(text(key)?.as_str(), value)?;
                    }
                    "rotations" => {
                        txn.open_table(ROTATIONS)?
                            .insert(text(key)?.as_str(), value)?;
                    }
                    "epochs" => {
                        txn.open_table(EPOCHS)?.insert(key, int(value))?;
                    }
                    "commits" => {
                        txn.open_table(COMMITS)?.insert(key, int(value))?;
                    }
                    "audit" => {
                        txn.open_table(AUDIT)?.insert(int(key), value)?;
                    }
                    "rooms_created" => {
                        txn.open_table(ROOMS_CREATED)?
                            .insert(text(key)?.as_str(), int(value))?;
                    }
                    "meta" => {
                        txn.open_table(META)?
                            .insert(text(key)?.as_str(), int(value))?;
                    }
                    other => {
                        return Err(StoreError::Corrupt(format!("no table {other:?}")));
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Empties every table (one transaction), unchecked: a fresh store again, cheaper
    /// than opening a new one.
    #[doc(hidden)]
    pub fn clear_raw(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.delete_table(ACCOUNTS)?;
        txn.delete_table(HANDLES)?;
        txn.delete_table(INVITES)?;
        txn.delete_table(KEY_PACKAGES)?;
        txn.delete_table(LAST_RESORT)?;
        txn.delete_table(INBOX)?;
        txn.delete_table(ROOMS)?;
        txn.delete_table(EPOCHS)?;
        txn.delete_table(ENTRIES)?;
        txn.delete_table(AUDIT)?;
        txn.delete_table(LISTINGS)?;
        txn.delete_table(COMMITS)?;
        txn.delete_table(RETIRED)?;
        txn.delete_table(ROTATIONS)?;
        txn.delete_table(ROOM_ADMINS)?;
        txn.delete_table(LEGACY_ADMINS)?;
        txn.delete_table(COMMIT_CAPS)?;
        txn.delete_table(AUDIT_COUNTS)?;
        txn.delete_table(ROOMS_CREATED)?;
        txn.delete_table(META)?;
        txn.commit()?;
        self.create_tables().map(|_| ())
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn every_table_is_named_and_cleared() {
        let store = RedbStore::in_memory().unwrap();
        let tables = |store: &RedbStore| table_names(&store.db);
        let mut named: Vec<String> = RedbStore::TABLE_NAMES
            .iter()
            .map(|n| n.to_string())
            .collect();
        named.sort();
        // A new table needs its name in TABLE_NAMES, a case in put_raw and in clear_raw,
        // or the fuzz target `store_values` never fills it.
        let unnamed = |store: &RedbStore| -> Vec<String> {
            tables(store)
                .into_iter()
                .filter(|t| !named.contains(t))
                .collect()
        };
        assert_eq!(unnamed(&store), Vec::<String>::new());
        // And every table is there from the start: nothing else creates one.
        assert_eq!(tables(&store), named);
        for name in RedbStore::TABLE_NAMES {
            store.put_raw(name, b"key", b"value").unwrap();
        }
        assert_eq!(tables(&store), named);
        store.clear_raw().unwrap();
        assert_eq!(unnamed(&store), Vec::<String>::new());
        let txn = store.db.begin_read().unwrap();
        let accounts = txn.open_table(ACCOUNTS).unwrap();
        assert_eq!(accounts.len().unwrap(), 0);
    }
}
