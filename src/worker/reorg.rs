//! Reorganizations of blocks a follower stored ahead of finality, on chains
//! whose blocks name their parent (EVM: [`BlockSource::link`]).
//!
//! The follower remembers the hash and parent hash of each block it stored
//! above the final tip, and of the newest final one (the anchor). After each
//! batch every remembered block must name the one below it as its parent.
//! The first that does not shows that the stored chain and the source's
//! parted: walking down from there, the source is asked for the hash it now
//! has at each remembered number until one agrees, the fork's base. Every
//! block stored above the base is taken back from every sink (store, cache,
//! the lake's held rows), the source's blocks are fetched and written in
//! their place, and the reorganization is recorded in the catalog, which the
//! IngestJob's status and an Event report.
//!
//! A restart forgets what was remembered: a follower that holds its
//! checkpoint at the final tip (`Ingest::hold_checkpoint`) takes back every
//! block above its checkpoint and fetches them again.

use std::collections::BTreeMap;

use crate::catalog::{BatchOutcome, Reorg, unix_now};
use crate::pipeline::{BlockNumber, BlockSource, Link};
use crate::worker::ingest::{Ingest, Pass};

/// Blocks above a held checkpoint taken back when a follower starts: far
/// more than any chain runs ahead of its finality (Ethereum: 64 to 96).
pub const TAKE_BACK_AFTER_RESTART: u64 = 1_024;

/// Repairs in a row before the follower gives up (a chain reorganizing
/// faster than it can be read); the next run starts again from its checkpoint.
const REPAIRS_IN_A_ROW: usize = 8;

/// The remembered links of blocks stored above the final tip, and the anchor.
#[derive(Debug, Default)]
pub struct ForkWatch {
    links: BTreeMap<BlockNumber, Link>,
}

impl ForkWatch {
    pub fn record(&mut self, links: impl IntoIterator<Item = (BlockNumber, Link)>) {
        self.links.extend(links);
    }

    /// The lowest remembered block that does not name the remembered block
    /// below it as its parent.
    pub fn first_break(&self) -> Option<BlockNumber> {
        self.links.iter().zip(self.links.iter().skip(1)).find_map(|((below, parent), (number, link))| {
            (*number == below + 1 && link.parent != parent.hash).then_some(*number)
        })
    }

    pub fn get(&self, number: BlockNumber) -> Option<&Link> {
        self.links.get(&number)
    }

    /// Forgets `number` and every block above it (taken back).
    pub fn forget_from(&mut self, number: BlockNumber) {
        self.links.split_off(&number);
    }

    /// The chain is final through `tip`: blocks below the newest final one
    /// are forgotten once the block above each names it (one whose successor
    /// was a gap stays, to be checked when the gap is repaired).
    pub fn settle(&mut self, tip: BlockNumber) {
        let Some(anchor) = self.links.range(..=tip).next_back().map(|(n, _)| *n) else { return };
        let checked: Vec<BlockNumber> = self
            .links
            .range(..anchor)
            .filter(|(number, link)| self.links.get(&(*number + 1)).is_some_and(|above| above.parent == link.hash))
            .map(|(number, _)| *number)
            .collect();
        for number in checked {
            self.links.remove(&number);
        }
    }
}

