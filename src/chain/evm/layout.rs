//! The EVM store layout, in agave's spirit, over the same cell engines
//! (Bigtable or embedded): sortable big-endian block keys, lookups by hash,
//! an address index newest first, compressed cells. Documented in
//! `docs/evm.md`.
//!
//! | table | row key | cell |
//! |---|---|---|
//! | `evm-blocks` | block number, 16 hex digits | `json`: the block with full transactions (the node's JSON, zstd in agave's envelope) |
//! | `evm-receipts` | block number, 16 hex digits | `json`: the block's receipts, in transaction order |
//! | `evm-traces` | block number, 16 hex digits | `json`: `{"method", "result"}`, the node's trace answer for the block and the method that gave it (`traces.rs`); no row: stored without traces |
//! | `evm-block-hash` | `0x…` block hash | `bin`: the number, u64 big-endian |
//! | `evm-tx` | `0x…` transaction hash | `bin`: block number u64 + index u32, big-endian |
//! | `evm-tx-by-addr` | `0x…address/` + 16 hex of `!number` | `bin`: the block's transaction indexes that touched the address, u32 big-endian each |
//! | `evm-meta` | `finalized` | `bin`: the final watermark, u64 big-endian (written by a follower ahead of finality; absent: every stored block is final) |
//!
//! One cell per row, as the engines hold them. A block's other rows are
//! written before its `evm-blocks` row, which makes it visible to readers (as
//! agave writes `tx` rows before `blocks`), and deleted after it goes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use alloy::primitives::{Address, B256};
use async_trait::async_trait;
use serde_json::Value;

use super::block::EvmBlock;
use super::traces::BlockTraces;
use crate::store::block_rows::{self, BlockRows, BlockRowsReader};
use crate::store::cells::{Cell, CellStore, KeyRange, Row, Table, TableCheck, TableWrite};
use crate::store::envelope;
use crate::store::keys::{parse_slot_key, slot_key};
use crate::store::{DeleteStats, StoreError, WriteStats};

pub mod tables {
    use crate::store::cells::Table;

    pub const BLOCKS: Table = Table::new("evm-blocks");
    pub const RECEIPTS: Table = Table::new("evm-receipts");
    pub const TRACES: Table = Table::new("evm-traces");
    pub const BLOCK_HASH: Table = Table::new("evm-block-hash");
    pub const TX: Table = Table::new("evm-tx");
    pub const TX_BY_ADDR: Table = Table::new("evm-tx-by-addr");
    pub const ALL: [Table; 6] = [BLOCKS, RECEIPTS, TRACES, BLOCK_HASH, TX, TX_BY_ADDR];
    /// Created by the first follower ahead of finality (no block rows).
    pub const META: Table = Table::new("evm-meta");
}

const FINALIZED_KEY: &str = "finalized";

/// The qualifier of the JSON cells, and of the binary index cells.
const JSON: &str = "json";
const BIN: &str = "bin";

/// The EVM layout over a cell engine.
pub struct EvmStore {
    cells: Arc<dyn CellStore>,
    /// The newest block last found (0: none yet): where the next search starts.
    newest_seen: AtomicU64,
    meta_table: TableCheck,
    /// A store written before traces were kept has no `evm-traces` table.
    traces_table: TableCheck,
}

/// `evm-tx-by-addr` key: the address, `/`, then the key of `!number`, so an
/// address's rows sort newest first.
pub fn address_key(address: &Address, number: u64) -> String {
    format!("{address:#x}/{}", slot_key(!number))
}

fn hash_key(hash: &B256) -> String {
    format!("{hash:#x}")
}

impl EvmStore {
    pub fn new(cells: Arc<dyn CellStore>) -> Self {
        Self {
            cells,
            newest_seen: AtomicU64::new(0),
            meta_table: TableCheck::default(),
            traces_table: TableCheck::default(),
        }
    }

    pub fn describe(&self) -> String {
        self.cells.describe()
    }

