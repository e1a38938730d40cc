//! `chronicle worker run` of a retention spec: one pruning run of a
//! `RetentionPolicy`, started by its CronJob. Per rule:
//!
//! - **canonical, prune**: every block below the cut goes with all its rows
//!   (`tx-by-addr`, `tx`, `entries`, then `blocks`), found by exact keys from
//!   the block itself ([`BlockRowsReader::block_rows`]), never by a table
//!   scan; the embedded store then compacts to give the space back. The cut
//!   comes from `keepSlots` (behind the newest block) or `keepFor` (by block
//!   time, found by binary search), never above the newest block, and is held
//!   by the replica guard (`guard.rs`). Cache tiers are emptied after blocks go.
//! - **canonical, gcRule**: a Bigtable garbage-collection rule of `keepFor`
//!   on every table. Bigtable removes by cell *write* time, not by slot, so
//!   blocks uploaded out of order leave holes, and no guard can hold it back.
//! - **lake, prune**: partition objects wholly below the cut are forgotten by
//!   the catalog (readers stop listing them), then deleted.
//! - **cache**: answers expire by the tier's TTL; a rule is reported as not applied.
//!
//! A dry run computes and records exactly the same figures and changes nothing.

pub mod guard;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;

use crate::catalog::{self, Catalog, RetentionRecord, unix_now};
use crate::chain::{self, ChainAdapter};
use crate::crd::retention_policy::{RetentionMethod, RetentionTarget};
use crate::pipeline::config::Secret;
use crate::store::block_rows::{self, BlockRowsReader};
use crate::store::{self, BigtableAccess};
use crate::worker::spec::{Keep, RetentionRuleSpec};

/// A run, as the spec describes it with its Secrets resolved.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    pub policy: String,
    pub chain: crate::crd::chain_source::ChainFamily,
    pub network: String,
    pub store: String,
    pub store_access: BigtableAccess,
    pub catalog: Secret,
    pub lake: Option<String>,
    pub rules: Vec<RetentionRuleSpec>,
    pub dry_run: bool,
    pub guard: Vec<String>,
    pub caches: Vec<Secret>,
}

/// Blocks whose rows are read (and removed) at once.
const CONCURRENCY: usize = 16;

/// Runs the policy once and records the run in the catalog (`Running`, then
/// `Succeeded` or `Failed` with the reason).
pub async fn run(config: RetentionConfig) -> anyhow::Result<RetentionRecord> {
    let adapter = chain::adapter(config.chain).map_err(anyhow::Error::msg)?;
    let catalog = catalog::open(config.catalog.expose()).await.context("opening the catalog")?;
    let mut record = RetentionRecord {
        phase: "Running".into(),
        dry_run: config.dry_run,
        started_at: unix_now(),
        ..RetentionRecord::default()
    };
    catalog.record_retention(&config.policy, &record).await?;
    let outcome = crate::with_adapter!(adapter, |chain| apply(&chain, &config, catalog.as_ref(), &mut record).await);
    record.finished_at = Some(unix_now());
    match &outcome {
        Ok(()) => record.phase = "Succeeded".into(),
        Err(e) => {
            record.phase = "Failed".into();
            record.message = Some(format!("{e:#}"));
        }
    }
    count_run(&record, outcome.is_ok());
    catalog.record_retention(&config.policy, &record).await?;
    outcome.map(|()| record)
}

/// The run's figures in the worker metrics (a dry run removes nothing).
fn count_run(record: &RetentionRecord, ok: bool) {
    use crate::telemetry::metrics::{WORKER, WorkerMetrics};
    WorkerMetrics::count(&WORKER.retention_runs, if ok { "succeeded" } else { "failed" }, 1);
    if !record.dry_run {
        let removed = &WORKER.retention_removed;
        WorkerMetrics::count(removed, "blocks", record.blocks_removed);
        WorkerMetrics::count(removed, "rows", record.rows_removed);
        WorkerMetrics::count(removed, "bytes", record.bytes_removed);
        WorkerMetrics::count(removed, "lake_objects", record.lake_objects_removed);
    }
}

