//! EVM's normalized rows, in ethereum-etl's export schema (the tables
//! behind BigQuery's `crypto_ethereum`): blocks, transactions, receipts,
//! logs, token transfers and, for blocks stored with traces, traces
//! (`trace_rows.rs`), derived from the node's answers as
//! ethereum-etl's mappers derive them (quantities from hex to integers;
//! amounts and prices that can pass 2^64 — value, difficulty, gas prices and
//! fees — as decimal strings;
//! addresses lowercased, a log's address as the node printed it). A value
//! that does not parse is an error naming the block and the field: the block
//! becomes a gap, and no row of it is written.

use alloy::primitives::U256;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::block::EvmBlock;
use super::trace_rows::TraceRow;
use crate::catalog::LakePartition;
use crate::lake::{Lake, LakeError};
use crate::pipeline::sinks::lake::{LakeRows, LakeTables};

/// ERC-20 and ERC-721 `Transfer(address,address,uint256)`.
pub const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRow {
    pub number: u64,
    pub hash: String,
    pub parent_hash: String,
    /// As the node printed it (ethereum-etl keeps the hex).
    pub nonce: Option<String>,
    pub sha3_uncles: Option<String>,
    pub logs_bloom: Option<String>,
    pub transactions_root: Option<String>,
    pub state_root: Option<String>,
    pub receipts_root: Option<String>,
    pub miner: Option<String>,
    /// Decimal: it passes 2^64.
    pub difficulty: Option<String>,
    pub total_difficulty: Option<String>,
    pub size: Option<u64>,
    pub extra_data: Option<String>,
    pub gas_limit: u64,
    pub gas_used: u64,
    pub timestamp: u64,
    pub transaction_count: u64,
    /// Wei per gas, decimal (as every price and fee here: no chain bounds them to 64 bits).
    pub base_fee_per_gas: Option<String>,
    pub withdrawals_root: Option<String>,
    pub withdrawals: Vec<Withdrawal>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub index: u64,
    pub validator_index: u64,
    pub address: String,
    /// Gwei.
    pub amount: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRow {
    pub hash: String,
    pub nonce: u64,
    pub block_hash: String,
    pub block_number: u64,
    pub transaction_index: u64,
    pub from_address: String,
    /// None: a contract creation.
    pub to_address: Option<String>,
    /// Wei, decimal.
    pub value: Option<String>,
    pub gas: u64,
    pub gas_price: Option<String>,
    pub input: String,
    /// Microseconds since the epoch: a TIMESTAMP (UTC) in the lake, as in
    /// BigQuery's `crypto_ethereum` (ethereum-etl's CSV prints seconds).
    pub block_timestamp: i64,
    pub max_fee_per_gas: Option<String>,
    pub max_priority_fee_per_gas: Option<String>,
    pub transaction_type: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReceiptRow {
    pub transaction_hash: String,
    pub transaction_index: u64,
    pub block_hash: String,
    pub block_number: u64,
    pub cumulative_gas_used: u64,
    pub gas_used: u64,
    pub contract_address: Option<String>,
    /// The post-state root (before Byzantium); later receipts carry `status`.
    pub root: Option<String>,
    pub status: Option<u64>,
    pub effective_gas_price: Option<String>,
    /// OP-stack L2s: the L1 data fee and its inputs (none on Ethereum).
    pub l1_fee: Option<String>,
    pub l1_gas_used: Option<u64>,
    pub l1_gas_price: Option<String>,
    pub l1_fee_scalar: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRow {
    pub log_index: u64,
    pub transaction_hash: String,
    pub transaction_index: u64,
    pub block_hash: String,
    pub block_number: u64,
    pub address: String,
    pub data: String,
    pub topics: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenTransferRow {
    pub token_address: String,
    pub from_address: String,
    pub to_address: String,
    /// Decimal: an ERC-20 amount or an ERC-721 token id (uint256).
    pub value: String,
    pub transaction_hash: String,
    pub log_index: u64,
    pub block_number: u64,
}

/// One or more blocks' rows of every table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvmRows {
    pub blocks: Vec<BlockRow>,
    pub transactions: Vec<TransactionRow>,
    pub receipts: Vec<ReceiptRow>,
    pub logs: Vec<LogRow>,
    pub token_transfers: Vec<TokenTransferRow>,
    /// None: no block of these was stored with traces (no `traces` partition is written).
    pub traces: Option<Vec<TraceRow>>,
}

/// Where a field of the node's answer is, for errors.
pub(super) struct At<'a> {
    pub number: u64,
    pub what: &'a str,
}

impl At<'_> {
    pub(super) fn error(&self, field: &str, reason: impl std::fmt::Display) -> String {
        format!("block {}: {} field {field}: {reason}", self.number, self.what)
    }

    pub(super) fn text(&self, value: &Value, field: &str) -> Result<Option<String>, String> {
        match value.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(self.error(field, format!("expected a string, got {other}"))),
        }
    }

    pub(super) fn required_text(&self, value: &Value, field: &str) -> Result<String, String> {
        self.text(value, field)?.ok_or_else(|| self.error(field, "missing"))
    }

    pub(super) fn address(&self, value: &Value, field: &str) -> Result<Option<String>, String> {
        Ok(self.text(value, field)?.map(|a| a.to_lowercase()))
    }

    /// A `0x`-prefixed hex quantity (never read as decimal, binary or octal).
    pub(super) fn u256(&self, value: &Value, field: &str) -> Result<Option<U256>, String> {
        self.text(value, field)?
            .map(|text| hex_quantity(&text).ok_or_else(|| self.error(field, format!("{text:?} is not a hex quantity"))))
            .transpose()
    }

    /// A float the node prints as a string or number (`l1FeeScalar`).
    pub(super) fn float(&self, value: &Value, field: &str) -> Result<Option<f64>, String> {
        match value.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => {
                s.parse().map(Some).map_err(|_| self.error(field, format!("{s:?} is not a number")))
            }
            Some(other) => Err(self.error(field, format!("expected a number, got {other}"))),
        }
    }

    pub(super) fn decimal(&self, value: &Value, field: &str) -> Result<Option<String>, String> {
        Ok(self.u256(value, field)?.map(|n| n.to_string()))
    }

    pub(super) fn quantity(&self, value: &Value, field: &str) -> Result<Option<u64>, String> {
        self.u256(value, field)?
            .map(|n| u64::try_from(n).map_err(|_| self.error(field, format!("{n} does not fit 64 bits"))))
            .transpose()
    }

    pub(super) fn required_quantity(&self, value: &Value, field: &str) -> Result<u64, String> {
        self.quantity(value, field)?.ok_or_else(|| self.error(field, "missing"))
    }
}

