//! The children an `IngestJob` owns, built from it and its `ChainSource`:
//! an Indexed `Job` for a backfill (one index per disjoint slot shard) or a
//! one-replica `Deployment` for a follower, each running `chronicle worker
//! ingest` in a pod that meets the `restricted` Pod Security standard.
//! Secrets are referenced (env `valueFrom`, volume mounts), never copied.
//!
//! Pure functions of the specs: the reconciler applies what they return.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::chain::{ChainAdapter, Feature};
use crate::crd::CacheTier;
use crate::crd::chain_source::{ChainSource, Commitment};
use crate::crd::common::SecretKeyRef;
use crate::crd::ingest_job::{IngestJob, IngestMode, IngestTarget};
use crate::worker::spec::{
    AuthSpec, CacheSpec, ChainMetricsSpec, ChainSpec, FromEnv, IngestModeSpec, IngestSpec, LakeSpec, RpcEndpointSpec,
    SPEC_ENV, ServeSpec, SourceSpec, StoreSpec, Work, WorkerSpec,
};

/// Where the service-account key of a Bigtable store is mounted.
const GCP_KEY_DIR: &str = "/var/run/secrets/chronicle/gcp";

/// Why the children cannot be built: the message is the `Degraded`
/// condition's, [`BuildError::reason`] its reason and the Event's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("the IngestJob has no uid yet")]
    NoUid,
    #[error("source {0} is not supported by the ingest worker yet")]
    UnsupportedSource(&'static str),
    #[error("ChainSource {source_name} has no endpoint named {endpoint}")]
    UnknownEndpoint { source_name: String, endpoint: String },
    #[error("an embedded store is a single-writer volume: parallelism must be 1, not {0}")]
    EmbeddedParallelism(u32),
    #[error("{0}")]
    UnsupportedChain(String),
    #[error("a backfill needs range.endSlot")]
    NoEndSlot,
    #[error("the source is bigQuery, but ChainSource {0} declares no spec.bigQuery dataset")]
    NoBigQuery(String),
    #[error("the targets include the lake, but ChainSource {0} declares no spec.lake")]
    NoLake(String),
    #[error("the targets include metrics, but ChainSource {0} declares no spec.metrics")]
    NoMetricsSink(String),
    #[error(
        "chain metrics are aggregated from whole blocks: a bigQuery source yields rows; write metrics from an rpc ingest"
    )]
    MetricsFromRows,
    #[error(
        "the lake keeps finalized blocks only: ChainSource {0} reads at commitment confirmed, and a backfill has no finality to wait for (a follow job holds rows until final)"
    )]
    LakeNeedsFinalized(String),
    #[error("the origin ChainSource {0} does not exist")]
    OriginNotFound(String),
    #[error(
        "the origin ChainSource {0} keeps an embedded store, which admits one process: copy from a Bigtable origin"
    )]
    OriginEmbedded(String),
    #[error("replication copies the canonical store's rows: targets must be [canonical]")]
    ReplicaTargets,
    #[error(
        "a store origin named by chainSourceRef is resolved by the IngestJob reconciler, which an embedded target's node does not consult: name the origin's instance in source.store.bigtable"
    )]
    OriginUnresolved,
}

impl BuildError {
    /// The condition and Event reason (CamelCase, stable: alerts match on it).
    pub fn reason(&self) -> &'static str {
        match self {
            BuildError::NoUid => "NoUid",
            BuildError::UnsupportedSource(_) => "SourceUnsupported",
            BuildError::UnknownEndpoint { .. } => "EndpointUnknown",
            BuildError::EmbeddedParallelism(_) => "EmbeddedParallelism",
            BuildError::UnsupportedChain(_) => "ChainUnsupported",
            BuildError::NoEndSlot => "RangeInvalid",
            BuildError::NoLake(_) => "LakeMissing",
            BuildError::NoMetricsSink(_) => "MetricsSinkMissing",
            BuildError::MetricsFromRows => "MetricsFromRows",
            BuildError::NoBigQuery(_) => "BigQueryMissing",
            BuildError::LakeNeedsFinalized(_) => "LakeNeedsFinalized",
            BuildError::OriginNotFound(_) => "OriginNotFound",
            BuildError::OriginEmbedded(_) => "OriginEmbedded",
            BuildError::ReplicaTargets => "TargetsInvalid",
            BuildError::OriginUnresolved => "OriginUnresolved",
        }
    }
}

/// The workload for an IngestJob, and its name.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestWorkload {
    Backfill(Job),
    Follow(Deployment),
    /// An embedded source's jobs run in its node Deployment (`node.rs`), named here.
    OnNode(String),
}

/// The label every child carries, and its value.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "chronicle-controller");

/// The label naming a child's owner of `owner_kind` (its value: the owner's name).
pub fn owner_label(owner_kind: &str) -> String {
    format!("chronicle.dev/{}", owner_kind.to_lowercase())
}

/// `app.kubernetes.io/*` labels shared by every child of `owner`.
pub fn labels(owner_kind: &str, owner_name: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "chronicle".into()),
        ("app.kubernetes.io/instance".into(), owner_name.into()),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/part-of".into(), "chronicle".into()),
        (MANAGED_BY.0.into(), MANAGED_BY.1.into()),
        (owner_label(owner_kind), owner_name.into()),
    ])
}

/// The pod-level settings of the `restricted` Pod Security standard.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        fs_group: Some(65532),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..PodSecurityContext::default()
    }
}

/// The container-level settings of the `restricted` Pod Security standard.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..SecurityContext::default()
    }
}

/// Requests and limits from the spec, with defaults a worker runs well on.
pub fn resources(spec: Option<&ResourceRequirements>) -> ResourceRequirements {
    let mut resources = spec.cloned().unwrap_or_default();
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    requests.entry("cpu".into()).or_insert_with(|| Quantity("500m".into()));
    requests.entry("memory".into()).or_insert_with(|| Quantity("512Mi".into()));
    let limits = resources.limits.get_or_insert_with(BTreeMap::new);
    limits.entry("memory".into()).or_insert_with(|| Quantity("2Gi".into()));
    resources
}

fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

fn owner_reference(job: &IngestJob) -> Result<OwnerReference, BuildError> {
    job.controller_owner_ref(&()).ok_or(BuildError::NoUid)
}

