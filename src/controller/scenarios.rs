//! Reconcile scenarios against kube-rs' mocked API server (`tower-test`), in
//! the style of kube-rs/controller-rs: each scenario states the calls a
//! reconcile must make, in order, answers them, and checks what was sent.
//! The same behaviour on a real API server is in `e2e/api_server.rs`.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::{Client, Resource};
use serde_json::{Value, json};

use super::context::{Context, Error};
use super::example;
use crate::crd::{ChainSource, IngestJob};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Plays the API server: takes the reconcile's requests one by one.
struct ApiServer(Handle);

impl ApiServer {
    /// The next request must be `method` on a path starting with `path`;
    /// answers `status` with `answer` and returns the request's query and body.
    async fn expect(&mut self, method: &str, path: &str, status: u16, answer: Value) -> (String, Value) {
        let (request, send) = self.0.next_request().await.expect("a request");
        let uri = request.uri().clone();
        assert_eq!(request.method().as_str(), method, "{uri}");
        assert!(uri.path().starts_with(path), "expected {method} {path}, got {uri}");
        let body = request.into_body().collect_bytes().await.unwrap();
        let sent = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
        let response = Response::builder().status(status).body(Body::from(serde_json::to_vec(&answer).unwrap()));
        send.send_response(response.unwrap());
        (uri.query().unwrap_or_default().to_string(), sent)
    }

    /// The request sent back as the answer (what an apply returns, near enough).
    async fn echo(&mut self, method: &str, path: &str) -> (String, Value) {
        let (request, send) = self.0.next_request().await.expect("a request");
        let uri = request.uri().clone();
        assert_eq!(request.method().as_str(), method, "{uri}");
        assert!(uri.path().starts_with(path), "expected {method} {path}, got {uri}");
        let body = request.into_body().collect_bytes().await.unwrap();
        send.send_response(Response::builder().body(Body::from(body.clone())).unwrap());
        (uri.query().unwrap_or_default().to_string(), serde_json::from_slice(&body).unwrap())
    }

    /// An Event is published; returns its reason.
    async fn event(&mut self) -> String {
        let (_, event) = self.echo("POST", "/apis/events.k8s.io/v1/namespaces/chronicle/events").await;
        event["reason"].as_str().unwrap().to_string()
    }
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

/// The backfill example as the API server stores it.
fn backfill(generation: i64) -> IngestJob {
    let mut job: IngestJob = example("ingestjob-backfill.yaml", |_| {});
    job.meta_mut().uid = Some("uid-ij".into());
    job.meta_mut().generation = Some(generation);
    job
}

/// What the server answers to a status patch: the stored object.
fn stored(generation: i64) -> Value {
    serde_json::to_value(backfill(generation)).unwrap()
}

fn context() -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = Context::new(Client::new(service, "chronicle"), "chronicle:test", Some("test".into()));
    (Arc::new(ctx), ApiServer(handle))
}

/// Runs `reconcile` against the scripted server, both within a second.
async fn scenario<F, S>(reconcile: F, server: S) -> Result<Action, Error>
where
    F: std::future::Future<Output = Result<Action, Error>>,
    S: std::future::Future<Output = ()>,
{
    tokio::time::timeout(Duration::from_secs(1), async { tokio::join!(reconcile, server).0 })
        .await
        .expect("the reconcile and the scripted server finish in time")
}

const SOURCE: &str = "/apis/chronicle.dev/v1alpha1/namespaces/chronicle/chainsources/solana-mainnet";
const TIERS: &str = "/apis/chronicle.dev/v1alpha1/namespaces/chronicle/cachetiers";
const JOBS: &str = "/apis/batch/v1/namespaces/chronicle/jobs";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/chronicle/deployments";
const CATALOG_SECRET: &str = "/api/v1/namespaces/chronicle/secrets/chronicle-catalog";
const STATUS: &str = "/apis/chronicle.dev/v1alpha1/namespaces/chronicle/ingestjobs/mainnet-epoch-700/status";

fn tier() -> Value {
    serde_json::to_value(example::<crate::crd::CacheTier>("cachetier.yaml", |_| {})).unwrap()
}

fn source() -> Value {
    serde_json::to_value(example::<ChainSource>("chainsource-solana-mainnet.yaml", |_| {})).unwrap()
}

