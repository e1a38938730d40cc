//! `RetentionPolicy`: how long each target of a `ChainSource` keeps data, and
//! the guard that never removes what a replica has not yet copied.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DURATION_PATTERN, LocalObjectRef, Timestamp};

#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "chronicle.dev",
    version = "v1alpha1",
    kind = "RetentionPolicy",
    namespaced,
    status = "RetentionPolicyStatus",
    shortname = "rp",
    category = "chronicle",
    doc = "Keeps a ChainSource's data for a bounded number of slots or a duration, per target, never past what replicas have copied.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourceRef.name"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "DryRun", type_ = "boolean", json_path = ".spec.dryRun"),
    printcolumn(
        name = "Oldest",
        type_ = "integer",
        json_path = ".status.oldestSlotKept",
        description = "Oldest slot still kept"
    ),
    printcolumn(name = "LastRun", type_ = "date", json_path = ".status.lastRunTime"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.rules.all(r, self.rules.exists_one(q, q.target == r.target))").message("each target may appear in only one rule"))]
pub struct RetentionPolicySpec {
    /// The `ChainSource` whose data this policy trims.
    pub source_ref: LocalObjectRef,
    /// One rule per target.
    #[schemars(length(min = 1, max = 3))]
    pub rules: Vec<RetentionRule>,
    /// Cron schedule of pruning runs (five fields, UTC), or `@hourly`/`@daily`/`@weekly`.
    #[serde(default = "default_schedule")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^(@(hourly|daily|weekly)|(\S+\s+){4}\S+)$"))]
    pub schedule: String,
    /// Report what would be removed, remove nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Never remove slots that a replica has not copied yet.
    #[serde(default)]
    pub replica_guard: ReplicaGuard,
}

fn default_schedule() -> String {
    "@daily".into()
}

#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.keepSlots) != has(self.keepFor)").message("a rule must set exactly one of keepSlots or keepFor"))]
#[x_kube(validation = Rule::new("self.method != 'gcRule' || self.target == 'canonical'").message("method gcRule applies only to the canonical target"))]
pub struct RetentionRule {
    /// What the rule trims.
    pub target: RetentionTarget,
    /// Keep this many slots behind the newest stored slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_slots: Option<u64>,
    /// Keep data whose block time is within this duration (e.g. `180d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub keep_for: Option<String>,
    /// `gcRule` sets a Bigtable garbage-collection rule (age-based on cell
    /// write time); `prune` deletes rows by slot.
    #[serde(default)]
    pub method: RetentionMethod,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RetentionTarget {
    Canonical,
    Lake,
    Cache,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RetentionMethod {
    #[default]
    Prune,
    GcRule,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaGuard {
    /// On by default; turning it off can lose data that exists nowhere else.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Replication `IngestJob`s whose watermark bounds pruning. Empty: every
    /// IngestJob whose `source.store` copies from this ChainSource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ingest_jobs: Vec<LocalObjectRef>,
}

impl Default for ReplicaGuard {
    fn default() -> Self {
        Self { enabled: true, ingest_jobs: Vec::new() }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicyStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Oldest slot still kept in the canonical store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_slot_kept: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<Timestamp>,
    /// Rows removed (or that would be, in a dry run) by the last run.
    #[serde(default)]
    pub rows_removed: u64,
    #[serde(default)]
    pub bytes_removed: u64,
    /// Slot the replica guard held pruning at, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_at_slot: Option<u64>,
}