/// The store a worker reaches for `source`, and the volumes that takes (the
/// key file's Secret, or the embedded store's claim).
fn store_access(source: &ChainSource) -> (StoreSpec, Vec<Volume>, Vec<VolumeMount>) {
    let store = &source.spec.store;
    if let Some(bigtable) = &store.bigtable {
        let url = format!("bigtable://{}/{}?appProfile={}", bigtable.project, bigtable.instance, bigtable.app_profile);
        let (mut volumes, mut mounts) = (Vec::new(), Vec::new());
        let mut credentials_file = None;
        if let Some(key) = &bigtable.credentials_secret_ref {
            volumes.push(Volume {
                name: "gcp-key".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(key.name.clone()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: "gcp-key".into(),
                mount_path: GCP_KEY_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
            credentials_file = Some(format!("{GCP_KEY_DIR}/{}", key.key));
        }
        let spec = StoreSpec { url, emulator_host: bigtable.emulator_host.clone(), credentials_file };
        (spec, volumes, mounts)
    } else {
        // The embedded store lives on the ChainSource's volume claim.
        let claim = format!("{}-store", source.name_any());
        let volume = Volume {
            name: "store".into(),
            persistent_volume_claim: Some(k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: Some(false),
            }),
            ..Volume::default()
        };
        let mount = VolumeMount { name: "store".into(), mount_path: EMBEDDED_MOUNT.into(), ..VolumeMount::default() };
        let url = format!("embedded://{EMBEDDED_MOUNT}/ledger");
        (StoreSpec { url, ..StoreSpec::default() }, vec![volume], vec![mount])
    }
}

/// The store `source`'s workers reach, as their spec names it.
pub fn store_spec(source: &ChainSource) -> StoreSpec {
    store_access(source).0
}

/// Where a worker pod mounts an embedded store's claim; `chronicle dev`
/// maps it to the source's state directory.
pub const EMBEDDED_MOUNT: &str = "/data";

/// The chain part of every worker spec of `source`.
pub fn chain_spec(source: &ChainSource) -> ChainSpec {
    ChainSpec {
        family: source.spec.chain.family,
        network: source.spec.chain.network.clone(),
        commitment: source.spec.commitment,
        chain_id: source.spec.chain.chain_id,
        confirmations: source.spec.chain.confirmations.map(u64::from),
        traces: source.spec.chain.traces,
    }
}

fn spec_env(spec: &WorkerSpec) -> EnvVar {
    env(SPEC_ENV, spec.to_json())
}

/// What a worker pod takes beside its store: Secret-backed variables and
/// Secret volumes.
#[derive(Default)]
pub(crate) struct PodSecrets {
    pub envs: Vec<EnvVar>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
}

impl PodSecrets {
    /// The variable `name` from a Secret key, once however many works need it.
    pub fn env(&mut self, name: &str, secret: &SecretKeyRef) {
        if !self.envs.iter().any(|e| e.name == name) {
            self.envs.push(secret_env(name, secret));
        }
    }

    /// The ingest work's endpoint token and the Redis URLs of the tiers it invalidates.
    pub fn ingest(&mut self, spec: &IngestSpec, source: &ChainSource, tiers: &[CacheTier]) {
        // Only the tiers the spec invalidates (a chain without a cache tier lists none).
        for tier in invalidating_tiers(source, tiers) {
            let env = cache_url_env(&tier.name_any());
            if spec.caches.iter().any(|cache| cache.env == env) {
                self.env(&env, &tier.spec.redis.url_secret_ref);
            }
        }
        if spec.lake.is_some() {
            self.lake_credentials(source);
        }
        if let (Some(metrics), Some(sink)) = (&spec.metrics, &source.spec.metrics) {
            self.env(&metrics.token.env, &sink.influxdb.token_secret_ref);
        }
        match &spec.source {
            SourceSpec::Rpc { endpoint } => self.endpoint_token(endpoint, source),
            // The origin's key is mounted by `origin_key`.
            SourceSpec::Store { .. } | SourceSpec::Archive { .. } => {}
            SourceSpec::BigQuery { credentials_file, check, .. } => {
                if let Some(endpoint) = check {
                    self.endpoint_token(endpoint, source);
                }
                if credentials_file.is_none() {
                    return;
                }
                let Some(key) = source.spec.big_query.as_ref().and_then(|b| b.credentials_secret_ref.as_ref()) else {
                    return;
                };
                let items = vec![KeyToPath { key: key.key.clone(), path: "key.json".into(), mode: None }];
                let secret = SecretVolumeSource {
                    secret_name: Some(key.name.clone()),
                    items: Some(items),
                    ..SecretVolumeSource::default()
                };
                let volume = Volume { name: "bigquery-key".into(), secret: Some(secret), ..Volume::default() };
                self.mount_read_only(volume, BIGQUERY_KEY_DIR);
            }
        }
    }

    /// A replication origin's key file (`source.store.bigtable.credentialsSecretRef`).
    pub fn origin_key(&mut self, job: &IngestJob) {
        let origin = job.spec.source.store.as_ref().and_then(|s| s.bigtable.as_ref());
        let Some(key) = origin.and_then(|b| b.credentials_secret_ref.as_ref()) else { return };
        let secret = SecretVolumeSource { secret_name: Some(key.name.clone()), ..SecretVolumeSource::default() };
        self.mount_read_only(
            Volume { name: "origin-key".into(), secret: Some(secret), ..Volume::default() },
            ORIGIN_KEY_DIR,
        );
    }

    /// `volume`, mounted read-only at `path` in the worker's container.
    pub fn mount_read_only(&mut self, volume: Volume, path: &str) {
        let mount = VolumeMount {
            name: volume.name.clone(),
            mount_path: path.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        };
        self.mounts.push(mount);
        self.volumes.push(volume);
    }

    /// The lake's object-store credentials, as the variables the store's SDK
    /// reads (`object_store`'s `from_env`): for `gs://` the key holds a
    /// service-account JSON key; for `s3://` it holds the secret access key,
    /// and the Secret's entries named as AWS names them give the rest.
    fn lake_credentials(&mut self, source: &ChainSource) {
        let Some(lake) = &source.spec.lake else { return };
        if let Some(secret) = &lake.credentials_secret_ref {
            self.object_store_credentials(&lake.url, secret);
        }
    }

    /// Credentials for the object store at `url` (see [`Self::lake_credentials`]).
    pub fn object_store_credentials(&mut self, url: &str, secret: &SecretKeyRef) {
        if url.starts_with("gs://") {
            self.env("GOOGLE_SERVICE_ACCOUNT_KEY", secret);
        } else if url.starts_with("s3://") {
            self.env("AWS_SECRET_ACCESS_KEY", secret);
            for name in ["AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT"] {
                let mut env = secret_env(name, &SecretKeyRef { name: secret.name.clone(), key: name.into() });
                if let Some(selector) = env.value_from.as_mut().and_then(|v| v.secret_key_ref.as_mut()) {
                    selector.optional = Some(name != "AWS_ACCESS_KEY_ID");
                }
                if !self.envs.iter().any(|e| e.name == name) {
                    self.envs.push(env);
                }
            }
        }
    }

    /// An endpoint's token, from the Secret its ChainSource names.
    fn endpoint_token(&mut self, endpoint: &RpcEndpointSpec, source: &ChainSource) {
        let declared = source.spec.endpoints.iter().find(|e| e.name == endpoint.name).and_then(|e| e.auth.as_ref());
        if let (Some(auth), Some(secret)) = (&endpoint.auth, declared) {
            self.env(&auth.token.env, &secret.secret_ref);
        }
    }

    /// The serve work's Redis URL, and its API-key Secret as volume `volume`.
    pub fn serve(&mut self, spec: &ServeSpec, tier: &CacheTier, source: &ChainSource, volume: &str) {
        if let Some(cache) = &spec.cache {
            self.env(&cache.url.env, &tier.spec.redis.url_secret_ref);
        }
        if let Some(upstream) = &spec.upstream {
            self.endpoint_token(&upstream.endpoint, source);
        }
        if let (Some(keys), Some(dir)) = (&tier.spec.server.api_keys_secret_ref, &spec.api_keys_dir) {
            let secret =
                Some(SecretVolumeSource { secret_name: Some(keys.name.clone()), ..SecretVolumeSource::default() });
            self.mount_read_only(Volume { name: volume.into(), secret, ..Volume::default() }, dir);
        }
    }
}

/// A pod that runs `chronicle worker run` with `spec` in one container
/// `name`: restricted Pod Security, no service-account token, the source's
/// store mounted, a writable `/tmp`, JSON logs, and `secrets`.
pub(crate) fn worker_pod(
    name: &str,
    image: &str,
    spec: &WorkerSpec,
    source: &ChainSource,
    secrets: PodSecrets,
    resources: ResourceRequirements,
    grace_seconds: i64,
) -> PodSpec {
    let (_, volumes, mounts) = store_access(source);
    pod_with(name, image, spec, (volumes, mounts), secrets, resources, grace_seconds)
}

/// A worker pod with these volumes (a store's, or none for a pod that
/// touches no store).
pub(crate) fn pod_with(
    name: &str,
    image: &str,
    spec: &WorkerSpec,
    (mut volumes, mut mounts): (Vec<Volume>, Vec<VolumeMount>),
    secrets: PodSecrets,
    resources: ResourceRequirements,
    grace_seconds: i64,
) -> PodSpec {
    volumes.extend(secrets.volumes);
    mounts.extend(secrets.mounts);
    volumes.push(Volume { name: "tmp".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() });
    mounts.push(VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..VolumeMount::default() });
    let mut envs = vec![spec_env(spec)];
    envs.extend(secrets.envs);
    envs.push(env("CHRONICLE_LOG_FORMAT", "json"));
    envs.push(env("CHRONICLE_METRICS_ADDR", &format!("0.0.0.0:{WORKER_METRICS_PORT}")));
    // Every worker serves its metrics while it works (`telemetry/metrics.rs`).
    let metrics_port =
        ContainerPort { name: Some("metrics".into()), container_port: WORKER_METRICS_PORT, ..ContainerPort::default() };
    PodSpec {
        security_context: Some(restricted_pod()),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(grace_seconds),
        containers: vec![Container {
            name: name.into(),
            image: Some(image.into()),
            args: Some(vec!["worker".into(), "run".into()]),
            env: Some(envs),
            volume_mounts: Some(mounts),
            resources: Some(resources),
            security_context: Some(restricted_container()),
            ports: Some(vec![metrics_port]),
            ..Container::default()
        }],
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

/// The port of every worker pod's `/metrics` (named `metrics`).
pub const WORKER_METRICS_PORT: i32 = 9090;

/// Env names the pods set from Secrets; the worker spec refers to them.
pub(crate) const CATALOG_ENV: &str = "CHRONICLE_CATALOG";
const RPC_TOKEN_ENV: &str = "CHRONICLE_RPC_TOKEN";
const CACHE_URL_ENV: &str = "CHRONICLE_CACHE_URL";
const METRICS_TOKEN_ENV: &str = "CHRONICLE_METRICS_TOKEN";

/// `PREFIX_NAME`: a variable of one object, so that one pod can hold many
/// (an embedded source's node runs all its jobs and tiers).
fn env_name(prefix: &str, name: &str) -> String {
    format!("{prefix}_{}", name.to_uppercase().replace(['-', '.'], "_"))
}

/// The variable holding the token of the endpoint named `endpoint`.
pub fn rpc_token_env(endpoint: &str) -> String {
    env_name(RPC_TOKEN_ENV, endpoint)
}

/// The variable holding the Redis URL of the CacheTier named `tier`.
pub fn cache_url_env(tier: &str) -> String {
    env_name(CACHE_URL_ENV, tier)
}

/// Where the API-key Secret of the CacheTier named `tier` is mounted.
pub fn api_keys_dir(tier: &str) -> String {
    format!("{API_KEYS_DIR}/{tier}")
}

/// The claim an embedded store lives on (`<source>-store`), for a ChainSource
/// with an embedded store. It carries the common labels but no owner
/// reference: the canonical store outlives its ChainSource, as a
/// StatefulSet's volumes do; deleting the data is a deliberate act.
pub fn store_claim(source: &ChainSource) -> Option<k8s_openapi::api::core::v1::PersistentVolumeClaim> {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
    let embedded = source.spec.store.embedded.as_ref()?;
    let name = source.name_any();
    let labels = labels("ChainSource", &name, "store");
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(format!("{name}-store")),
            namespace: source.namespace(),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: embedded.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), embedded.size.clone())])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

