//! The `TrainingExport` reconciler: read the export and its `ChainSource` →
//! build the export Job (one pod running `chronicle worker run` with an
//! [`ExportSpec`]) → server-side apply it → status from the Job and from the
//! record the worker keeps in the source's catalog (documents, tokens,
//! shards, manifest, digest, or why it failed). Deleting an unpublished
//! export removes what it wrote (`export_cleanup.rs`). What this build cannot do
//! yet (an embedded store) is refused
//! with the reason.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, KeyToPath, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::children::{managed, prune};
use super::context::{Context, Error};
use super::status::{FIELD_MANAGER, JobState, condition, job_state, report};
use super::workload::{CATALOG_ENV, PodSecrets, chain_spec, labels, quantity_bytes, resources, store_spec, worker_pod};
use crate::crd::ChainSource;
use crate::crd::common::CommonStatus;
use crate::crd::training_export::{ExportPhase, TrainingExport, TrainingExportStatus};
use crate::export::tokens::HuggingFaceFile;
use crate::worker::spec::{ExportSpec, FromEnv, Work, WorkerSpec};

/// What `chronicle dev` says of a TrainingExport manifest.
pub const NOT_IN_DEV: &str = "exports run as the operator's Jobs, not in dev's process yet; here, run `chronicle worker export --store …` once the ingests are done (dev's store is under --state)";

/// Why an export's workload cannot be built; each is a status reason.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ExportBuildError {
    #[error("{0}")]
    UnsupportedChain(String),
    #[error("spec.template: {0}")]
    Template(String),
    #[error("ChainSource {0} has an embedded store, which admits one process: exports from it are not built yet")]
    EmbeddedStore(String),
    #[error("spec.output.shardSize {0:?} is not a byte quantity")]
    ShardSize(String),
    #[error("the object has no uid yet")]
    NoUid,
}

impl ExportBuildError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedChain(_) => "UnsupportedChain",
            Self::Template(_) => "InvalidTemplate",
            Self::EmbeddedStore(_) => "EmbeddedStoreNotSupported",
            Self::ShardSize(_) => "InvalidShardSize",
            Self::NoUid => "NoUid",
        }
    }
}

/// The export's identity in the catalog: a new generation is a new export.
pub fn catalog_export(export: &TrainingExport) -> String {
    let generation = export.metadata.generation.unwrap_or_default();
    format!("{}/{}#g{generation}", export.namespace().unwrap_or_default(), export.name_any())
}

/// What the export's worker does.
pub fn export_spec(export: &TrainingExport, source: &ChainSource) -> Result<WorkerSpec, ExportBuildError> {
    let spec = &export.spec;
    crate::chain::adapter_with(source.spec.chain.family, &[crate::chain::Feature::TrainingExport])
        .map_err(ExportBuildError::UnsupportedChain)?;
    if source.spec.store.embedded.is_some() {
        return Err(ExportBuildError::EmbeddedStore(source.name_any()));
    }
    // A range, or a window whose slots the worker finds in the store (the CRD admits exactly one).
    let (from, to) = match &spec.range {
        Some(range) => (range.start_slot, range.end_slot.unwrap_or(range.start_slot)),
        None => (0, crate::export::window::NO_END),
    };
    let window = spec
        .window
        .as_ref()
        .map(|w| crate::export::window::TimeWindow { start: w.start.0.as_second(), end: w.end.0.as_second() });
    // Compiled here too, so that a syntax error is the status, not a failed Job.
    crate::export::document::Rendering::of(&spec.template).map_err(ExportBuildError::Template)?;
    let template = spec.template.clone();
    let shard_bytes = quantity_bytes(&spec.output.shard_size.0)
        .ok_or_else(|| ExportBuildError::ShardSize(spec.output.shard_size.0.clone()))?;
    Ok(WorkerSpec::new(Work::Export(ExportSpec {
        job: catalog_export(export),
        chain: chain_spec(source),
        store: store_spec(source),
        catalog: FromEnv::new(CATALOG_ENV),
        // The CRD's CEL rule guarantees an end for a range.
        from,
        to,
        window,
        programs: spec.filters.programs.clone(),
        success_only: spec.filters.success_only,
        include_votes: spec.filters.include_votes,
        instruction_types: spec.filters.instruction_types.clone(),
        min_bytes: spec.filters.min_bytes.map(u64::from),
        max_bytes: spec.filters.max_bytes.map(u64::from),
        sample: spec.filters.sample,
        template,
        tokenizer: spec.tokenizer.encoding,
        hugging_face_tokenizer: spec.tokenizer.hugging_face.as_ref().map(|hf| HuggingFaceFile {
            // From its URL, or from the ConfigMap volume `export_job` mounts.
            path: hf.url.clone().unwrap_or_else(|| format!("{TOKENIZER_DIR}/{TOKENIZER_FILE}")),
            sha256: hf.sha256.clone(),
            end_of_text: hf.end_of_text.clone(),
        }),
        sequence_length: spec.sequence_length,
        output: spec.output.url.clone(),
        formats: spec.output.formats.clone(),
        shard_bytes,
        validation_fraction: spec.split.validation_fraction,
        seed: spec.split.seed,
        exact_dedup: spec.dedup.exact,
        near_duplicate: spec.dedup.near_duplicate.as_ref().map(|n| n.threshold),
    })))
}

