//! Types shared by the five kinds: references, rate limits, slot ranges and the
//! status fields every kind reports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Chronicle kind.
pub const GROUP: &str = "chronicle.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `kubectl get chronicle` lists every kind.
pub const CATEGORY: &str = "chronicle";

/// A key in a Secret of the resource's own namespace. Secrets are always read
/// by reference at run time; their values are never copied into specs,
/// ConfigMaps or logs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A reference to another Chronicle object in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Client-side limits that keep Chronicle a polite user of a shared endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.burst) || self.burst >= self.requestsPerSecond").message("rateLimit.burst must be at least rateLimit.requestsPerSecond"))]
pub struct RateLimit {
    /// Sustained requests per second.
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: u32,
    /// Requests allowed in a burst above the sustained rate (defaults to `requestsPerSecond`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub burst: Option<u32>,
}

/// An inclusive range of slots (Solana) or block numbers (EVM).
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.endSlot) || self.startSlot <= self.endSlot").message("range.startSlot must be less than or equal to range.endSlot"))]
pub struct SlotRange {
    /// First slot, inclusive.
    #[serde(default)]
    pub start_slot: u64,
    /// Last slot, inclusive. Absent means open-ended (only a `follow` job may leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_slot: Option<u64>,
}

/// Google Cloud Bigtable coordinates, shared by the canonical store and by
/// `IngestJob` replication sources.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BigtableInstance {
    /// Google Cloud project id.
    #[schemars(length(min = 1, max = 63))]
    pub project: String,
    /// Bigtable instance id (agave's default is `solana-ledger`).
    #[schemars(length(min = 1, max = 33))]
    pub instance: String,
    /// App profile used for every request.
    #[serde(default = "default_app_profile")]
    #[schemars(length(min = 1, max = 50))]
    pub app_profile: String,
    /// Secret key holding a service-account JSON key. Absent: workload identity
    /// or the emulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// `host:port` of a Bigtable emulator; when set no credentials are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub emulator_host: Option<String>,
}

fn default_app_profile() -> String {
    "default".into()
}

/// What every Chronicle status carries: conditions in the `metav1.Condition`
/// shape and the generation they describe.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The `metadata.generation` the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, each with reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// A point in time as the API server writes it (RFC 3339).
pub type Timestamp = Time;

/// Pattern of a duration such as `90s`, `15m`, `12h`, `180d` or `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";
