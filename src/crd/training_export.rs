//! `TrainingExport`: render chain data of a `ChainSource` into LLM training
//! shards (text, tokens) with a manifest and a dataset digest.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, LocalObjectRef, SecretKeyRef, SlotRange, Timestamp};

#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "chronicle.dev",
    version = "v1alpha1",
    kind = "TrainingExport",
    namespaced,
    status = "TrainingExportStatus",
    shortname = "te",
    category = "chronicle",
    doc = "Exports a slot range or time window of a ChainSource as LLM training shards (jsonl, parquet, token shards) with a manifest.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourceRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Documents", type_ = "integer", json_path = ".status.documents"),
    printcolumn(name = "Tokens", type_ = "integer", json_path = ".status.tokens"),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".status.shards"),
    printcolumn(name = "Manifest", type_ = "string", json_path = ".status.manifestUrl", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.range) != has(self.window)").message("set exactly one of range or window"))]
#[x_kube(validation = Rule::new("!has(self.range) || has(self.range.endSlot)").message("an export range needs range.endSlot"))]
pub struct TrainingExportSpec {
    /// The `ChainSource` whose data is exported.
    pub source_ref: LocalObjectRef,
    /// Slots to export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<SlotRange>,
    /// Block-time window to export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    /// Which transactions become documents.
    #[serde(default)]
    pub filters: ExportFilters,
    /// How a transaction is rendered as text.
    #[serde(default)]
    pub template: RenderTemplate,
    pub tokenizer: Tokenizer,
    /// Tokens per training sequence (token shards are packed to this length).
    #[serde(default = "default_sequence_length")]
    #[schemars(range(min = 16, max = 1048576))]
    pub sequence_length: u32,
    pub output: ExportOutput,
    #[serde(default)]
    pub split: Split,
    #[serde(default)]
    pub dedup: Dedup,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_sequence_length() -> u32 {
    2048
}

#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start < self.end").message("window.start must be before window.end"))]
pub struct TimeWindow {
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minBytes) || !has(self.maxBytes) || self.minBytes <= self.maxBytes").message("filters.minBytes must not exceed filters.maxBytes"))]
#[x_kube(validation = Rule::new("!has(self.sample) || self.sample > 0.0").message("filters.sample must be above 0"))]
pub struct ExportFilters {
    /// Keep only transactions that invoke one of these programs (base58). Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 32, max = 44), regex(pattern = r"^[1-9A-HJ-NP-Za-km-z]+$")))]
    pub programs: Vec<String>,
    /// Drop failed transactions.
    #[serde(default)]
    pub success_only: bool,
    /// Keep vote transactions (most of Solana's volume; usually noise).
    #[serde(default)]
    pub include_votes: bool,
    /// Keep only transactions with an instruction (top level or inner) of
    /// one of these parsed types, as the node's jsonParsed names them
    /// (`transfer`, `transferChecked`, `createAccount`, …). Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 64)))]
    pub instruction_types: Vec<String>,
    /// Keep only documents whose text is at least this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bytes: Option<u32>,
    /// Keep only documents whose text is at most this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<u32>,
    /// Keep this fraction of the documents, drawn by content hash and
    /// `split.seed`: the same documents every time. None: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sample: Option<f64>,
}

/// Exactly one of a built-in template or an inline one.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.builtin) != has(self.inline)").message("template must set exactly one of builtin or inline"))]
pub struct RenderTemplate {
    /// A template shipped with Chronicle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinTemplate>,
    /// A template text (minijinja syntax) over the normalized transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub inline: Option<String>,
}

impl Default for RenderTemplate {
    fn default() -> Self {
        Self { builtin: Some(BuiltinTemplate::TransactionSummary), inline: None }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinTemplate {
    /// One paragraph per transaction: signer, programs, transfers, outcome.
    TransactionSummary,
    /// The transaction as compact JSON.
    TransactionJson,
    /// Program logs with their instruction context.
    ProgramLogs,
    /// A chat (`messages`): system, the transaction's data asked about, the summary as the answer.
    TransactionChat,
    /// An instruction pair (`prompt`, `completion`) of the same.
    TransactionInstruct,
}

#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.encoding) != has(self.huggingFace)").message("tokenizer must set exactly one of encoding or huggingFace"))]
pub struct Tokenizer {
    /// A BPE encoding (ranks shipped with Chronicle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<TokenizerEncoding>,
    /// A Hugging Face `tokenizer.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugging_face: Option<HuggingFaceTokenizer>,
}

/// A Hugging Face `tokenizer.json`: its truncation and padding are turned
/// off and no special tokens are added; each document is preceded by `endOfText`.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapRef) != has(self.url)").message("huggingFace must set exactly one of configMapRef or url"))]
pub struct HuggingFaceTokenizer {
    /// The file in a ConfigMap key (a ConfigMap holds at most 1 MiB; larger
    /// tokenizers by `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// Or where the worker downloads it (`https://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://.+"))]
    pub url: Option<String>,
    /// The file's sha256 (hex): a file that differs is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
    /// The token put before each document. Default: the first of
    /// `<|endoftext|>`, `</s>`, `<eos>`, `[SEP]` the vocabulary has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub end_of_text: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerEncoding {
    Cl100kBase,
    O200kBase,
    P50kBase,
    R50kBase,
}

#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExportOutput {
    /// Where shards and the manifest go: `file://`, `s3://` or `gs://`.
    #[schemars(length(min = 6, max = 2048), regex(pattern = r"^(file|s3|gs)://.+"))]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// Output formats.
    #[serde(default = "default_formats")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub formats: Vec<ExportFormat>,
    /// Target size of one shard before compression.
    #[serde(default = "default_shard_size")]
    pub shard_size: Quantity,
}

fn default_formats() -> Vec<ExportFormat> {
    vec![ExportFormat::Jsonl]
}

fn default_shard_size() -> Quantity {
    Quantity("256Mi".into())
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ExportFormat {
    /// Text documents, one JSON object per line.
    Jsonl,
    /// Text documents with their metadata columns.
    Parquet,
    /// Packed token ids (u32 little-endian) with an index.
    Tokens,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Split {
    /// Fraction of documents held out for validation.
    #[serde(default = "default_validation_fraction")]
    #[schemars(range(min = 0.0, max = 0.5))]
    pub validation_fraction: f64,
    /// Seed of the deterministic split (same data + seed = same split).
    #[serde(default)]
    pub seed: u64,
}

impl Default for Split {
    fn default() -> Self {
        Self { validation_fraction: default_validation_fraction(), seed: 0 }
    }
}

fn default_validation_fraction() -> f64 {
    0.01
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dedup {
    /// Drop documents whose text is identical to an earlier one.
    #[serde(default = "default_true")]
    pub exact: bool,
    /// Drop documents too similar to an earlier one (MinHash). Absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_duplicate: Option<NearDuplicate>,
}

impl Default for Dedup {
    fn default() -> Self {
        Self { exact: true, near_duplicate: None }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NearDuplicate {
    /// Jaccard similarity at or above which a document is a duplicate.
    #[schemars(range(min = 0.5, max = 1.0))]
    pub threshold: f64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ExportPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainingExportStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ExportPhase>,
    #[serde(default)]
    pub documents: u64,
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub shards: u64,
    #[serde(default)]
    pub bytes: u64,
    /// Where the manifest was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_url: Option<String>,
    /// `sha256:` over every shard's path and sha256, in order: identifies the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Timestamp>,
}
