//! `chronicle worker ingest`: the batch and checkpoint loop between a
//! [`BlockSource`] and the [`BlockSink`]s of the job's targets, exactly once
//! and resumable, the same for every chain (`pipeline/`). `run` takes the
//! source and sinks from the chain's adapter (`chain/`).
//!
//! The slot range is cut into batches. A batch lists the produced slots
//! (`getBlocks`; the others were skipped by the chain), fetches and writes its
//! blocks in parallel (in any order), makes them durable, then commits one
//! catalog record: the new checkpoint (the batch's last slot: every slot up to
//! it is now written, skipped or a recorded gap), the skipped slots and the
//! gaps. Data first, checkpoint second, so a crash at any point loses nothing
//! and refetches at most the batch in flight. Gaps are retried at the start of
//! every run until repaired. In a parallel backfill each shard (an index of an
//! Indexed Job) owns a disjoint part of the range and its own checkpoint.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, BatchOutcome, Catalog, ShardRange};
use crate::chain::{self, ChainAdapter};
use crate::crd::chain_source::{ChainFamily, Commitment};
use crate::crd::ingest_job::IngestTarget;
use crate::pipeline::config::Secret;
use crate::pipeline::config::SourceConfig;
use crate::pipeline::sinks::Targets;
use crate::pipeline::sinks::chain_metrics::ChainMetricsConfig;
use crate::pipeline::{BlockNumber, BlockSink, BlockSource, Flushed, Link, Missing, SinkPolicy};
use crate::store;
use crate::telemetry::metrics::{self, JobGauges, SinkLabels, WORKER, WorkerMetrics};
use crate::worker::reorg::{Checked, ForkWatch};

/// Everything a run needs; the controller passes the same settings.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Catalog name of the job (an IngestJob's `namespace/name`).
    pub job: String,
    /// Which adapter reads and stores the blocks.
    pub chain: ChainFamily,
    pub store: String,
    /// How to reach a Bigtable store (from the worker spec, or the environment by hand).
    pub store_access: store::BigtableAccess,
    pub catalog: Secret,
    pub source: SourceConfig,
    pub from: Option<BlockNumber>,
    pub to: Option<BlockNumber>,
    pub follow: bool,
    pub shard: u32,
    pub shards: u32,
    pub batch_size: usize,
    pub concurrency: usize,
    /// How often a follower asks for the tip without a WebSocket.
    pub poll_interval: Duration,
    /// How long a batch waits for the catalog to come back before giving up.
    pub catalog_patience: Duration,
    /// What the job writes: `canonical`, `lake`, `metrics`.
    pub targets: Vec<IngestTarget>,
    /// The lake's root URL, with the network its partitions are filed under.
    pub lake: Option<LakeConfig>,
    /// Caches whose answers a new block changes (`redis://…`, or `memory://NAME` in one process).
    pub caches: Vec<Secret>,
    /// The chain-metrics server, when the targets include `metrics`.
    pub chain_metrics: Option<ChainMetricsConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeConfig {
    pub url: String,
    pub network: String,
}

/// The sinks' targets of a run: its lake opened, its caches named.
pub fn targets(config: &IngestConfig) -> anyhow::Result<Targets> {
    let lake = match (&config.lake, config.targets.contains(&IngestTarget::Lake)) {
        (Some(lake), true) => Some(Arc::new(crate::lake::Lake::open(&lake.url, config.chain.as_str(), &lake.network)?)),
        (None, true) => anyhow::bail!("the job's targets include the lake, but no lake is configured"),
        (_, false) => None,
    };
    let chain_metrics = match (&config.chain_metrics, config.targets.contains(&IngestTarget::Metrics)) {
        (Some(metrics), true) => Some(metrics.clone()),
        (None, true) => anyhow::bail!("the job's targets include metrics, but the source has no metrics sink"),
        (_, false) => None,
    };
    Ok(Targets {
        canonical: config.targets.contains(&IngestTarget::Canonical),
        lake,
        caches: config.caches.clone(),
        chain_metrics,
        hold_until_final: config.follow
            && matches!(&config.source, SourceConfig::Rpc(rpc) if rpc.commitment == Commitment::Confirmed),
    })
}