/// The job's identity in the catalog. A backfill's shards keep their
/// checkpoints under their ranges, so a new range or shard count, or another
/// mode, is a new identity: the new layout starts afresh (writes are
/// idempotent) instead of conflicting with the old layout's records.
pub fn catalog_job(job: &IngestJob) -> String {
    let base = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
    let spec = &job.spec;
    match (spec.mode, &spec.range) {
        (IngestMode::Backfill, Some(range)) => {
            format!("{base}#{}-{}x{}", range.start_slot, range.end_slot.unwrap_or_default(), spec.parallelism)
        }
        (IngestMode::Backfill, None) => base,
        (IngestMode::Follow, _) => format!("{base}#follow"),
    }
}

/// The tiers of `source` whose answers its ingests invalidate as blocks land
/// (`invalidateOnIngest`), in the order given.
pub fn invalidating_tiers<'a>(
    source: &'a ChainSource,
    tiers: &'a [CacheTier],
) -> impl Iterator<Item = &'a CacheTier> + 'a {
    tiers.iter().filter(move |t| {
        t.spec.invalidate_on_ingest
            && t.spec.source_ref.name == source.name_any()
            && t.namespace() == source.namespace()
    })
}

/// What `job`'s workers do, as the worker reads it; `tiers` are the
/// CacheTiers of the namespace (those serving the job's source have their
/// cached answers dropped as blocks land).
pub fn ingest_spec(job: &IngestJob, source: &ChainSource, tiers: &[CacheTier]) -> Result<WorkerSpec, BuildError> {
    let spec = &job.spec;
    let mut wanted = Vec::new();
    if spec.targets.contains(&IngestTarget::Lake) {
        wanted.push(Feature::Lake);
    }
    if spec.source.big_query.is_some() {
        wanted.push(Feature::BigQuery);
    }
    if spec.targets.contains(&IngestTarget::Metrics) {
        wanted.push(Feature::ChainMetrics);
    }
    if spec.source.archive.is_some() {
        wanted.push(Feature::Archive);
    }
    let adapter =
        crate::chain::adapter_with(source.spec.chain.family, &wanted).map_err(BuildError::UnsupportedChain)?;
    // A chain without a cache tier has no cached answers to drop (its tiers report why they build nothing).
    let caches_served = crate::with_adapter!(adapter, |chain| chain.lacks(Feature::Cache).is_none());
    if source.spec.store.embedded.is_some() && spec.parallelism > 1 {
        return Err(BuildError::EmbeddedParallelism(spec.parallelism));
    }
    let (source_spec, batch_size) = match (&spec.source.rpc, &spec.source.big_query, &spec.source.archive) {
        (Some(rpc), _, _) => (rpc_source_spec(source, &rpc.endpoints)?, spec.batch_size),
        (None, Some(query), _) => {
            let dataset = source.spec.big_query.as_ref().ok_or_else(|| BuildError::NoBigQuery(source.name_any()))?;
            let spec = SourceSpec::BigQuery {
                dataset: format!("{}.{}", dataset.project, dataset.dataset),
                billing_project: dataset.billing_project.clone().unwrap_or_else(|| dataset.project.clone()),
                location: dataset.location.clone(),
                credentials_file: dataset.credentials_secret_ref.as_ref().map(|_| BIGQUERY_KEY_FILE.to_string()),
                // Checked against the chain whenever the source has a node.
                check: match source.spec.endpoints.is_empty() {
                    true => None,
                    false => match rpc_source_spec(source, &[])? {
                        SourceSpec::Rpc { endpoint } => Some(endpoint),
                        _ => None,
                    },
                },
                repair: query.repair_from_rpc,
                endpoint: dataset.endpoint.clone(),
                poll_interval: query.poll_interval.clone(),
                settle_slots: query.settle_slots,
            };
            // A batch is one query per table over `slotsPerQuery` slots.
            (spec, query.slots_per_query)
        }
        (None, None, Some(archive)) => (SourceSpec::Archive { url: archive.url.clone() }, spec.batch_size),
        (None, None, None) => (origin_source_spec(job)?, spec.batch_size),
    };
    let range = spec.range.clone().unwrap_or_default();
    let mode = match spec.mode {
        IngestMode::Backfill => IngestModeSpec::Backfill {
            from: range.start_slot,
            // The CRD's CEL rule guarantees it; an object from before the rule must not panic us.
            to: range.end_slot.ok_or(BuildError::NoEndSlot)?,
            shards: spec.parallelism,
        },
        IngestMode::Follow => IngestModeSpec::Follow { from: spec.range.as_ref().map(|r| r.start_slot) },
    };
    // Rows in a committed partition cannot be taken back: the lake takes
    // finalized blocks only (a confirmed follower's lake holds rows until
    // final; a dataset holds history, its check node is read at finalized).
    let from_node = !matches!(source_spec, SourceSpec::BigQuery { .. });
    let lake = match (spec.targets.contains(&IngestTarget::Lake), &source.spec.lake) {
        (false, _) => None,
        (true, None) => return Err(BuildError::NoLake(source.name_any())),
        (true, Some(_))
            if from_node && source.spec.commitment == Commitment::Confirmed && spec.mode == IngestMode::Backfill =>
        {
            return Err(BuildError::LakeNeedsFinalized(source.name_any()));
        }
        (true, Some(lake)) => Some(LakeSpec { url: lake.url.clone() }),
    };
    let metrics = match (spec.targets.contains(&IngestTarget::Metrics), &source.spec.metrics) {
        (false, _) => None,
        (true, None) => return Err(BuildError::NoMetricsSink(source.name_any())),
        (true, Some(_)) if matches!(source_spec, SourceSpec::BigQuery { .. }) => {
            return Err(BuildError::MetricsFromRows);
        }
        (true, Some(sink)) => Some(ChainMetricsSpec {
            url: sink.influxdb.url.clone(),
            org: sink.influxdb.org.clone(),
            bucket: sink.influxdb.bucket.clone(),
            token: FromEnv::new(METRICS_TOKEN_ENV),
        }),
    };
    Ok(WorkerSpec::new(Work::Ingest(IngestSpec {
        job: catalog_job(job),
        chain: chain_spec(source),
        source: source_spec,
        mode,
        batch_size,
        targets: spec.targets.clone(),
        store: store_access(source).0,
        catalog: FromEnv::new(CATALOG_ENV),
        lake,
        caches: invalidating_tiers(source, tiers)
            .filter(|_| caches_served)
            .map(|t| FromEnv::new(&cache_url_env(&t.name_any())))
            .collect(),
        metrics,
    })))
}

