//! Non-Rust production clients from npm — `@solana/web3.js` and its
//! successor `@solana/kit` — ask `chronicle serve` every history method and
//! the calls around it (health, version, genesis, slot, height, blockhashes,
//! epochs) over a real mainnet block, and check the answers against the
//! recorded node response (`tests/js/client.cjs`, `tests/js/kit_client.mjs`).

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
    let present = ["@solana/web3.js", "@solana/kit"].iter().all(|m| cache.join("node_modules").join(m).exists());
    if installed.as_deref() != Some(&manifest[..]) || !present {
        std::fs::write(cache.join("package.json"), &manifest).unwrap();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&cache)
            .status()
            .unwrap_or_else(|e| panic!("npm is not installed ({e}): apt-get install -y nodejs npm"));
        assert!(status.success(), "npm install of @solana/web3.js and @solana/kit failed");
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
        "blockHeight": recorded["blockHeight"],
        "genesisHash": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(store as Arc<dyn BlockStore>, ServeConfig::default()).unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });

    for (script, done) in [
        ("client.cjs", "all history methods answered as recorded"),
        ("kit_client.mjs", "all methods answered as recorded"),
    ] {
        // ES modules resolve packages from the script's own directory (NODE_PATH is CommonJS only):
        // run a copy beside the installed node_modules.
        let copy = modules.parent().unwrap().join(script);
        std::fs::copy(format!("{}/tests/js/{script}", env!("CARGO_MANIFEST_DIR")), &copy).unwrap();
        let output = tokio::process::Command::new("node")
            .arg(&copy)
            .arg(format!("http://{addr}"))
            .arg(&expected_path)
            .env("NODE_PATH", &modules)
            .current_dir(modules.parent().unwrap())
            .output()
            .await
            .expect("node is installed (apt-get install -y nodejs)");
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains(done), "{script}: {stdout}");
    }
}
