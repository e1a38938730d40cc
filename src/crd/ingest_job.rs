//! `IngestJob`: move blocks of one `ChainSource` into its stores, from RPC,
//! from BigQuery, or from another store (which is how replication is declared).

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BigtableInstance, CommonStatus, DURATION_PATTERN, LocalObjectRef, SlotRange, Timestamp};

#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "chronicle.dev",
    version = "v1alpha1",
    kind = "IngestJob",
    namespaced,
    status = "IngestJobStatus",
    shortname = "ij",
    category = "chronicle",
    doc = "Ingests blocks of a ChainSource into its stores: a slot-range backfill or a live follow of the tip.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourceRef.name"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Checkpoint",
        type_ = "integer",
        json_path = ".status.checkpoint",
        description = "Highest slot below which every slot is done"
    ),
    printcolumn(
        name = "Lag",
        type_ = "integer",
        json_path = ".status.lagSlots",
        description = "Slots behind the chain head (follow)"
    ),
    printcolumn(
        name = "Rate",
        type_ = "string",
        json_path = ".status.rate",
        description = "Slots per second over the last minute"
    ),
    printcolumn(name = "Gaps", type_ = "integer", json_path = ".status.gapsOpen", priority = 1),
    printcolumn(
        name = "Source-Lag",
        type_ = "integer",
        json_path = ".status.sourceHead.lagSeconds",
        description = "Seconds the source's newest block is behind (follow)",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'backfill' || (has(self.range) && has(self.range.endSlot))").message("a backfill needs range.endSlot"))]
#[x_kube(validation = Rule::new("self.mode != 'follow' || !has(self.range) || !has(self.range.endSlot)").message("a follow job has no range.endSlot: it tails the chain"))]
#[x_kube(validation = Rule::new("self.mode != 'follow' || self.parallelism == 1").message("a follow job runs one worker: parallelism must be 1"))]
#[x_kube(validation = Rule::new("self.mode != 'backfill' || !has(self.range) || !has(self.range.endSlot) || self.range.endSlot < self.range.startSlot || self.parallelism <= self.range.endSlot - self.range.startSlot + 1").message("parallelism must not exceed the number of slots in range"))]
#[x_kube(validation = Rule::new("!has(self.source.store) || self.targets.all(t, t == 'canonical')").message("replication copies the canonical store's rows: targets must be [canonical]"))]
#[x_kube(validation = Rule::new("!has(self.source.bigQuery) || !self.targets.exists(t, t == 'canonical')").message("a bigQuery source fills the lake only: its rows carry no raw transactions for the canonical store (targets: [lake])"))]
#[x_kube(validation = Rule::new("!has(self.source.archive) || self.mode == 'backfill'").message("an archive source holds history: mode must be backfill over a range"))]
pub struct IngestJobSpec {
    /// The `ChainSource` whose stores this job fills.
    pub source_ref: LocalObjectRef,
    /// Where blocks come from.
    pub source: IngestSource,
    /// `backfill` a closed range, or `follow` the tip.
    pub mode: IngestMode,
    /// Slots to ingest. A backfill needs `endSlot`; a follow starts at `startSlot`
    /// or, without a range, at the current tip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<SlotRange>,
    /// Backfill workers; the range is split into this many disjoint shards,
    /// each resumable from its own checkpoint.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 256))]
    pub parallelism: u32,
    /// Blocks fetched and written per batch.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub batch_size: u32,
    /// Stores written. Default: the canonical store only.
    #[serde(default = "default_targets")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub targets: Vec<IngestTarget>,
    /// Pause the job: workers are stopped after their current batch; progress is kept.
    #[serde(default)]
    pub suspend: bool,
    /// Worker resources (defaults are set by the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_parallelism() -> u32 {
    1
}

fn default_batch_size() -> u32 {
    50
}

fn default_targets() -> Vec<IngestTarget> {
    vec![IngestTarget::Canonical]
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum IngestMode {
    Backfill,
    Follow,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum IngestTarget {
    /// The canonical block store (Bigtable or embedded).
    Canonical,
    /// Normalized Parquet rows.
    Lake,
    /// Per-block chain metrics.
    Metrics,
}

/// Exactly one source.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.rpc) ? 1 : 0) + (has(self.bigQuery) ? 1 : 0) + (has(self.store) ? 1 : 0) + (has(self.archive) ? 1 : 0) == 1").message("source must set exactly one of rpc, bigQuery, store or archive"))]
pub struct IngestSource {
    /// The ChainSource's RPC/WebSocket endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcSource>,
    /// The ChainSource's BigQuery dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub big_query: Option<BigQueryIngest>,
    /// Another store: replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSource>,
    /// Epoch archives (for Solana, Old Faithful CAR files): bulk history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSource>,
}

/// One archive file per epoch, read as a stream and verified as it is read.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.url.contains('{epoch}')").message("source.archive.url must name each epoch's file with {epoch}"))]
pub struct ArchiveSource {
    /// Each epoch's file, `{epoch}` standing for its number:
    /// `file:///archives/epoch-{epoch}.car`,
    /// `https://files.old-faithful.net/{epoch}/epoch-{epoch}.car`,
    /// `s3://bucket/epoch-{epoch}.car` or `gs://…` (object-store credentials
    /// from the worker's workload identity).
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^(file|https?|s3|gs)://.+"))]
    pub url: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RpcSource {
    /// Endpoint names to use, in order. Empty: all of the ChainSource's endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub endpoints: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BigQueryIngest {
    /// Slots per query (bounds the bytes each query scans).
    #[serde(default = "default_slots_per_query")]
    #[schemars(range(min = 1, max = 1000000))]
    pub slots_per_query: u32,
    /// Take a block the dataset lacks (or holds incompletely) from the
    /// ChainSource's first endpoint instead of recording it as a gap. The
    /// dataset is checked against that endpoint whenever the ChainSource has one.
    #[serde(default)]
    pub repair_from_rpc: bool,
    /// How often a follow job asks the dataset for new blocks (each ask is a query).
    #[serde(default = "default_bigquery_poll")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub poll_interval: String,
    /// A follow job stays this many slots behind the dataset's newest block,
    /// since a block's rows land in the dataset's tables at different moments;
    /// a block still incomplete after that is a gap, re-read until whole.
    #[serde(default = "default_settle_slots")]
    #[schemars(range(max = 1000000))]
    pub settle_slots: u64,
}

fn default_slots_per_query() -> u32 {
    10_000
}

fn default_bigquery_poll() -> String {
    "60s".into()
}

fn default_settle_slots() -> u64 {
    150
}

/// Copy from another ChainSource's store or from a raw Bigtable instance
/// (for example an existing agave archive).
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.chainSourceRef) != has(self.bigtable)").message("source.store must set exactly one of chainSourceRef or bigtable"))]
pub struct StoreSource {
    /// Copy from the canonical store of this ChainSource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_source_ref: Option<LocalObjectRef>,
    /// Copy from this Bigtable instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bigtable: Option<BigtableInstance>,
    /// Compare every block's rows with the target by digest before writing,
    /// and read back what was written; mismatches and missing rows are
    /// recorded in the catalog and `status.replication`.
    #[serde(default)]
    pub verify: bool,
    /// When verifying, rewrite the rows found missing or different from the
    /// origin (false: only report them).
    #[serde(default = "default_repair")]
    pub repair: bool,
}

fn default_repair() -> bool {
    true
}

/// A replication's progress: `checkpoint` is how far the replica is
/// complete from the range start; these say how it got there.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationStatus {
    /// Slots between the origin's newest block and the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_slots: Option<u64>,
    /// Rows written to the target.
    pub rows_copied: u64,
    /// Rows compared with the target by digest (verify: true).
    pub rows_compared: u64,
    /// Rows the target lacked.
    pub rows_missing: u64,
    /// Rows the target held with other cells.
    pub rows_mismatched: u64,
    /// Missing or mismatched rows rewritten from the origin.
    pub rows_repaired: u64,
    /// Epochs with a digest recorded in the catalog.
    pub epochs_digested: u64,
    /// Epochs whose origin and target digests are equal (verified copies).
    pub epochs_proven_equal: u64,
}

/// How far behind the chain a job's source runs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceHeadStatus {
    /// The newest slot the source holds.
    pub slot: u64,
    /// When that block was produced, where the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_time: Option<Timestamp>,
    /// Slots between it and the chain head (the ChainSource's probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_slots: Option<u64>,
    /// Seconds between its block time and when the worker last asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    /// When the worker last asked the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_time: Option<Timestamp>,
}

/// A reorganization a follower repaired: the blocks it had stored above
/// `baseBlock` were replaced on the chain, so they were taken back from every
/// target and fetched again.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReorgStatus {
    /// The newest block the stored chain and the node's still shared.
    pub base_block: u64,
    /// Blocks replaced above it.
    pub depth: u64,
    /// Hash of the first block replaced, and of the block now in its place.
    pub replaced_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_time: Option<Timestamp>,
}

