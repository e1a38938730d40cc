//! The seam every ingest runs through: a [`BlockSource`] yields a chain's
//! blocks by number; [`BlockSink`]s take them (the canonical store, cache
//! invalidation; the lake and chain metrics next). `worker/ingest.rs` is the
//! batch and checkpoint loop between them, the same for every chain, source
//! and sink.
//!
//! A new source is one file under its chain (`chain/solana/rpc.rs`, a
//! BigQuery or archive reader next to it); a new sink is one file under
//! `pipeline/sinks/`.

pub mod config;
pub mod sinks;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A block height, slot or number: how a chain counts its blocks.
pub type BlockNumber = u64;

/// Why a block did not arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// The chain produced no block at this number (a skipped slot).
    Skipped,
    /// The source could not give it now: a gap to record and repair later.
    Gap(String),
}

/// Where a chain's blocks come from.
#[async_trait]
pub trait BlockSource<B>: Send + Sync {
    /// The numbers in `start..=end` that have a block; the others were skipped.
    async fn produced(&self, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, String>;

    async fn block(&self, number: BlockNumber) -> Result<B, Missing>;

    /// The newest number the source can serve (a follower ingests up to it).
    async fn tip(&self) -> Result<BlockNumber, String>;

    /// The newest block the source holds, with its time where the source
    /// knows it: how far behind the chain the source itself runs. The same
    /// as `tip` unless the source holds blocks back (a dataset's settling rows).
    async fn head(&self) -> Result<SourceHead, String> {
        Ok(SourceHead { number: self.tip().await?, time: None })
    }

    /// Wakes `wake` whenever the source learns of a new block (a push
    /// subscription) until `shutdown`; a follower polls `tip` besides. A
    /// source that can only be polled returns at once.
    async fn watch_tip(&self, _wake: Arc<Notify>, _shutdown: CancellationToken) {}

    /// How long a batch keeps asking [`produced`](Self::produced) before the
    /// run fails (nothing is lost: the next run resumes from the checkpoint).
    /// A node may be briefly unreachable; a file that is not a valid archive
    /// will not heal by waiting.
    fn patience(&self) -> std::time::Duration {
        std::time::Duration::from_secs(300)
    }

    /// Rows the source gave more than once and kept once since it was last
    /// asked (a dataset's repeated rows), for the job's counters.
    fn take_duplicates(&self) -> u64 {
        0
    }

    /// For a source that serves blocks before they are final: the same source
    /// at finality, to find the blocks the final chain dropped.
    fn finalized(&self) -> Option<Arc<dyn BlockSource<B>>> {
        None
    }

    /// The block's hash and its parent's, for a chain whose blocks name
    /// their parent (EVM): how a follower ahead of finality sees that the
    /// chain it stored was reorganized (`worker/reorg.rs`). `None`: the chain
    /// drops blocks rather than replacing them (Solana's skipped slots,
    /// which [`finalized`](Self::finalized) finds).
    fn link(&self, _block: &B) -> Option<Link> {
        None
    }

    /// Blocks this source serves may later be replaced by others at the same
    /// number (it serves them before they are final, and [`link`](Self::link)s them).
    fn reorganizes(&self) -> bool {
        false
    }

    /// The place in the chain of the source's block at `number` now (a
    /// header read), to check a stored block and find where a fork began;
    /// `None` when it has no such block.
    async fn link_at(&self, number: BlockNumber) -> Result<Option<Link>, String> {
        Err(format!("this source cannot name the hash of block {number}"))
    }
}

/// A block's place in its chain: its hash and its parent's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub hash: String,
    pub parent: String,
}

/// The newest block of a source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceHead {
    pub number: BlockNumber,
    /// When the block was produced (Unix seconds), where the source says.
    pub time: Option<i64>,
}

/// What writing one block did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Bytes stored (as stored: compressed where the sink compresses).
    pub bytes: u64,
}

/// Where blocks go. `write` runs for many blocks at once; `flush` makes
/// every write so far durable (or effective) and runs before the checkpoint
/// that covers them commits, in the order the sinks are listed.
#[async_trait]
pub trait BlockSink<B>: Send + Sync {
    /// The target's name in logs and metrics (`canonical`, `cache`, …).
    fn name(&self) -> &'static str;

    /// `Held`: a failed write makes the block a gap, retried later, and a
    /// failed flush stops the batch before its checkpoint. `BestEffort`: a
    /// failure is logged and counted; the batch goes on.
    fn policy(&self) -> SinkPolicy;

    async fn write(&self, number: BlockNumber, block: &B) -> Result<Written, String>;

    /// What it returns is committed with the checkpoint (the lake's
    /// partitions: they become visible to readers with it).
    async fn flush(&self) -> Result<Flushed, String>;

    /// Takes back a block the final chain dropped (after `confirmed` reads).
    async fn remove(&self, number: BlockNumber) -> Result<(), String>;

    /// Takes back every block of `first..=last`, newest first (most of them
    /// may never have been stored: a store overrides this with one scan).
    async fn remove_range(&self, first: BlockNumber, last: BlockNumber) -> Result<(), String> {
        for number in (first..=last).rev() {
            self.remove(number).await?;
        }
        Ok(())
    }

    /// The chain finalized every block through `number` (after `confirmed`
    /// reads): targets that tell readers what is final record it.
    async fn finalized(&self, _number: BlockNumber) -> Result<(), String> {
        Ok(())
    }

    /// Takes a block ahead of finality only once it is final (the lake:
    /// rows in a committed partition are not taken back). A follower whose
    /// sinks hold commits its checkpoint no further than the final tip, so a
    /// restart refetches what they had not yet taken.
    fn holds_until_final(&self) -> bool {
        false
    }
}

/// What a flush leaves for the checkpoint's commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub partitions: Vec<crate::catalog::LakePartition>,
    /// What a replica target copied and found since its last flush.
    pub replica: crate::catalog::ReplicaOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkPolicy {
    Held,
    BestEffort,
}
