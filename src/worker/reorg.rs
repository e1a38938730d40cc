//! Reorganizations of blocks a follower stored ahead of finality, on chains
//! whose blocks name their parent (EVM: [`BlockSource::link`]).
//!
//! The follower remembers the hash and parent hash of each block it stored
//! above the final tip, and of the newest final one (the anchor). Two checks
//! find a reorganization, both before the final tip moves (so no block is
//! taken as final, told to the sinks as final or committed in the lake
//! before it was checked):
//!
//! - after each batch every remembered block must name the one below it as
//!   its parent;
//! - the newest stored block, the remembered block at the new final tip (or
//!   the newest below it), and the top of every run of remembered blocks
//!   below it that a gap cuts off, must have the hash the node now has at
//!   their numbers: a stretch of blocks that name each other may all be on a
//!   fork the node left (also while the node's chain is shorter than ours,
//!   when no new block comes to show it).
//!
//! A block that fails either shows where the stored chain and the node's
//! parted: walking down, the node is asked for its hash at each remembered
//! number until one agrees, the fork's base. Every block stored above the
//! base is taken back from every sink (store, cache, the lake's held rows),
//! the node's blocks up to its newest are fetched and written in their
//! place, and the reorganization is recorded in the catalog, which the
//! IngestJob's status and an Event report. A fork below the final tip the
//! follower already took stops it with that reason: nothing final is undone.
//!
//! A restart forgets what was remembered: a follower that holds its
//! checkpoint at the final tip (`Ingest::hold_checkpoint`) takes back every
//! block above its checkpoint and fetches them again.

use std::collections::BTreeMap;

use crate::catalog::{BatchOutcome, Reorg, unix_now};
use crate::pipeline::{BlockNumber, BlockSource, Link};
use crate::worker::ingest::{Ingest, Pass};

/// How far above the final tip a follower that holds its checkpoint may
/// store: past it the follower waits for finality to move. Ethereum runs 64
/// to 96 blocks ahead of finality, `confirmations` is at most 1,000; an
/// Arbitrum or OP-stack node's `finalized` tag trails its head by thousands
/// (hours when its parent chain's batches are late).
pub const MAX_AHEAD: u64 = 65_536;

/// Blocks above a held checkpoint taken back when a follower starts: all it
/// can have stored (the checkpoint trails the final tip by at most a batch).
pub const TAKE_BACK_AFTER_RESTART: u64 = 2 * MAX_AHEAD;

/// Repairs in a row before the follower gives up (a chain reorganizing
/// faster than it can be read); the next run starts again from its checkpoint.
const REPAIRS_IN_A_ROW: usize = 8;

/// What checking the stored blocks against the node found.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// Every block checked is the node's.
    Sound,
    /// A reorganization was repaired; the newest block stored now.
    Repaired(BlockNumber),
    /// The node could not be asked: the final tip stays where it was until
    /// the next check. With the newest block stored now when a repair came first.
    Unknown(String, Option<BlockNumber>),
}

impl Checked {
    fn unknown(self, why: String) -> Self {
        match self {
            Checked::Repaired(newest) => Checked::Unknown(why, Some(newest)),
            _ => Checked::Unknown(why, None),
        }
    }
}

/// The remembered links of blocks stored above the final tip, and the anchor.
#[derive(Debug, Default)]
pub struct ForkWatch {
    links: BTreeMap<BlockNumber, Link>,
}

impl ForkWatch {
    pub fn record(&mut self, links: impl IntoIterator<Item = (BlockNumber, Link)>) {
        self.links.extend(links);
    }

