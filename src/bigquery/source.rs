//! A chain's public BigQuery dataset as a source of rows, the same for
//! every chain: a batch's blocks are read with one query per table over its
//! number range, grouped by block, and handed to the chain's [`Dataset`]
//! (`chain/<chain>/bigquery.rs`), which types them, drops the repeated rows
//! the public datasets have, and says whether a block is complete. The rows
//! go to the lake; the canonical store is not fed from here (the rows do
//! not carry the raw blocks a store layout keeps).
//!
//! Completeness: a block whose rows do not fit the schema or are short of
//! what its blocks row counts is a gap naming what is wrong. With a node to
//! check against, a block the chain produced that the dataset lacks is a
//! gap too, or, with `repair`, every such block is taken from the node and
//! derived as RPC ingestion derives it. Without a node, a number the
//! dataset does not list is skipped by the chain where chains skip numbers
//! (Solana's slots), and a gap where every number is a block (EVM), up to
//! the dataset's newest block: a batch past it waits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{BigQuery, QueryError};
use crate::pipeline::config::BigQueryDataset;
use crate::pipeline::{BlockNumber, BlockSource, Missing, SourceHead};

/// What a chain's dataset is: its tables and columns, and how one block's
/// rows become the chain's lake rows.
pub trait Dataset: Send + Sync + 'static {
    /// One block's rows, as the chain's lake takes them.
    type Rows: Send + 'static;
    /// The chain's block, as its node source yields it (for repairs).
    type Block: Send + Sync + 'static;

    /// Our table → the public dataset's name, blocks table first.
    const TABLES: &'static [(&'static str, &'static str)];
    /// Tables a dataset may lack (mapped to nothing: `--bigquery-table accounts=`).
    const OPTIONAL: &'static [&'static str];
    /// The blocks table's columns of the block's number and time.
    const NUMBER: &'static str;
    const TIME: &'static str;
    /// The other tables' column of their block's number (their time is `block_timestamp`).
    const BLOCK_COLUMN: &'static str;
    /// What errors call a block's number (`slot 5`, `block 5`).
    const NOUN: &'static str;
    /// Whether every number is a block: a number the dataset lacks is then
    /// missing from it, not skipped by the chain.
    const EVERY_NUMBER_IS_A_BLOCK: bool;

    /// The block's rows, typed and complete, with how many repeated rows
    /// were dropped; or why they are not (a gap).
    fn rows(&self, block: BlockTables) -> Result<(Self::Rows, usize), String>;

    /// The rows RPC ingestion derives from the node's block.
    fn node_rows(&self, number: BlockNumber, block: &Self::Block) -> Result<Self::Rows, String>;
}

/// One block's rows of each table read, as the dataset answered them.
pub struct BlockTables {
    pub number: BlockNumber,
    noun: &'static str,
    tables: BTreeMap<&'static str, Vec<Value>>,
}

impl BlockTables {
    /// `table`'s rows as they came, to adjust before [`typed`](Self::typed).
    pub fn values_mut(&mut self, table: &str) -> &mut [Value] {
        self.tables.get_mut(table).map(Vec::as_mut_slice).unwrap_or_default()
    }

    /// `table`'s rows as `T` (none when the table was not read); a row that
    /// does not fit is an error naming the table, the block and the column.
    pub fn typed<T: DeserializeOwned>(&mut self, table: &str) -> Result<Vec<T>, String> {
        let rows = self.tables.remove(table).unwrap_or_default();
        rows.into_iter()
            .map(|row| {
                // The path names the column (`signature: invalid type: null…`).
                serde_path_to_error::deserialize::<_, T>(row)
                    .map_err(|e| self.error(table, format!("a row does not fit the schema: {e}")))
            })
            .collect()
    }

    /// `reason`, said of `table`'s rows of this block.
    pub fn error(&self, table: &str, reason: impl std::fmt::Display) -> String {
        format!("table {table}, {} {}: {reason}", self.noun, self.number)
    }

    /// `reason`, said of this block.
    pub fn incomplete(&self, reason: impl std::fmt::Display) -> String {
        format!("{} {}: {reason}", self.noun, self.number)
    }
}

