//! Against a real Kubernetes API server (`e2e/envtest/`: kube-apiserver and
//! etcd built from their Go modules, as envtest does; each test starts its
//! own): the generated CRDs install, every example is accepted, every
//! `examples/invalid/*` file is rejected with its rule's message — the same
//! verdicts as the in-process validator (`tests/crds.rs`) — and the
//! controller, in-process and as installed by the chart, does its work.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "envtest.rs"]
mod envtest;

use envtest::{ApiServer, ROOT, api_with_crds, create, files, post, yaml_documents};

#[tokio::test]
async fn the_api_server_accepts_the_crds_and_judges_examples_as_we_do() {
    let api = api_with_crds().await;

    let mut accepted = 0;
    let examples = files("examples").into_iter().chain(files("examples/scenarios")).chain(files("examples/dev"));
    for file in examples {
        for object in yaml_documents(&file).into_iter().filter(|o| o["apiVersion"] == "chronicle.dev/v1alpha1") {
            let name = object["metadata"]["name"].clone();
            let (status, answer) = create(&api, object).await;
            assert_eq!(status, 201, "{} {name}: {answer}", file.display());
            accepted += 1;
        }
    }
    assert!(accepted >= 15, "examples created: {accepted}");

    for file in files("examples/invalid") {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text.lines().find_map(|l| l.strip_prefix("# expect: ")).unwrap();
        let object = yaml_documents(&file).remove(0);
        let (status, answer) = create(&api, object).await;
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(status == 422 || status == 400, "{}: accepted ({status})", file.display());
        assert!(message.contains(expected), "{}: expected {expected:?}, the server said {message:?}", file.display());
    }
}

/// The IngestJob controller against the real API server: a backfill becomes
/// an Indexed Job owned by the IngestJob; status says so with
/// `observedGeneration`; when the Job completes (the test plays the Job
/// controller: none runs in envtest) the IngestJob succeeds.
#[tokio::test]
async fn the_controller_runs_a_backfill_as_an_indexed_job() {
    use chronicle::controller::context::Context;
    use chronicle::controller::ingest_job::run;
    use k8s_openapi::api::batch::v1::Job;
    use kube::Api;
    use kube::api::{Patch, PatchParams};

    let api = api_with_crds().await;
    let client = api.client().await;
    for file in ["examples/chainsource-solana-mainnet.yaml", "examples/ingestjob-backfill.yaml"] {
        let object = yaml_documents(&Path::new(ROOT).join(file)).remove(0);
        let (status, answer) = create(&api, object).await;
        assert_eq!(status, 201, "{file}: {answer}");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let token = stop.clone();
    let controller = tokio::spawn(run(ctx, async move { token.cancelled().await }));

    let jobs: Api<Job> = Api::namespaced(client.clone(), "e2e");
    let ingest: Api<chronicle::crd::IngestJob> = Api::namespaced(client.clone(), "e2e");
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        if let Some(job) = jobs.get_opt("mainnet-epoch-700-ingest").await.unwrap() {
            break job;
        }
        assert!(Instant::now() < deadline, "no Job was created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("IngestJob", "mainnet-epoch-700", Some(true))
    );
    assert_eq!(job.spec.as_ref().unwrap().completions, Some(8));
    let status = loop {
        let current = ingest.get("mainnet-epoch-700").await.unwrap();
        if let Some(status) = current.status.filter(|s| s.common.observed_generation == current.metadata.generation) {
            break status;
        }
        assert!(Instant::now() < deadline, "no status was written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.workload.as_deref(), Some("mainnet-epoch-700-ingest"));
    let progressing = status.common.conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(progressing.status, "True");
    // The example's metrics target reaches the workers: the InfluxDB token by
    // reference to its Secret, and every worker serves its metrics port.
    let pod = job.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let container = &pod.containers[0];
    let token = container.env.iter().flatten().find(|e| e.name == "CHRONICLE_METRICS_TOKEN").unwrap();
    let selector = token.value_from.clone().unwrap().secret_key_ref.unwrap();
    assert_eq!(
        (selector.name.as_str(), selector.key.as_str(), token.value.as_deref()),
        ("influx-token", "token", None)
    );
    let port = container.ports.iter().flatten().find(|p| p.name.as_deref() == Some("metrics")).unwrap();
    assert_eq!(port.container_port, 9090);

    // A CacheTier serving the source appears: the job is reconciled again and
    // its workers get the tier's Redis to drop cached answers as blocks land.
    let tier = yaml_documents(&Path::new(ROOT).join("examples/cachetier.yaml")).remove(0);
    assert_eq!(create(&api, tier).await.0, 201);
    loop {
        let job = jobs.get_opt("mainnet-epoch-700-ingest").await.unwrap();
        let container = job.and_then(|j| j.spec?.template.spec).map(|p| p.containers[0].clone());
        let envs = container.and_then(|c| c.env).unwrap_or_default();
        if envs.iter().any(|e| e.name == "CHRONICLE_CACHE_URL_MAINNET_RPC") {
            break;
        }
        assert!(Instant::now() < deadline, "the new tier never reached the job's workers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The Job completes, as the Job controller would report it.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let complete = json!({"status": {"succeeded": 8, "startTime": now, "completionTime": now, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
        {"type": "Complete", "status": "True", "lastTransitionTime": now}]}});
    jobs.patch_status("mainnet-epoch-700-ingest", &PatchParams::default(), &Patch::Merge(&complete)).await.unwrap();
    loop {
        let status = ingest.get("mainnet-epoch-700").await.unwrap().status.unwrap_or_default();
        if status.phase == Some(chronicle::crd::ingest_job::IngestPhase::Succeeded) {
            let ready = status.common.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
            assert_eq!(ready.status, "True");
            break;
        }
        assert!(Instant::now() < deadline, "the IngestJob never saw its Job complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    controller.await.unwrap();
}

/// The CacheTier and ChainSource controllers on the real API server: a tier
/// becomes an owned serve Deployment and Service; a source whose Secrets are
/// missing says so (without values), then reports its endpoints.
#[tokio::test]
async fn the_controller_serves_cache_tiers_and_checks_sources() {
    use chronicle::controller::context::Context;
    use chronicle::controller::{cache_tier, chain_source};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use kube::Api;

    let api = api_with_crds().await;
    let client = api.client().await;
    // A real serve replica (embedded store with one real block, Redis cache)
    // on a free loopback port: the tier's port, so the controller reads its
    // /metrics as it would a pod's.
    let redis = support::Redis::start();
    let replica = serve_replica(&redis).await;
    let mut tier = yaml_documents(&Path::new(ROOT).join("examples/cachetier.yaml")).remove(0);
    tier["spec"]["server"]["port"] = json!(replica.port());
    for object in [yaml_documents(&Path::new(ROOT).join("examples/chainsource-solana-mainnet.yaml")).remove(0), tier] {
        let (status, answer) = create(&api, object).await;
        assert_eq!(status, 201, "{answer}");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let (a, b) = (stop.clone(), stop.clone());
    let tiers = tokio::spawn(cache_tier::run(ctx.clone(), async move { a.cancelled().await }));
    let sources = tokio::spawn(chain_source::run(ctx, async move { b.cancelled().await }));

    let deadline = Instant::now() + Duration::from_secs(60);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "e2e");
    let deployment = loop {
        if let Some(d) = deployments.get_opt("mainnet-rpc-rpc").await.unwrap() {
            break d;
        }
        assert!(Instant::now() < deadline, "no serve Deployment");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(deployment.metadata.owner_references.as_ref().unwrap()[0].kind, "CacheTier");
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(3));
    let service = Api::<Service>::namespaced(client.clone(), "e2e").get("mainnet-rpc-rpc").await.unwrap();
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, i32::from(replica.port()));

    // Served metrics: one ready pod (the test plays kubelet: a Pod of the
    // Deployment's labels, Ready, at 127.0.0.1), one miss and one hit.
    let labels = deployment.spec.as_ref().unwrap().selector.match_labels.clone().unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "e2e");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mainnet-rpc-rpc-0", "labels": labels},
        "spec": {"automountServiceAccountToken": false, "containers": [{"name": "serve", "image": "chronicle:e2e"}]}});
    // The namespace's default ServiceAccount, as the ServiceAccount controller would make it.
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    assert_eq!(post(&api, "/api/v1/namespaces/e2e/serviceaccounts", &account).await.0, 201);
    pods.create(&Default::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let running = json!({"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
    let merge = kube::api::Patch::Merge(&running);
    pods.patch_status("mainnet-rpc-rpc-0", &Default::default(), &merge).await.unwrap();
    for _ in 0..2 {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "getBlock", "params": [replica.slot]});
        let answer: Value =
            reqwest::Client::new().post(replica.url()).json(&call).send().await.unwrap().json().await.unwrap();
        assert!(answer["result"].is_object(), "{answer}");
    }
    let ready = json!({"status": {"replicas": 3, "readyReplicas": 1}});
    deployments.patch_status("mainnet-rpc-rpc", &Default::default(), &kube::api::Patch::Merge(&ready)).await.unwrap();
    let tiers_api: Api<chronicle::crd::CacheTier> = Api::namespaced(client.clone(), "e2e");
    loop {
        let status = tiers_api.get("mainnet-rpc").await.unwrap().status.unwrap_or_default();
        if status.hit_ratio.is_some() {
            assert_eq!((status.ready_replicas, status.hit_ratio.as_deref()), (1, Some("0.50")));
            break;
        }
        assert!(Instant::now() < deadline, "no hit ratio in the CacheTier's status");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = table(&client, "e2e", "cachetiers").await;
    assert_eq!(rows[0]["HitRatio"], "0.50");

    let sources_api: Api<chronicle::crd::ChainSource> = Api::namespaced(client.clone(), "e2e");
    let status = loop {
        if let Some(status) = sources_api.get("solana-mainnet").await.unwrap().status {
            break status;
        }
        assert!(Instant::now() < deadline, "no ChainSource status");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ready = status.common.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "SecretMissing"));
    assert!(ready.message.contains("catalog: chronicle-catalog/url"), "{}", ready.message);
    assert_eq!(status.endpoints.len(), 2);
    stop.cancel();
    tiers.await.unwrap();
    sources.await.unwrap();
}

