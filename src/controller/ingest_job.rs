//! The `IngestJob` reconciler, as a visible pipeline: read the job and its
//! `ChainSource` → build the workload (`workload.rs`) → server-side apply it
//! under one field manager → write status (phase, workload, conditions with
//! `observedGeneration`). Errors become a `Degraded` condition and a retry.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::status::{FIELD_MANAGER, apply_status, condition};
use super::workload::{IngestWorkload, ingest_workload};
use crate::crd::ChainSource;
use crate::crd::ingest_job::{IngestJob, IngestPhase};

pub struct Context {
    pub client: Client,
    /// The image the workers run (the controller's own).
    pub image: String,
    /// Consecutive failures per object, for the retry backoff.
    pub failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, image: impl Into<String>) -> Self {
        Self { client, image: image.into(), failures: Default::default() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

/// Phase of a backfill from its Job's status.
fn job_phase(job: Option<&Job>, suspended: bool) -> IngestPhase {
    if suspended {
        return IngestPhase::Suspended;
    }
    let Some(status) = job.and_then(|j| j.status.as_ref()) else { return IngestPhase::Pending };
    let done = |kind: &str| status.conditions.iter().flatten().any(|c| c.type_ == kind && c.status == "True");
    if done("Complete") {
        IngestPhase::Succeeded
    } else if done("Failed") {
        IngestPhase::Failed
    } else if status.active.unwrap_or(0) > 0 {
        IngestPhase::Running
    } else {
        IngestPhase::Pending
    }
}

async fn reconcile(job: Arc<IngestJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let generation = job.metadata.generation;
    let previous = job.status.as_ref().map(|s| s.common.conditions.clone()).unwrap_or_default();
    let jobs: Api<IngestJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();

    // Read: the ChainSource it points at.
    let sources: Api<ChainSource> = Api::namespaced(ctx.client.clone(), &namespace);
    let source = sources.get_opt(&job.spec.source_ref.name).await?;
    // Build and apply the workload, or say why not.
    let outcome = match source {
        None => Err(("SourceNotFound", format!("ChainSource {} does not exist", job.spec.source_ref.name))),
        Some(source) => ingest_workload(&job, &source, &ctx.image).map_err(|e| ("InvalidSpec", e.to_string())),
    };
    let (phase, workload, conditions, requeue) = match outcome {
        Err((reason, message)) => {
            let conditions = vec![
                condition("Ready", false, reason, &message, generation, &previous),
                condition("Degraded", true, reason, &message, generation, &previous),
                condition("Progressing", false, reason, &message, generation, &previous),
            ];
            (IngestPhase::Pending, None, conditions, Duration::from_secs(30))
        }
        Ok(IngestWorkload::Backfill(desired)) => {
            let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
            let child = desired.metadata.name.clone().unwrap_or_default();
            let applied = api.patch(&child, &params, &Patch::Apply(&desired)).await?;
            let phase = job_phase(Some(&applied), job.spec.suspend);
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
        Ok(IngestWorkload::Follow(desired)) => {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
            let child = desired.metadata.name.clone().unwrap_or_default();
            let applied = api.patch(&child, &params, &Patch::Apply(&desired)).await?;
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

    // Status, applied to the status subresource under the same field manager.
    let status = json!({
        "observedGeneration": generation,
        "conditions": conditions,
        "phase": phase,
        "workload": workload,
    });
    apply_status(&jobs, &name, status).await?;
    super::status::reconciled(job.as_ref(), &ctx);
    Ok(Action::requeue(requeue))
}

/// Runs the IngestJob controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let jobs: Api<IngestJob> = Api::all(ctx.client.clone());
    let owned_jobs: Api<Job> = Api::all(ctx.client.clone());
    let owned_deployments: Api<Deployment> = Api::all(ctx.client.clone());
    let children = watcher::Config::default().labels("app.kubernetes.io/managed-by=chronicle-controller");
    Controller::new(jobs, watcher::Config::default())
        .owns(owned_jobs, children.clone())
        .owns(owned_deployments, children)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, super::status::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile error");
            }
        })
        .await;
}