    /// Writes a block and its index rows; writing it again writes the same cells.
    pub async fn write_block(&self, block: &EvmBlock) -> Result<WriteStats, StoreError> {
        let index = &block.index;
        let number = index.number;
        let mut txs = Vec::with_capacity(index.transactions.len());
        let mut by_address: std::collections::BTreeMap<Address, Vec<u8>> = Default::default();
        for (position, tx) in index.transactions.iter().enumerate() {
            let position = position as u32;
            let mut loc = number.to_be_bytes().to_vec();
            loc.extend_from_slice(&position.to_be_bytes());
            txs.push(Cell { key: hash_key(&tx.hash), qualifier: BIN, value: loc });
            for address in &tx.addresses {
                by_address.entry(*address).or_default().extend_from_slice(&position.to_be_bytes());
            }
        }
        let addresses = by_address
            .into_iter()
            .map(|(address, positions)| Cell { key: address_key(&address, number), qualifier: BIN, value: positions })
            .collect();
        let blocks = vec![Cell { key: slot_key(number), qualifier: JSON, value: compress_json(&block.block) }];
        let receipts = vec![Cell { key: slot_key(number), qualifier: JSON, value: compress_json(&block.receipts) }];
        let mut writes = vec![
            TableWrite { table: tables::RECEIPTS, cells: receipts },
            TableWrite { table: tables::TX, cells: txs },
            TableWrite { table: tables::TX_BY_ADDR, cells: addresses },
            TableWrite {
                table: tables::BLOCK_HASH,
                cells: vec![Cell { key: hash_key(&index.hash), qualifier: BIN, value: number.to_be_bytes().to_vec() }],
            },
        ];
        if let Some(traces) = &block.traces {
            let cell = Cell { key: slot_key(number), qualifier: JSON, value: compress_json(&traces.to_stored()) };
            writes.push(TableWrite { table: tables::TRACES, cells: vec![cell] });
        }
        let stats = stats_of(writes.iter().flat_map(|w| &w.cells).chain(&blocks));
        self.cells.write(writes).await?;
        // Last: the block row makes the block visible.
        self.cells.write(vec![TableWrite { table: tables::BLOCKS, cells: blocks }]).await?;
        Ok(stats)
    }

    /// The block at `number` (with full transactions), as the node sent it.
    pub async fn block(&self, number: u64) -> Result<Option<Value>, StoreError> {
        self.json(tables::BLOCKS, number).await
    }

    /// The receipts of the block at `number`, in transaction order.
    pub async fn receipts(&self, number: u64) -> Result<Option<Value>, StoreError> {
        self.json(tables::RECEIPTS, number).await
    }

    /// The traces of the block at `number` as the node sent them (`None`:
    /// no such block, or stored without traces).
    pub async fn traces(&self, number: u64) -> Result<Option<BlockTraces>, StoreError> {
        Ok(match self.traces_row(number).await? {
            Some(row) => Some(decode_traces(&row, number)?),
            None => None,
        })
    }

    async fn traces_row(&self, number: u64) -> Result<Option<Row>, StoreError> {
        if !self.traces_table.exists(self.cells.as_ref(), tables::TRACES).await? {
            return Ok(None);
        }
        Ok(self.cells.read_rows(tables::TRACES, &[slot_key(number)]).await?.pop())
    }

    async fn json(&self, table: Table, number: u64) -> Result<Option<Value>, StoreError> {
        let rows = self.cells.read_rows(table, &[slot_key(number)]).await?;
        rows.into_iter().next().map(|row| decode_json(table, &row, Some(number))).transpose()
    }

    pub async fn block_number_by_hash(&self, hash: &B256) -> Result<Option<u64>, StoreError> {
        let key = hash_key(hash);
        let Some(row) = self.cells.read_rows(tables::BLOCK_HASH, std::slice::from_ref(&key)).await?.pop() else {
            return Ok(None);
        };
        let bytes = row.cell(BIN).ok_or_else(|| corrupt(tables::BLOCK_HASH, &key, None, "no bin cell"))?;
        let number: [u8; 8] =
            bytes.try_into().map_err(|_| corrupt(tables::BLOCK_HASH, &key, None, "number is not 8 bytes"))?;
        Ok(Some(u64::from_be_bytes(number)))
    }

