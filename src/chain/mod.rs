//! Chain adapters: everything that differs from one chain family to the
//! next, behind one trait. The ingest loop (`worker/ingest.rs`), the stores'
//! engines (`store/`) and the hosts (`worker/host.rs`, `chronicle dev`) are
//! the same for every chain; a [`ChainAdapter`] supplies the block type,
//! its sources, its canonical store layout, what a new block changes in a
//! cache, and its serve methods.
//!
//! A new chain is one folder here (`solana/`, `evm/`) with a type that
//! implements [`ChainAdapter`], one variant of [`Adapter`] and one arm in
//! [`adapter`]; callers reach it through [`with_adapter!`](crate::with_adapter).

pub mod evm;
pub mod solana;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::crd::chain_source::ChainFamily;
use crate::pipeline::config::{BigQueryDataset, SourceConfig};
use crate::pipeline::sinks::Targets;
use crate::pipeline::{BlockSink, BlockSource};
use crate::serve::ServeConfig;
use crate::store::cells::{CellStore, Table};

/// What one chain family brings to the pipeline.
pub trait ChainAdapter: Send + Sync + 'static {
    /// A block as the chain's sources yield it and its sinks take it.
    type Block: Send + Sync + 'static;
    /// The canonical store: the chain's layout over a cell engine.
    type Store: Send + Sync + 'static;
    /// One block's normalized rows (the lake's unit, and a dataset source's).
    type Rows: Send + Sync + 'static;

    fn family(&self) -> ChainFamily;

    /// The tables of the layout, created when a store is opened for writing.
    fn tables(&self) -> &'static [Table];

    /// The layout over a cell engine (Bigtable or embedded).
    fn layout(&self, cells: Arc<dyn CellStore>) -> Self::Store;

    /// The layout's view of whole blocks' rows (replication, verification, retention).
    fn rows_reader(&self, store: Arc<Self::Store>) -> Arc<dyn crate::store::block_rows::BlockRowsReader>;

    /// Blocks per epoch: the span each replication digest covers.
    fn epoch_slots(&self) -> u64;

    /// The block source a worker spec names; `store`, where given, is the
    /// store the blocks go to (an archive's reader looks up there what an
    /// earlier archive held: an epoch's first block's parent).
    fn source(
        &self,
        config: &SourceConfig,
        store: Option<&Arc<Self::Store>>,
    ) -> anyhow::Result<Arc<dyn BlockSource<Self::Block>>>;

    /// The sinks of an ingest's targets, in flush order: the canonical
    /// store, the lake, then invalidation of the answers a block changes in
    /// each cache.
    fn sinks(
        &self,
        store: &Arc<Self::Store>,
        targets: &Targets,
    ) -> anyhow::Result<Vec<Arc<dyn BlockSink<Self::Block>>>>;

    /// The chain's rows from a BigQuery dataset (lake-only ingests).
    fn rows_source(
        &self,
        dataset: &BigQueryDataset,
    ) -> BoxFuture<'static, anyhow::Result<Arc<dyn BlockSource<Self::Rows>>>>;

    /// The sinks rows go to: the lake (rows carry no raw blocks for the canonical store).
    fn rows_sinks(&self, targets: &Targets) -> anyhow::Result<Vec<Arc<dyn BlockSink<Self::Rows>>>>;

    /// The store's blocks as training documents (`export/`).
    fn document_source(&self, store: Arc<Self::Store>) -> Arc<dyn crate::export::DocumentSource>;

    /// Why this adapter cannot do `feature` yet (a status message), or
    /// `None` when it can. The controller asks before it builds a worker.
    fn lacks(&self, _feature: Feature) -> Option<&'static str> {
        None
    }

    /// Serves the chain's history API from the store until `shutdown`.
    fn serve(
        &self,
        store: Arc<Self::Store>,
        config: ServeConfig,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// The adapters this binary has.
#[derive(Clone, Copy, Debug)]
pub enum Adapter {
    Solana(solana::Solana),
    Evm(evm::Evm),
}

/// The adapter for `family`, or why there is none (a status message: the
/// controller reports it instead of treating the chain as another).
pub fn adapter(family: ChainFamily) -> Result<Adapter, String> {
    match family {
        ChainFamily::Solana => Ok(Adapter::Solana(solana::Solana)),
        ChainFamily::Evm => Ok(Adapter::Evm(evm::Evm)),
    }
}

/// What a manifest may ask of a chain that not every adapter does yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// Normalized rows into the lake.
    Lake,
    /// The chain's public BigQuery dataset as a source (of the lake).
    BigQuery,
    ChainMetrics,
    Archive,
    /// Answers cached in Redis and dropped as blocks land.
    Cache,
    /// A node serve passes what it does not answer to (a CacheTier's `upstream`).
    Upstream,
    TrainingExport,
}

/// The adapter for `family`, refused with the reason when it lacks one of `wanted`.
pub fn adapter_with(family: ChainFamily, wanted: &[Feature]) -> Result<Adapter, String> {
    let adapter = adapter(family)?;
    let lacking = wanted.iter().find_map(|f| crate::with_adapter!(adapter, |chain| chain.lacks(*f)));
    match lacking {
        Some(reason) => Err(reason.to_string()),
        None => Ok(adapter),
    }
}

/// Runs `$body` with `$name` bound to the adapter `$adapter` holds, whatever
/// its chain: the one place generic code meets the list of chains.
#[macro_export]
macro_rules! with_adapter {
    ($adapter:expr, |$name:ident| $body:expr) => {
        match $adapter {
            $crate::chain::Adapter::Solana($name) => $body,
            $crate::chain::Adapter::Evm($name) => $body,
        }
    };
}