#[tokio::test]
async fn create_applies_an_owned_indexed_job_and_reports_it() {
    let (ctx, mut api) = context();
    let job = Arc::new(backfill(1));
    let server = async {
        api.expect("GET", SOURCE, 200, source()).await;
        // A tier serving the source: the job's workers drop its cached answers as blocks land.
        api.expect("GET", TIERS, 200, list(vec![tier()])).await;
        let (query, applied) = api.echo("PATCH", &format!("{JOBS}/mainnet-epoch-700-ingest")).await;
        assert!(query.contains("fieldManager=chronicle-controller") && query.contains("force=true"), "{query}");
        assert_eq!(applied["spec"]["completions"], 8);
        assert_eq!(applied["spec"]["completionMode"], "Indexed");
        assert_eq!(applied["metadata"]["ownerReferences"][0]["uid"], "uid-ij");
        assert_eq!(applied["metadata"]["ownerReferences"][0]["controller"], true);
        let env = &applied["spec"]["template"]["spec"]["containers"][0]["env"];
        let redis = env.as_array().unwrap().iter().find(|e| e["name"] == "CHRONICLE_CACHE_URL_MAINNET_RPC").unwrap();
        assert_eq!(
            redis["valueFrom"]["secretKeyRef"],
            json!({"name": "chronicle-redis", "key": "url", "optional": false})
        );
        let spec = env.as_array().unwrap().iter().find(|e| e["name"] == "CHRONICLE_WORKER_SPEC").unwrap();
        let spec: Value = serde_json::from_str(spec["value"].as_str().unwrap()).unwrap();
        assert_eq!(spec["caches"], json!([{"env": "CHRONICLE_CACHE_URL_MAINNET_RPC"}]));
        let (query, _) = api.expect("GET", JOBS, 200, list(vec![applied])).await;
        assert!(query.contains("labelSelector=chronicle.dev%2Fingestjob%3Dmainnet-epoch-700"), "{query}");
        api.expect("GET", DEPLOYMENTS, 200, list(vec![])).await;
        // Progress: the catalog URL's Secret is not there yet.
        api.expect("GET", CATALOG_SECRET, 404, not_found()).await;
        let (_, status) = api.expect("PATCH", STATUS, 200, stored(1)).await;
        assert_eq!(status["status"]["observedGeneration"], 1);
        assert_eq!(status["status"]["phase"], "Pending");
        assert_eq!(status["status"]["workload"], "mainnet-epoch-700-ingest");
        let progressing =
            status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing");
        let message = progressing.unwrap()["message"].as_str().unwrap();
        assert!(message.ends_with("progress unknown: Secret chronicle-catalog has no key url"), "{message}");
        assert_eq!(api.event().await, "SpecApplied");
        assert_eq!(api.event().await, "Pending");
    };
    let action = scenario(super::ingest_job::reconcile(job, ctx), server).await.unwrap();
    // Workers run: progress is refreshed every 15 s.
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn an_update_reapplies_and_says_so_once() {
    let (ctx, mut api) = context();
    // Generation 2 (batch size 100); generation 1 was reported Pending.
    let mut job = backfill(2);
    job.spec.batch_size = 100;
    let previous = json!({"observedGeneration": 1, "phase": "Pending", "conditions": [
        {"type": "Ready", "status": "False", "reason": "Pending", "message": "backfill Job mainnet-epoch-700-ingest",
         "lastTransitionTime": "2026-11-26T00:00:00Z", "observedGeneration": 1}]});
    job.status = Some(serde_json::from_value(previous).unwrap());
    let server = async {
        api.expect("GET", SOURCE, 200, source()).await;
        api.expect("GET", TIERS, 200, list(vec![])).await;
        let (_, applied) = api.echo("PATCH", &format!("{JOBS}/mainnet-epoch-700-ingest")).await;
        let env = applied["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
        let spec = env.iter().find(|e| e["name"] == crate::worker::spec::SPEC_ENV).unwrap()["value"].as_str().unwrap();
        assert!(spec.contains(r#""batchSize":100"#), "{spec}");
        api.expect("GET", JOBS, 200, list(vec![applied])).await;
        api.expect("GET", DEPLOYMENTS, 200, list(vec![])).await;
        api.expect("GET", CATALOG_SECRET, 404, not_found()).await;
        let (_, status) = api.expect("PATCH", STATUS, 200, stored(2)).await;
        assert_eq!(status["status"]["observedGeneration"], 2);
        let ready = &status["status"]["conditions"][0];
        assert_eq!(ready["lastTransitionTime"], "2026-11-26T00:00:00Z", "unchanged status keeps its time");
        // Ready did not change: only the new generation is an Event.
        assert_eq!(api.event().await, "SpecApplied");
    };
    scenario(super::ingest_job::reconcile(Arc::new(job), ctx.clone()), server).await.unwrap();
    // Nothing else was sent.
    assert!(tokio::time::timeout(Duration::from_millis(50), api.0.next_request()).await.is_err());
}

#[tokio::test]
async fn drift_is_overwritten_and_stray_children_are_pruned() {
    let (ctx, mut api) = context();
    let mut job = backfill(1);
    job.status = Some(
        serde_json::from_value(json!({"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "False", "reason": "Pending", "message": "",
         "lastTransitionTime": "2026-11-26T00:00:00Z"}]}))
        .unwrap(),
    );
    let server = async {
        api.expect("GET", SOURCE, 200, source()).await;
        api.expect("GET", TIERS, 200, list(vec![])).await;
        // The Job was edited by hand (parallelism 1): the forced apply of the
        // whole desired spec takes the fields back.
        let (query, applied) = api.echo("PATCH", &format!("{JOBS}/mainnet-epoch-700-ingest")).await;
        assert!(query.contains("force=true"), "{query}");
        assert_eq!(applied["spec"]["parallelism"], 8);
        // A Job of an older spec and the Deployment of an earlier follow mode
        // still carry the owner's labels: both go.
        let stray = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "mainnet-epoch-700-old", "namespace": "chronicle"}});
        api.expect("GET", JOBS, 200, list(vec![applied, stray])).await;
        api.expect("DELETE", &format!("{JOBS}/mainnet-epoch-700-old"), 200, json!({})).await;
        assert_eq!(api.event().await, "ChildDeleted");
        let follower = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mainnet-epoch-700-ingest", "namespace": "chronicle"}});
        api.expect("GET", DEPLOYMENTS, 200, list(vec![follower])).await;
        let (_, options) =
            api.expect("DELETE", &format!("{DEPLOYMENTS}/mainnet-epoch-700-ingest"), 200, json!({})).await;
        assert_eq!(options["propagationPolicy"], "Background");
        assert_eq!(api.event().await, "ChildDeleted");
        api.expect("GET", CATALOG_SECRET, 404, not_found()).await;
        api.expect("PATCH", STATUS, 200, stored(1)).await;
    };
    scenario(super::ingest_job::reconcile(Arc::new(job), ctx), server).await.unwrap();
}

