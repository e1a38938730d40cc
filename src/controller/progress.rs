//! An IngestJob's progress, for its status, read from the catalog its workers
//! commit to: the catalog is the source of truth (a checkpoint there is
//! durable, and nothing can report more than it holds). The controller reads
//! the catalog URL from the ChainSource's Secret, opens it read-only and
//! never writes; the rate is the change of slots done over the last minute of
//! its own reads. Workers thus need no Kubernetes API access at all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::workload::catalog_job;
use crate::catalog::{self, Catalog, JobProgress, RecordedHead};
use crate::crd::ChainSource;
use crate::crd::ingest_job::{
    GapStatus, IngestJob, IngestJobStatus, IngestMode, ReorgStatus, ReplicationStatus, SourceHeadStatus,
};

/// Open catalogs by URL, and recent (slots done, time) samples by job.
#[derive(Default)]
pub struct Tracker {
    catalogs: Mutex<HashMap<String, Arc<dyn Catalog>>>,
    samples: Mutex<HashMap<String, VecDeque<(u64, Instant)>>>,
}

const RATE_WINDOW: Duration = Duration::from_secs(60);

impl Tracker {
    /// Slots per second over the last minute of samples, once there are two
    /// a second apart.
    fn rate(&self, job: &str, done: u64, now: Instant) -> Option<f64> {
        let mut samples = self.samples.lock().expect("rate samples");
        let window = samples.entry(job.to_string()).or_default();
        if window.back().is_some_and(|(last, _)| *last > done) {
            window.clear(); // a new layout restarted the count
        }
        window.push_back((done, now));
        while window.len() > 2 && window.front().is_some_and(|(_, at)| now.duration_since(*at) > RATE_WINDOW) {
            window.pop_front();
        }
        let (first, at) = *window.front()?;
        let elapsed = now.duration_since(at).as_secs_f64();
        (elapsed >= 1.0).then(|| (done - first) as f64 / elapsed)
    }
}

/// Slots accounted for over every shard (each from its start to its checkpoint).
fn slots_done(progress: &JobProgress) -> u64 {
    progress.shards.iter().filter_map(|(r, s)| s.checkpoint.map(|c| c.saturating_sub(r.start) + 1)).sum()
}

/// The status fields a job's catalog records call for (the others left default).
pub fn status_fields(
    progress: &JobProgress,
    follow: bool,
    chain_head: Option<u64>,
    rate: Option<f64>,
) -> IngestJobStatus {
    let mut shards = progress.shards.clone();
    shards.sort_by_key(|(range, _)| range.start);
    // The contiguous frontier: every slot from the first shard's start up to it is done.
    let mut checkpoint = None;
    for (range, state) in &shards {
        let Some(reached) = state.checkpoint else { break };
        checkpoint = Some(reached);
        if reached < range.end {
            break;
        }
    }
    let sum = |f: fn(&catalog::ShardState) -> u64| shards.iter().map(|(_, s)| f(s)).sum::<u64>();
    let lag = if follow { chain_head.zip(checkpoint).map(|(head, at)| head.saturating_sub(at)) } else { None };
    IngestJobStatus {
        checkpoint,
        slots_done: slots_done(progress),
        slots_skipped: sum(|s| s.slots_skipped),
        blocks_written: sum(|s| s.blocks_written),
        bytes_written: sum(|s| s.bytes_written),
        gaps_found: sum(|s| s.gaps_found),
        gaps_repaired: sum(|s| s.gaps_repaired),
        duplicates_dropped: sum(|s| s.duplicates_dropped),
        gaps_open: progress.open_gaps,
        open_gaps: progress.lowest_gaps.iter().map(gap_status).collect(),
        lag_slots: lag,
        source_head: progress.source_head.map(|recorded| source_head(recorded, chain_head)),
        reorgs: progress.reorgs,
        last_reorg: progress.last_reorg.as_ref().map(reorg_status),
        rate: rate.map(|r| format!("{r:.1}")),
        ..IngestJobStatus::default()
    }
}

