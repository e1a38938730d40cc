//! `chronicle dev`: the README's first command on the demo manifests, the
//! README's curl lines run exactly as written, a second run that resumes
//! without refetching; and for every example, the worker spec `dev` runs is
//! the one the controller puts in the pod.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chronicle::controller::workload::{IngestWorkload, cache_tier_workload, ingest_workload};
use chronicle::dev::manifests::Manifests;
use chronicle::worker::spec::{SPEC_ENV, WorkerSpec};
use k8s_openapi::api::core::v1::Container;
use kube::ResourceExt;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn spec_in(container: &Container) -> WorkerSpec {
    let value = container.env.iter().flatten().find(|e| e.name == SPEC_ENV).unwrap().value.clone().unwrap();
    WorkerSpec::from_json(&value).unwrap()
}

/// The work named `key` in the node pod of an embedded `source`, as a spec.
fn on_node(manifests: &Manifests, source: &chronicle::crd::ChainSource, key: &str) -> WorkerSpec {
    use chronicle::worker::spec::Work;
    let jobs: Vec<_> = manifests.jobs.iter().map(|p| p.object.clone()).collect();
    let tiers: Vec<_> = manifests.tiers.iter().map(|p| p.object.clone()).collect();
    let node = chronicle::controller::node::node_workload(source, &jobs, &tiers, "chronicle:test").unwrap();
    let Work::Node(node) = spec_in(&node.spec.unwrap().template.spec.unwrap().containers[0]).work else {
        panic!("a node spec")
    };
    let named = node.works.into_iter().find(|w| w.name == key).unwrap_or_else(|| panic!("{key} not on the node"));
    WorkerSpec::new(named.work)
}

/// Every example the controller can run: the spec in its pod equals the one `dev` runs.
#[test]
fn dev_runs_the_worker_specs_the_controller_puts_in_pods() {
    let mut compared = 0;
    for dir in ["examples", "examples/scenarios", "examples/dev"] {
        let files: Vec<_> = std::fs::read_dir(Path::new(ROOT).join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        // Jobs and tiers need their ChainSources: load each directory together.
        let mut manifests = Manifests::load(&files).unwrap();
        for placed in manifests.jobs.iter_mut().map(|p| &mut p.object) {
            placed.metadata.uid = Some("0b9c6a14-5b0e-4c1e-9b7a-2a3d4c5e6f70".into());
        }
        for placed in manifests.tiers.iter_mut().map(|p| &mut p.object) {
            placed.metadata.uid = Some("5f0e2b1a-0000-4000-8000-000000000001".into());
        }
        let dev = chronicle::dev::worker_specs(&manifests);
        let tiers: Vec<_> = manifests.tiers.iter().map(|p| p.object.clone()).collect();
        for job in manifests.jobs.iter().map(|p| &p.object) {
            let key = format!("IngestJob/{}/{}", job.namespace().unwrap(), job.name_any());
            let Some(source) = manifests.source(&job.namespace().unwrap(), &job.spec.source_ref.name) else { continue };
            let pod = match ingest_workload(job, &source.object, &tiers, "chronicle:test") {
                Ok(IngestWorkload::Backfill(j)) => j.spec.unwrap().template.spec.unwrap().containers[0].clone(),
                Ok(IngestWorkload::Follow(d)) => d.spec.unwrap().template.spec.unwrap().containers[0].clone(),
                Ok(IngestWorkload::OnNode(_)) => {
                    assert_eq!(dev[&key].as_ref().unwrap(), &on_node(&manifests, &source.object, &key), "{key}");
                    compared += 1;
                    continue;
                }
                Err(e) => {
                    assert_eq!(dev[&key].as_ref().unwrap_err(), &e.to_string(), "{key}: the same refusal");
                    continue;
                }
            };
            assert_eq!(dev[&key].as_ref().unwrap(), &spec_in(&pod), "{key}");
            compared += 1;
        }
        for tier in manifests.tiers.iter().map(|p| &p.object) {
            let key = format!("CacheTier/{}/{}", tier.namespace().unwrap(), tier.name_any());
            let Some(source) = manifests.source(&tier.namespace().unwrap(), &tier.spec.source_ref.name) else {
                continue;
            };
            let (deployment, _) = cache_tier_workload(tier, &source.object, "chronicle:test").unwrap();
            let spec = match deployment {
                Some(deployment) => spec_in(&deployment.spec.unwrap().template.spec.unwrap().containers[0]),
                None => on_node(&manifests, &source.object, &key),
            };
            assert_eq!(dev[&key].as_ref().unwrap(), &spec, "{key}");
            compared += 1;
        }
    }
    assert!(compared >= 6, "specs compared: {compared}");
}

#[test]
fn invalid_manifests_and_cluster_kinds_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let mut invalid: Vec<_> =
        std::fs::read_dir(Path::new(ROOT).join("examples/invalid")).unwrap().map(|e| e.unwrap().path()).collect();
    invalid.sort();
    let invalid = invalid.remove(0);
    let expected = std::fs::read_to_string(&invalid).unwrap();
    let message = expected.lines().find_map(|l| l.strip_prefix("# expect: ")).unwrap().to_string();
    std::fs::copy(&invalid, &file).unwrap();
    let err = Manifests::load(std::slice::from_ref(&file)).unwrap_err().to_string();
    assert!(err.contains(&message), "{err}");
    std::fs::write(&file, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n").unwrap();
    let err = Manifests::load(std::slice::from_ref(&file)).unwrap_err().to_string();
    assert!(err.contains("apps/v1 Deployment needs a cluster"), "{err}");
}

/// The README's curl lines, exactly as written there.
fn readme_curl_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    readme.lines().filter(|l| l.starts_with("curl -s http://127.0.0.1:8899")).map(str::to_string).collect()
}

