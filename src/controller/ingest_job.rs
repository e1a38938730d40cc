//! The `IngestJob` reconciler, as a visible pipeline: read the job and its
//! `ChainSource` → build the workload (`workload.rs`) → server-side apply it
//! under one field manager → write status (phase, workload, conditions with
//! `observedGeneration`). Errors become a `Degraded` condition and a retry.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::children::{delete, managed, prune};
use super::context::{Context, Error};
use super::status::{FIELD_MANAGER, JobState, condition, job_state, publish, report};
use super::workload::{IngestWorkload, ingest_spec, ingest_workload, resolve_origin};
use crate::crd::common::CommonStatus;
use crate::crd::ingest_job::{IngestJob, IngestJobStatus, IngestMode, IngestPhase};
use crate::crd::{CacheTier, ChainSource};

/// Phase of a backfill from its Job's status.
fn job_phase(job: Option<&Job>, suspended: bool) -> IngestPhase {
    match (suspended, job_state(job)) {
        (true, _) => IngestPhase::Suspended,
        (false, JobState::Complete) => IngestPhase::Succeeded,
        (false, JobState::Failed) => IngestPhase::Failed,
        (false, JobState::Running) => IngestPhase::Running,
        (false, JobState::Pending) => IngestPhase::Pending,
    }
}

