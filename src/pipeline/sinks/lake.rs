//! The `lake` target: a chain's normalized rows as Parquet partitions
//! (`lake/`), one object per table and batch. Rows are derived as blocks are
//! written and kept until `flush`, which writes each table's partition for
//! the batch's blocks; the partitions are committed with the checkpoint
//! (`Flushed`), so readers see a batch's rows when, and only when, its
//! checkpoint moves. A block removed before the flush leaves no row. A
//! follower ahead of finality (`confirmed`) has the sink hold each block's
//! rows until the block is final, so no reorganized block reaches the lake.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::catalog::LakePartition;
use crate::lake::{Lake, LakeError};
use crate::pipeline::{BlockNumber, BlockSink, Flushed, SinkPolicy, Written};

/// A batch's rows of every table of a chain, gathered block by block and
/// written one partition per table (Solana's: `chain/solana/rows.rs`).
pub trait LakeRows: Default + Send + Sync + 'static {
    /// Appends `rows` (of a later block).
    fn append(&mut self, rows: Self);

    /// Writes each table's rows of blocks `first..=last`, one partition per table.
    fn write<'a>(
        &'a self,
        lake: &'a Lake,
        first: BlockNumber,
        last: BlockNumber,
    ) -> BoxFuture<'a, Result<Vec<LakePartition>, LakeError>>;
}

/// How a chain's block (as a source yields it) becomes its rows.
pub trait LakeTables<B>: Send + Sync + 'static {
    type Rows: LakeRows;

    /// Every table's rows of one block.
    fn rows(&self, number: BlockNumber, block: &B) -> Result<Self::Rows, String>;
}

pub struct LakeSink<B, T: LakeTables<B>> {
    lake: Arc<Lake>,
    tables: T,
    pending: Mutex<BTreeMap<BlockNumber, T::Rows>>,
    /// Rows wait until their block is final ([`holding`](Self::holding)).
    hold_until_final: bool,
    final_through: Mutex<Option<BlockNumber>>,
    _block: std::marker::PhantomData<fn(&B)>,
}

impl<B, T: LakeTables<B>> LakeSink<B, T> {
    pub fn new(lake: Arc<Lake>, tables: T) -> Self {
        Self {
            lake,
            tables,
            pending: Mutex::default(),
            hold_until_final: false,
            final_through: Mutex::default(),
            _block: std::marker::PhantomData,
        }
    }

    /// The sink of a follower that stores blocks before they are final.
    pub fn holding(mut self, hold_until_final: bool) -> Self {
        self.hold_until_final = hold_until_final;
        self
    }
}

/// The sinks of a dataset's rows (`bigquery/source.rs`): the lake alone.
/// Rows carry no raw blocks for the canonical store, and chain metrics are
/// aggregated from whole blocks: both are refused with the reason.
pub fn dataset_rows_sinks<R: Send + Sync + 'static, T: LakeTables<R>>(
    targets: &super::Targets,
    tables: T,
) -> anyhow::Result<Vec<Arc<dyn BlockSink<R>>>> {
    if targets.canonical {
        anyhow::bail!("BigQuery rows carry no raw blocks: the canonical store cannot be fed from them");
    }
    if targets.chain_metrics.is_some() {
        anyhow::bail!("chain metrics are aggregated from whole blocks: write them from a node's blocks, not rows");
    }
    let lake =
        targets.lake.clone().ok_or_else(|| anyhow::anyhow!("rows from BigQuery go to the lake: none is configured"))?;
    Ok(vec![Arc::new(LakeSink::new(lake, tables))])
}

#[async_trait]
impl<B: Send + Sync + 'static, T: LakeTables<B>> BlockSink<B> for LakeSink<B, T> {
    fn name(&self) -> &'static str {
        "lake"
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::Held
    }

    async fn write(&self, number: BlockNumber, block: &B) -> Result<Written, String> {
        let rows = self.tables.rows(number, block)?;
        self.pending.lock().expect("pending rows").insert(number, rows);
        Ok(Written::default())
    }

    async fn flush(&self) -> Result<Flushed, String> {
        let pending = {
            let mut pending = self.pending.lock().expect("pending rows");
            match (self.hold_until_final, *self.final_through.lock().expect("final block")) {
                (false, _) => std::mem::take(&mut *pending),
                (true, None) => BTreeMap::new(),
                // What is above the final tip waits for the next flush.
                (true, Some(last)) => {
                    let later = pending.split_off(&(last + 1));
                    std::mem::replace(&mut *pending, later)
                }
            }
        };
        let (Some(&first), Some(&last)) = (pending.keys().next(), pending.keys().next_back()) else {
            return Ok(Flushed::default());
        };
        let mut rows = T::Rows::default();
        for (_, block) in pending {
            rows.append(block);
        }
        let partitions = rows.write(&self.lake, first, last).await.map_err(|e| e.to_string())?;
        Ok(Flushed { partitions, ..Flushed::default() })
    }

    async fn remove(&self, number: BlockNumber) -> Result<(), String> {
        self.pending.lock().expect("pending rows").remove(&number);
        Ok(())
    }

    async fn finalized(&self, number: BlockNumber) -> Result<(), String> {
        let mut through = self.final_through.lock().expect("final block");
        *through = Some(through.map_or(number, |t| t.max(number)));
        Ok(())
    }

    fn holds_until_final(&self) -> bool {
        self.hold_until_final
    }
}
