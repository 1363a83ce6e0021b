//! A table of a write transaction, opened the first time an op uses it.
//!
//! A batch opened all 18 tables when it began (issue 15). Most batches touch two or
//! three (an append: `rooms` and `entries`), and each opened table costs a lookup in
//! redb's table tree when opened, another when the commit checks whether its root moved,
//! and its bookkeeping when closed. Opening them on first use took a commit of one
//! append from about 399,000 to 261,000 instructions (-35 %) and one of 100 appends from
//! 1.40 to 1.28 million (`relay/benches/store-commit.rs` under callgrind); a household's
//! relay mostly commits one message at a time, and that commit is on the path of every
//! acknowledgement.

use std::cell::OnceCell;

use redb::{Key, Table, TableDefinition, Value, WriteTransaction};

use super::StoreError;

/// One table of `txn`, opened on first use and closed (its root staged for the commit)
/// when dropped, as a [`Table`] is.
pub(super) struct LazyTable<'t, K: Key + 'static, V: Value + 'static> {
    txn: &'t WriteTransaction,
    definition: TableDefinition<'static, K, V>,
    table: OnceCell<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> LazyTable<'t, K, V> {
    /// The table `definition` of `txn`, not opened yet.
    pub(super) fn new(
        txn: &'t WriteTransaction,
        definition: TableDefinition<'static, K, V>,
    ) -> Self {
        Self {
            txn,
            definition,
            table: OnceCell::new(),
        }
    }

    /// The table, to read. Errors: opening it failed ([`StoreError::Db`]), which fails the
    /// batch as any storage error does.
    pub(super) fn read(&self) -> Result<&Table<'t, K, V>, StoreError> {
        if let Some(table) = self.table.get() {
            return Ok(table);
        }
        let opened = self.txn.open_table(self.definition)?;
        Ok(self.table.get_or_init(|| opened))
    }

    /// The table, to change. Errors as [`LazyTable::read`].
    pub(super) fn write(&mut self) -> Result<&mut Table<'t, K, V>, StoreError> {
        self.read()?;
        Ok(self
            .table
            .get_mut()
            .expect("read() opened the table or returned its error"))
    }
}

#[cfg(test)]
mod tests {
    use redb::backends::InMemoryBackend;
    use redb::{Database, ReadableDatabase, ReadableTable};

    use super::super::table_names;
    use super::*;

    const USED: TableDefinition<u64, u64> = TableDefinition::new("used");
    const UNUSED: TableDefinition<u64, u64> = TableDefinition::new("unused");

    #[test]
    fn a_table_no_op_uses_is_never_opened_and_one_in_use_sees_its_own_writes() {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut used = LazyTable::new(&txn, USED);
            let _unused = LazyTable::new(&txn, UNUSED);
            assert!(used.read().unwrap().get(1).unwrap().is_none());
            used.write().unwrap().insert(1, 10).unwrap();
            assert_eq!(used.read().unwrap().get(1).unwrap().unwrap().value(), 10);
        }
        txn.commit().unwrap();
        // Opening a table in a write transaction creates it: an eager open would have
        // made "unused" too.
        assert_eq!(table_names(&db), vec!["used".to_string()]);
        let txn = db.begin_read().unwrap();
        let used = txn.open_table(USED).unwrap();
        assert_eq!(used.get(1).unwrap().unwrap().value(), 10);
    }
}
