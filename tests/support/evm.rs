//! EVM test helpers: a real anvil node from npm, JSON-RPC calls, the EVM
//! store on the Bigtable emulator, `chronicle worker ingest --chain evm` and
//! `chronicle serve --chain evm` as the pods run them, and the comparison of
//! what serve answers with what the node answers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chronicle::chain::evm::traces::BlockTraces;
use chronicle::chain::evm::{Evm, EvmBlock, EvmStore};
use serde_json::{Value, json};

use super::BigtableEmulator;

/// One JSON-RPC call; the whole response (result or error).
pub async fn call(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let response = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    response.json::<Value>().await.unwrap()
}

pub async fn result(url: &str, method: &str, params: Value) -> Value {
    let answer = call(url, method, params.clone()).await;
    assert!(answer.get("error").is_none(), "{method} {params}: {answer}");
    answer["result"].clone()
}

pub async fn open_bigtable(emulator: &BigtableEmulator, instance: &str) -> Arc<EvmStore> {
    let access = chronicle::store::BigtableAccess { emulator_host: Some(emulator.host()), credentials_file: None };
    chronicle::store::open_for(&Evm, &format!("bigtable://chronicle-test/{instance}"), &access).await.unwrap()
}

/// A real anvil node from npm (`@foundry-rs/anvil`), killed when dropped.
pub struct Anvil {
    pub url: String,
    child: std::process::Child,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn find(dir: &Path, tail: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find(&path, tail) {
                return Some(found);
            }
        } else if path.ends_with(tail) {
            return Some(path);
        }
    }
    None
}

