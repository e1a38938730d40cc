//! `kubectl chronicle` (the `kubectl-chronicle` binary) against a real
//! Kubernetes API server (`e2e/envtest/`), with the kubeconfig it writes in
//! `KUBECONFIG`, as an operator would run it. The ChainSource and IngestJob
//! controllers run in-process: the source probes a real JSON-RPC peer serving
//! the recorded mainnet blocks and checks its store on the Bigtable
//! emulator, the jobs' progress comes from a real
//! PostgreSQL catalog the test commits to as workers do. The test plays the
//! Job controller and kubelet (Job status, a Pod) and, for the one CacheTier,
//! its controller's status (the hit ratio is measured from a real serve
//! replica in `api_server.rs`). Each command's output is printed: the README
//! shows it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

#[path = "envtest.rs"]
mod envtest;

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use chronicle::catalog::BatchOutcome;
use chronicle::crd::IngestJob;
use chronicle::crd::ingest_job::IngestPhase;
use envtest::{ApiServer, ROOT, api_with_crds, create, post, yaml_documents};

const NS: &str = "e2e";
const BACKFILL: &str = "mainnet-epoch-700";

/// Runs `kubectl-chronicle ARGS -n e2e`: success, stdout, stderr.
fn plugin(api: &ApiServer, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kubectl-chronicle"))
        .args(args)
        .args(["-n", NS])
        .env("KUBECONFIG", api.dir.path().join("kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run kubectl-chronicle");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned());
    println!("$ kubectl chronicle {} -n {NS}\n{stdout}{stderr}", args.join(" "));
    (output.status.success(), stdout, stderr)
}

fn example(file: &str) -> Value {
    yaml_documents(&Path::new(ROOT).join("examples").join(file)).remove(0)
}

