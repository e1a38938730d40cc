//! A non-Rust production client, `@solana/web3.js` (from npm), asks
//! `chronicle serve` every history method over a real mainnet block and checks
//! the answers against the recorded node response (`tests/js/client.cjs`).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use chronicle::chain::solana::response::read_block_file;
use chronicle::serve::{ServeConfig, router};
use chronicle::store::embedded::EmbeddedCells;
use chronicle::store::{BlockStore, LedgerStore};
use serde_json::{Value, json};
use support::data_file;

/// Installs the client's npm dependencies once, in a cache outside the clone.
fn node_modules() -> PathBuf {
    let cache = std::env::var_os("CHRONICLE_NPM_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())).join(".cache/chronicle/js")
    });
    std::fs::create_dir_all(&cache).unwrap();
    let manifest = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/package.json")).unwrap();
    let installed = std::fs::read(cache.join("package.json")).ok();
    if installed.as_deref() != Some(&manifest[..]) || !cache.join("node_modules/@solana/web3.js").exists() {
        std::fs::write(cache.join("package.json"), &manifest).unwrap();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&cache)
            .status()
            .unwrap_or_else(|e| panic!("npm is not installed ({e}): apt-get install -y nodejs npm"));
        assert!(status.success(), "npm install of @solana/web3.js failed");
    }
    cache.join("node_modules")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web3_js_reads_chronicle_like_a_node() {
    let modules = tokio::task::spawn_blocking(node_modules).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(&dir.path().join("ledger")).unwrap())));
    let slot = 100_000_000u64;
    let (_, block) = read_block_file(&data_file("solana/block_100000000_json.json"), Some(slot)).unwrap();
    store.write_block(slot, &block, &[]).await.unwrap();

    let recorded: Value =
        serde_json::from_slice(&std::fs::read(data_file("solana/block_100000000_json.json")).unwrap()).unwrap();
    let txs = recorded["transactions"].as_array().unwrap();
    let signatures: Vec<&str> = txs.iter().map(|t| t["transaction"]["signatures"][0].as_str().unwrap()).collect();
    // An address of the first transaction (its fee payer), and every transaction naming it, newest first.
    let address = txs[0]["transaction"]["message"]["accountKeys"][0].as_str().unwrap();
    let mut address_signatures: Vec<&str> = txs
        .iter()
        .filter(|t| t["transaction"]["message"]["accountKeys"].as_array().unwrap().iter().any(|k| k == address))
        .map(|t| t["transaction"]["signatures"][0].as_str().unwrap())
        .collect();
    address_signatures.reverse();
    let expected = json!({
        "slot": slot,
        "blockhash": recorded["blockhash"],
        "parentSlot": recorded["parentSlot"],
        "blockTime": recorded["blockTime"],
        "signatures": signatures,
        "firstFee": txs[0]["meta"]["fee"],
        "address": address,
        "addressSignatures": address_signatures,
        "firstAvailable": slot,
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(store as Arc<dyn BlockStore>, ServeConfig::default()).unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });

    let output = tokio::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/client.cjs"))
        .arg(format!("http://{addr}"))
        .arg(&expected_path)
        .env("NODE_PATH", &modules)
        .output()
        .await
        .expect("node is installed (apt-get install -y nodejs)");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "web3.js client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all history methods answered as recorded"), "{stdout}");
}
