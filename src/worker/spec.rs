//! The typed contract between the controller and the workers it starts: a
//! [`WorkerSpec`] is built from the custom resources (`controller/workload.rs`),
//! serialized as JSON into the pod's `CHRONICLE_WORKER_SPEC` variable, and read
//! back by `chronicle worker run`. Nothing travels as argv.
//!
//! Secrets never appear in a spec: a [`FromEnv`] names the variable the pod
//! fills from a Secret (`valueFrom.secretKeyRef`), resolved in the pod.
//! The format is versioned (`apiVersion`); a worker refuses a version it does
//! not know rather than guessing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crd::chain_source::{ChainFamily, Commitment, Traces};
use crate::crd::ingest_job::IngestTarget;
use crate::crd::retention_policy::{RetentionMethod, RetentionTarget};
use crate::crd::training_export::{ExportFormat, RenderTemplate, TokenizerEncoding};
use crate::pipeline::config::Secret;

/// The version of this format that this binary writes and reads.
pub const API_VERSION: &str = "chronicle.dev/worker/v1alpha2";
/// The pod variable that carries the spec as JSON.
pub const SPEC_ENV: &str = "CHRONICLE_WORKER_SPEC";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    pub api_version: String,
    #[serde(flatten)]
    pub work: Work,
}

/// What the worker does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Work {
    /// Blocks from a source into the stores (`IngestJob`).
    Ingest(IngestSpec),
    /// The JSON-RPC history API (`CacheTier`).
    Serve(ServeSpec),
    /// Every work of one embedded ChainSource, in the one pod that owns its
    /// store (an embedded store admits one process).
    Node(NodeSpec),
    /// A training dataset from the store's blocks (`TrainingExport`).
    Export(ExportSpec),
    /// Removing what a deleted `TrainingExport` wrote and did not publish
    /// (its finalizer's Job).
    ExportCleanup(ExportCleanupSpec),
    /// One pruning run of a `RetentionPolicy` (its CronJob's pods).
    Retention(RetentionSpec),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// The policy's identity in the catalog (`namespace/name`).
    pub policy: String,
    pub chain: ChainSpec,
    pub store: StoreSpec,
    pub catalog: FromEnv,
    /// The lake, when a rule trims it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake: Option<LakeSpec>,
    pub rules: Vec<RetentionRuleSpec>,
    pub dry_run: bool,
    /// Catalog identities of the replication jobs whose confirmed range
    /// bounds pruning (the replica guard); empty: no guard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guard: Vec<String>,
    /// Redis of each cache tier of the source: emptied when blocks are removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<FromEnv>,
}

/// One rule: what it trims, how much it keeps, how it removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRuleSpec {
    pub target: RetentionTarget,
    pub keep: Keep,
    pub method: RetentionMethod,
}

/// How much a rule keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Keep {
    /// The newest `slots` slots.
    Slots { slots: u64 },
    /// Blocks produced within the last `seconds`.
    Age { seconds: u64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    pub works: Vec<NamedWork>,
}

/// A work and the object it comes from (`IngestJob/ns/name`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedWork {
    pub name: String,
    pub work: Work,
}

/// A value the pod holds in an environment variable (set from a Secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FromEnv {
    pub env: String,
}

impl FromEnv {
    pub fn new(env: &str) -> Self {
        Self { env: env.into() }
    }

    /// The value from the process environment, or an error naming the
    /// variable (never its value).
    pub fn resolve(&self) -> Result<Secret, SpecError> {
        self.resolve_in(&|name| std::env::var(name).ok())
    }

    /// The value from `lookup` (a pod's environment, or `chronicle dev`'s
    /// Secrets), or an error naming the variable.
    pub fn resolve_in(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Secret, SpecError> {
        lookup(&self.env).map(Secret::new).ok_or_else(|| SpecError::MissingEnv(self.env.clone()))
    }
}

/// Which chain, and the commitment blocks must reach before they are stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainSpec {
    pub family: ChainFamily,
    pub network: String,
    pub commitment: Commitment,
    /// EIP-155 chain id (EVM chains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// EVM chains without the `finalized` tag: blocks below the newest at which one is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
    /// EVM chains: whether blocks are stored with their traces (absent: auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<Traces>,
}

/// The canonical store and how to reach it. The emulator host and key file
/// are part of the spec, so the worker does not depend on its environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    /// `bigtable://PROJECT/INSTANCE?appProfile=ID` or `embedded:///PATH`.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator_host: Option<String>,
    /// Path of a mounted service-account key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
}

