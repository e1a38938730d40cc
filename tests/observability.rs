//! Observability, against real components: a following `chronicle worker
//! ingest` scraped on its `/metrics` after real work, its chain metrics
//! written to VictoriaMetrics' InfluxDB v2 write API and read back equal to
//! values computed here from the recorded node responses, a server outage
//! that neither blocks nor crashes ingestion (the drop counter says what was
//! lost), the label-cardinality rule over every series, and the shipped alert
//! rules (`promtool`) and dashboard (only metrics the code exports).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chronicle::store::BlockStore;
use serde_json::Value;
use support::rpc_peer::RpcPeer;
use support::{VictoriaMetrics, data_file, free_port, http_get, real_blocks, sample};
use tokio::process::Command;

/// The IngestJob the test's worker runs.
const JOB: &str = "metrics-job";

const VOTE_PROGRAM: &str = "Vote111111111111111111111111111111111111111";

/// A block's aggregates, computed from its recorded `getBlock` JSON (not
/// by Chronicle's code).
fn expected_fields(file: &str) -> BTreeMap<&'static str, i64> {
    let text = std::fs::read_to_string(data_file(&format!("solana/{file}"))).unwrap();
    let block: Value = serde_json::from_str(&text).unwrap();
    let block = block.get("result").unwrap_or(&block);
    let mut fields = BTreeMap::new();
    let txs = block["transactions"].as_array().unwrap();
    let count = |f: &dyn Fn(&Value) -> bool| txs.iter().filter(|t| f(t)).count() as i64;
    let is_vote = |t: &Value| {
        let keys = t["transaction"]["message"]["accountKeys"].as_array().unwrap();
        let ixs = t["transaction"]["message"]["instructions"].as_array().unwrap();
        !ixs.is_empty() && ixs.iter().all(|ix| keys[ix["programIdIndex"].as_u64().unwrap() as usize] == VOTE_PROGRAM)
    };
    let sum = |f: &dyn Fn(&Value) -> i64| txs.iter().map(f).sum::<i64>();
    fields.insert("transactions", txs.len() as i64);
    fields.insert("successful_transactions", count(&|t| t["meta"]["err"].is_null()));
    fields.insert("failed_transactions", count(&|t| !t["meta"]["err"].is_null()));
    fields.insert("vote_transactions", count(&is_vote));
    fields.insert("non_vote_transactions", count(&|t| !is_vote(t)));
    fields.insert("fees", sum(&|t| t["meta"]["fee"].as_i64().unwrap()));
    fields.insert(
        "priority_fees",
        sum(&|t| {
            let signatures = t["transaction"]["signatures"].as_array().unwrap().len() as i64;
            (t["meta"]["fee"].as_i64().unwrap() - 5_000 * signatures).max(0)
        }),
    );
    fields.insert("compute_units", sum(&|t| t["meta"]["computeUnitsConsumed"].as_i64().unwrap_or(0)));
    fields
}

/// Every sample of VictoriaMetrics' `chain_blocks_*` series, by field and slot.
fn exported_points(server: &VictoriaMetrics) -> BTreeMap<(String, i64), i64> {
    let query = "/api/v1/export?match[]=%7B__name__%3D~%22chain_blocks_.%2A%22%7D";
    let body = http_get(server.port, query).unwrap_or_default();
    let series: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Points are matched to slots through the `slot` field at the same timestamp.
    let mut slot_at = BTreeMap::new();
    for s in series.iter().filter(|s| s["metric"]["__name__"] == "chain_blocks_slot") {
        assert_eq!(s["metric"]["chain"], "solana", "{s}");
        assert_eq!(s["metric"]["network"], "mainnet-beta", "{s}");
        for (t, v) in s["timestamps"].as_array().unwrap().iter().zip(s["values"].as_array().unwrap()) {
            slot_at.insert(t.as_i64().unwrap(), v.as_f64().unwrap() as i64);
        }
    }
    let mut points = BTreeMap::new();
    for s in &series {
        let field = s["metric"]["__name__"].as_str().unwrap().trim_start_matches("chain_blocks_").to_string();
        for (t, v) in s["timestamps"].as_array().unwrap().iter().zip(s["values"].as_array().unwrap()) {
            // A field the server shows before the same point's `slot` is matched on a later look.
            if let Some(&slot) = slot_at.get(&t.as_i64().unwrap()) {
                points.insert((field.clone(), slot), v.as_f64().unwrap() as i64);
            }
        }
    }
    points
}

