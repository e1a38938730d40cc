//! A store's blocks out as an Old Faithful-compatible epoch archive: each
//! block's DAG in slot order, then Subsets of at most 24,000 blocks, then,
//! for a whole epoch, the Epoch node; the header's root is the last section.

use std::path::Path;

use cid::Cid;

use super::block::{self, Limits};
use super::car::{CarWriter, cid_of};
use super::node::{EpochNode, Node, SubsetNode};
use crate::chain::solana::SolanaBlock;
use crate::store::{BlockStore, LedgerStore};

/// Blocks per Subset, as Old Faithful's generator groups them (432,000 / 18).
pub const SUBSET_BLOCKS: usize = 24_000;

/// What to write.
#[derive(Clone, Debug)]
pub struct ArchiveRange {
    pub first: u64,
    pub last: u64,
    /// `Some(epoch)`: the range is that whole epoch, and the root is its Epoch node.
    pub epoch: Option<u64>,
    pub limits: Limits,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveWritten {
    pub blocks: u64,
    pub transactions: u64,
    /// Blocks stored without entries, written with one entry each (no PoH proof).
    pub without_entries: u64,
    pub bytes: u64,
    pub root: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("reading slot {slot} from the store: {reason}")]
    Store { slot: u64, reason: String },
    #[error("slot {slot}: {source}")]
    Block { slot: u64, source: block::BlockError },
    #[error("writing {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Writes `range` from `store` to the file `path` (a temporary name first,
/// renamed into place when complete: a reader never sees half an archive).
pub async fn write_archive(
    store: &LedgerStore,
    range: &ArchiveRange,
    path: &Path,
) -> Result<ArchiveWritten, WriteError> {
    let io = |source| WriteError::Io { path: path.display().to_string(), source };
    let partial = path.with_extension("car.partial");
    let file = tokio::fs::File::create(&partial).await.map_err(io)?;
    let mut writer = CarWriter::create(tokio::io::BufWriter::with_capacity(1 << 20, file)).await.map_err(io)?;
    let mut written = ArchiveWritten::default();
    let mut blocks: Vec<(u64, Cid)> = Vec::new();
    let mut next = range.first;
    while next <= range.last {
        let slots =
            store.blocks(next, 1000).await.map_err(|e| WriteError::Store { slot: next, reason: e.to_string() })?;
        let slots: Vec<u64> = slots.into_iter().filter(|slot| *slot <= range.last).collect();
        let Some(&last) = slots.last() else { break };
        for slot in slots {
            let store_error = |e: crate::store::StoreError| WriteError::Store { slot, reason: e.to_string() };
            let confirmed = store.block(slot).await.map_err(store_error)?;
            let Some(confirmed) = confirmed else { continue };
            let entries = store.entries(slot).await.map_err(store_error)?.unwrap_or_default();
            written.without_entries += u64::from(entries.is_empty());
            written.transactions += confirmed.transactions.len() as u64;
            let block = SolanaBlock { confirmed, entries };
            let (sections, cid) =
                block::encode(slot, &block, range.limits).map_err(|source| WriteError::Block { slot, source })?;
            for (cid, bytes) in &sections {
                writer.write(cid, bytes).await.map_err(io)?;
            }
            blocks.push((slot, cid));
            written.blocks += 1;
        }
        next = last + 1;
    }
    let mut root = None;
    let mut subsets = Vec::new();
    let groups: Vec<&[(u64, Cid)]> = if blocks.is_empty() { vec![&[]] } else { blocks.chunks(SUBSET_BLOCKS).collect() };
    let count = groups.len();
    for (i, group) in groups.into_iter().enumerate() {
        // The first and last Subsets reach the range's ends: every slot in
        // between without a block was skipped (the archive's own proof).
        let first = if i == 0 { range.first } else { group[0].0 };
        let last = if i + 1 == count { range.last } else { group[group.len() - 1].0 };
        let node = Node::Subset(SubsetNode { first, last, blocks: group.iter().map(|(_, cid)| *cid).collect() });
        let bytes = node.encode();
        let cid = cid_of(&bytes);
        writer.write(&cid, &bytes).await.map_err(io)?;
        subsets.push(cid);
        root = Some(cid);
    }
    if let Some(epoch) = range.epoch {
        let bytes = Node::Epoch(EpochNode { epoch, subsets }).encode();
        let cid = cid_of(&bytes);
        writer.write(&cid, &bytes).await.map_err(io)?;
        root = Some(cid);
    }
    let root = root.expect("at least one Subset is written");
    written.bytes = writer.finish(root).await.map_err(io)?;
    written.root = root.to_string();
    tokio::fs::rename(&partial, path).await.map_err(io)?;
    Ok(written)
}
