//! The workers' Prometheus metrics: one registry per process ([`WORKER`]),
//! filled by the ingest loop, the sinks, the store engines, the node client,
//! exports, replication and retention, and served on `/metrics`
//! ([`serve_metrics`]) while a worker runs (`--metrics-addr`; the controller
//! gives every worker pod a `metrics` port). A `chronicle serve` without one
//! appends these to its own `chronicle_serve_*` series on its port.
//!
//! Labels are bounded by construction: each is an enum's name or a table,
//! sink or method of the code, never an address, signature, slot or object
//! name (`tests/observability.rs` checks every series). A worker that runs to
//! completion (a backfill shard, an export, a retention run) is scraped while
//! it runs; its final figures are in the catalog and its resource's status.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// This process's worker metrics.
pub static WORKER: LazyLock<WorkerMetrics> = LazyLock::new(WorkerMetrics::new);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// The source call: `block`, `produced` or `tip`.
    pub method: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// A JSON-RPC error code (`-32004`), `http_429`, `http_5xx`, `timeout`, …
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `read`, `scan`, `write` or `delete`.
    pub op: &'static str,
    pub table: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreBytesLabels {
    pub op: &'static str,
    pub table: &'static str,
}

/// The IngestJob a gauge describes: a node pod runs several jobs in one
/// process, and a gauge (unlike a counter) cannot be summed across them.
/// Bounded by the jobs declared; never a block, address or object path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub ingest_job: String,
}

/// One job's ingest gauges (handles into [`WorkerMetrics`]' families).
#[derive(Clone, Debug, Default)]
pub struct JobGauges {
    pub gaps_open: Gauge,
    pub checkpoint: Gauge,
    pub source_tip: Gauge,
    pub lag_blocks: Gauge,
    pub remaining_blocks: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

/// Every worker series. Counters get `_total` when encoded.
pub struct WorkerMetrics {
    registry: Registry,
    /// Slots by what became of them: `written`, `skipped`, `gap`, `repaired`, `removed`.
    pub ingest_blocks: Family<OutcomeLabels, Counter>,
    /// Bytes the sinks stored (compressed where they compress).
    pub ingest_bytes: Counter,
    pub ingest_batches: Counter,
    /// Gaps open in the running shard's range.
    pub ingest_gaps_open: Family<JobLabels, Gauge>,
    /// The last committed checkpoint (every slot up to it is done).
    pub ingest_checkpoint: Family<JobLabels, Gauge>,
    /// The newest block the source can serve, at the last look.
    pub ingest_source_tip: Family<JobLabels, Gauge>,
    /// `source_tip - checkpoint` of a follower.
    pub ingest_lag_blocks: Family<JobLabels, Gauge>,
    /// Slots of a backfill's range after its checkpoint.
    pub ingest_remaining_blocks: Family<JobLabels, Gauge>,
    /// Catalog commits that failed and were retried (the catalog unreachable).
    pub ingest_catalog_retries: Counter,
    /// Reorganizations of blocks stored ahead of finality, repaired.
    pub ingest_reorgs: Counter,
    pub ingest_fetch_seconds: Family<FetchLabels, Histogram>,
    /// Errors the node answered or the transport gave, by code.
    pub endpoint_errors: Family<CodeLabels, Counter>,
    pub sink_write_seconds: Family<SinkLabels, Histogram>,
    pub sink_flush_seconds: Family<SinkLabels, Histogram>,
    /// Cache invalidations by outcome (`ok`, `error`).
    pub cache_invalidations: Family<OutcomeLabels, Counter>,
    pub store_seconds: Family<StoreLabels, Histogram>,
    pub store_bytes: Family<StoreBytesLabels, Counter>,
    /// Chain-metrics points by outcome: `written`, `dropped` (buffer full), `failed`.
    pub chain_points: Family<OutcomeLabels, Counter>,
    /// Points waiting in the chain-metrics buffer.
    pub chain_points_buffered: Gauge,
    /// Export documents by outcome: `kept`, `duplicate`, `near_duplicate`.
    pub export_documents: Family<OutcomeLabels, Counter>,
    pub export_tokens: Counter,
    pub export_shards: Counter,
    pub export_bytes: Counter,
    /// Exports by outcome (`published`, `failed`).
    pub export_runs: Family<OutcomeLabels, Counter>,
    /// Replicated rows by outcome: `copied`, `compared`, `missing`, `mismatched`, `repaired`.
    pub replication_rows: Family<OutcomeLabels, Counter>,
    /// What retention removed: `blocks`, `rows`, `bytes`, `lake_objects`.
    pub retention_removed: Family<OutcomeLabels, Counter>,
    /// Retention runs by outcome (`succeeded`, `failed`).
    pub retention_runs: Family<OutcomeLabels, Counter>,
}

/// Seconds, from 1 ms to ~30 s.
fn latency() -> Histogram {
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

impl WorkerMetrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let ingest_blocks = Family::<OutcomeLabels, Counter>::default();
        let ingest_bytes = Counter::default();
        let ingest_batches = Counter::default();
        let ingest_gaps_open = Family::<JobLabels, Gauge>::default();
        let ingest_checkpoint = Family::<JobLabels, Gauge>::default();
        let ingest_source_tip = Family::<JobLabels, Gauge>::default();
        let ingest_lag_blocks = Family::<JobLabels, Gauge>::default();
        let ingest_remaining_blocks = Family::<JobLabels, Gauge>::default();
        let ingest_catalog_retries = Counter::default();
        let ingest_reorgs = Counter::default();
        let ingest_fetch_seconds = Family::<FetchLabels, Histogram>::new_with_constructor(latency);
        let endpoint_errors = Family::<CodeLabels, Counter>::default();
        let sink_write_seconds = Family::<SinkLabels, Histogram>::new_with_constructor(latency);
        let sink_flush_seconds = Family::<SinkLabels, Histogram>::new_with_constructor(latency);
        let cache_invalidations = Family::<OutcomeLabels, Counter>::default();
        let store_seconds = Family::<StoreLabels, Histogram>::new_with_constructor(latency);
        let store_bytes = Family::<StoreBytesLabels, Counter>::default();
        let chain_points = Family::<OutcomeLabels, Counter>::default();
        let chain_points_buffered = Gauge::default();
        let export_documents = Family::<OutcomeLabels, Counter>::default();
        let export_tokens = Counter::default();
        let export_shards = Counter::default();
        let export_bytes = Counter::default();
        let export_runs = Family::<OutcomeLabels, Counter>::default();
        let replication_rows = Family::<OutcomeLabels, Counter>::default();
        let retention_removed = Family::<OutcomeLabels, Counter>::default();
        let retention_runs = Family::<OutcomeLabels, Counter>::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);

