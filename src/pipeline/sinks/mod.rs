//! The sinks an ingest writes to, one file each, named by the `IngestJob`
//! target they serve. Which sink holds the batch when it fails and which
//! drops and counts is each sink's [`SinkPolicy`](super::SinkPolicy):
//!
//! | target | sink | policy |
//! |---|---|---|
//! | `canonical` | [`canonical::CanonicalSink`]: the block store in the chain's layout | held: a failed write is a gap, a failed flush stops before the checkpoint |
//! | `lake` | [`lake::LakeSink`]: the chain's normalized rows as Parquet, partitions committed with the checkpoint | held: a failed write is a gap, a failed flush stops before the checkpoint |
//! | `canonical` of a replication | [`replica::ReplicaSink`]: another store's rows, cell for cell, compared and repaired when verifying | held |
//! | (a CacheTier's Redis) | [`cache::CacheInvalidation`]: drops cached answers a block changes | best effort: answers expire with their TTL |
//! | `metrics` | [`chain_metrics::ChainMetricsSink`]: per-block aggregates to an InfluxDB v2 write API | best effort: a bounded buffer drops and counts |

pub mod cache;
pub mod canonical;
pub mod chain_metrics;
pub mod lake;
pub mod replica;

use std::sync::Arc;

/// What an ingest writes to, from its job's targets and its source's tiers.
#[derive(Clone, Default)]
pub struct Targets {
    /// The canonical store (`targets: [canonical]`).
    pub canonical: bool,
    /// The lake (`targets: [lake]`), opened.
    pub lake: Option<Arc<crate::lake::Lake>>,
    /// The caches whose answers new blocks change.
    pub caches: Vec<crate::pipeline::config::Secret>,
    /// The chain-metrics server (`targets: [metrics]`).
    pub chain_metrics: Option<chain_metrics::ChainMetricsConfig>,
    /// The job follows ahead of finality: the lake holds rows until blocks are final.
    pub hold_until_final: bool,
}