/// A gap as the status lists it; a long reason is cut (the catalog keeps it whole).
fn gap_status(gap: &catalog::Gap) -> GapStatus {
    const REASON_CHARS: usize = 200;
    let mut reason: String = gap.reason.chars().take(REASON_CHARS).collect();
    if reason.len() < gap.reason.len() {
        reason.push('…');
    }
    GapStatus { slot: gap.slot, reason, attempts: gap.attempts }
}

fn reorg_status(reorg: &catalog::Reorg) -> ReorgStatus {
    ReorgStatus {
        base_block: reorg.base,
        depth: reorg.depth,
        replaced_hash: reorg.replaced.clone(),
        replacement_hash: reorg.replacement.clone(),
        repaired_time: k8s_openapi::jiff::Timestamp::from_second(reorg.repaired_at).ok().map(Time),
    }
}

/// How far behind the chain head the source's recorded head is.
fn source_head(recorded: RecordedHead, chain_head: Option<u64>) -> SourceHeadStatus {
    let time = |secs: i64| k8s_openapi::jiff::Timestamp::from_second(secs).ok().map(Time);
    SourceHeadStatus {
        slot: recorded.head.number,
        block_time: recorded.head.time.and_then(time),
        lag_slots: chain_head.map(|head| head.saturating_sub(recorded.head.number)),
        lag_seconds: recorded.head.time.map(|t| (recorded.observed_at - t).max(0)),
        observed_time: time(recorded.observed_at),
    }
}

/// The catalog of `source` (its workers' catalog), opened read-only once
/// per URL; Err says why it cannot be (never a secret).
pub async fn catalog_of(ctx: &Context, namespace: &str, source: &ChainSource) -> Result<Arc<dyn Catalog>, String> {
    let reference = &source.spec.catalog.connection_secret_ref;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret =
        secrets.get_opt(&reference.name).await.map_err(|e| format!("reading Secret {}: {e}", reference.name))?;
    let url = secret
        .and_then(|s| s.data?.remove(&reference.key))
        .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
        .ok_or_else(|| format!("Secret {} has no key {}", reference.name, reference.key))?;
    let mut catalogs = ctx.progress.catalogs.lock().expect("catalogs");
    Ok(match catalogs.get(&url) {
        Some(catalog) => catalog.clone(),
        None => {
            let catalog = catalog::open_reader(&url).map_err(|e| e.to_string())?;
            catalogs.insert(url, catalog.clone());
            catalog
        }
    })
}

/// Reads `job`'s progress; Err says why it cannot be known (never a secret).
pub async fn read(ctx: &Context, job: &IngestJob, source: &ChainSource) -> Result<IngestJobStatus, String> {
    let catalog = catalog_of(ctx, &job.namespace().unwrap_or_default(), source).await?;
    let key = catalog_job(job);
    let progress = match catalog.progress(&key).await {
        Ok(progress) => progress,
        // No worker has created the schema yet: nothing done.
        Err(e) if e.to_string().contains("does not exist") => JobProgress::default(),
        Err(e) => return Err(e.to_string()),
    };
    let rate = ctx.progress.rate(&key, slots_done(&progress), Instant::now());
    let head = source.status.as_ref().and_then(|s| s.chain_head);
    let mut fields = status_fields(&progress, job.spec.mode == IngestMode::Follow, head, rate);
    if job.spec.source.store.is_some() {
        let digests = catalog.digests(&key).await.map_err(|e| e.to_string())?;
        fields.replication = Some(replication_fields(&progress, &digests, fields.checkpoint));
    }
    Ok(fields)
}

