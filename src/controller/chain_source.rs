//! The `ChainSource` reconciler: check that the Secrets it names exist, probe
//! its endpoints (head slot, latency) with a timeout, and report
//! `Ready`/`Degraded` with the reason — never a Secret's value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::children::{managed, prune};
use super::context::{Context, Error};
use super::node::node_workload;
use super::probe::{bigtable_endpoint, probe_endpoints, probe_store};
use super::status::{FIELD_MANAGER, condition, report};
use super::workload::store_claim;
use crate::chain::solana::rpc::Secret as Token;
use crate::crd::chain_source::ChainSourceStatus;
use crate::crd::common::CommonStatus;
use crate::crd::{CacheTier, ChainSource, IngestJob};

/// Every Secret key the source refers to, by purpose.
fn secret_refs(source: &ChainSource) -> Vec<(&'static str, &crate::crd::common::SecretKeyRef)> {
    let spec = &source.spec;
    let mut refs = vec![("catalog", &spec.catalog.connection_secret_ref)];
    refs.extend(spec.endpoints.iter().filter_map(|e| e.auth.as_ref().map(|a| ("endpoint auth", &a.secret_ref))));
    refs.extend(
        spec.store
            .bigtable
            .as_ref()
            .and_then(|b| b.credentials_secret_ref.as_ref())
            .map(|r| ("bigtable credentials", r)),
    );
    refs.extend(
        spec.big_query.as_ref().and_then(|b| b.credentials_secret_ref.as_ref()).map(|r| ("bigQuery credentials", r)),
    );
    refs.extend(spec.lake.as_ref().and_then(|l| l.credentials_secret_ref.as_ref()).map(|r| ("lake credentials", r)));
    refs.extend(spec.metrics.as_ref().map(|m| ("influxdb token", &m.influxdb.token_secret_ref)));
    refs
}

pub(crate) async fn reconcile(source: Arc<ChainSource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = source.namespace().unwrap_or_default();
    let generation = source.metadata.generation;
    let previous = source.status.as_ref().map(|s| s.common.conditions.clone()).unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut missing = Vec::new();
    for (purpose, reference) in secret_refs(&source) {
        let present = secrets.get_opt(&reference.name).await?.is_some_and(|s| {
            s.data.as_ref().is_some_and(|d| d.contains_key(&reference.key))
                || s.string_data.as_ref().is_some_and(|d| d.contains_key(&reference.key))
        });
        if !present {
            missing.push(format!("{purpose}: {}/{}", reference.name, reference.key));
        }
    }
    // Endpoint tokens are read to probe with them, and go no further.
    let mut tokens = HashMap::new();
    for endpoint in &source.spec.endpoints {
        if let Some(auth) = &endpoint.auth
            && let Some(secret) = secrets.get_opt(&auth.secret_ref.name).await?
            && let Some(value) = secret.data.as_ref().and_then(|d| d.get(&auth.secret_ref.key))
        {
            tokens.insert(endpoint.name.clone(), Token(String::from_utf8_lossy(&value.0).trim().to_string()));
        }
    }
    // A chain this build has no adapter for is not probed as if it were Solana.
    if let Err(why) = crate::chain::adapter(source.spec.chain.family) {
        let conditions = vec![
            condition("Ready", false, "ChainUnsupported", &why, generation, &previous),
            condition("Degraded", true, "ChainUnsupported", &why, generation, &previous),
        ];
        let status = ChainSourceStatus {
            common: CommonStatus { observed_generation: generation, conditions },
            ..ChainSourceStatus::default()
        };
        report(&ctx, source.as_ref(), status).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    let probe = probe_endpoints(&source, Duration::from_secs(5), &tokens).await;
    let healthy = probe.endpoints.iter().filter(|e| e.healthy).count();
    let store = store(&ctx, &source).await?;
    let (ready, reason, message) = if !missing.is_empty() {
        (false, "SecretMissing", format!("missing Secret keys: {}", missing.join(", ")))
    } else if let Err(unreachable) = &store {
        (false, "StoreUnreachable", unreachable.clone())
    } else if healthy == 0 {
        (false, "EndpointsUnreachable", format!("none of {} endpoints answered", probe.endpoints.len()))
    } else {
        let store = store.as_deref().unwrap_or_default();
        (true, "EndpointsHealthy", format!("{healthy}/{} endpoints healthy; {store}", probe.endpoints.len()))
    };
    let conditions = vec![
        condition("Ready", ready, reason, &message, generation, &previous),
        condition("Degraded", !ready, reason, &message, generation, &previous),
    ];
    let status = ChainSourceStatus {
        common: CommonStatus { observed_generation: generation, conditions },
        chain_head: probe.head,
        last_probe_time: Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
        ),
        endpoints: probe.endpoints,
    };
    report(&ctx, source.as_ref(), status).await?;
    Ok(Action::requeue(Duration::from_secs(if ready { 60 } else { 20 })))
}