/// Runs `chronicle dev -f examples/dev` as `scripts/quickstart.sh` does.
fn start_dev(state: &Path, extra: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    dev_process(&["-f", "examples/dev", "--state", state.to_str().unwrap()], extra)
}

/// `chronicle dev ARGS EXTRA` from the repository root, and its stdout's lines as they come.
fn dev_process(args: &[&str], extra: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .current_dir(ROOT)
        .arg("dev")
        .args(args)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, receiver) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    (child, receiver)
}

fn wait_for(lines: &std::sync::mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|l| l.contains(what)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("chronicle dev never printed {what:?}; it printed:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn the_readme_quickstart_serves_the_demo_and_a_second_run_resumes() {
    let state = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_dev(state.path(), &[]);
    let mut seen = Vec::new();
    wait_for(&lines, "backfills done", &mut seen);
    for name in ["demo-genesis", "demo-slot-100000000", "demo-slot-154808473"] {
        let line = seen.iter().find(|l| l.contains(name)).unwrap();
        assert!(line.contains("1 blocks written") && line.contains("0 gaps open"), "{line}");
    }

    let curls = readme_curl_lines();
    assert_eq!(curls.len(), 3, "the README's curl lines");
    let answers: Vec<Value> = curls
        .iter()
        .map(|line| {
            let out = Command::new("sh").args(["-c", line]).output().unwrap();
            assert!(out.status.success(), "{line}");
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{line}: {e}"))
        })
        .collect();
    assert_eq!(answers[0]["result"], serde_json::json!([10_000, 100_000_000, 154_808_473]), "{}", answers[0]);
    let early = &answers[1]["result"];
    assert_eq!(early["blockhash"], "FNy3uy9b9EMupvMpzG6Waqtbpt5Hto3naW2NnDwL1eYq");
    assert!(early["transactions"].as_array().unwrap().iter().all(|t| t["meta"].is_null()));
    let source: Value =
        serde_json::from_slice(&std::fs::read(support::data_file("solana/block_154808473_v0_json.json")).unwrap())
            .unwrap();
    let v0 = &answers[2]["result"];
    assert_eq!(v0["blockhash"], source["blockhash"]);
    assert_eq!(
        v0["transactions"][0]["transaction"]["signatures"],
        source["transactions"][0]["transaction"]["signatures"]
    );

    // Ctrl-C stops cleanly.
    // SAFETY: kill(2) on the process we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success(), "exit after Ctrl-C");
    wait_for(&lines, "stopped; running again resumes", &mut seen);

    // Again: every backfill resumes at its checkpoint and fetches nothing.
    let (mut again, lines) = start_dev(state.path(), &["--once"]);
    let mut seen = Vec::new();
    wait_for(&lines, "stopped; running again resumes", &mut seen);
    assert!(again.wait().unwrap().success());
    let jobs: Vec<&String> = seen.iter().filter(|l| l.contains(" shard 0: done")).collect();
    assert_eq!(jobs.len(), 3, "{seen:#?}");
    for line in jobs {
        assert!(line.contains("0 blocks written, 0 slots skipped"), "{line}");
    }
}

/// The works of a node spec over one embedded store in `dir`: an ingest of
/// `peer` in `mode`, and a serve work on `port`, with `cache` (a URL in
/// `CHRONICLE_CACHE_URL_T`) between them when given.
fn node_spec(
    peer: &support::rpc_peer::RpcPeer,
    dir: &Path,
    port: u16,
    mode: chronicle::worker::spec::IngestModeSpec,
    cache: bool,
) -> chronicle::worker::spec::WorkerSpec {
    use chronicle::crd::chain_source::{ChainFamily, Commitment};
    use chronicle::crd::ingest_job::IngestTarget;
    use chronicle::worker::spec::*;
    let store = StoreSpec { url: format!("embedded://{}", dir.join("ledger").display()), ..StoreSpec::default() };
    let chain = ChainSpec {
        family: ChainFamily::Solana,
        network: "mainnet-beta".into(),
        commitment: Commitment::Finalized,
        chain_id: None,
        confirmations: None,
        traces: None,
    };
    let cache_url = FromEnv::new("CHRONICLE_CACHE_URL_T");
    let ingest = IngestSpec {
        job: "node-test".into(),
        chain: chain.clone(),
        source: SourceSpec::Rpc {
            endpoint: RpcEndpointSpec {
                name: "peer".into(),
                url: peer.url(),
                websocket_url: None,
                requests_per_second: None,
                burst: None,
                max_concurrent: 4,
                auth: None,
            },
        },
        mode,
        batch_size: 5,
        targets: vec![IngestTarget::Canonical],
        store: store.clone(),
        catalog: FromEnv::new("CHRONICLE_CATALOG"),
        lake: None,
        caches: if cache { vec![cache_url.clone()] } else { Vec::new() },
        metrics: None,
    };
    let cache = cache.then(|| CacheSpec {
        url: cache_url,
        // Long: only invalidation can make a new block's answers appear.
        ttl: "10m".into(),
        immutable_ttl: "1h".into(),
        max_memory_bytes: None,
        eviction: "allkeys-lru".into(),
        methods: Vec::new(),
        pool_size: None,
    });
    let serve = ServeSpec {
        chain,
        store,
        port: i32::from(port),
        cache,
        api_keys_dir: None,
        requests_per_second: None,
        burst: None,
        genesis_hash: None,
        upstream: None,
    };
    WorkerSpec::new(Work::Node(NodeSpec {
        works: vec![
            NamedWork { name: "IngestJob/t/ingest".into(), work: Work::Ingest(ingest) },
            NamedWork { name: "CacheTier/t/rpc".into(), work: Work::Serve(serve) },
        ],
    }))
}

/// `chronicle worker run` with `spec`, its catalog (and cache) from the environment.
fn start_node(spec: &chronicle::worker::spec::WorkerSpec, dir: &Path) -> tokio::process::Child {
    let file = dir.join("spec.json");
    std::fs::write(&file, spec.to_json()).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["worker", "run", "--spec", file.to_str().unwrap()])
        .env("CHRONICLE_CATALOG", format!("embedded://{}", dir.join("catalog").display()))
        .env("CHRONICLE_CACHE_URL_T", "memory://t")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn call(port: u16, body: &str) -> Option<Value> {
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    answer.json::<Value>().await.ok()
}

/// A node spec (what an embedded ChainSource's node pod runs): a backfill and
/// a serve work over one embedded store in one `chronicle worker run`
/// process — the store is opened once, the served answers include what the
/// backfill wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_spec_runs_ingest_and_serve_over_one_embedded_store() {
    use chronicle::worker::spec::IngestModeSpec;
    let peer = support::rpc_peer::RpcPeer::start(support::real_blocks().into_iter().collect()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mode = IngestModeSpec::Backfill { from: 100_000_000, to: 100_000_009, shards: 2 };
    let child = start_node(&node_spec(&peer, dir.path(), port, mode, false), dir.path());
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"getBlocks","params":[100000000,100000009]}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(port, body).await.is_none_or(|a| a["result"] != serde_json::json!([100_000_000])) {
        assert!(Instant::now() < deadline, "the node never served the backfilled block");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, log) = support::terminate(child).await;
    assert!(status.success(), "{log}");
    assert!(log.contains("IngestJob/t/ingest shard 1: done"), "both shards ran in the node: {log}");
}

