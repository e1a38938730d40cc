//! The embedded backend: fjall, an LSM-tree store in pure Rust, one keyspace
//! per table of the layout (opened on first use). Chosen over redb (a B-tree) because ingestion is
//! append-heavy and an LSM turns it into sequential writes; over RocksDB
//! because it needs no C++ toolchain. Atomic write batches span keyspaces, so
//! a block's rows land together, and the journal makes a commit crash-safe
//! once `sync` has run (the ingest worker syncs before it checkpoints).
//!
//! A row holds one cell, stored as `[qualifier length: u8][qualifier][value]`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::cells::{BackendError, CellStore, KeyRange, Row, Table, TableWrite};

pub struct EmbeddedCells {
    path: PathBuf,
    db: Database,
    keyspaces: std::sync::Mutex<Vec<(Table, Keyspace)>>,
}

/// The name errors of the whole store carry.
const ANY: Table = Table::new("-");

impl EmbeddedCells {
    /// Opens (or creates) the store in directory `path`.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let error = |message: String| BackendError {
            backend: format!("embedded://{}", path.display()),
            table: "-".into(),
            message,
        };
        std::fs::create_dir_all(path).map_err(|e| error(format!("create {}: {e}", path.display())))?;
        let db = Database::builder(path).open().map_err(|e| error(format!("open: {e}")))?;
        Ok(Self { path: path.to_path_buf(), db, keyspaces: std::sync::Mutex::default() })
    }

    /// The keyspace of `table`, opened (created if new) on first use.
    fn keyspace(&self, table: Table) -> Result<Keyspace, BackendError> {
        let mut open = self.keyspaces.lock().expect("keyspaces");
        if let Some((_, keyspace)) = open.iter().find(|(t, _)| *t == table) {
            return Ok(keyspace.clone());
        }
        let keyspace = self
            .db
            .keyspace(table.name(), KeyspaceCreateOptions::default)
            .map_err(|e| self.error(table, format!("open keyspace: {e}")))?;
        open.push((table, keyspace.clone()));
        Ok(keyspace)
    }

    fn error(&self, table: Table, err: impl std::fmt::Display) -> BackendError {
        BackendError { backend: self.describe(), table: table.name().into(), message: err.to_string() }
    }

    fn decode_row(&self, table: Table, key: &[u8], stored: &[u8], keys_only: bool) -> Result<Row, BackendError> {
        let key = String::from_utf8(key.to_vec()).map_err(|_| self.error(table, "row key is not UTF-8"))?;
        if keys_only {
            return Ok(Row { key, cells: Vec::new() });
        }
        let (len, rest) = stored.split_first().ok_or_else(|| self.error(table, format!("row {key}: empty value")))?;
        let (qualifier, value) = rest
            .split_at_checked(usize::from(*len))
            .ok_or_else(|| self.error(table, format!("row {key}: value shorter than its qualifier")))?;
        let qualifier = String::from_utf8(qualifier.to_vec())
            .map_err(|_| self.error(table, format!("row {key}: qualifier is not UTF-8")))?;
        Ok(Row { key, cells: vec![(qualifier, value.to_vec())] })
    }
}

fn stored_value(qualifier: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + qualifier.len() + value.len());
    out.push(u8::try_from(qualifier.len()).expect("qualifiers are short"));
    out.extend_from_slice(qualifier.as_bytes());
    out.extend_from_slice(value);
    out
}

#[async_trait]
impl CellStore for EmbeddedCells {
    fn describe(&self) -> String {
        format!("embedded://{}", self.path.display())
    }

    async fn ensure_tables(&self, tables: &[Table]) -> Result<(), BackendError> {
        tables.iter().try_for_each(|table| self.keyspace(*table).map(|_| ()))
    }

    async fn write(&self, writes: Vec<TableWrite>) -> Result<(), BackendError> {
        let mut batch = self.db.batch();
        for write in &writes {
            let keyspace = self.keyspace(write.table)?;
            for cell in &write.cells {
                batch.insert(&keyspace, cell.key.as_bytes(), stored_value(cell.qualifier, &cell.value));
            }
        }
        let table = writes.first().map(|w| w.table).unwrap_or(ANY);
        batch.commit().map_err(|e| self.error(table, format!("commit: {e}")))
    }

    async fn read_rows(&self, table: Table, keys: &[String]) -> Result<Vec<Row>, BackendError> {
        let keyspace = self.keyspace(table)?;
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut rows = Vec::new();
        for key in sorted {
            if let Some(value) =
                keyspace.get(key.as_bytes()).map_err(|e| self.error(table, format!("get {key}: {e}")))?
            {
                rows.push(self.decode_row(table, key.as_bytes(), &value, false)?);
            }
        }
        Ok(rows)
    }

    async fn scan(
        &self,
        table: Table,
        range: KeyRange,
        limit: usize,
        keys_only: bool,
    ) -> Result<Vec<Row>, BackendError> {
        let keyspace = self.keyspace(table)?;
        let start = range.start.into_bytes();
        let iter = match range.end {
            Some(end) => keyspace.range(start..=end.into_bytes()),
            None => keyspace.range(start..),
        };
        let mut rows = Vec::new();
        for guard in iter.take(limit) {
            let (key, value) = guard.into_inner().map_err(|e| self.error(table, format!("scan: {e}")))?;
            rows.push(self.decode_row(table, &key, &value, keys_only)?);
        }
        Ok(rows)
    }

    async fn delete_rows(&self, table: Table, keys: &[String]) -> Result<(), BackendError> {
        let keyspace = self.keyspace(table)?;
        let mut batch = self.db.batch();
        for key in keys {
            batch.remove(&keyspace, key.as_bytes());
        }
        batch.commit().map_err(|e| self.error(table, format!("delete: {e}")))
    }

    async fn sync(&self) -> Result<(), BackendError> {
        self.db.persist(PersistMode::SyncAll).map_err(|e| self.error(ANY, format!("sync: {e}")))
    }

    /// Deleted rows are tombstones until a compaction drops them: compact
    /// each table fully so their space comes back now.
    async fn reclaim(&self, tables: &[Table]) -> Result<(), BackendError> {
        for table in tables {
            let keyspace = self.keyspace(*table)?;
            tokio::task::spawn_blocking(move || keyspace.major_compact())
                .await
                .map_err(|e| self.error(*table, format!("compact: {e}")))?
                .map_err(|e| self.error(*table, format!("compact: {e}")))?;
        }
        Ok(())
    }

    fn disk_bytes(&self) -> Option<u64> {
        self.db.disk_space().ok()
    }
}
