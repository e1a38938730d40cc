//! The `ChainSource` reconciler: check that the Secrets it names exist, probe
//! its endpoints (head slot, latency) with a timeout, and report
//! `Ready`/`Degraded` with the reason — never a Secret's value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::children::managed;
use super::context::{Context, Error};
use super::probe::{bigtable_endpoint, probe_endpoints, probe_store};
use super::status::{FIELD_MANAGER, condition, report};
use super::workload::store_claim;
use crate::crd::ChainSource;
use crate::crd::chain_source::ChainSourceStatus;
use crate::crd::common::CommonStatus;
use crate::pipeline::config::Secret as Token;

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
            tokens.insert(endpoint.name.clone(), Token::new(String::from_utf8_lossy(&value.0).trim()));
        }
    }
    // A chain this build has no adapter for is not probed as if it were Solana.
    let adapter = match crate::chain::adapter(source.spec.chain.family) {
        Ok(adapter) => adapter,
        Err(why) => {
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
    };
    let probe = probe_endpoints(adapter, &source, Duration::from_secs(5), &tokens).await;
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
    let node = match super::node::apply(ctx, source).await? {
        Some(node) => format!("; its jobs and tiers run in node Deployment {node}"),
        None => String::new(),
    };
    Ok(Ok(format!("store claim {name} {phase}{node}")))
}

/// Runs the ChainSource controller until `shutdown` resolves. It owns an
/// embedded source's node Deployment (the IngestJob and CacheTier
/// reconcilers apply it too when one of them changes).
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    use kube::runtime::watcher;
    let controller = super::pipeline::controller::<ChainSource>(&ctx.client)
        .owns(Api::<Deployment>::all(ctx.client.clone()), watcher::Config::default().labels(&managed()));
    super::pipeline::run(ctx, controller, shutdown, reconcile).await;
}
