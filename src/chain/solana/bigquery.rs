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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::account_rows::decimal_as_text;
use super::rows::Rows;
use crate::bigquery::{BigQuery, QueryError};
use crate::pipeline::config::BigQueryDataset;
use crate::pipeline::{BlockNumber, BlockSource, Missing, SourceHead};

/// Our table → the dataset's, as Google names them.
const PUBLIC_TABLES: [(&str, &str); 7] = [
    ("blocks", "Blocks"),
    ("block_rewards", "Block Rewards"),
    ("transactions", "Transactions"),
    ("instructions", "Instructions"),
    ("token_transfers", "Token Transfers"),
    ("accounts", "Accounts"),
    ("tokens", "Tokens"),
];

/// The node the dataset is checked against.
pub struct Completeness {
    pub node: Arc<dyn BlockSource<super::SolanaBlock>>,
    pub repair: bool,
}

pub struct BigQuerySource {
    client: BigQuery,
    check: Option<Completeness>,
    dataset: BigQueryDataset,
    /// A batch's blocks, read with its slot list, taken by `block`.
    prefetched: Mutex<BTreeMap<BlockNumber, Result<Rows, String>>>,
    /// The head the last `tip` read (a follower asks for both each poll).
    last_head: Mutex<Option<SourceHead>>,
    /// Repeated rows dropped since the loop last asked.
    duplicates: AtomicU64,
}

/// How recent a block must be for the head query to find it in the
/// partitions it scans first (a dataset further behind is read whole).
const RECENT_DAYS: u32 = 3;

impl BigQuerySource {
    pub async fn connect(dataset: BigQueryDataset, check: Option<Completeness>) -> Result<Self, QueryError> {
        let client = BigQuery::connect(dataset.access.clone()).await?;
        Ok(Self {
            client,
            check,
            dataset,
            prefetched: Mutex::default(),
            last_head: Mutex::default(),
            duplicates: AtomicU64::new(0),
        })
    }

    /// Whether the dataset has our table `table` (a dataset without the
    /// account tables maps them to nothing: `--bigquery-table accounts=`).
    fn has(&self, table: &str) -> bool {
        self.dataset.tables.get(table).is_none_or(|name| !name.is_empty())
    }

    /// The dataset's name of our table `table`, quoted for SQL.
    fn table(&self, table: &str) -> String {
        let name = self.dataset.tables.get(table).map(String::as_str).unwrap_or_else(|| {
            PUBLIC_TABLES.iter().find(|(ours, _)| *ours == table).map(|(_, theirs)| *theirs).unwrap_or(table)
        });
        format!("`{}.{name}`", self.dataset.dataset)
    }