/// The canonical store's state: a Bigtable endpoint must accept a
/// connection; an embedded store's claim is applied and its phase reported
/// (a claim may stay Pending until a worker pod uses it).
async fn store(ctx: &Context, source: &ChainSource) -> Result<Result<String, String>, Error> {
    let Some(claim) = store_claim(source) else {
        let Some(bigtable) = &source.spec.store.bigtable else { return Ok(Err("no store is declared".into())) };
        return Ok(probe_store(&bigtable_endpoint(bigtable), Duration::from_secs(5)).await);
    };
    let name = claim.metadata.name.clone().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &source.namespace().unwrap_or_default());
    let applied = claims.patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&claim)).await?;
    let phase = applied.status.and_then(|s| s.phase).unwrap_or_else(|| "Pending".into());
    let node = match node(ctx, source).await? {
        Some(node) => format!("; its jobs and tiers run in node Deployment {node}"),
        None => String::new(),
    };
    Ok(Ok(format!("store claim {name} {phase}{node}")))
}

/// The node Deployment that runs every IngestJob and CacheTier of an
/// embedded source in the one process its store admits (`node.rs`), applied,
/// or pruned when none is left.
async fn node(ctx: &Context, source: &ChainSource) -> Result<Option<String>, Error> {
    let namespace = source.namespace().unwrap_or_default();
    let jobs = Api::<IngestJob>::namespaced(ctx.client.clone(), &namespace).list(&ListParams::default()).await?;
    let tiers = Api::<CacheTier>::namespaced(ctx.client.clone(), &namespace).list(&ListParams::default()).await?;
    let Some(node) = node_workload(source, &jobs.items, &tiers.items, &ctx.image) else {
        prune::<Deployment, _>(ctx, source, &[]).await?;
        return Ok(None);
    };
    let name = node.metadata.name.clone().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<Deployment>::namespaced(ctx.client.clone(), &namespace).patch(&name, &params, &Patch::Apply(&node)).await?;
    prune::<Deployment, _>(ctx, source, &[&name]).await?;
    Ok(Some(name))
}

/// Runs the ChainSource controller until `shutdown` resolves. It owns an
/// embedded source's node Deployment and is woken by a new generation of an
/// IngestJob or CacheTier that names the source (not by their status writes).
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::{WatchStreamExt, predicates, watcher};
    /// New generations of the kind that names sources.
    fn referrers<K: super::pipeline::Kind>(
        client: &kube::Client,
    ) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        watcher(Api::<K>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .predicate_filter(predicates::generation, Default::default())
    }
    let of_job = |job: IngestJob| Some(ObjectRef::new(&job.spec.source_ref.name).within(&job.namespace()?));
    let of_tier = |tier: CacheTier| Some(ObjectRef::new(&tier.spec.source_ref.name).within(&tier.namespace()?));
    let controller = super::pipeline::controller::<ChainSource>(&ctx.client)
        .owns(Api::<Deployment>::all(ctx.client.clone()), watcher::Config::default().labels(&managed()))
        .watches_stream(referrers::<IngestJob>(&ctx.client), of_job)
        .watches_stream(referrers::<CacheTier>(&ctx.client), of_tier);
    super::pipeline::run(ctx, controller, shutdown, reconcile).await;
}
