//! The node of an embedded ChainSource: one Deployment (one replica,
//! `Recreate`) that mounts the store's claim and runs every IngestJob and
//! CacheTier of that source in one process (`worker/host.rs`, as `chronicle
//! dev` does), because an embedded store admits one process. Their own
//! reconcilers then build no pods: an IngestJob reports that it runs here, a
//! CacheTier's Service selects this pod.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{ContainerPort, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::children::prune;
use super::context::{Context, Error};
use super::status::FIELD_MANAGER;
use super::workload::{CATALOG_ENV, PodSecrets, ingest_spec, labels, resources, serve_spec, worker_pod};
use crate::crd::{CacheTier, ChainSource, IngestJob};
use crate::worker::spec::{NamedWork, NodeSpec, Work, WorkerSpec};

pub fn node_name(source: &ChainSource) -> String {
    format!("{}-node", source.name_any())
}

/// The labels of the node's pods (a CacheTier's Service selects them).
pub fn node_labels(source: &ChainSource) -> BTreeMap<String, String> {
    labels("ChainSource", &source.name_any(), "node")
}

/// The node Deployment for the jobs and tiers of `source` that can run (the
/// others report why on their own status); `None` when there are none.
pub fn node_workload(source: &ChainSource, jobs: &[IngestJob], tiers: &[CacheTier], image: &str) -> Option<Deployment> {
    source.spec.store.embedded.as_ref()?;
    let namespace = source.namespace().unwrap_or_default();
    let mut secrets = PodSecrets::default();
    secrets.env(CATALOG_ENV, &source.spec.catalog.connection_secret_ref);
    let (mut works, mut ports) = (Vec::new(), Vec::new());
    let mine = |name: &str, ns: Option<String>| name == source.name_any() && ns.as_deref() == Some(&namespace);
    for job in jobs.iter().filter(|j| mine(&j.spec.source_ref.name, j.namespace()) && !j.spec.suspend) {
        let Ok(WorkerSpec { work: Work::Ingest(spec), .. }) = ingest_spec(job, source, tiers) else { continue };
        secrets.ingest(&spec, source, tiers);
        works.push(NamedWork { name: format!("IngestJob/{namespace}/{}", job.name_any()), work: Work::Ingest(spec) });
    }
    let tiers = tiers.iter().filter(|t| mine(&t.spec.source_ref.name, t.namespace()));
    for (index, tier) in tiers.enumerate() {
        let Ok(WorkerSpec { work: Work::Serve(spec), .. }) = serve_spec(tier, source) else { continue };
        // By index: a volume name is a DNS label (63 characters), a tier name may be longer.
        secrets.serve(&spec, tier, source, &format!("api-keys-{index}"));
        // Named for scrapers: `rpc` for the first tier (as in a serve pod), `rpc-N` after it.
        let name = if index == 0 { "rpc".to_string() } else { format!("rpc-{index}") };
        ports.push(ContainerPort { name: Some(name), container_port: spec.port, ..ContainerPort::default() });
        works.push(NamedWork { name: format!("CacheTier/{namespace}/{}", tier.name_any()), work: Work::Serve(spec) });
    }
    if works.is_empty() {
        return None;
    }
    let spec = WorkerSpec::new(Work::Node(NodeSpec { works }));
    let mut pod = worker_pod("node", image, &spec, source, secrets, resources(None), 120);
    // The tiers' ports first, then the worker metrics port.
    let all = pod.containers[0].ports.get_or_insert_default();
    all.splice(0..0, ports);
    let labels = node_labels(source);
    Some(Deployment {
        metadata: ObjectMeta {
            name: Some(node_name(source)),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            owner_references: source.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // Never two processes on the store at once.
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }),
            selector: LabelSelector { match_labels: Some(labels.clone()), match_expressions: None },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// Applies the node Deployment of an embedded `source` from the IngestJobs
/// and CacheTiers that name it now, or prunes it when none is left. Called by
/// the ChainSource reconciler and by theirs, so a new job or tier reaches the
/// node at once (a deleted one leaves it at the source's next reconcile).
pub async fn apply(ctx: &Context, source: &ChainSource) -> Result<Option<String>, Error> {
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

/// The node Deployment of `source`, once it runs `work` under `name` (`None`:
/// runs nothing under it, e.g. a suspended job). Reapplied only when it does
/// not, so the job and tier reconcilers, which run every minute, read one
/// object instead of listing every job and tier of the namespace each time.
pub async fn running(
    ctx: &Context,
    source: &ChainSource,
    name: &str,
    work: Option<&Work>,
) -> Result<Option<Deployment>, Error> {
    let api = Api::<Deployment>::namespaced(ctx.client.clone(), &source.namespace().unwrap_or_default());
    let node = api.get_opt(&node_name(source)).await?;
    if node.as_ref().and_then(|n| work_in(n, name)).as_ref() == work {
        return Ok(node);
    }
    apply(ctx, source).await?;
    Ok(api.get_opt(&node_name(source)).await?)
}

/// The work a node Deployment runs under `name`, from its worker spec.
fn work_in(node: &Deployment, name: &str) -> Option<Work> {
    let container = node.spec.as_ref()?.template.spec.as_ref()?.containers.first()?;
    let value = container.env.iter().flatten().find(|e| e.name == crate::worker::spec::SPEC_ENV)?.value.as_deref()?;
    let Work::Node(node) = WorkerSpec::from_json(value).ok()?.work else { return None };
    node.works.into_iter().find(|w| w.name == name).map(|w| w.work)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::example;

    #[test]
    fn an_embedded_sources_jobs_and_tiers_share_one_node_pod() {
        let source: ChainSource = example("chainsource-solana-embedded.yaml", |_| {});
        let on_devnet = |v: &mut serde_json::Value| {
            v["metadata"]["namespace"] = "chronicle".into();
            v["spec"]["sourceRef"]["name"] = "solana-devnet".into();
        };
        let job: IngestJob = example("ingestjob-follow.yaml", |v| {
            on_devnet(v);
            v["spec"]["source"]["rpc"]["endpoints"] = serde_json::json!([]);
            v["spec"]["targets"] = serde_json::json!(["canonical"]); // the devnet source has no metrics sink
        });
        let tier: CacheTier = example("cachetier.yaml", |v| {
            on_devnet(v);
            v["spec"]["upstream"]["endpoint"] = "devnet".into(); // the devnet source's endpoint
        });
        let node = node_workload(&source, &[job.clone()], &[tier.clone()], "chronicle:test").unwrap();
        assert_eq!(node.metadata.name.as_deref(), Some("solana-devnet-node"));
        let spec = node.spec.unwrap();
        assert_eq!((spec.replicas, spec.strategy.unwrap().type_.as_deref()), (Some(1), Some("Recreate")));
        let pod = spec.template.spec.unwrap();
        let container = &pod.containers[0];
        let value = container.env.iter().flatten().find(|e| e.name == crate::worker::spec::SPEC_ENV).unwrap();
        let Work::Node(node_spec) = WorkerSpec::from_json(value.value.as_deref().unwrap()).unwrap().work else {
            panic!("a node spec")
        };
        let names: Vec<&str> = node_spec.works.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["IngestJob/chronicle/mainnet-tip", "CacheTier/chronicle/mainnet-rpc"]);
        let Work::Serve(serve) = &node_spec.works[1].work else { panic!("serve") };
        assert_eq!(serve.cache.as_ref().unwrap().url.env, "CHRONICLE_CACHE_URL_MAINNET_RPC");
        assert_eq!(serve.api_keys_dir.as_deref(), Some("/var/run/secrets/chronicle/api-keys/mainnet-rpc"));
        assert!(container.env.iter().flatten().any(|e| e.name == "CHRONICLE_CACHE_URL_MAINNET_RPC"));
        assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 8899);
        let claim = pod.volumes.unwrap().into_iter().find(|v| v.name == "store").unwrap();
        assert_eq!(claim.persistent_volume_claim.unwrap().claim_name, "solana-devnet-store");
        // The job and the tier build no pods of their own.
        let workload = super::super::workload::ingest_workload(&job, &source, &[], "x").unwrap();
        assert_eq!(workload, super::super::workload::IngestWorkload::OnNode("solana-devnet-node".into()));
        let (deployment, service) = super::super::workload::cache_tier_workload(&tier, &source, "x").unwrap();
        assert!(deployment.is_none());
        assert_eq!(service.spec.unwrap().selector.unwrap(), node_labels(&source));
        // Nothing to run: no node.
        assert!(node_workload(&source, &[], &[], "x").is_none());
    }

    #[test]
    fn the_pod_monitor_scrapes_every_metrics_and_rpc_port_of_a_node_pod() {
        let source: ChainSource = example("chainsource-solana-embedded.yaml", |_| {});
        let tier = |name: &str, port: i64| -> CacheTier {
            example("cachetier.yaml", |v| {
                v["metadata"]["name"] = name.into();
                v["metadata"]["namespace"] = "chronicle".into();
                v["spec"]["sourceRef"]["name"] = "solana-devnet".into();
                v["spec"]["upstream"]["endpoint"] = "devnet".into();
                v["spec"]["server"]["port"] = port.into();
            })
        };
        let node = node_workload(&source, &[], &[tier("a", 8899), tier("b", 8900)], "x").unwrap();
        let pod = node.spec.unwrap().template.spec.unwrap();
        let ports: Vec<String> = pod.containers[0].ports.iter().flatten().filter_map(|p| p.name.clone()).collect();
        assert_eq!(ports, ["rpc", "rpc-1", "metrics"]);
        let monitor: serde_json::Value =
            serde_yaml::from_str(include_str!("../../config/prometheus/podmonitor.yaml")).unwrap();
        let keep = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["regex"].as_str().unwrap();
        // Prometheus anchors relabeling regexes at both ends.
        let keep = regex::Regex::new(&format!("^(?:{keep})$")).unwrap();
        assert!(ports.iter().all(|p| keep.is_match(p)), "{ports:?} against {keep}");
        assert!(!keep.is_match("store") && !keep.is_match("rpcx"));
    }
}
