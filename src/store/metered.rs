//! Time and bytes of every store call, by operation and table
//! (`chronicle_store_seconds`, `chronicle_store_bytes`): a [`CellStore`]
//! around the engine a URL opens, so both engines and every layout report
//! the same series.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::cells::{BackendError, CellStore, KeyRange, Row, Table, TableWrite};
use crate::telemetry::metrics::WORKER;

pub struct MeteredCells {
    inner: Arc<dyn CellStore>,
}

impl MeteredCells {
    pub fn new(inner: Arc<dyn CellStore>) -> Self {
        Self { inner }
    }
}

fn row_bytes(rows: &[Row]) -> u64 {
    rows.iter().map(|r| r.key.len() + r.cells.iter().map(|(q, v)| q.len() + v.len()).sum::<usize>()).sum::<usize>()
        as u64
}

#[async_trait]
impl CellStore for MeteredCells {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn ensure_tables(&self, tables: &[Table]) -> Result<(), BackendError> {
        self.inner.ensure_tables(tables).await
    }

    async fn has_table(&self, table: Table) -> Result<bool, BackendError> {
        self.inner.has_table(table).await
    }

    async fn write(&self, writes: Vec<TableWrite>) -> Result<(), BackendError> {
        // One call writes several tables at once: each table is charged the whole call's time.
        let sizes: Vec<(Table, u64)> = writes
            .iter()
            .map(|w| (w.table, w.cells.iter().map(|c| (c.key.len() + c.value.len()) as u64).sum()))
            .collect();
        let started = Instant::now();
        let result = self.inner.write(writes).await;
        for (table, bytes) in sizes {
            WORKER.store(
                "write",
                table.name(),
                result.is_ok(),
                started.elapsed(),
                if result.is_ok() { bytes } else { 0 },
            );
        }
        result
    }

    async fn read_rows(&self, table: Table, keys: &[String]) -> Result<Vec<Row>, BackendError> {
        let started = Instant::now();
        let result = self.inner.read_rows(table, keys).await;
        let bytes = result.as_deref().map_or(0, row_bytes);
        WORKER.store("read", table.name(), result.is_ok(), started.elapsed(), bytes);
        result
    }

    async fn scan(
        &self,
        table: Table,
        range: KeyRange,
        limit: usize,
        keys_only: bool,
    ) -> Result<Vec<Row>, BackendError> {
        let started = Instant::now();
        let result = self.inner.scan(table, range, limit, keys_only).await;
        let bytes = result.as_deref().map_or(0, row_bytes);
        WORKER.store("scan", table.name(), result.is_ok(), started.elapsed(), bytes);
        result
    }

    async fn delete_rows(&self, table: Table, keys: &[String]) -> Result<(), BackendError> {
        let started = Instant::now();
        let result = self.inner.delete_rows(table, keys).await;
        WORKER.store("delete", table.name(), result.is_ok(), started.elapsed(), 0);
        result
    }

    async fn sync(&self) -> Result<(), BackendError> {
        self.inner.sync().await
    }

    async fn reclaim(&self, tables: &[Table]) -> Result<(), BackendError> {
        self.inner.reclaim(tables).await
    }

    fn disk_bytes(&self) -> Option<u64> {
        self.inner.disk_bytes()
    }

    async fn set_max_age(&self, tables: &[Table], max_age: std::time::Duration) -> Result<(), BackendError> {
        self.inner.set_max_age(tables, max_age).await
    }
}