/// One node endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcEndpointSpec {
    /// The ChainSource's name for it (logs and metrics; the URL may hold a key).
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// Requests allowed at once above the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    pub max_concurrent: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    pub header: String,
    pub token: FromEnv,
}

/// Where an ingest worker's blocks come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SourceSpec {
    Rpc {
        endpoint: RpcEndpointSpec,
    },
    /// The chain's BigQuery dataset (rows for the lake).
    #[serde(rename_all = "camelCase")]
    BigQuery {
        /// `project.dataset`.
        dataset: String,
        /// The project queries run (and are billed) in.
        billing_project: String,
        location: String,
        /// The mounted service-account key; none: the pod's workload identity.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials_file: Option<String>,
        /// The node the dataset is checked against (produced blocks, transaction counts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        check: Option<RpcEndpointSpec>,
        /// Take blocks the dataset lacks from that node.
        #[serde(default)]
        repair: bool,
        /// BigQuery's REST base; none: Google's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// How often a follower asks for new blocks (`60s`).
        poll_interval: String,
        /// Slots a follower stays behind the dataset's newest block.
        settle_slots: u64,
    },
    /// Epoch archives, one file per epoch (`{epoch}` in the URL).
    #[serde(rename_all = "camelCase")]
    Archive {
        url: String,
    },
    /// Another canonical store, copied row for row (replication).
    #[serde(rename_all = "camelCase")]
    Store {
        origin: StoreSpec,
        /// Compare every block's rows with the target before and after writing.
        verify: bool,
        /// Rewrite rows verification finds missing or different.
        repair: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum IngestModeSpec {
    /// `from..=to`, split into `shards`; the pod's shard is its Job index.
    Backfill { from: u64, to: u64, shards: u32 },
    /// The tip, from `from` or from the tip at start.
    Follow {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestSpec {
    /// The job's identity in the catalog (see `controller::workload::catalog_job`).
    pub job: String,
    pub chain: ChainSpec,
    pub source: SourceSpec,
    pub mode: IngestModeSpec,
    pub batch_size: u32,
    pub targets: Vec<IngestTarget>,
    pub store: StoreSpec,
    /// `postgres://…` or `embedded:///…`.
    pub catalog: FromEnv,
    /// The lake, when the job's targets include it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake: Option<LakeSpec>,
    /// Redis of each cache tier whose answers new blocks change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<FromEnv>,
    /// The chain-metrics server, when the job's targets include `metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ChainMetricsSpec>,
}

/// An InfluxDB v2 write API (the ChainSource's `metrics.influxdb`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainMetricsSpec {
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: FromEnv,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSpec {
    /// The export's identity in the catalog (`namespace/name#uid`).
    pub job: String,
    pub chain: ChainSpec,
    pub store: StoreSpec,
    pub catalog: FromEnv,
    pub from: u64,
    pub to: u64,
    /// Only the blocks of `from..=to` whose time is in this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::export::window::TimeWindow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<String>,
    pub success_only: bool,
    pub include_votes: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instruction_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// The fraction of documents kept, drawn by content hash and `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
    /// A built-in template or an inline one (its text).
    pub template: RenderTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerEncoding>,
    /// A Hugging Face `tokenizer.json` instead (its file in the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugging_face_tokenizer: Option<crate::export::tokens::HuggingFaceFile>,
    pub sequence_length: u32,
    /// Where the dataset goes (credentials from the pod's environment).
    pub output: String,
    pub formats: Vec<ExportFormat>,
    pub shard_bytes: u64,
    pub validation_fraction: f64,
    pub seed: u64,
    pub exact_dedup: bool,
    /// Near-duplicate threshold (MinHash); none: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_duplicate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportCleanupSpec {
    /// The deleted export's identity in the catalog (`namespace/name#gN`).
    pub job: String,
    /// Its output (credentials from the pod's environment).
    pub output: String,
}

/// The lake's root (`file://`, `s3://`, `gs://`); credentials come from the
/// pod's environment as the provider's SDK reads them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LakeSpec {
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServeSpec {
    pub chain: ChainSpec,
    pub store: StoreSpec,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Directory of accepted API keys, one file each (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_keys_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// The network's genesis hash when Chronicle does not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamSpec>,
}

/// The node unknown methods and misses go to (a ChainSource endpoint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSpec {
    pub endpoint: RpcEndpointSpec,
    pub forward_misses: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    pub max_slots_behind: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    pub url: FromEnv,
    /// e.g. `2s`.
    pub ttl: String,
    pub immutable_ttl: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    /// Redis `maxmemory-policy`, e.g. `allkeys-lfu`.
    pub eviction: String,
    /// Methods cached (JSON-RPC names) and their TTLs; empty: all, defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<CachedMethodSpec>,
    /// Redis connections per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedMethodSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{SPEC_ENV} is not set: `chronicle worker run` reads its spec from it (or from --spec FILE)")]
    NoSpec,
    #[error("worker spec: {0}")]
    Malformed(String),
    #[error("worker spec apiVersion {found:?} is not {API_VERSION:?}: controller and worker images differ")]
    Version { found: String },
    #[error("the pod has no {0} variable (it is set from a Secret the spec names)")]
    MissingEnv(String),
    #[error("worker spec: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl WorkerSpec {
    pub fn new(work: Work) -> Self {
        Self { api_version: API_VERSION.into(), work }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a worker spec serializes")
    }

    /// Parses a spec, refusing other versions.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| SpecError::Malformed(e.to_string()))?;
        let found = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default();
        if found != API_VERSION {
            return Err(SpecError::Version { found: found.into() });
        }
        serde_json::from_value(value).map_err(|e| SpecError::Malformed(e.to_string()))
    }

    /// The spec from `--spec FILE`, else from `CHRONICLE_WORKER_SPEC`.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, SpecError> {
        let text = match file {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| SpecError::Malformed(format!("{}: {e}", path.display())))?
            }
            None => std::env::var(SPEC_ENV).map_err(|_| SpecError::NoSpec)?,
        };
        Self::from_json(&text)
    }
}