/// Where a replication origin's service-account key is mounted.
const ORIGIN_KEY_DIR: &str = "/var/run/secrets/chronicle/origin";

/// A replication's origin, as the worker reads it (`source.store.bigtable`;
/// a `chainSourceRef` is resolved into it first, see [`resolve_origin`]).
fn origin_source_spec(job: &IngestJob) -> Result<SourceSpec, BuildError> {
    let store = job.spec.source.store.as_ref().ok_or(BuildError::UnsupportedSource("(none)"))?;
    let instance = store.bigtable.as_ref().ok_or(BuildError::OriginUnresolved)?;
    if job.spec.targets != [IngestTarget::Canonical] {
        return Err(BuildError::ReplicaTargets);
    }
    let url = format!("bigtable://{}/{}?appProfile={}", instance.project, instance.instance, instance.app_profile);
    let origin = StoreSpec {
        url,
        emulator_host: instance.emulator_host.clone(),
        credentials_file: instance.credentials_secret_ref.as_ref().map(|k| format!("{ORIGIN_KEY_DIR}/{}", k.key)),
    };
    Ok(SourceSpec::Store { origin, verify: store.verify, repair: store.repair })
}

/// `job` with a `source.store.chainSourceRef` origin replaced by that
/// ChainSource's Bigtable instance (`origin`, looked up by the caller).
pub fn resolve_origin(
    job: &IngestJob,
    target: &ChainSource,
    origin: Option<&ChainSource>,
) -> Result<IngestJob, BuildError> {
    let Some(reference) = job.spec.source.store.as_ref().and_then(|s| s.chain_source_ref.as_ref()) else {
        return Ok(job.clone());
    };
    if target.spec.store.embedded.is_some() {
        return Err(BuildError::OriginUnresolved);
    }
    let origin = origin.ok_or_else(|| BuildError::OriginNotFound(reference.name.clone()))?;
    let instance =
        origin.spec.store.bigtable.clone().ok_or_else(|| BuildError::OriginEmbedded(reference.name.clone()))?;
    let mut resolved = job.clone();
    if let Some(store) = resolved.spec.source.store.as_mut() {
        store.chain_source_ref = None;
        store.bigtable = Some(instance);
    }
    Ok(resolved)
}

/// Where a ChainSource's BigQuery key is mounted in an ingest pod.
const BIGQUERY_KEY_DIR: &str = "/var/run/secrets/chronicle/bigquery";
const BIGQUERY_KEY_FILE: &str = "/var/run/secrets/chronicle/bigquery/key.json";