/// The fields of a point: the aggregates and `slot`.
const POINT_FIELDS: usize = 9;

/// [`exported_points`] once the server shows every field of `slots` blocks
/// (it makes new samples searchable within a few seconds).
async fn points_of(server: &VictoriaMetrics, slots: usize) -> BTreeMap<(String, i64), i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let points = exported_points(server);
        let mut fields_of = BTreeMap::<i64, usize>::new();
        for (_, slot) in points.keys() {
            *fields_of.entry(*slot).or_default() += 1;
        }
        let seen: Vec<i64> = fields_of.iter().filter(|(_, n)| **n == POINT_FIELDS).map(|(slot, _)| *slot).collect();
        if seen.len() >= slots {
            return points;
        }
        assert!(Instant::now() < deadline, "the server shows {} of {slots} blocks: {points:?}", seen.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The label rule: label names from a fixed set, and values that are
/// names from the code, never an address, a signature, a slot, a URL, a
/// path or an object name.
fn assert_bounded_labels(text: &str, forbidden: &[&str]) {
    let names: BTreeSet<&str> =
        ["outcome", "method", "code", "sink", "op", "table", "version", "kind", "result", "reason", "le", "ingest_job"]
            .into();
    for line in text.lines().filter(|l| !l.starts_with('#') && l.contains('{')) {
        let labels = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap();
            let value = value.trim_matches('"');
            if name == "ingest_job" {
                // The declared job's name, one per job: the only object name allowed.
                assert_eq!(value, JOB, "{line}");
                continue;
            }
            assert!(names.contains(name), "label {name} is not one of the bounded labels: {line}");
            assert!(value.len() <= 32, "label value too long to be a bounded name: {line}");
            assert!(!value.contains(['/', ':', '.']) || name == "le" || name == "version", "{line}");
            assert!(name == "le" || value.parse::<u64>().is_err(), "a number as a label value: {line}");
            assert!(!forbidden.iter().any(|f| value.contains(f)), "an object's name in a label: {line}");
        }
    }
}

