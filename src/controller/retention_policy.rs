//! The `RetentionPolicy` reconciler: read the policy, its `ChainSource` and
//! the replication jobs that guard it → build a CronJob on `spec.schedule`
//! (UTC, never two runs at once) whose pods run `chronicle worker run` with a
//! [`RetentionSpec`] → server-side apply it → status from the CronJob and
//! from the record each run leaves in the source's catalog (oldest slot
//! kept, rows and bytes removed, where the guard held, rules not applied).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::children::{managed, prune};
use super::context::{Context, Error};
use super::status::{FIELD_MANAGER, condition, publish, report};
use super::workload::{
    CATALOG_ENV, PodSecrets, cache_url_env, catalog_job, chain_spec, labels, resources, store_spec, worker_pod,
};
use crate::catalog::RetentionRecord;
use crate::crd::common::CommonStatus;
use crate::crd::retention_policy::{RetentionPolicy, RetentionPolicyStatus, RetentionRule, RetentionTarget};
use crate::crd::{CacheTier, ChainSource, IngestJob};
use crate::worker::spec::{FromEnv, Keep, LakeSpec, RetentionRuleSpec, RetentionSpec, Work, WorkerSpec};

/// What `chronicle dev` says of a RetentionPolicy manifest.
pub const NOT_IN_DEV: &str = "retention runs as the operator's CronJob, not in dev's process yet; here, run the policy's worker spec with `chronicle worker run --spec FILE`";

/// Why a policy's CronJob cannot be built; each is a status reason.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RetentionBuildError {
    #[error("{0}")]
    UnsupportedChain(String),
    #[error("ChainSource {0} has an embedded store, which admits one process: its retention runs are not built yet")]
    EmbeddedStore(String),
    #[error("a rule trims the lake, but ChainSource {0} declares no spec.lake")]
    NoLake(String),
    #[error("rule for {target:?}: keepFor {text:?} is not a duration")]
    KeepFor { target: RetentionTarget, text: String },
    #[error("replicaGuard names IngestJob {0}, which does not exist: nothing is pruned until it does")]
    GuardJobNotFound(String),
    #[error("replica IngestJob {0} keeps its progress in another catalog than this source's: the guard cannot read it")]
    GuardCatalogDiffers(String),
    #[error("the object has no uid yet")]
    NoUid,
}

impl RetentionBuildError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedChain(_) => "UnsupportedChain",
            Self::EmbeddedStore(_) => "EmbeddedStoreNotSupported",
            Self::NoLake(_) => "LakeMissing",
            Self::KeepFor { .. } => "InvalidKeepFor",
            Self::GuardJobNotFound(_) => "GuardJobNotFound",
            Self::GuardCatalogDiffers(_) => "GuardCatalogDiffers",
            Self::NoUid => "NoUid",
        }
    }
}

/// The policy's identity in the catalog.
pub fn catalog_policy(policy: &RetentionPolicy) -> String {
    format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any())
}

fn rule_spec(rule: &RetentionRule) -> Result<RetentionRuleSpec, RetentionBuildError> {
    let keep = match (&rule.keep_slots, &rule.keep_for) {
        (_, Some(text)) => {
            let age = crate::worker::spec::duration("keepFor", text)
                .map_err(|_| RetentionBuildError::KeepFor { target: rule.target, text: text.clone() })?;
            Keep::Age { seconds: age.as_secs() }
        }
        (Some(slots), None) => Keep::Slots { slots: *slots },
        // The CRD's CEL rule requires one; an object from before it keeps everything.
        (None, None) => Keep::Slots { slots: u64::MAX },
    };
    Ok(RetentionRuleSpec { target: rule.target, keep, method: rule.method })
}

