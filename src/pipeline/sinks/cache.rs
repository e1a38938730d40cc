//! Cache invalidation: the answers a new block changes (the tip, and every
//! address it indexes) are dropped from a cache tier's Redis at `flush`,
//! after the canonical store made the block durable and before the
//! checkpoint moves, so the next call through any replica sees it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::chain::solana::SolanaBlock;
use async_trait::async_trait;
use solana_pubkey::Pubkey;

use crate::pipeline::{BlockNumber, BlockSink, Flushed, SinkPolicy, Written};
use crate::serve::cache::Invalidator;
use crate::store::LedgerStore;

pub struct CacheInvalidation {
    invalidator: Invalidator,
    /// Knows which addresses a block indexes (reserved keys are not).
    layout: Arc<LedgerStore>,
    touched: Mutex<BTreeSet<Pubkey>>,
    written: Mutex<bool>,
}

impl CacheInvalidation {
    pub fn new(invalidator: Invalidator, layout: Arc<LedgerStore>) -> Self {
        Self { invalidator, layout, touched: Mutex::default(), written: Mutex::new(false) }
    }
}

#[async_trait]
impl BlockSink<SolanaBlock> for CacheInvalidation {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::BestEffort
    }

    async fn write(&self, _: BlockNumber, block: &SolanaBlock) -> Result<Written, String> {
        let addresses = self.layout.indexed_addresses(block);
        self.touched.lock().expect("touched addresses").extend(addresses);
        *self.written.lock().expect("written flag") = true;
        Ok(Written::default())
    }

    async fn flush(&self) -> Result<Flushed, String> {
        let addresses: Vec<Pubkey> =
            std::mem::take(&mut *self.touched.lock().expect("touched addresses")).into_iter().collect();
        if !std::mem::take(&mut *self.written.lock().expect("written flag")) {
            return Ok(Flushed::default());
        }
        let dropped = self.invalidator.blocks_written(&addresses).await;
        tracing::debug!(dropped, "cache answers dropped");
        Ok(Flushed::default())
    }

    async fn remove(&self, _: BlockNumber) -> Result<(), String> {
        // A removed block changes the tip answers (every answer holding an
        // unfinalized block is one): drop them at the next flush.
        *self.written.lock().expect("written flag") = true;
        Ok(())
    }

    async fn finalized(&self, _: BlockNumber) -> Result<(), String> {
        // Finalized views (getSlot, blocks newly final) moved: drop the tip answers now.
        self.invalidator.blocks_written(&[]).await;
        Ok(())
    }
}