async fn apply<A: ChainAdapter>(
    adapter: &A,
    config: &RetentionConfig,
    catalog: &dyn Catalog,
    record: &mut RetentionRecord,
) -> anyhow::Result<()> {
    // No admin calls: a pruning run needs data access only (gcRule aside).
    let cells = store::open_cells(&config.store, &config.store_access).await.context("opening the block store")?;
    let reader = adapter.rows_reader(Arc::new(adapter.layout(cells)));
    for rule in &config.rules {
        match (rule.target, rule.method) {
            (RetentionTarget::Canonical, RetentionMethod::Prune) => {
                prune_canonical(adapter, reader.as_ref(), config, catalog, rule.keep, record).await?
            }
            (RetentionTarget::Canonical, RetentionMethod::GcRule) => {
                set_gc_rule(adapter, reader.as_ref(), config.dry_run, rule.keep, record).await?
            }
            (RetentionTarget::Lake, RetentionMethod::Prune) => {
                prune_lake(reader.as_ref(), config, catalog, rule.keep, record).await?
            }
            (target, method) => record.not_applied.push(format!(
                "{target:?} {method:?}: {}",
                match target {
                    RetentionTarget::Cache =>
                        "cached answers expire by the CacheTier's ttl; the tier is emptied whenever blocks are pruned",
                    _ => "gcRule applies to the canonical store only",
                }
            )),
        }
    }
    Ok(())
}

/// The first slot the rule keeps in a store holding `oldest..=newest`,
/// never above the newest block (a store whose ingestion stalled keeps its
/// newest block however old it is).
async fn cut_of(reader: &dyn BlockRowsReader, keep: Keep, oldest: u64, newest: u64) -> anyhow::Result<u64> {
    match keep {
        Keep::Slots { slots } => Ok(slots_cut(newest, slots)),
        Keep::Age { seconds } => age_cut(reader, oldest, newest, seconds).await,
    }
}

/// The first of the newest `slots` slots up to `newest`.
fn slots_cut(newest: u64, slots: u64) -> u64 {
    (newest + 1).saturating_sub(slots.max(1))
}

/// The oldest block of `oldest..=newest` produced within the last `seconds`
/// (`newest` when none is), by binary search over slots: block times grow
/// with slots, and a block without a time counts as older than any threshold.
async fn age_cut(reader: &dyn BlockRowsReader, oldest: u64, newest: u64, seconds: u64) -> anyhow::Result<u64> {
    let threshold = unix_now().saturating_sub(i64::try_from(seconds).unwrap_or(i64::MAX));
    let recent = async |slot: u64| -> anyhow::Result<Option<u64>> {
        let Some(&block) = reader.stored_blocks(slot, newest, 1).await?.first() else { return Ok(None) };
        Ok(reader.block_time(block).await?.is_some_and(|t| t >= threshold).then_some(block))
    };
    if let Some(block) = recent(oldest).await? {
        return Ok(block);
    }
    if recent(newest).await?.is_none() {
        return Ok(newest);
    }
    let (mut old, mut new) = (oldest, newest); // old: too old; new: recent enough
    while new - old > 1 {
        let mid = old + (new - old) / 2;
        match recent(mid).await? {
            Some(_) => new = mid,
            None => old = mid,
        }
    }
    Ok(reader.stored_blocks(new, newest, 1).await?.first().copied().unwrap_or(newest))
}

