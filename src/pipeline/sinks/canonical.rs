//! The `canonical` target: blocks into the block store, in the chain's
//! layout (agave's for Solana), durable at `flush`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::chain::solana::SolanaBlock;
use crate::pipeline::{BlockNumber, BlockSink, Flushed, SinkPolicy, Written};
use crate::store::{BlockStore, LedgerStore};

pub struct CanonicalSink {
    store: Arc<LedgerStore>,
}

impl CanonicalSink {
    pub fn new(store: Arc<LedgerStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl BlockSink<SolanaBlock> for CanonicalSink {
    fn name(&self) -> &'static str {
        "canonical"
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::Held
    }

    async fn write(&self, number: BlockNumber, block: &SolanaBlock) -> Result<Written, String> {
        let stats = self.store.write_block(number, block, &block.entries).await.map_err(|e| format!("store: {e}"))?;
        Ok(Written { bytes: stats.bytes })
    }

    async fn flush(&self) -> Result<Flushed, String> {
        self.store.sync().await.map_err(|e| format!("store: {e}"))?;
        Ok(Flushed::default())
    }

    async fn remove(&self, number: BlockNumber) -> Result<(), String> {
        self.store.delete_range(number, number).await.map(|_| ()).map_err(|e| format!("store: {e}"))
    }

    /// `serve` shows blocks above the watermark only to `confirmed` readers.
    async fn finalized(&self, number: BlockNumber) -> Result<(), String> {
        self.store.set_finalized_slot(number).await.map_err(|e| format!("store: {e}"))
    }
}
