//! Solana: `getBlock` responses in, agave's stored block out — the node as a
//! block source (`rpc.rs`), agave's Bigtable layout (`layout.rs`), the
//! cache answers a block changes, and the JSON-RPC history methods
//! (`serve/`).

pub mod account_rows;
pub mod archive;
pub mod bigquery;
pub mod block_stats;
pub mod decode;
pub mod documents;
pub mod layout;
pub mod programs;
pub mod response;
pub mod rows;
pub mod rpc;
pub mod token_owners;
pub mod token_transfers;

use std::sync::Arc;

use futures::future::BoxFuture;
use solana_transaction_status::{ConfirmedBlock, EntrySummary};
use tokio_util::sync::CancellationToken;

use super::ChainAdapter;
use crate::bigquery::source::{Completeness, DatasetSource};
use crate::crd::chain_source::ChainFamily;
use crate::pipeline::config::{BigQueryDataset, SourceConfig};
use crate::pipeline::sinks::Targets;
use crate::pipeline::sinks::cache::CacheInvalidation;
use crate::pipeline::sinks::canonical::CanonicalSink;
use crate::pipeline::sinks::chain_metrics::ChainMetricsSink;
use crate::pipeline::sinks::lake::LakeSink;
use crate::pipeline::{BlockSink, BlockSource};
use crate::serve::ServeConfig;
use crate::serve::cache::Invalidator;
use crate::store::cells::{CellStore, Table};
use layout::LedgerStore;

/// A block as Solana's sources yield it and its sinks take it: agave's
/// confirmed block, with its PoH entries where the source has them (an
/// epoch archive does; a node's `getBlock` does not). Derefs to the block.
#[derive(Clone)]
pub struct SolanaBlock {
    pub confirmed: ConfirmedBlock,
    /// Stored in agave's `entries` table when not empty.
    pub entries: Vec<EntrySummary>,
}

impl From<ConfirmedBlock> for SolanaBlock {
    fn from(confirmed: ConfirmedBlock) -> Self {
        Self { confirmed, entries: Vec::new() }
    }
}

impl std::ops::Deref for SolanaBlock {
    type Target = ConfirmedBlock;

    fn deref(&self) -> &ConfirmedBlock {
        &self.confirmed
    }
}

impl std::fmt::Debug for SolanaBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolanaBlock").field("confirmed", &self.confirmed).field("entries", &self.entries.len()).finish()
    }
}

/// The Solana adapter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solana;

impl ChainAdapter for Solana {
    type Block = SolanaBlock;
    type Store = LedgerStore;
    type Rows = rows::Rows;

    fn family(&self) -> ChainFamily {
        ChainFamily::Solana
    }

    fn tables(&self) -> &'static [Table] {
        &layout::tables::ALL
    }

    fn layout(&self, cells: Arc<dyn CellStore>) -> LedgerStore {
        LedgerStore::new(cells)
    }

    fn source(
        &self,
        config: &SourceConfig,
        store: Option<&Arc<LedgerStore>>,
    ) -> anyhow::Result<Arc<dyn BlockSource<SolanaBlock>>> {
        match config {
            SourceConfig::Rpc(endpoint) => Ok(Arc::new(rpc::RpcSource::new(endpoint.clone()))),
            SourceConfig::Archive(location) => {
                Ok(Arc::new(archive::ArchiveSource::new(location.clone(), store.cloned())))
            }
            SourceConfig::BigQuery(_) => anyhow::bail!("a BigQuery dataset yields rows, not blocks: use rows_source"),
            SourceConfig::Store(_) => anyhow::bail!("another store yields rows as stored: see replication::run"),
        }
    }

    fn rows_reader(&self, store: Arc<LedgerStore>) -> Arc<dyn crate::store::block_rows::BlockRowsReader> {
        store
    }

    fn epoch_slots(&self) -> u64 {
        solana_clock::DEFAULT_SLOTS_PER_EPOCH
    }

    fn sinks(
        &self,
        store: &Arc<LedgerStore>,
        targets: &Targets,
    ) -> anyhow::Result<Vec<Arc<dyn BlockSink<SolanaBlock>>>> {
        let mut sinks: Vec<Arc<dyn BlockSink<_>>> = Vec::new();
        if targets.canonical {
            sinks.push(Arc::new(CanonicalSink::new(store.clone())));
        }
        if let Some(lake) = &targets.lake {
            sinks.push(Arc::new(LakeSink::new(lake.clone(), rows::SolanaTables).holding(targets.hold_until_final)));
        }
        if let Some(config) = &targets.chain_metrics {
            let stats = |block: &SolanaBlock| block_stats::block_stats(block);
            let sink = ChainMetricsSink::start(config.clone(), stats).map_err(anyhow::Error::msg)?;
            sinks.push(Arc::new(sink));
        }
        for url in &targets.caches {
            let invalidator = Invalidator::new(url.expose()).map_err(|e| anyhow::anyhow!("cache URL: {e}"))?;
            // The layout knows which addresses a block indexes (reserved keys are not).
            let layout = store.clone();
            let touched_by = Box::new(move |block: &SolanaBlock| layout.indexed_addresses(block));
            sinks.push(Arc::new(CacheInvalidation::new(invalidator, touched_by)));
        }
        Ok(sinks)
    }

    fn rows_source(
        &self,
        dataset: &BigQueryDataset,
    ) -> BoxFuture<'static, anyhow::Result<Arc<dyn BlockSource<rows::Rows>>>> {
        let dataset = dataset.clone();
        let check = dataset.check.clone().map(|endpoint| Completeness {
            node: Arc::new(rpc::RpcSource::new(endpoint)) as Arc<dyn BlockSource<SolanaBlock>>,
            repair: dataset.repair,
        });
        Box::pin(async move {
            let source = DatasetSource::connect(bigquery::SolanaDataset, dataset, check).await?;
            Ok(Arc::new(source) as Arc<dyn BlockSource<rows::Rows>>)
        })
    }

    fn rows_sinks(&self, targets: &Targets) -> anyhow::Result<Vec<Arc<dyn BlockSink<rows::Rows>>>> {
        crate::pipeline::sinks::lake::dataset_rows_sinks(targets, rows::SolanaTables)
    }

    fn document_source(&self, store: Arc<LedgerStore>) -> Arc<dyn crate::export::DocumentSource> {
        Arc::new(documents::StoreDocuments(store))
    }

    fn serve(
        &self,
        store: Arc<LedgerStore>,
        config: ServeConfig,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(crate::serve::run(store, config, shutdown))
    }
}