/// A replication's status from its shards' counters and epoch digests; its
/// lag is against the origin's head (which the worker records as its source's).
pub fn replication_fields(
    progress: &JobProgress,
    digests: &[crate::catalog::EpochDigest],
    checkpoint: Option<u64>,
) -> ReplicationStatus {
    let mut counts = crate::catalog::ReplicaCounts::default();
    progress.shards.iter().for_each(|(_, s)| counts.add(&s.replica));
    ReplicationStatus {
        lag_slots: progress.source_head.zip(checkpoint).map(|(h, c)| h.head.number.saturating_sub(c)),
        rows_copied: counts.rows_copied,
        rows_compared: counts.rows_compared,
        rows_missing: counts.rows_missing,
        rows_mismatched: counts.rows_mismatched,
        rows_repaired: counts.rows_repaired,
        epochs_digested: digests.len() as u64,
        epochs_proven_equal: digests.iter().filter(|d| d.proven_equal()).count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ShardRange, ShardState};

    fn shard(shard: u32, start: u64, end: u64, checkpoint: Option<u64>) -> (ShardRange, ShardState) {
        let state = ShardState { checkpoint, blocks_written: 10, slots_skipped: 1, ..ShardState::default() };
        (ShardRange { shard, start, end }, state)
    }

    #[test]
    fn the_checkpoint_is_the_contiguous_frontier_of_the_shards() {
        let progress = JobProgress {
            shards: vec![shard(1, 200, 299, Some(250)), shard(0, 100, 199, Some(199)), shard(2, 300, 399, None)],
            open_gaps: 2,
            lowest_gaps: vec![catalog::Gap {
                slot: 205,
                reason: "node error -32009: slot skipped".into(),
                attempts: 3,
            }],
            source_head: None,
            ..JobProgress::default()
        };
        let fields = status_fields(&progress, false, Some(10_000), Some(12.345));
        assert_eq!(fields.checkpoint, Some(250));
        assert_eq!(fields.slots_done, 100 + 51);
        assert_eq!(fields.blocks_written, 30);
        assert_eq!(fields.gaps_open, 2);
        assert_eq!(
            fields.open_gaps[0],
            GapStatus { slot: 205, reason: "node error -32009: slot skipped".into(), attempts: 3 }
        );
        assert_eq!(fields.lag_slots, None, "a backfill has no chain lag");
        assert_eq!(fields.rate.as_deref(), Some("12.3"));
        let fields = status_fields(
            &JobProgress { shards: vec![shard(0, 100, u64::MAX, Some(900))], ..JobProgress::default() },
            true,
            Some(1000),
            None,
        );
        assert_eq!((fields.checkpoint, fields.lag_slots), (Some(900), Some(100)));
        assert_eq!(fields.source_head, None);
    }

    #[test]
    fn a_source_behind_the_chain_says_by_how_much() {
        // A dataset whose newest block is slot 700, produced two hours before the worker asked.
        let recorded = RecordedHead {
            head: crate::pipeline::SourceHead { number: 700, time: Some(1_700_000_000) },
            observed_at: 1_700_007_200,
        };
        let progress = JobProgress {
            shards: vec![shard(0, 100, u64::MAX, Some(650))],
            source_head: Some(recorded),
            ..JobProgress::default()
        };
        let fields = status_fields(&progress, true, Some(1000), None);
        let head = fields.source_head.expect("a recorded head is reported");
        assert_eq!((head.slot, head.lag_slots, head.lag_seconds), (700, Some(300), Some(7200)));
        assert_eq!(head.block_time.unwrap().0.as_second(), 1_700_000_000);
    }

    #[test]
    fn the_rate_is_slots_per_second_over_the_last_minute() {
        let tracker = Tracker::default();
        let start = Instant::now();
        assert_eq!(tracker.rate("j", 0, start), None);
        assert_eq!(tracker.rate("j", 100, start + Duration::from_millis(500)), None, "under a second apart");
        assert_eq!(tracker.rate("j", 1000, start + Duration::from_secs(10)), Some(100.0));
        // Samples older than a minute leave the window.
        let later = start + Duration::from_secs(100);
        assert_eq!(tracker.rate("j", 10_000, later), Some(9000.0 / 90.0));
        assert_eq!(tracker.rate("j", 10_000, later + Duration::from_secs(70)), Some(0.0));
    }
}
