//! The replica guard: pruning never removes a slot that a declared replica
//! has not confirmed. A replication job confirms the slots from its range's
//! start up to its contiguous checkpoint (over its shards), less its open
//! gaps; a slot below the job's start was never copied by it at all.

use crate::catalog::Catalog;

/// The highest cut every guarding job allows (blocks below it are
/// confirmed by all of them), given the store's `oldest` block; `None`
/// without guarding jobs.
pub async fn held_cut(catalog: &dyn Catalog, jobs: &[String], oldest: u64) -> anyhow::Result<Option<u64>> {
    let mut held: Option<u64> = None;
    for job in jobs {
        let allowed = confirmed_until(catalog, job, oldest).await?;
        tracing::info!(job, allowed, "replica guard");
        held = Some(held.map_or(allowed, |h| h.min(allowed)));
    }
    Ok(held)
}

/// The first slot at or above `oldest` that `job` has not confirmed.
async fn confirmed_until(catalog: &dyn Catalog, job: &str, oldest: u64) -> anyhow::Result<u64> {
    let mut shards = catalog.shards(job).await?;
    shards.sort_by_key(|(range, _)| range.start);
    let Some((first, _)) = shards.first() else { return Ok(oldest) };
    if first.start > oldest {
        return Ok(oldest);
    }
    let mut until = first.start; // the first slot not confirmed
    for (range, state) in &shards {
        let Some(checkpoint) = state.checkpoint else { break };
        until = checkpoint + 1;
        if checkpoint < range.end {
            break;
        }
    }
    let gaps = catalog.open_gaps(job, first.start, until.saturating_sub(1)).await?;
    Ok(gaps.first().map_or(until, |gap| gap.slot.min(until)).max(oldest))
}
