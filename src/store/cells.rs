//! The storage engine underneath a chain's layout: tables of rows, each row a
//! key and its cells (qualifier → value), in family `x`. Bigtable and the
//! embedded store implement this; a layout (agave's: `chain/solana/layout.rs`)
//! is written once on top of it and names its own tables, so both backends
//! hold the same keys and cell bytes for any chain.

use std::fmt;

use async_trait::async_trait;

/// A table of a layout, by its name in Bigtable (and keyspace name embedded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Table(&'static str);

impl Table {
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The one column family agave uses.
pub const FAMILY: &str = "x";

/// One cell to write: row key, qualifier (`proto` or `bin`), value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub key: String,
    pub qualifier: &'static str,
    pub value: Vec<u8>,
}

/// A row read back: its key and its cells (latest version of each qualifier).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub cells: Vec<(String, Vec<u8>)>,
}

impl Row {
    /// The value under `qualifier`, if the row has one.
    pub fn cell(&self, qualifier: &str) -> Option<&[u8]> {
        self.cells.iter().find(|(q, _)| q == qualifier).map(|(_, v)| v.as_slice())
    }
}

/// Rows of one table written together.
#[derive(Clone, Debug)]
pub struct TableWrite {
    pub table: Table,
    pub cells: Vec<Cell>,
}

/// Keys from `start` to `end`, both inclusive; `end: None` is open-ended.
#[derive(Clone, Debug)]
pub struct KeyRange {
    pub start: String,
    pub end: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{backend}: table {table}: {message}")]
pub struct BackendError {
    /// The store, e.g. `bigtable://project/instance` (never credentials).
    pub backend: String,
    pub table: String,
    pub message: String,
}

#[async_trait]
pub trait CellStore: Send + Sync {
    /// Where the cells live, for messages (`bigtable://p/i`, `embedded:///path`).
    fn describe(&self) -> String;

    /// Creates the layout's tables and the column family if missing.
    async fn ensure_tables(&self, tables: &[Table]) -> Result<(), BackendError>;

    /// Whether `table` exists (a store another writer made may lack
    /// Chronicle's own tables). Stores that create tables on use: always.
    async fn has_table(&self, _table: Table) -> Result<bool, BackendError> {
        Ok(true)
    }

    /// Writes the rows of several tables. The embedded store commits them in
    /// one atomic batch; Bigtable sends one MutateRows per table, concurrently.
    async fn write(&self, writes: Vec<TableWrite>) -> Result<(), BackendError>;

    /// The rows among `keys` that exist, in key order.
    async fn read_rows(&self, table: Table, keys: &[String]) -> Result<Vec<Row>, BackendError>;

    /// Up to `limit` rows of `range` in key order; `keys_only` leaves cells out.
    async fn scan(
        &self,
        table: Table,
        range: KeyRange,
        limit: usize,
        keys_only: bool,
    ) -> Result<Vec<Row>, BackendError>;

    /// Deletes whole rows (missing ones are ignored).
    async fn delete_rows(&self, table: Table, keys: &[String]) -> Result<(), BackendError>;

    /// Makes everything written so far durable (embedded: fsync the journal;
    /// Bigtable: acknowledged writes already are).
    async fn sync(&self) -> Result<(), BackendError>;

    /// Gives back the space of deleted rows (embedded: a major compaction of
    /// `tables`; Bigtable compacts on its own).
    async fn reclaim(&self, _tables: &[Table]) -> Result<(), BackendError> {
        Ok(())
    }

    /// Bytes the store takes on disk, where the engine can tell (embedded).
    fn disk_bytes(&self) -> Option<u64> {
        None
    }

    /// Sets a garbage-collection rule on `tables`' family: cells older than
    /// `max_age` (by write time) are removed by the engine itself. Only
    /// Bigtable has one.
    async fn set_max_age(&self, tables: &[Table], _max_age: std::time::Duration) -> Result<(), BackendError> {
        Err(BackendError {
            backend: self.describe(),
            table: tables.first().map(|t| t.to_string()).unwrap_or_default(),
            message: "this engine has no garbage-collection rules: use method prune".into(),
        })
    }
}

/// Whether one of Chronicle's own tables exists: once found it stays found;
/// an absent one is asked again every 10 s (another process may create it).
#[derive(Default)]
pub struct TableCheck(std::sync::Mutex<Option<(std::time::Instant, bool)>>);

impl TableCheck {
    pub async fn exists(&self, cells: &dyn CellStore, table: Table) -> Result<bool, crate::store::StoreError> {
        let known = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        match known {
            Some((_, true)) => Ok(true),
            Some((asked, false)) if asked.elapsed() < std::time::Duration::from_secs(10) => Ok(false),
            _ => {
                let exists = cells.has_table(table).await?;
                self.set(exists);
                Ok(exists)
            }
        }
    }

    /// Whether the table exists, asking again every time until it does (for
    /// a table whose appearance changes what readers may assume).
    pub async fn exists_yet(&self, cells: &dyn CellStore, table: Table) -> Result<bool, crate::store::StoreError> {
        if matches!(*self.0.lock().unwrap_or_else(|e| e.into_inner()), Some((_, true))) {
            return Ok(true);
        }
        let exists = cells.has_table(table).await?;
        if exists {
            self.set(true);
        }
        Ok(exists)
    }

    /// Creates the table unless it is known to exist.
    pub async fn ensure(&self, cells: &dyn CellStore, table: Table) -> Result<(), crate::store::StoreError> {
        if !matches!(*self.0.lock().unwrap_or_else(|e| e.into_inner()), Some((_, true))) {
            cells.ensure_tables(&[table]).await?;
            self.set(true);
        }
        Ok(())
    }

    fn set(&self, exists: bool) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), exists));
    }
}
