//! An EVM block as Chronicle moves it: the node's own JSON answers
//! (`eth_getBlockByNumber(n, true)`, the block's receipts and, where the
//! node traces, its traces: `traces.rs`), kept as sent
//! so that what `serve` answers is what the node answered, with alloy's typed
//! view of the same answers for what the layout indexes (hashes, senders,
//! recipients, logs). Parsing the typed view is also the check that a
//! block is well-formed: a block that does not parse, or whose receipts do
//! not belong to its transactions, never reaches a sink.

use alloy::consensus::Transaction as _;
use alloy::network::{AnyRpcBlock, AnyTransactionReceipt, TransactionResponse as _};
use alloy::primitives::{Address, B256};
use serde::Deserialize;
use serde_json::Value;

use super::trace_rows::{BlockContext, TraceRow, trace_rows};
use super::traces::BlockTraces;

/// One block with its receipts.
#[derive(Clone, Debug)]
pub struct EvmBlock {
    /// The block with full transaction objects, as the node sent it.
    pub block: Value,
    /// The receipts, in transaction order, as the node sent them.
    pub receipts: Value,
    /// The block's traces, if the node was asked for them and serves them.
    pub traces: Option<BlockTraces>,
    /// What the layout needs of it, typed.
    pub index: BlockIndex,
}

/// The fields of a block the store indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockIndex {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: u64,
    pub transactions: Vec<TransactionIndex>,
}

/// A transaction's hash and the addresses it touched (sender, recipient,
/// the contract it created, the contracts whose logs it emitted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionIndex {
    pub hash: B256,
    pub addresses: Vec<Address>,
}

/// Why a node's answer is not a block Chronicle can store.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    #[error("block {number}: not an EVM block with full transactions: {reason}")]
    Block { number: u64, reason: String },
    #[error("block {number}: receipts: {reason}")]
    Receipts { number: u64, reason: String },
    #[error("block {number}: traces: {reason}")]
    Traces { number: u64, reason: String },
    #[error("block {number}: the node answered block {answered}")]
    WrongNumber { number: u64, answered: u64 },
}

impl EvmBlock {
    /// Checks and indexes the node's answers for block `number`.
    pub fn from_json(number: u64, block: Value, receipts: Value) -> Result<Self, BlockError> {
        let typed =
            AnyRpcBlock::deserialize(&block).map_err(|e| BlockError::Block { number, reason: e.to_string() })?;
        let typed_receipts = Vec::<AnyTransactionReceipt>::deserialize(&receipts)
            .map_err(|e| BlockError::Receipts { number, reason: e.to_string() })?;
        let header = &typed.header;
        if header.number != number {
            return Err(BlockError::WrongNumber { number, answered: header.number });
        }
        let transactions = typed
            .transactions
            .as_transactions()
            .ok_or_else(|| BlockError::Block { number, reason: "transactions are hashes, not objects".into() })?;
        if transactions.len() != typed_receipts.len() {
            return Err(BlockError::Receipts {
                number,
                reason: format!("{} receipts for {} transactions", typed_receipts.len(), transactions.len()),
            });
        }
        let mut indexed = Vec::with_capacity(transactions.len());
        for (position, (tx, receipt)) in transactions.iter().zip(&typed_receipts).enumerate() {
            let hash = tx.tx_hash();
            if receipt.transaction_hash != hash {
                return Err(BlockError::Receipts {
                    number,
                    reason: format!(
                        "receipt {position} is for {}, transaction {position} is {hash}",
                        receipt.transaction_hash
                    ),
                });
            }
            if receipt.block_hash.is_some_and(|h| h != header.hash) {
                return Err(BlockError::Receipts { number, reason: format!("receipt {position} is of another block") });
            }
            let mut addresses = vec![tx.from()];
            addresses.extend(tx.to());
            addresses.extend(receipt.contract_address);
            addresses.extend(receipt.inner.inner.logs().iter().map(|log| log.address()));
            addresses.sort();
            addresses.dedup();
            indexed.push(TransactionIndex { hash, addresses });
        }
        let index = BlockIndex {
            number,
            hash: header.hash,
            parent_hash: header.parent_hash,
            timestamp: header.timestamp,
            transactions: indexed,
        };
        Ok(Self { block, receipts, traces: None, index })
    }

    /// The block with its traces, checked to be this block's and to map to
    /// lake rows (a trace that would fail the lake later fails here, before
    /// anything of the block is stored).
    pub fn with_traces(mut self, traces: Option<BlockTraces>) -> Result<Self, BlockError> {
        if let Some(traces) = &traces {
            let number = self.index.number;
            let failed = |reason| BlockError::Traces { number, reason };
            traces.check(number, &format!("{:#x}", self.index.hash), &self.transaction_hashes()).map_err(failed)?;
            self.trace_rows(traces).map_err(failed)?;
        }
        self.traces = traces;
        Ok(self)
    }

    /// The lake's trace rows of `traces`, as this block's.
    pub fn trace_rows(&self, traces: &BlockTraces) -> Result<Vec<TraceRow>, String> {
        let (hash, transactions) = (format!("{:#x}", self.index.hash), self.transaction_hashes());
        let timestamp = i64::try_from(self.index.timestamp).unwrap_or(i64::MAX).saturating_mul(1_000_000);
        let block = BlockContext { number: self.index.number, hash: &hash, timestamp, transactions: &transactions };
        trace_rows(&block, traces)
    }

    /// The transactions' hashes, in block order (`0x…`).
    pub fn transaction_hashes(&self) -> Vec<String> {
        self.index.transactions.iter().map(|tx| format!("{:#x}", tx.hash)).collect()
    }

    /// The block as `eth_getBlockByNumber(n, false)` answers it: transaction hashes only.
    pub fn with_hashes(block: &Value) -> Value {
        let mut block = block.clone();
        if let Some(Value::Array(transactions)) = block.get_mut("transactions") {
            for tx in transactions.iter_mut() {
                if let Some(hash) = tx.get("hash").cloned() {
                    *tx = hash;
                }
            }
        }
        block
    }
}
