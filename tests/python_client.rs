//! A Python production client, solana-py (PyPI `solana`, on `solders`), reads
//! `chronicle serve` unchanged: health, version, genesis, slot, height,
//! blockhashes, epochs and the history calls, over a real mainnet block,
//! checked against the recorded node response (`tests/py/client.py`).

mod support;

use std::sync::Arc;

use chronicle::serve::ServeConfig;
use chronicle::store::BlockStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solana_py_reads_chronicle_like_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let (store, expected_path) = support::client_fixture(dir.path()).await;
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