pub(crate) async fn reconcile(job: Arc<IngestJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = job.namespace().unwrap_or_default();
    let generation = job.metadata.generation;
    let previous = job.status.as_ref().map(|s| s.common.conditions.clone()).unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();

    // Read: the ChainSource it points at.
    let sources: Api<ChainSource> = Api::namespaced(ctx.client.clone(), &namespace);
    let source = sources.get_opt(&job.spec.source_ref.name).await?;
    // The tiers whose cached answers its blocks change.
    let tiers = Api::<CacheTier>::namespaced(ctx.client.clone(), &namespace).list(&Default::default()).await?.items;
    // A replication's origin ChainSource, when the job names one.
    let origin = match job.spec.source.store.as_ref().and_then(|s| s.chain_source_ref.as_ref()) {
        Some(reference) => sources.get_opt(&reference.name).await?,
        None => None,
    };
    // Build and apply the workload, or say why not.
    let outcome = match &source {
        None => Err(("SourceNotFound", format!("ChainSource {} does not exist", job.spec.source_ref.name))),
        Some(source) => resolve_origin(&job, source, origin.as_ref())
            .and_then(|resolved| ingest_workload(&resolved, source, &tiers, &ctx.image))
            .map_err(|e| (e.reason(), e.to_string())),
    };
    // When the backfill Job started and finished, as the Job controller records it.
    let mut times = (None, None);
    let (mut phase, workload, conditions, requeue) = match outcome {
        Err((reason, message)) => {
            let conditions = vec![
                condition("Ready", false, reason, &message, generation, &previous),
                condition("Degraded", true, reason, &message, generation, &previous),
                condition("Progressing", false, reason, &message, generation, &previous),
            ];
            (IngestPhase::Pending, None, conditions, Duration::from_secs(30))
        }
        Ok(IngestWorkload::Backfill(desired)) => {
            let child = desired.metadata.name.clone().unwrap_or_default();
            let applied = apply_job(&ctx, &job, &desired, &params).await?;
            prune::<Job, _>(&ctx, job.as_ref(), &[&child]).await?;
            prune::<Deployment, _>(&ctx, job.as_ref(), &[]).await?;
            let phase = job_phase(Some(&applied), job.spec.suspend);
            if let Some(state) = &applied.status {
                times = (state.start_time.clone(), state.completion_time.clone());
            }
            let running = matches!(phase, IngestPhase::Running | IngestPhase::Pending);
            let conditions = vec![
                condition(
                    "Ready",
                    phase == IngestPhase::Succeeded,
                    &format!("{phase:?}"),
                    &format!("backfill Job {child}"),
                    generation,
                    &previous,
                ),
                condition(
                    "Progressing",
                    running,
                    &format!("{phase:?}"),
                    &format!("backfill Job {child}"),
                    generation,
                    &previous,
                ),
                condition(
                    "Degraded",
                    phase == IngestPhase::Failed,
                    &format!("{phase:?}"),
                    &format!("backfill Job {child}"),
                    generation,
                    &previous,
                ),
            ];
            (phase, Some(child), conditions, Duration::from_secs(60))
        }
        Ok(IngestWorkload::OnNode(node)) => {
            // An embedded store admits one process: the job runs in its source's node pod.
            let source = source.as_ref().expect("a node workload has its source");
            let key = format!("IngestJob/{namespace}/{}", job.name_any());
            let work = match job.spec.suspend {
                true => None,
                false => ingest_spec(&job, source, &tiers).ok().map(|s| s.work),
            };
            let running = super::node::running(&ctx, source, &key, work.as_ref()).await?;
            prune::<Job, _>(&ctx, job.as_ref(), &[]).await?;
            prune::<Deployment, _>(&ctx, job.as_ref(), &[]).await?;
            let running = running.and_then(|d| d.status).and_then(|s| s.ready_replicas).unwrap_or(0) > 0;
            let phase = match (job.spec.suspend, running) {
                (true, _) => IngestPhase::Suspended,
                (false, true) => IngestPhase::Running,
                (false, false) => IngestPhase::Pending,
            };
            let message = format!(
                "runs in node Deployment {node} of ChainSource {}, the one process its embedded store admits",
                job.spec.source_ref.name
            );
            let reason = if running { "RunsOnNode" } else { "NodeStarting" };
            let conditions = vec![
                condition("Ready", running, reason, &message, generation, &previous),
                condition("Progressing", phase != IngestPhase::Suspended, reason, &message, generation, &previous),
                condition("Degraded", false, "AsExpected", "", generation, &previous),
            ];
            (phase, Some(node), conditions, Duration::from_secs(60))
        }
        Ok(IngestWorkload::Follow(desired)) => {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
            let child = desired.metadata.name.clone().unwrap_or_default();
            let applied = api.patch(&child, &params, &Patch::Apply(&desired)).await?;
            prune::<Deployment, _>(&ctx, job.as_ref(), &[&child]).await?;
            prune::<Job, _>(&ctx, job.as_ref(), &[]).await?;
            let ready = applied.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) > 0;
            let phase = if job.spec.suspend {
                IngestPhase::Suspended
            } else if ready {
                IngestPhase::Running
            } else {
                IngestPhase::Pending
            };
            let conditions = vec![
                condition(
                    "Ready",
                    ready,
                    if ready { "FollowerRunning" } else { "FollowerStarting" },
                    &format!("follower Deployment {child}"),
                    generation,
                    &previous,
                ),
                condition(
                    "Progressing",
                    !ready,
                    "FollowerStarting",
                    &format!("follower Deployment {child}"),
                    generation,
                    &previous,
                ),
                condition("Degraded", false, "AsExpected", "", generation, &previous),
            ];
            (phase, Some(child), conditions, Duration::from_secs(60))
        }
    };

    // Progress from the catalog the workers commit to; when it cannot be
    // read, the Progressing condition says why (no secret in the reason).
    let mut conditions = conditions;
    let mut status = IngestJobStatus::default();
    if let (Some(source), Some(_)) = (&source, &workload) {
        match super::progress::read(&ctx, &job, source).await {
            Ok(progress) => status = progress,
            Err(reason) => {
                // The last progress known stays; the condition says it is not current.
                status = job.status.clone().unwrap_or_default();
                if let Some(progressing) = conditions.iter_mut().find(|c| c.type_ == "Progressing") {
                    progressing.message = format!("{}; progress unknown: {reason}", progressing.message);
                }
            }
        }
    }
    // A backfill on its source's node has no Job to complete: it is done when
    // the catalog holds its whole range with no gap open.
    let end = job.spec.range.as_ref().and_then(|r| r.end_slot);
    let node = source.as_ref().is_some_and(|s| s.spec.store.embedded.is_some());
    if node
        && phase == IngestPhase::Running
        && job.spec.mode == IngestMode::Backfill
        && status.gaps_open == 0
        && status.checkpoint.is_some_and(|c| Some(c) >= end)
    {
        phase = IngestPhase::Succeeded;
        let message = format!(
            "every slot of the range is stored, skipped or repaired (on node {})",
            workload.clone().unwrap_or_default()
        );
        conditions = vec![
            condition("Ready", true, "Complete", &message, generation, &previous),
            condition("Progressing", false, "Complete", &message, generation, &previous),
            condition("Degraded", false, "AsExpected", "", generation, &previous),
        ];
    }
    if status.last_reorg.is_none() {
        // No reorganization in what was read (the source or workload is missing, or the
        // catalog lost its records): the ones status already shows stay, and are not announced again.
        let known = job.status.as_ref();
        status.reorgs = known.map_or(0, |s| s.reorgs).max(status.reorgs);
        status.last_reorg = known.and_then(|s| s.last_reorg.clone());
    }
    announce_reorgs(&ctx, &job, &status).await;
    // Status, applied to the status subresource under the same field manager.
    status.common = CommonStatus { observed_generation: generation, conditions };
    status.phase = Some(phase);
    status.workload = workload;
    (status.start_time, status.completion_time) = times;
    // While workers run, progress is refreshed often.
    let requeue = if matches!(phase, IngestPhase::Running | IngestPhase::Pending) && status.workload.is_some() {
        requeue.min(Duration::from_secs(15))
    } else {
        requeue
    };
    report(&ctx, job.as_ref(), &status).await?;
    Ok(Action::requeue(requeue))
}

