//! BigQuery's public Ethereum dataset (`bigquery-public-data.crypto_ethereum`,
//! ethereum-etl's tables enriched: `tests/data/evm/bigquery/schemas/`) as a
//! [`Dataset`]: the generic reader (`bigquery/source.rs`) queries each
//! table over a batch's numbers; here a block's rows become the lake's
//! ethereum-etl rows (`rows.rs`), as RPC ingestion derives them from the
//! node. What differs from the export schema is undone: the blocks'
//! TIMESTAMP back to seconds, integers that our rows keep as decimal text
//! (wei, prices, fees) as text, and each transaction's `receipt_*` columns
//! as its receipt row. Token transfers are derived from the logs as RPC
//! ingestion derives them (the dataset's `token_transfers` is the same
//! extraction, loaded on its own schedule). The dataset's genesis-allocation
//! and DAO-fork traces are left out: no node traces them, so RPC ingestion
//! has none. A trace's `trace_index` (not in the dataset) is its place in
//! the block as a node lists traces: by transaction, then depth first by
//! `trace_address`, rewards last in `trace_id` order (a node lists a block
//! with several uncles' rewards in uncle order, which the dataset does not
//! keep).
//!
//! A block is incomplete, and a gap, when the dataset has fewer transaction
//! rows than its `transaction_count`, no log row while its bloom says it has
//! logs, a row of another block hash (another fork), or, with the traces
//! table read, a transaction without its top-level trace.

use serde::Deserialize;
use serde_json::Value;

use super::block::EvmBlock;
use super::rows::{EvmRows, ReceiptRow, TransactionRow};
use super::trace_rows::TraceRow;
use crate::bigquery::source::{BlockTables, Dataset, keep_first, numbers_as_text};
use crate::pipeline::BlockNumber;

/// The Ethereum dataset's tables and how its rows become ours.
pub struct EvmDataset {
    /// Whether the traces table is read (a dataset without it maps it to nothing).
    pub traces: bool,
}

/// A `transactions` row: the transaction and, in `receipt_*` columns, its receipt.
#[derive(Deserialize)]
struct DatasetTransaction {
    #[serde(flatten)]
    transaction: TransactionRow,
    receipt_cumulative_gas_used: u64,
    receipt_gas_used: u64,
    receipt_contract_address: Option<String>,
    receipt_root: Option<String>,
    receipt_status: Option<u64>,
    receipt_effective_gas_price: Option<String>,
}

impl DatasetTransaction {
    fn split(self) -> (TransactionRow, ReceiptRow) {
        let tx = &self.transaction;
        let receipt = ReceiptRow {
            transaction_hash: tx.hash.clone(),
            transaction_index: tx.transaction_index,
            block_hash: tx.block_hash.clone(),
            block_number: tx.block_number,
            cumulative_gas_used: self.receipt_cumulative_gas_used,
            gas_used: self.receipt_gas_used,
            contract_address: self.receipt_contract_address,
            root: self.receipt_root,
            status: self.receipt_status,
            effective_gas_price: self.receipt_effective_gas_price,
            ..ReceiptRow::default()
        };
        (self.transaction, receipt)
    }
}

impl Dataset for EvmDataset {
    type Rows = EvmRows;
    type Block = EvmBlock;

