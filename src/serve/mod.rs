//! `chronicle serve`: the Solana JSON-RPC history API over HTTP, answering
//! from the block store with an optional Redis cache tier.
//!
//! Requests go through jsonrpc-core — the JSON-RPC 2.0 implementation agave's
//! own RPC server uses — so parse errors, invalid requests, unknown methods,
//! wrong parameter types and batches behave as on a node. Around it: API keys
//! (constant-time comparison), a per-key rate limit, request and batch size
//! limits, a request timeout, `/health` and `/metrics`.

pub mod address_history;
pub mod cache;
mod commitment;
pub mod front;
mod inflation_reward;
pub mod memory_cache;
pub mod methods;
pub mod network;
mod node_methods;
mod recent_blocks;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use jsonrpc_core::{MetaIoHandler, Params, Value};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use self::cache::{Cache, CacheConfig, Lookup};
use self::methods::{METHODS, Method, Methods};
use self::network::Network;
use self::upstream::{Passthrough, Upstream, UpstreamConfig};
use crate::pipeline::config::Secret;
use crate::store::BlockStore;

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub cache: Option<CacheConfig>,
    /// Accepted API keys; empty = no authentication.
    pub api_keys: Vec<Secret>,
    /// Requests per second per API key (or per client without keys).
    pub rate_limit: Option<u32>,
    /// Requests a key may send at once above the rate (default: the rate).
    pub rate_burst: Option<u32>,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub request_timeout: Duration,
    /// The cluster served: genesis hash and epoch schedule.
    pub network: Network,
    /// Where unknown methods (and misses, when configured) go; also the head
    /// `getHealth` measures against.
    pub upstream: Option<UpstreamConfig>,
    /// `getHealth` fails once the stored tip is more slots than this behind the upstream.
    pub health_max_lag: u64,
    /// EIP-155 chain id, for EVM chains (`eth_chainId`).
    pub chain_id: Option<u64>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8899).into(),
            cache: None,
            api_keys: Vec::new(),
            rate_limit: None,
            rate_burst: None,
            max_body_bytes: 256 * 1024,
            max_batch: 100,
            request_timeout: Duration::from_secs(30),
            network: Network::default(),
            upstream: None,
            health_max_lag: node_methods::DEFAULT_HEALTH_MAX_LAG,
            chain_id: None,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    method: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: String,
}

/// Prometheus metrics; labels are bounded (method names, outcomes).
pub struct Metrics {
    registry: Registry,
    requests: Family<MethodLabels, Counter>,
    cache: Family<CacheLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    upstream: Family<UpstreamLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chronicle_serve");
        let requests = Family::<MethodLabels, Counter>::default();
        let cache = Family::<CacheLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        });
        registry.register("requests", "JSON-RPC calls by method and outcome", requests.clone());
        registry.register("cache", "Cache lookups by method and result", cache.clone());
        registry.register("request_seconds", "Time to answer a call, by method", latency.clone());
        let upstream = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_calls",
            "Calls passed to the upstream node, by reason and outcome",
            upstream.clone(),
        );
        Self { registry, requests, cache, latency, upstream }
    }

    /// Counts one call passed to the upstream (`reason`: `unknown_method` or `miss`).
    pub fn count_upstream(&self, reason: &str, outcome: &str) {
        self.upstream.get_or_create(&UpstreamLabels { reason: reason.into(), outcome: outcome.into() }).inc();
    }

    /// Counts one answered call and its time (`cache`: `hit`, `miss` or `off`).
    pub fn count(&self, method: &str, cache: &str, outcome: &str, started: Instant) {
        let m = self.requests.get_or_create(&MethodLabels { method: method.into(), outcome: outcome.into() });
        m.inc();
        if cache != "off" {
            self.cache.get_or_create(&CacheLabels { method: method.into(), result: cache.into() }).inc();
        }
        self.latency.get_or_create(&LatencyLabels { method: method.into() }).observe(started.elapsed().as_secs_f64());
    }
}

/// The OpenMetrics text of serve's own series before any call (their
/// names and types: what dashboards and alert rules may refer to).
pub fn metric_descriptors() -> String {
    let metrics = Metrics::new();
    let (method, outcome) = ("getBlock".to_string(), "ok".to_string());
    let _ = metrics.requests.get_or_create(&MethodLabels { method: method.clone(), outcome: outcome.clone() });
    let _ = metrics.cache.get_or_create(&CacheLabels { method: method.clone(), result: "hit".into() });
    let _ = metrics.latency.get_or_create(&LatencyLabels { method });
    let _ = metrics.upstream.get_or_create(&UpstreamLabels { reason: "miss".into(), outcome });
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &metrics.registry);
    text
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    /// `unknown_method` or `miss`.
    reason: String,
    outcome: String,
}