impl Anvil {
    pub fn start(modules: &Path) -> Self {
        // The package's `anvil` command is a node wrapper; run the real binary.
        let binary = find(&modules.join("@foundry-rs"), "anvil-linux-amd64/bin/anvil")
            .expect("the anvil binary (npm @foundry-rs/anvil-linux-amd64) is not installed");
        let port = super::free_port();
        let child = std::process::Command::new(binary)
            .args(["--port", &port.to_string(), "--host", "127.0.0.1", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anvil");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "anvil did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { url: format!("http://127.0.0.1:{port}"), child }
    }
}

pub fn node_script(modules: &Path, script: &str, args: &[&str]) -> String {
    // ES modules resolve packages from the script's own directory: run a copy beside node_modules.
    let copy = modules.parent().unwrap().join(script);
    std::fs::copy(format!("{}/tests/js/{script}", env!("CARGO_MANIFEST_DIR")), &copy).unwrap();
    let output = std::process::Command::new("node").arg(&copy).args(args).output().expect("node is installed");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{script}: {stdout}\n{stderr}");
    stdout.trim().to_string()
}

pub fn ingest(
    job: &str,
    node: &str,
    store: &str,
    catalog: &str,
    emulator: &BigtableEmulator,
    args: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .args(["worker", "ingest", "--chain", "evm", "--job", job, "--rpc", node, "--store", store])
        .args(["--catalog", catalog, "--batch-size", "16"])
        .args(args)
        .env("BIGTABLE_EMULATOR_HOST", emulator.host())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

pub async fn finalized(node: &str) -> u64 {
    let block = result(node, "eth_getBlockByNumber", json!(["finalized", false])).await;
    u64::from_str_radix(block["number"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Every block in `from..=to` and its transactions and receipts, as serve and the node answer them.
pub async fn assert_served_like_the_node(serve: &str, node: &str, from: u64, to: u64) -> usize {
    let mut transactions = 0;
    for number in from..=to {
        let tag = format!("{number:#x}");
        for full in [true, false] {
            let ours = result(serve, "eth_getBlockByNumber", json!([tag, full])).await;
            assert_eq!(ours, result(node, "eth_getBlockByNumber", json!([tag, full])).await, "block {number}");
        }
        let block = result(node, "eth_getBlockByNumber", json!([tag, true])).await;
        assert_eq!(result(serve, "eth_getBlockByHash", json!([block["hash"], true])).await, block);
        // Its traces, as the node traces it (anvil serves `trace_block`, which the worker prefers).
        let traces = result(node, "trace_block", json!([tag])).await;
        assert_eq!(result(serve, "trace_block", json!([tag])).await, traces, "traces of block {number}");
        for tx in block["transactions"].as_array().unwrap() {
            for method in ["eth_getTransactionByHash", "eth_getTransactionReceipt"] {
                let ours = result(serve, method, json!([tx["hash"]])).await;
                assert_eq!(ours, result(node, method, json!([tx["hash"]])).await, "{method} {}", tx["hash"]);
            }
            transactions += 1;
        }
    }
    let range = json!([{"fromBlock": format!("{from:#x}"), "toBlock": format!("{to:#x}")}]);
    assert_eq!(result(serve, "eth_getLogs", range.clone()).await, result(node, "eth_getLogs", range).await);
    transactions
}

/// `chronicle serve --chain evm` over `store` (a Bigtable URL), as a CacheTier's
/// replica runs it (with `args`, e.g. its cache), listening; its URL.
pub async fn serve_binary(store: &str, emulator: &BigtableEmulator, args: &[&str]) -> (tokio::process::Child, String) {
    let port = super::free_port();
    let mut served = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["serve", "--chain", "evm", "--chain-id", "31337", "--store", store])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("BIGTABLE_EMULATOR_HOST", emulator.host())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || served.try_wait().unwrap().is_some() {
            served.start_kill().ok();
            let out = served.wait_with_output().await.unwrap();
            panic!("chronicle serve did not listen: {}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (served, format!("http://127.0.0.1:{port}"))
}

/// Every row of a lake table, read back by pyarrow from its Parquet files under `lake`.
pub fn lake_rows(lake: &Path, table: &str) -> Vec<Value> {
    let mut files = Vec::new();
    let mut dirs = vec![lake.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet")
                && path.parent().is_some_and(|p| p.ends_with(table))
            {
                files.push(path);
            }
        }
    }
    files.iter().flat_map(|f| super::pyarrow_read(f)["rows"].as_array().unwrap().clone()).collect()
}

/// Waits until `done` holds, or fails with the worker's output.
pub async fn wait_for_worker<F: std::future::Future<Output = bool>>(
    worker: &mut tokio::process::Child,
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done().await {
        if Instant::now() > deadline || worker.try_wait().unwrap().is_some() {
            use tokio::io::AsyncReadExt;
            worker.start_kill().ok();
            worker.wait().await.ok();
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            if let Some(mut out) = worker.stdout.take() {
                out.read_to_end(&mut stdout).await.ok();
            }
            if let Some(mut err) = worker.stderr.take() {
                err.read_to_end(&mut stderr).await.ok();
            }
            panic!("{what}:\n{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops a worker with SIGTERM, as Kubernetes does; its log, after a clean exit.
pub async fn stop_worker(worker: tokio::process::Child) -> String {
    let pid = worker.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = tokio::time::timeout(Duration::from_secs(30), worker.wait_with_output()).await.unwrap().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    log
}

/// An ethereum-etl test input: the node's answer inside its JSON-RPC envelope.
pub fn etl_answer(file: &str) -> Value {
    let path = super::data_file(&format!("evm/ethereum-etl/{file}"));
    let envelope: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    envelope["result"].clone()
}

pub type Cells = std::collections::BTreeMap<String, String>;

/// An ethereum-etl expected CSV, a map of column to cell per row.
pub fn etl_expected(file: &str) -> Vec<Cells> {
    let mut reader = csv::Reader::from_path(super::data_file(&format!("evm/ethereum-etl/{file}"))).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    reader.records().map(|r| header.iter().cloned().zip(r.unwrap().iter().map(str::to_string)).collect()).collect()
}

/// Our row as ethereum-etl's CSV writer prints one: null empty, lists joined by commas.
pub fn cells(row: &impl serde::Serialize) -> Cells {
    let text = |value: &Value| match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let Value::Object(fields) = serde_json::to_value(row).unwrap() else { panic!("a row is an object") };
    fields
        .into_iter()
        .map(|(column, value)| {
            let cell = match &value {
                Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
                other => text(other),
            };
            (column, cell)
        })
        .collect()
}

/// Every expected row has its equal among ours (by `key`), column by column; as many rows.
pub fn assert_rows_match(table: &str, expected: &[Cells], ours: &[Cells], key: &str) {
    assert_eq!(ours.len(), expected.len(), "{table}: row count");
    for want in expected {
        let have = ours
            .iter()
            .find(|row| row.get(key) == want.get(key))
            .unwrap_or_else(|| panic!("{table}: no row {key}={}", want[key]));
        for (column, cell) in want {
            let ours = have.get(column).unwrap_or_else(|| panic!("{table}: we have no column {column}"));
            assert_eq!(ours, cell, "{table} {key}={}: column {column}", want[key]);
        }
    }
}

/// A chainstorage `raw_block` fixture: the node's block and receipts answers.
pub fn mainnet_block(file: &str) -> (u64, Value, Value) {
    let raw: Value = serde_json::from_slice(&std::fs::read(super::data_file(&format!("evm/{file}"))).unwrap()).unwrap();
    let decode = |text: &Value| -> Value {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.as_str().unwrap()).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let block = decode(&raw["ethereum"]["header"]);
    let receipts: Vec<Value> = raw["ethereum"]["transactionReceipts"]
        .as_array()
        .map(|list| list.iter().map(decode).collect())
        .unwrap_or_default();
    let number = raw["metadata"]["height"].as_str().map_or(0, |h| h.parse().unwrap());
    (number, block, Value::Array(receipts))
}

/// The fixture's traces (geth `callTracer` frames, one per transaction) as
/// geth's `debug_traceBlockByNumber` lists them: each inside `{"result": …}`.
/// The frames are the recorded ones; only that list around them is ours.
pub fn mainnet_traces(file: &str) -> BlockTraces {
    let raw: Value = serde_json::from_slice(&std::fs::read(super::data_file(&format!("evm/{file}"))).unwrap()).unwrap();
    let frames = raw["ethereum"]["transactionTraces"].as_array().cloned().unwrap_or_default();
    let decode = |text: &Value| -> Value {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.as_str().unwrap()).unwrap();
        json!({ "result": serde_json::from_slice::<Value>(&bytes).unwrap() })
    };
    BlockTraces::CallTracer(Value::Array(frames.iter().map(decode).collect()))
}

/// A mainnet fixture block with its traces, checked.
pub fn mainnet_evm_block(file: &str) -> EvmBlock {
    let (number, block, receipts) = mainnet_block(file);
    EvmBlock::from_json(number, block, receipts)
        .and_then(|b| b.with_traces(Some(mainnet_traces(file))))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

pub const MAINNET: [&str; 5] = [
    "raw_block_0.json",
    "raw_block_468179.json",
    "raw_block_4370006.json",
    "raw_block_13998626.json",
    "raw_block_17053184.json",
];