    /// Records the blocks a pass wrote whose source named their place in the chain.
    pub fn record_written(&mut self, written: Vec<(BlockNumber, Option<Link>)>) {
        self.record(written.into_iter().filter_map(|(number, link)| Some((number, link?))));
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

    /// The blocks to check against the node before the final tip moves to
    /// `through`: the newest remembered at or below `top`, the newest at or
    /// below `through`, and below that the top of every run a gap cuts off
    /// (the blocks under each are proven by the parent links up to it).
    pub fn to_check(&self, through: BlockNumber, top: BlockNumber) -> Vec<BlockNumber> {
        let newest_to = |last: BlockNumber| self.links.range(..=last).next_back().map(|(n, _)| *n);
        let newest = newest_to(through);
        let tops = self.links.range(..through).map(|(n, _)| *n).filter(|n| !self.links.contains_key(&(n + 1)));
        let stored_top = newest_to(top);
        let mut checks: Vec<BlockNumber> = tops.chain(newest).chain(stored_top).collect();
        checks.sort_unstable();
        checks.dedup();
        checks
    }

    /// Forgets `number` and every block above it (taken back).
    pub fn forget_from(&mut self, number: BlockNumber) {
        self.links.split_off(&number);
    }

    /// The chain is final through `tip` (and the blocks up to it checked):
    /// blocks below the newest final one, the anchor, are forgotten.
    pub fn settle(&mut self, tip: BlockNumber) {
        let Some(anchor) = self.links.range(..=tip).next_back().map(|(n, _)| *n) else { return };
        self.links = self.links.split_off(&anchor);
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
        // A follower started at `from` has no checkpoint until finality reaches it.
        if checkpoint.is_none() && self.config.from.is_none() {
            return Ok(());
        }
        let last = next.saturating_add(TAKE_BACK_AFTER_RESTART - 1);
        tracing::info!(from = next, to = last, "taking back blocks an earlier run stored ahead of finality");
        self.remove_range(next, last).await?;
        if let Some(anchor) = checkpoint.filter(|_| self.source.reorganizes())
            && let Some(link) = self.source.link_at(anchor).await.map_err(anyhow::Error::msg)?
        {
            forks.record([(anchor, link)]);
        }
        Ok(())
    }

    /// Repairs every reorganization of the blocks stored up to `top` that
    /// the remembered links, or the node's hashes up to `final_tip`, show.
    pub(super) async fn repair_reorgs(
        &mut self,
        forks: &mut ForkWatch,
        top: BlockNumber,
        final_tip: BlockNumber,
    ) -> anyhow::Result<Checked> {
        let (mut top, mut checked) = (top, Checked::Sound);
        for _ in 0..REPAIRS_IN_A_ROW {
            let broken = match forks.first_break() {
                Some(broken) => Some(broken),
                None => match self.first_stale(forks, top.min(final_tip), top).await {
                    Ok(stale) => stale,
                    Err(e) => return Ok(checked.unknown(e)),
                },
            };
            let Some(broken) = broken else { return Ok(checked) };
            let base = match fork_base(self.source.as_ref(), forks, broken).await {
                Ok(Some(base)) => base,
                Ok(None) => anyhow::bail!(
                    "the chain was reorganized below block {broken}, deeper than the blocks stored ahead of finality"
                ),
                Err(e) => return Ok(checked.unknown(e)),
            };
            if let Some(taken) = self.final_tip.filter(|taken| base < *taken) {
                anyhow::bail!(
                    "the chain was reorganized above block {base}, below block {taken} the node had already called final; \
                     nothing final is undone: check the node"
                );
            }
            let replaced = forks.get(base + 1).map(|link| link.hash.clone()).unwrap_or_default();
            let depth = top - base;
            tracing::warn!(base, depth, %replaced, "the chain was reorganized above block {base}; replacing {depth} blocks");
            self.remove_range(base + 1, top).await?;
            forks.forget_from(base + 1);
            // The node's chain may now end lower than ours did (unknown: what it lacks becomes gaps).
            if let Ok(newest) = self.source.tip().await {
                top = top.min(newest).max(base);
            }
            let mut outcome = BatchOutcome::default();
            let written = self.write_slots((base + 1..=top).collect(), &mut outcome, false).await?;
            forks.record_written(written);
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
            checked = Checked::Repaired(top);
        }
        anyhow::bail!("the chain reorganized {REPAIRS_IN_A_ROW} times in a row; progress up to the checkpoint is saved")
    }

    /// The lowest block to check before the final tip moves to `through`
    /// whose hash the node no longer has there. A number the node does not
    /// have yet proves nothing (a lagging backend answers so too); while the
    /// node's newest block is below ours, its block there is compared
    /// instead: the same hash, the node is behind; another, it forked.
    async fn first_stale(
        &self,
        forks: &ForkWatch,
        through: BlockNumber,
        top: BlockNumber,
    ) -> Result<Option<BlockNumber>, String> {
        let newest = self.source.tip().await?;
        for number in forks.to_check(through.min(newest), top.min(newest)) {
            let Some(theirs) = self.source.link_at(number).await? else { continue };
            if Some(theirs.hash.as_str()) != forks.get(number).map(|link| link.hash.as_str()) {
                return Ok(Some(number));
            }
        }
        Ok(None)
    }

    /// Takes `first..=last` back from every sink, newest first, and makes it effective.
    async fn remove_range(&self, first: BlockNumber, last: BlockNumber) -> anyhow::Result<()> {
        for sink in &self.sinks {
            let removed = sink.remove_range(first, last).await;
            removed.map_err(|e| anyhow::anyhow!("blocks {first}..={last}: {}: {e}", sink.name()))?;
        }
        self.flush().await.map(drop)
    }
}

/// The newest remembered block below `broken` whose hash the source still
/// has (gaps are stepped over); `None` when no remembered block is; `Err`
/// when the source could not be asked.
async fn fork_base<B>(
    source: &dyn BlockSource<B>,
    forks: &ForkWatch,
    broken: BlockNumber,
) -> Result<Option<BlockNumber>, String> {
    for (number, ours) in forks.links.range(..broken).rev() {
        if source.link_at(*number).await?.is_some_and(|theirs| theirs.hash == ours.hash) {
            return Ok(Some(*number));
        }
    }
    Ok(None)
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
    fn settling_keeps_the_anchor_and_what_is_above_it() {
        let mut forks = ForkWatch::default();
        forks.record([(10, link("a", "")), (11, link("b", "a")), (12, link("c", "b")), (14, link("e", "d"))]);
        forks.settle(13);
        assert_eq!(forks.links.keys().copied().collect::<Vec<_>>(), [12, 14]);
    }

    #[test]
    fn the_node_is_asked_about_the_final_tip_and_every_run_a_gap_cuts_off() {
        let mut forks = ForkWatch::default();
        let blocks = [(10, "a", ""), (11, "b", "a"), (13, "d", "c"), (14, "e", "d"), (15, "f", "e"), (16, "g", "f")];
        forks.record(blocks.map(|(n, hash, parent)| (n, link(hash, parent))));
        // Final through 15: block 15 itself, and 11 (12 is a gap); and the newest stored.
        assert_eq!(forks.to_check(15, 16), [11, 15, 16]);
        // Final through 12, a gap: the newest below it.
        assert_eq!(forks.to_check(12, 16), [11, 16]);
        assert_eq!(forks.to_check(9, 16), [16]);
    }
}
