//! The `TrainingExport` finalizer: deleting an export that has not
//! published removes what it wrote. The reconciler holds
//! [`OUTPUT_FINALIZER`] on every export; when one is deleted:
//!
//! 1. published (its Job completed, or its status says Succeeded): the
//!    dataset is the user's and stays; the finalizer goes;
//! 2. otherwise a cleanup Job is created, suspended, the export Job is
//!    deleted and, once none of its pods is left (nothing may write after
//!    the cleanup), the cleanup Job (`<name>-cleanup`, `chronicle worker run` with an
//!    [`ExportCleanupSpec`], the output's credentials, ten minutes at most)
//!    removes the unpublished shards, token files, resume state and card
//!    (`export/unpublished.rs`); when it completes the finalizer goes, with
//!    an Event saying what happened. A cleanup that fails or cannot start
//!    (a namespace being deleted admits no new Job) leaves the output as it
//!    is and says so in a Warning Event. An export pod stuck terminating
//!    (a lost node) holds the deletion until it is gone or force-deleted,
//!    as it must: it could still write.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use std::time::Duration;

use super::children::{delete, selector_of};
use super::context::{Context, Error};
use super::status::{JobState, job_state, publish};
use super::training_export::{ExportBuildError, catalog_export};
use super::workload::{PodSecrets, labels, pod_with, resources};
use crate::crd::TrainingExport;
use crate::crd::training_export::ExportPhase;
use crate::worker::spec::{ExportCleanupSpec, Work, WorkerSpec};

/// Held on every TrainingExport until its unpublished output is removed.
pub const OUTPUT_FINALIZER: &str = "chronicle.dev/unpublished-output";
/// The finalizer's own field manager: it owns that one list item.
const FINALIZER_MANAGER: &str = "chronicle-controller-finalizer";
/// The cleanup Job's annotation: the uid of the export it cleans up after.
const EXPORT_UID: &str = "chronicle.dev/export-uid";
/// A cleanup that has not finished by then has failed.
const CLEANUP_DEADLINE_SECONDS: i64 = 600;

pub fn has_finalizer(export: &TrainingExport) -> bool {
    export.finalizers().iter().any(|f| f == OUTPUT_FINALIZER)
}

/// Adds (`true`) or releases (`false`) the finalizer by server-side apply
/// of that list item alone: the user's own fields and finalizers are untouched.
pub async fn hold(ctx: &Context, export: &TrainingExport, held: bool) -> Result<(), Error> {
    let api: Api<TrainingExport> = Api::namespaced(ctx.client.clone(), &export.namespace().unwrap_or_default());
    let finalizers: &[&str] = if held { &[OUTPUT_FINALIZER] } else { &[] };
    let body = serde_json::json!({
        "apiVersion": TrainingExport::api_version(&()),
        "kind": TrainingExport::kind(&()),
        "metadata": {"name": export.name_any(), "finalizers": finalizers},
    });
    match api.patch(&export.name_any(), &PatchParams::apply(FINALIZER_MANAGER), &Patch::Apply(&body)).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        result => result.map(drop).map_err(Error::from),
    }
}