/// A call's params as one JSON value (what a cache key is made of).
pub fn params_json(params: &Params) -> Value {
    match params {
        Params::None => Value::Null,
        Params::Array(list) => Value::Array(list.clone()),
        Params::Map(map) => Value::Object(map.clone()),
    }
}

/// Everything a request needs.
struct Service {
    methods: Methods,
    cache: Option<Arc<Cache>>,
    metrics: Arc<Metrics>,
}

/// A history miss the upstream may answer: a block older than the first
/// stored or newer than the tip, or a transaction the store does not hold.
/// Never a slot inside the stored span (a skip — or a gap the upstream's
/// answer would hide) and never a store error.
fn is_miss(method: Method, result: &jsonrpc_core::Result<methods::Answer>) -> bool {
    use solana_rpc_client_api::custom_error::{
        JSON_RPC_SERVER_ERROR_BLOCK_CLEANED_UP, JSON_RPC_SERVER_ERROR_BLOCK_NOT_AVAILABLE,
    };
    match (method, result) {
        (Method::GetTransaction, Ok(answer)) => answer.value.is_null(),
        (Method::GetBlock | Method::GetBlockTime | Method::GetInflationReward, Err(e)) => matches!(
            e.code,
            jsonrpc_core::ErrorCode::ServerError(
                JSON_RPC_SERVER_ERROR_BLOCK_CLEANED_UP | JSON_RPC_SERVER_ERROR_BLOCK_NOT_AVAILABLE
            )
        ),
        _ => false,
    }
}

impl Service {
    async fn call(&self, method: Method, params: Params) -> jsonrpc_core::Result<Value> {
        let started = Instant::now();
        let name = method.name().to_string();
        let params_value = params_json(&params);
        let key = Cache::key(method, &params_value);
        let mut generation = None;
        let cache = self.cache.as_ref().filter(|c| c.caches(method));
        if let Some(cache) = cache {
            match cache.lookup(&key).await {
                Lookup::Hit(value) => {
                    self.metrics.count(&name, "hit", "ok", started);
                    return Ok(value);
                }
                Lookup::Miss { generation: g } => generation = g,
            }
        }
        let result = self.methods.call(method, params.clone()).await;
        if let Some(upstream) = self.methods.upstream.as_ref().filter(|u| u.forwards_misses())
            && is_miss(method, &result)
        {
            // Passed through, counted, never cached; when the upstream cannot
            // be asked, the local answer (the miss) stands.
            let answer = match upstream::forward(upstream, &self.metrics, method.name(), &params, "miss").await {
                Ok(answer) => answer,
                Err(_) => result.map(|a| a.value),
            };
            self.metrics.count(
                &name,
                if cache.is_some() { "miss" } else { "off" },
                crate::telemetry::metrics::outcome(answer.is_ok()),
                started,
            );
            return answer;
        }
        let result = match result {
            Ok(answer) => {
                if let Some(cache) = cache {
                    cache.store(&key, method, generation, &answer).await;
                }
                Ok(answer.value)
            }
            Err(e) => Err(e),
        };
        let cache_result = if cache.is_some() { "miss" } else { "off" };
        self.metrics.count(&name, cache_result, crate::telemetry::metrics::outcome(result.is_ok()), started);
        result
    }
}

/// The router of a serve replica.
pub fn router(store: Arc<dyn BlockStore>, config: ServeConfig) -> Result<Router, redis::RedisError> {
    let cache = config.cache.clone().map(Cache::new).transpose()?;
    if let Some(cache) = cache.clone() {
        tokio::spawn(async move { cache.configure().await });
    }
    let upstream = config.upstream.clone().map(|u| Arc::new(Upstream::new(u)));
    let methods = Methods::new(store, config.network.clone(), upstream, config.health_max_lag);
    let service = Arc::new(Service { methods, cache, metrics: Arc::new(Metrics::new()) });
    let passthrough = Passthrough {
        upstream: service.methods.upstream.clone(),
        metrics: service.metrics.clone(),
        served: |method| METHODS.iter().any(|(name, _)| *name == method),
    };
    let mut rpc = MetaIoHandler::with_middleware(passthrough);
    for (name, method) in METHODS {
        let service = service.clone();
        let method = *method;
        rpc.add_method(name, move |params: Params| {
            let service = service.clone();
            async move { service.call(method, params).await }
        });
    }
    Ok(front::router(rpc, service.metrics.clone(), config))
}

/// Serves until `shutdown`, then drains open requests.
pub async fn run(store: Arc<dyn BlockStore>, config: ServeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = config.listen;
    front::listen(router(store, config)?, listen, shutdown).await
}
