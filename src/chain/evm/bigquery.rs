//! BigQuery's public Ethereum dataset (`bigquery-public-data.crypto_ethereum`,
//! ethereum-etl's tables enriched: `tests/data/evm/bigquery/schemas/`) as a
//! [`Dataset`]: the generic reader (`bigquery/source.rs`) queries each
//! table over a batch's numbers; here a block's rows become the lake's
//! ethereum-etl rows (`rows.rs`), the same as RPC ingestion derives from
//! the node. What differs from the export schema is undone: the blocks'
//! TIMESTAMP back to seconds, integers that our rows keep as decimal text
//! (wei, prices, fees) as text, and each transaction's `receipt_*` columns
//! as its receipt row. A trace's `trace_index` (not in the dataset) is its
//! place in the block as a node lists traces: by transaction, then depth
//! first by `trace_address`, block-level traces last in `trace_id` order.
//!
//! A block is incomplete, and a gap, when the dataset has fewer transaction
//! rows than its `transaction_count`, or, with the traces table read, a
//! transaction without its top-level trace. Every number is a block: one
//! the dataset lacks is a gap, not a skipped slot.

use serde::Deserialize;
use serde_json::Value;

use super::block::EvmBlock;
use super::rows::{EvmRows, ReceiptRow, TransactionRow};
use super::trace_rows::TraceRow;
use crate::bigquery::source::{BlockTables, Dataset, keep_first};
use crate::pipeline::BlockNumber;

/// The Ethereum dataset's tables and how its rows become ours.
pub struct EvmDataset;

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

    /// Our tables; the dataset's have the same names (receipts are in `transactions`).
    const TABLES: &'static [(&'static str, &'static str)] = &[
        ("blocks", "blocks"),
        ("transactions", "transactions"),
        ("logs", "logs"),
        ("token_transfers", "token_transfers"),
        ("traces", "traces"),
    ];
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
            let prices = ["value", "gas_price", "max_fee_per_gas", "max_priority_fee_per_gas"];
            numbers_as_text(row, &prices);
            numbers_as_text(row, &["receipt_effective_gas_price"]);
        }
        for row in block.values_mut("traces") {
            numbers_as_text(row, &["value"]);
            row["trace_index"] = Value::from(0);
        }
        let traced = block.has("traces");
        let mut rows = EvmRows { blocks: block.typed("blocks")?, ..EvmRows::default() };
        let mut transactions: Vec<DatasetTransaction> = block.typed("transactions")?;
        rows.logs = block.typed("logs")?;
        rows.token_transfers = block.typed("token_transfers")?;
        let mut traces: Vec<TraceRow> = block.typed("traces")?;

        let duplicates = keep_first(&mut rows.blocks, |b| b.number)
            + keep_first(&mut transactions, |t| t.transaction.hash.clone())
            + keep_first(&mut rows.logs, |l| l.log_index)
            + keep_first(&mut rows.token_transfers, |t| (t.transaction_hash.clone(), t.log_index))
            + keep_first(&mut traces, |t| t.trace_id.clone());
        transactions.sort_by_key(|t| t.transaction.transaction_index);
        (rows.transactions, rows.receipts) = transactions.into_iter().map(DatasetTransaction::split).unzip();
        rows.logs.sort_by_key(|l| l.log_index);
        rows.token_transfers.sort_by_key(|t| t.log_index);

        let count = rows.blocks[0].transaction_count;
        if (rows.transactions.len() as u64) < count {
            let have = rows.transactions.len();
            return Err(block.incomplete(format!("the dataset has {have} of the block's {count} transactions")));
        }
        if traced {
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

    fn node_rows(&self, _number: BlockNumber, block: &EvmBlock) -> Result<EvmRows, String> {
        super::rows::rows_of(block)
    }
}

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

/// Integer columns our rows keep as decimal text (wei passes 2^64; the
/// decoder already gives such a NUMERIC as its digits).
fn numbers_as_text(row: &mut Value, columns: &[&str]) {
    for column in columns {
        if let Some(value) = row.get_mut(*column).filter(|v| v.is_number()) {
            *value = Value::String(value.to_string());
        }
    }
}

/// A STRING column of an integer (a withdrawal's gwei) as the number it is;
/// anything else is left for the schema to refuse.
fn text_as_number(row: &mut Value, column: &str) {
    if let Some(number) = row.get(column).and_then(Value::as_str).and_then(|text| text.parse::<u64>().ok()) {
        row[column] = Value::from(number);
    }
}