/// Two `chronicle controller` processes: only the Lease holder leads; when it
/// is killed the other takes over within the lease time and reconciles.
#[tokio::test]
async fn one_leader_and_a_takeover_within_the_lease_time() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::Api;

    let api = api_with_crds().await;
    let kubeconfig_path = api.dir.path().join("kubeconfig");
    let client = api.client().await;
    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let mut replicas: Vec<std::process::Child> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            Command::new(env!("CARGO_BIN_EXE_chronicle"))
                .args(["controller", "--image", "chronicle:e2e", "--lease-namespace", "e2e", "--lease-seconds", "3"])
                .args(["--identity", &format!("replica-{i}"), "--health-listen", &format!("127.0.0.1:{port}")])
                .env("KUBECONFIG", &kubeconfig_path)
                .env("RUST_LOG", "warn")
                .spawn()
                .unwrap()
        })
        .collect();
    let leaders = || async {
        let mut out = Vec::new();
        for port in &ports {
            let answer = client_get(&format!("http://127.0.0.1:{port}/leader")).await;
            out.push(answer.as_deref() == Some("true"));
        }
        out
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let now = leaders().await;
        assert!(now.iter().filter(|l| **l).count() <= 1, "two leaders at once: {now:?}");
        if let Some(i) = now.iter().position(|l| *l) {
            break i;
        }
        assert!(Instant::now() < deadline, "nobody became the leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Some time as leader and standby: still exactly one.
    for _ in 0..10 {
        assert_eq!(leaders().await.iter().filter(|l| **l).count(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replicas[first].kill().unwrap(); // SIGKILL: no release
    replicas[first].wait().unwrap();
    let killed = Instant::now();
    let other = 1 - first;
    loop {
        if leaders().await[other] {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "no takeover within the lease time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed.elapsed() < Duration::from_secs(3 + 3), "takeover took {:?}", killed.elapsed());
    // The new leader reconciles.
    for file in ["examples/chainsource-solana-mainnet.yaml", "examples/cachetier.yaml"] {
        let (status, answer) = create(&api, yaml_documents(&Path::new(ROOT).join(file)).remove(0)).await;
        assert_eq!(status, 201, "{file}: {answer}");
    }
    let deployments: Api<Deployment> = Api::namespaced(client, "e2e");
    while deployments.get_opt("mainnet-rpc-rpc").await.unwrap().is_none() {
        assert!(killed.elapsed() < Duration::from_secs(40), "the new leader does not reconcile");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for replica in &mut replicas {
        let _ = replica.kill();
        let _ = replica.wait();
    }
}

async fn client_get(url: &str) -> Option<String> {
    reqwest::get(url).await.ok()?.text().await.ok()
}

#[path = "../tests/support/helm.rs"]
mod helm;

/// Installs the chart as Helm renders it (CRDs are in already), by
/// server-side apply, into namespace `chronicle-system`.
async fn install_chart(api: &ApiServer, client: &kube::Client) {
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "chronicle-system"}});
    post(api, "/api/v1/namespaces", &namespace).await;
    for object in helm::documents(&helm::render(&[]).unwrap()) {
        if object["kind"] != "CustomResourceDefinition" {
            apply_any(client, "chronicle-system", &object).await;
        }
    }
}

/// A `kubectl get` of `plural` in `namespace`, as the server renders it
/// from the printer columns: one map of column name to cell per row.
async fn table(client: &kube::Client, namespace: &str, plural: &str) -> Vec<std::collections::HashMap<String, Value>> {
    let url = format!("/apis/chronicle.dev/v1alpha1/namespaces/{namespace}/{plural}");
    let request = http::Request::get(url)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let answer: Value = client.request(request).await.unwrap();
    let columns: Vec<String> =
        answer["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().into()).collect();
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| columns.iter().cloned().zip(row["cells"].as_array().unwrap().iter().cloned()).collect())
        .collect()
}

/// The whole operator as installed: the chart's RBAC on a real API server,
/// `chronicle controller` as a process under the chart's ServiceAccount (a
/// token from the TokenRequest API, so every call is authorized by the
/// chart's rules), the examples applied. Checked: owned children, status and
/// printer columns, Events (once per change), a spec change that replaces a
/// Job, a mode change that swaps Job for Deployment, deletion cleaning up
/// children (no garbage collector runs here: the controller's sweep does
/// it), /metrics, and a clean SIGTERM. The test plays kubelet and the
/// Deployment controller by patching a Deployment's status.
#[tokio::test]
async fn the_chart_installs_and_the_controller_works_under_its_rbac() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Patch, PatchParams};
    use kube::{Api, ResourceExt};

    let api = api_with_crds().await;
    let client = api.client().await;
    install_chart(&api, &client).await;

    // The controller's identity: the chart's ServiceAccount.
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}});
    let (status, answer) =
        post(&api, "/api/v1/namespaces/chronicle-system/serviceaccounts/chronicle-controller/token", &request).await;
    assert_eq!(status, 201, "{answer}");
    let token = answer["status"]["token"].as_str().unwrap();
    let admin = std::fs::read_to_string(api.dir.path().join("kubeconfig")).unwrap();
    let kubeconfig = api.dir.path().join("controller.kubeconfig");
    std::fs::write(&kubeconfig, admin.replace(&api.token, token)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log_path = api.dir.path().join("controller.log");
    let mut controller = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["controller", "--image", "chronicle:e2e", "--lease-namespace", "chronicle-system"])
        .args(["--identity", "chronicle-controller-0", "--orphan-sweep-seconds", "1"])
        .args(["--health-listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(90);
    let waiting = |what: &str| {
        assert!(Instant::now() < deadline, "{what}; the controller said:\n{}", log());
        tokio::time::sleep(Duration::from_millis(100))
    };

    // The endpoint token the controller reads to probe with: never logged.
    let rpc_token = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "solana-rpc-token"},
        "stringData": {"token": format!("rpc-token-{}", support::SECRET_MARK)}});
    assert_eq!(post(&api, "/api/v1/namespaces/e2e/secrets", &rpc_token).await.0, 201);
    for file in
        ["examples/chainsource-solana-mainnet.yaml", "examples/ingestjob-backfill.yaml", "examples/cachetier.yaml"]
    {
        let (status, answer) = create(&api, yaml_documents(&Path::new(ROOT).join(file)).remove(0)).await;
        assert_eq!(status, 201, "{file}: {answer}");
    }
    // Then every other example (one file per resource).
    for file in files("examples") {
        let object = yaml_documents(&file).remove(0);
        if ["solana-mainnet", "mainnet-epoch-700", "mainnet-rpc"]
            .contains(&object["metadata"]["name"].as_str().unwrap())
        {
            continue;
        }
        let (status, answer) = create(&api, object).await;
        assert_eq!(status, 201, "{}: {answer}", file.display());
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), "e2e");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "e2e");
    let services: Api<Service> = Api::namespaced(client.clone(), "e2e");
    let ingest: Api<chronicle::crd::IngestJob> = Api::namespaced(client.clone(), "e2e");
    let tiers: Api<chronicle::crd::CacheTier> = Api::namespaced(client.clone(), "e2e");

    // Children, owned by their resource.
    let job = loop {
        if let Some(job) = jobs.get_opt("mainnet-epoch-700-ingest").await.unwrap() {
            break job;
        }
        waiting("no backfill Job").await;
    };
    let owner = ingest.get("mainnet-epoch-700").await.unwrap();
    let reference = &job.owner_references()[0];
    assert_eq!((reference.uid.as_str(), reference.controller), (owner.uid().unwrap().as_str(), Some(true)));
    assert_eq!(job.spec.as_ref().unwrap().completions, Some(8));
    while deployments.get_opt("mainnet-rpc-rpc").await.unwrap().is_none()
        || services.get_opt("mainnet-rpc-rpc").await.unwrap().is_none()
    {
        waiting("no serve Deployment and Service").await;
    }

    // The embedded store's claim: applied from the spec, labelled, and not
    // owned (the data outlives its ChainSource).
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(client.clone(), "e2e");
    let claim = loop {
        if let Some(claim) = claims.get_opt("solana-devnet-store").await.unwrap() {
            break claim;
        }
        waiting("no claim for the embedded store").await;
    };
    let spec = claim.spec.as_ref().unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast-ssd"));
    assert_eq!(spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0, "200Gi");
    assert!(claim.metadata.owner_references.is_none());
    // An epoch-archive backfill runs as an Indexed Job, one shard per worker.
    loop {
        if let Some(job) = jobs.get_opt("mainnet-epoch-700-archive-ingest").await.unwrap() {
            assert_eq!(job.spec.unwrap().completions, Some(4));
            break;
        }
        waiting("no Job for the archive backfill").await;
    }
    // A BigQuery history job runs as a backfill Job reading the source's dataset.
    loop {
        if let Some(job) = jobs.get_opt("mainnet-bigquery-history-ingest").await.unwrap() {
            let pod = job.spec.unwrap().template.spec.unwrap();
            assert!(pod.volumes.iter().flatten().any(|v| v.name == "bigquery-key"), "the key is mounted");
            break;
        }
        waiting("no Job for the BigQuery history").await;
    }
    // Following the dataset is a Deployment, its poll interval in the spec.
    loop {
        if let Some(deployment) = deployments.get_opt("mainnet-bigquery-follow-ingest").await.unwrap() {
            let pod = deployment.spec.unwrap().template.spec.unwrap();
            let spec = pod.containers[0].env.iter().flatten().find(|e| e.name == "CHRONICLE_WORKER_SPEC").unwrap();
            assert!(spec.value.as_deref().unwrap().contains(r#""pollInterval":"5m""#), "{spec:?}");
            break;
        }
        waiting("no Deployment following the BigQuery dataset").await;
    }
    // A replication runs as an Indexed Job reading its origin with the origin's key.
    loop {
        if let Some(job) = jobs.get_opt("adopt-legacy-archive-ingest").await.unwrap() {
            let pod = job.spec.unwrap().template.spec.unwrap();
            let volumes = pod.volumes.unwrap_or_default();
            let origin = volumes.iter().find(|v| v.name == "origin-key").expect("the origin's key is mounted");
            assert_eq!(origin.secret.as_ref().unwrap().secret_name.as_deref(), Some("legacy-bigtable-reader"));
            let spec = pod.containers[0].env.iter().flatten().find(|e| e.name == "CHRONICLE_WORKER_SPEC").unwrap();
            assert!(spec.value.as_deref().unwrap().contains(r#""type":"store""#), "{spec:?}");
            break;
        }
        waiting("no Job for the replication").await;
    }
    // An EVM backfill: the same Indexed Job, its worker told the chain and its id.
    loop {
        if let Some(job) = jobs.get_opt("ethereum-history-ingest").await.unwrap() {
            let job = job.spec.unwrap();
            assert_eq!(job.completions, Some(4));
            let pod = job.template.spec.unwrap();
            let spec = pod.containers[0].env.iter().flatten().find(|e| e.name == "CHRONICLE_WORKER_SPEC").unwrap();
            let spec = spec.value.as_deref().unwrap();
            assert!(spec.contains(r#""family":"evm""#) && spec.contains(r#""chainId":1"#), "{spec}");
            break;
        }
        waiting("no Job for the EVM backfill").await;
    }
    // An EVM follower ahead of finality: a Deployment, told the commitment and its lake.
    loop {
        if let Some(deployment) = deployments.get_opt("ethereum-follow-ingest").await.unwrap() {
            let pod = deployment.spec.unwrap().template.spec.unwrap();
            let spec = pod.containers[0].env.iter().flatten().find(|e| e.name == "CHRONICLE_WORKER_SPEC").unwrap();
            let spec = spec.value.as_deref().unwrap();
            assert!(
                spec.contains(r#""commitment":"confirmed""#) && spec.contains("acme-chain-lake/ethereum"),
                "{spec}"
            );
            break;
        }
        waiting("no Deployment following Ethereum").await;
    }
    // An Ethereum CacheTier: serve replicas of the EVM chain with its Redis,
    // and the follower of the same source told to update that cache.
    loop {
        if let Some(deployment) = deployments.get_opt("ethereum-rpc-rpc").await.unwrap() {
            let pod = deployment.spec.unwrap().template.spec.unwrap();
            let spec = pod.containers[0].env.iter().flatten().find(|e| e.name == "CHRONICLE_WORKER_SPEC").unwrap();
            let spec = spec.value.as_deref().unwrap();
            assert!(spec.contains(r#""family":"evm""#) && spec.contains(r#""cache":{"#), "{spec}");
            break;
        }
        waiting("no serve Deployment for the Ethereum CacheTier").await;
    }
    loop {
        let follower = deployments.get_opt("ethereum-follow-ingest").await.unwrap().and_then(|d| d.spec);
        let env = follower.and_then(|s| s.template.spec).map(|p| p.containers[0].env.clone().unwrap_or_default());
        if env.is_some_and(|env| env.iter().any(|e| e.name.starts_with("CHRONICLE_CACHE_URL"))) {
            break;
        }
        waiting("the Ethereum follower does not update the tier's cache").await;
    }
    // Ethereum's history from BigQuery runs as a backfill Job too (its ChainSource is `confirmed`).
    while jobs.get_opt("ethereum-bigquery-history-ingest").await.unwrap().is_none() {
        waiting("no Job for the Ethereum BigQuery backfill").await;
    }
    // Every reconciled resource reports its generation.
    let reported_kinds =
        [("chainsources", 3), ("ingestjobs", 9), ("cachetiers", 2), ("retentionpolicies", 1), ("trainingexports", 1)];
    for (plural, count) in reported_kinds {
        loop {
            let url = format!("{}/apis/chronicle.dev/v1alpha1/namespaces/e2e/{plural}", api.server);
            let list: Value =
                envtest::client().get(url).bearer_auth(&api.token).send().await.unwrap().json().await.unwrap();
            let items = list["items"].as_array().unwrap();
            let reported = items
                .iter()
                .filter(|o| {
                    !o["status"]["observedGeneration"].is_null()
                        && o["status"]["observedGeneration"] == o["metadata"]["generation"]
                })
                .count();
            if reported == count && items.len() == count {
                break;
            }
            waiting(&format!("{reported} of {count} {plural} reported")).await;
        }
    }
    // An export runs as a Job owned by its TrainingExport.
    loop {
        if let Some(job) = jobs.get_opt("defi-2025-01-export").await.unwrap() {
            assert_eq!(job.owner_references()[0].kind, "TrainingExport");
            let pod = job.spec.unwrap().template.spec.unwrap();
            let env = pod.containers[0].env.clone().unwrap_or_default();
            assert!(env.iter().any(|e| e.name == "GOOGLE_SERVICE_ACCOUNT_KEY"), "the output's credentials");
            break;
        }
        waiting("no Job for the TrainingExport").await;
    }
    // A policy whose store this build cannot prune says why.
    loop {
        let url = format!("{}/apis/chronicle.dev/v1alpha1/namespaces/e2e/retentionpolicies", api.server);
        let list: Value =
            envtest::client().get(url).bearer_auth(&api.token).send().await.unwrap().json().await.unwrap();
        let conditions = list["items"][0]["status"]["conditions"].as_array().cloned().unwrap_or_default();
        if let Some(ready) = conditions.iter().find(|c| c["type"] == "Ready") {
            assert_eq!(
                (ready["status"].as_str(), ready["reason"].as_str()),
                (Some("False"), Some("EmbeddedStoreNotSupported"))
            );
            break;
        }
        waiting("the RetentionPolicy reported nothing").await;
    }

    // The serve replicas become ready (as kubelet and the Deployment
    // controller would report it); the tier says so.
    let ready = json!({"status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "updatedReplicas": 3}});
    deployments.patch_status("mainnet-rpc-rpc", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    loop {
        let status = tiers.get("mainnet-rpc").await.unwrap().status.unwrap_or_default();
        if status.ready_replicas == 3 {
            let ready = status.common.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
            assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Serving"));
            break;
        }
        waiting("the CacheTier never saw its replicas ready").await;
    }

    // Printer columns, as `kubectl get` shows them.
    let rows = table(&client, "e2e", "cachetiers").await;
    let row = rows.iter().find(|r| r["Name"] == "mainnet-rpc").expect("the Solana tier's row");
    assert_eq!(row["Ready"].as_i64(), Some(3));
    assert_eq!(row["Replicas"].as_i64(), Some(3));
    loop {
        let rows = table(&client, "e2e", "chainsources").await;
        if rows.iter().all(|r| r["Ready"] == "False") {
            break;
        }
        waiting("the ChainSources' Ready column stayed empty").await;
    }
    let rows = table(&client, "e2e", "ingestjobs").await;
    let row = rows.iter().find(|r| r["Name"] == "mainnet-epoch-700").unwrap();
    assert_eq!(row["Phase"].as_str(), Some("Pending"));

    // Suspended: the Job is suspended, the phase says so.
    let suspend = json!({"spec": {"suspend": true}});
    ingest.patch("mainnet-epoch-700", &PatchParams::default(), &Patch::Merge(&suspend)).await.unwrap();
    loop {
        let job = jobs.get("mainnet-epoch-700-ingest").await.unwrap();
        let phase = ingest.get("mainnet-epoch-700").await.unwrap().status.and_then(|s| s.phase);
        if job.spec.unwrap().suspend == Some(true) && phase == Some(chronicle::crd::ingest_job::IngestPhase::Suspended)
        {
            break;
        }
        waiting("the backfill was not suspended").await;
    }
    let resume = json!({"spec": {"suspend": false}});
    ingest.patch("mainnet-epoch-700", &PatchParams::default(), &Patch::Merge(&resume)).await.unwrap();

    // A spec change a Job cannot take: the Job is replaced.
    let fewer = json!({"spec": {"parallelism": 4}});
    ingest.patch("mainnet-epoch-700", &PatchParams::default(), &Patch::Merge(&fewer)).await.unwrap();
    while jobs.get_opt("mainnet-epoch-700-ingest").await.unwrap().and_then(|j| j.spec?.completions) != Some(4) {
        waiting("the Job was not replaced for parallelism 4").await;
    }
    // A mode change: the backfill Job goes, a follower Deployment comes.
    let follow = json!({"spec": {"mode": "follow", "parallelism": 1, "range": {"endSlot": null}}});
    ingest.patch("mainnet-epoch-700", &PatchParams::default(), &Patch::Merge(&follow)).await.unwrap();
    while jobs.get_opt("mainnet-epoch-700-ingest").await.unwrap().is_some()
        || deployments.get_opt("mainnet-epoch-700-ingest").await.unwrap().is_none()
    {
        waiting("the backfill Job was not swapped for a follower Deployment").await;
    }

    // Deleting a resource removes its children.
    tiers.delete("mainnet-rpc", &Default::default()).await.unwrap();
    while deployments.get_opt("mainnet-rpc-rpc").await.unwrap().is_some()
        || services.get_opt("mainnet-rpc-rpc").await.unwrap().is_some()
    {
        waiting("the deleted CacheTier's children stayed").await;
    }

    // Events: one per change, none per requeue.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "e2e");
    let said: Vec<(String, String, String)> = events
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let about = e.regarding.and_then(|r| r.name).unwrap_or_default();
            (about, e.reason.unwrap_or_default(), e.type_.unwrap_or_default())
        })
        .collect();
    for expected in [
        ("mainnet-epoch-700", "SpecApplied", "Normal"),
        ("mainnet-epoch-700", "WorkloadReplaced", "Normal"),
        ("mainnet-epoch-700", "ChildDeleted", "Normal"),
        ("mainnet-rpc", "Starting", "Normal"),
        ("mainnet-rpc", "Serving", "Normal"),
        ("solana-mainnet", "SecretMissing", "Warning"),
    ] {
        let found = said.iter().filter(|(a, r, t)| (a.as_str(), r.as_str(), t.as_str()) == expected).count();
        assert_eq!(found, 1, "{expected:?} in {said:#?}");
    }

    // Metrics, and nothing the chart's RBAC forbids.
    let metrics = client_get(&format!("http://127.0.0.1:{port}/metrics")).await.unwrap();
    assert!(metrics.contains("chronicle_controller_reconciles_total{kind=\"CacheTier\",result=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("chronicle_controller_leader 1"), "{metrics}");
    assert!(!metrics.contains("chronicle_controller_orphans_deleted_total 0"), "{metrics}");
    assert!(!log().to_lowercase().contains("forbidden"), "{}", log());

    // SIGTERM: a clean exit.
    Command::new("kill").args(["-TERM", &controller.id().to_string()]).status().unwrap();
    let exit = controller.wait().unwrap();
    assert!(exit.success(), "{exit:?}; the controller said:\n{}", log());
    support::assert_no_secret(&log());
    assert!(!log().contains(token), "the controller's ServiceAccount token was logged");
}

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

/// A `chronicle serve` replica on a free loopback port: an embedded store
/// holding one real block, a Redis cache.
struct ServeReplica {
    address: std::net::SocketAddr,
    slot: u64,
    _dir: tempfile::TempDir,
}

impl ServeReplica {
    fn port(&self) -> u16 {
        self.address.port()
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

async fn serve_replica(redis: &support::Redis) -> ServeReplica {
    use chronicle::serve::cache::CacheConfig;
    use chronicle::store::BlockStore;
    let dir = tempfile::tempdir().unwrap();
    let store = chronicle::store::open(&format!("embedded://{}", dir.path().display())).await.unwrap();
    let (slot, block) = support::real_blocks().remove(0);
    store.write_block(slot, &block, &[]).await.unwrap();
    let config = chronicle::serve::ServeConfig {
        cache: Some(CacheConfig { ttl: Duration::from_secs(60), ..CacheConfig::new(redis.url()) }),
        ..Default::default()
    };
    let app = chronicle::serve::router(store, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });
    ServeReplica { address, slot, _dir: dir }
}

/// Progress in an IngestJob's status comes from the catalog its workers
/// commit to (a real PostgreSQL here): the test plays the workers by
/// committing batches as `chronicle worker ingest` does, and the controller
/// reports checkpoint, counters and rate, which `kubectl get` shows.
#[tokio::test]
async fn ingest_job_status_reports_the_workers_progress_from_the_catalog() {
    use chronicle::catalog::BatchOutcome;
    use chronicle::controller::context::Context;
    use chronicle::worker::ingest::shard_range;
    use kube::Api;
    use kube::api::{Patch, PatchParams};

    let postgres = support::Postgres::start();
    let api = api_with_crds().await;
    let client = api.client().await;
    catalog_secret(&api, &postgres).await;
    for file in ["examples/chainsource-solana-mainnet.yaml", "examples/ingestjob-backfill.yaml"] {
        let (status, answer) = create(&api, yaml_documents(&Path::new(ROOT).join(file)).remove(0)).await;
        assert_eq!(status, 201, "{file}: {answer}");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let token = stop.clone();
    let controller = tokio::spawn(chronicle::controller::ingest_job::run(ctx, async move { token.cancelled().await }));

    // The workers' part: shard 0 of 8 commits two batches.
    let ingest: Api<chronicle::crd::IngestJob> = Api::namespaced(client.clone(), "e2e");
    let job = ingest.get("mainnet-epoch-700").await.unwrap();
    let key = chronicle::controller::workload::catalog_job(&job);
    let catalog = chronicle::catalog::open(&postgres.url()).await.unwrap();
    let range = shard_range(302_400_000, 302_831_999, 0, 8).unwrap();
    catalog.shard(&key, range).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rate = None;
    for batch in 0..2u64 {
        let first = range.start + batch * 50;
        let outcome = BatchOutcome {
            checkpoint: Some(first + 49),
            written: (first..first + 45).collect(),
            bytes: 45_000,
            skipped: (first + 45..first + 50).collect(),
            ..BatchOutcome::default()
        };
        catalog.commit(&key, 0, &outcome).await.unwrap();
        // A touch wakes the controller now rather than at its next requeue.
        let touch = json!({"metadata": {"annotations": {"e2e/touch": batch.to_string()}}});
        ingest.patch("mainnet-epoch-700", &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
        loop {
            let status = ingest.get("mainnet-epoch-700").await.unwrap().status.unwrap_or_default();
            if status.checkpoint == Some(first + 49) {
                assert_eq!(status.slots_done, 50 * (batch + 1));
                assert_eq!(status.blocks_written, 45 * (batch + 1));
                assert_eq!(status.slots_skipped, 5 * (batch + 1));
                assert_eq!(status.bytes_written, 45_000 * (batch + 1));
                rate = status.rate;
                break;
            }
            assert!(Instant::now() < deadline, "the status never showed checkpoint {}", first + 49);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let rate: f64 = rate.expect("a rate after two reads a second apart").parse().unwrap();
    assert!(rate > 0.0 && rate < 100.0, "50 slots in over a second: {rate}");
    let rows = table(&client, "e2e", "ingestjobs").await;
    assert_eq!(rows[0]["Checkpoint"].as_u64(), Some(range.start + 99));
    assert!(rows[0]["Rate"].is_string(), "{:?}", rows[0]);

    // A follower of the BigQuery dataset records the dataset's newest block:
    // the status says how far behind the chain the dataset runs.
    let (code, answer) =
        create(&api, yaml_documents(&Path::new(ROOT).join("examples/ingestjob-bigquery-follow.yaml")).remove(0)).await;
    assert_eq!(code, 201, "{answer}");
    let follow = ingest.get("mainnet-bigquery-follow").await.unwrap();
    let key = chronicle::controller::workload::catalog_job(&follow);
    let produced = 1_700_000_000; // the dataset's newest block, two hours before it was seen
    let head = chronicle::pipeline::SourceHead { number: 300_000_050, time: Some(produced) };
    catalog.record_head(&key, head).await.unwrap();
    let touch = json!({"metadata": {"annotations": {"e2e/touch": "head"}}});
    ingest.patch("mainnet-bigquery-follow", &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    let source_head = loop {
        let status = ingest.get("mainnet-bigquery-follow").await.unwrap().status.unwrap_or_default();
        if let Some(head) = status.source_head {
            break head;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(30), "the status never showed the source's head");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(source_head.slot, 300_000_050);
    let lag = source_head.lag_seconds.expect("a lag in seconds");
    assert!(lag > 3600, "the dataset's newest block is long past: {lag}");
    stop.cancel();
    controller.await.unwrap();

    // An export's status: the Job's phase, and what its worker recorded.
    let (code, answer) =
        create(&api, yaml_documents(&Path::new(ROOT).join("examples/trainingexport.yaml")).remove(0)).await;
    assert_eq!(code, 201, "{answer}");
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let token = stop.clone();
    let controller =
        tokio::spawn(chronicle::controller::training_export::run(ctx, async move { token.cancelled().await }));
    let exports: Api<chronicle::crd::TrainingExport> = Api::namespaced(client.clone(), "e2e");
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), "e2e");
    while jobs.get_opt("defi-2025-01-export").await.unwrap().is_none() {
        assert!(Instant::now() < deadline + Duration::from_secs(60), "no export Job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let export = exports.get("defi-2025-01").await.unwrap();
    let record = chronicle::catalog::ExportRecord {
        phase: "Succeeded".into(),
        documents: 16,
        tokens: 6144,
        shards: 4,
        bytes: 30_305,
        manifest: Some("gs://acme-training-data/solana/defi-2025-01/manifest.json".into()),
        digest: Some("sha256:ab".into()),
        message: None,
    };
    catalog.record_export(&chronicle::controller::training_export::catalog_export(&export), &record).await.unwrap();
    // The Job controller's part: the Job completed.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let done = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now});
    let complete = json!({"status": {"conditions": [done("SuccessCriteriaMet"), done("Complete")], "succeeded": 1,
        "startTime": now, "completionTime": now}});
    jobs.patch_status("defi-2025-01-export", &PatchParams::default(), &Patch::Merge(&complete)).await.unwrap();
    let status = loop {
        let status = exports.get("defi-2025-01").await.unwrap().status.unwrap_or_default();
        if status.documents == 16 && status.phase == Some(chronicle::crd::training_export::ExportPhase::Succeeded) {
            break status;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(90), "the export's status never showed the record");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.dataset_digest.as_deref(), Some("sha256:ab"));
    assert_eq!(status.manifest_url, record.manifest);
    let ready = status.common.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    stop.cancel();
    controller.await.unwrap();

    // A retention policy is a CronJob on its schedule; its status comes from
    // the record its last run left in the catalog.
    let mut policy = yaml_documents(&Path::new(ROOT).join("examples/retentionpolicy.yaml")).remove(0);
    policy["metadata"]["namespace"] = json!("e2e");
    policy["spec"]["sourceRef"]["name"] = json!("solana-mainnet");
    policy["spec"]["rules"] = json!([{"target": "canonical", "keepSlots": 1000000}]);
    policy["spec"]["replicaGuard"] = json!({"enabled": true});
    let (code, answer) = create(&api, policy).await;
    assert_eq!(code, 201, "{answer}");
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let token = stop.clone();
    let controller =
        tokio::spawn(chronicle::controller::retention_policy::run(ctx, async move { token.cancelled().await }));
    let crons: Api<k8s_openapi::api::batch::v1::CronJob> = Api::namespaced(client.clone(), "e2e");
    let cron = loop {
        if let Some(cron) = crons.get_opt("hot-30-days-retention").await.unwrap() {
            break cron;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(120), "no CronJob for the RetentionPolicy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(cron.metadata.owner_references.as_ref().unwrap()[0].kind, "RetentionPolicy");
    let spec = cron.spec.unwrap();
    assert_eq!((spec.schedule.as_str(), spec.time_zone.as_deref()), ("15 3 * * *", Some("Etc/UTC")));
    let record = chronicle::catalog::RetentionRecord {
        phase: "Succeeded".into(),
        started_at: 1_800_000_000,
        finished_at: Some(1_800_000_060),
        oldest_kept: Some(301_831_999),
        cut: Some(301_900_000),
        held_at: Some(301_831_999),
        blocks_removed: 120,
        rows_removed: 48_000,
        bytes_removed: 9_000_000,
        ..Default::default()
    };
    catalog.record_retention("e2e/hot-30-days", &record).await.unwrap();
    let policies: Api<chronicle::crd::RetentionPolicy> = Api::namespaced(client.clone(), "e2e");
    let touch = json!({"metadata": {"annotations": {"e2e/touch": "run"}}});
    policies.patch("hot-30-days", &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    let status = loop {
        let status = policies.get("hot-30-days").await.unwrap().status.unwrap_or_default();
        if status.oldest_slot_kept == Some(301_831_999) {
            break status;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(150), "the policy's status never showed its run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (status.rows_removed, status.bytes_removed, status.held_at_slot),
        (48_000, 9_000_000, Some(301_831_999))
    );
    let ready = status.common.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Scheduled"));
    assert!(ready.message.contains("held the cut at slot 301831999"), "{}", ready.message);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "e2e");
    loop {
        let listed = events.list(&Default::default()).await.unwrap();
        if listed.items.iter().any(|e| e.reason.as_deref() == Some("PruneHeldByReplica")) {
            break;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(150), "no Event for the run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = table(&client, "e2e", "retentionpolicies").await;
    assert_eq!(rows[0]["Oldest"].as_u64(), Some(301_831_999));
    stop.cancel();
    controller.await.unwrap();
}

/// Server-side applies `object` (any kind) into `namespace` when namespaced.
async fn apply_any(client: &kube::Client, namespace: &str, object: &Value) {
    use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
    use kube::discovery::{Scope, pinned_kind};
    let kind = object["kind"].as_str().unwrap();
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let (resource, caps) = pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await.unwrap();
    let objects: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let name = object["metadata"]["name"].as_str().unwrap();
    let applied = objects.patch(name, &PatchParams::apply("chronicle-e2e").force(), &Patch::Apply(object)).await;
    applied.unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
}

/// The operator on the cluster `CHRONICLE_E2E_KUBECONFIG` names (any
/// cluster: kube's client handles its auth), or on an envtest server of its
/// own when unset. Cluster-safe: everything lives in a namespace of its own
/// and a release of its own name, workers are suspended (no pods pull
/// images), nothing plays a controller's part, and all is removed at the
/// end (the CRDs stay: they may be shared). Deleting a resource must remove
/// its children whether a garbage collector runs (a cluster) or not
/// (envtest: the controller's sweep).
#[tokio::test]
async fn the_operator_on_a_cluster() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use kube::api::{Api, DeleteParams, PostParams};

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let own = match std::env::var_os("CHRONICLE_E2E_KUBECONFIG") {
        Some(_) => None,
        None => Some(api_with_crds().await),
    };
    let kubeconfig = match &own {
        Some(api) => api.dir.path().join("kubeconfig"),
        None => std::env::var_os("CHRONICLE_E2E_KUBECONFIG").unwrap().into(),
    };
    let client = kube::Client::try_from(ApiServer::config(&kubeconfig).await).unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let namespace = format!("chronicle-e2e-{}-{nanos}", std::process::id());
    for file in files("crds") {
        apply_any(&client, "", &yaml_documents(&file)[0]).await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let body = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    namespaces.create(&PostParams::default(), &body).await.unwrap();
    let rendered = helm::documents(&helm::render_release(&namespace, &namespace, &[]).unwrap());
    for object in rendered.iter().filter(|o| o["kind"] != "CustomResourceDefinition") {
        apply_any(&client, &namespace, object).await;
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut controller = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["controller", "--image", "chronicle:e2e", "--lease-namespace", &namespace, "--identity", "e2e"])
        .args(["--orphan-sweep-seconds", "2", "--health-listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();

    let mut objects = Vec::new();
    for file in ["chainsource-solana-mainnet.yaml", "ingestjob-backfill.yaml", "cachetier.yaml"] {
        let mut object = yaml_documents(&Path::new(ROOT).join("examples").join(file)).remove(0);
        object["metadata"]["namespace"] = json!(namespace);
        if object["kind"] == "IngestJob" {
            object["spec"]["suspend"] = json!(true);
        }
        if object["kind"] == "CacheTier" {
            object["spec"]["server"]["replicas"] = json!(1);
        }
        apply_any(&client, &namespace, &object).await;
        objects.push(object);
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let ingest: Api<chronicle::crd::IngestJob> = Api::namespaced(client.clone(), &namespace);
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = |what: &str| {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200))
    };
    let job = loop {
        if let Some(job) = jobs.get_opt("mainnet-epoch-700-ingest").await.unwrap() {
            break job;
        }
        waiting("no backfill Job").await;
    };
    assert_eq!(job.spec.as_ref().unwrap().suspend, Some(true));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("IngestJob", Some(true)));
    loop {
        let current = ingest.get("mainnet-epoch-700").await.unwrap();
        let status = current.status.clone().unwrap_or_default();
        if status.common.observed_generation == current.metadata.generation
            && status.phase == Some(chronicle::crd::ingest_job::IngestPhase::Suspended)
        {
            break;
        }
        waiting("the IngestJob never reported Suspended").await;
    }
    // Printer columns, as `kubectl get` shows them (the server's Table).
    let rows = table(&client, &namespace, "ingestjobs").await;
    assert_eq!(rows[0]["Phase"], "Suspended");
    // Events.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &namespace);
    loop {
        let listed = events.list(&Default::default()).await.unwrap();
        if listed.items.iter().any(|e| e.reason.as_deref() == Some("SpecApplied")) {
            break;
        }
        waiting("no SpecApplied Event").await;
    }
    // Deleting a resource removes its children.
    while deployments.get_opt("mainnet-rpc-rpc").await.unwrap().is_none() {
        waiting("no serve Deployment").await;
    }
    let tiers: Api<chronicle::crd::CacheTier> = Api::namespaced(client.clone(), &namespace);
    tiers.delete("mainnet-rpc", &DeleteParams::background()).await.unwrap();
    while deployments.get_opt("mainnet-rpc-rpc").await.unwrap().is_some()
        || services.get_opt("mainnet-rpc-rpc").await.unwrap().is_some()
    {
        waiting("the deleted CacheTier's children stayed").await;
    }

    Command::new("kill").args(["-TERM", &controller.id().to_string()]).status().unwrap();
    assert!(controller.wait().unwrap().success());
    // Clean up what the test made (a cluster's namespace controller removes the rest).
    for object in
        rendered.iter().filter(|o| ["ClusterRole", "ClusterRoleBinding"].contains(&o["kind"].as_str().unwrap()))
    {
        let name = object["metadata"]["name"].as_str().unwrap();
        let path = match object["kind"].as_str().unwrap() {
            "ClusterRole" => format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"),
            _ => format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}"),
        };
        let request = http::Request::delete(path).body(Vec::new()).unwrap();
        let _: Value = client.request(request).await.unwrap();
    }
    namespaces.delete(&namespace, &DeleteParams::default()).await.unwrap();
}

/// `commitment: confirmed` on a ChainSource reaches the worker: the
/// controller writes it (and the store's emulator host) into the follower's
/// worker spec on the real API server, and a worker run with exactly that
/// spec stores confirmed blocks early and removes the one the finalized chain
/// then skipped — which a `finalized` worker never stores at all.
#[tokio::test]
async fn a_chain_sources_commitment_reaches_the_worker() {
    use chronicle::controller::context::Context;
    use chronicle::crd::chain_source::Commitment;
    use chronicle::store::BlockStore;
    use chronicle::worker::spec::{SPEC_ENV, Work, WorkerSpec};
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::Api;

    let emulator = support::BigtableEmulator::start();
    let peer = support::rpc_peer::RpcPeer::start(support::replayed(6_000, 6)).await;
    peer.orphan(6_003);
    let api = api_with_crds().await;
    let client = api.client().await;
    let source = json!({"apiVersion": "chronicle.dev/v1alpha1", "kind": "ChainSource",
        "metadata": {"name": "local"},
        "spec": {"chain": {"family": "solana", "network": "localnet"}, "commitment": "confirmed",
            "endpoints": [{"name": "peer", "url": peer.url()}],
            "store": {"bigtable": {"project": "chronicle-e2e", "instance": "confirmed", "emulatorHost": emulator.host()}},
            "catalog": {"connectionSecretRef": {"name": "catalog", "key": "url"}}}});
    let job = json!({"apiVersion": "chronicle.dev/v1alpha1", "kind": "IngestJob", "metadata": {"name": "tip"},
        "spec": {"sourceRef": {"name": "local"}, "source": {"rpc": {}}, "mode": "follow", "range": {"startSlot": 6000}}});
    for object in [source, job] {
        let (status, answer) = create(&api, object).await;
        assert_eq!(status, 201, "{answer}");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let token = stop.clone();
    let controller = tokio::spawn(chronicle::controller::ingest_job::run(ctx, async move { token.cancelled().await }));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "e2e");
    let deadline = Instant::now() + Duration::from_secs(60);
    let deployment = loop {
        if let Some(found) = deployments.get_opt("tip-ingest").await.unwrap() {
            break found;
        }
        assert!(Instant::now() < deadline, "no follower Deployment");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.cancel();
    controller.await.unwrap();
    let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(container.args.as_deref(), Some(&["worker".to_string(), "run".into()][..]));
    let spec_json = container.env.iter().flatten().find(|e| e.name == SPEC_ENV).unwrap().value.clone().unwrap();
    let spec = WorkerSpec::from_json(&spec_json).unwrap();
    let Work::Ingest(ingest) = &spec.work else { panic!("an ingest spec: {spec_json}") };
    assert_eq!(ingest.chain.commitment, Commitment::Confirmed);
    assert_eq!(ingest.store.emulator_host.as_deref(), Some(emulator.host().as_str()));

    // The worker with exactly that spec; only the Secret-backed catalog
    // variable is set by hand, as the pod would from its Secret. Nothing
    // else of this process's environment reaches it.
    let dir = tempfile::tempdir().unwrap();
    let catalog_url = format!("embedded://{}", dir.path().join("catalog").display());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["worker", "run"])
        .env_clear()
        .env(SPEC_ENV, &spec_json)
        .env("CHRONICLE_CATALOG", &catalog_url)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    while peer.count("getBlock", 6_005) == 0 || peer.requests("getBlocks").len() < 2 {
        assert!(Instant::now() < deadline, "the worker did not follow the peer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, log) = support::terminate(child).await;
    assert!(status.success(), "{log}");
    assert!(peer.count("getBlock", 6_003) >= 1, "a confirmed worker fetches the block before it is finalized");
    assert!(log.contains("confirmed block was not finalized"), "{log}");
    let store = support::bigtable_ledger(&emulator, "chronicle-e2e", "confirmed").await;
    assert_eq!(store.blocks(6_000, 10).await.unwrap(), vec![6_000, 6_001, 6_002, 6_004, 6_005]);
}

/// An embedded ChainSource admits one process: on the real API server its
/// IngestJob and CacheTier run in one node Deployment the source owns (the
/// spec holds both works, the claim is mounted once); the job builds no pods
/// and says where it runs; the tier's Service selects the node pod.
#[tokio::test]
async fn an_embedded_source_runs_its_jobs_and_tiers_in_one_node_pod() {
    use chronicle::controller::context::Context;
    use chronicle::worker::spec::{SPEC_ENV, Work, WorkerSpec};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use kube::Api;

    let api = api_with_crds().await;
    let client = api.client().await;
    let source = yaml_documents(&Path::new(ROOT).join("examples/chainsource-solana-embedded.yaml")).remove(0);
    let mut tier = yaml_documents(&Path::new(ROOT).join("examples/cachetier.yaml")).remove(0);
    tier["spec"]["sourceRef"]["name"] = json!("solana-devnet");
    // Its upstream: the devnet source's own endpoint.
    tier["spec"]["upstream"]["endpoint"] = json!("devnet");
    let job = json!({"apiVersion": "chronicle.dev/v1alpha1", "kind": "IngestJob", "metadata": {"name": "devnet-tip"},
        "spec": {"sourceRef": {"name": "solana-devnet"}, "source": {"rpc": {}}, "mode": "follow"}});
    for object in [source, job, tier] {
        let (status, answer) = create(&api, object).await;
        assert_eq!(status, 201, "{answer}");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let stopper = || {
        let token = stop.clone();
        async move { token.cancelled().await }
    };
    let controllers = tokio::spawn(futures::future::join3(
        chronicle::controller::chain_source::run(ctx.clone(), stopper()),
        chronicle::controller::ingest_job::run(ctx.clone(), stopper()),
        chronicle::controller::cache_tier::run(ctx.clone(), stopper()),
    ));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "e2e");
    let ingest: Api<chronicle::crd::IngestJob> = Api::namespaced(client.clone(), "e2e");
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiting = |what: &'static str| async move {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let node = loop {
        match deployments.get_opt("solana-devnet-node").await.unwrap() {
            Some(node) => break node,
            None => waiting("no node Deployment").await,
        }
    };
    let pod = node.spec.unwrap().template.spec.unwrap();
    let spec = pod.containers[0].env.iter().flatten().find(|e| e.name == SPEC_ENV).unwrap().value.clone().unwrap();
    let Work::Node(works) = WorkerSpec::from_json(&spec).unwrap().work else { panic!("a node spec: {spec}") };
    let names: Vec<&str> = works.works.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["IngestJob/e2e/devnet-tip", "CacheTier/e2e/mainnet-rpc"]);
    let claims = pod.volumes.iter().flatten().filter(|v| v.persistent_volume_claim.is_some()).count();
    assert_eq!(claims, 1, "the store's claim is mounted once");
    loop {
        let status = ingest.get("devnet-tip").await.unwrap().status.unwrap_or_default();
        if let Some(ready) = status.common.conditions.iter().find(|c| c.type_ == "Ready") {
            assert!(ready.message.contains("node Deployment solana-devnet-node"), "{}", ready.message);
            assert_eq!(status.workload.as_deref(), Some("solana-devnet-node"));
            break;
        }
        waiting("the IngestJob never said where it runs").await;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), "e2e");
    let service = loop {
        match services.get_opt("mainnet-rpc-rpc").await.unwrap() {
            Some(service) => break service,
            None => waiting("no Service for the tier").await,
        }
    };
    let selector = service.spec.unwrap().selector.unwrap();
    assert_eq!(selector.get("app.kubernetes.io/component").map(String::as_str), Some("node"));
    assert!(deployments.get_opt("devnet-tip-ingest").await.unwrap().is_none(), "the job has no pods of its own");
    assert!(deployments.get_opt("mainnet-rpc-rpc").await.unwrap().is_none(), "the tier has no pods of its own");
    stop.cancel();
    controllers.await.unwrap();
}

/// A backfill that runs on its embedded source's node has no Job to
/// complete: it reaches `Succeeded` when the catalog holds its whole range
/// with no gap open (the workers' commits, played here on a real PostgreSQL
/// catalog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_on_the_node_succeeds_when_the_catalog_holds_its_range() {
    use chronicle::catalog::BatchOutcome;
    use chronicle::controller::context::Context;
    use chronicle::crd::ingest_job::IngestPhase;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::Api;
    use kube::api::{Patch, PatchParams};

    let postgres = support::Postgres::start();
    let api = api_with_crds().await;
    let client = api.client().await;
    catalog_secret(&api, &postgres).await;
    let source = yaml_documents(&Path::new(ROOT).join("examples/chainsource-solana-embedded.yaml")).remove(0);
    let job = json!({"apiVersion": "chronicle.dev/v1alpha1", "kind": "IngestJob", "metadata": {"name": "devnet-history"},
        "spec": {"sourceRef": {"name": "solana-devnet"}, "source": {"rpc": {}}, "mode": "backfill",
                 "range": {"startSlot": 1000, "endSlot": 1099}}});
    for object in [source, job] {
        let (status, answer) = create(&api, object).await;
        assert_eq!(status, 201, "{answer}");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let stopper = || {
        let token = stop.clone();
        async move { token.cancelled().await }
    };
    let controllers = tokio::spawn(futures::future::join(
        chronicle::controller::chain_source::run(ctx.clone(), stopper()),
        chronicle::controller::ingest_job::run(ctx.clone(), stopper()),
    ));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "e2e");
    let ingest: Api<chronicle::crd::IngestJob> = Api::namespaced(client.clone(), "e2e");
    let deadline = Instant::now() + Duration::from_secs(60);
    while deployments.get_opt("solana-devnet-node").await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "no node Deployment");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The node pod is up (as the Deployment controller would report it).
    let ready = json!({"status": {"replicas": 1, "readyReplicas": 1}});
    deployments.patch_status("solana-devnet-node", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();

    // The node's worker commits the range in two batches.
    let job = ingest.get("devnet-history").await.unwrap();
    let key = chronicle::controller::workload::catalog_job(&job);
    let catalog = chronicle::catalog::open(&postgres.url()).await.unwrap();
    let range = chronicle::worker::ingest::shard_range(1000, 1099, 0, 1).unwrap();
    catalog.shard(&key, range).await.unwrap();
    let phase = |checkpoint: u64| {
        let ingest = ingest.clone();
        async move {
            loop {
                let status = ingest.get("devnet-history").await.unwrap().status.unwrap_or_default();
                if status.checkpoint == Some(checkpoint) {
                    return status;
                }
                assert!(Instant::now() < deadline, "the status never showed checkpoint {checkpoint}");
                let touch = json!({"metadata": {"annotations": {"e2e/touch": checkpoint.to_string()}}});
                ingest.patch("devnet-history", &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    for (first, last) in [(1000u64, 1049u64), (1050, 1099)] {
        let outcome =
            BatchOutcome { checkpoint: Some(last), written: (first..=last).collect(), ..BatchOutcome::default() };
        catalog.commit(&key, 0, &outcome).await.unwrap();
        let status = phase(last).await;
        if last < 1099 {
            assert_eq!(status.phase, Some(IngestPhase::Running), "half the range");
        } else {
            assert_eq!(status.phase, Some(IngestPhase::Succeeded), "the whole range");
            let ready = status.common.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
            assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Complete"), "{}", ready.message);
        }
    }
    stop.cancel();
    controllers.await.unwrap();
}

/// The `chronicle-catalog` Secret the examples name, holding `postgres`'s URL.
async fn catalog_secret(api: &ApiServer, postgres: &support::Postgres) {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chronicle-catalog"},
        "stringData": {"url": postgres.url()}});
    assert_eq!(post(api, "/api/v1/namespaces/e2e/secrets", &secret).await.0, 201);
}

/// A real export's dataset in `out` (the real blocks, an embedded store).
async fn exported_dataset(dir: &Path, out: &Path) {
    let store_url = format!("embedded://{}", dir.join("ledger").display());
    let store = chronicle::store::open(&store_url).await.unwrap();
    for (slot, block) in support::real_blocks() {
        chronicle::store::BlockStore::write_block(store.as_ref(), slot, &block, &[]).await.unwrap();
    }
    chronicle::store::BlockStore::sync(store.as_ref()).await.unwrap();
    drop(store);
    let output = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["worker", "export", "--store", &store_url, "--out", &format!("file://{}", out.display())])
        .args(["--from", "0", "--to", "400000000", "--include-votes", "--shard-bytes", "4096"])
        .args(["--tokenizer", "cl100k_base", "--formats", "jsonl,tokens"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// Deleting a TrainingExport that has not published removes what it wrote:
/// the controller holds its finalizer on the export, deletes the export Job
/// and runs a cleanup Job with the output (the test plays the Job
/// controller: it runs the cleanup Job's worker spec with the real binary,
/// then marks the Job complete); the unpublished shards, token files and
/// card go, an object outside the dataset's layout stays, and the export
/// is gone. An export that published keeps its dataset when deleted.
/// (The unpublished output is a real export's with its manifest removed,
/// as an export killed before publishing leaves it.)
#[tokio::test]
async fn a_deleted_export_removes_its_unpublished_output() {
    use chronicle::controller::context::Context;
    use chronicle::controller::export_cleanup::OUTPUT_FINALIZER;
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::{DeleteParams, Patch, PatchParams};
    use kube::{Api, ResourceExt};

    let dir = tempfile::tempdir().unwrap();
    let (partial, published) = (dir.path().join("partial"), dir.path().join("published"));
    exported_dataset(dir.path(), &partial).await;
    std::fs::remove_file(partial.join("manifest.json")).unwrap();
    std::fs::write(partial.join("keep.txt"), "not the dataset's").unwrap();
    exported_dataset(dir.path(), &published).await;
    let published_files = files_under(&published);

    let api = api_with_crds().await;
    let client = api.client().await;
    let source = yaml_documents(&Path::new(ROOT).join("examples/chainsource-solana-mainnet.yaml")).remove(0);
    assert_eq!(create(&api, source).await.0, 201);
    for (name, out) in [("partial", &partial), ("published", &published)] {
        let mut export = yaml_documents(&Path::new(ROOT).join("examples/trainingexport.yaml")).remove(0);
        export["metadata"]["name"] = json!(name);
        export["spec"]["output"] = json!({"url": format!("file://{}", out.display()), "formats": ["jsonl", "tokens"]});
        let (code, answer) = create(&api, export).await;
        assert_eq!(code, 201, "{answer}");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e", None));
    let token = stop.clone();
    let controller =
        tokio::spawn(chronicle::controller::training_export::run(ctx, async move { token.cancelled().await }));
    let exports: Api<chronicle::crd::TrainingExport> = Api::namespaced(client.clone(), "e2e");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "e2e");
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in ["partial", "published"] {
        loop {
            let held = exports.get(name).await.unwrap().finalizers().contains(&OUTPUT_FINALIZER.to_string());
            if held && jobs.get_opt(&format!("{name}-export")).await.unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: no finalizer or no export Job: {:?}", exports.get(name).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The Job controller's part: one export published.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let done = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now});
    let complete = json!({"status": {"conditions": [done("SuccessCriteriaMet"), done("Complete")], "succeeded": 1,
        "startTime": now, "completionTime": now}});
    jobs.patch_status("published-export", &PatchParams::default(), &Patch::Merge(&complete)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    exports.delete("published", &DeleteParams::default()).await.unwrap();
    while exports.get_opt("published").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the published export was never released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(jobs.get_opt("published-cleanup").await.unwrap().is_none(), "a published dataset is not cleaned up");
    assert_eq!(files_under(&published), published_files, "a published dataset stays");

    exports.delete("partial", &DeleteParams::default()).await.unwrap();
    let cleanup = loop {
        // Created suspended, resumed once the export's pods are gone.
        if let Some(job) = jobs.get_opt("partial-cleanup").await.unwrap()
            && job.spec.as_ref().unwrap().suspend == Some(false)
        {
            break job;
        }
        assert!(Instant::now() < deadline, "no cleanup Job resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(jobs.get_opt("partial-export").await.unwrap().is_none(), "the export Job is stopped first");
    assert!(exports.get_opt("partial").await.unwrap().is_some(), "held until the cleanup is done");
    // The cleanup Job's pod, run here with its spec.
    let pod = cleanup.spec.unwrap().template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap();
    let spec = env.iter().find(|e| e.name == chronicle::worker::spec::SPEC_ENV).unwrap().value.clone().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["worker", "run"])
        .env(chronicle::worker::spec::SPEC_ENV, spec)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && log.contains("unpublished export output removed"), "{log}");
    assert_eq!(files_under(&partial), ["keep.txt"], "only what is not the dataset's stays");
    jobs.patch_status("partial-cleanup", &PatchParams::default(), &Patch::Merge(&complete)).await.unwrap();
    while exports.get_opt("partial").await.unwrap().is_some() {
        assert!(Instant::now() < deadline + Duration::from_secs(30), "the export was never released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    controller.await.unwrap();
}
