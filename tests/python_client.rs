//! A Python production client, solana-py (PyPI `solana`, on `solders`), reads
//! `chronicle serve` unchanged: health, version, genesis, slot, height,
//! blockhashes, epochs and the history calls, over a real mainnet block,
//! checked against the recorded node response (`tests/py/client.py`).

mod support;

use std::sync::Arc;

use chronicle::chain::solana::response::read_block_file;
use chronicle::serve::ServeConfig;
use chronicle::store::embedded::EmbeddedCells;
use chronicle::store::{BlockStore, LedgerStore};
use serde_json::{Value, json};
use support::data_file;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solana_py_reads_chronicle_like_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(&dir.path().join("ledger")).unwrap())));
    let slot = 100_000_000u64;
    let (_, block) = read_block_file(&data_file("solana/block_100000000_json.json"), Some(slot)).unwrap();
    store.write_block(slot, &block, &[]).await.unwrap();
    let recorded: Value =
        serde_json::from_slice(&std::fs::read(data_file("solana/block_100000000_json.json")).unwrap()).unwrap();
    let txs = recorded["transactions"].as_array().unwrap();
    let signatures: Vec<&str> = txs.iter().map(|t| t["transaction"]["signatures"][0].as_str().unwrap()).collect();
    // The first transaction's fee payer and every transaction naming it, newest first.
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
        "blockHeight": recorded["blockHeight"],
        "signatures": signatures,
        "address": address,
        "addressSignatures": address_signatures,
        "firstAvailable": slot,
        "genesisHash": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    let (addr, _stop) = support::serve_on_free_port(store as Arc<dyn BlockStore>, ServeConfig::default()).await;
    let output = tokio::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/client.py"))
        .arg(format!("http://{addr}"))
        .arg(&expected_path)
        .output()
        .await
        .expect("python3 is installed");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "solana-py failed (scripts/install-deps.sh installs it):\n{stdout}\n{stderr}");
    assert!(stdout.contains("all methods answered as recorded"), "{stdout}");
}
