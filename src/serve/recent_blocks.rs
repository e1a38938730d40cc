//! The headers of the newest stored blocks (slot, blockhash, height, time),
//! kept in memory: `getSlot`, `getBlockHeight`, `getLatestBlockhash` and
//! `isBlockhashValid` read them on every call, and a block read costs a whole
//! block cell, so each block is read once and only its header is kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use solana_clock::{Slot, UnixTimestamp};
use solana_transaction_status::ConfirmedBlock;
use tokio::sync::Mutex;

use crate::store::{BlockStore, StoreError};

/// agave's `MAX_PROCESSING_AGE`: a blockhash is valid for this many blocks
/// after the one that produced it.
pub const MAX_PROCESSING_AGE: usize = 150;

/// Headers kept beyond the validity window, so a new tip reads one block.
const KEPT: usize = MAX_PROCESSING_AGE + 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub slot: Slot,
    pub blockhash: String,
    pub block_height: Option<u64>,
    pub block_time: Option<UnixTimestamp>,
}

impl Header {
    pub fn of(slot: Slot, block: ConfirmedBlock) -> Self {
        Self { slot, blockhash: block.blockhash, block_height: block.block_height, block_time: block.block_time }
    }
}

pub struct RecentBlocks {
    store: Arc<dyn BlockStore>,
    headers: Mutex<BTreeMap<Slot, Header>>,
}

impl RecentBlocks {
    pub fn new(store: Arc<dyn BlockStore>) -> Self {
        Self { store, headers: Mutex::new(BTreeMap::new()) }
    }

    /// The newest stored block's header; `None` for an empty store.
    pub async fn tip(&self) -> Result<Option<Header>, StoreError> {
        Ok(self.newest(1).await?.into_iter().next())
    }

    /// Up to `count` (at most [`MAX_PROCESSING_AGE`] + 1) newest headers, newest first.
    pub async fn newest(&self, count: usize) -> Result<Vec<Header>, StoreError> {
        let count = count.clamp(1, MAX_PROCESSING_AGE + 1);
        let Some(tip) = self.store.last_block().await? else { return Ok(Vec::new()) };
        let first = self.store.first_available_block().await?.unwrap_or(0);
        let mut headers = self.headers.lock().await;
        // A retention run or a rolled-back block removes slots: forget headers the store no longer has.
        headers.retain(|slot, _| *slot <= tip && *slot >= first);
        // Walk back from the tip in widening windows until `count` slots are known.
        let mut span = (count as u64).saturating_mul(2);
        let slots = loop {
            let start = tip.saturating_sub(span).max(first);
            let mut slots = self.store.blocks(start, usize::try_from(tip - start + 1).unwrap_or(usize::MAX)).await?;
            slots.retain(|s| *s <= tip);
            if slots.len() >= count || start == first {
                break slots;
            }
            span = span.saturating_mul(4);
        };
        let wanted: Vec<Slot> = slots.into_iter().rev().take(count).collect();
        for slot in &wanted {
            if headers.contains_key(slot) {
                continue;
            }
            // A slot listed a moment ago may be gone (retention): skip it.
            let Some(block) = self.store.block(*slot).await? else { continue };
            headers.insert(*slot, Header::of(*slot, block));
        }
        while headers.len() > KEPT {
            headers.pop_first();
        }
        Ok(wanted.iter().filter_map(|slot| headers.get(slot).cloned()).collect())
    }
}