/// The first of `wanted` endpoints of `source` (or its first), as a worker reads it.
fn rpc_source_spec(source: &ChainSource, wanted: &[String]) -> Result<SourceSpec, BuildError> {
    let unknown =
        |endpoint: &str| BuildError::UnknownEndpoint { source_name: source.name_any(), endpoint: endpoint.into() };
    let endpoint = match wanted.first() {
        Some(name) => source.spec.endpoints.iter().find(|e| &e.name == name).ok_or_else(|| unknown(name))?,
        None => source.spec.endpoints.first().ok_or_else(|| unknown("(any)"))?,
    };
    Ok(SourceSpec::Rpc { endpoint: endpoint_spec(endpoint) })
}

/// A ChainSource endpoint as a worker reads it; its token from a pod variable.
fn endpoint_spec(endpoint: &crate::crd::chain_source::Endpoint) -> RpcEndpointSpec {
    RpcEndpointSpec {
        name: endpoint.name.clone(),
        url: endpoint.url.clone(),
        websocket_url: endpoint.websocket_url.clone(),
        requests_per_second: endpoint.rate_limit.as_ref().map(|l| l.requests_per_second),
        burst: endpoint.rate_limit.as_ref().and_then(|l| l.burst),
        max_concurrent: endpoint.max_concurrent,
        auth: endpoint
            .auth
            .as_ref()
            .map(|a| AuthSpec { header: a.header.clone(), token: FromEnv::new(&rpc_token_env(&endpoint.name)) }),
    }
}