    /// Every table's rows of slots `start..=end`, by slot; a slot whose rows do
    /// not fit the schema is an error naming the table and slot. The blocks
    /// come first: their times bound the other tables' queries, so that
    /// BigQuery prunes them to the partitions (by `block_timestamp`) that hold
    /// the range instead of scanning every one.
    async fn read(
        &self,
        start: BlockNumber,
        end: BlockNumber,
    ) -> Result<BTreeMap<BlockNumber, Result<Rows, String>>, String> {
        let read = |table: &'static str, column: &'static str, times: Option<(i64, i64)>| {
            let mut sql = format!("SELECT * FROM {} WHERE {column} BETWEEN {start} AND {end}", self.table(table));
            if let Some((first, last)) = times {
                sql += &format!(" AND block_timestamp BETWEEN TIMESTAMP_MICROS({first}) AND TIMESTAMP_MICROS({last})");
            }
            sql += &format!(" ORDER BY {column}");
            async move { self.client.rows(&sql).await.map_err(|e| format!("table {table}, slots {start}..={end}: {e}")) }
        };
        let blocks = read("blocks", "slot", None).await?;
        let times = time_bounds(&blocks);
        let optional = |table: &'static str| async move {
            match self.has(table) {
                true => read(table, "block_slot", times).await,
                false => Ok(Vec::new()),
            }
        };
        let (rewards, transactions, instructions, transfers, mut accounts, tokens) = futures::try_join!(
            read("block_rewards", "block_slot", times),
            read("transactions", "block_slot", times),
            read("instructions", "block_slot", times),
            read("token_transfers", "block_slot", times),
            optional("accounts"),
            optional("tokens"),
        )?;
        accounts.iter_mut().for_each(|row| decimal_as_text(row, "token_amount"));
        let mut by_slot: BTreeMap<BlockNumber, Result<Rows, String>> = BTreeMap::new();
        group(&mut by_slot, "blocks", "slot", blocks, |rows, row| rows.blocks.push(row));
        group(&mut by_slot, "block_rewards", "block_slot", rewards, |rows, row| rows.block_rewards.push(row));
        group(&mut by_slot, "transactions", "block_slot", transactions, |rows, row| rows.transactions.push(row));
        group(&mut by_slot, "instructions", "block_slot", instructions, |rows, row| rows.instructions.push(row));
        group(&mut by_slot, "token_transfers", "block_slot", transfers, |rows, row| rows.token_transfers.push(row));
        group(&mut by_slot, "accounts", "block_slot", accounts, |rows, row| rows.accounts.push(row));
        group(&mut by_slot, "tokens", "block_slot", tokens, |rows, row| rows.tokens.push(row));
        for (slot, rows) in by_slot.iter_mut() {
            if let Ok(rows) = rows {
                let duplicates = deduplicate(rows);
                if duplicates > 0 {
                    tracing::warn!(slot, duplicates, "the dataset repeats rows of this block; each is kept once");
                    self.duplicates.fetch_add(duplicates as u64, Ordering::Relaxed);
                }
            }
        }
        Ok(by_slot)
    }
}

/// The first and last `block_timestamp` (microseconds) of blocks rows, if
/// every row has one (else the other tables are not bounded by time).
fn time_bounds(blocks: &[Value]) -> Option<(i64, i64)> {
    let times: Option<Vec<i64>> = blocks.iter().map(|b| b.get("block_timestamp").and_then(Value::as_i64)).collect();
    let times = times?;
    Some((*times.iter().min()?, *times.iter().max()?))
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
        + keep(&mut rows.accounts, |a| (a.pubkey.clone(), a.tx_signature.clone()))
        + keep(&mut rows.tokens, |t| (t.mint.clone(), t.tx_signature.clone()))
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

    fn take_duplicates(&self) -> u64 {
        self.duplicates.swap(0, Ordering::Relaxed)
    }

    /// The dataset's newest block less the settling slots.
    async fn tip(&self) -> Result<BlockNumber, String> {
        let head = self.read_head().await?;
        *self.last_head.lock().expect("last head") = Some(head);
        Ok(head.number.saturating_sub(self.dataset.settle_slots))
    }

    async fn head(&self) -> Result<SourceHead, String> {
        let last = self.last_head.lock().expect("last head").take();
        match last {
            Some(head) => Ok(head),
            None => self.read_head().await,
        }
    }
}

impl BigQuerySource {
    /// The newest block row and its time: from the last few days'
    /// partitions if it is there (cheap), else from the whole table.
    async fn read_head(&self) -> Result<SourceHead, String> {
        let blocks = self.table("blocks");
        let newest =
            |filter: &str| format!("SELECT slot, block_timestamp FROM {blocks} {filter} ORDER BY slot DESC LIMIT 1");
        let recent = format!("WHERE block_timestamp >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {RECENT_DAYS} DAY)");
        for sql in [newest(&recent), newest("")] {
            let rows = self.client.rows(&sql).await.map_err(|e| format!("table blocks: {e}"))?;
            if let Some(slot) = rows.first().and_then(|r| r.get("slot")).and_then(Value::as_u64) {
                // Decoded to microseconds, as every timestamp column is.
                let time = rows[0].get("block_timestamp").and_then(Value::as_i64).map(|micros| micros / 1_000_000);
                return Ok(SourceHead { number: slot, time });
            }
        }
        Err("the dataset has no blocks".into())
    }
}