async fn prune_canonical<A: ChainAdapter>(
    adapter: &A,
    reader: &dyn BlockRowsReader,
    config: &RetentionConfig,
    catalog: &dyn Catalog,
    keep: Keep,
    record: &mut RetentionRecord,
) -> anyhow::Result<()> {
    let (Some(oldest), Some(newest)) = (reader.oldest_block().await?, reader.newest_block().await?) else {
        return Ok(()); // an empty store keeps nothing
    };
    let cut = cut_of(reader, keep, oldest, newest).await?;
    let held = guard::held_cut(catalog, &config.guard, oldest).await?;
    record.cut = Some(cut);
    let effective = match held {
        Some(held) if held < cut => {
            record.held_at = Some(held);
            held
        }
        _ => cut,
    };
    let cells = reader.cells().clone();
    let mut next = oldest;
    while next < effective {
        let slots = reader.stored_blocks(next, effective - 1, 256).await?;
        let Some(&last) = slots.last() else { break };
        let removed: Vec<anyhow::Result<(u64, u64)>> = futures::stream::iter(slots)
            .map(|slot| {
                let cells = cells.clone();
                async move {
                    let Some(rows) = reader.block_rows(slot).await? else { return Ok((0, 0)) };
                    if !config.dry_run {
                        block_rows::delete_rows(cells.as_ref(), &rows)
                            .await
                            .with_context(|| format!("slot {slot}: removing its rows"))?;
                    }
                    Ok((rows.rows.len() as u64, rows.bytes()))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for result in removed {
            let (rows, bytes) = result?;
            record.blocks_removed += u64::from(rows > 0);
            record.rows_removed += rows;
            record.bytes_removed += bytes;
        }
        next = last + 1;
    }
    record.oldest_kept = reader.stored_blocks(effective, newest, 1).await?.first().copied();
    if config.dry_run || record.blocks_removed == 0 {
        return Ok(());
    }
    cells.sync().await?;
    let before = cells.disk_bytes();
    cells.reclaim(adapter.tables()).await?;
    record.bytes_reclaimed = before.zip(cells.disk_bytes()).map(|(b, a)| b.saturating_sub(a));
    empty_caches(&config.caches).await;
    tracing::info!(policy = %config.policy, cut = effective, blocks = record.blocks_removed, rows = record.rows_removed, "pruned");
    Ok(())
}

/// Answers cached as immutable may name pruned blocks: each tier is emptied.
async fn empty_caches(caches: &[Secret]) {
    for url in caches {
        let dropped = match crate::serve::cache::Invalidator::new(url.expose()) {
            Ok(invalidator) => invalidator.drop_all().await,
            Err(e) => Err(e.to_string()),
        };
        match dropped {
            Ok(dropped) => tracing::info!(dropped, "cache tier emptied after pruning"),
            Err(e) => tracing::warn!(error = %e, "a cache tier could not be emptied; its answers live until their TTL"),
        }
    }
}

async fn set_gc_rule<A: ChainAdapter>(
    adapter: &A,
    reader: &dyn BlockRowsReader,
    dry_run: bool,
    keep: Keep,
    record: &mut RetentionRecord,
) -> anyhow::Result<()> {
    let Keep::Age { seconds } = keep else {
        record.not_applied.push("canonical gcRule: needs keepFor (Bigtable's GC removes cells by age)".into());
        return Ok(());
    };
    let tables: Vec<String> = adapter.tables().iter().map(|t| t.to_string()).collect();
    record.gc_rule = Some(format!("maxAge={seconds}s on {} (by cell write time, not slot)", tables.join(", ")));
    if !dry_run {
        reader.cells().set_max_age(adapter.tables(), Duration::from_secs(seconds)).await?;
    }
    Ok(())
}

async fn prune_lake(
    reader: &dyn BlockRowsReader,
    config: &RetentionConfig,
    catalog: &dyn Catalog,
    keep: Keep,
    record: &mut RetentionRecord,
) -> anyhow::Result<()> {
    let url = config.lake.as_ref().context("a lake rule, but the ChainSource declares no lake")?;
    let lake = crate::lake::Lake::open(url, config.chain.as_str(), &config.network)?;
    let partitions = lake.list().await?;
    let Some(newest) = partitions.iter().map(|p| p.last).max() else { return Ok(()) };
    let cut = match keep {
        Keep::Slots { slots } => slots_cut(newest, slots),
        // The lake's rows carry times, its object names only slots: the time
        // cut is the canonical store's, which holds the same blocks.
        Keep::Age { seconds } => match (reader.oldest_block().await?, reader.newest_block().await?) {
            (Some(oldest), Some(stored)) => age_cut(reader, oldest, stored, seconds).await?,
            _ => anyhow::bail!("lake keepFor: the canonical store holds no block to date the lake's slots by"),
        },
    };
    // A partition that straddles the cut stays whole.
    let doomed: Vec<_> = partitions.into_iter().filter(|p| p.last < cut).collect();
    record.lake_objects_removed += doomed.len() as u64;
    record.lake_bytes_removed += doomed.iter().map(|p| p.bytes).sum::<u64>();
    if config.dry_run || doomed.is_empty() {
        return Ok(());
    }
    let paths: Vec<String> = doomed.iter().map(|p| p.path.clone()).collect();
    catalog.drop_partitions(&paths).await?;
    for path in &paths {
        lake.remove(path).await?;
    }
    Ok(())
}