/// Told the checkpoint after each committed batch (a progress bar, say).
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Fn(BlockNumber) + Send + Sync>>);

impl Progress {
    pub fn new(report: impl Fn(BlockNumber) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(report)))
    }

    fn committed(&self, checkpoint: BlockNumber) {
        if let Some(report) = &self.0 {
            report(checkpoint);
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub range: Option<ShardRange>,
    pub checkpoint: Option<BlockNumber>,
    pub written: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub repaired: u64,
    /// Gaps still open in the shard's range when the run ended.
    pub open_gaps: Vec<BlockNumber>,
    /// The run stopped on request before its range was done.
    pub interrupted: bool,
}

/// The part of `from..=to` that shard `index` of `count` owns.
pub fn shard_range(from: BlockNumber, to: BlockNumber, index: u32, count: u32) -> Option<ShardRange> {
    let total = to.checked_sub(from)?.checked_add(1)?;
    let per = total.div_ceil(u64::from(count.max(1)));
    let start = from.checked_add(per.checked_mul(u64::from(index))?)?;
    (start <= to).then(|| ShardRange { shard: index, start, end: to.min(start + per - 1) })
}

pub(super) struct Ingest<B> {
    pub(super) config: IngestConfig,
    pub(super) source: Arc<dyn BlockSource<B>>,
    /// In flush order: the canonical store before cache invalidation.
    pub(super) sinks: Vec<Arc<dyn BlockSink<B>>>,
    pub(super) catalog: Arc<dyn Catalog>,
    summary: Summary,
    shutdown: CancellationToken,
    progress: Progress,
    gauges: JobGauges,
    /// A follower ahead of finality whose sinks hold blocks until final, or
    /// whose chain replaces blocks: its checkpoint moves no further than the
    /// final tip, so a restart refetches (and rechecks) every block above.
    hold_checkpoint: bool,
    /// The final tip the sinks were last told of.
    pub(super) final_tip: Option<BlockNumber>,
}

/// What became of one slot.
enum SlotResult {
    Written { slot: BlockNumber, bytes: u64, link: Option<Link> },
    Skipped(BlockNumber),
    Gap(BlockNumber, String),
}

/// Runs an ingest with the chain's adapter: its source, and the sinks of
/// the job's targets over its canonical store.
pub async fn run(config: IngestConfig, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    let adapter = chain::adapter(config.chain).map_err(anyhow::Error::msg)?;
    crate::with_adapter!(adapter, |chain| match &config.source {
        SourceConfig::BigQuery(_) => run_rows(&chain, config, shutdown).await,
        SourceConfig::Rpc(_) | SourceConfig::Archive(_) => run_with(&chain, config, shutdown).await,
        SourceConfig::Store(_) => crate::replication::run(&chain, config, shutdown).await,
    })
}

/// [`run`] of a dataset's rows into the lake.
pub async fn run_rows<A: ChainAdapter>(
    adapter: &A,
    config: IngestConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<Summary> {
    let SourceConfig::BigQuery(dataset) = &config.source else {
        anyhow::bail!("rows come from a dataset source; this job reads a node")
    };
    let connect = adapter.rows_source(dataset);
    let sinks = adapter.rows_sinks(&targets(&config)?)?;
    let source = connect.await.context("connecting to BigQuery")?;
    let catalog = catalog::open(config.catalog.expose()).await.context("opening the catalog")?;
    run_pipeline(config, source, sinks, catalog, shutdown, Progress::default()).await
}

/// [`run`] with a given adapter.
pub async fn run_with<A: ChainAdapter>(
    adapter: &A,
    config: IngestConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<Summary> {
    let store =
        store::open_for(adapter, &config.store, &config.store_access).await.context("opening the block store")?;
    let source = adapter.source(&config.source, Some(&store))?;
    let sinks = adapter.sinks(&store, &targets(&config)?)?;
    let catalog = catalog::open(config.catalog.expose()).await.context("opening the catalog")?;
    run_pipeline(config, source, sinks, catalog, shutdown, Progress::default()).await
}

/// The loop itself, for any chain's blocks, source and sinks. The catalog
/// and the sinks' stores are opened by the caller, so that one process can
/// run many jobs over one embedded store (`chronicle dev`).
pub async fn run_pipeline<B: Send + Sync + 'static>(
    config: IngestConfig,
    source: Arc<dyn BlockSource<B>>,
    sinks: Vec<Arc<dyn BlockSink<B>>>,
    catalog: Arc<dyn Catalog>,
    shutdown: CancellationToken,
    progress: Progress,
) -> anyhow::Result<Summary> {
    use tracing::Instrument;
    let summary = Summary::default();
    // One span per work unit: the job and its shard on every line.
    let span = tracing::info_span!("ingest", job = %config.job, shard = config.shard, follow = config.follow);
    let gauges = WORKER.job(&config.job);
    // Only a follower repairs reorganizations: a backfill of a chain that
    // replaces blocks reads at finality.
    let source = match source.finalized() {
        Some(at_finality) if !config.follow && source.reorganizes() => at_finality,
        _ => source,
    };
    let hold_checkpoint = config.follow
        && source.finalized().is_some()
        && (source.reorganizes() || sinks.iter().any(|sink| sink.holds_until_final()));
    let mut ingest = Ingest {
        config,
        source,
        sinks,
        catalog,
        summary,
        shutdown: shutdown.clone(),
        progress,
        gauges,
        hold_checkpoint,
        final_tip: None,
    };
    async move {
        if ingest.config.follow {
            ingest.follow(shutdown).await?
        } else {
            ingest.backfill(shutdown).await?
        }
        Ok(ingest.summary)
    }
    .instrument(span)
    .await
}

/// Slots below a confirmed follower's checkpoint checked against the
/// finalized chain again when it starts: far more than the few dozen a
/// confirmed feed runs ahead of finality.
const RECHECK_AFTER_RESTART: u64 = 1_024;

impl<B: Send + Sync + 'static> Ingest<B> {
    async fn backfill(&mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (from, to) = (self.config.from.unwrap_or(0), self.config.to.context("a backfill needs --to")?);
        anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
        let Some(range) = shard_range(from, to, self.config.shard, self.config.shards) else {
            tracing::info!(shard = self.config.shard, "this shard owns no slots");
            return Ok(());
        };
        self.summary.range = Some(range);
        let state = self.catalog.shard(&self.config.job, range).await?;
        if let Some(checkpoint) = state.checkpoint {
            self.progress.committed(checkpoint);
        }
        tracing::info!(job = %self.config.job, shard = range.shard, start = range.start, end = range.end, checkpoint = ?state.checkpoint, "backfill");
        self.refresh_open_gaps().await;
        self.repair_gaps(range.start, state.checkpoint.unwrap_or(range.start).min(range.end)).await?;
        let mut next = state.checkpoint.map_or(range.start, |c| c + 1);
        self.gauges.remaining_blocks.set((range.end + 1).saturating_sub(next) as i64);
        self.summary.checkpoint = state.checkpoint;
        while next <= range.end {
            if shutdown.is_cancelled() {
                self.summary.interrupted = true;
                break;
            }
            let end = range.end.min(next.saturating_add(self.config.batch_size as u64 - 1));
            self.batch(range.shard, next, end).await?;
            if self.summary.interrupted {
                break;
            }
            next = end + 1;
            self.gauges.remaining_blocks.set((range.end + 1).saturating_sub(next) as i64);
        }
        self.summary.open_gaps =
            self.catalog.open_gaps(&self.config.job, range.start, range.end).await?.iter().map(|g| g.slot).collect();
        Ok(())
    }

    /// Follows the tip until asked to stop. A slot notification (or the poll
    /// interval) wakes the loop; each wake-up ingests up to the tip in batches.
    async fn follow(&mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let range = ShardRange { shard: 0, start: self.config.from.unwrap_or(0), end: BlockNumber::MAX >> 1 };
        let state = self.catalog.shard(&self.config.job, range).await?;
        let mut next = match (state.checkpoint, self.config.from) {
            (Some(c), _) => c + 1,
            (None, Some(from)) => from,
            (None, None) => self.source.tip().await.map_err(anyhow::Error::msg)?,
        };
        self.summary.range = Some(range);
        self.summary.checkpoint = state.checkpoint;
        self.refresh_open_gaps().await;
        let wake = Arc::new(tokio::sync::Notify::new());
        let (source, notify, stop) = (self.source.clone(), wake.clone(), shutdown.clone());
        tokio::spawn(async move { source.watch_tip(notify, stop).await });
        let finalized = self.source.finalized();
        let confirmed = finalized.is_some();
        let mut unfinalized = BTreeSet::new();
        let mut forks = ForkWatch::default();
        if self.hold_checkpoint {
            // Blocks an earlier run stored above its checkpoint were not final:
            // taken back, to be fetched again from the chain as it is now.
            self.take_back_above(next, &mut forks, state.checkpoint).await?;
        }
        if let Some(finalized) = &finalized {
            // An earlier run may have stopped with blocks stored ahead of
            // finality: check the last stretch below the checkpoint again
            // (slots never stored are removed as no-ops), then write the
            // watermark, so no block written ahead of it reads as final.
            if state.checkpoint.is_some() && !self.source.reorganizes() {
                let first = range.start.max(self.config.from.unwrap_or(0));
                unfinalized.extend(next.saturating_sub(RECHECK_AFTER_RESTART).max(first)..next);
            }
            self.drop_unfinalized(finalized.as_ref(), &mut unfinalized, &mut forks, None).await?;
        }
        tracing::info!(job = %self.config.job, next, confirmed, "following the tip");
        let mut watch = FollowWatch::default();
        while !shutdown.is_cancelled() {
            let asked = Instant::now();
            let tip = self.source.tip().await;
            WORKER.fetch("tip", metrics::outcome(tip.is_ok()), asked.elapsed());
            let tip = match tip {
                Ok(tip) => {
                    self.gauges.source_tip.set(tip as i64);
                    self.gauges.lag_blocks.set(tip.saturating_sub(next.saturating_sub(1)) as i64);
                    Some(tip)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tip unknown; retrying");
                    None
                }
            };
            // The node's chain ends below ours: a reorganization no new block will show.
            let shorter = tip.is_some_and(|tip| tip + 1 < next) && self.source.reorganizes();
            let tip = tip.unwrap_or(0);
            if watch.head_due(tip) {
                self.record_head().await;
            }
            if watch.gaps_due() {
                // Late rows, a node back up: gaps below the checkpoint are retried as the tip moves on.
                let repaired = self.repair_gaps(range.start, next.saturating_sub(1)).await?;
                forks.record_written(repaired);
            }
            // A follower that holds its checkpoint stores no further ahead of
            // finality than it can take back after a restart.
            let ahead = self.ahead_limit(next);
            let held = ahead.is_some_and(|limit| next > limit && next <= tip);
            if held && watch.held_due() {
                tracing::warn!(next, limit = ?ahead, final_tip = ?self.final_tip, "waiting for finality to move before storing further ahead");
            }
            if let (true, Some(finalized)) = (held || shorter, &finalized) {
                // No batch to run: check what is stored, and let finality move.
                let top = Some(next - 1);
                if let Some(repaired) =
                    self.drop_unfinalized(finalized.as_ref(), &mut unfinalized, &mut forks, top).await?
                {
                    next = repaired + 1;
                    continue;
                }
            } else if next <= tip {
                let mut end = tip.min(next.saturating_add(self.config.batch_size as u64 - 1));
                end = ahead.map_or(end, |limit| end.min(limit));
                let written = self.batch(0, next, end).await?;
                if self.summary.interrupted {
                    break;
                }
                if let Some(finalized) = &finalized {
                    // A chain that replaces blocks is checked by their links; one that drops them, by what it produced.
                    if self.source.reorganizes() {
                        forks.record_written(written);
                    } else {
                        unfinalized.extend(written.iter().map(|(number, _)| *number));
                    }
                    let top = Some(end);
                    if let Some(repaired) =
                        self.drop_unfinalized(finalized.as_ref(), &mut unfinalized, &mut forks, top).await?
                    {
                        // The node's chain now ends there (it may be shorter than ours was).
                        end = repaired;
                    }
                }
                next = end + 1;
                self.gauges.lag_blocks.set(tip.saturating_sub(end) as i64);
                continue;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        self.summary.interrupted = true;
        Ok(())
    }

    /// Records the source's head in the catalog, for the job's status; a
    /// failure only delays that.
    async fn record_head(&self) {
        let recorded = match self.source.head().await {
            Ok(head) => self.catalog.record_head(&self.config.job, head).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "the source's head is not recorded this time");
        }
    }

    /// With `confirmed` commitment a stored block may yet be skipped by the
    /// cluster: once the finalized tip passes it, blocks the finalized chain
    /// does not list are removed again and recorded as skipped. On a chain
    /// that replaces blocks, the blocks stored up to `top` are checked first
    /// (`worker/reorg.rs`); returns the newest block stored after a repair.
    async fn drop_unfinalized(
        &mut self,
        finalized: &dyn BlockSource<B>,
        unfinalized: &mut BTreeSet<BlockNumber>,
        forks: &mut ForkWatch,
        top: Option<BlockNumber>,
    ) -> anyhow::Result<Option<BlockNumber>> {
        let tip = match finalized.tip().await {
            Ok(tip) => tip,
            Err(e) => {
                tracing::debug!(error = %e, "the final tip is unknown this time");
                return Ok(None);
            }
        };
        let mut repaired = None;
        if let Some(top) = top.filter(|_| self.source.reorganizes()) {
            match self.repair_reorgs(forks, top, tip).await? {
                Checked::Sound => {}
                Checked::Repaired(newest) => repaired = Some(newest),
                Checked::Unknown(why, repaired) => {
                    tracing::warn!(error = %why, "cannot check the stored blocks against the node; the final tip waits");
                    return Ok(repaired);
                }
            }
        }
        let settled: Vec<BlockNumber> = unfinalized.range(..=tip).copied().collect();
        if let (Some(&first), Some(&last)) = (settled.first(), settled.last()) {
            let produced: BTreeSet<BlockNumber> =
                finalized.produced(first, last).await.map_err(anyhow::Error::msg)?.into_iter().collect();
            let orphans: Vec<BlockNumber> = settled.iter().copied().filter(|s| !produced.contains(s)).collect();
            for slot in &orphans {
                tracing::warn!(slot, "confirmed block was not finalized; removing it");
                for sink in &self.sinks {
                    sink.remove(*slot).await.map_err(|e| anyhow::anyhow!("slot {slot}: {}: {e}", sink.name()))?;
                }
            }
            if !orphans.is_empty() {
                self.flush().await?;
                self.commit(0, BatchOutcome { skipped: orphans, ..BatchOutcome::default() }, Pass::Removal).await?;
            }
            for slot in settled {
                unfinalized.remove(&slot);
            }
        }
        // Readers may now treat every stored block through `tip` as final.
        for sink in &self.sinks {
            sink.finalized(tip).await.map_err(|e| anyhow::anyhow!("finalized through {tip}: {}: {e}", sink.name()))?;
        }
        self.final_tip = Some(self.final_tip.map_or(tip, |known| known.max(tip)));
        forks.settle(tip);
        Ok(repaired)
    }

    /// Retries the gaps recorded by earlier runs below the checkpoint.
    async fn repair_gaps(
        &mut self,
        start: BlockNumber,
        end: BlockNumber,
    ) -> anyhow::Result<Vec<(BlockNumber, Option<Link>)>> {
        let gaps = self.catalog.open_gaps(&self.config.job, start, end).await?;
        if gaps.is_empty() {
            return Ok(Vec::new());
        }
        tracing::info!(count = gaps.len(), "retrying gaps from earlier runs");
        let mut outcome = BatchOutcome::default();
        let written = self.write_slots(gaps.iter().map(|g| g.slot).collect(), &mut outcome, true).await?;
        self.summary.repaired += outcome.repaired.len() as u64;
        let shard = self.summary.range.map_or(0, |r| r.shard);
        self.commit(shard, outcome, Pass::Repair).await?;
        Ok(written)
    }

    /// One batch `start..=end`: list, fetch, write, sync, commit. Returns the
    /// slots written, each with its place in the chain where the source names it.
    async fn batch(
        &mut self,
        shard: u32,
        start: BlockNumber,
        end: BlockNumber,
    ) -> anyhow::Result<Vec<(BlockNumber, Option<Link>)>> {
        let began = Instant::now();
        // The source may be briefly unreachable; give up (nothing is lost) after
        // its patience or when asked to stop.
        let deadline = Instant::now() + self.source.patience();
        let produced = loop {
            let asked = Instant::now();
            let listed = self.source.produced(start, end).await;
            WORKER.fetch("produced", metrics::outcome(listed.is_ok()), asked.elapsed());
            match listed {
                Ok(slots) => break slots,
                Err(_) if self.shutdown.is_cancelled() => {
                    // Nothing fetched yet: abandon the batch; its checkpoint stays where it was.
                    self.summary.interrupted = true;
                    return Ok(Vec::new());
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(error = %e, start, end, "cannot list produced slots; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => anyhow::bail!(
                    "the source did not answer: {e}; progress up to slot {} is saved",
                    start.saturating_sub(1)
                ),
            }
        };
        let produced_set: BTreeSet<BlockNumber> =
            produced.iter().copied().filter(|s| (start..=end).contains(s)).collect();
        let mut outcome = BatchOutcome {
            checkpoint: self.checkpoint_at(end),
            skipped: (start..=end).filter(|s| !produced_set.contains(s)).collect(),
            ..BatchOutcome::default()
        };
        let written = self.write_slots(produced_set.into_iter().collect(), &mut outcome, false).await?;
        outcome.duplicates = self.source.take_duplicates();
        self.summary.written += written.len() as u64;
        self.summary.bytes += outcome.bytes;
        self.summary.skipped += outcome.skipped.len() as u64;
        let checkpoint = outcome.checkpoint;
        self.commit(shard, outcome, Pass::Batch).await?;
        if let Some(checkpoint) = checkpoint {
            self.summary.checkpoint = Some(checkpoint);
            self.progress.committed(checkpoint);
        }
        let rate = (end - start + 1) as f64 / began.elapsed().as_secs_f64().max(1e-9);
        tracing::info!(start, end, blocks = written.len(), slots_per_second = format!("{rate:.1}"), "batch committed");
        Ok(written)
    }

    /// The checkpoint a batch ending at `end` commits: `end`, or no further
    /// than the final tip for a follower that holds it (`None`: it stays).
    fn checkpoint_at(&self, end: BlockNumber) -> Option<BlockNumber> {
        if !self.hold_checkpoint {
            return Some(end);
        }
        let held = self.final_tip?.min(end);
        let started = self.summary.range.is_none_or(|range| held >= range.start);
        (started && self.summary.checkpoint.is_none_or(|committed| held > committed)).then_some(held)
    }

    /// The newest block a follower that holds its checkpoint may store now
    /// (`None`: no limit); with the final tip unknown, none past `next`.
    fn ahead_limit(&self, next: BlockNumber) -> Option<BlockNumber> {
        if !self.hold_checkpoint {
            return None;
        }
        Some(self.final_tip.map_or(next.saturating_sub(1), |tip| tip + crate::worker::reorg::MAX_AHEAD))
    }

    /// Fetches and writes `slots` and tallies the results into `outcome`
    /// (a slot retried from an earlier run's gap counts as repaired once it is
    /// written or found skipped). Every sink is flushed before the checkpoint
    /// that covers the blocks: durable in the store, cached answers dropped.
    pub(super) async fn write_slots(
        &self,
        slots: Vec<BlockNumber>,
        outcome: &mut BatchOutcome,
        repairing: bool,
    ) -> anyhow::Result<Vec<(BlockNumber, Option<Link>)>> {
        let mut written = Vec::new();
        for result in self.fetch_and_write(slots).await {
            match result {
                SlotResult::Written { slot, bytes, link } => {
                    written.push((slot, link));
                    outcome.written.push(slot);
                    outcome.bytes += bytes;
                    if repairing {
                        outcome.repaired.push(slot);
                    }
                }
                SlotResult::Skipped(slot) => {
                    outcome.skipped.push(slot);
                    if repairing {
                        outcome.repaired.push(slot);
                    }
                }
                SlotResult::Gap(slot, reason) => {
                    tracing::warn!(slot, %reason, "gap");
                    outcome.gaps.push((slot, reason));
                }
            }
        }
        let flushed = self.flush().await?;
        outcome.partitions.extend(flushed.partitions);
        outcome.replica.merge(flushed.replica);
        written.sort_by_key(|(slot, _)| *slot);
        Ok(written)
    }

    /// Flushes every sink in order; a held sink's failure stops the batch
    /// before its checkpoint, a best-effort sink's is logged.
    pub(super) async fn flush(&self) -> anyhow::Result<Flushed> {
        let mut flushed = Flushed::default();
        for sink in &self.sinks {
            let started = Instant::now();
            let result = sink.flush().await;
            let labels = SinkLabels { sink: sink.name(), outcome: metrics::outcome(result.is_ok()) };
            WORKER.sink_flush_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            match (result, sink.policy()) {
                (Ok(done), _) => {
                    flushed.partitions.extend(done.partitions);
                    flushed.replica.merge(done.replica);
                }
                (Err(e), SinkPolicy::Held) => anyhow::bail!("{}: {e}; the batch will be redone", sink.name()),
                (Err(e), SinkPolicy::BestEffort) => tracing::warn!(sink = sink.name(), error = %e, "sink flush failed"),
            }
        }
        Ok(flushed)
    }

    /// Fetches blocks and writes each to every sink with bounded parallelism,
    /// one task per block so decoding and encoding use every core.
    async fn fetch_and_write(&self, slots: Vec<BlockNumber>) -> Vec<SlotResult> {
        futures::stream::iter(slots)
            .map(|slot| {
                let (source, sinks) = (self.source.clone(), self.sinks.clone());
                async move {
                    let task = tokio::spawn(async move {
                        let asked = Instant::now();
                        let block = source.block(slot).await;
                        let outcome = match &block {
                            Ok(_) => "ok",
                            Err(Missing::Skipped) => "skipped",
                            Err(Missing::Gap(_)) => "gap",
                        };
                        WORKER.fetch("block", outcome, asked.elapsed());
                        let block = match block {
                            Ok(block) => block,
                            Err(Missing::Skipped) => return SlotResult::Skipped(slot),
                            Err(Missing::Gap(reason)) => return SlotResult::Gap(slot, reason),
                        };
                        let mut bytes = 0;
                        for sink in &sinks {
                            let started = Instant::now();
                            let written = sink.write(slot, &block).await;
                            let labels = SinkLabels { sink: sink.name(), outcome: metrics::outcome(written.is_ok()) };
                            WORKER.sink_write_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
                            match (written, sink.policy()) {
                                (Ok(written), _) => bytes += written.bytes,
                                (Err(e), SinkPolicy::Held) => return SlotResult::Gap(slot, e),
                                (Err(e), SinkPolicy::BestEffort) => {
                                    tracing::warn!(slot, sink = sink.name(), error = %e, "sink write failed")
                                }
                            }
                        }
                        SlotResult::Written { slot, bytes, link: source.link(&block) }
                    });
                    task.await.unwrap_or_else(|e| SlotResult::Gap(slot, format!("worker task failed: {e}")))
                }
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await
    }

    /// Commits a batch, waiting out a catalog outage (nothing proceeds
    /// meanwhile, so nothing is lost or done twice).
    pub(super) async fn commit(&self, shard: u32, outcome: BatchOutcome, pass: Pass) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.config.catalog_patience;
        let mut delay = Duration::from_millis(200);
        loop {
            match self.catalog.commit(&self.config.job, shard, &outcome).await {
                Ok(()) => {
                    self.committed(&outcome, pass).await;
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline => {
                    WORKER.ingest_catalog_retries.inc();
                    tracing::warn!(error = %e, checkpoint = ?outcome.checkpoint, "catalog unavailable; checkpoint held, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e).context("the catalog stayed unavailable; the batch will be redone on restart"),
            }
        }
    }
}

impl<B: Send + Sync + 'static> Ingest<B> {
    /// The metrics of a committed batch. Each slot counts once per thing
    /// that became of it: a repair pass counts only what it repaired (a gap
    /// still open was counted when it opened), a removal only the removals.
    async fn committed(&self, outcome: &BatchOutcome, pass: Pass) {
        let blocks = &WORKER.ingest_blocks;
        match pass {
            Pass::Batch => {
                WorkerMetrics::count(blocks, "written", outcome.written.len() as u64);
                WorkerMetrics::count(blocks, "skipped", outcome.skipped.len() as u64);
                WorkerMetrics::count(blocks, "gap", outcome.gaps.len() as u64);
            }
            Pass::Repair => WorkerMetrics::count(blocks, "repaired", outcome.repaired.len() as u64),
            Pass::Removal => WorkerMetrics::count(blocks, "removed", outcome.skipped.len() as u64),
            Pass::Reorg => {
                WorkerMetrics::count(blocks, "reorganized", outcome.written.len() as u64);
                WorkerMetrics::count(blocks, "gap", outcome.gaps.len() as u64);
            }
        }
        WORKER.ingest_bytes.inc_by(outcome.bytes);
        if let Some(checkpoint) = outcome.checkpoint {
            WORKER.ingest_batches.inc();
            self.gauges.checkpoint.set(checkpoint as i64);
        }
        if !outcome.gaps.is_empty() || !outcome.repaired.is_empty() {
            self.refresh_open_gaps().await;
        }
    }

    /// Counts the gaps open in the run's range (a gauge: the catalog knows).
    async fn refresh_open_gaps(&self) {
        let Some(range) = self.summary.range else { return };
        if let Ok(gaps) = self.catalog.open_gaps(&self.config.job, range.start, range.end).await {
            self.gauges.gaps_open.set(gaps.len() as i64);
        }
    }
}

/// What a commit records, for the slot counters.
#[derive(Clone, Copy)]
pub(super) enum Pass {
    /// A new range: its slots written, skipped or gaps.
    Batch,
    /// Gaps of earlier runs retried.
    Repair,
    /// Confirmed blocks the finalized chain dropped.
    Removal,
    /// Blocks fetched again in place of those a reorganization replaced.
    Reorg,
}

/// When a follower last recorded its source's head and retried its gaps:
/// often enough for status and late rows, seldom enough not to load the
/// catalog and the source.
#[derive(Default)]
struct FollowWatch {
    head: Option<Instant>,
    tip: Option<BlockNumber>,
    gaps: Option<Instant>,
    held: Option<Instant>,
}

const HEAD_EVERY: Duration = Duration::from_secs(10);
const GAPS_EVERY: Duration = Duration::from_secs(30);

impl FollowWatch {
    /// When the tip moved, or a while after the last record (so that its
    /// time of observation stays fresh on a source that stopped growing).
    fn head_due(&mut self, tip: BlockNumber) -> bool {
        let moved = self.tip.replace(tip) != Some(tip);
        if moved {
            self.head = None;
        }
        Self::due(&mut self.head, HEAD_EVERY)
    }

    fn gaps_due(&mut self) -> bool {
        Self::due(&mut self.gaps, GAPS_EVERY)
    }

    /// When to say again that the follower waits for finality.
    fn held_due(&mut self) -> bool {
        Self::due(&mut self.held, GAPS_EVERY)
    }

    fn due(last: &mut Option<Instant>, every: Duration) -> bool {
        let due = last.is_none_or(|at| at.elapsed() >= every);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_range_disjointly() {
        let shards: Vec<_> = (0..3).map(|i| shard_range(10, 19, i, 3)).collect();
        assert_eq!(
            shards,
            vec![
                Some(ShardRange { shard: 0, start: 10, end: 13 }),
                Some(ShardRange { shard: 1, start: 14, end: 17 }),
                Some(ShardRange { shard: 2, start: 18, end: 19 }),
            ]
        );
        assert_eq!(shard_range(0, 1, 3, 4), None, "more shards than slots");
        assert_eq!(shard_range(5, 5, 0, 1), Some(ShardRange { shard: 0, start: 5, end: 5 }));
    }
}