/// Turns `columns`' JSON numbers into their text, for row fields kept as
/// decimal strings (the decoder answers NUMERIC and INT64 as numbers where
/// they fit: wei and prices that pass 2^64 come as digits already, and a
/// decimal with a fraction is kept exactly as its text).
pub fn numbers_as_text(row: &mut Value, columns: &[&str]) {
    for column in columns {
        if let Some(value) = row.get_mut(*column).filter(|v| v.is_number()) {
            *value = Value::String(value.to_string());
        }
    }
}

/// Keeps the first of `items` with the same key; returns how many were dropped.
pub fn keep_first<T, K: Ord>(items: &mut Vec<T>, key: impl Fn(&T) -> K) -> usize {
    let mut seen = BTreeSet::new();
    let before = items.len();
    items.retain(|item| seen.insert(key(item)));
    before - items.len()
}

/// The node the dataset is checked against.
pub struct Completeness<B> {
    pub node: Arc<dyn BlockSource<B>>,
    pub repair: bool,
}

pub struct DatasetSource<D: Dataset> {
    chain: D,
    client: BigQuery,
    check: Option<Completeness<D::Block>>,
    dataset: BigQueryDataset,
    /// A batch's blocks, read with its number list, taken by `block`.
    prefetched: Mutex<BTreeMap<BlockNumber, Result<D::Rows, String>>>,
    /// The head the last `tip` read (a follower asks for both each poll).
    last_head: Mutex<Option<SourceHead>>,
    /// Repeated rows dropped since the loop last asked.
    duplicates: AtomicU64,
    /// The dataset's newest block and when it was read (what a batch may ask for).
    known: Mutex<Option<(BlockNumber, Instant)>>,
}

/// How long a reading of the dataset's head stands for a batch past it (a
/// dataset grows by the day; the batch retries within its patience).
const HEAD_AGE: Duration = Duration::from_secs(60);

/// How recent a block must be for the head query to find it in the
/// partitions it scans first (a dataset further behind is read whole).
const RECENT_DAYS: u32 = 3;

impl<D: Dataset> DatasetSource<D> {
    pub async fn connect(
        chain: D,
        dataset: BigQueryDataset,
        check: Option<Completeness<D::Block>>,
    ) -> Result<Self, QueryError> {
        let client = BigQuery::connect(dataset.access.clone()).await?;
        Ok(Self {
            chain,
            client,
            check,
            dataset,
            prefetched: Mutex::default(),
            last_head: Mutex::default(),
            duplicates: AtomicU64::new(0),
            known: Mutex::default(),
        })
    }

    /// Whether the dataset has our table `table`: an optional table mapped to nothing is absent.
    fn has(&self, table: &str) -> bool {
        !D::OPTIONAL.contains(&table) || !self.dataset.maps_to_nothing(table)
    }

    /// The dataset's name of our table `table`, quoted for SQL.
    fn table(&self, table: &str) -> String {
        let name = self.dataset.tables.get(table).map(String::as_str).unwrap_or_else(|| {
            D::TABLES.iter().find(|(ours, _)| *ours == table).map(|(_, theirs)| *theirs).unwrap_or(table)
        });
        format!("`{}.{name}`", self.dataset.dataset)
    }