        let r = &mut registry;
        r.register("chronicle_build_info", "Chronicle version of this process (always 1)", build);
        r.register("chronicle_ingest_blocks", "Slots ingested, by outcome", ingest_blocks.clone());
        r.register("chronicle_ingest_written_bytes", "Bytes the sinks stored", ingest_bytes.clone());
        r.register("chronicle_ingest_batches", "Batches committed with a checkpoint", ingest_batches.clone());
        r.register("chronicle_ingest_gaps_open", "Gaps open in this worker's range", ingest_gaps_open.clone());
        r.register("chronicle_ingest_checkpoint", "Last committed checkpoint (slot)", ingest_checkpoint.clone());
        r.register("chronicle_ingest_source_tip", "Newest block the source serves (slot)", ingest_source_tip.clone());
        r.register(
            "chronicle_ingest_lag_blocks",
            "Blocks a follower's checkpoint is behind the source's tip",
            ingest_lag_blocks.clone(),
        );
        r.register(
            "chronicle_ingest_remaining_blocks",
            "Slots of a backfill's range after its checkpoint",
            ingest_remaining_blocks.clone(),
        );
        r.register(
            "chronicle_ingest_catalog_retries",
            "Checkpoint commits retried because the catalog failed",
            ingest_catalog_retries.clone(),
        );
        r.register(
            "chronicle_ingest_reorgs",
            "Reorganizations of blocks stored ahead of finality, repaired (taken back and fetched again)",
            ingest_reorgs.clone(),
        );
        r.register(
            "chronicle_ingest_fetch_seconds",
            "Time of a source call, by method and outcome",
            ingest_fetch_seconds.clone(),
        );
        r.register("chronicle_endpoint_errors", "Errors from a node endpoint, by code", endpoint_errors.clone());
        r.register("chronicle_sink_write_seconds", "Time to write one block, by sink", sink_write_seconds.clone());
        r.register("chronicle_sink_flush_seconds", "Time to flush a batch, by sink", sink_flush_seconds.clone());
        r.register(
            "chronicle_cache_invalidations",
            "Cached answers dropped as blocks landed, by outcome",
            cache_invalidations.clone(),
        );
        r.register("chronicle_store_seconds", "Time of a store call, by operation and table", store_seconds.clone());
        r.register("chronicle_store_bytes", "Bytes written to or read from a store table", store_bytes.clone());
        r.register("chronicle_chain_metrics_points", "Chain-metrics points, by outcome", chain_points.clone());
        r.register(
            "chronicle_chain_metrics_buffered_points",
            "Chain-metrics points waiting to be written",
            chain_points_buffered.clone(),
        );
        r.register("chronicle_export_documents", "Export documents, by outcome", export_documents.clone());
        r.register("chronicle_export_tokens", "Tokens written to token shards", export_tokens.clone());
        r.register("chronicle_export_shards", "Dataset shards written", export_shards.clone());
        r.register("chronicle_export_bytes", "Dataset bytes written", export_bytes.clone());
        r.register("chronicle_export_runs", "Exports finished, by outcome", export_runs.clone());
        r.register("chronicle_replication_rows", "Replicated rows, by outcome", replication_rows.clone());
        r.register("chronicle_retention_removed", "What retention removed, by kind", retention_removed.clone());
        r.register("chronicle_retention_runs", "Retention runs finished, by outcome", retention_runs.clone());
        Self {
            registry,
            ingest_blocks,
            ingest_bytes,
            ingest_batches,
            ingest_gaps_open,
            ingest_checkpoint,
            ingest_source_tip,
            ingest_lag_blocks,
            ingest_remaining_blocks,
            ingest_catalog_retries,
            ingest_reorgs,
            ingest_fetch_seconds,
            endpoint_errors,
            sink_write_seconds,
            sink_flush_seconds,
            cache_invalidations,
            store_seconds,
            store_bytes,
            chain_points,
            chain_points_buffered,
            export_documents,
            export_tokens,
            export_shards,
            export_bytes,
            export_runs,
            replication_rows,
            retention_removed,
            retention_runs,
        }
    }

    /// The gauges of IngestJob `job`.
    pub fn job(&self, job: &str) -> JobGauges {
        let labels = JobLabels { ingest_job: job.to_string() };
        JobGauges {
            gaps_open: self.ingest_gaps_open.get_or_create(&labels).clone(),
            checkpoint: self.ingest_checkpoint.get_or_create(&labels).clone(),
            source_tip: self.ingest_source_tip.get_or_create(&labels).clone(),
            lag_blocks: self.ingest_lag_blocks.get_or_create(&labels).clone(),
            remaining_blocks: self.ingest_remaining_blocks.get_or_create(&labels).clone(),
        }
    }

    /// Adds `count` to the counter of `outcome` in `family`.
    pub fn count(family: &Family<OutcomeLabels, Counter>, outcome: &'static str, count: u64) {
        family.get_or_create(&OutcomeLabels { outcome }).inc_by(count);
    }

    /// Counts one error a node endpoint gave, by a bounded code.
    pub fn endpoint_error(&self, code: &'static str) {
        self.endpoint_errors.get_or_create(&CodeLabels { code }).inc();
    }

    pub fn fetch(&self, method: &'static str, outcome: &'static str, took: Duration) {
        self.ingest_fetch_seconds.get_or_create(&FetchLabels { method, outcome }).observe(took.as_secs_f64());
    }

    pub fn store(&self, op: &'static str, table: &'static str, ok: bool, took: Duration, bytes: u64) {
        let outcome = outcome(ok);
        self.store_seconds.get_or_create(&StoreLabels { op, table, outcome }).observe(took.as_secs_f64());
        if bytes > 0 {
            self.store_bytes.get_or_create(&StoreBytesLabels { op, table }).inc_by(bytes);
        }
    }

    /// A fresh registry's text with one series of every family: the names
    /// and types the code exports (what dashboards and rules may name).
    pub fn descriptors() -> String {
        let m = Self::new();
        for family in [
            &m.ingest_blocks,
            &m.cache_invalidations,
            &m.chain_points,
            &m.export_documents,
            &m.export_runs,
            &m.replication_rows,
            &m.retention_removed,
            &m.retention_runs,
        ] {
            Self::count(family, "ok", 0);
        }
        m.job("job");
        m.fetch("block", "ok", Duration::ZERO);
        m.store("read", "blocks", true, Duration::ZERO, 1);
        let _ = m.endpoint_errors.get_or_create(&CodeLabels { code: "timeout" });
        let _ = m.sink_write_seconds.get_or_create(&SinkLabels { sink: "canonical", outcome: "ok" });
        let _ = m.sink_flush_seconds.get_or_create(&SinkLabels { sink: "canonical", outcome: "ok" });
        m.encode()
    }

    /// Every series without the closing `# EOF` (to follow another registry's).
    pub fn encode_series(&self, text: &mut String) {
        let _ = prometheus_client::encoding::text::encode_registry(text, &self.registry);
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        self.encode_series(&mut text);
        let _ = prometheus_client::encoding::text::encode_eof(&mut text);
        text
    }
}

/// The `outcome` label of an operation that succeeded or failed.
pub fn outcome(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

/// The content type of OpenMetrics text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves [`WORKER`] on `http://ADDR/metrics` until `shutdown`. A port that
/// cannot be bound is logged, not fatal: the work matters more than its figures.
pub async fn serve_metrics(addr: std::net::SocketAddr, shutdown: CancellationToken) {
    use axum::routing::get;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot serve /metrics");
            return;
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(|| async { ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], WORKER.encode()) }));
    tracing::info!(%addr, "metrics on /metrics");
    let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
}

/// Whether this process serves [`WORKER`] on a port of its own.
static OWN_PORT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`WORKER`] has a `/metrics` of its own in this process (then
/// `serve`'s `/metrics` leaves it out, so no series is scraped twice).
pub fn served_separately() -> bool {
    OWN_PORT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Starts [`serve_metrics`] in the background when `addr` is given.
pub fn spawn_metrics(addr: Option<std::net::SocketAddr>) -> CancellationToken {
    let stop = CancellationToken::new();
    if let Some(addr) = addr {
        OWN_PORT.store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(serve_metrics(addr, stop.clone()));
    }
    stop
}
