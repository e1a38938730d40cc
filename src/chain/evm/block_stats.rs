//! An EVM block's aggregates for the chain-metrics sink
//! (`pipeline/sinks/chain_metrics.rs`), from the node's block and receipts:
//! transactions by outcome, fees and priority fees in gwei (a block's fees
//! in wei can pass 2^64: ~18 ETH), and gas used as the compute units.

use serde_json::Value;

use super::EvmBlock;
use super::rpc::quantity;
use crate::pipeline::sinks::chain_metrics::BlockStats;

const WEI_PER_GWEI: u128 = 1_000_000_000;

/// The block's aggregates. A transaction's fee is its receipt's `gasUsed`
/// times its `effectiveGasPrice` (the transaction's `gasPrice` where an old
/// node's receipt has none); its priority fee what it paid above the block's
/// `baseFeePerGas` (all of it before London). A receipt from before
/// Byzantium has no `status`: its transaction counts as neither successful
/// nor failed. EVM chains have no vote transactions.
pub fn block_stats(block: &EvmBlock) -> BlockStats {
    let time = i64::try_from(block.index.timestamp).ok();
    let mut stats = BlockStats { time, ..BlockStats::default() };
    let base_fee = u128::from(quantity(block.block.get("baseFeePerGas")).unwrap_or(0));
    let transactions = block.block.get("transactions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let receipts = block.receipts.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let (mut fees, mut priority_fees) = (0u128, 0u128);
    for (receipt, transaction) in receipts.iter().zip(transactions) {
        stats.transactions += 1;
        match quantity(receipt.get("status")) {
            Some(1) => stats.successful += 1,
            Some(_) => stats.failed += 1,
            None => {}
        }
        let gas = quantity(receipt.get("gasUsed")).unwrap_or(0);
        stats.compute_units += gas;
        let price = quantity(receipt.get("effectiveGasPrice")).or_else(|| quantity(transaction.get("gasPrice")));
        let price = u128::from(price.unwrap_or(0));
        fees += u128::from(gas) * price;
        priority_fees += u128::from(gas) * price.saturating_sub(base_fee);
    }
    let gwei = |wei: u128| u64::try_from(wei / WEI_PER_GWEI).unwrap_or(u64::MAX);
    (stats.fees, stats.priority_fees) = (gwei(fees), gwei(priority_fees));
    stats
}