/// The cleanup Job: one pod that touches no store, only the output. It
/// has no owner (a foreground deletion of the export would delete it as
/// soon as it is created): the export's uid is an annotation, and the
/// finalizer deletes the Job once it has read the outcome (or the TTL does).
pub fn cleanup_job(export: &TrainingExport, image: &str) -> Result<Job, ExportBuildError> {
    let name = export.name_any();
    let worker = WorkerSpec::new(Work::ExportCleanup(ExportCleanupSpec {
        job: catalog_export(export),
        output: export.spec.output.url.clone(),
    }));
    let mut secrets = PodSecrets::default();
    if let Some(secret) = &export.spec.output.credentials_secret_ref {
        secrets.object_store_credentials(&export.spec.output.url, secret);
    }
    let mut pod = pod_with("cleanup", image, &worker, Default::default(), secrets, resources(None), 30);
    pod.restart_policy = Some("Never".into());
    let labels = labels("TrainingExport", &name, "cleanup");
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(format!("{name}-cleanup")),
            namespace: export.namespace(),
            labels: Some(labels.clone()),
            annotations: Some([(EXPORT_UID.to_string(), export.uid().ok_or(ExportBuildError::NoUid)?)].into()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(CLEANUP_DEADLINE_SECONDS),
            ttl_seconds_after_finished: Some(3600),
            // Resumed once the export's pods are gone.
            suspend: Some(true),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// One step of a deleted export's cleanup; requeues until it is done.
pub async fn finalize(export: &TrainingExport, ctx: &Context) -> Result<Action, Error> {
    if !has_finalizer(export) {
        return Ok(Action::await_change());
    }
    let (namespace, name) = (export.namespace().unwrap_or_default(), export.name_any());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let (export_job, cleanup) = (format!("{name}-export"), format!("{name}-cleanup"));
    let found = jobs.get_opt(&export_job).await?;
    // A cleanup Job of this export (not of an earlier one of the same name).
    let running =
        jobs.get_opt(&cleanup).await?.filter(|job| job.annotations().get(EXPORT_UID) == export.uid().as_ref());
    let published = found.as_ref().is_some_and(|job| job_state(Some(job)) == JobState::Complete)
        || export.status.as_ref().and_then(|s| s.phase) == Some(ExportPhase::Succeeded);
    // Published: nothing to remove (a cleanup begun meanwhile is called off).
    // Anything else is cleaned: a missing export Job proves nothing (a
    // refused later generation prunes it; a foreground deletion takes it
    // first), and cleaning what is not there is cheap.
    if published {
        if running.is_some() {
            delete(&jobs, &cleanup).await?;
        }
        hold(ctx, export, false).await?;
        return Ok(Action::await_change());
    }
    // The cleanup Job first, suspended: it marks the cleanup as due, whatever happens next.
    let Some(job) = running else {
        let desired = match cleanup_job(export, &ctx.image) {
            Ok(job) => job,
            Err(e) => return give_up(ctx, export, &format!("cannot build the cleanup Job: {e}")).await,
        };
        // An earlier export's cleanup Job of the same name goes first.
        delete(&jobs, &cleanup).await?;
        return match jobs.create(&PostParams::default(), &desired).await {
            Ok(_) => Ok(Action::requeue(Duration::from_secs(1))),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Action::requeue(Duration::from_secs(2))),
            // A namespace being deleted admits no new object.
            Err(kube::Error::Api(status))
                if (status.code == 403 && status.message.contains("being terminated")) || status.code == 404 =>
            {
                give_up(ctx, export, &format!("cannot create the cleanup Job: {}", status.message)).await
            }
            Err(e) => Err(e.into()),
        };
    };
    // Then stop the export: no pod may write after the cleanup.
    if found.is_some() {
        delete(&jobs, &export_job).await?;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let exporting = format!("{},app.kubernetes.io/component=export", selector_of(export));
    if !pods.list(&ListParams::default().labels(&exporting)).await?.items.is_empty() {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    if job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        let resume = serde_json::json!({"spec": {"suspend": false}});
        jobs.patch(&cleanup, &PatchParams::default(), &Patch::Merge(&resume)).await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let state = job_state(Some(&job));
    if matches!(state, JobState::Running | JobState::Pending) {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    delete(&jobs, &cleanup).await?;
    if state == JobState::Failed {
        return give_up(ctx, export, "the cleanup Job failed (see its pods' logs)").await;
    }
    let note = format!("removed the unpublished output at {}", export.spec.output.url);
    event(ctx, export, EventType::Normal, "UnpublishedOutputRemoved", note).await;
    hold(ctx, export, false).await?;
    Ok(Action::await_change())
}

/// Releases the finalizer, leaving the output as it is, and says why.
async fn give_up(ctx: &Context, export: &TrainingExport, why: &str) -> Result<Action, Error> {
    let note = format!("{why}: the unpublished output at {} is left in place", export.spec.output.url);
    event(ctx, export, EventType::Warning, "CleanupFailed", note).await;
    hold(ctx, export, false).await?;
    Ok(Action::await_change())
}

async fn event(ctx: &Context, export: &TrainingExport, type_: EventType, reason: &str, note: String) {
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "Finalize".into(), secondary: None };
    publish(ctx, &event, &export.object_ref(&())).await;
}
