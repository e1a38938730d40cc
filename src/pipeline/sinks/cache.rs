//! Cache invalidation: the answers a new block changes (the tip, and every
//! address it indexes) are dropped from a cache tier's Redis at `flush`,
//! after the canonical store made the block durable and before the
//! checkpoint moves, so the next call through any replica sees it. The same
//! for every chain: what differs is which addresses' answers a block changes
//! (Solana's address histories; none on EVM, whose answers about blocks
//! ahead of finality all go with the tip).

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use solana_pubkey::Pubkey;

use crate::pipeline::{BlockNumber, BlockSink, Flushed, SinkPolicy, Written};
use crate::serve::cache::Invalidator;

/// The addresses whose cached history a block changes.
pub type TouchedBy<B> = Box<dyn Fn(&B) -> Vec<Pubkey> + Send + Sync>;

pub struct CacheInvalidation<B> {
    invalidator: Invalidator,
    touched_by: TouchedBy<B>,
    touched: Mutex<BTreeSet<Pubkey>>,
    written: Mutex<bool>,
}

impl<B> CacheInvalidation<B> {
    pub fn new(invalidator: Invalidator, touched_by: TouchedBy<B>) -> Self {
        Self { invalidator, touched_by, touched: Mutex::default(), written: Mutex::new(false) }
    }
}

#[async_trait]
impl<B: Send + Sync + 'static> BlockSink<B> for CacheInvalidation<B> {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::BestEffort
    }

    async fn write(&self, _: BlockNumber, block: &B) -> Result<Written, String> {
        let addresses = (self.touched_by)(block);
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
