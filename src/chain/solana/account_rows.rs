//! The dataset's two tables of account state: `Accounts` (an account as
//! `getAccountInfo` answered, `jsonParsed`, when blockchain-etl retrieved it
//! after a transaction touched it) and `Tokens` (Metaplex token metadata).
//! They are snapshots taken at `retrieval_timestamp`, not block content, so
//! only the BigQuery source fills them; RPC ingestion derives the block
//! tables alone (`docs/lake.md`). One struct per table, columns as the
//! dataset names them (`tests/data/solana/bigquery/schemas/`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountStateRow {
    pub block_slot: u64,
    /// Microseconds since the epoch (BigQuery TIMESTAMP).
    pub block_timestamp: Option<i64>,
    pub block_hash: String,
    pub pubkey: String,
    /// The transaction after which the account was retrieved.
    pub tx_signature: String,
    /// When it was retrieved (µs): the state is as of then.
    pub retrieval_timestamp: i64,
    pub executable: Option<bool>,
    pub lamports: Option<u64>,
    pub owner: Option<String>,
    /// Signed: agave's `u64::MAX` sentinel does not fit BigQuery's INTEGER.
    pub rent_epoch: Option<i64>,
    pub program: Option<String>,
    pub space: Option<u64>,
    pub account_type: Option<String>,
    pub is_native: Option<bool>,
    pub mint: Option<String>,
    pub state: Option<String>,
    /// A NUMERIC with decimals, kept as its decimal text (see [`numbers_as_text`](crate::bigquery::source::numbers_as_text)).
    pub token_amount: Option<String>,
    pub token_amount_decimals: Option<u32>,
    pub program_data: Option<String>,
    #[serde(default)]
    pub authorized_voters: Vec<AuthorizedVoter>,
    pub authorized_withdrawer: Option<String>,
    #[serde(default)]
    pub prior_voters: Vec<PriorVoter>,
    pub node_pubkey: Option<String>,
    pub commission: Option<u32>,
    #[serde(default)]
    pub epoch_credits: Vec<EpochCredits>,
    #[serde(default)]
    pub votes: Vec<Vote>,
    pub root_slot: Option<u64>,
    #[serde(default)]
    pub last_timestamp: Vec<LastTimestamp>,
    #[serde(default)]
    pub data: Vec<AccountData>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthorizedVoter {
    pub authorized_voter: Option<String>,
    pub epoch: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PriorVoter {
    pub authorized_pubkey: Option<String>,
    pub epoch_of_last_authorized_switch: Option<u64>,
    pub target_epoch: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochCredits {
    pub credits: Option<String>,
    pub epoch: Option<u64>,
    pub previous_credits: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub confirmation_count: Option<u64>,
    pub slot: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastTimestamp {
    pub slot: Option<u64>,
    /// Microseconds since the epoch.
    pub timestamp: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountData {
    pub raw: Option<String>,
    pub encoding: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenRow {
    pub block_slot: Option<u64>,
    pub block_timestamp: Option<i64>,
    pub block_hash: Option<String>,
    pub tx_signature: Option<String>,
    pub retrieval_timestamp: i64,
    pub is_nft: Option<bool>,
    pub mint: Option<String>,
    pub update_authority: Option<String>,
    pub name: Option<String>,
    pub symbol: Option<String>,
    pub uri: Option<String>,
    pub seller_fee_basis_points: Option<u64>,
    #[serde(default)]
    pub creators: Vec<Creator>,
    pub primary_sale_happened: Option<bool>,
    pub is_mutable: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Creator {
    pub address: Option<String>,
    pub verified: Option<bool>,
    pub share: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_amount_is_kept_as_decimal_text() {
        let mut row = serde_json::json!({
            "block_slot": 1, "block_hash": "h", "pubkey": "p", "tx_signature": "s",
            "retrieval_timestamp": 5, "token_amount": 12.5
        });
        crate::bigquery::source::numbers_as_text(&mut row, &["token_amount"]);
        let row: AccountStateRow = serde_json::from_value(row).unwrap();
        assert_eq!(row.token_amount.as_deref(), Some("12.5"));
    }

    #[test]
    fn both_tables_have_an_arrow_schema() {
        crate::lake::schema_of::<AccountStateRow>().unwrap();
        crate::lake::schema_of::<TokenRow>().unwrap();
    }
}
