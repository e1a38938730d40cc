//! Replication (`IngestJob` with `source: store`): another store's blocks
//! copied into the job's canonical store, row for row, through the same
//! batch and checkpoint loop as every ingest (`worker/ingest.rs`): shards,
//! resume, gaps and tailing (`mode: follow`) come with it. The origin is read
//! without admin calls (read-only credentials suffice, as for an agave RPC
//! node), so an instance agave wrote is adopted the same way.
//!
//! The source here yields each block's rows as stored ([`BlockRows`]); the
//! sink (`pipeline/sinks/replica.rs`) writes them, and compares and repairs
//! them when verifying. Which rows a block owns is the chain layout's
//! knowledge (`ChainAdapter::rows_reader`).

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::catalog;
use crate::chain::ChainAdapter;
use crate::pipeline::config::{SourceConfig, StoreOrigin};
use crate::pipeline::sinks::replica::ReplicaSink;
use crate::pipeline::{BlockNumber, BlockSink, BlockSource, Missing, SourceHead};
use crate::store::{self, block_rows::BlockRows, block_rows::BlockRowsReader};
use crate::worker::ingest::{IngestConfig, Progress, Summary, run_pipeline};

/// A store read as a block source.
pub struct StoreSource {
    origin: Arc<dyn BlockRowsReader>,
    describe: String,
}

impl StoreSource {
    pub fn new(origin: Arc<dyn BlockRowsReader>) -> Self {
        let describe = origin.cells().describe();
        Self { origin, describe }
    }
}

#[async_trait]
impl BlockSource<BlockRows> for StoreSource {
    async fn produced(&self, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, String> {
        self.origin.stored_blocks(start, end, usize::MAX).await.map_err(|e| format!("{}: {e}", self.describe))
    }

    async fn block(&self, number: BlockNumber) -> Result<BlockRows, Missing> {
        match self.origin.block_rows(number).await {
            Ok(Some(rows)) => Ok(rows),
            // Listed a moment ago: pruned at the origin meanwhile, or not yet visible.
            Ok(None) => Err(Missing::Gap(format!("{}: the block is no longer in the origin", self.describe))),
            Err(e) => Err(Missing::Gap(format!("{}: {e}", self.describe))),
        }
    }

    async fn tip(&self) -> Result<BlockNumber, String> {
        Ok(self.head().await?.number)
    }

    async fn head(&self) -> Result<SourceHead, String> {
        let fail = |e: store::StoreError| format!("{}: {e}", self.describe);
        let Some(newest) = self.origin.newest_block().await.map_err(fail)? else {
            return Err(format!("{}: the origin holds no block yet", self.describe));
        };
        let time = self.origin.block_time(newest).await.map_err(fail)?;
        Ok(SourceHead { number: newest, time })
    }
}

/// Runs a replication: `config.source` names the origin, `config.store` the target.
pub async fn run<A: ChainAdapter>(
    adapter: &A,
    config: IngestConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<Summary> {
    let SourceConfig::Store(origin) = &config.source else { anyhow::bail!("a replication reads another store") };
    anyhow::ensure!(
        origin.url != config.store,
        "the origin and the target are the same store ({}): nothing to copy",
        origin.url
    );
    let source = open_origin(adapter, origin).await?;
    let target =
        store::open_for(adapter, &config.store, &config.store_access).await.context("opening the target store")?;
    let sink = target_sink(adapter, target, origin);
    let catalog = catalog::open(config.catalog.expose()).await.context("opening the catalog")?;
    run_pipeline(config, source, vec![sink], catalog, shutdown, Progress::default()).await
}

/// The origin as a block source, opened without admin calls.
pub async fn open_origin<A: ChainAdapter>(
    adapter: &A,
    origin: &StoreOrigin,
) -> anyhow::Result<Arc<dyn BlockSource<BlockRows>>> {
    let cells = store::open_cells(&origin.url, &origin.access).await.context("opening the origin store")?;
    Ok(Arc::new(StoreSource::new(adapter.rows_reader(Arc::new(adapter.layout(cells))))))
}

/// The target store as the replication's sink.
pub fn target_sink<A: ChainAdapter>(
    adapter: &A,
    target: Arc<A::Store>,
    origin: &StoreOrigin,
) -> Arc<dyn BlockSink<BlockRows>> {
    let cells = adapter.rows_reader(target).cells().clone();
    Arc::new(ReplicaSink::new(cells, origin.verify, origin.repair, adapter.epoch_slots()))
}