/// Where a ConfigMap's tokenizer.json is mounted in the export pod.
const TOKENIZER_DIR: &str = "/etc/chronicle/tokenizer";
const TOKENIZER_FILE: &str = "tokenizer.json";

/// The export Job: one pod, retried twice; it runs to completion.
pub fn export_job(export: &TrainingExport, source: &ChainSource, image: &str) -> Result<Job, ExportBuildError> {
    let worker = export_spec(export, source)?;
    let name = export.name_any();
    let mut secrets = PodSecrets::default();
    secrets.env(CATALOG_ENV, &source.spec.catalog.connection_secret_ref);
    if let Some(secret) = &export.spec.output.credentials_secret_ref {
        secrets.object_store_credentials(&export.spec.output.url, secret);
    }
    // A tokenizer.json in a ConfigMap is mounted where the worker spec says.
    if let Some(map) = export.spec.tokenizer.hugging_face.as_ref().and_then(|hf| hf.config_map_ref.as_ref()) {
        let items = vec![KeyToPath { key: map.key.clone(), path: TOKENIZER_FILE.into(), mode: None }];
        let volume =
            ConfigMapVolumeSource { name: map.name.clone(), items: Some(items), ..ConfigMapVolumeSource::default() };
        secrets.mount_read_only(
            Volume { name: "tokenizer".into(), config_map: Some(volume), ..Volume::default() },
            TOKENIZER_DIR,
        );
    }
    let mut pod = worker_pod("export", image, &worker, source, secrets, resources(export.spec.resources.as_ref()), 30);
    pod.restart_policy = Some("Never".into());
    let labels = labels("TrainingExport", &name, "export");
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(format!("{name}-export")),
            namespace: export.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![export.controller_owner_ref(&()).ok_or(ExportBuildError::NoUid)?]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

fn job_phase(job: &Job) -> ExportPhase {
    match job_state(Some(job)) {
        JobState::Complete => ExportPhase::Succeeded,
        JobState::Failed => ExportPhase::Failed,
        JobState::Running => ExportPhase::Running,
        JobState::Pending => ExportPhase::Pending,
    }
}

pub(crate) async fn reconcile(export: Arc<TrainingExport>, ctx: Arc<Context>) -> Result<Action, Error> {
    if export.metadata.deletion_timestamp.is_some() {
        return super::export_cleanup::finalize(&export, &ctx).await;
    }
    // Held before the export Job exists, so that nothing it writes escapes.
    if !super::export_cleanup::has_finalizer(&export) {
        super::export_cleanup::hold(&ctx, &export, true).await?;
    }
    let namespace = export.namespace().unwrap_or_default();
    let generation = export.metadata.generation;
    let previous = export.status.as_ref().map(|s| s.common.conditions.clone()).unwrap_or_default();
    let sources: Api<ChainSource> = Api::namespaced(ctx.client.clone(), &namespace);
    let source = sources.get_opt(&export.spec.source_ref.name).await?;
    let built = match &source {
        None => Err(("SourceNotFound", format!("ChainSource {} does not exist", export.spec.source_ref.name))),
        Some(source) => export_job(&export, source, &ctx.image).map_err(|e| (e.reason(), e.to_string())),
    };
    let mut status = TrainingExportStatus::default();
    let conditions = match built {
        Err((reason, message)) => {
            prune::<Job, _>(&ctx, export.as_ref(), &[]).await?;
            status.phase = Some(ExportPhase::Pending);
            vec![
                condition("Ready", false, reason, &message, generation, &previous),
                condition("Progressing", false, reason, &message, generation, &previous),
                condition("Degraded", true, reason, &message, generation, &previous),
            ]
        }
        Ok(desired) => {
            let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
            let child = desired.metadata.name.clone().unwrap_or_default();
            let params = PatchParams::apply(FIELD_MANAGER).force();
            // A new generation is a new export: its Job replaces the last one.
            let applied = match api.patch(&child, &params, &Patch::Apply(&desired)).await {
                Err(kube::Error::Api(e)) if e.code == 422 => {
                    super::children::delete(&api, &child).await?;
                    api.patch(&child, &params, &Patch::Apply(&desired)).await?
                }
                applied => applied?,
            };
            prune::<Job, _>(&ctx, export.as_ref(), &[&child]).await?;
            let mut phase = job_phase(&applied);
            if let Some(state) = &applied.status {
                (status.start_time, status.completion_time) = (state.start_time.clone(), state.completion_time.clone());
            }
            let mut message = format!("export Job {child}");
            let source = source.as_ref().expect("built from its source");
            match super::progress::catalog_of(&ctx, &namespace, source).await {
                Ok(catalog) => match catalog.export(&catalog_export(&export)).await {
                    Ok(Some(record)) => {
                        (status.documents, status.tokens, status.shards, status.bytes) =
                            (record.documents, record.tokens, record.shards, record.bytes);
                        (status.manifest_url, status.dataset_digest) = (record.manifest, record.digest);
                        if let Some(reason) = record.message {
                            message = format!("{message}: {reason}");
                        }
                        if record.phase == "Failed" && phase != ExportPhase::Succeeded {
                            phase = ExportPhase::Failed;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => message = format!("{message}; progress unknown: {e}"),
                },
                Err(reason) => message = format!("{message}; progress unknown: {reason}"),
            }
            status.phase = Some(phase);
            let reason = format!("{phase:?}");
            vec![
                condition("Ready", phase == ExportPhase::Succeeded, &reason, &message, generation, &previous),
                condition(
                    "Progressing",
                    matches!(phase, ExportPhase::Pending | ExportPhase::Running),
                    &reason,
                    &message,
                    generation,
                    &previous,
                ),
                condition("Degraded", phase == ExportPhase::Failed, &reason, &message, generation, &previous),
            ]
        }
    };
    let running = matches!(status.phase, Some(ExportPhase::Pending | ExportPhase::Running));
    status.common = CommonStatus { observed_generation: generation, conditions };
    report(&ctx, export.as_ref(), &status).await?;
    Ok(Action::requeue(Duration::from_secs(if running { 15 } else { 300 })))
}

/// Runs the TrainingExport controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let children = watcher::Config::default().labels(&managed());
    let controller =
        super::pipeline::controller::<TrainingExport>(&ctx.client).owns(Api::<Job>::all(ctx.client.clone()), children);
    super::pipeline::run(ctx, controller, shutdown, reconcile).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::training_export::TokenizerEncoding;

    #[test]
    fn a_tokenizer_json_in_a_config_map_is_mounted_where_the_worker_reads_it() {
        let mut export: TrainingExport = crate::controller::example("trainingexport.yaml", |_| {});
        export.metadata.uid = Some("uid-1".into());
        let source: ChainSource = crate::controller::example("chainsource-solana-mainnet.yaml", |_| {});
        export.spec.tokenizer = serde_json::from_value(serde_json::json!({"huggingFace": {
            "configMapRef": {"name": "minilm", "key": "minilm.json"}, "endOfText": "[SEP]"}}))
        .unwrap();
        let pod = export_job(&export, &source, "chronicle:test").unwrap().spec.unwrap().template.spec.unwrap();
        let volume = pod.volumes.iter().flatten().find(|v| v.name == "tokenizer").expect("the tokenizer volume");
        let map = volume.config_map.as_ref().unwrap();
        assert_eq!((map.name.as_str(), map.items.as_ref().unwrap()[0].key.as_str()), ("minilm", "minilm.json"));
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        assert!(mounts.iter().any(|m| m.name == "tokenizer" && m.mount_path == TOKENIZER_DIR));
        let Work::Export(spec) = export_spec(&export, &source).unwrap().work else { panic!("an export") };
        let file = spec.hugging_face_tokenizer.expect("a Hugging Face tokenizer");
        assert_eq!(file.path, format!("{TOKENIZER_DIR}/{TOKENIZER_FILE}"));
        assert_eq!((file.end_of_text.as_deref(), spec.tokenizer), (Some("[SEP]"), None));
    }

    #[test]
    fn an_export_is_a_job_whose_spec_says_what_to_export() {
        let mut export: TrainingExport = crate::controller::example("trainingexport.yaml", |_| {});
        export.metadata.uid = Some("uid-1".into());
        export.metadata.generation = Some(3);
        let source: ChainSource = crate::controller::example("chainsource-solana-mainnet.yaml", |_| {});
        export.spec.range = Some(crate::crd::common::SlotRange { start_slot: 100, end_slot: Some(200) });
        let job = export_job(&export, &source, "chronicle:test").unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        let value = pod.containers[0].env.iter().flatten().find(|e| e.name == crate::worker::spec::SPEC_ENV).unwrap();
        let Work::Export(spec) = WorkerSpec::from_json(value.value.as_deref().unwrap()).unwrap().work else {
            panic!("an export spec")
        };
        assert_eq!((spec.from, spec.to, spec.job.as_str()), (100, 200, "chronicle/defi-2025-01#g3"));
        assert_eq!(
            (spec.template.builtin.map(|t| t.name()), spec.tokenizer),
            (Some("transaction-summary"), Some(TokenizerEncoding::Cl100kBase))
        );
        assert_eq!(spec.shard_bytes, 512 << 20);
        assert!(spec.success_only && !spec.include_votes && spec.exact_dedup);
        let env = pod.containers[0].env.clone().unwrap();
        assert!(env.iter().any(|e| e.name == "GOOGLE_SERVICE_ACCOUNT_KEY"), "the output's credentials");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let mut windowed = export.clone();
        windowed.spec.range = None;
        windowed.spec.window = Some(crate::crd::training_export::TimeWindow {
            start: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            end: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
        });
        let Work::Export(spec) = export_spec(&windowed, &source).unwrap().work else { panic!("an export") };
        assert_eq!((spec.from, spec.to), (0, crate::export::window::NO_END));
        let window = spec.window.expect("the window reaches the worker");
        assert_eq!(window.start, 0);
        let mut inline = export.clone();
        inline.spec.template = crate::crd::training_export::RenderTemplate {
            builtin: None,
            inline: Some("{{ signature }}: {{ fee }}".into()),
        };
        let Work::Export(spec) = export_spec(&inline, &source).unwrap().work else { panic!("an export") };
        assert_eq!(spec.template.inline.as_deref(), Some("{{ signature }}: {{ fee }}"));
        inline.spec.template.inline = Some("{% for %}".into());
        let refused = export_spec(&inline, &source).unwrap_err();
        assert_eq!(refused.reason(), "InvalidTemplate", "a syntax error is the status: {refused}");
        let embedded: ChainSource = crate::controller::example("chainsource-solana-embedded.yaml", |_| {});
        assert!(matches!(export_job(&export, &embedded, "x"), Err(ExportBuildError::EmbeddedStore(_))));
    }

    #[test]
    fn shard_sizes_are_byte_quantities() {
        assert_eq!(quantity_bytes("512Mi"), Some(512 << 20));
        assert_eq!(quantity_bytes("2G"), Some(2_000_000_000));
        assert_eq!(quantity_bytes("1000"), Some(1000));
        assert_eq!(quantity_bytes("1.5Gi"), None);
    }
}