/// Without Redis (`memory://`, what `chronicle dev` uses when no Redis
/// Secret is given), the one process's ingest drops the cached answers a new
/// block changes: a first page cached for ten minutes shows the new
/// signature on the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_cache_is_invalidated_by_the_ingest_beside_it() {
    use chronicle::worker::spec::IngestModeSpec;
    // Two real blocks; the second lands at the slot after the first (a derived position, real content).
    let blocks = support::real_blocks();
    let (first, first_block) = blocks[0].clone();
    let new_block = blocks.last().unwrap().1.clone();
    let peer = support::rpc_peer::RpcPeer::start([(first, first_block)].into_iter().collect()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let child =
        start_node(&node_spec(&peer, dir.path(), port, IngestModeSpec::Follow { from: Some(first) }, true), dir.path());
    let stored = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"getBlocks","params":[{first},{first}]}}"#);
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(port, &stored).await.is_none_or(|a| a["result"] != serde_json::json!([first])) {
        assert!(Instant::now() < deadline, "the follower never stored slot {first}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let address = new_block.transactions[0].account_keys()[0];
    let page = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress", "params": [address.to_string()]}).to_string();
    let before = call(port, &page).await.unwrap();
    assert_eq!(call(port, &page).await.unwrap(), before, "the first page, now cached");
    let signature = serde_json::json!(new_block.transactions[0].transaction_signature().to_string());
    assert_ne!(before["result"][0]["signature"], signature);
    peer.produce(first + 1, new_block.clone());
    while call(port, &page).await.unwrap()["result"][0]["signature"] != signature {
        assert!(Instant::now() < deadline, "the new signature never reached the cached first page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, log) = support::terminate(child).await;
    assert!(status.success(), "{log}");
}

/// An EVM chain's manifests, as the operator takes them, run by `chronicle
/// dev` against a real node (anvil, driven by viem: transfers, an ERC-20):
/// its backfill to the node's finalized block into the embedded store, and its
/// CacheTier answering every history method as the node does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_an_evm_chain_from_its_manifests() {
    let modules = tokio::task::spawn_blocking(support::node_modules).await.unwrap();
    let anvil = support::evm::Anvil::start(&modules);
    let token_sol = format!("{ROOT}/tests/evm/Token.sol");
    support::evm::node_script(&modules, "evm_drive.mjs", &[&anvil.url, &token_sol]);
    let last = support::evm::finalized(&anvil.url).await;
    let port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let manifests = format!(
        r#"apiVersion: chronicle.dev/v1alpha1
kind: ChainSource
metadata:
  name: anvil
spec:
  chain: {{family: evm, network: anvil, chainId: 31337}}
  endpoints:
    - name: anvil
      url: {url}
  store:
    embedded:
      size: 1Gi
  catalog:
    connectionSecretRef: {{name: anvil-catalog, key: url}}
---
apiVersion: chronicle.dev/v1alpha1
kind: IngestJob
metadata:
  name: anvil-history
spec:
  sourceRef: {{name: anvil}}
  source:
    rpc: {{}}
  mode: backfill
  range: {{startSlot: 0, endSlot: {last}}}
---
apiVersion: chronicle.dev/v1alpha1
kind: CacheTier
metadata:
  name: anvil-rpc
spec:
  sourceRef: {{name: anvil}}
  redis:
    urlSecretRef: {{name: anvil-redis, key: url}}
  server:
    replicas: 1
    port: {port}
"#,
        url = anvil.url
    );
    std::fs::write(dir.path().join("anvil.yaml"), manifests).unwrap();
    let (file, state) = (dir.path().join("anvil.yaml"), dir.path().join("state"));
    let (mut child, lines) = dev_process(&["-f", file.to_str().unwrap(), "--state", state.to_str().unwrap()], &[]);
    let mut seen = Vec::new();
    let lines = tokio::task::spawn_blocking(move || {
        wait_for(&lines, "backfills done", &mut seen);
        seen
    })
    .await
    .unwrap();
    let done = lines.iter().find(|l| l.contains("anvil-history shard 0: done")).unwrap();
    assert!(done.contains(&format!("{} blocks written", last + 1)) && done.contains("0 gaps open"), "{done}");
    let url = format!("http://127.0.0.1:{port}");
    assert!(lines.iter().any(|l| l.contains(&format!("EVM JSON-RPC on {url}"))), "{lines:#?}");
    let transactions = support::evm::assert_served_like_the_node(&url, &anvil.url, 0, last).await;
    assert!(transactions >= 10, "{transactions} transactions");

    // SAFETY: kill(2) on the process we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success(), "exit after Ctrl-C");
}