/// The replication jobs whose progress bounds pruning: those the guard
/// names, or every IngestJob copying from this policy's source (by
/// reference, or by naming its Bigtable instance). Each must keep its
/// progress in the source's own catalog, where the worker reads it.
pub fn guard_jobs(
    policy: &RetentionPolicy,
    source: &ChainSource,
    jobs: &[IngestJob],
    sources: &[ChainSource],
) -> Result<Vec<String>, RetentionBuildError> {
    let guard = &policy.spec.replica_guard;
    if !guard.enabled {
        return Ok(Vec::new());
    }
    let copies_from_source =
        |job: &IngestJob| {
            let Some(store) = &job.spec.source.store else { return false };
            store.chain_source_ref.as_ref().is_some_and(|r| r.name == source.name_any())
                || store.bigtable.as_ref().zip(source.spec.store.bigtable.as_ref()).is_some_and(|(theirs, ours)| {
                    (&theirs.project, &theirs.instance) == (&ours.project, &ours.instance)
                })
        };
    let chosen: Vec<&IngestJob> = if guard.ingest_jobs.is_empty() {
        jobs.iter().filter(|j| copies_from_source(j)).collect()
    } else {
        let find = |name: &str| jobs.iter().find(|j| j.name_any() == name);
        guard
            .ingest_jobs
            .iter()
            .map(|r| find(&r.name).ok_or_else(|| RetentionBuildError::GuardJobNotFound(r.name.clone())))
            .collect::<Result<_, _>>()?
    };
    chosen
        .into_iter()
        .map(|job| {
            let target = sources.iter().find(|s| s.name_any() == job.spec.source_ref.name);
            let same = target
                .is_some_and(|t| t.spec.catalog.connection_secret_ref == source.spec.catalog.connection_secret_ref);
            if same { Ok(catalog_job(job)) } else { Err(RetentionBuildError::GuardCatalogDiffers(job.name_any())) }
        })
        .collect()
}

/// What one run of the policy does.
pub fn retention_spec(
    policy: &RetentionPolicy,
    source: &ChainSource,
    guard: Vec<String>,
    tiers: &[CacheTier],
) -> Result<WorkerSpec, RetentionBuildError> {
    check_source(source)?;
    let rules = policy.spec.rules.iter().map(rule_spec).collect::<Result<Vec<_>, _>>()?;
    let lake = match (rules.iter().any(|r| r.target == RetentionTarget::Lake), &source.spec.lake) {
        (false, _) => None,
        (true, None) => return Err(RetentionBuildError::NoLake(source.name_any())),
        (true, Some(lake)) => Some(LakeSpec { url: lake.url.clone() }),
    };
    Ok(WorkerSpec::new(Work::Retention(RetentionSpec {
        policy: catalog_policy(policy),
        chain: chain_spec(source),
        store: store_spec(source),
        catalog: FromEnv::new(CATALOG_ENV),
        lake,
        rules,
        dry_run: policy.spec.dry_run,
        guard,
        caches: source_tiers(source, tiers).map(|t| FromEnv::new(&cache_url_env(&t.name_any()))).collect(),
    })))
}

/// What no policy of `source` can get past in this build.
fn check_source(source: &ChainSource) -> Result<(), RetentionBuildError> {
    crate::chain::adapter(source.spec.chain.family).map_err(RetentionBuildError::UnsupportedChain)?;
    match source.spec.store.embedded {
        Some(_) => Err(RetentionBuildError::EmbeddedStore(source.name_any())),
        None => Ok(()),
    }
}

fn source_tiers<'a>(source: &'a ChainSource, tiers: &'a [CacheTier]) -> impl Iterator<Item = &'a CacheTier> + 'a {
    tiers.iter().filter(move |t| t.spec.source_ref.name == source.name_any() && t.namespace() == source.namespace())
}

/// The CronJob: one run at a time, on the policy's schedule in UTC.
pub fn retention_cron_job(
    policy: &RetentionPolicy,
    source: &ChainSource,
    guard: Vec<String>,
    tiers: &[CacheTier],
    image: &str,
) -> Result<CronJob, RetentionBuildError> {
    let worker = retention_spec(policy, source, guard, tiers)?;
    let name = policy.name_any();
    let mut secrets = PodSecrets::default();
    secrets.env(CATALOG_ENV, &source.spec.catalog.connection_secret_ref);
    if let Some(lake) =
        source.spec.lake.as_ref().filter(|_| policy.spec.rules.iter().any(|r| r.target == RetentionTarget::Lake))
    {
        if let Some(secret) = &lake.credentials_secret_ref {
            secrets.object_store_credentials(&lake.url, secret);
        }
    }
    for tier in source_tiers(source, tiers) {
        secrets.env(&cache_url_env(&tier.name_any()), &tier.spec.redis.url_secret_ref);
    }
    let mut pod = worker_pod("retention", image, &worker, source, secrets, resources(None), 30);
    pod.restart_policy = Some("Never".into());
    let labels = labels("RetentionPolicy", &name, "retention");
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..ObjectMeta::default() }),
        spec: Some(pod),
    };
    Ok(CronJob {
        metadata: ObjectMeta {
            name: Some(format!("{name}-retention")),
            namespace: policy.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![policy.controller_owner_ref(&()).ok_or(RetentionBuildError::NoUid)?]),
            ..ObjectMeta::default()
        },
        spec: Some(CronJobSpec {
            schedule: policy.spec.schedule.clone(),
            time_zone: Some("Etc/UTC".into()),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(JobSpec { backoff_limit: Some(2), template, ..JobSpec::default() }),
            },
            ..CronJobSpec::default()
        }),
        status: None,
    })
}

