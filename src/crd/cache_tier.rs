//! `CacheTier`: the `chronicle serve` Deployment answering Solana JSON-RPC
//! history methods from a `ChainSource`'s store, with a Redis cache that is
//! updated the moment ingestion writes a block.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DURATION_PATTERN, LocalObjectRef, RateLimit, SecretKeyRef};

#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "chronicle.dev",
    version = "v1alpha1",
    kind = "CacheTier",
    namespaced,
    status = "CacheTierStatus",
    shortname = "ct",
    category = "chronicle",
    doc = "Serves a ChainSource's history over Solana JSON-RPC with a Redis read-through cache invalidated on ingest.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourceRef.name"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.server.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "HitRatio", type_ = "string", json_path = ".status.hitRatio"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.methods) || self.methods.all(m, self.methods.exists_one(n, n.name == m.name))").message("each method may be listed only once"))]
#[x_kube(validation = Rule::new("!has(self.server) || !has(self.server.port) || self.server.port != 9090").message("port 9090 is every worker pod's metrics port; choose another server port"))]
pub struct CacheTierSpec {
    /// The `ChainSource` whose store is served.
    pub source_ref: LocalObjectRef,
    /// The Redis the cache lives in.
    pub redis: RedisConfig,
    /// Methods whose answers are cached, with their TTLs. Empty: every
    /// history method with `defaultTtl`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub methods: Vec<CachedMethod>,
    /// TTL of answers that can still change (e.g. the first page of
    /// `getSignaturesForAddress`). Finalized blocks and transactions are immutable
    /// and cached up to `immutableTtl`.
    #[serde(default = "default_ttl")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub default_ttl: String,
    /// TTL of immutable answers.
    #[serde(default = "default_immutable_ttl")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub immutable_ttl: String,
    /// Memory the cache may use in Redis (`maxmemory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<Quantity>,
    /// What Redis drops when `maxMemory` is reached.
    #[serde(default)]
    pub eviction: EvictionPolicy,
    /// Update or drop affected answers as soon as a block is written.
    #[serde(default = "default_true")]
    pub invalidate_on_ingest: bool,
    /// The serving Deployment.
    #[serde(default)]
    pub server: ServerSpec,
    /// A node that answers what `serve` does not: methods it does not serve
    /// and, with `forwardMisses`, history outside the store. Also the head
    /// `getHealth` measures the store's lag against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSpec {
    /// One of the ChainSource's `endpoints` (its URL, auth and limits) by name.
    #[schemars(length(min = 1, max = 63))]
    pub endpoint: String,
    /// Also pass blocks and transactions the store does not hold (older than
    /// its first block, newer than its tip, unknown signatures). Slots inside
    /// the stored span are never passed: a gap must not be hidden.
    #[serde(default)]
    pub forward_misses: bool,
    /// Calls per second sent upstream at most (all replicas each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: Option<u32>,
    /// `getHealth` fails once the stored tip is more slots than this behind
    /// the upstream's (Solana tiers: EVM's JSON-RPC has no `getHealth`).
    #[serde(default = "default_max_slots_behind")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_slots_behind: u64,
}

fn default_max_slots_behind() -> u64 {
    128
}

fn default_ttl() -> String {
    "2s".into()
}

fn default_immutable_ttl() -> String {
    "24h".into()
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisConfig {
    /// Secret key holding a `redis://` or `rediss://` URL (with password).
    pub url_secret_ref: SecretKeyRef,
    /// TLS to Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTls>,
    /// Connections per serve replica.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 1024))]
    pub pool_size: u32,
}

fn default_pool_size() -> u32 {
    16
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisTls {
    /// Secret key with the CA bundle (PEM). Absent: system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedMethod {
    pub name: RpcMethod,
    /// TTL for this method's answers. Absent: `defaultTtl`, or `immutableTtl`
    /// for answers that can no longer change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub ttl: Option<String>,
}

/// The history methods `chronicle serve` answers.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RpcMethod {
    GetBlock,
    GetTransaction,
    GetSignaturesForAddress,
    GetTransactionsForAddress,
    GetBlocks,
    GetBlocksWithLimit,
    GetBlockTime,
    GetFirstAvailableBlock,
    GetSignatureStatuses,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    #[default]
    AllkeysLru,
    AllkeysLfu,
    VolatileLru,
    VolatileLfu,
    VolatileTtl,
    Noeviction,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Port of the JSON-RPC listener and its Service (not 9090, the pod's
    /// metrics port).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Secret whose values are accepted API keys (any key name). Absent: no auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_keys_secret_ref: Option<LocalObjectRef>,
    /// Limit per API key (or per client address without keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            port: default_port(),
            api_keys_secret_ref: None,
            rate_limit: None,
            resources: None,
        }
    }
}

fn default_replicas() -> i32 {
    2
}

fn default_port() -> i32 {
    8899
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CacheTierStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// In-cluster URL of the JSON-RPC Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Cache hits / lookups since the serve pods started, e.g. `0.93`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}