/// A Warning Event when the catalog records a reorganization the status did not show yet.
async fn announce_reorgs(ctx: &Context, job: &IngestJob, status: &IngestJobStatus) {
    let shown = job.status.as_ref().and_then(|s| s.last_reorg.as_ref());
    let Some(last) = status.last_reorg.as_ref().filter(|last| Some(*last) != shown) else { return };
    let note = format!(
        "the chain was reorganized above block {}: {} stored blocks taken back from every target and fetched again \
         (replaced {}; {} repaired in all)",
        last.base_block, last.depth, last.replaced_hash, status.reorgs
    );
    let event = Event {
        type_: EventType::Warning,
        reason: "ChainReorganized".into(),
        note: Some(note),
        action: "Ingest".into(),
        secondary: None,
    };
    publish(ctx, &event, &job.object_ref(&())).await;
}

/// A backfill's Job, applied; a Job whose template or completions changed
/// (immutable fields) is replaced: its workers resume from the catalog's
/// checkpoints, so nothing done is lost.
async fn apply_job(ctx: &Context, owner: &IngestJob, desired: &Job, params: &PatchParams) -> Result<Job, Error> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &owner.namespace().unwrap_or_default());
    let name = desired.metadata.name.clone().unwrap_or_default();
    match api.patch(&name, params, &Patch::Apply(desired)).await {
        Err(kube::Error::Api(status)) if status.code == 422 => {
            tracing::info!(job = %name, reason = %status.message, "replacing a backfill Job whose immutable fields changed");
            delete(&api, &name).await?;
            let event = Event {
                type_: EventType::Normal,
                reason: "WorkloadReplaced".into(),
                note: Some(format!("Job {name} replaced: the spec changed fields a Job cannot change")),
                action: "Apply".into(),
                secondary: None,
            };
            publish(ctx, &event, &owner.object_ref(&())).await;
            Ok(api.patch(&name, params, &Patch::Apply(desired)).await?)
        }
        applied => Ok(applied?),
    }
}

/// Runs the IngestJob controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let children = watcher::Config::default().labels(&managed());
    let controller = super::pipeline::controller::<IngestJob>(&ctx.client)
        .owns(Api::<Job>::all(ctx.client.clone()), children.clone())
        .owns(Api::<Deployment>::all(ctx.client.clone()), children);
    // A tier added, removed or switched changes which Redis the jobs of its source invalidate.
    let jobs = controller.store();
    let controller =
        controller.watches(Api::<CacheTier>::all(ctx.client.clone()), watcher::Config::default(), move |tier| {
            let (namespace, source) = (tier.namespace(), tier.spec.source_ref.name.clone());
            jobs.state()
                .into_iter()
                .filter(|job| job.namespace() == namespace && job.spec.source_ref.name == source)
                .map(|job| ObjectRef::from_obj(job.as_ref()))
                .collect::<Vec<_>>()
        });
    super::pipeline::run(ctx, controller, shutdown, reconcile).await;
}