fn time(seconds: i64) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::from_second(seconds).ok().map(Time)
}

/// The status fields a run's record gives, and what the conditions say of it.
pub fn record_fields(record: &RetentionRecord, status: &mut RetentionPolicyStatus) -> String {
    status.oldest_slot_kept = record.oldest_kept;
    status.last_run_time = time(record.finished_at.unwrap_or(record.started_at));
    status.rows_removed = record.rows_removed;
    status.bytes_removed = record.bytes_removed + record.lake_bytes_removed;
    status.held_at_slot = record.held_at;
    let verb = if record.dry_run { "would remove" } else { "removed" };
    let mut message = format!(
        "last run {}: {verb} {} blocks ({} rows, {} bytes) and {} lake objects",
        record.phase, record.blocks_removed, record.rows_removed, record.bytes_removed, record.lake_objects_removed
    );
    if let Some(held) = record.held_at {
        message.push_str(&format!("; the replica guard held the cut at slot {held}"));
    }
    if let Some(rule) = &record.gc_rule {
        message.push_str(&format!("; GC rule {rule}: blocks uploaded out of order leave holes"));
    }
    for skipped in &record.not_applied {
        message.push_str(&format!("; not applied: {skipped}"));
    }
    if let Some(reason) = &record.message {
        message.push_str(&format!(": {reason}"));
    }
    message
}

