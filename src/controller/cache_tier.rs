//! The `CacheTier` reconciler: read the tier and its `ChainSource` → build the
//! `chronicle serve` Deployment and Service → server-side apply → status
//! (endpoint, ready replicas, conditions).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::children::{managed, prune};
use super::context::{Context, Error};
use super::served::hit_ratio;
use super::status::{FIELD_MANAGER, condition, report};
use super::workload::{cache_tier_workload, serve_spec};
use crate::crd::cache_tier::CacheTierStatus;
use crate::crd::common::CommonStatus;
use crate::crd::{CacheTier, ChainSource};

pub(crate) async fn reconcile(tier: Arc<CacheTier>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = tier.namespace().unwrap_or_default();
    let generation = tier.metadata.generation;
    let previous = tier.status.as_ref().map(|s| s.common.conditions.clone()).unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let sources: Api<ChainSource> = Api::namespaced(ctx.client.clone(), &namespace);
    let source = sources.get_opt(&tier.spec.source_ref.name).await?;
    let built = match &source {
        None => Err(("SourceNotFound", format!("ChainSource {} does not exist", tier.spec.source_ref.name))),
        Some(source) => cache_tier_workload(&tier, source, &ctx.image).map_err(|e| (e.reason(), e.to_string())),
    };
    let (ready_replicas, endpoint, hit_ratio, conditions) = match built {
        Err((reason, message)) => (
            0,
            None,
            None,
            vec![
                condition("Ready", false, reason, &message, generation, &previous),
                condition("Degraded", true, reason, &message, generation, &previous),
            ],
        ),
        Ok((deployment, service)) => {
            let child = service.metadata.name.clone().unwrap_or_default();
            // The Service first: whoever sees the pods can reach them.
            Api::<Service>::namespaced(ctx.client.clone(), &namespace)
                .patch(&child, &params, &Patch::Apply(&service))
                .await?;
            prune::<Service, _>(&ctx, tier.as_ref(), &[&child]).await?;
            let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &namespace);
            // Its own replicas, or (embedded store) its source's node pod.
            let (applied, wanted, served_by) = match &deployment {
                Some(deployment) => {
                    let applied = deployments.patch(&child, &params, &Patch::Apply(deployment)).await?;
                    prune::<Deployment, _>(&ctx, tier.as_ref(), &[&child]).await?;
                    (Some(applied), tier.spec.server.replicas, "serve replicas".to_string())
                }
                None => {
                    let source = source.as_ref().expect("a tier served on a node has its source");
                    let key = format!("CacheTier/{namespace}/{}", tier.name_any());
                    let work = serve_spec(&tier, source).ok().map(|s| s.work);
                    let node = super::node::running(&ctx, source, &key, work.as_ref()).await?;
                    prune::<Deployment, _>(&ctx, tier.as_ref(), &[]).await?;
                    let name = source.name_any();
                    (node, 1, format!("node pod of ChainSource {name} (its embedded store admits one process)"))
                }
            };
            let ready = applied.as_ref().and_then(|d| d.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0);
            let message = format!("{ready}/{wanted} {served_by} ready");
            let endpoint = format!("http://{child}.{namespace}.svc:{}", tier.spec.server.port);
            let selector = service.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
            let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let hit_ratio = if ready > 0 {
                hit_ratio(&ctx, &namespace, &selector.join(","), tier.spec.server.port).await
            } else {
                None
            };
            (
                ready,
                Some(endpoint),
                hit_ratio,
                vec![
                    condition(
                        "Ready",
                        ready > 0,
                        if ready > 0 { "Serving" } else { "Starting" },
                        &message,
                        generation,
                        &previous,
                    ),
                    condition("Progressing", ready < wanted, "ReplicasStarting", &message, generation, &previous),
                    condition("Degraded", false, "AsExpected", &message, generation, &previous),
                ],
            )
        }
    };
    let status = CacheTierStatus {
        common: CommonStatus { observed_generation: generation, conditions },
        endpoint,
        ready_replicas,
        hit_ratio,
        ..CacheTierStatus::default()
    };
    report(&ctx, tier.as_ref(), status).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Runs the CacheTier controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let children = watcher::Config::default().labels(&managed());
    let controller = super::pipeline::controller::<CacheTier>(&ctx.client)
        .owns(Api::<Deployment>::all(ctx.client.clone()), children.clone())
        .owns(Api::<Service>::all(ctx.client.clone()), children);
    super::pipeline::run(ctx, controller, shutdown, reconcile).await;
}
