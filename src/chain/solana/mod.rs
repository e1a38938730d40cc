//! Solana: `getBlock` responses in, agave's stored block out — the node as a
//! block source (`rpc.rs`), agave's Bigtable layout (`layout.rs`) and the
//! sinks over it.

pub mod decode;
pub mod layout;
pub mod response;
pub mod rpc;

use std::sync::Arc;

use solana_transaction_status::ConfirmedBlock;

use crate::pipeline::sinks::cache::CacheInvalidation;
use crate::pipeline::sinks::canonical::CanonicalSink;
use crate::pipeline::{BlockSink, BlockSource};
use crate::serve::cache::Invalidator;
use crate::store::LedgerStore;
use crate::worker::ingest::IngestConfig;

/// An ingest's source and sinks for Solana: the node; the canonical store in
/// agave's layout, then (with a cache) invalidation of the answers a block changes.
pub fn ingest_parts(
    config: &IngestConfig,
    store: Arc<LedgerStore>,
) -> anyhow::Result<(Arc<dyn BlockSource<ConfirmedBlock>>, Vec<Arc<dyn BlockSink<ConfirmedBlock>>>)> {
    let source: Arc<dyn BlockSource<_>> = Arc::new(rpc::RpcSource::new(config.source.clone()));
    let mut sinks: Vec<Arc<dyn BlockSink<_>>> = vec![Arc::new(CanonicalSink::new(store.clone()))];
    if let Some(url) = &config.cache {
        let invalidator = Invalidator::new(url).map_err(|e| anyhow::anyhow!("cache URL: {e}"))?;
        sinks.push(Arc::new(CacheInvalidation::new(invalidator, store)));
    }
    Ok((source, sinks))
}