    /// Where a transaction is: its block number and index in the block.
    pub async fn transaction_location(&self, hash: &B256) -> Result<Option<(u64, u32)>, StoreError> {
        let key = hash_key(hash);
        let Some(row) = self.cells.read_rows(tables::TX, std::slice::from_ref(&key)).await?.pop() else {
            return Ok(None);
        };
        decode_location(&row).map(Some)
    }

    /// Up to `limit` stored block numbers in `start..=end`, ascending.
    pub async fn numbers(&self, start: u64, end: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        block_rows::block_numbers(self.cells.as_ref(), tables::BLOCKS, start, end, limit).await
    }

    /// Stored blocks in `start..=end`, ascending, at most `limit`, with their numbers.
    pub async fn blocks(&self, start: u64, end: u64, limit: usize) -> Result<Vec<(u64, Value)>, StoreError> {
        let range = KeyRange { start: slot_key(start), end: Some(slot_key(end)) };
        let rows = self.cells.scan(tables::BLOCKS, range, limit, false).await?;
        rows.iter()
            .map(|row| {
                let number = parse_slot_key(&row.key)
                    .ok_or_else(|| corrupt(tables::BLOCKS, &row.key, None, "the key is not a block number"))?;
                Ok((number, decode_json(tables::BLOCKS, row, Some(number))?))
            })
            .collect()
    }

    pub async fn oldest(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.numbers(0, u64::MAX, 1).await?.first().copied())
    }

    /// The newest stored block (`block_rows::newest_block_number`: forward scans from the last answer).
    pub async fn newest(&self) -> Result<Option<u64>, StoreError> {
        block_rows::newest_block_number(self.cells.as_ref(), tables::BLOCKS, &self.newest_seen).await
    }

    /// The final watermark a follower ahead of finality records; `None`:
    /// every stored block is final (read every time: the follower moves it;
    /// the table's absence too, as the first such follower creates it before
    /// it stores a block that is not final).
    pub async fn finalized(&self) -> Result<Option<u64>, StoreError> {
        if !self.meta_table.exists_yet(self.cells.as_ref(), tables::META).await? {
            return Ok(None);
        }
        let key = FINALIZED_KEY.to_string();
        let Some(row) = self.cells.read_rows(tables::META, std::slice::from_ref(&key)).await?.pop() else {
            return Ok(None);
        };
        let bytes = row.cell(BIN).ok_or_else(|| corrupt(tables::META, &key, None, "no bin cell"))?;
        let number: [u8; 8] =
            bytes.try_into().map_err(|_| corrupt(tables::META, &key, None, "the watermark is not 8 bytes"))?;
        Ok(Some(u64::from_be_bytes(number)))
    }

    pub async fn set_finalized(&self, number: u64) -> Result<(), StoreError> {
        self.meta_table.ensure(self.cells.as_ref(), tables::META).await?;
        let cell = Cell { key: FINALIZED_KEY.into(), qualifier: BIN, value: number.to_be_bytes().to_vec() };
        self.cells.write(vec![TableWrite { table: tables::META, cells: vec![cell] }]).await?;
        Ok(())
    }

    /// Removes the blocks in `start..=end` and all their rows, each block's `evm-blocks` row last.
    pub async fn delete_range(&self, start: u64, end: u64) -> Result<DeleteStats, StoreError> {
        block_rows::delete_blocks(self, start, end).await
    }

    pub async fn sync(&self) -> Result<(), StoreError> {
        Ok(self.cells.sync().await?)
    }
}

fn stats_of<'a>(cells: impl Iterator<Item = &'a Cell>) -> WriteStats {
    cells.fold(WriteStats::default(), |stats, cell| WriteStats {
        cells: stats.cells + 1,
        bytes: stats.bytes + cell.value.len() as u64,
    })
}

fn compress_json(value: &Value) -> Vec<u8> {
    envelope::compress(&serde_json::to_vec(value).expect("a JSON value serializes"))
}

