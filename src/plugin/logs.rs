//! `logs NAME`: the logs of the pods working for a resource, found by the
//! owner label every child carries (`chronicle.dev/<kind>=NAME`); a job of an
//! embedded source runs in its source's node pod, whose logs are shown then.

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, ListParams, LogParams};
use kube::{Api, Client, ResourceExt};

use super::{PluginError, get};
use crate::controller::workload::owner_label;
use crate::crd::{CacheTier, IngestJob, RetentionPolicy, TrainingExport};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The resource's name.
    pub name: String,
    /// The resource's kind.
    #[arg(long, value_enum, default_value = "ingest-job")]
    pub kind: OwnerKind,
    /// Stream new lines as they come.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines from the end of each pod's log.
    #[arg(long)]
    pub tail: Option<i64>,
    /// The previous run's log (of a container that restarted, e.g. crash-looping).
    #[arg(long, conflicts_with = "follow")]
    pub previous: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OwnerKind {
    IngestJob,
    CacheTier,
    RetentionPolicy,
    TrainingExport,
}

impl OwnerKind {
    fn resource(self) -> ApiResource {
        match self {
            Self::IngestJob => ApiResource::erase::<IngestJob>(&()),
            Self::CacheTier => ApiResource::erase::<CacheTier>(&()),
            Self::RetentionPolicy => ApiResource::erase::<RetentionPolicy>(&()),
            Self::TrainingExport => ApiResource::erase::<TrainingExport>(&()),
        }
    }
}

/// The pods of `owner`, and what they are (for the header).
async fn pods(client: &Client, namespace: &str, args: &LogsArgs) -> Result<(Vec<Pod>, String), PluginError> {
    let resource = args.kind.resource();
    let owners: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let owner = get(&owners, &resource.kind, namespace, &args.name).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{}={}", owner_label(&resource.kind), args.name);
    let pods = api.list(&ListParams::default().labels(&selector)).await?.items;
    if !pods.is_empty() {
        return Ok((pods, format!("{} {}", resource.kind, args.name)));
    }
    // The jobs and tiers of an embedded source run in its node's pod.
    let source = owner.data["spec"]["sourceRef"]["name"].as_str().unwrap_or_default().to_string();
    if !source.is_empty() {
        let selector = format!("{}={source},app.kubernetes.io/component=node", owner_label("ChainSource"));
        let pods = api.list(&ListParams::default().labels(&selector)).await?.items;
        if !pods.is_empty() {
            return Ok((pods, format!("the node of ChainSource {source}, shared by its jobs and tiers")));
        }
    }
    Ok((Vec::new(), format!("{} {}", resource.kind, args.name)))
}

/// Why a pod has no logs to give yet, if it has none. A container that
/// ran before (restarted, crash-looping: waiting again) has a log.
fn not_started(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
    let scheduled = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    let ran = |c: &k8s_openapi::api::core::v1::ContainerStatus| {
        c.restart_count > 0
            || c.state.as_ref().is_some_and(|s| s.waiting.is_none())
            || c.last_state.as_ref().is_some_and(|s| s.terminated.is_some())
    };
    let started = status.and_then(|s| s.container_statuses.as_ref()).is_some_and(|c| c.iter().any(ran));
    match (scheduled, started) {
        (false, _) => Some(format!("{phase}, not yet scheduled to a node")),
        (true, false) => Some(format!("{phase}, its container has not started")),
        _ => None,
    }
}

pub async fn print(client: &Client, namespace: &str, args: &LogsArgs) -> Result<(), PluginError> {
    let (pods, what) = pods(client, namespace, args).await?;
    if pods.is_empty() {
        println!("no pods for {what} in namespace {namespace} (none started yet, or its work is done and gone)");
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params =
        LogParams { follow: args.follow, tail_lines: args.tail, previous: args.previous, ..LogParams::default() };
    let mut streams = Vec::new();
    let mut unreadable = Vec::new();
    for pod in &pods {
        let name = pod.name_any();
        if let Some(why) = not_started(pod) {
            println!("==> pod/{name} ({what}): {why}: no logs yet");
            continue;
        }
        // One pod whose log cannot be read does not hide the others'.
        let failed = |e: kube::Error| format!("pod/{name}: {}", super::describe(&e));
        if !args.follow {
            println!("==> pod/{name} ({what}) <==");
            match api.logs(&name, &params).await {
                Ok(text) => print!("{text}"),
                Err(e) => unreadable.push(failed(e)),
            }
            continue;
        }
        match api.log_stream(&name, &params).await {
            Ok(lines) => {
                let name = name.clone();
                streams.push(lines.lines().map_ok(move |line| format!("[pod/{name}] {line}")).boxed())
            }
            Err(e) => unreadable.push(failed(e)),
        }
    }
    if !unreadable.is_empty() && streams.is_empty() {
        return Err(PluginError::Logs(unreadable.join("\n")));
    }
    for failure in &unreadable {
        eprintln!("cannot read the log of {failure}");
    }
    // Following several pods: their lines interleave as they come, each prefixed.
    let mut merged = futures::stream::select_all(streams);
    while let Some(line) = merged.next().await {
        println!("{}", line.map_err(|e| PluginError::Connect(e.to_string()))?);
    }
    Ok(())
}