/// The Job or Deployment that runs `job`'s workers.
pub fn ingest_workload(
    job: &IngestJob,
    source: &ChainSource,
    tiers: &[CacheTier],
    image: &str,
) -> Result<IngestWorkload, BuildError> {
    let spec = &job.spec;
    let worker = ingest_spec(job, source, tiers)?;
    if source.spec.store.embedded.is_some() {
        return Ok(IngestWorkload::OnNode(super::node::node_name(source)));
    }
    let name = job.name_any();
    let mut secrets = PodSecrets::default();
    secrets.env(CATALOG_ENV, &source.spec.catalog.connection_secret_ref);
    if let Work::Ingest(ingest) = &worker.work {
        secrets.ingest(ingest, source, tiers);
    }
    secrets.origin_key(job);
    // The worker finishes its batch and commits on SIGTERM: 120 s to do so.
    let mut pod = worker_pod("ingest", image, &worker, source, secrets, resources(spec.resources.as_ref()), 120);
    pod.restart_policy = Some(if spec.mode == IngestMode::Backfill { "OnFailure" } else { "Always" }.into());
    let labels = labels("IngestJob", &name, "ingest");
    let pod = PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..ObjectMeta::default() }),
        spec: Some(pod),
    };
    let metadata = ObjectMeta {
        name: Some(format!("{name}-ingest")),
        namespace: job.namespace(),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner_reference(job)?]),
        ..ObjectMeta::default()
    };
    Ok(match spec.mode {
        IngestMode::Backfill => IngestWorkload::Backfill(Job {
            metadata,
            spec: Some(JobSpec {
                completion_mode: Some("Indexed".into()),
                completions: Some(spec.parallelism as i32),
                parallelism: Some(spec.parallelism as i32),
                suspend: Some(spec.suspend),
                backoff_limit_per_index: Some(6),
                template: pod,
                ..JobSpec::default()
            }),
            status: None,
        }),
        IngestMode::Follow => IngestWorkload::Follow(Deployment {
            metadata,
            spec: Some(DeploymentSpec {
                replicas: Some(if spec.suspend { 0 } else { 1 }),
                // Never two followers of one job at once.
                strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }),
                selector: LabelSelector { match_labels: Some(labels), match_expressions: None },
                template: pod,
                ..DeploymentSpec::default()
            }),
            status: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load<T: serde::de::DeserializeOwned>(file: &str) -> T {
        crate::controller::example(file, |_| {})
    }

    /// The worker spec a container carries, as the worker reads it.
    pub(crate) fn worker_spec(container: &Container) -> WorkerSpec {
        let value = container.env.as_ref().unwrap().iter().find(|e| e.name == SPEC_ENV).unwrap();
        WorkerSpec::from_json(value.value.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn a_backfill_is_an_indexed_job_of_restricted_pods() {
        let job: IngestJob = load("ingestjob-backfill.yaml");
        let source: ChainSource = load("chainsource-solana-mainnet.yaml");
        let IngestWorkload::Backfill(built) = ingest_workload(&job, &source, &[], "chronicle:test").unwrap() else {
            panic!("a Job")
        };
        let spec = built.spec.as_ref().unwrap();
        assert_eq!(
            (spec.completion_mode.as_deref(), spec.completions, spec.parallelism),
            (Some("Indexed"), Some(8), Some(8))
        );
        let owner = &built.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("IngestJob", "mainnet-epoch-700", Some(true))
        );
        let pod = spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.args.as_deref(), Some(&["worker".to_string(), "run".into()][..]));
        let Work::Ingest(ingest) = worker_spec(container).work else { panic!("an ingest spec") };
        assert_eq!(ingest.mode, IngestModeSpec::Backfill { from: 302_400_000, to: 302_831_999, shards: 8 });
        assert_eq!(ingest.store.url, "bigtable://acme-data/solana-ledger?appProfile=chronicle-writer");
        assert_eq!(ingest.store.credentials_file.as_deref(), Some("/var/run/secrets/chronicle/gcp/key.json"));
        let SourceSpec::Rpc { endpoint } = &ingest.source else { panic!("an rpc source") };
        assert_eq!(endpoint.url, "https://mainnet.rpcpool.example.com");
        assert_eq!(endpoint.auth.as_ref().unwrap().header, "Authorization");
        assert_eq!(ingest.chain.commitment, crate::crd::chain_source::Commitment::Finalized);
        let token = container.env.as_ref().unwrap().iter().find(|e| e.name == "CHRONICLE_RPC_TOKEN_TRITON").unwrap();
        assert_eq!(token.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().name, "solana-rpc-token");
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(
            (security.read_only_root_filesystem, security.allow_privilege_escalation),
            (Some(true), Some(false))
        );
        assert_eq!(security.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
        // The catalog URL is a Secret reference, never a value.
        let catalog = container.env.as_ref().unwrap().iter().find(|e| e.name == "CHRONICLE_CATALOG").unwrap();
        assert!(catalog.value.is_none() && catalog.value_from.as_ref().unwrap().secret_key_ref.is_some());
        let spec_value = container.env.as_ref().unwrap().iter().find(|e| e.name == SPEC_ENV).unwrap();
        assert!(!spec_value.value.as_deref().unwrap().contains("solana-rpc-token"), "a Secret's name is no value");
        assert_eq!(container.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"], Quantity("2Gi".into()));
    }

    #[test]
    fn an_archive_backfill_runs_the_archive_source_in_an_indexed_job() {
        let job: IngestJob = load("ingestjob-archive.yaml");
        let source: ChainSource = load("chainsource-solana-mainnet.yaml");
        let IngestWorkload::Backfill(built) = ingest_workload(&job, &source, &[], "chronicle:test").unwrap() else {
            panic!("a Job")
        };
        let spec = built.spec.unwrap();
        assert_eq!(spec.completions, Some(4));
        let Work::Ingest(ingest) = worker_spec(&spec.template.spec.unwrap().containers[0]).work else {
            panic!("an ingest spec")
        };
        let SourceSpec::Archive { url } = &ingest.source else { panic!("an archive source: {:?}", ingest.source) };
        assert_eq!(url, "https://files.old-faithful.net/{epoch}/epoch-{epoch}.car");
        let config = crate::worker::run::ingest_config_in(&ingest, 1, &|_| Some("postgres://catalog".into())).unwrap();
        let crate::pipeline::config::SourceConfig::Archive(location) = &config.source else { panic!("{config:?}") };
        assert_eq!(
            (location.url_of(700).as_str(), location.epoch_slots),
            ("https://files.old-faithful.net/700/epoch-700.car", 432_000)
        );
    }

    #[test]
    fn a_follower_is_one_recreated_replica() {
        let job: IngestJob = load("ingestjob-follow.yaml");
        let source: ChainSource = load("chainsource-solana-mainnet.yaml");
        let IngestWorkload::Follow(built) = ingest_workload(&job, &source, &[], "chronicle:test").unwrap() else {
            panic!("a Deployment")
        };
        let spec = built.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
        let Work::Ingest(ingest) = worker_spec(&spec.template.spec.unwrap().containers[0]).work else {
            panic!("an ingest spec")
        };
        assert!(matches!(ingest.mode, IngestModeSpec::Follow { .. }), "{:?}", ingest.mode);
        let SourceSpec::Rpc { endpoint } = &ingest.source else { panic!("an rpc source") };
        assert_eq!(endpoint.websocket_url.as_deref(), Some("wss://mainnet.rpcpool.example.com"));
    }

    #[test]
    fn what_the_worker_cannot_run_is_an_error() {
        let source: ChainSource = load("chainsource-solana-mainnet.yaml");
        let mut bare = source.clone();
        bare.spec.big_query = None;
        let bigquery: IngestJob = load("ingestjob-bigquery.yaml");
        assert_eq!(ingest_workload(&bigquery, &bare, &[], "x"), Err(BuildError::NoBigQuery("solana-mainnet".into())));
        let embedded: ChainSource = load("chainsource-solana-embedded.yaml");
        let parallel: IngestJob = load("ingestjob-backfill.yaml");
        assert_eq!(ingest_workload(&parallel, &embedded, &[], "x"), Err(BuildError::EmbeddedParallelism(8)));
    }

    #[test]
    fn a_replication_reads_its_origin_with_the_origins_key_mounted() {
        let job: IngestJob = load("ingestjob-replicate.yaml");
        let source: ChainSource = load("chainsource-solana-mainnet.yaml");
        let IngestWorkload::Backfill(built) = ingest_workload(&job, &source, &[], "chronicle:test").unwrap() else {
            panic!("an Indexed Job")
        };
        let pod = built.spec.unwrap().template.spec.unwrap();
        let Work::Ingest(ingest) = worker_spec(&pod.containers[0]).work else { panic!("an ingest spec") };
        let origin = StoreSpec {
            url: "bigtable://legacy-validators/solana-ledger?appProfile=default".into(),
            emulator_host: None,
            credentials_file: Some(format!("{ORIGIN_KEY_DIR}/key.json")),
        };
        assert_eq!(ingest.source, SourceSpec::Store { origin, verify: true, repair: true });
        let volume = pod.volumes.unwrap().into_iter().find(|v| v.name == "origin-key").expect("the origin's key");
        assert_eq!(volume.secret.unwrap().secret_name.as_deref(), Some("legacy-bigtable-reader"));
        // An origin named by its ChainSource is that source's instance.
        let mut by_ref = job.clone();
        let store = by_ref.spec.source.store.as_mut().unwrap();
        store.bigtable = None;
        store.chain_source_ref = Some(crate::crd::common::LocalObjectRef { name: "solana-mainnet".into() });
        let resolved = resolve_origin(&by_ref, &source, Some(&source)).unwrap();
        assert_eq!(resolved.spec.source.store.unwrap().bigtable, source.spec.store.bigtable);
        assert_eq!(
            resolve_origin(&by_ref, &source, None).err(),
            Some(BuildError::OriginNotFound("solana-mainnet".into()))
        );
        let embedded: ChainSource = load("chainsource-solana-embedded.yaml");
        let embedded_origin = resolve_origin(&by_ref, &source, Some(&embedded)).err();
        assert_eq!(embedded_origin, Some(BuildError::OriginEmbedded("solana-mainnet".into())));
    }

    #[test]
    fn a_bigquery_history_job_reads_the_sources_dataset_with_its_key_mounted() {
        let job: IngestJob = load("ingestjob-bigquery.yaml");
        let source: ChainSource = load("chainsource-solana-mainnet.yaml");
        let IngestWorkload::Backfill(built) = ingest_workload(&job, &source, &[], "chronicle:test").unwrap() else {
            panic!("an Indexed Job")
        };
        let pod = built.spec.unwrap().template.spec.unwrap();
        let Work::Ingest(ingest) = worker_spec(&pod.containers[0]).work else { panic!("an ingest spec") };
        assert_eq!(
            ingest.source,
            SourceSpec::BigQuery {
                dataset: "bigquery-public-data.crypto_solana_mainnet_us".into(),
                billing_project: "acme-data".into(),
                location: "US".into(),
                credentials_file: Some(BIGQUERY_KEY_FILE.into()),
                check: match rpc_source_spec(&source, &[]).unwrap() {
                    SourceSpec::Rpc { endpoint } => Some(endpoint),
                    _ => None,
                },
                repair: false,
                endpoint: None,
                poll_interval: "60s".into(),
                settle_slots: 150,
            }
        );
        assert_eq!(ingest.batch_size, 50_000, "slotsPerQuery is the batch");
        assert_eq!(ingest.targets, vec![IngestTarget::Lake]);
        let volume = pod.volumes.unwrap().into_iter().find(|v| v.name == "bigquery-key").unwrap();
        assert_eq!(volume.secret.unwrap().secret_name.as_deref(), Some("gcp-bigquery-sa"));
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        assert!(mounts.iter().any(|m| m.name == "bigquery-key" && m.mount_path == BIGQUERY_KEY_DIR));
    }

    #[test]
    fn an_evm_bigquery_history_job_reads_crypto_ethereum_checked_against_its_node() {
        let job: IngestJob = load("ingestjob-evm-bigquery.yaml");
        let source: ChainSource = load("chainsource-evm-mainnet.yaml");
        assert_eq!(source.spec.commitment, Commitment::Confirmed, "a dataset's history is final whatever the source's");
        let Work::Ingest(ingest) = ingest_spec(&job, &source, &[]).unwrap().work else { panic!("an ingest spec") };
        let SourceSpec::BigQuery { dataset, check, repair, .. } = &ingest.source else { panic!("a dataset source") };
        assert_eq!(dataset, "bigquery-public-data.crypto_ethereum");
        assert_eq!(check.as_ref().map(|e| e.name.as_str()), Some("erigon"));
        assert!(repair);
        assert_eq!((ingest.chain.family, ingest.batch_size), (crate::crd::chain_source::ChainFamily::Evm, 200));
        let config = crate::worker::run::ingest_config_in(&ingest, 0, &|_| Some("postgres://catalog".into())).unwrap();
        let crate::pipeline::config::SourceConfig::BigQuery(dataset) = config.source else { panic!("a dataset") };
        assert_eq!(dataset.check.unwrap().commitment, Commitment::Finalized, "repairs are final blocks");
    }

    #[test]
    fn the_lakes_credentials_reach_the_pod_as_the_sdk_names_them() {
        let job: IngestJob = load("ingestjob-bigquery.yaml");
        let mut source: ChainSource = load("chainsource-solana-mainnet.yaml");
        let pod_env = |source: &ChainSource| {
            let IngestWorkload::Backfill(built) = ingest_workload(&job, source, &[], "x").unwrap() else {
                panic!("an Indexed Job")
            };
            let container = built.spec.unwrap().template.spec.unwrap().containers.remove(0);
            container.env.unwrap().into_iter().map(|e| (e.name.clone(), e)).collect::<BTreeMap<_, _>>()
        };
        let selector = |env: &EnvVar| env.value_from.clone().unwrap().secret_key_ref.unwrap();
        let gcs = pod_env(&source);
        let key = selector(&gcs["GOOGLE_SERVICE_ACCOUNT_KEY"]);
        assert_eq!((key.name.as_str(), key.key.as_str()), ("gcp-lake-sa", "key.json"));
        assert!(!gcs.contains_key("AWS_SECRET_ACCESS_KEY"));

        let lake = source.spec.lake.as_mut().unwrap();
        lake.url = "s3://acme-chain-lake/solana".into();
        lake.credentials_secret_ref = Some(SecretKeyRef { name: "aws-lake".into(), key: "secret".into() });
        let s3 = pod_env(&source);
        assert_eq!(selector(&s3["AWS_SECRET_ACCESS_KEY"]).key, "secret");
        assert_eq!(selector(&s3["AWS_ACCESS_KEY_ID"]).optional, Some(false));
        assert_eq!(selector(&s3["AWS_REGION"]).optional, Some(true), "the region may come from elsewhere");
        assert!(!s3.contains_key("GOOGLE_SERVICE_ACCOUNT_KEY"));
    }

    #[test]
    fn the_lake_target_needs_a_lake_and_finalized_blocks() {
        let job: IngestJob = load("ingestjob-backfill.yaml");
        let source: ChainSource = load("chainsource-solana-mainnet.yaml");
        let Work::Ingest(spec) = ingest_spec(&job, &source, &[]).unwrap().work else { panic!("an ingest spec") };
        assert_eq!(spec.lake.unwrap().url, "gs://acme-chain-lake/solana/mainnet-beta");
        let mut bare = source.clone();
        bare.spec.lake = None;
        assert_eq!(ingest_spec(&job, &bare, &[]), Err(BuildError::NoLake("solana-mainnet".into())));
        let mut confirmed = source.clone();
        confirmed.spec.commitment = Commitment::Confirmed;
        assert_eq!(ingest_spec(&job, &confirmed, &[]), Err(BuildError::LakeNeedsFinalized("solana-mainnet".into())));
        // A follower ahead of finality holds the lake's rows until their blocks are final.
        let mut follow = job.clone();
        follow.spec.mode = IngestMode::Follow;
        let Work::Ingest(spec) = ingest_spec(&follow, &confirmed, &[]).unwrap().work else { panic!("an ingest spec") };
        assert!(spec.lake.is_some());
    }

    #[test]
    fn the_metrics_target_reaches_the_worker_with_its_token_by_reference() {
        let job: IngestJob = load("ingestjob-follow.yaml");
        let source: ChainSource = load("chainsource-solana-mainnet.yaml");
        let Work::Ingest(spec) = ingest_spec(&job, &source, &[]).unwrap().work else { panic!("an ingest spec") };
        let metrics = spec.metrics.clone().unwrap();
        assert_eq!(
            (metrics.url.as_str(), metrics.bucket.as_str()),
            ("https://influx.acme.example.com", "solana-mainnet")
        );
        assert_eq!(metrics.token.env, METRICS_TOKEN_ENV);
        let mut secrets = PodSecrets::default();
        secrets.ingest(&spec, &source, &[]);
        let token = secrets.envs.iter().find(|e| e.name == METRICS_TOKEN_ENV).unwrap();
        let selector = token.value_from.clone().unwrap().secret_key_ref.unwrap();
        assert_eq!((selector.name.as_str(), selector.key.as_str()), ("influx-token", "token"));
        assert!(token.value.is_none(), "the token is never in the pod spec itself");
        let mut bare = source.clone();
        bare.spec.metrics = None;
        let refused = ingest_spec(&job, &bare, &[]).unwrap_err();
        assert_eq!(refused, BuildError::NoMetricsSink("solana-mainnet".into()));
        assert_eq!(refused.reason(), "MetricsSinkMissing");
    }
}

/// Where a tier's API-key Secret is mounted.
const API_KEYS_DIR: &str = "/var/run/secrets/chronicle/api-keys";

/// An enum value as manifests spell it (`allkeys-lfu`, `getBlock`).
fn manifest_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// What a `CacheTier`'s serve replicas do, as they read it.
pub fn serve_spec(tier: &crate::crd::CacheTier, source: &ChainSource) -> Result<WorkerSpec, CacheTierError> {
    let spec = &tier.spec;
    // Every tier caches its answers in Redis.
    let mut wanted = vec![Feature::Cache];
    if spec.upstream.is_some() {
        wanted.push(Feature::Upstream);
    }
    crate::chain::adapter_with(source.spec.chain.family, &wanted).map_err(CacheTierError::UnsupportedChain)?;
    // The methods a tier may list are Solana's history methods (the CRD's enum).
    if !spec.methods.is_empty() && source.spec.chain.family != crate::crd::chain_source::ChainFamily::Solana {
        return Err(CacheTierError::MethodsOfAnotherChain(source.name_any()));
    }
    let max_memory_bytes = match &spec.max_memory {
        Some(memory) => Some(quantity_bytes(&memory.0).ok_or_else(|| CacheTierError::BadQuantity(memory.0.clone()))?),
        None => None,
    };
    let eviction = manifest_name(spec.eviction);
    Ok(WorkerSpec::new(Work::Serve(ServeSpec {
        chain: chain_spec(source),
        store: store_access(source).0,
        port: spec.server.port,
        cache: Some(CacheSpec {
            url: FromEnv::new(&cache_url_env(&tier.name_any())),
            ttl: spec.default_ttl.clone(),
            immutable_ttl: spec.immutable_ttl.clone(),
            max_memory_bytes,
            eviction,
            methods: spec
                .methods
                .iter()
                .map(|m| crate::worker::spec::CachedMethodSpec { name: manifest_name(m.name), ttl: m.ttl.clone() })
                .collect(),
            pool_size: Some(spec.redis.pool_size),
        }),
        api_keys_dir: spec.server.api_keys_secret_ref.as_ref().map(|_| api_keys_dir(&tier.name_any())),
        requests_per_second: spec.server.rate_limit.as_ref().map(|l| l.requests_per_second),
        burst: spec.server.rate_limit.as_ref().and_then(|l| l.burst),
        genesis_hash: source.spec.chain.genesis_hash.clone(),
        upstream: match &spec.upstream {
            Some(upstream) => {
                let endpoint = source.spec.endpoints.iter().find(|e| e.name == upstream.endpoint).ok_or_else(|| {
                    CacheTierError::UnknownEndpoint {
                        source_name: source.name_any(),
                        endpoint: upstream.endpoint.clone(),
                    }
                })?;
                Some(crate::worker::spec::UpstreamSpec {
                    endpoint: endpoint_spec(endpoint),
                    forward_misses: upstream.forward_misses,
                    requests_per_second: upstream.requests_per_second,
                    max_slots_behind: upstream.max_slots_behind,
                })
            }
            None => None,
        },
    })))
}

/// The `chronicle serve` Deployment and Service of a `CacheTier`.
pub fn cache_tier_workload(
    tier: &crate::crd::CacheTier,
    source: &ChainSource,
    image: &str,
) -> Result<(Option<Deployment>, k8s_openapi::api::core::v1::Service), CacheTierError> {
    use k8s_openapi::api::core::v1::{HTTPGetAction, Probe, Service, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    let spec = &tier.spec;
    let name = tier.name_any();
    let owner = tier.controller_owner_ref(&()).ok_or(CacheTierError::NoUid)?;
    let worker = serve_spec(tier, source)?;
    let port = spec.server.port;
    let labels = labels("CacheTier", &name, "serve");
    let metadata = ObjectMeta {
        name: Some(format!("{name}-rpc")),
        namespace: tier.namespace(),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    // An embedded source's tiers are served by its node pod (`node.rs`).
    let on_node = source.spec.store.embedded.is_some();
    let (selector, target) = match on_node {
        true => (super::node::node_labels(source), IntOrString::Int(port)),
        false => (labels.clone(), IntOrString::String("rpc".into())),
    };
    let service = Service {
        metadata: metadata.clone(),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("rpc".into()),
                port,
                target_port: Some(target),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    if on_node {
        return Ok((None, service));
    }
    let mut secrets = PodSecrets::default();
    if let Work::Serve(serve) = &worker.work {
        secrets.serve(serve, tier, source, "api-keys");
    }
    let mut pod = worker_pod("serve", image, &worker, source, secrets, resources(spec.server.resources.as_ref()), 30);
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let container = &mut pod.containers[0];
    let rpc = ContainerPort { name: Some("rpc".into()), container_port: port, ..ContainerPort::default() };
    container.ports.get_or_insert_default().insert(0, rpc);
    container.readiness_probe = Some(probe("/health"));
    container.liveness_probe = Some(probe("/health"));
    let deployment = Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(spec.server.replicas),
            selector: LabelSelector { match_labels: Some(labels.clone()), match_expressions: None },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    };
    Ok((Some(deployment), service))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CacheTierError {
    #[error("the CacheTier has no uid yet")]
    NoUid,
    #[error("maxMemory {0:?} is not a byte quantity (e.g. 512Mi, 8Gi)")]
    BadQuantity(String),
    #[error("{0}")]
    UnsupportedChain(String),
    #[error("upstream endpoint {endpoint:?} is not one of ChainSource {source_name}'s endpoints")]
    UnknownEndpoint { source_name: String, endpoint: String },
    #[error(
        "spec.methods lists Solana history methods; ChainSource {0} is not a Solana chain and its tier caches every history method it serves: leave methods empty"
    )]
    MethodsOfAnotherChain(String),
}

impl CacheTierError {
    /// The condition and Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            CacheTierError::NoUid => "NoUid",
            CacheTierError::BadQuantity(_) => "InvalidQuantity",
            CacheTierError::UnsupportedChain(_) => "ChainUnsupported",
            CacheTierError::UnknownEndpoint { .. } => "UnknownEndpoint",
            CacheTierError::MethodsOfAnotherChain(_) => "MethodsNotServed",
        }
    }
}

/// Bytes of a Kubernetes quantity such as `512Mi`, `8Gi` or `2G`.
pub fn quantity_bytes(quantity: &str) -> Option<u64> {
    let split = quantity.find(|c: char| !c.is_ascii_digit()).unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

#[cfg(test)]
mod cache_tier_tests {
    use super::*;
    use crate::controller::example;

    #[test]
    fn a_cache_tier_is_a_deployment_and_a_service() {
        let tier: crate::crd::CacheTier = example("cachetier.yaml", |_| {});
        let source: ChainSource = example("chainsource-solana-mainnet.yaml", |_| {});
        let (deployment, service) = cache_tier_workload(&tier, &source, "chronicle:test").unwrap();
        let spec = deployment.unwrap().spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        let container = &spec.template.spec.as_ref().unwrap().containers[0];
        let Work::Serve(serve) = super::tests::worker_spec(container).work else { panic!("a serve spec") };
        assert_eq!(serve.port, 8899);
        let cache = serve.cache.as_ref().unwrap();
        assert_eq!((cache.eviction.as_str(), cache.max_memory_bytes), ("allkeys-lfu", Some(8_589_934_592)));
        assert_eq!(serve.requests_per_second, Some(200));
        assert_eq!(serve.api_keys_dir.as_deref(), Some("/var/run/secrets/chronicle/api-keys/mainnet-rpc"));
        assert_eq!(quantity_bytes("512Mi"), Some(512 << 20));
        assert_eq!(quantity_bytes("1.5Gi"), None);
        let redis =
            container.env.as_ref().unwrap().iter().find(|e| e.name == "CHRONICLE_CACHE_URL_MAINNET_RPC").unwrap();
        assert!(redis.value.is_none(), "the Redis URL (with its password) stays in its Secret");
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 8899);
        // The upstream is the ChainSource's `triton` endpoint; its token comes from the endpoint's Secret.
        let upstream = serve.upstream.as_ref().unwrap();
        assert_eq!(upstream.endpoint.url, "https://mainnet.rpcpool.example.com");
        assert_eq!(
            (upstream.forward_misses, upstream.requests_per_second, upstream.max_slots_behind),
            (true, Some(20), 128)
        );
        let token_env = &upstream.endpoint.auth.as_ref().unwrap().token.env;
        let token = container.env.as_ref().unwrap().iter().find(|e| &e.name == token_env).unwrap();
        assert!(token.value.is_none() && token.value_from.is_some(), "the token stays in its Secret");
    }

    #[test]
    fn an_upstream_must_be_one_of_the_sources_endpoints() {
        let tier: crate::crd::CacheTier =
            example("cachetier.yaml", |v| v["spec"]["upstream"]["endpoint"] = "nope".into());
        let source: ChainSource = example("chainsource-solana-mainnet.yaml", |_| {});
        let error = serve_spec(&tier, &source).unwrap_err();
        assert_eq!(error.reason(), "UnknownEndpoint");
        assert!(error.to_string().contains("\"nope\" is not one of ChainSource solana-mainnet's endpoints"), "{error}");
    }
}
