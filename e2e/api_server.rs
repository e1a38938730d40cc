//! Against a real Kubernetes API server (`e2e/envtest/`: kube-apiserver and
//! etcd built from their Go modules, as envtest does; or any cluster named by
//! `CHRONICLE_E2E_KUBECONFIG`): the generated CRDs install, every example is
//! accepted, and every `examples/invalid/*` file is rejected with its rule's
//! message — the same verdicts as the in-process validator (`tests/crds.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A running envtest API server; stopped on drop.
struct ApiServer {
    dir: tempfile::TempDir,
    server: String,
    token: String,
}

impl ApiServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(ROOT).join("e2e/envtest/envtest.sh");
        let status = Command::new(&script).arg("start").arg(dir.path()).status().expect("run e2e/envtest/envtest.sh");
        assert!(status.success(), "the envtest API server (kube-apiserver + etcd from e2e/envtest) did not start");
        let kubeconfig = std::fs::read_to_string(dir.path().join("kubeconfig")).unwrap();
        let field = |name: &str| {
            kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().to_string())
                .expect("kubeconfig field")
        };
        Self { server: field("server:"), token: field("token:"), dir }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(ROOT).join("e2e/envtest/envtest.sh")).arg("stop").arg(self.dir.path()).status();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap()
}

async fn post(api: &ApiServer, path: &str, body: &Value) -> (u16, Value) {
    let response =
        client().post(format!("{}{path}", api.server)).bearer_auth(&api.token).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn yaml_documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "ChainSource" => "chainsources",
        "IngestJob" => "ingestjobs",
        "RetentionPolicy" => "retentionpolicies",
        "CacheTier" => "cachetiers",
        "TrainingExport" => "trainingexports",
        other => panic!("not a chronicle kind: {other}"),
    }
}

async fn create(api: &ApiServer, mut object: Value) -> (u16, Value) {
    object["metadata"]["namespace"] = json!("e2e");
    let kind = object["kind"].as_str().unwrap().to_string();
    let path = format!("/apis/chronicle.dev/v1alpha1/namespaces/e2e/{}?fieldValidation=Strict", plural(&kind));
    post(api, &path, &object).await
}

/// Starts the API server, installs the CRDs, creates namespace `e2e`.
async fn api_with_crds() -> ApiServer {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let api = ApiServer::start();
    for file in files("crds") {
        let crd = &yaml_documents(&file)[0];
        let (status, answer) = post(&api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).await;
        assert_eq!(status, 201, "{}: {answer}", file.display());
    }
    post(&api, "/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "e2e"}}))
        .await;
    // CRDs serve once established.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = json!({"apiVersion": "chronicle.dev/v1alpha1", "kind": "IngestJob", "metadata": {"name": "probe"}});
        let (status, _) = create(&api, probe).await;
        if status == 422 || status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "the CRDs never became established");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api
}

#[tokio::test]
async fn the_api_server_accepts_the_crds_and_judges_examples_as_we_do() {
    let api = api_with_crds().await;

    let mut accepted = 0;
    let examples = files("examples").into_iter().chain(files("examples/scenarios"));
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
    use chronicle::controller::ingest_job::{Context, run};
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::{Patch, PatchParams};
    use kube::{Api, Client};

    let api = api_with_crds().await;
    let kubeconfig = kube::config::Kubeconfig::read_from(api.dir.path().join("kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let client = Client::try_from(config).unwrap();
    for file in ["examples/chainsource-solana-mainnet.yaml", "examples/ingestjob-backfill.yaml"] {
        let object = yaml_documents(&Path::new(ROOT).join(file)).remove(0);
        let (status, answer) = create(&api, object).await;
        assert_eq!(status, 201, "{file}: {answer}");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e"));
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
    use chronicle::controller::ingest_job::Context;
    use chronicle::controller::{cache_tier, chain_source};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use kube::{Api, Client};

    let api = api_with_crds().await;
    let kubeconfig = kube::config::Kubeconfig::read_from(api.dir.path().join("kubeconfig")).unwrap();
    let client =
        Client::try_from(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap()).unwrap();
    for file in ["examples/chainsource-solana-mainnet.yaml", "examples/cachetier.yaml"] {
        let (status, answer) = create(&api, yaml_documents(&Path::new(ROOT).join(file)).remove(0)).await;
        assert_eq!(status, 201, "{file}: {answer}");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = std::sync::Arc::new(Context::new(client.clone(), "chronicle:e2e"));
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
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 8899);

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
    use kube::{Api, Client};

    let api = api_with_crds().await;
    let kubeconfig_path = api.dir.path().join("kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig_path).unwrap();
    let client =
        Client::try_from(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap()).unwrap();
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