    /// Every table's rows of blocks `start..=end`, by block, through the
    /// chain's [`Dataset::rows`]. The blocks come first: their times bound
    /// the other tables' queries, so that BigQuery prunes them to the
    /// partitions (by `block_timestamp`) that hold the range instead of
    /// scanning every one.
    async fn read(
        &self,
        start: BlockNumber,
        end: BlockNumber,
    ) -> Result<(BTreeMap<BlockNumber, Result<D::Rows, String>>, u64), String> {
        let noun = D::NOUN;
        let read = |table: &'static str, column: &'static str, times: Option<(i64, i64)>| {
            let mut sql = format!("SELECT * FROM {} WHERE {column} BETWEEN {start} AND {end}", self.table(table));
            let bounded = |time: &str, first: i64, last: i64| {
                format!("{time} BETWEEN TIMESTAMP_MICROS({first}) AND TIMESTAMP_MICROS({last})")
            };
            match times {
                // A block without a time (early Solana slots) is read too: its partition is NULL's.
                Some((first, last)) if column == D::NUMBER => {
                    sql += &format!(" AND ({} OR {} IS NULL)", bounded(D::TIME, first, last), D::TIME)
                }
                Some((first, last)) => sql += &format!(" AND {}", bounded("block_timestamp", first, last)),
                None => {}
            }
            sql += &format!(" ORDER BY {column}");
            async move {
                let rows = self.client.rows(&sql).await;
                rows.map(|rows| (table, rows)).map_err(|e| format!("table {table}, {noun}s {start}..={end}: {e}"))
            }
        };
        let (blocks_table, blocks_name) = D::TABLES[0];
        let blocks = match self.block_times(start, end).await? {
            BlockTimes::NoBlocks => Vec::new(),
            BlockTimes::Between(times) => read(blocks_table, D::NUMBER, times).await?.1,
        };
        let times = time_bounds(&blocks, D::TIME);
        // A range without a blocks row reads no other table: with no times
        // to bound them, each query would scan the whole table.
        let others = D::TABLES[1..]
            .iter()
            .filter(|(table, _)| self.has(table))
            .filter(|_| !blocks.is_empty())
            .map(|(table, _)| read(table, D::BLOCK_COLUMN, times));
        let others = futures::future::try_join_all(others).await?;
        let mut by_block: BTreeMap<BlockNumber, BlockTables> = BTreeMap::new();
        let tables_read: Vec<&'static str> =
            std::iter::once(blocks_table).chain(others.iter().map(|(t, _)| *t)).collect();
        for (table, column, rows) in std::iter::once((blocks_table, D::NUMBER, blocks))
            .chain(others.into_iter().map(|(table, rows)| (table, D::BLOCK_COLUMN, rows)))
        {
            for row in rows {
                let Some(number) = row.get(column).and_then(Value::as_u64) else {
                    tracing::warn!(table, "a row without {column}: skipped");
                    continue;
                };
                let block = by_block.entry(number).or_insert_with(|| BlockTables {
                    number,
                    noun,
                    tables: tables_read.iter().map(|t| (*t, Vec::new())).collect(),
                });
                block.tables.entry(table).or_default().push(row);
            }
        }
        let (mut rows, mut repeated) = (BTreeMap::new(), 0);
        for (number, block) in by_block {
            let typed = if block.tables[blocks_table].is_empty() {
                Err(block.incomplete(format!("rows without a {blocks_name} row")))
            } else {
                self.chain.rows(block)
            };
            let typed = typed.map(|(rows, duplicates)| {
                if duplicates > 0 {
                    tracing::warn!(number, duplicates, "the dataset repeats rows of this block; each is kept once");
                    repeated += duplicates as u64;
                }
                rows
            });
            rows.insert(number, typed);
        }
        Ok((rows, repeated))
    }

    /// The dataset's newest block as last read, read again when `end` is
    /// past it and the reading is older than [`HEAD_AGE`].
    async fn known_head(&self, end: BlockNumber) -> Result<BlockNumber, String> {
        let known = *self.known.lock().expect("known head");
        if let Some((head, read)) = known
            && (end <= head || read.elapsed() < HEAD_AGE)
        {
            return Ok(head);
        }
        let head = self.read_head().await?.number;
        *self.known.lock().expect("known head") = Some((head, Instant::now()));
        Ok(head)
    }

    /// The newest block row and its time: from the last few days'
    /// partitions if it is there (cheap), else from the whole table.
    async fn read_head(&self) -> Result<SourceHead, String> {
        let (table, _) = D::TABLES[0];
        let (number, time) = (D::NUMBER, D::TIME);
        let blocks = self.table(table);
        let newest =
            |filter: &str| format!("SELECT {number}, {time} FROM {blocks} {filter} ORDER BY {number} DESC LIMIT 1");
        let recent = format!("WHERE {time} >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {RECENT_DAYS} DAY)");
        for sql in [newest(&recent), newest("")] {
            let rows = self.client.rows(&sql).await.map_err(|e| format!("table {table}: {e}"))?;
            if let Some(newest) = rows.first().and_then(|r| r.get(number)).and_then(Value::as_u64) {
                // Decoded to microseconds, as every timestamp column is.
                let time = rows[0].get(time).and_then(Value::as_i64).map(|micros| micros / 1_000_000);
                return Ok(SourceHead { number: newest, time });
            }
        }
        Err("the dataset has no blocks".into())
    }

