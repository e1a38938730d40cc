//! What every reconciler shares: one API client, one event recorder, the
//! per-object retry bookkeeping and the controller's metrics.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub struct Context {
    pub client: Client,
    /// The image the workers run (the controller's own).
    pub image: String,
    /// Publishes Events; repeats of one event become a series, not new objects.
    pub recorder: Recorder,
    /// Consecutive failures per object, for the retry backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    pub metrics: Metrics,
    /// Catalog readers and rate samples for IngestJob progress.
    pub progress: super::progress::Tracker,
    /// Asks serve pods for their `/metrics` (one connection pool, 2 s timeout).
    pub http: reqwest::Client,
}

impl Context {
    /// `identity` names this replica in the Events it reports.
    pub fn new(client: Client, image: impl Into<String>, identity: Option<String>) -> Self {
        let reporter = Reporter { controller: "chronicle-controller".into(), instance: identity };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            image: image.into(),
            failures: Mutex::default(),
            metrics: Metrics::new(),
            progress: Default::default(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("an HTTP client"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// Prometheus metrics of the controller; labels are bounded (kinds, outcomes).
pub struct Metrics {
    pub registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    pub orphans_deleted: Counter,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chronicle_controller");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let orphans_deleted = Counter::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles by kind and result", reconciles.clone());
        registry.register("reconcile_seconds", "Time one reconcile took, by kind", duration.clone());
        registry.register("orphans_deleted", "Children deleted because their owner is gone", orphans_deleted.clone());
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        Self { registry, reconciles, duration, orphans_deleted, leader }
    }

    pub fn observe(&self, kind: &str, ok: bool, took: Duration) {
        let result = crate::telemetry::metrics::outcome(ok);
        self.reconciles.get_or_create(&ReconcileLabels { kind: kind.into(), result: result.into() }).inc();
        self.duration.get_or_create(&KindLabels { kind: kind.into() }).observe(took.as_secs_f64());
    }

    /// A fresh registry's text with one series of every family (the names
    /// dashboards and rules may use).
    pub fn descriptors() -> String {
        let metrics = Self::new();
        metrics.observe("ChainSource", true, Duration::ZERO);
        metrics.encode()
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
