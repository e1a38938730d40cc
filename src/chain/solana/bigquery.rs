//! BigQuery's public Solana dataset as a source of rows
//! (`crypto_solana_mainnet_us`, blockchain-etl's tables): a batch's blocks
//! are read with one query per table over its slot range, grouped by slot,
//! and deduplicated by each table's key (the dataset has duplicated
//! transactions: its own release notes count 18,879 missing or duplicated).
//! The rows go to the lake; the canonical store is not fed from here (the
//! rows do not carry the raw transactions agave's layout stores).
//!
//! Completeness: with a node to check against, a block the chain produced
//! that the dataset lacks, or a block with fewer transaction rows than its
//! `transaction_count`, is a gap naming what is missing (recorded in the
//! catalog and counted in status), or, with `repair`, is taken from the node
//! and derived as RPC ingestion derives it. Without a node, a slot the
//! dataset does not list counts as skipped by the chain.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;
use solana_transaction_status::ConfirmedBlock;

use super::rows::Rows;
use crate::bigquery::{BigQuery, QueryError};
use crate::pipeline::config::BigQueryDataset;
use crate::pipeline::{BlockNumber, BlockSource, Missing};

/// Our table → the dataset's, as Google names them.
const PUBLIC_TABLES: [(&str, &str); 5] = [
    ("blocks", "Blocks"),
    ("block_rewards", "Block Rewards"),
    ("transactions", "Transactions"),
    ("instructions", "Instructions"),
    ("token_transfers", "Token Transfers"),
];

/// The node the dataset is checked against.
pub struct Completeness {
    pub node: Arc<dyn BlockSource<ConfirmedBlock>>,
    pub repair: bool,
}

pub struct BigQuerySource {
    client: BigQuery,
    check: Option<Completeness>,
    dataset: BigQueryDataset,
    /// A batch's blocks, read with its slot list, taken by `block`.
    prefetched: Mutex<BTreeMap<BlockNumber, Result<Rows, String>>>,
}

impl BigQuerySource {
    pub async fn connect(dataset: BigQueryDataset, check: Option<Completeness>) -> Result<Self, QueryError> {
        let client = BigQuery::connect(dataset.access.clone()).await?;
        Ok(Self { client, check, dataset, prefetched: Mutex::default() })
    }

    /// The dataset's name of our table `table`, quoted for SQL.
    fn table(&self, table: &str) -> String {
        let name = self.dataset.tables.get(table).map(String::as_str).unwrap_or_else(|| {
            PUBLIC_TABLES.iter().find(|(ours, _)| *ours == table).map(|(_, theirs)| *theirs).unwrap_or(table)
        });
        format!("`{}.{name}`", self.dataset.dataset)
    }

    /// Every table's rows of slots `start..=end`, by slot; a slot whose rows do
    /// not fit the schema is an error naming the table and slot.
    async fn read(
        &self,
        start: BlockNumber,
        end: BlockNumber,
    ) -> Result<BTreeMap<BlockNumber, Result<Rows, String>>, String> {
        let range = |column: &str| format!("{column} BETWEEN {start} AND {end}");
        let query = |table: &str, column: &str| {
            format!("SELECT * FROM {} WHERE {} ORDER BY {column}", self.table(table), range(column))
        };
        let read = |table: &'static str, column: &'static str| {
            let sql = query(table, column);
            async move { self.client.rows(&sql).await.map_err(|e| format!("table {table}, slots {start}..={end}: {e}")) }
        };
        let (blocks, rewards, transactions, instructions, transfers) = futures::try_join!(
            read("blocks", "slot"),
            read("block_rewards", "block_slot"),
            read("transactions", "block_slot"),
            read("instructions", "block_slot"),
            read("token_transfers", "block_slot"),
        )?;
        let mut by_slot: BTreeMap<BlockNumber, Result<Rows, String>> = BTreeMap::new();
        group(&mut by_slot, "blocks", "slot", blocks, |rows, row| rows.blocks.push(row));
        group(&mut by_slot, "block_rewards", "block_slot", rewards, |rows, row| rows.block_rewards.push(row));
        group(&mut by_slot, "transactions", "block_slot", transactions, |rows, row| rows.transactions.push(row));
        group(&mut by_slot, "instructions", "block_slot", instructions, |rows, row| rows.instructions.push(row));
        group(&mut by_slot, "token_transfers", "block_slot", transfers, |rows, row| rows.token_transfers.push(row));
        for (slot, rows) in by_slot.iter_mut() {
            if let Ok(rows) = rows {
                let duplicates = deduplicate(rows);
                if duplicates > 0 {
                    tracing::warn!(slot, duplicates, "the dataset repeats rows of this block; each is kept once");
                }
            }
        }
        Ok(by_slot)
    }
}

