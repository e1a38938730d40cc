//! Solana's normalized rows: the tables of BigQuery's public Solana dataset
//! (`crypto_solana_mainnet_us`, blockchain-etl's schema: `tests/data/solana/bigquery/`),
//! one Rust struct per table. The struct is the definition: its Arrow
//! schema (`lake::schema_of`) is traced from it, and the BigQuery source
//! reads into the same structs.
//!
//! Rows derive from a block as a node's `getBlock` answers it with
//! `jsonParsed` ([`UiConfirmedBlock`]), as blockchain-etl derives them; a
//! stored block is encoded that way first ([`block_rows`]). Where
//! blockchain-etl's two exporters disagree we take the correct value and say
//! so (`docs/lake.md`): the requested slot, not `parentSlot + 1`; the leader
//! from the `Fee` reward, not `rewards[0]`; transfer amounts of the checked
//! and system instructions.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use solana_transaction_status::option_serializer::OptionSerializer;
use solana_transaction_status::{
    BlockEncodingOptions, ConfirmedBlock, EncodedTransaction, EncodedTransactionWithStatusMeta, TransactionDetails,
    UiConfirmedBlock, UiInstruction, UiMessage, UiParsedInstruction, UiTransactionEncoding,
};

use super::account_rows::{AccountStateRow, TokenRow};
use super::token_transfers::token_transfers;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockRow {
    pub slot: u64,
    pub block_hash: String,
    /// Microseconds since the epoch (BigQuery TIMESTAMP).
    pub block_timestamp: Option<i64>,
    pub height: Option<u64>,
    pub previous_block_hash: Option<String>,
    pub transaction_count: Option<u64>,
    /// Lamports of the leader's `Fee` reward.
    pub leader_reward: Option<i64>,
    pub leader: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockRewardRow {
    pub block_slot: u64,
    pub block_hash: String,
    pub block_timestamp: Option<i64>,
    pub commission: Option<u8>,
    pub lamports: Option<i64>,
    pub post_balance: Option<u64>,
    pub pubkey: Option<String>,
    /// `Fee`, `Rent`, `Staking`, `Voting`, or `Unspecified`.
    pub reward_type: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransactionRow {
    pub block_slot: u64,
    pub block_hash: String,
    pub block_timestamp: Option<i64>,
    pub recent_block_hash: Option<String>,
    pub signature: String,
    pub index: u32,
    pub fee: Option<u64>,
    /// `Success` or `Failure`; none without status metadata.
    pub status: Option<String>,
    /// The transaction error as agave displays it.
    pub err: Option<String>,
    pub compute_units_consumed: Option<u64>,
    pub accounts: Vec<AccountRow>,
    pub log_messages: Vec<String>,
    pub balance_changes: Vec<BalanceChange>,
    pub pre_token_balances: Vec<TokenBalance>,
    pub post_token_balances: Vec<TokenBalance>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountRow {
    pub pubkey: String,
    pub signer: bool,
    pub writable: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BalanceChange {
    pub account: String,
    pub before: u64,
    pub after: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenBalance {
    pub account_index: u8,
    pub mint: String,
    pub owner: Option<String>,
    /// Raw amount in the token's smallest unit (BIGNUMERIC: a decimal string).
    pub amount: String,
    pub decimals: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstructionRow {
    pub block_slot: u64,
    pub block_timestamp: Option<i64>,
    pub block_hash: String,
    pub tx_signature: String,
    /// Position in the transaction's instructions, or within its inner group.
    pub index: u32,
    /// For an inner instruction: the top-level instruction it ran under.
    pub parent_index: Option<u32>,
    /// Base58 keys of an instruction the node does not parse.
    pub accounts: Vec<String>,
    /// Base58 data of an instruction the node does not parse.
    pub data: Option<String>,
    /// A parsed instruction whose parse is a string (a memo): that string.
    pub parsed: Option<String>,
    pub program: Option<String>,
    pub program_id: String,
    pub instruction_type: Option<String>,
    /// The parsed `info`, by key (sorted), each value as JSON text.
    pub params: Vec<Param>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenTransferRow {
    pub block_slot: u64,
    pub block_timestamp: Option<i64>,
    pub block_hash: String,
    pub tx_signature: String,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub authority: Option<String>,
    pub value: Option<u64>,
    pub decimals: Option<u8>,
    pub mint: Option<String>,
    pub mint_authority: Option<String>,
    pub fee: Option<u64>,
    pub fee_decimals: Option<u8>,
    pub memo: Option<String>,
    /// `spl-transfer`, `spl-transfer-with-fee`, `burn`, `mintTo` or `transfer` (system).
    pub transfer_type: String,
}

/// Every table's rows of some blocks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    pub blocks: Vec<BlockRow>,
    pub block_rewards: Vec<BlockRewardRow>,
    pub transactions: Vec<TransactionRow>,
    pub instructions: Vec<InstructionRow>,
    pub token_transfers: Vec<TokenTransferRow>,
    /// Account snapshots and token metadata: from a dataset only (`account_rows.rs`).
    pub accounts: Vec<AccountStateRow>,
    pub tokens: Vec<TokenRow>,
}

impl Rows {
    /// Rows over all tables.
    pub fn count(&self) -> usize {
        self.blocks.len()
            + self.block_rewards.len()
            + self.transactions.len()
            + self.instructions.len()
            + self.token_transfers.len()
            + self.accounts.len()
            + self.tokens.len()
    }

    pub fn extend(&mut self, other: Rows) {
        self.blocks.extend(other.blocks);
        self.block_rewards.extend(other.block_rewards);
        self.transactions.extend(other.transactions);
        self.instructions.extend(other.instructions);
        self.token_transfers.extend(other.token_transfers);
        self.accounts.extend(other.accounts);
        self.tokens.extend(other.tokens);
    }
}

/// The block context every row of a block carries.
#[derive(Clone, Debug)]
pub struct BlockContext {
    pub slot: u64,
    pub hash: String,
    pub timestamp: Option<i64>,
}

/// The rows of a stored block: encoded as a node answers `getBlock` with
/// `jsonParsed` (agave's own encoder and instruction parsers), then derived.
pub fn block_rows(slot: u64, block: &ConfirmedBlock) -> Result<Rows, String> {
    let options = BlockEncodingOptions {
        transaction_details: TransactionDetails::Full,
        show_rewards: true,
        max_supported_transaction_version: Some(0),
    };
    let encoded = block
        .clone()
        .encode_with_options(UiTransactionEncoding::JsonParsed, options)
        .map_err(|e| format!("slot {slot}: encoding the block: {e}"))?;
    Ok(rows_of(slot, &encoded))
}

/// The rows of a `getBlock` answer (`jsonParsed`, or signatures only: then
/// the block and its rewards).
pub fn rows_of(slot: u64, block: &UiConfirmedBlock) -> Rows {
    let context = BlockContext {
        slot,
        hash: block.blockhash.clone(),
        timestamp: block.block_time.map(|t| t.saturating_mul(1_000_000)),
    };
    let rewards = block.rewards.as_deref().unwrap_or_default();
    let leader = rewards.iter().find(|r| r.reward_type == Some(solana_transaction_status::RewardType::Fee));
    let transaction_count =
        block.transactions.as_ref().map(Vec::len).or_else(|| block.signatures.as_ref().map(Vec::len));
    let mut rows = Rows {
        blocks: vec![BlockRow {
            slot,
            block_hash: block.blockhash.clone(),
            block_timestamp: context.timestamp,
            height: block.block_height,
            previous_block_hash: Some(block.previous_blockhash.clone()),
            transaction_count: transaction_count.map(|n| n as u64),
            leader_reward: leader.map(|r| r.lamports),
            leader: leader.map(|r| r.pubkey.clone()),
        }],
        block_rewards: rewards
            .iter()
            .map(|r| BlockRewardRow {
                block_slot: slot,
                block_hash: context.hash.clone(),
                block_timestamp: context.timestamp,
                commission: r.commission,
                lamports: Some(r.lamports),
                post_balance: Some(r.post_balance),
                pubkey: Some(r.pubkey.clone()),
                reward_type: Some(reward_type(r.reward_type).into()),
            })
            .collect(),
        ..Rows::default()
    };
    for (index, transaction) in block.transactions.iter().flatten().enumerate() {
        rows.extend(transaction_rows(&context, index as u32, transaction));
    }
    rows
}

/// The transaction, instruction and token-transfer rows of one transaction.
pub fn transaction_rows(context: &BlockContext, index: u32, encoded: &EncodedTransactionWithStatusMeta) -> Rows {
    let EncodedTransaction::Json(transaction) = &encoded.transaction else {
        // Only a jsonParsed (or json) encoding carries the parsed fields.
        return Rows::default();
    };
    let signature = transaction.signatures.first().cloned().unwrap_or_default();
    let (accounts, recent, top_level): (Vec<AccountRow>, _, &[UiInstruction]) = match &transaction.message {
        UiMessage::Parsed(message) => (
            message
                .account_keys
                .iter()
                .map(|a| AccountRow { pubkey: a.pubkey.clone(), signer: a.signer, writable: a.writable })
                .collect(),
            message.recent_blockhash.clone(),
            &message.instructions,
        ),
        UiMessage::Raw(message) => (
            message
                .account_keys
                .iter()
                .enumerate()
                .map(|(i, key)| AccountRow {
                    pubkey: key.clone(),
                    signer: i < usize::from(message.header.num_required_signatures),
                    writable: false,
                })
                .collect(),
            message.recent_blockhash.clone(),
            &[],
        ),
    };
    let meta = encoded.meta.as_ref();
    let mut row = TransactionRow {
        block_slot: context.slot,
        block_hash: context.hash.clone(),
        block_timestamp: context.timestamp,
        recent_block_hash: Some(recent),
        signature: signature.clone(),
        index,
        ..TransactionRow::default()
    };
    if let Some(meta) = meta {
        row.fee = Some(meta.fee);
        row.status = Some(if meta.err.is_none() { "Success" } else { "Failure" }.into());
        row.err = meta.err.as_ref().map(|e| e.to_string());
        row.compute_units_consumed = option(&meta.compute_units_consumed);
        row.log_messages = option(&meta.log_messages).unwrap_or_default();
        row.balance_changes = accounts
            .iter()
            .zip(meta.pre_balances.iter().zip(&meta.post_balances))
            .map(|(account, (before, after))| BalanceChange {
                account: account.pubkey.clone(),
                before: *before,
                after: *after,
            })
            .collect();
        let balances = |list: &OptionSerializer<Vec<_>>| {
            option(list)
                .unwrap_or_default()
                .into_iter()
                .map(|b: solana_transaction_status::UiTransactionTokenBalance| TokenBalance {
                    account_index: b.account_index,
                    mint: b.mint,
                    owner: option(&b.owner),
                    amount: b.ui_token_amount.amount,
                    decimals: b.ui_token_amount.decimals,
                })
                .collect()
        };
        row.pre_token_balances = balances(&meta.pre_token_balances);
        row.post_token_balances = balances(&meta.post_token_balances);
    }
    row.accounts = accounts;
    // Top-level instructions, then each inner group in order, numbered within it.
    let mut groups: Vec<(Option<u32>, &[UiInstruction])> = vec![(None, top_level)];
    let inner = meta.and_then(|m| match &m.inner_instructions {
        OptionSerializer::Some(inner) => Some(inner),
        _ => None,
    });
    for group in inner.into_iter().flatten() {
        groups.push((Some(u32::from(group.index)), &group.instructions));
    }
    let mut rows = Rows { transactions: vec![row], ..Rows::default() };
    for (parent, instructions) in groups {
        let group: Vec<InstructionRow> = instructions
            .iter()
            .enumerate()
            .map(|(i, instruction)| instruction_row(context, &signature, i as u32, parent, instruction))
            .collect();
        rows.token_transfers.extend(token_transfers(&group));
        rows.instructions.extend(group);
    }
    rows
}

/// A reward's type as the dataset (and the node's JSON) spells it.
fn reward_type(kind: Option<solana_transaction_status::RewardType>) -> &'static str {
    use solana_transaction_status::RewardType;
    match kind {
        Some(RewardType::Fee) => "Fee",
        Some(RewardType::Rent) => "Rent",
        Some(RewardType::Staking) => "Staking",
        Some(RewardType::Voting) => "Voting",
        Some(RewardType::DeactivatedStake) => "DeactivatedStake",
        None => "Unspecified",
    }
}

fn option<T: Clone>(value: &OptionSerializer<T>) -> Option<T> {
    match value {
        OptionSerializer::Some(v) => Some(v.clone()),
        _ => None,
    }
}

fn instruction_row(
    context: &BlockContext,
    signature: &str,
    index: u32,
    parent_index: Option<u32>,
    instruction: &UiInstruction,
) -> InstructionRow {
    let mut row = InstructionRow {
        block_slot: context.slot,
        block_timestamp: context.timestamp,
        block_hash: context.hash.clone(),
        tx_signature: signature.to_string(),
        index,
        parent_index,
        ..InstructionRow::default()
    };
    match instruction {
        UiInstruction::Parsed(UiParsedInstruction::Parsed(parsed)) => {
            row.program = Some(parsed.program.clone());
            row.program_id = parsed.program_id.clone();
            match &parsed.parsed {
                Value::String(text) => row.parsed = Some(text.clone()),
                Value::Object(object) => {
                    row.instruction_type = object.get("type").and_then(Value::as_str).map(str::to_string);
                    if let Some(Value::Object(info)) = object.get("info") {
                        let mut params: Vec<Param> =
                            info.iter().map(|(k, v)| Param { key: k.clone(), value: v.to_string() }).collect();
                        params.sort_by(|a, b| a.key.cmp(&b.key));
                        row.params = params;
                    }
                }
                _ => {}
            }
        }
        UiInstruction::Parsed(UiParsedInstruction::PartiallyDecoded(decoded)) => {
            row.program_id = decoded.program_id.clone();
            row.accounts = decoded.accounts.clone();
            row.data = Some(decoded.data.clone());
        }
        UiInstruction::Compiled(compiled) => {
            row.data = Some(compiled.data.clone());
        }
    }
    row
}

impl InstructionRow {
    /// The value of a parsed param, as JSON.
    pub fn param(&self, key: &str) -> Option<Value> {
        let param = self.params.iter().find(|p| p.key == key)?;
        serde_json::from_str(&param.value).ok()
    }
}

impl crate::pipeline::sinks::lake::LakeRows for Rows {
    fn append(&mut self, rows: Rows) {
        self.extend(rows);
    }

    fn write<'a>(
        &'a self,
        lake: &'a crate::lake::Lake,
        first: u64,
        last: u64,
    ) -> futures::future::BoxFuture<'a, Result<Vec<crate::catalog::LakePartition>, crate::lake::LakeError>> {
        Box::pin(async move {
            let mut partitions = vec![
                lake.write("blocks", first, last, &self.blocks).await?,
                lake.write("block_rewards", first, last, &self.block_rewards).await?,
                lake.write("transactions", first, last, &self.transactions).await?,
                lake.write("instructions", first, last, &self.instructions).await?,
                lake.write("token_transfers", first, last, &self.token_transfers).await?,
            ];
            // Only a dataset has these: no partition claims a range holds none.
            if !self.accounts.is_empty() {
                partitions.push(lake.write("accounts", first, last, &self.accounts).await?);
            }
            if !self.tokens.is_empty() {
                partitions.push(lake.write("tokens", first, last, &self.tokens).await?);
            }
            Ok(partitions)
        })
    }
}

/// Solana's lake tables, by the dataset's names: from stored blocks (RPC
/// ingestion) or from rows as a dataset gives them (BigQuery).
#[derive(Clone, Copy, Debug, Default)]
pub struct SolanaTables;

impl crate::pipeline::sinks::lake::LakeTables<super::SolanaBlock> for SolanaTables {
    type Rows = Rows;

    fn rows(&self, number: u64, block: &super::SolanaBlock) -> Result<Rows, String> {
        block_rows(number, block)
    }
}

impl crate::pipeline::sinks::lake::LakeTables<Rows> for SolanaTables {
    type Rows = Rows;

    fn rows(&self, _: u64, block: &Rows) -> Result<Rows, String> {
        Ok(block.clone())
    }
}
