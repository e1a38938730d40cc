//! EVM chains (Ethereum and its kin): the node's `eth_` answers in, kept as
//! sent, under Chronicle's EVM layout — the node as a block source
//! (`rpc.rs`), the block and its typed index (`block.rs`), the store layout
//! (`layout.rs`), the lake's ethereum-etl rows (`rows.rs`), the history API
//! (`serve.rs`) and its cache (`cache.rs`), chain metrics
//! (`block_stats.rs`), training documents (`documents.rs`), BigQuery's
//! `crypto_ethereum` as a source of lake rows (`bigquery.rs`).
//!
//! Not built, refused with its reason where a manifest asks for it
//! ([`ChainAdapter::lacks`]): epoch archives (EVM chains publish none).

pub mod bigquery;
pub mod block;
pub mod block_stats;
mod cache;
pub mod documents;
pub mod layout;
pub mod rows;
pub mod rpc;
pub mod serve;
pub mod trace_rows;
pub mod traces;

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::ChainAdapter;
use crate::bigquery::source::{Completeness, DatasetSource};
use crate::crd::chain_source::ChainFamily;
use crate::pipeline::config::{BigQueryDataset, SourceConfig};
use crate::pipeline::sinks::Targets;
use crate::pipeline::sinks::cache::CacheInvalidation;
use crate::pipeline::sinks::canonical::{CanonicalSink, CanonicalStore};
use crate::pipeline::sinks::chain_metrics::ChainMetricsSink;
use crate::pipeline::sinks::lake::LakeSink;
use crate::pipeline::{BlockNumber, BlockSink, BlockSource};
use crate::serve::ServeConfig;
use crate::serve::cache::Invalidator;
use crate::store::cells::{CellStore, Table};
use crate::store::{StoreError, WriteStats};
pub use block::EvmBlock;
pub use layout::EvmStore;

/// Blocks per replication digest (EVM chains have no epochs; ~1.4 days of Ethereum).
pub const DIGEST_BLOCKS: u64 = 10_000;

/// The EVM adapter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Evm;

impl ChainAdapter for Evm {
    type Block = EvmBlock;
    type Store = EvmStore;
    type Rows = rows::EvmRows;

    fn family(&self) -> ChainFamily {
        ChainFamily::Evm
    }

    fn tables(&self) -> &'static [Table] {
        &layout::tables::ALL
    }

    fn layout(&self, cells: Arc<dyn CellStore>) -> EvmStore {
        EvmStore::new(cells)
    }

    fn rows_reader(&self, store: Arc<EvmStore>) -> Arc<dyn crate::store::block_rows::BlockRowsReader> {
        store
    }

    fn epoch_slots(&self) -> u64 {
        DIGEST_BLOCKS
    }

    fn source(
        &self,
        config: &SourceConfig,
        _store: Option<&Arc<EvmStore>>,
    ) -> anyhow::Result<Arc<dyn BlockSource<EvmBlock>>> {
        match config {
            SourceConfig::Rpc(endpoint) => Ok(Arc::new(rpc::EvmRpcSource::new(endpoint)?)),
            SourceConfig::Archive(_) => anyhow::bail!("there are no epoch archives for evm chains"),
            SourceConfig::BigQuery(_) => anyhow::bail!("a BigQuery dataset yields rows, not blocks: use rows_source"),
            SourceConfig::Store(_) => anyhow::bail!("another store yields rows as stored: see replication::run"),
        }
    }

    fn sinks(&self, store: &Arc<EvmStore>, targets: &Targets) -> anyhow::Result<Vec<Arc<dyn BlockSink<EvmBlock>>>> {
        let mut sinks: Vec<Arc<dyn BlockSink<_>>> = Vec::new();
        if targets.canonical {
            sinks.push(Arc::new(CanonicalSink::new(store.clone())));
        }
        if let Some(lake) = &targets.lake {
            sinks.push(Arc::new(LakeSink::new(lake.clone(), rows::EvmTables).holding(targets.hold_until_final)));
        }
        if let Some(config) = &targets.chain_metrics {
            let sink = ChainMetricsSink::start(config.clone(), block_stats::block_stats).map_err(anyhow::Error::msg)?;
            sinks.push(Arc::new(sink));
        }
        for url in &targets.caches {
            let invalidator = Invalidator::new(url.expose()).map_err(|e| anyhow::anyhow!("cache URL: {e}"))?;
            // No address histories: every answer that can change goes with the tip (`serve.rs`).
            sinks.push(Arc::new(CacheInvalidation::new(invalidator, Box::new(|_: &EvmBlock| Vec::new()))));
        }
        Ok(sinks)
    }

    fn rows_source(
        &self,
        dataset: &BigQueryDataset,
    ) -> BoxFuture<'static, anyhow::Result<Arc<dyn BlockSource<rows::EvmRows>>>> {
        let dataset = dataset.clone();
        Box::pin(async move {
            let check = match dataset.check.clone() {
                Some(endpoint) => Some(Completeness {
                    node: Arc::new(rpc::EvmRpcSource::new(&endpoint)?) as Arc<dyn BlockSource<EvmBlock>>,
                    repair: dataset.repair,
                }),
                None => None,
            };
            let traces = !dataset.maps_to_nothing("traces");
            let source = DatasetSource::connect(bigquery::EvmDataset { traces }, dataset, check).await?;
            Ok(Arc::new(source) as Arc<dyn BlockSource<rows::EvmRows>>)
        })
    }

    fn rows_sinks(&self, targets: &Targets) -> anyhow::Result<Vec<Arc<dyn BlockSink<rows::EvmRows>>>> {
        crate::pipeline::sinks::lake::dataset_rows_sinks(targets, rows::EvmTables)
    }

    fn document_source(&self, store: Arc<EvmStore>) -> Arc<dyn crate::export::DocumentSource> {
        Arc::new(documents::EvmDocuments(store))
    }

    fn lacks(&self, feature: super::Feature) -> Option<&'static str> {
        use super::Feature::*;
        Some(match feature {
            Lake | BigQuery | Cache | ChainMetrics | TrainingExport | Upstream => return None,
            Archive => "there are no epoch archives for evm chains",
        })
    }

    fn serve(
        &self,
        store: Arc<EvmStore>,
        config: ServeConfig,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(serve::run(store, config, shutdown))
    }
}

#[async_trait]
impl CanonicalStore<EvmBlock> for EvmStore {
    async fn write(&self, number: BlockNumber, block: &EvmBlock) -> Result<WriteStats, StoreError> {
        if block.index.number != number {
            return Err(StoreError::InvalidBlock {
                slot: number,
                reason: format!("the block is number {}", block.index.number),
            });
        }
        self.write_block(block).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        EvmStore::sync(self).await
    }

    async fn remove_range(&self, first: BlockNumber, last: BlockNumber) -> Result<(), StoreError> {
        self.delete_range(first, last).await.map(|_| ())
    }

    async fn finalized(&self, number: BlockNumber) -> Result<(), StoreError> {
        self.set_finalized(number).await
    }
}