/// A duration such as `2s`, `15m` or `24h` (the CRDs' duration strings).
pub fn duration(field: &'static str, text: &str) -> Result<Duration, SpecError> {
    humantime::parse_duration(text).map_err(|e| SpecError::Invalid { field, reason: format!("{text:?}: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest() -> WorkerSpec {
        WorkerSpec::new(Work::Ingest(IngestSpec {
            job: "ns/job#0-9x1".into(),
            chain: ChainSpec {
                family: ChainFamily::Solana,
                network: "mainnet-beta".into(),
                commitment: Commitment::Confirmed,
                chain_id: None,
                confirmations: None,
                traces: None,
            },
            source: SourceSpec::Rpc {
                endpoint: RpcEndpointSpec {
                    name: "primary".into(),
                    url: "http://127.0.0.1:8899".into(),
                    websocket_url: None,
                    requests_per_second: Some(10),
                    burst: None,
                    max_concurrent: 8,
                    auth: Some(AuthSpec { header: "Authorization".into(), token: FromEnv::new("CHRONICLE_RPC_TOKEN") }),
                },
            },
            mode: IngestModeSpec::Backfill { from: 0, to: 9, shards: 1 },
            batch_size: 50,
            targets: vec![IngestTarget::Canonical],
            store: StoreSpec { url: "embedded:///data/ledger".into(), ..StoreSpec::default() },
            catalog: FromEnv::new("CHRONICLE_CATALOG"),
            lake: None,
            caches: Vec::new(),
            metrics: None,
        }))
    }

    #[test]
    fn a_spec_round_trips_and_other_versions_are_refused() {
        let spec = ingest();
        let json = spec.to_json();
        assert!(json.starts_with(r#"{"apiVersion":"chronicle.dev/worker/v1alpha2","kind":"ingest""#), "{json}");
        assert_eq!(WorkerSpec::from_json(&json).unwrap(), spec);
        let other = json.replace("v1alpha2", "v9");
        assert_eq!(WorkerSpec::from_json(&other), Err(SpecError::Version { found: "chronicle.dev/worker/v9".into() }));
        assert!(matches!(WorkerSpec::from_json("{"), Err(SpecError::Malformed(_))));
    }

    #[test]
    fn a_missing_secret_variable_is_named_not_shown() {
        let err = FromEnv::new("CHRONICLE_TEST_UNSET_VARIABLE").resolve().unwrap_err();
        assert_eq!(
            err.to_string(),
            "the pod has no CHRONICLE_TEST_UNSET_VARIABLE variable (it is set from a Secret the spec names)"
        );
    }
}