/// Polls `check` every 100 ms until it holds, for at most a minute.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A touch wakes the controller now rather than at its next requeue.
async fn touch(jobs: &Api<IngestJob>, name: &str, value: &str) {
    let touch = json!({"metadata": {"annotations": {"e2e/touch": value}}});
    jobs.patch(name, &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
}

#[tokio::test]
async fn the_kubectl_plugin_reports_and_acts_on_a_chain_sources_resources() {
    use chronicle::controller::context::Context;
    use chronicle::controller::{chain_source, ingest_job, retention_policy, training_export};

    let postgres = support::Postgres::start();
    let api = api_with_crds().await;
    let client = api.client().await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chronicle-catalog"},
        "stringData": {"url": postgres.url()}});
    assert_eq!(post(&api, "/api/v1/namespaces/e2e/secrets", &secret).await.0, 201);
    // The chain: a JSON-RPC peer serving the recorded mainnet blocks, replayed
    // at slots past the backfill's range (its tip is the chain head).
    let peer = support::rpc_peer::RpcPeer::start(support::replayed(302_832_000, 64)).await;
    let head = 302_832_063;
    // The mainnet example with its endpoints on this machine: `triton` is the
    // peer, `public` a port nothing listens on; its store on the Bigtable emulator.
    let emulator = support::BigtableEmulator::start();
    support::bigtable_ledger(&emulator, "acme-data", "solana-ledger").await;
    let mut source = example("chainsource-solana-mainnet.yaml");
    source["spec"]["endpoints"] = json!([
        {"name": "triton", "url": peer.url()},
        {"name": "public", "url": format!("http://127.0.0.1:{}", support::free_port())},
    ]);
    for key in ["bigQuery", "lake", "metrics"] {
        source["spec"].as_object_mut().unwrap().remove(key);
    }
    source["spec"]["store"]["bigtable"] =
        json!({"project": "acme-data", "instance": "solana-ledger", "emulatorHost": emulator.host()});
    let mut follow = example("ingestjob-follow.yaml");
    follow["spec"]["targets"] = json!(["canonical"]);
    let mut backfill = example("ingestjob-backfill.yaml");
    backfill["spec"]["targets"] = json!(["canonical"]);
    let mut policy = example("retentionpolicy.yaml");
    policy["spec"]["sourceRef"]["name"] = json!("solana-mainnet");
    policy["spec"]["rules"] = json!([{"target": "canonical", "keepSlots": 1000000}]);
    let mut export = example("trainingexport.yaml");
    export["spec"]["sourceRef"]["name"] = json!("solana-mainnet");
    for object in [source, backfill, follow, example("cachetier.yaml"), policy, export] {
        let (status, answer) = create(&api, object).await;
        assert_eq!(status, 201, "{answer}");
    }

    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let (a, b, c, d) = (stop.clone(), stop.clone(), stop.clone(), stop.clone());
    let controllers = [
        tokio::spawn(chain_source::run(ctx.clone(), async move { a.cancelled().await })),
        tokio::spawn(ingest_job::run(ctx.clone(), async move { b.cancelled().await })),
        tokio::spawn(retention_policy::run(ctx.clone(), async move { c.cancelled().await })),
        tokio::spawn(training_export::run(ctx, async move { d.cancelled().await })),
    ];
    let jobs: Api<IngestJob> = Api::namespaced(client.clone(), NS);
    let sources_api: Api<chronicle::crd::ChainSource> = Api::namespaced(client.clone(), NS);
    eventually("the ChainSource's probe found the chain head", || async {
        sources_api.get("solana-mainnet").await.unwrap().status.is_some_and(|s| s.chain_head == Some(head))
    })
    .await;

    // The workers' part: shard 0 of the backfill commits a batch with two
    // gaps (the peer's errors, as the worker records them), then repairs one;
    // the follower is three slots behind the head.
    let catalog = chronicle::catalog::open(&postgres.url()).await.unwrap();
    let job = jobs.get(BACKFILL).await.unwrap();
    let key = chronicle::controller::workload::catalog_job(&job);
    let range = chronicle::worker::ingest::shard_range(302_400_000, 302_831_999, 0, 8).unwrap();
    catalog.shard(&key, range).await.unwrap();
    let gap = |slot: u64| (slot, format!("getBlock {slot}: node error -32004: Block not available for slot {slot}"));
    let first = BatchOutcome {
        checkpoint: Some(range.start + 49),
        written: (range.start..range.start + 45).filter(|s| ![range.start + 7, range.start + 31].contains(s)).collect(),
        bytes: 43 * 180_000,
        skipped: (range.start + 45..range.start + 50).collect(),
        gaps: vec![gap(range.start + 7), gap(range.start + 31)],
        ..BatchOutcome::default()
    };
    catalog.commit(&key, 0, &first).await.unwrap();
    let repair = BatchOutcome {
        checkpoint: Some(range.start + 99),
        written: (range.start + 50..range.start + 100).chain([range.start + 7]).collect(),
        bytes: 51 * 180_000,
        repaired: vec![range.start + 7],
        ..BatchOutcome::default()
    };
    catalog.commit(&key, 0, &repair).await.unwrap();
    let follower = jobs.get("mainnet-tip").await.unwrap();
    let follow_key = chronicle::controller::workload::catalog_job(&follower);
    let tail = chronicle::catalog::ShardRange { shard: 0, start: head - 60, end: u64::MAX >> 1 }; // as a follower registers it
    catalog.shard(&follow_key, tail).await.unwrap();
    let outcome = BatchOutcome {
        checkpoint: Some(head - 3),
        written: (head - 60..=head - 3).collect(),
        ..BatchOutcome::default()
    };
    catalog.commit(&follow_key, 0, &outcome).await.unwrap();

    // The Job controller's part: the backfill's Job runs its eight workers.
    eventually("the backfill's Job", || async {
        jobs.get(BACKFILL).await.unwrap().status.is_some_and(|s| s.workload.is_some())
    })
    .await;
    let workload = jobs.get(BACKFILL).await.unwrap().status.unwrap().workload.unwrap();
    let batch: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), NS);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let running = json!({"status": {"active": 8, "ready": 8, "startTime": now}});
    batch.patch_status(&workload, &PatchParams::default(), &Patch::Merge(&running)).await.unwrap();
    // The CacheTier controller's part (measured for real in api_server.rs).
    let tiers: Api<chronicle::crd::CacheTier> = Api::namespaced(client.clone(), NS);
    let served = json!({"status": {"readyReplicas": 3, "hitRatio": "0.93", "keys": 41_877,
        "endpoint": "http://mainnet-rpc-rpc.e2e.svc:8899", "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Serving", "message": "3/3 replicas ready",
            "lastTransitionTime": now, "observedGeneration": 1}]}});
    tiers.patch_status("mainnet-rpc", &PatchParams::default(), &Patch::Merge(&served)).await.unwrap();
    let exports: Api<chronicle::crd::TrainingExport> = Api::namespaced(client.clone(), NS);
    let policies: Api<chronicle::crd::RetentionPolicy> = Api::namespaced(client.clone(), NS);
    touch(&jobs, BACKFILL, "progress").await;
    touch(&jobs, "mainnet-tip", "progress").await;
    eventually("the jobs' status shows the catalog's progress", || async {
        let backfill = jobs.get(BACKFILL).await.unwrap().status.unwrap_or_default();
        let tip = jobs.get("mainnet-tip").await.unwrap().status.unwrap_or_default();
        let export = exports.get("defi-2025-01").await.unwrap().status.and_then(|s| s.phase);
        let policy = policies.get("hot-30-days").await.unwrap().status;
        backfill.checkpoint == Some(range.start + 99)
            && backfill.phase == Some(IngestPhase::Running)
            && tip.lag_slots == Some(3)
            && export.is_some()
            && policy.is_some()
    })
    .await;

    // status: every resource of the source, from what the controllers published.
    let (ok, out, err) = plugin(&api, &["status", "solana-mainnet"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("ChainSource e2e/solana-mainnet (solana mainnet-beta): Ready True (EndpointsHealthy)"),
        "{out}"
    );
    assert!(out.contains(&format!("chain head {head}")), "{out}");
    let line = |name: &str| line_of(&out, name);
    let row: Vec<String> = line(BACKFILL).split_whitespace().map(String::from).collect();
    assert_eq!(
        row[..6],
        ["mainnet-epoch-700", "backfill", "Running", &(range.start + 99).to_string(), "-", "1"],
        "{out}"
    );
    let row: Vec<String> = line("mainnet-tip").split_whitespace().map(String::from).collect();
    assert_eq!(row[..6], ["mainnet-tip", "follow", "Pending", &(head - 3).to_string(), "3", "0"], "{out}");
    assert!(line("mainnet-rpc").contains("3/3") && line("mainnet-rpc").contains("0.93"), "{out}");
    assert!(line("hot-30-days").contains("15 3 * * *"), "{out}");
    assert!(line("defi-2025-01").contains("Pending"), "{out}");
    // What is wrong is said under the tables, with the controller's reason.
    let problems = out.split("problems:\n").nth(1).unwrap_or_default();
    assert!(problems.contains("retentionpolicy/hot-30-days: Degraded (GuardJobNotFound)"), "{out}");
    let triton = line("triton");
    assert!(triton.contains("true") && triton.contains(&head.to_string()), "{out}");
    assert!(line("public").contains("false"), "the closed port is an unhealthy endpoint: {out}");

    // gaps: counts, and each open gap with why.
    let (ok, out, err) = plugin(&api, &["gaps", BACKFILL]);
    assert!(ok, "{err}");
    assert!(out.contains("2 gaps found, 1 repaired, 1 open"), "{out}");
    let open = range.start + 31;
    assert!(out.lines().any(|l| l.starts_with(&open.to_string()) && l.contains("Block not available")), "{out}");
    assert!(!out.contains(&format!("{}   ", range.start + 7)), "a repaired gap is not listed: {out}");

    // pause / resume: spec.suspend, patched under the plugin's field manager;
    // the controller reports the phase.
    let (ok, out, err) = plugin(&api, &["pause", BACKFILL]);
    assert!(ok && out.contains("paused"), "{out}{err}");
    let paused = jobs.get(BACKFILL).await.unwrap();
    assert!(paused.spec.suspend);
    let managers = paused.metadata.managed_fields.unwrap_or_default();
    assert!(managers.iter().any(|m| m.manager.as_deref() == Some("kubectl-chronicle")), "{managers:?}");
    eventually("a paused job's phase is Suspended", || async {
        jobs.get(BACKFILL).await.unwrap().status.is_some_and(|s| s.phase == Some(IngestPhase::Suspended))
    })
    .await;
    let (_, out, _) = plugin(&api, &["status", "solana-mainnet"]);
    assert!(line_of(&out, BACKFILL).contains("Suspended"), "{out}");
    let (ok, out, _) = plugin(&api, &["pause", BACKFILL]);
    assert!(ok && out.contains("already paused"), "{out}");
    // A GitOps tool whose server-side-applied manifest declares suspend:
    // true would undo a resume at its next sync: refused without --force.
    let gitops = json!({"apiVersion": "chronicle.dev/v1alpha1", "kind": "IngestJob", "metadata": {"name": "mainnet-tip"},
        "spec": {"suspend": true}});
    jobs.patch("mainnet-tip", &PatchParams::apply("argocd-controller").force(), &Patch::Apply(&gitops)).await.unwrap();
    let (ok, _, err) = plugin(&api, &["resume", "mainnet-tip"]);
    assert!(!ok && err.contains("argocd-controller") && err.contains("--force"), "{err}");
    let (ok, out, err) = plugin(&api, &["resume", "mainnet-tip", "--force"]);
    assert!(ok && out.contains("resumed") && out.contains("argocd-controller also declares"), "{out}{err}");
    assert!(!jobs.get("mainnet-tip").await.unwrap().spec.suspend);
    let (ok, out, err) = plugin(&api, &["resume", BACKFILL]);
    assert!(ok && out.contains("resumed: its workers resume from their checkpoints"), "{out}{err}");
    assert!(!jobs.get(BACKFILL).await.unwrap().spec.suspend);

    // backfill: a new IngestJob, judged by the API server's rules.
    let (ok, out, err) =
        plugin(&api, &["backfill", "solana-mainnet", "--from", "302832000", "--to", "302832063", "--parallelism", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("ingestjob.chronicle.dev/solana-mainnet-backfill-302832000-302832063 created"), "{out}");
    let created = jobs.get("solana-mainnet-backfill-302832000-302832063").await.unwrap();
    let range = created.spec.range.clone().unwrap();
    assert_eq!((range.start_slot, range.end_slot, created.spec.parallelism), (302_832_000, Some(302_832_063), 2));
    let (ok, _, err) = plugin(&api, &["backfill", "solana-mainnet", "--from", "10", "--to", "5"]);
    assert!(!ok && err.contains("--from 10 is after --to 5"), "{err}");
    let (ok, _, err) = plugin(&api, &["backfill", "solana-mainnet", "--from", "1", "--to", "2", "--parallelism", "3"]);
    assert!(
        !ok && err.contains("parallelism must not exceed the number of slots in range"),
        "the CEL rule's message: {err}"
    );
    let (ok, _, err) = plugin(&api, &["backfill", "solana-testnet", "--from", "1", "--to", "2"]);
    assert!(!ok && err.contains("ChainSource e2e/solana-testnet not found"), "{err}");

    // logs: the job's pods by the owner label. This API server has no
    // kubelet: an unscheduled pod has no logs yet, and a scheduled one's
    // log request reaches the API server, which cannot reach its node.
    let (ok, out, err) = plugin(&api, &["logs", BACKFILL]);
    assert!(ok && out.contains("no pods for IngestJob mainnet-epoch-700"), "{out}{err}");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    assert_eq!(post(&api, "/api/v1/namespaces/e2e/serviceaccounts", &account).await.0, 201);
    let pod = |name: &str, node: Option<&str>| {
        let mut spec = json!({"automountServiceAccountToken": false, "containers": [{"name": "worker", "image": "chronicle:e2e"}]});
        if let Some(node) = node {
            spec["nodeName"] = json!(node);
        }
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"chronicle.dev/ingestjob": BACKFILL}}, "spec": spec}))
        .unwrap()
    };
    pods.create(&Default::default(), &pod("mainnet-epoch-700-0-x7k2p", None)).await.unwrap();
    let (ok, out, err) = plugin(&api, &["logs", BACKFILL]);
    assert!(ok && out.contains("pod/mainnet-epoch-700-0-x7k2p") && out.contains("not yet scheduled"), "{out}{err}");
    pods.create(&Default::default(), &pod("mainnet-epoch-700-1-q9v4m", Some("worker-a"))).await.unwrap();
    let started = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "worker", "image": "chronicle:e2e",
        "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": now}}}]}});
    pods.patch_status("mainnet-epoch-700-1-q9v4m", &PatchParams::default(), &Patch::Merge(&started)).await.unwrap();
    let (ok, _, err) = plugin(&api, &["logs", BACKFILL]);
    assert!(!ok && err.contains("pod/mainnet-epoch-700-1-q9v4m") && err.contains("worker-a"), "{err}");

    stop.cancel();
    for controller in controllers {
        controller.await.unwrap();
    }
}

fn line_of(out: &str, name: &str) -> String {
    out.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default().to_string()
}
