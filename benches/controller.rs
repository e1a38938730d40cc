//! The controller at scale, on the real API server (e2e/envtest): 1,000
//! custom resources of mixed kinds (10% ChainSource, 60% IngestJob — half
//! backfills, half followers — 30% CacheTier), created at once, reconciled by
//! `chronicle controller` (release build, as a process). Reported:
//!
//! - burst: create → status written for this generation, p50/p99, and the
//!   time until all are;
//! - single: a spec change of one object at a time (the rest idle) → status
//!   for the new generation, p50/p99, next to the ceiling measured in the
//!   same run: the same change made and reported by hand (a spec patch, then
//!   a status patch — the least any controller must do), with the ratio;
//! - the controller's resident memory (current and peak) holding 1,000
//!   resources and their 1,200 children in its caches.
//!
//! `cargo bench --bench controller` (RESOURCES sets the count; 1,000 by default).

#[path = "../e2e/envtest.rs"]
mod envtest;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronicle::crd::{CacheTier, ChainSource, IngestJob};
use futures::StreamExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// When each (kind, name, generation) was first seen reported in status.
type Seen = Arc<Mutex<HashMap<(String, String, i64), Instant>>>;

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.50), at(0.99))
}

/// Records, for every object of kind K in `namespace`, when its status first
/// reports a generation.
fn watch<K>(client: &kube::Client, namespace: &str, seen: Seen, observed: fn(&K) -> Option<i64>)
where
    K: chronicle::controller::pipeline::Kind,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let namespace = namespace.to_string();
    tokio::spawn(async move {
        let mut events =
            kube::runtime::WatchStreamExt::default_backoff(watcher::watcher(api, watcher::Config::default())).boxed();
        while let Some(event) = events.next().await {
            // The watcher retries by itself; a failed event is reported and the watch goes on.
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    eprintln!("watch of {} in {namespace}: {e}", K::kind(&()));
                    continue;
                }
            };
            let objects = match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                _ => continue,
            };
            for object in objects {
                if let Some(generation) = observed(&object) {
                    let key = (K::kind(&()).to_string(), object.name_any(), generation);
                    seen.lock().unwrap().entry(key).or_insert_with(Instant::now);
                }
            }
        }
    });
}

fn example(file: &str) -> Value {
    let path = std::path::Path::new(envtest::ROOT).join("examples").join(file);
    let mut object: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    object["metadata"]["namespace"] = json!("e2e");
    object
}

/// The i-th of `n` resources: its kind, name and body.
fn resource(i: usize, sources: usize) -> (&'static str, String, Value) {
    let source = format!("source-{}", i % sources);
    let (kind, mut object) = match i % 10 {
        0 => {
            let mut object = example("chainsource-solana-mainnet.yaml");
            // Endpoints that refuse at once: the probe's cost, not a network's.
            for endpoint in object["spec"]["endpoints"].as_array_mut().unwrap() {
                endpoint["url"] = json!("http://127.0.0.1:9");
                endpoint["websocketUrl"] = json!("ws://127.0.0.1:9");
            }
            ("ChainSource", object)
        }
        1..=3 => ("IngestJob", example("ingestjob-backfill.yaml")),
        4..=6 => ("IngestJob", example("ingestjob-follow.yaml")),
        _ => ("CacheTier", example("cachetier.yaml")),
    };
    let name =
        if kind == "ChainSource" { format!("source-{}", i / 10) } else { format!("{}-{i}", kind.to_lowercase()) };
    object["metadata"]["name"] = json!(name);
    if kind != "ChainSource" {
        object["spec"]["sourceRef"]["name"] = json!(source);
    }
    (kind, name, object)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let count: usize =
        std::env::var("RESOURCES").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 1000 } else { 30 });
    let changes = if full { 100 } else { 5 };
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(run(count, changes));
}

