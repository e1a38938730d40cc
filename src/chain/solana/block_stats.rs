//! A Solana block's aggregates for the chain-metrics sink
//! (`pipeline/sinks/chain_metrics.rs`): transactions by outcome and kind,
//! fees, priority fees and compute units, in lamports and compute units.

use solana_message::VersionedMessage;
use solana_pubkey::Pubkey;
use solana_transaction_status::{ConfirmedBlock, TransactionWithStatusMeta};

use super::programs::VOTE_PROGRAM;
use crate::pipeline::sinks::chain_metrics::BlockStats;

/// Lamports per signature: the base fee, unchanged on every cluster since
/// genesis; what a transaction pays above it is its priority fee.
pub const LAMPORTS_PER_SIGNATURE: u64 = 5_000;

const VOTE: Pubkey = Pubkey::from_str_const(VOTE_PROGRAM);

/// A transaction whose every instruction is the vote program's.
fn is_vote(message: &VersionedMessage) -> bool {
    let keys = message.static_account_keys();
    let instructions = message.instructions();
    !instructions.is_empty() && instructions.iter().all(|ix| keys.get(usize::from(ix.program_id_index)) == Some(&VOTE))
}

/// The block's aggregates. A transaction stored without its metadata (early
/// history) counts as a transaction of unknown outcome, fee and cost.
pub fn block_stats(block: &ConfirmedBlock) -> BlockStats {
    let mut stats = BlockStats { time: block.block_time, ..BlockStats::default() };
    for transaction in &block.transactions {
        stats.transactions += 1;
        match transaction {
            TransactionWithStatusMeta::Complete(tx) => {
                if tx.meta.status.is_ok() {
                    stats.successful += 1;
                } else {
                    stats.failed += 1;
                }
                stats.votes += u64::from(is_vote(&tx.transaction.message));
                stats.fees += tx.meta.fee;
                let base = LAMPORTS_PER_SIGNATURE * tx.transaction.signatures.len() as u64;
                stats.priority_fees += tx.meta.fee.saturating_sub(base);
                stats.compute_units += tx.meta.compute_units_consumed.unwrap_or(0);
            }
            TransactionWithStatusMeta::MissingMetadata(tx) => {
                stats.votes += u64::from(is_vote(&VersionedMessage::Legacy(tx.message.clone())));
            }
        }
    }
    stats
}