pub(crate) async fn reconcile(policy: Arc<RetentionPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let generation = policy.metadata.generation;
    let previous_status = policy.status.clone().unwrap_or_default();
    let previous = previous_status.common.conditions.clone();
    let sources: Vec<ChainSource> =
        Api::<ChainSource>::namespaced(ctx.client.clone(), &namespace).list(&Default::default()).await?.items;
    let source = sources.iter().find(|s| s.name_any() == policy.spec.source_ref.name);
    let built = match source {
        None => Err(("SourceNotFound", format!("ChainSource {} does not exist", policy.spec.source_ref.name))),
        Some(source) => {
            let jobs = Api::<IngestJob>::namespaced(ctx.client.clone(), &namespace).list(&Default::default()).await?;
            let tiers = Api::<CacheTier>::namespaced(ctx.client.clone(), &namespace).list(&Default::default()).await?;
            check_source(source)
                .and_then(|()| guard_jobs(&policy, source, &jobs.items, &sources))
                .and_then(|guard| retention_cron_job(&policy, source, guard, &tiers.items, &ctx.image))
                .map_err(|e| (e.reason(), e.to_string()))
        }
    };
    let mut status = RetentionPolicyStatus::default();
    let conditions = match built {
        Err((reason, message)) => {
            prune::<CronJob, _>(&ctx, policy.as_ref(), &[]).await?;
            vec![
                condition("Ready", false, reason, &message, generation, &previous),
                condition("Progressing", false, reason, &message, generation, &previous),
                condition("Degraded", true, reason, &message, generation, &previous),
            ]
        }
        Ok(desired) => {
            let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
            let child = desired.metadata.name.clone().unwrap_or_default();
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch(&child, &params, &Patch::Apply(&desired)).await?;
            prune::<CronJob, _>(&ctx, policy.as_ref(), &[&child]).await?;
            let mut message = format!("CronJob {child} on {:?} (UTC)", policy.spec.schedule);
            let mut failed = false;
            let source = source.expect("built from its source");
            match super::progress::catalog_of(&ctx, &namespace, source).await {
                Ok(catalog) => match catalog.retention(&catalog_policy(&policy)).await {
                    Ok(Some(record)) => {
                        message = format!("{message}; {}", record_fields(&record, &mut status));
                        failed = record.phase == "Failed";
                        if status.last_run_time != previous_status.last_run_time && record.phase != "Running" {
                            publish_run(&ctx, &policy, &record, &message).await;
                        }
                    }
                    Ok(None) => message.push_str("; no run yet"),
                    Err(e) => message.push_str(&format!("; last run unknown: {e}")),
                },
                Err(reason) => message.push_str(&format!("; last run unknown: {reason}")),
            }
            let reason = if failed { "LastRunFailed" } else { "Scheduled" };
            vec![
                condition("Ready", !failed, reason, &message, generation, &previous),
                condition("Progressing", false, reason, &message, generation, &previous),
                condition("Degraded", failed, reason, &message, generation, &previous),
            ]
        }
    };
    status.common = CommonStatus { observed_generation: generation, conditions };
    report(&ctx, policy.as_ref(), &status).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// One Event per finished run: what it removed, or why it failed or was held.
async fn publish_run(ctx: &Context, policy: &RetentionPolicy, record: &RetentionRecord, message: &str) {
    let (type_, reason) = match (record.phase.as_str(), record.held_at) {
        ("Failed", _) => (EventType::Warning, "RetentionFailed"),
        (_, Some(_)) => (EventType::Warning, "PruneHeldByReplica"),
        _ if record.dry_run => (EventType::Normal, "DryRun"),
        _ => (EventType::Normal, "Pruned"),
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(message.chars().take(1000).collect()),
        action: "Prune".into(),
        secondary: None,
    };
    publish(ctx, &event, &policy.object_ref(&())).await;
}

/// Runs the RetentionPolicy controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let children = watcher::Config::default().labels(&managed());
    let controller = super::pipeline::controller::<RetentionPolicy>(&ctx.client)
        .owns(Api::<CronJob>::all(ctx.client.clone()), children);
    super::pipeline::run(ctx, controller, shutdown, reconcile).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_a_utc_cron_job_whose_spec_says_what_to_prune() {
        let mut policy: RetentionPolicy = crate::controller::example("retentionpolicy.yaml", |_| {});
        policy.metadata.uid = Some("uid-1".into());
        let mut source: ChainSource = crate::controller::example("chainsource-solana-mainnet.yaml", |_| {});
        source.metadata.name = Some("solana-devnet".into());
        let mut replica: IngestJob = crate::controller::example("ingestjob-replicate.yaml", |_| {});
        replica.metadata.name = Some("devnet-to-archive".into());
        // The replica's own ChainSource, on the same catalog.
        let archive: ChainSource = crate::controller::example("chainsource-solana-mainnet.yaml", |_| {});
        let sources = [source.clone(), archive.clone()];
        let guard = guard_jobs(&policy, &source, std::slice::from_ref(&replica), &sources).unwrap();
        assert_eq!(guard, vec![catalog_job(&replica)]);
        let cron = retention_cron_job(&policy, &source, guard, &[], "chronicle:test").unwrap();
        let spec = cron.spec.unwrap();
        assert_eq!((spec.schedule.as_str(), spec.time_zone.as_deref()), ("15 3 * * *", Some("Etc/UTC")));
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        let pod = spec.job_template.spec.unwrap().template.spec.unwrap();
        let value = pod.containers[0].env.iter().flatten().find(|e| e.name == crate::worker::spec::SPEC_ENV).unwrap();
        let Work::Retention(run) = WorkerSpec::from_json(value.value.as_deref().unwrap()).unwrap().work else {
            panic!("a retention spec")
        };
        assert_eq!(run.policy, "chronicle/hot-30-days");
        assert_eq!(run.rules[0].keep, Keep::Slots { slots: 6_480_000 });
        assert_eq!(run.rules[1].keep, Keep::Age { seconds: 90 * 86_400 });
        assert_eq!(run.lake.unwrap().url, source.spec.lake.as_ref().unwrap().url);
        let mut elsewhere = archive.clone();
        elsewhere.spec.catalog.connection_secret_ref.name = "another-catalog".into();
        let other = guard_jobs(&policy, &source, std::slice::from_ref(&replica), &[source.clone(), elsewhere]);
        assert_eq!(other, Err(RetentionBuildError::GuardCatalogDiffers("devnet-to-archive".into())));
        // A guard naming a job that does not exist prunes nothing.
        let missing = guard_jobs(&policy, &source, &[], &sources);
        assert_eq!(missing, Err(RetentionBuildError::GuardJobNotFound("devnet-to-archive".into())));
        let embedded: ChainSource = crate::controller::example("chainsource-solana-embedded.yaml", |_| {});
        assert!(matches!(retention_spec(&policy, &embedded, vec![], &[]), Err(RetentionBuildError::EmbeddedStore(_))));
    }
}
