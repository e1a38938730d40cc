//! `ChainSource`: one chain (network), where its blocks come from and where
//! Chronicle keeps them. Every other kind points at one by `sourceRef`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BigtableInstance, CommonStatus, RateLimit, SecretKeyRef, Timestamp};

#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "chronicle.dev",
    version = "v1alpha1",
    kind = "ChainSource",
    namespaced,
    status = "ChainSourceStatus",
    shortname = "chs",
    category = "chronicle",
    doc = "A chain (network) Chronicle ingests: its endpoints, optional BigQuery history, the canonical store, the lake, the catalog and the metrics sink.",
    printcolumn(name = "Chain", type_ = "string", json_path = ".spec.chain.family"),
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.chain.network"),
    printcolumn(
        name = "Head",
        type_ = "integer",
        json_path = ".status.chainHead",
        description = "Highest slot or block seen at the endpoints"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.endpoints.all(e, self.endpoints.exists_one(f, f.name == e.name))").message("endpoint names must be unique"))]
pub struct ChainSourceSpec {
    /// Which chain and network.
    pub chain: ChainId,
    /// Lowest commitment a block must reach before it is stored. `confirmed`
    /// stores earlier and repairs on reorg or skip: Solana's confirmed blocks,
    /// an EVM chain's newest block (a reorganization is taken back from every
    /// target and fetched again; the lake takes blocks once final).
    #[serde(default)]
    pub commitment: Commitment,
    /// RPC (and WebSocket) endpoints, tried in order.
    #[schemars(length(min = 1, max = 16))]
    pub endpoints: Vec<Endpoint>,
    /// BigQuery dataset with the chain's history (for `IngestJob` source `bigQuery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub big_query: Option<BigQuerySource>,
    /// Where canonical blocks are kept.
    pub store: CanonicalStore,
    /// Normalized rows as Parquet. Absent: no lake target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake: Option<Lake>,
    /// PostgreSQL catalog with checkpoints, gaps and manifests.
    pub catalog: Catalog,
    /// Per-block chain metrics sink. Absent: no metrics target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSink>,
}

#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.family != 'evm' || has(self.chainId)").message("an evm chain needs chain.chainId"))]
#[x_kube(validation = Rule::new("self.family == 'evm' || !has(self.confirmations)").message("chain.confirmations is for evm chains (solana's finality is its commitment)"))]
#[x_kube(validation = Rule::new("self.family == 'evm' || !has(self.traces)").message("chain.traces is for evm chains (solana's blocks carry their log messages)"))]
pub struct ChainId {
    /// Chain family; decides the adapter and the store layout.
    pub family: ChainFamily,
    /// Network name, e.g. `mainnet-beta`, `devnet`, `ethereum-mainnet`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub network: String,
    /// Genesis hash of a Solana network Chronicle does not know (known ones:
    /// mainnet-beta, devnet, testnet; a value given for those must match).
    /// `serve` answers `getGenesisHash` with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 32, max = 44), regex(pattern = r"^[1-9A-HJ-NP-Za-km-z]+$"))]
    pub genesis_hash: Option<String>,
    /// EIP-155 chain id (EVM only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub chain_id: Option<u64>,
    /// EVM chains whose nodes have no `finalized` tag: a block counts as
    /// final this many blocks below the newest. Absent: the node's `finalized` tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub confirmations: Option<u32>,
    /// EVM chains: whether blocks are stored with their traces (internal
    /// calls, creations, self-destructs, rewards). Absent: `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<Traces>,
}

/// Whether an EVM worker asks its node for each block's traces.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Traces {
    /// Where the node serves them (`trace_block`, else geth's
    /// `debug_traceBlockByHash` with `callTracer`); from a node with
    /// neither, blocks are stored without traces (the worker says so), as is
    /// a block the node refuses to trace (pruned state).
    #[default]
    Auto,
    /// Every block with its traces: a node that serves none leaves gaps that say so.
    Required,
    /// Never asked (tracing is the costliest call most providers bill).
    /// Not `off`: YAML reads a bare `off` as false.
    Disabled,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ChainFamily {
    Solana,
    Evm,
}

impl ChainFamily {
    /// The family as manifests spell it (`solana`, `evm`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChainFamily::Solana => "solana",
            ChainFamily::Evm => "evm",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Commitment {
    #[default]
    Finalized,
    Confirmed,
}

#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Short name used in status and metrics labels.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// HTTP(S) JSON-RPC URL.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub url: String,
    /// WebSocket URL for subscriptions. Absent: follow jobs poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^wss?://"))]
    pub websocket_url: Option<String>,
    /// Client-side rate limit for this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Requests in flight at once (default 8).
    #[serde(default = "default_max_concurrent")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrent: u32,
    /// Secret key whose value authenticates requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<EndpointAuth>,
}

fn default_max_concurrent() -> u32 {
    8
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAuth {
    /// Secret key with the token or API key.
    pub secret_ref: SecretKeyRef,
    /// Header that carries it; `Authorization` sends `Bearer <token>`.
    #[serde(default = "default_auth_header")]
    #[schemars(length(min = 1, max = 128))]
    pub header: String,
}

fn default_auth_header() -> String {
    "Authorization".into()
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BigQuerySource {
    /// Project that holds the dataset (e.g. `bigquery-public-data`).
    #[schemars(length(min = 1, max = 63))]
    pub project: String,
    /// Dataset (e.g. `crypto_solana_mainnet_us`, `crypto_ethereum`).
    #[schemars(length(min = 1, max = 1024))]
    pub dataset: String,
    /// Dataset location (e.g. `US`).
    #[serde(default = "default_bq_location")]
    #[schemars(length(min = 1, max = 64))]
    pub location: String,
    /// Project billed for queries. Defaults to `project`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub billing_project: Option<String>,
    /// Service-account JSON key. Absent: workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// BigQuery's REST base, for an emulator or a private endpoint
    /// (`http://bigquery-emulator:9050/bigquery/v2`). Absent: Google's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^https?://.+"))]
    pub endpoint: Option<String>,
}

fn default_bq_location() -> String {
    "US".into()
}

/// Exactly one backend.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.bigtable) != has(self.embedded)").message("store must set exactly one of bigtable or embedded"))]
pub struct CanonicalStore {
    /// Google Bigtable; Solana data uses agave's table layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bigtable: Option<BigtableInstance>,
    /// Embedded store on a PersistentVolume (single node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedStore>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedStore {
    /// Size of the PersistentVolumeClaim.
    pub size: Quantity,
    /// StorageClass of the claim. Absent: the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Lake {
    /// Root of the Parquet lake: `file:///path`, `s3://bucket/prefix` or `gs://bucket/prefix`.
    #[schemars(length(min = 6, max = 2048), regex(pattern = r"^(file|s3|gs)://.+"))]
    pub url: String,
    /// Object-store credentials (none: the pod's workload identity). For
    /// `gs://`, `key` holds a service-account JSON key. For `s3://`, `key`
    /// holds the secret access key, and the Secret's entries `AWS_ACCESS_KEY_ID`
    /// (required), `AWS_SESSION_TOKEN`, `AWS_REGION` and `AWS_ENDPOINT` give
    /// the rest. `file://` takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// Secret key holding a `postgres://` connection URL.
    pub connection_secret_ref: SecretKeyRef,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSink {
    /// Any InfluxDB v2 write API.
    pub influxdb: InfluxDbSink,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InfluxDbSink {
    /// Base URL, e.g. `https://influx.example.com`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub url: String,
    #[schemars(length(min = 1, max = 256))]
    pub org: String,
    #[schemars(length(min = 1, max = 256))]
    pub bucket: String,
    /// Secret key with the API token.
    pub token_secret_ref: SecretKeyRef,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChainSourceStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Highest slot (or block number) any endpoint reported at the last probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_head: Option<u64>,
    /// When the endpoints were last probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Timestamp>,
    /// Health of each endpoint at the last probe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub endpoints: Vec<EndpointStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub name: String,
    pub healthy: bool,
    /// Head slot this endpoint reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    /// Round-trip time of the probe in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Last error, with secrets removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::ChainFamily;

    #[test]
    fn a_family_is_named_as_manifests_spell_it() {
        for family in [ChainFamily::Solana, ChainFamily::Evm] {
            assert_eq!(serde_json::to_value(family).unwrap(), family.as_str());
        }
    }
}
