//! A block's rows as stored, across every table of a layout: the unit that
//! replication copies cell for cell, verification digests on both sides and
//! retention counts and removes. Which rows a block owns is the layout's
//! knowledge ([`BlockRowsReader`], implemented by `chain/solana/layout.rs`
//! and `chain/evm/layout.rs`); everything here works on rows alone, the same
//! for every chain, as do the scans of a blocks table keyed by
//! [`slot_key`](super::keys::slot_key) that both layouts share.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use super::cells::{BackendError, Cell, CellStore, KeyRange, Row, Table, TableWrite};
use super::keys::{parse_slot_key, slot_key};
use super::{DeleteStats, StoreError};

/// Every row one block owns, as stored. The block's own row (the one that
/// makes it visible to readers: agave's `blocks` row) comes last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRows {
    pub slot: u64,
    pub rows: Vec<(Table, Row)>,
}

impl BlockRows {
    /// Bytes of cell values, as stored.
    pub fn bytes(&self) -> u64 {
        self.rows.iter().map(|(_, row)| row_bytes(row)).sum()
    }

    /// The keys of each table, in the order the rows are listed.
    pub fn keys(&self) -> BTreeMap<Table, Vec<String>> {
        keys_by_table(&self.rows)
    }
}

fn keys_by_table(rows: &[(Table, Row)]) -> BTreeMap<Table, Vec<String>> {
    let mut keys: BTreeMap<Table, Vec<String>> = BTreeMap::new();
    for (table, row) in rows {
        keys.entry(*table).or_default().push(row.key.clone());
    }
    keys
}

/// Bytes of a row's cell values.
pub fn row_bytes(row: &Row) -> u64 {
    row.cells.iter().map(|(_, v)| v.len() as u64).sum()
}

/// What a layout tells about its blocks, for the tools that copy, compare and
/// prune whole blocks.
#[async_trait]
pub trait BlockRowsReader: Send + Sync {
    /// The engine underneath.
    fn cells(&self) -> &Arc<dyn CellStore>;

    /// Up to `limit` stored blocks in `start..=end`, ascending.
    async fn stored_blocks(&self, start: u64, end: u64, limit: usize) -> Result<Vec<u64>, StoreError>;

    /// The oldest stored block.
    async fn oldest_block(&self) -> Result<Option<u64>, StoreError>;

    /// The newest stored block.
    async fn newest_block(&self) -> Result<Option<u64>, StoreError>;

    /// When the block at `slot` was produced (Unix seconds), where known.
    async fn block_time(&self, slot: u64) -> Result<Option<i64>, StoreError>;

    /// Every row the block at `slot` owns (none: no block there).
    async fn block_rows(&self, slot: u64) -> Result<Option<BlockRows>, StoreError>;
}

/// The rows among `rows`' keys that `store` holds, table by table, keyed by
/// (table, key).
pub async fn read_same_rows(
    store: &dyn CellStore,
    rows: &BlockRows,
) -> Result<BTreeMap<(Table, String), Row>, BackendError> {
    let mut found = BTreeMap::new();
    for (table, keys) in rows.keys() {
        for row in store.read_rows(table, &keys).await? {
            found.insert((table, row.key.clone()), row);
        }
    }
    Ok(found)
}

/// Writes rows so that a block becomes visible only when all of it is there:
/// every other row first, then the block's own row (`rows`' last), if listed.
pub async fn write_rows(store: &dyn CellStore, rows: &[(Table, Row)], visible_last: bool) -> Result<(), StoreError> {
    let (body, last) = match (visible_last, rows.split_last()) {
        (true, Some((last, body))) => (body, Some(last)),
        _ => (rows, None),
    };
    if !body.is_empty() {
        store.write(table_writes(body)?).await?;
    }
    if let Some(last) = last {
        store.write(table_writes(std::slice::from_ref(last))?).await?;
    }
    Ok(())
}

/// Deletes a block's rows: every other row first, its own row last, so that
/// a run cut short leaves the block findable and the next run finishes it.
pub async fn delete_rows(store: &dyn CellStore, rows: &BlockRows) -> Result<(), StoreError> {
    let Some(((own_table, own), body)) = rows.rows.split_last() else { return Ok(()) };
    for (table, keys) in keys_by_table(body) {
        store.delete_rows(table, &keys).await?;
    }
    store.delete_rows(*own_table, std::slice::from_ref(&own.key)).await?;
    Ok(())
}

/// Up to `limit` block numbers in `start..=end` of a blocks table keyed by
/// `slot_key`, ascending (a keys-only scan).
pub async fn block_numbers(
    cells: &dyn CellStore,
    table: Table,
    start: u64,
    end: u64,
    limit: usize,
) -> Result<Vec<u64>, StoreError> {
    let range = KeyRange { start: slot_key(start), end: Some(slot_key(end)) };
    let rows = cells.scan(table, range, limit, true).await?;
    Ok(rows.iter().filter_map(|r| parse_slot_key(&r.key)).collect())
}