/// How many open gaps a status lists.
pub const OPEN_GAPS_LISTED: usize = 20;

/// An open gap: a slot that should hold a block but could not be fetched yet.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GapStatus {
    pub slot: u64,
    /// The last fetch error, with secrets removed.
    pub reason: String,
    /// Fetches tried so far.
    pub attempts: u32,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum IngestPhase {
    #[default]
    Pending,
    Running,
    Suspended,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngestJobStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<IngestPhase>,
    /// Highest slot such that every slot from the range start up to it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    #[serde(default)]
    pub slots_done: u64,
    /// Slots the chain skipped (no block produced); not gaps.
    #[serde(default)]
    pub slots_skipped: u64,
    #[serde(default)]
    pub blocks_written: u64,
    #[serde(default)]
    pub bytes_written: u64,
    #[serde(default)]
    pub gaps_found: u64,
    #[serde(default)]
    pub gaps_repaired: u64,
    /// Gaps not yet repaired.
    #[serde(default)]
    pub gaps_open: u64,
    /// The lowest open gaps, each with why it is open (at most
    /// [`OPEN_GAPS_LISTED`]; `gapsOpen` counts them all, the catalog holds them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub open_gaps: Vec<GapStatus>,
    /// Rows the source gave more than once, kept once (a dataset's repeats).
    #[serde(default)]
    pub duplicates_dropped: u64,
    /// Reorganizations of blocks stored ahead of finality, repaired (follow
    /// jobs at commitment `confirmed` on chains that replace blocks: EVM).
    #[serde(default)]
    pub reorgs: u64,
    /// The last of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reorg: Option<ReorgStatus>,
    /// Slots behind the chain head (follow jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_slots: Option<u64>,
    /// The newest block the source itself holds (follow jobs): a dataset
    /// that runs hours behind the chain says so here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_head: Option<SourceHeadStatus>,
    /// Slots per second over the last minute, e.g. `412.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// What a replication (`source: store`) copied and what verification found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Timestamp>,
    /// Name of the Job or Deployment running the workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}