impl<B: Send + Sync + 'static> Ingest<B> {
    /// At the start of a follower that holds its checkpoint: every block an
    /// earlier run stored above it is taken back from every sink (a block
    /// never stored is a no-op), and the checkpoint's block is remembered
    /// as the anchor the next blocks must name.
    pub(super) async fn take_back_above(
        &mut self,
        next: BlockNumber,
        forks: &mut ForkWatch,
        checkpoint: Option<BlockNumber>,
    ) -> anyhow::Result<()> {
        if checkpoint.is_none() {
            return Ok(());
        }
        let last = next.saturating_add(TAKE_BACK_AFTER_RESTART - 1);
        tracing::info!(from = next, to = last, "taking back blocks an earlier run stored ahead of finality");
        self.remove_range(next, last).await?;
        if let Some(anchor) = checkpoint.filter(|_| self.source.reorganizes())
            && let Some(hash) = self.source.hash_at(anchor).await.map_err(anyhow::Error::msg)?
        {
            forks.record([(anchor, Link { hash, parent: String::new() })]);
        }
        Ok(())
    }

    /// Repairs every reorganization the remembered links show, up to the
    /// newest stored block `top`.
    pub(super) async fn repair_reorgs(&mut self, forks: &mut ForkWatch, top: BlockNumber) -> anyhow::Result<()> {
        for _ in 0..REPAIRS_IN_A_ROW {
            let Some(broken) = forks.first_break() else { return Ok(()) };
            let base = fork_base(self.source.as_ref(), forks, broken).await?;
            let replaced = forks.get(base + 1).map(|link| link.hash.clone()).unwrap_or_default();
            let depth = top - base;
            tracing::warn!(base, depth, %replaced, "the chain was reorganized above block {base}; replacing {depth} blocks");
            self.remove_range(base + 1, top).await?;
            forks.forget_from(base + 1);
            let mut outcome = BatchOutcome::default();
            let written = self.write_slots((base + 1..=top).collect(), &mut outcome, false).await?;
            forks.record(written.into_iter().filter_map(|(number, link)| Some((number, link?))));
            self.commit(0, outcome, Pass::Reorg).await?;
            let reorg = Reorg {
                base,
                depth,
                replaced,
                replacement: forks.get(base + 1).map(|link| link.hash.clone()),
                repaired_at: unix_now(),
            };
            self.catalog.record_reorg(&self.config.job, &reorg).await?;
            crate::telemetry::metrics::WORKER.ingest_reorgs.inc();
        }
        anyhow::bail!("the chain reorganized {REPAIRS_IN_A_ROW} times in a row; progress up to the checkpoint is saved")
    }

    /// Takes `first..=last` back from every sink, newest first, and makes it effective.
    async fn remove_range(&self, first: BlockNumber, last: BlockNumber) -> anyhow::Result<()> {
        for number in (first..=last).rev() {
            for sink in &self.sinks {
                sink.remove(number).await.map_err(|e| anyhow::anyhow!("block {number}: {}: {e}", sink.name()))?;
            }
        }
        self.flush().await.map(drop)
    }
}

/// The newest remembered block below `broken` whose hash the source still has.
async fn fork_base<B>(
    source: &dyn BlockSource<B>,
    forks: &ForkWatch,
    broken: BlockNumber,
) -> anyhow::Result<BlockNumber> {
    let mut number = broken - 1;
    loop {
        let Some(ours) = forks.get(number) else {
            anyhow::bail!(
                "the chain was reorganized below block {}, deeper than the blocks stored ahead of finality",
                number + 1
            )
        };
        let theirs = source.hash_at(number).await.map_err(anyhow::Error::msg)?;
        if theirs.as_deref() == Some(ours.hash.as_str()) {
            return Ok(number);
        }
        number = number.checked_sub(1).ok_or_else(|| anyhow::anyhow!("the chain was reorganized down to block 0"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(hash: &str, parent: &str) -> Link {
        Link { hash: hash.into(), parent: parent.into() }
    }

    #[test]
    fn a_block_that_does_not_name_the_stored_one_below_it_is_a_break() {
        let mut forks = ForkWatch::default();
        forks.record([(10, link("a", "")), (11, link("b", "a")), (12, link("c", "b"))]);
        assert_eq!(forks.first_break(), None);
        forks.record([(13, link("d'", "c'"))]);
        assert_eq!(forks.first_break(), Some(13));
        // A gap between two blocks is no break: nothing to compare.
        forks.forget_from(13);
        forks.record([(15, link("f", "e"))]);
        assert_eq!(forks.first_break(), None);
    }

    #[test]
    fn settling_keeps_the_anchor_and_blocks_not_yet_checked_from_above() {
        let mut forks = ForkWatch::default();
        forks.record([(10, link("a", "")), (11, link("b", "a")), (12, link("c", "b")), (14, link("e", "d"))]);
        forks.settle(12);
        assert_eq!(forks.links.keys().copied().collect::<Vec<_>>(), [12, 14]);
        forks.record([(13, link("d", "c"))]);
        forks.settle(14);
        assert_eq!(forks.links.keys().copied().collect::<Vec<_>>(), [14]);
    }
}