/// The newest block of a blocks table keyed by `slot_key`, with forward
/// scans only (the Bigtable emulator has no reverse scans): from `seen`, the
/// last answer (0: none), page forward (one read when nothing landed);
/// without one, binary-search for the highest block at or above which one exists.
pub async fn newest_block_number(
    cells: &dyn CellStore,
    table: Table,
    seen: &AtomicU64,
) -> Result<Option<u64>, StoreError> {
    let hint = seen.load(Ordering::Relaxed);
    let mut last = if hint > 0 && block_numbers(cells, table, hint, u64::MAX, 1).await?.first() == Some(&hint) {
        hint
    } else {
        let Some(&first) = block_numbers(cells, table, 0, u64::MAX, 1).await?.first() else { return Ok(None) };
        let (mut low, mut high) = (first, u64::MAX);
        while low < high {
            let mid = low + (high - low).div_ceil(2);
            if block_numbers(cells, table, mid, u64::MAX, 1).await?.is_empty() { high = mid - 1 } else { low = mid }
        }
        low
    };
    loop {
        let page = block_numbers(cells, table, last.saturating_add(1), u64::MAX, 1024).await?;
        match page.last() {
            Some(&newest) if newest > last => last = newest,
            _ => break,
        }
        if page.len() < 1024 {
            break;
        }
    }
    seen.store(last, Ordering::Relaxed);
    Ok(Some(last))
}

/// Removes every block `reader` holds in `start..=end` with all its rows,
/// each block's own row last (an interrupted delete leaves a block that is
/// still found, and deleted again).
pub async fn delete_blocks(reader: &dyn BlockRowsReader, start: u64, end: u64) -> Result<DeleteStats, StoreError> {
    let mut stats = DeleteStats::default();
    let mut next = start;
    while next <= end {
        let numbers = reader.stored_blocks(next, end, 256).await?;
        let Some(&last) = numbers.last() else { break };
        for number in numbers {
            if let Some(rows) = reader.block_rows(number).await? {
                delete_rows(reader.cells().as_ref(), &rows).await?;
                stats.blocks += 1;
                stats.rows += rows.rows.len();
            }
        }
        if last == u64::MAX {
            break;
        }
        next = last + 1;
    }
    Ok(stats)
}

fn table_writes(rows: &[(Table, Row)]) -> Result<Vec<TableWrite>, StoreError> {
    let mut by_table: BTreeMap<Table, Vec<Cell>> = BTreeMap::new();
    for (table, row) in rows {
        for (qualifier, value) in &row.cells {
            let qualifier = known_qualifier(qualifier).ok_or_else(|| StoreError::Corrupt {
                table: *table,
                key: row.key.clone(),
                slot: None,
                reason: format!("cell qualifier {qualifier:?} is not one a layout writes (proto, bin, json)"),
            })?;
            by_table.entry(*table).or_default().push(Cell { key: row.key.clone(), qualifier, value: value.clone() });
        }
    }
    Ok(by_table.into_iter().map(|(table, cells)| TableWrite { table, cells }).collect())
}

/// The qualifiers the layouts use (agave's `proto` and `bin`; EVM's `json`
/// and `bin`), as the `'static` names cells carry.
fn known_qualifier(name: &str) -> Option<&'static str> {
    ["proto", "bin", "json"].into_iter().find(|q| *q == name)
}

/// A row's digest: SHA-256 over its table, key and cells (qualifiers in
/// order, each value length-prefixed), so equal digests mean equal rows.
pub fn row_digest(table: Table, row: &Row) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(table.name().as_bytes());
    hash.update([0]);
    hash.update(row.key.as_bytes());
    let mut cells: Vec<&(String, Vec<u8>)> = row.cells.iter().collect();
    cells.sort_by(|a, b| a.0.cmp(&b.0));
    for (qualifier, value) in cells {
        hash.update([0]);
        hash.update(qualifier.as_bytes());
        hash.update((value.len() as u64).to_be_bytes());
        hash.update(value);
    }
    hash.finalize().into()
}

/// A digest of a set of rows that does not depend on the order they are
/// added in: the lane-wise sum (mod 2^64) of their row digests. Batches,
/// shards and reruns of failed batches combine into the same value, so an
/// epoch's digest can be built as its blocks are copied in any order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetDigest([u64; 4]);

impl SetDigest {
    pub fn add_row(&mut self, digest: &[u8; 32]) {
        for (lane, chunk) in self.0.iter_mut().zip(digest.chunks_exact(8)) {
            *lane = lane.wrapping_add(u64::from_be_bytes(chunk.try_into().expect("8 bytes")));
        }
    }

    pub fn combine(&mut self, other: &SetDigest) {
        for (lane, add) in self.0.iter_mut().zip(other.0) {
            *lane = lane.wrapping_add(add);
        }
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|lane| format!("{lane:016x}")).collect()
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut lanes = [0u64; 4];
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = u64::from_str_radix(text.get(i * 16..(i + 1) * 16)?, 16).ok()?;
        }
        Some(Self(lanes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, value: &[u8]) -> Row {
        Row { key: key.into(), cells: vec![("proto".into(), value.to_vec())] }
    }

    #[test]
    fn set_digests_ignore_order_and_see_every_byte() {
        let table = Table::new("blocks");
        let (a, b) = (row_digest(table, &row("a", b"1")), row_digest(table, &row("b", b"2")));
        let (mut forward, mut backward) = (SetDigest::default(), SetDigest::default());
        forward.add_row(&a);
        forward.add_row(&b);
        backward.add_row(&b);
        backward.add_row(&a);
        assert_eq!(forward, backward);
        assert_eq!(SetDigest::from_hex(&forward.to_hex()), Some(forward));
        let mut changed = SetDigest::default();
        changed.add_row(&a);
        changed.add_row(&row_digest(table, &row("b", b"3")));
        assert_ne!(forward, changed);
        assert_ne!(row_digest(table, &row("a", b"1")), row_digest(Table::new("tx"), &row("a", b"1")));
    }
}