fn decode_json(table: Table, row: &Row, number: Option<u64>) -> Result<Value, StoreError> {
    let cell = row.cell(JSON).ok_or_else(|| corrupt(table, &row.key, number, "no json cell"))?;
    let bytes = envelope::decompress(cell).map_err(|e| corrupt(table, &row.key, number, e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| corrupt(table, &row.key, number, format!("json: {e}")))
}

fn decode_traces(row: &Row, number: u64) -> Result<BlockTraces, StoreError> {
    let stored = decode_json(tables::TRACES, row, Some(number))?;
    BlockTraces::from_stored(stored)
        .ok_or_else(|| corrupt(tables::TRACES, &row.key, Some(number), "not a stored trace answer (method, result)"))
}

fn decode_location(row: &Row) -> Result<(u64, u32), StoreError> {
    let loc = row.cell(BIN).ok_or_else(|| corrupt(tables::TX, &row.key, None, "no bin cell"))?;
    let (number, index) = loc
        .split_first_chunk::<8>()
        .and_then(|(n, rest)| Some((u64::from_be_bytes(*n), u32::from_be_bytes(rest.try_into().ok()?))))
        .ok_or_else(|| corrupt(tables::TX, &row.key, None, "loc is not 12 bytes"))?;
    Ok((number, index))
}

fn corrupt(table: Table, key: &str, number: Option<u64>, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt { table, key: key.to_string(), slot: number, reason: reason.into() }
}

#[async_trait]
impl BlockRowsReader for EvmStore {
    fn cells(&self) -> &Arc<dyn CellStore> {
        &self.cells
    }

    async fn stored_blocks(&self, start: u64, end: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        self.numbers(start, end, limit).await
    }

    async fn oldest_block(&self) -> Result<Option<u64>, StoreError> {
        self.oldest().await
    }

    async fn newest_block(&self) -> Result<Option<u64>, StoreError> {
        self.newest().await
    }

    async fn block_time(&self, number: u64) -> Result<Option<i64>, StoreError> {
        let Some(block) = self.block(number).await? else { return Ok(None) };
        Ok(super::rpc::quantity(block.get("timestamp")).and_then(|t| i64::try_from(t).ok()))
    }

    /// The block's other rows, found from its own stored answers (exact
    /// keys: no table is scanned), and its `evm-blocks` row last. A `tx`
    /// row belongs to this block only if it points here.
    async fn block_rows(&self, number: u64) -> Result<Option<BlockRows>, StoreError> {
        let key = slot_key(number);
        let Some(block_row) = self.cells.read_rows(tables::BLOCKS, std::slice::from_ref(&key)).await?.pop() else {
            return Ok(None);
        };
        let block = decode_json(tables::BLOCKS, &block_row, Some(number))?;
        let receipts_row = self.cells.read_rows(tables::RECEIPTS, std::slice::from_ref(&key)).await?.pop();
        let receipts = match &receipts_row {
            Some(row) => decode_json(tables::RECEIPTS, row, Some(number))?,
            None => return Err(corrupt(tables::RECEIPTS, &key, Some(number), "the block has no receipts row")),
        };
        let typed = EvmBlock::from_json(number, block, receipts)
            .map_err(|e| corrupt(tables::BLOCKS, &key, Some(number), e.to_string()))?;
        let mut rows: Vec<(Table, Row)> = receipts_row.into_iter().map(|row| (tables::RECEIPTS, row)).collect();
        rows.extend(self.traces_row(number).await?.map(|row| (tables::TRACES, row)));
        let tx_keys: Vec<String> = typed.index.transactions.iter().map(|t| hash_key(&t.hash)).collect();
        for row in self.cells.read_rows(tables::TX, &tx_keys).await? {
            if decode_location(&row)?.0 == number {
                rows.push((tables::TX, row));
            }
        }
        let mut address_keys: Vec<String> =
            typed.index.transactions.iter().flat_map(|t| t.addresses.iter().map(|a| address_key(a, number))).collect();
        address_keys.sort();
        address_keys.dedup();
        let by_address = self.cells.read_rows(tables::TX_BY_ADDR, &address_keys).await?;
        rows.extend(by_address.into_iter().map(|row| (tables::TX_BY_ADDR, row)));
        let hash = self.cells.read_rows(tables::BLOCK_HASH, &[hash_key(&typed.index.hash)]).await?;
        rows.extend(hash.into_iter().map(|row| (tables::BLOCK_HASH, row)));
        rows.push((tables::BLOCKS, block_row));
        Ok(Some(BlockRows { slot: number, rows }))
    }
}