    /// Our tables; the dataset's have the same names (receipts are in
    /// `transactions`, token transfers derived from `logs`).
    const TABLES: &'static [(&'static str, &'static str)] =
        &[("blocks", "blocks"), ("transactions", "transactions"), ("logs", "logs"), ("traces", "traces")];
    const OPTIONAL: &'static [&'static str] = &["traces"];
    const NUMBER: &'static str = "number";
    const TIME: &'static str = "timestamp";
    const BLOCK_COLUMN: &'static str = "block_number";
    const NOUN: &'static str = "block";
    const EVERY_NUMBER_IS_A_BLOCK: bool = true;

    fn rows(&self, mut block: BlockTables) -> Result<(EvmRows, usize), String> {
        for row in block.values_mut("blocks") {
            micros_as_seconds(row, "timestamp");
            numbers_as_text(row, &["difficulty", "total_difficulty", "base_fee_per_gas"]);
            for withdrawal in row.get_mut("withdrawals").and_then(Value::as_array_mut).into_iter().flatten() {
                text_as_number(withdrawal, "amount");
            }
        }
        for row in block.values_mut("transactions") {
            let prices =
                ["value", "gas_price", "max_fee_per_gas", "max_priority_fee_per_gas", "receipt_effective_gas_price"];
            numbers_as_text(row, &prices);
        }
        for row in block.values_mut("traces") {
            numbers_as_text(row, &["value"]);
            // Before 2021 the dataset wrote a top-level trace's address as '' (now NULL).
            if row.get("trace_address").and_then(Value::as_str) == Some("") {
                row["trace_address"] = Value::Null;
            }
            row["trace_index"] = Value::from(0);
        }
        let mut rows = EvmRows { blocks: block.typed("blocks")?, ..EvmRows::default() };
        if let Some(other) = rows.blocks.iter().find(|b| b.hash != rows.blocks[0].hash) {
            let reason =
                format!("the dataset has two blocks of this number ({} and {})", rows.blocks[0].hash, other.hash);
            return Err(block.incomplete(reason));
        }
        let mut transactions: Vec<DatasetTransaction> = block.typed("transactions")?;
        rows.logs = block.typed("logs")?;
        let mut traces: Vec<TraceRow> = block.typed("traces")?;
        traces.retain(|t| !NOT_TRACED.contains(&t.trace_type.as_str()));

        let duplicates = keep_first(&mut rows.blocks, |b| b.number)
            + keep_first(&mut transactions, |t| t.transaction.hash.clone())
            + keep_first(&mut rows.logs, |l| l.log_index)
            + keep_first(&mut traces, |t| t.trace_id.clone());
        transactions.sort_by_key(|t| t.transaction.transaction_index);
        (rows.transactions, rows.receipts) = transactions.into_iter().map(DatasetTransaction::split).unzip();
        rows.logs.sort_by_key(|l| l.log_index);
        rows.token_transfers = rows.logs.iter().filter_map(super::rows::token_transfer).collect();

        let head = &rows.blocks[0];
        let forks = rows.transactions.iter().map(|t| &t.block_hash).chain(rows.logs.iter().map(|l| &l.block_hash));
        if let Some(other) = forks.chain(traces.iter().map(|t| &t.block_hash)).find(|hash| **hash != head.hash) {
            return Err(block.incomplete(format!("rows of block hash {other}, not the block's {}", head.hash)));
        }
        let count = head.transaction_count;
        if (rows.transactions.len() as u64) < count {
            let have = rows.transactions.len();
            return Err(block.incomplete(format!("the dataset has {have} of the block's {count} transactions")));
        }
        if rows.logs.is_empty()
            && head.logs_bloom.as_deref().is_some_and(|bloom| bloom.trim_start_matches("0x").bytes().any(|b| b != b'0'))
        {
            return Err(block.incomplete("the block's logs bloom is set; the dataset has none of its logs"));
        }
        if self.traces {
            let top_level = traces.iter().filter(|t| t.transaction_hash.is_some() && t.trace_address.is_none()).count();
            if top_level < rows.transactions.len() {
                let count = rows.transactions.len();
                return Err(block
                    .incomplete(format!("the dataset has traces of {top_level} of the block's {count} transactions")));
            }
            in_node_order(&mut traces);
            rows.traces = Some(traces);
        }
        Ok((rows, duplicates))
    }

    /// The node's rows, with the block's traces exactly when the dataset's
    /// are read: a node that gave none leaves the block a gap rather than a
    /// batch whose traces partition silently lacks it.
    fn node_rows(&self, number: BlockNumber, block: &EvmBlock) -> Result<EvmRows, String> {
        let mut rows = super::rows::rows_of(block)?;
        match (self.traces, &rows.traces) {
            (true, None) => {
                Err(format!("block {number}: the node gave the block without traces; the lake's traces need them"))
            }
            (true, Some(_)) => Ok(rows),
            (false, _) => {
                rows.traces = None;
                Ok(rows)
            }
        }
    }
}

/// The dataset's trace types no node traces (ethereum-etl adds them from its own lists).
const NOT_TRACED: [&str; 2] = ["genesis", "daofork"];

/// Orders a block's traces as a node lists them and numbers them so.
fn in_node_order(traces: &mut [TraceRow]) {
    let path = |t: &TraceRow| -> Vec<u64> {
        t.trace_address.as_deref().unwrap_or("").split(',').filter_map(|step| step.trim().parse().ok()).collect()
    };
    let serial = |t: &TraceRow| t.trace_id.rsplit('_').next().and_then(|n| n.parse::<u64>().ok());
    traces.sort_by_cached_key(|t| (t.transaction_index.unwrap_or(u64::MAX), path(t), serial(t)));
    for (index, trace) in traces.iter_mut().enumerate() {
        trace.trace_index = index as u64;
    }
}

/// A TIMESTAMP column (decoded to microseconds) as seconds since the epoch.
fn micros_as_seconds(row: &mut Value, column: &str) {
    if let Some(micros) = row.get(column).and_then(Value::as_i64) {
        row[column] = Value::from(micros.div_euclid(1_000_000));
    }
}

/// A STRING column of an integer (a withdrawal's gwei) as the number it is;
/// anything else is left for the schema to refuse.
fn text_as_number(row: &mut Value, column: &str) {
    if let Some(number) = row.get(column).and_then(Value::as_str).and_then(|text| text.parse::<u64>().ok()) {
        row[column] = Value::from(number);
    }
}
