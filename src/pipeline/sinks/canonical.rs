//! The `canonical` target: blocks into the block store, in the chain's
//! layout (agave's for Solana, `chain/evm/layout.rs` for EVM), durable at
//! `flush`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::chain::solana::SolanaBlock;
use crate::pipeline::{BlockNumber, BlockSink, Flushed, SinkPolicy, Written};
use crate::store::{BlockStore, LedgerStore, StoreError, WriteStats};

/// What the canonical sink needs of a chain's store.
#[async_trait]
pub trait CanonicalStore<B>: Send + Sync + 'static {
    async fn write(&self, number: BlockNumber, block: &B) -> Result<WriteStats, StoreError>;

    async fn sync(&self) -> Result<(), StoreError>;

    /// Removes every stored block of `first..=last` (one block: `first == last`).
    async fn remove_range(&self, first: BlockNumber, last: BlockNumber) -> Result<(), StoreError>;

    /// Records the finalized watermark (stores fed ahead of finality).
    async fn finalized(&self, _number: BlockNumber) -> Result<(), StoreError> {
        Ok(())
    }
}

pub struct CanonicalSink<S> {
    store: Arc<S>,
}

impl<S> CanonicalSink<S> {
    pub fn new(store: Arc<S>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl<B: Send + Sync + 'static, S: CanonicalStore<B>> BlockSink<B> for CanonicalSink<S> {
    fn name(&self) -> &'static str {
        "canonical"
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::Held
    }

    async fn write(&self, number: BlockNumber, block: &B) -> Result<Written, String> {
        let stats = self.store.write(number, block).await.map_err(|e| format!("store: {e}"))?;
        Ok(Written { bytes: stats.bytes })
    }

    async fn flush(&self) -> Result<Flushed, String> {
        self.store.sync().await.map_err(|e| format!("store: {e}"))?;
        Ok(Flushed::default())
    }

    async fn remove(&self, number: BlockNumber) -> Result<(), String> {
        self.store.remove_range(number, number).await.map_err(|e| format!("store: {e}"))
    }

    async fn remove_range(&self, first: BlockNumber, last: BlockNumber) -> Result<(), String> {
        self.store.remove_range(first, last).await.map_err(|e| format!("store: {e}"))
    }

    /// `serve` shows blocks above the watermark only to `confirmed` readers.
    async fn finalized(&self, number: BlockNumber) -> Result<(), String> {
        self.store.finalized(number).await.map_err(|e| format!("store: {e}"))
    }
}

#[async_trait]
impl CanonicalStore<SolanaBlock> for LedgerStore {
    async fn write(&self, number: BlockNumber, block: &SolanaBlock) -> Result<WriteStats, StoreError> {
        self.write_block(number, block, &block.entries).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        BlockStore::sync(self).await
    }

    async fn remove_range(&self, first: BlockNumber, last: BlockNumber) -> Result<(), StoreError> {
        self.delete_range(first, last).await.map(|_| ())
    }

    async fn finalized(&self, number: BlockNumber) -> Result<(), StoreError> {
        self.set_finalized_slot(number).await
    }
}