#[tokio::test]
async fn children_of_a_deleted_owner_are_swept() {
    let (ctx, mut api) = context();
    let owned = |name: &str, uid: &str| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "chronicle",
            "ownerReferences": [{"apiVersion": "chronicle.dev/v1alpha1", "kind": "IngestJob", "name": name,
                "uid": uid, "controller": true}]}})
    };
    let server = async {
        let (query, _) = api
            .expect(
                "GET",
                "/apis/batch/v1/jobs",
                200,
                list(vec![owned("gone", "uid-1"), owned("alive", "uid-2"), owned("recreated", "uid-3")]),
            )
            .await;
        assert!(query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dchronicle-controller"), "{query}");
        let ingestjobs = "/apis/chronicle.dev/v1alpha1/namespaces/chronicle/ingestjobs";
        // Deleted: the owner is gone.
        api.expect("GET", &format!("{ingestjobs}/gone"), 404, not_found()).await;
        api.expect("DELETE", &format!("{JOBS}/gone"), 200, json!({})).await;
        // Kept: the owner is there with the same uid.
        let alive = json!({"apiVersion": "chronicle.dev/v1alpha1", "kind": "IngestJob", "metadata": {"name": "alive", "uid": "uid-2"}});
        api.expect("GET", &format!("{ingestjobs}/alive"), 200, alive).await;
        // Deleted: an object of the same name, but not the owner.
        let other = json!({"apiVersion": "chronicle.dev/v1alpha1", "kind": "IngestJob", "metadata": {"name": "recreated", "uid": "uid-9"}});
        api.expect("GET", &format!("{ingestjobs}/recreated"), 200, other).await;
        api.expect("DELETE", &format!("{JOBS}/recreated"), 404, not_found()).await;
        api.expect("GET", "/apis/batch/v1/cronjobs", 200, list(vec![])).await;
        api.expect("GET", "/apis/apps/v1/deployments", 200, list(vec![])).await;
        api.expect("GET", "/api/v1/services", 200, list(vec![])).await;
    };
    let swept = tokio::time::timeout(Duration::from_secs(1), async {
        tokio::join!(super::children::sweep_orphans(&ctx), server).0
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(swept, 2);
    assert!(ctx.metrics.encode().contains("chronicle_controller_orphans_deleted_total 2"));
}

#[tokio::test]
async fn errors_back_off_per_object_with_one_event_per_streak() {
    let (ctx, mut api) = context();
    let job = Arc::new(backfill(1));
    let unavailable =
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503, "message": "etcd is down"});
    for attempt in 1..=3u32 {
        let server = async {
            api.expect("GET", SOURCE, 503, unavailable.clone()).await;
        };
        let error = scenario(super::ingest_job::reconcile(job.clone(), ctx.clone()), server).await.unwrap_err();
        let action = super::pipeline::error_policy(job.clone(), &error, ctx.clone());
        assert_eq!(action, Action::requeue(Duration::from_secs(5 << (attempt - 1))));
        if attempt == 1 {
            let reason = tokio::time::timeout(Duration::from_secs(1), api.event()).await.unwrap();
            assert_eq!(reason, "ReconcileFailed");
        }
    }
    // Retries did not raise more Events.
    assert!(tokio::time::timeout(Duration::from_millis(50), api.0.next_request()).await.is_err());
    // Another object is not slowed down by this one's failures.
    let mut other = backfill(1);
    other.meta_mut().name = Some("another".into());
    let server = async {
        api.expect("GET", SOURCE, 503, unavailable.clone()).await;
    };
    let error = scenario(super::ingest_job::reconcile(Arc::new(other.clone()), ctx.clone()), server).await.unwrap_err();
    let action = super::pipeline::error_policy(Arc::new(other), &error, ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let reason = tokio::time::timeout(Duration::from_secs(1), api.event()).await.unwrap();
    assert_eq!(reason, "ReconcileFailed");
}