    /// The first and last block time of `start..=end`, read from the blocks
    /// table's number and time columns alone: the whole-row query that
    /// follows is then pruned to the partitions (by time) that hold the
    /// range, instead of scanning every partition's every column.
    async fn block_times(&self, start: BlockNumber, end: BlockNumber) -> Result<BlockTimes, String> {
        let (table, _) = D::TABLES[0];
        let (number, time) = (D::NUMBER, D::TIME);
        let sql = format!(
            "SELECT COUNT(*) AS blocks, MIN({time}) AS first, MAX({time}) AS last FROM {} WHERE {number} BETWEEN {start} AND {end}",
            self.table(table)
        );
        let rows =
            self.client.rows(&sql).await.map_err(|e| format!("table {table}, {}s {start}..={end}: {e}", D::NOUN))?;
        let column = |name: &str| rows.first().and_then(|r| r.get(name)).and_then(Value::as_i64);
        match column("blocks") {
            Some(0) => Ok(BlockTimes::NoBlocks),
            Some(_) => Ok(BlockTimes::Between(column("first").zip(column("last")))),
            None => Err(format!("table {table}: the block count of {start}..={end} did not come back: {rows:?}")),
        }
    }
}

/// What the blocks table holds of a range.
enum BlockTimes {
    NoBlocks,
    /// Blocks between these times (microseconds); `None`: none of them has a time.
    Between(Option<(i64, i64)>),
}

/// The first and last `column` time (microseconds) of blocks rows, if every
/// row has one (else the other tables are not bounded by time).
fn time_bounds(blocks: &[Value], column: &str) -> Option<(i64, i64)> {
    let times: Option<Vec<i64>> = blocks.iter().map(|b| b.get(column).and_then(Value::as_i64)).collect();
    let times = times?;
    Some((*times.iter().min()?, *times.iter().max()?))
}

#[async_trait]
impl<D: Dataset> BlockSource<D::Rows> for DatasetSource<D> {
    async fn produced(&self, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, String> {
        // Where every number is a block and no node says which exist, a
        // number past the dataset's newest block is not there yet (neither
        // skipped nor missing): the batch waits, before any row is billed.
        if self.check.is_none() && D::EVERY_NUMBER_IS_A_BLOCK {
            let head = self.known_head(end).await?;
            if end > head {
                return Err(format!("the dataset's newest block is {head}; {end} is not in it yet"));
            }
        }
        // The node next: a node not there yet fails the batch before the rows are read.
        let produced = match &self.check {
            Some(check) => {
                Some(check.node.produced(start, end).await.map_err(|e| format!("checking against the node: {e}"))?)
            }
            None => None,
        };
        let (mut read, repeated) = self.read(start, end).await?;
        self.duplicates.fetch_add(repeated, Ordering::Relaxed);
        let lacks = |number| Err(format!("{} {number}: the chain produced this block; the dataset lacks it", D::NOUN));
        match produced {
            Some(produced) => {
                for number in produced {
                    read.entry(number).or_insert_with(|| lacks(number));
                }
            }
            None if D::EVERY_NUMBER_IS_A_BLOCK => {
                for number in start..=end {
                    read.entry(number).or_insert_with(|| {
                        Err(format!("{} {number}: every number is a block; the dataset lacks this one", D::NOUN))
                    });
                }
            }
            None => {}
        }
        let listed = read.keys().copied().collect();
        self.prefetched.lock().expect("prefetched rows").extend(read);
        Ok(listed)
    }

    async fn block(&self, number: BlockNumber) -> Result<D::Rows, Missing> {
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
                tracing::warn!(number, %reason, "taken from the node instead");
                self.chain.node_rows(number, &block).map_err(Missing::Gap)
            }
            (Err(reason), _) => Err(Missing::Gap(reason)),
        }
    }

    fn take_duplicates(&self) -> u64 {
        self.duplicates.swap(0, Ordering::Relaxed)
    }

    /// The dataset's newest block less the settling blocks.
    async fn tip(&self) -> Result<BlockNumber, String> {
        let head = self.read_head().await?;
        *self.last_head.lock().expect("last head") = Some(head);
        *self.known.lock().expect("known head") = Some((head.number, Instant::now()));
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