async fn run(count: usize, changes: usize) {
    let api = envtest::api_with_crds().await;
    let client = api.client().await;
    let seen: Seen = Arc::default();
    watch::<ChainSource>(&client, "e2e", seen.clone(), |o| o.status.as_ref()?.common.observed_generation);
    watch::<IngestJob>(&client, "e2e", seen.clone(), |o| o.status.as_ref()?.common.observed_generation);
    watch::<CacheTier>(&client, "e2e", seen.clone(), |o| o.status.as_ref()?.common.observed_generation);
    watch::<CacheTier>(&client, "ceiling", seen.clone(), |o| o.status.as_ref()?.common.observed_generation);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut controller = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["controller", "--image", "chronicle:bench", "--lease-namespace", "e2e", "--identity", "bench"])
        .args(["--health-listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", api.dir.path().join("kubeconfig"))
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();

    // Burst: every resource created as fast as the API server takes them.
    let sources = count.div_ceil(10);
    let created: Mutex<HashMap<(String, String), Instant>> = Mutex::default();
    let started = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(16, |i| {
            let (kind, name, object) = resource(i, sources);
            let created = &created;
            let api = &api;
            async move {
                let (status, answer) = envtest::create(api, object).await;
                assert_eq!(status, 201, "{kind} {name}: {answer}");
                created.lock().unwrap().insert((kind.to_string(), name), Instant::now());
            }
        })
        .await;
    let created = created.into_inner().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while created.keys().any(|(k, n)| !seen.lock().unwrap().contains_key(&(k.clone(), n.clone(), 1))) {
        assert!(Instant::now() < deadline, "not every resource was reconciled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_done = started.elapsed();
    let burst: Vec<Duration> = {
        let seen = seen.lock().unwrap();
        created.iter().map(|((k, n), at)| seen[&(k.clone(), n.clone(), 1)].saturating_duration_since(*at)).collect()
    };
    let pid = controller.id();
    let (rss, peak) = (rss_kib(pid, "VmRSS:"), rss_kib(pid, "VmHWM:"));

    // Single changes: one CacheTier at a time gets a new spec.
    let tiers: Api<CacheTier> = Api::namespaced(client.clone(), "e2e");
    let names: Vec<String> = created.keys().filter(|(k, _)| k == "CacheTier").map(|(_, n)| n.clone()).collect();
    let mut single = Vec::new();
    for (round, name) in names.iter().cycle().take(changes).enumerate() {
        let generation = tiers.get(name).await.unwrap().metadata.generation.unwrap() + 1;
        let change = json!({"spec": {"defaultTtl": format!("{}s", 3 + round)}});
        let at = Instant::now();
        tiers.patch(name, &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
        let key = ("CacheTier".to_string(), name.clone(), generation);
        loop {
            if let Some(done) = seen.lock().unwrap().get(&key) {
                single.push(done.saturating_duration_since(at));
                break;
            }
            assert!(at.elapsed() < Duration::from_secs(60), "{name} generation {generation} never reported");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // The ceiling: the same change made and reported by hand, the controller
    // stopped so nothing competes, timed the same way (until the watch sees
    // the status).
    let shadow: Api<CacheTier> = Api::namespaced(client.clone(), "ceiling");
    envtest::post(
        &api,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ceiling"}}),
    )
    .await;
    let mut tier: CacheTier = serde_json::from_value(example("cachetier.yaml")).unwrap();
    tier.metadata.namespace = Some("ceiling".into());
    tier.metadata.name = Some("by-hand".into());
    controller.kill().unwrap(); // the ceiling runs alone
    controller.wait().unwrap();
    shadow.create(&PostParams::default(), &tier).await.unwrap();
    let mut by_hand = Vec::new();
    for round in 0..changes {
        let at = Instant::now();
        let change = json!({"spec": {"defaultTtl": format!("{}s", 3 + round)}});
        let changed = shadow.patch("by-hand", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
        let status = json!({"apiVersion": "chronicle.dev/v1alpha1", "kind": "CacheTier",
            "status": {"observedGeneration": changed.metadata.generation, "readyReplicas": 0}});
        shadow.patch_status("by-hand", &PatchParams::apply("bench").force(), &Patch::Apply(&status)).await.unwrap();
        let key = ("CacheTier".to_string(), "by-hand".to_string(), changed.metadata.generation.unwrap());
        loop {
            if let Some(done) = seen.lock().unwrap().get(&key) {
                by_hand.push(done.saturating_duration_since(at));
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    let (b50, b99) = percentiles(burst);
    let (s50, s99) = percentiles(single);
    let (c50, c99) = percentiles(by_hand);
    let kinds = |k: &str| created.keys().filter(|(kind, _)| kind == k).count();
    println!(
        "controller: {count} resources ({} ChainSource, {} IngestJob, {} CacheTier) on kube-apiserver 1.37.2 (envtest)",
        kinds("ChainSource"),
        kinds("IngestJob"),
        kinds("CacheTier")
    );
    println!(
        "burst       create -> status p50 {b50:.1} ms  p99 {b99:.1} ms  all reconciled in {:.2} s",
        all_done.as_secs_f64()
    );
    println!(
        "single      spec change -> status p50 {s50:.1} ms  p99 {s99:.1} ms  ({changes} changes)  | by-hand ceiling p50 {c50:.1} ms  p99 {c99:.1} ms  -> ratio p50 {:.2}",
        s50 / c50
    );
    println!("memory      controller RSS {:.1} MiB, peak {:.1} MiB", rss as f64 / 1024.0, peak as f64 / 1024.0);
}