/// Adds `table`'s rows to their slots, or makes the slot an error.
fn group<T: DeserializeOwned>(
    by_slot: &mut BTreeMap<BlockNumber, Result<Rows, String>>,
    table: &str,
    column: &str,
    rows: Vec<Value>,
    add: impl Fn(&mut Rows, T),
) {
    for row in rows {
        let Some(slot) = row.get(column).and_then(Value::as_u64) else {
            tracing::warn!(table, "a row without {column}: skipped");
            continue;
        };
        let entry = by_slot.entry(slot).or_insert_with(|| Ok(Rows::default()));
        let Ok(rows) = entry else { continue };
        // The path names the column (`signature: invalid type: null…`).
        match serde_path_to_error::deserialize::<_, T>(row) {
            Ok(row) => add(rows, row),
            Err(e) => *entry = Err(format!("table {table}, slot {slot}: a row does not fit the schema: {e}")),
        }
    }
}

/// Keeps the first of rows with the same key; returns how many were dropped.
fn deduplicate(rows: &mut Rows) -> usize {
    fn keep<T, K: Ord>(items: &mut Vec<T>, key: impl Fn(&T) -> K) -> usize {
        let mut seen = BTreeSet::new();
        let before = items.len();
        items.retain(|item| seen.insert(key(item)));
        before - items.len()
    }
    keep(&mut rows.blocks, |b| b.slot)
        + keep(&mut rows.block_rewards, |r| (r.pubkey.clone(), r.reward_type.clone()))
        + keep(&mut rows.transactions, |t| t.signature.clone())
        + keep(&mut rows.instructions, |i| (i.tx_signature.clone(), i.parent_index, i.index))
        + keep(&mut rows.token_transfers, |t| serde_json::to_string(t).unwrap_or_default())
}

#[async_trait]
impl BlockSource<Rows> for BigQuerySource {
    async fn produced(&self, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, String> {
        let mut read = self.read(start, end).await?;
        for (slot, rows) in read.iter_mut() {
            let complete = match rows {
                Ok(r) if r.blocks.is_empty() => Err(format!("slot {slot}: rows without a Blocks row")),
                Ok(r) => match r.blocks[0].transaction_count {
                    Some(count) if (r.transactions.len() as u64) < count => Err(format!(
                        "slot {slot}: the dataset has {} of the block's {count} transactions",
                        r.transactions.len()
                    )),
                    _ => Ok(()),
                },
                Err(_) => Ok(()),
            };
            if let Err(reason) = complete {
                *rows = Err(reason);
            }
        }
        // Blocks the chain produced that the dataset lacks.
        if let Some(check) = &self.check {
            for slot in check.node.produced(start, end).await.map_err(|e| format!("checking against the node: {e}"))? {
                read.entry(slot).or_insert_with(|| {
                    Err(format!("slot {slot}: the chain produced this block; the dataset lacks it"))
                });
            }
        }
        let listed = read.keys().copied().collect();
        self.prefetched.lock().expect("prefetched rows").extend(read);
        Ok(listed)
    }

    async fn block(&self, number: BlockNumber) -> Result<Rows, Missing> {
        let mut taken = self.prefetched.lock().expect("prefetched rows").remove(&number);
        if taken.is_none() {
            // A gap from an earlier run: read (and check) it alone.
            self.produced(number, number).await.map_err(Missing::Gap)?;
            taken = self.prefetched.lock().expect("prefetched rows").remove(&number);
        }
        let rows = taken.ok_or(Missing::Skipped)?;
        match (rows, &self.check) {
            (Ok(rows), _) => Ok(rows),
            (Err(reason), Some(Completeness { node, repair: true })) => {
                let block = node.block(number).await?;
                tracing::warn!(slot = number, %reason, "taken from the node instead");
                super::rows::block_rows(number, &block).map_err(Missing::Gap)
            }
            (Err(reason), _) => Err(Missing::Gap(reason)),
        }
    }

    async fn tip(&self) -> Result<BlockNumber, String> {
        let sql = format!("SELECT MAX(slot) AS slot FROM {}", self.table("blocks"));
        let rows = self.client.rows(&sql).await.map_err(|e| format!("table blocks: {e}"))?;
        rows.first()
            .and_then(|r| r.get("slot"))
            .and_then(Value::as_u64)
            .ok_or_else(|| "the dataset has no blocks".into())
    }
}
