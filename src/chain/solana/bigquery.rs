//! BigQuery's public Solana dataset (`crypto_solana_mainnet_us`,
//! blockchain-etl's tables) as a [`Dataset`]: the generic reader
//! (`bigquery/source.rs`) queries each table over a batch's slots; here a
//! slot's rows are typed into the lake's rows and deduplicated by each
//! table's key (the dataset has duplicated transactions: its own release
//! notes count 18,879 missing or duplicated), and a block with fewer
//! transaction rows than its `transaction_count` is incomplete. Slots the
//! dataset does not list were skipped by the chain unless a node says
//! otherwise.

use super::SolanaBlock;
use super::rows::Rows;
use crate::bigquery::source::{BlockTables, Dataset, keep_first, numbers_as_text};
use crate::pipeline::BlockNumber;

/// The Solana dataset's tables and how its rows become ours.
pub struct SolanaDataset;

impl Dataset for SolanaDataset {
    type Rows = Rows;
    type Block = SolanaBlock;

    /// Our table → the dataset's, as Google names them.
    const TABLES: &'static [(&'static str, &'static str)] = &[
        ("blocks", "Blocks"),
        ("block_rewards", "Block Rewards"),
        ("transactions", "Transactions"),
        ("instructions", "Instructions"),
        ("token_transfers", "Token Transfers"),
        ("accounts", "Accounts"),
        ("tokens", "Tokens"),
    ];
    const OPTIONAL: &'static [&'static str] = &["accounts", "tokens"];
    const NUMBER: &'static str = "slot";
    const TIME: &'static str = "block_timestamp";
    const BLOCK_COLUMN: &'static str = "block_slot";
    const NOUN: &'static str = "slot";
    const EVERY_NUMBER_IS_A_BLOCK: bool = false;

    fn rows(&self, mut block: BlockTables) -> Result<(Rows, usize), String> {
        block.values_mut("accounts").iter_mut().for_each(|row| numbers_as_text(row, &["token_amount"]));
        let mut rows = Rows {
            blocks: block.typed("blocks")?,
            block_rewards: block.typed("block_rewards")?,
            transactions: block.typed("transactions")?,
            instructions: block.typed("instructions")?,
            token_transfers: block.typed("token_transfers")?,
            accounts: block.typed("accounts")?,
            tokens: block.typed("tokens")?,
        };
        let duplicates = keep_first(&mut rows.blocks, |b| b.slot)
            + keep_first(&mut rows.block_rewards, |r| (r.pubkey.clone(), r.reward_type.clone()))
            + keep_first(&mut rows.transactions, |t| t.signature.clone())
            + keep_first(&mut rows.instructions, |i| (i.tx_signature.clone(), i.parent_index, i.index))
            + keep_first(&mut rows.token_transfers, |t| serde_json::to_string(t).unwrap_or_default())
            + keep_first(&mut rows.accounts, |a| (a.pubkey.clone(), a.tx_signature.clone()))
            + keep_first(&mut rows.tokens, |t| (t.mint.clone(), t.tx_signature.clone()));
        if let Some(count) = rows.blocks[0].transaction_count
            && (rows.transactions.len() as u64) < count
        {
            let have = rows.transactions.len();
            return Err(block.incomplete(format!("the dataset has {have} of the block's {count} transactions")));
        }
        Ok((rows, duplicates))
    }

    fn node_rows(&self, number: BlockNumber, block: &SolanaBlock) -> Result<Rows, String> {
        super::rows::block_rows(number, block)
    }
}