/// `0x` then hex digits, as JSON-RPC prints quantities and words.
fn hex_quantity(text: &str) -> Option<U256> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    U256::from_str_radix(digits, 16).ok()
}

/// The block's row and its transactions' rows (`block`: `eth_getBlockByNumber(n, true)`).
pub fn block_rows(number: u64, block: &Value) -> Result<(BlockRow, Vec<TransactionRow>), String> {
    let at = At { number, what: "block" };
    let transactions = block.get("transactions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let timestamp = at.required_quantity(block, "timestamp")?;
    let micros = i64::try_from(timestamp)
        .ok()
        .and_then(|t| t.checked_mul(1_000_000))
        .ok_or_else(|| at.error("timestamp", format!("{timestamp} is not a time")))?;
    let withdrawals = block
        .get("withdrawals")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|w| {
            let at = At { number, what: "withdrawal" };
            Ok(Withdrawal {
                index: at.required_quantity(w, "index")?,
                validator_index: at.required_quantity(w, "validatorIndex")?,
                address: at.required_text(w, "address")?,
                amount: at.required_quantity(w, "amount")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let row = BlockRow {
        number: at.required_quantity(block, "number")?,
        hash: at.required_text(block, "hash")?,
        parent_hash: at.required_text(block, "parentHash")?,
        nonce: at.text(block, "nonce")?,
        sha3_uncles: at.text(block, "sha3Uncles")?,
        logs_bloom: at.text(block, "logsBloom")?,
        transactions_root: at.text(block, "transactionsRoot")?,
        state_root: at.text(block, "stateRoot")?,
        receipts_root: at.text(block, "receiptsRoot")?,
        miner: at.address(block, "miner")?,
        difficulty: at.decimal(block, "difficulty")?,
        total_difficulty: at.decimal(block, "totalDifficulty")?,
        size: at.quantity(block, "size")?,
        extra_data: at.text(block, "extraData")?,
        gas_limit: at.required_quantity(block, "gasLimit")?,
        gas_used: at.required_quantity(block, "gasUsed")?,
        timestamp,
        transaction_count: transactions.len() as u64,
        base_fee_per_gas: at.decimal(block, "baseFeePerGas")?,
        withdrawals_root: at.text(block, "withdrawalsRoot")?,
        withdrawals,
    };
    let at = At { number, what: "transaction" };
    let transactions = transactions
        .iter()
        .filter(|tx| tx.is_object())
        .map(|tx| {
            Ok(TransactionRow {
                hash: at.required_text(tx, "hash")?,
                nonce: at.required_quantity(tx, "nonce")?,
                block_hash: at.required_text(tx, "blockHash")?,
                block_number: at.required_quantity(tx, "blockNumber")?,
                transaction_index: at.required_quantity(tx, "transactionIndex")?,
                from_address: at.address(tx, "from")?.ok_or_else(|| at.error("from", "missing"))?,
                to_address: at.address(tx, "to")?,
                value: at.decimal(tx, "value")?,
                gas: at.required_quantity(tx, "gas")?,
                gas_price: at.decimal(tx, "gasPrice")?,
                input: at.text(tx, "input")?.unwrap_or_else(|| "0x".into()),
                block_timestamp: micros,
                max_fee_per_gas: at.decimal(tx, "maxFeePerGas")?,
                max_priority_fee_per_gas: at.decimal(tx, "maxPriorityFeePerGas")?,
                transaction_type: at.quantity(tx, "type")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((row, transactions))
}

/// A receipt's row and its logs' rows.
pub fn receipt_rows(number: u64, receipt: &Value) -> Result<(ReceiptRow, Vec<LogRow>), String> {
    let at = At { number, what: "receipt" };
    let row = ReceiptRow {
        transaction_hash: at.required_text(receipt, "transactionHash")?,
        transaction_index: at.required_quantity(receipt, "transactionIndex")?,
        block_hash: at.required_text(receipt, "blockHash")?,
        block_number: at.required_quantity(receipt, "blockNumber")?,
        cumulative_gas_used: at.required_quantity(receipt, "cumulativeGasUsed")?,
        gas_used: at.required_quantity(receipt, "gasUsed")?,
        contract_address: at.address(receipt, "contractAddress")?,
        root: at.text(receipt, "root")?,
        status: at.quantity(receipt, "status")?,
        effective_gas_price: at.decimal(receipt, "effectiveGasPrice")?,
        l1_fee: at.decimal(receipt, "l1Fee")?,
        l1_gas_used: at.quantity(receipt, "l1GasUsed")?,
        l1_gas_price: at.decimal(receipt, "l1GasPrice")?,
        l1_fee_scalar: at.float(receipt, "l1FeeScalar")?,
    };
    let logs = receipt
        .get("logs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|log| log_row(number, log))
        .collect::<Result<Vec<_>, String>>()?;
    Ok((row, logs))
}

pub fn log_row(number: u64, log: &Value) -> Result<LogRow, String> {
    let at = At { number, what: "log" };
    let topics = match log.get("topics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(topics)) => topics
            .iter()
            .map(|t| t.as_str().map(str::to_string).ok_or_else(|| at.error("topics", "a topic is not a string")))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(at.error("topics", format!("expected a list, got {other}"))),
    };
    Ok(LogRow {
        log_index: at.required_quantity(log, "logIndex")?,
        transaction_hash: at.required_text(log, "transactionHash")?,
        transaction_index: at.required_quantity(log, "transactionIndex")?,
        block_hash: at.required_text(log, "blockHash")?,
        block_number: at.required_quantity(log, "blockNumber")?,
        address: at.required_text(log, "address")?,
        data: at.text(log, "data")?.unwrap_or_else(|| "0x".into()),
        topics,
    })
}

/// The token transfer a log records, as ethereum-etl reads one: a
/// `Transfer` whose topics and 32-byte data words are four in all (ERC-20:
/// three topics and the amount; ERC-721: four topics; early tokens: one
/// topic and three words). Any other shape is no transfer.
pub fn token_transfer(log: &LogRow) -> Option<TokenTransferRow> {
    let first = log.topics.first()?;
    if !first.eq_ignore_ascii_case(TRANSFER_TOPIC) {
        return None;
    }
    let data = log.data.strip_prefix("0x").unwrap_or(&log.data);
    let words = data.as_bytes().chunks(64).map(|w| String::from_utf8_lossy(w).into_owned());
    let parts: Vec<String> = log.topics.iter().cloned().chain(words.map(|w| format!("0x{w}"))).collect();
    if parts.len() != 4 {
        return None;
    }
    let address = |word: &str| {
        let hex = word.strip_prefix("0x").unwrap_or(word);
        format!("0x{}", hex.get(hex.len().saturating_sub(40)..).unwrap_or(hex).to_lowercase())
    };
    let Some(value) = hex_quantity(&parts[3]) else {
        tracing::warn!(transaction = %log.transaction_hash, log_index = log.log_index, "a Transfer log's amount is not hex; no token transfer row");
        return None;
    };
    Some(TokenTransferRow {
        token_address: log.address.to_lowercase(),
        from_address: address(&parts[1]),
        to_address: address(&parts[2]),
        value: value.to_string(),
        transaction_hash: log.transaction_hash.clone(),
        log_index: log.log_index,
        block_number: log.block_number,
    })
}

/// Every table's rows of one block.
pub fn rows_of(block: &EvmBlock) -> Result<EvmRows, String> {
    let number = block.index.number;
    let (block_row, transactions) = block_rows(number, &block.block)?;
    let traces = block.traces.as_ref().map(|traces| block.trace_rows(traces)).transpose()?;
    let mut rows = EvmRows { blocks: vec![block_row], transactions, traces, ..EvmRows::default() };
    for receipt in block.receipts.as_array().map(Vec::as_slice).unwrap_or_default() {
        let (receipt, logs) = receipt_rows(number, receipt)?;
        rows.receipts.push(receipt);
        rows.token_transfers.extend(logs.iter().filter_map(token_transfer));
        rows.logs.extend(logs);
    }
    Ok(rows)
}

impl LakeRows for EvmRows {
    fn append(&mut self, rows: EvmRows) {
        self.blocks.extend(rows.blocks);
        self.transactions.extend(rows.transactions);
        self.receipts.extend(rows.receipts);
        self.logs.extend(rows.logs);
        self.token_transfers.extend(rows.token_transfers);
        if let Some(traces) = rows.traces {
            self.traces.get_or_insert_default().extend(traces);
        }
    }

    fn write<'a>(
        &'a self,
        lake: &'a Lake,
        first: u64,
        last: u64,
    ) -> BoxFuture<'a, Result<Vec<LakePartition>, LakeError>> {
        Box::pin(async move {
            let mut partitions = vec![
                lake.write("blocks", first, last, &self.blocks).await?,
                lake.write("transactions", first, last, &self.transactions).await?,
                lake.write("receipts", first, last, &self.receipts).await?,
                lake.write("logs", first, last, &self.logs).await?,
                lake.write("token_transfers", first, last, &self.token_transfers).await?,
            ];
            if let Some(traces) = &self.traces {
                partitions.push(lake.write("traces", first, last, traces).await?);
            }
            Ok(partitions)
        })
    }
}

/// EVM's lake tables, by ethereum-etl's names.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvmTables;

impl LakeTables<EvmBlock> for EvmTables {
    type Rows = EvmRows;

    fn rows(&self, _number: u64, block: &EvmBlock) -> Result<EvmRows, String> {
        rows_of(block)
    }
}

/// A dataset's rows (`bigquery.rs`) go to the lake as they are.
impl LakeTables<EvmRows> for EvmTables {
    type Rows = EvmRows;

    fn rows(&self, _number: u64, rows: &EvmRows) -> Result<EvmRows, String> {
        Ok(rows.clone())
    }
}