async fn wait_for_metric(port: u16, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            let text = response.text().await.unwrap_or_default();
            if sample(&text, series).is_some_and(|v| v >= want) {
                return text;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {series} >= {want}:\n{text}");
        }
        assert!(Instant::now() < deadline, "the worker's /metrics never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_metrics_and_chain_metrics_survive_a_server_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mut influx = VictoriaMetrics::start(dir.path());
    // The two recorded blocks with a JSON response, at slots 5000 and 5001.
    let recorded: Vec<_> = real_blocks().into_iter().skip(2).map(|(_, b)| b).collect();
    let files = ["block_100000000_json.json", "block_154808473_v0_json.json"];
    let blocks: BTreeMap<u64, _> = [(5_000, recorded[0].clone()), (5_001, recorded[1].clone())].into();
    let peer = RpcPeer::start(blocks).await;
    // A paid endpoint: every call carries the token, which no log may show.
    let rpc_token = format!("rpc-token-{}", support::SECRET_MARK);
    peer.require_header("x-api-key", &rpc_token);
    let metrics_port = free_port();
    let store = format!("embedded://{}", dir.path().join("ledger").display());
    let catalog = format!("embedded://{}", dir.path().join("catalog").display());
    let log_path = dir.path().join("worker.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["worker", "ingest", "--job", JOB, "--rpc", &peer.url(), "--store", &store])
        .args(["--catalog", &catalog, "--follow", "--from", "5000", "--poll-interval", "100ms"])
        .args(["--metrics-url", &influx.url(), "--metrics-org", "chronicle", "--metrics-bucket", "chain"])
        .args(["--metrics-buffer-points", "2", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--rpc-auth-header", "x-api-key"])
        .env("CHRONICLE_RPC_TOKEN", &rpc_token)
        .env("CHRONICLE_METRICS_TOKEN", format!("influx-token-{}", support::SECRET_MARK))
        // Debug too: where a config or request is most likely printed whole.
        .env("RUST_LOG", "info,chronicle=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // To a file, not a pipe: a pipe nobody reads until the end fills and stalls the worker.
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Real work, then the scrape: every series the ingest should have moved.
    let text = wait_for_metric(metrics_port, "chronicle_ingest_checkpoint{ingest_job=\"metrics-job\"}", 5_001.0).await;
    let text = if sample(&text, r#"chronicle_chain_metrics_points_total{outcome="written"}"#) == Some(2.0) {
        text
    } else {
        wait_for_metric(metrics_port, r#"chronicle_chain_metrics_points_total{outcome="written"}"#, 2.0).await
    };
    assert_eq!(sample(&text, r#"chronicle_ingest_blocks_total{outcome="written"}"#), Some(2.0), "{text}");
    assert_eq!(sample(&text, r#"chronicle_ingest_fetch_seconds_count{method="block",outcome="ok"}"#), Some(2.0));
    assert!(sample(&text, r#"chronicle_ingest_fetch_seconds_count{method="tip",outcome="ok"}"#) >= Some(1.0));
    assert_eq!(sample(&text, r#"chronicle_sink_write_seconds_count{sink="canonical",outcome="ok"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"chronicle_sink_write_seconds_count{sink="metrics",outcome="ok"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"chronicle_ingest_gaps_open{ingest_job="metrics-job"}"#), Some(0.0), "{text}");
    assert!(sample(&text, "chronicle_ingest_written_bytes_total").unwrap() > 5_000.0, "{text}");
    assert!(sample(&text, r#"chronicle_store_bytes_total{op="write",table="blocks"}"#).unwrap() > 5_000.0);
    assert!(sample(&text, r#"chronicle_store_seconds_count{op="write",table="tx",outcome="ok"}"#) >= Some(2.0));
    let build = format!(r#"chronicle_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&text, &build), Some(1.0), "{text}");
    assert_bounded_labels(&text, &["5000", "5001", "127.0.0.1", "influx-token"]);

    // The points, read back from the server, equal the recorded blocks' aggregates.
    let points = points_of(&influx, 2).await;
    for (slot, file) in [(5_000, files[0]), (5_001, files[1])] {
        for (field, want) in expected_fields(file) {
            assert_eq!(points.get(&(field.to_string(), slot)), Some(&want), "slot {slot}: {field}: {points:?}");
        }
    }

    // The server goes away; blocks keep landing and ingestion keeps pace.
    influx.stop();
    for slot in 5_002..5_008 {
        peer.produce(slot, recorded[(slot % 2) as usize].clone());
    }
    let text = wait_for_metric(metrics_port, "chronicle_ingest_checkpoint{ingest_job=\"metrics-job\"}", 5_007.0).await;
    assert_eq!(sample(&text, r#"chronicle_ingest_blocks_total{outcome="written"}"#), Some(8.0), "{text}");
    let dropped = sample(&text, r#"chronicle_chain_metrics_points_total{outcome="dropped"}"#).unwrap_or(0.0);
    assert!(dropped >= 1.0, "six points for a buffer of two (and one in flight): some must drop\n{text}");

    // Back again: what was buffered is written; written + dropped = every block.
    influx.start_again();
    let text =
        wait_for_metric(metrics_port, r#"chronicle_chain_metrics_points_total{outcome="written"}"#, 8.0 - dropped)
            .await;
    assert_eq!(sample(&text, "chronicle_chain_metrics_buffered_points"), Some(0.0), "{text}");
    let stored = (8.0 - dropped) as usize;
    let slots: BTreeSet<i64> = points_of(&influx, stored).await.keys().map(|(_, slot)| *slot).collect();
    assert_eq!(slots.len() as f64, 8.0 - dropped, "points stored: every block but the dropped ones: {slots:?}");
    assert!(child.try_wait().unwrap().is_none(), "the worker is still running");

    // SAFETY: kill(2) on the worker we spawned.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("chain-metrics server unavailable"), "{log}");
    support::assert_no_secret(&log);
}

/// `chronicle serve` with every secret it takes — a Redis password in the
/// cache URL, API keys, an upstream URL carrying a provider key — answering
/// requests with and without a key, then stopped: its log (debug level)
/// holds none of them. (The other modes' logs are checked where they run:
/// every worker stopped through `support::terminate` or run through
/// `support::run_and_scrape`, the ingest above, the controller in `e2e/`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let redis = support::Redis::start_with_password();
    let store = format!("embedded://{}", dir.path().join("ledger").display());
    {
        let opened = chronicle::store::open(&store).await.unwrap();
        let (slot, block) = real_blocks().remove(0);
        opened.write_block(slot, &block, &[]).await.unwrap();
        opened.sync().await.unwrap();
    }
    let key = format!("api-key-{}", support::SECRET_MARK);
    std::fs::write(dir.path().join("keys"), format!("{key}\n")).unwrap();
    let upstream = RpcPeer::start(BTreeMap::new()).await;
    let upstream_url = format!("{}/?api-key=upstream-{}", upstream.url(), support::SECRET_MARK);
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["serve", "--store", &store, "--listen", &format!("127.0.0.1:{port}"), "--cache", &redis.url()])
        .arg("--api-keys-file")
        .arg(dir.path().join("keys"))
        .env("CHRONICLE_UPSTREAM_URL", &upstream_url)
        .env("RUST_LOG", "info,chronicle=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let slot = real_blocks()[0].0;
    let client = reqwest::Client::new();
    let call = |method: &str, params: serde_json::Value| serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let sent =
            client.post(&url).header("x-api-key", &key).json(&call("getBlock", serde_json::json!([slot]))).send().await;
        if let Ok(answer) = sent {
            let answer: serde_json::Value = answer.json().await.unwrap();
            assert!(answer["result"].is_object(), "{answer}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "serve never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Cached now; a method only the upstream answers; a wrong key; no key.
    client
        .post(&url)
        .header("x-api-key", &key)
        .json(&call("getBlock", serde_json::json!([slot])))
        .send()
        .await
        .unwrap();
    client
        .post(&url)
        .header("x-api-key", &key)
        .json(&call("getBalance", serde_json::json!(["11111111111111111111111111111111"])))
        .send()
        .await
        .unwrap();
    let wrong = client
        .post(&url)
        .header("x-api-key", format!("{key}-not"))
        .json(&call("getSlot", serde_json::json!([])))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let none = client.post(&url).json(&call("getSlot", serde_json::json!([]))).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let (status, log) = support::terminate(child).await;
    assert!(status.success(), "{log}");
    assert!(log.contains("DEBUG") || log.contains("INFO"), "serve logged at all: {log}");
}

/// The shipped downsampling rules (`config/victoriametrics/chain-downsampling.yaml`)
/// run by vmalert over what a backfill's chain-metrics sink wrote: one hourly
/// and one daily sample per chain and network, on the hour and at midnight,
/// each the sum of the recorded blocks' aggregates (computed from their JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_metrics_are_downsampled_hourly_and_daily() {
    let dir = tempfile::tempdir().unwrap();
    let server = VictoriaMetrics::start(dir.path());
    // The two recorded blocks with a JSON response at slots 5000 and 5001
    // (derived positions; the blocks and their recorded times unchanged: both
    // 2021-10-06 07:18:25 UTC, so in one hour and one day).
    let recorded: Vec<_> = real_blocks().into_iter().skip(2).map(|(_, b)| b).collect();
    let files = ["block_100000000_json.json", "block_154808473_v0_json.json"];
    let peer = RpcPeer::start([(5_000, recorded[0].clone()), (5_001, recorded[1].clone())].into()).await;
    let output = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["worker", "ingest", "--job", "downsampled", "--rpc", &peer.url(), "--from", "5000", "--to", "5001"])
        .args(["--store", &format!("embedded://{}", dir.path().join("ledger").display())])
        .args(["--catalog", &format!("embedded://{}", dir.path().join("catalog").display())])
        .args(["--metrics-url", &server.url(), "--metrics-org", "chronicle", "--metrics-bucket", "chain"])
        .env("CHRONICLE_METRICS_TOKEN", format!("influx-token-{}", support::SECRET_MARK))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    support::assert_no_secret(&log);
    points_of(&server, 2).await;

    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/victoriametrics/chain-downsampling.yaml");
    server.replay_rules(&rules, "2021-10-06T00:00:00Z", "2021-10-08T00:00:00Z");
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let (hour_end, day_end) = (1_633_507_200_000, 1_633_564_800_000); // 08:00 on the 6th, midnight after it
    for (window, end) in [("1h", hour_end), ("1d", day_end)] {
        want.insert(format!("chain_network:chain_blocks:count_{window}"), (end, 2));
        for file in files {
            for (field, value) in expected_fields(file) {
                want.entry(format!("chain_network:chain_blocks_{field}:sum_{window}")).or_insert((end, 0)).1 += value;
            }
        }
    }
    let query = "/api/v1/export?match[]=%7B__name__%3D~%22chain_network%3A.%2A%22%7D";
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let body = http_get(server.port, query).unwrap_or_default();
        let mut got = BTreeMap::new();
        for series in body.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()) {
            assert_eq!(
                (series["metric"]["chain"].as_str(), series["metric"]["network"].as_str()),
                (Some("solana"), Some("mainnet-beta"))
            );
            let samples: Vec<(i64, i64)> = series["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .zip(series["values"].as_array().unwrap())
                .map(|(t, v)| (t.as_i64().unwrap(), v.as_f64().unwrap() as i64))
                .collect();
            assert_eq!(samples.len(), 1, "one sample per window that holds blocks: {series}");
            got.insert(series["metric"]["__name__"].as_str().unwrap().to_string(), samples[0]);
        }
        if got.len() == want.len() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(got, want);
}

/// Metric names an expression refers to (`chronicle_…`, without the
/// `_bucket`/`_count`/`_sum` of a histogram's series).
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("chronicle_") {
        let start = i + at;
        let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
        let before = start.checked_sub(1).map(|p| bytes[p]);
        if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-') {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Every series name the code exports: `# TYPE` lines of the worker, serve
/// and controller registries with one series of each family (counters as
/// `…_total`, histograms with their `_bucket`, `_count` and `_sum`).
fn exported_metrics() -> BTreeSet<String> {
    let mut text = chronicle::telemetry::metrics::WorkerMetrics::descriptors();
    text.push_str(&chronicle::serve::metric_descriptors());
    text.push_str(&chronicle::controller::context::Metrics::descriptors());
    let mut names = BTreeSet::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                names.extend(["_bucket", "_count", "_sum"].map(|s| format!("{name}{s}")));
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn the_dashboard_and_the_alert_rules_name_only_exported_metrics() {
    let exported = exported_metrics();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/chronicle-dashboard.json")).unwrap()).unwrap();
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            expressions.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(expressions.len() > 20, "the dashboard has its panels");
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            expressions.push(variable["query"].as_str().unwrap().to_string());
        }
    }
    let rules: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("prometheus/chronicle-rules.yaml")).unwrap()).unwrap();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            expressions.push(rule["expr"].as_str().unwrap().to_string());
        }
    }
    let mut unknown = BTreeSet::new();
    let mut used = BTreeSet::new();
    for expr in &expressions {
        for name in referenced_metrics(expr) {
            if !exported.contains(&name) {
                unknown.insert(name.clone());
            }
            used.insert(name);
        }
    }
    assert!(unknown.is_empty(), "not exported by the code: {unknown:?}\nexported: {exported:?}");
    assert!(used.len() > 25, "{used:?}");
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus");
    for args in [["check", "rules", "chronicle-rules.yaml"], ["test", "rules", "chronicle-rules.test.yaml"]] {
        let output = std::process::Command::new("promtool").args(args).current_dir(&dir).output().unwrap_or_else(|e| {
            panic!("promtool (Debian package prometheus) is not installed: {e} (scripts/install-deps.sh installs it)")
        });
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
