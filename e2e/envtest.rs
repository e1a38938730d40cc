//! The envtest API server (e2e/envtest/envtest.sh: kube-apiserver and etcd
//! built from their Go modules) for the e2e suite and the controller
//! benchmark: start, stop, a client, the CRDs installed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A running envtest API server; stopped on drop.
pub struct ApiServer {
    pub dir: tempfile::TempDir,
    pub server: String,
    pub token: String,
}

impl ApiServer {
    pub fn start() -> Self {
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

impl ApiServer {
    /// A kube client with the administrator's token.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(Self::config(&self.dir.path().join("kubeconfig")).await).unwrap()
    }

    pub async fn config(kubeconfig: &Path) -> kube::Config {
        let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(ROOT).join("e2e/envtest/envtest.sh")).arg("stop").arg(self.dir.path()).status();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap()
}

pub async fn post(api: &ApiServer, path: &str, body: &Value) -> (u16, Value) {
    let response =
        client().post(format!("{}{path}", api.server)).bearer_auth(&api.token).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub fn yaml_documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

pub fn files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

pub fn plural(kind: &str) -> &'static str {
    match kind {
        "ChainSource" => "chainsources",
        "IngestJob" => "ingestjobs",
        "RetentionPolicy" => "retentionpolicies",
        "CacheTier" => "cachetiers",
        "TrainingExport" => "trainingexports",
        other => panic!("not a chronicle kind: {other}"),
    }
}

pub async fn create(api: &ApiServer, mut object: Value) -> (u16, Value) {
    object["metadata"]["namespace"] = json!("e2e");
    let kind = object["kind"].as_str().unwrap().to_string();
    let path = format!("/apis/chronicle.dev/v1alpha1/namespaces/e2e/{}?fieldValidation=Strict", plural(&kind));
    post(api, &path, &object).await
}

/// Starts the API server, installs the CRDs, creates namespace `e2e`.
pub async fn api_with_crds() -> ApiServer {
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
