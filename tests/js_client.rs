//! Non-Rust production clients from npm — `@solana/web3.js` and its
//! successor `@solana/kit` — ask `chronicle serve` every history method and
//! the calls around it (health, version, genesis, slot, height, blockhashes,
//! epochs) over a real mainnet block, and check the answers against the
//! recorded node response (`tests/js/client.cjs`, `tests/js/kit_client.mjs`).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use chronicle::serve::{ServeConfig, router};
use chronicle::store::BlockStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web3_js_reads_chronicle_like_a_node() {
    let modules = tokio::task::spawn_blocking(support::node_modules).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, expected_path) = support::client_fixture(dir.path()).await;

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

/// An independent CAR and DAG-CBOR implementation (`@ipld/car`,
/// `@ipld/dag-cbor`) reads the epoch archive Chronicle writes from the
/// recorded mainnet blocks: every CID matches its bytes, every node is strict
/// DAG-CBOR, the root is the last section, and the blocks, their entries and
/// transactions are where Old Faithful's schema puts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_car_reader_reads_chronicles_archives() {
    let modules = tokio::task::spawn_blocking(support::node_modules).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = chronicle::store::open(&format!("embedded://{}", dir.path().join("ledger").display())).await.unwrap();
    let blocks = support::real_blocks();
    for (slot, block) in &blocks {
        store.write_block(*slot, block, &[]).await.unwrap();
    }
    let path = dir.path().join("range.car");
    let range = chronicle::chain::solana::archive::ArchiveRange {
        first: blocks[0].0,
        last: blocks[blocks.len() - 1].0,
        epoch: None,
        // Small sections: the 10,185 rewards of slot 64800004 span several frames.
        limits: chronicle::chain::solana::archive::block::Limits { max_section: 64 << 10 },
    };
    chronicle::chain::solana::archive::write_archive(&store, &range, &path).await.unwrap();

    let copy = modules.parent().unwrap().join("car_check.mjs");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/car_check.mjs"), &copy).unwrap();
    let output = tokio::process::Command::new("node")
        .arg(&copy)
        .arg(&path)
        .current_dir(modules.parent().unwrap())
        .output()
        .await
        .expect("node is installed (apt-get install -y nodejs)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "car_check.mjs failed:\n{stderr}");
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read["rootIsLast"], true, "{read}");
    let transactions: usize = blocks.iter().map(|(_, b)| b.transactions.len()).sum();
    assert_eq!(read["transactions"], transactions, "{read}");
    assert_eq!(read["kinds"]["2"], blocks.len(), "one Block node per block: {read}");
    assert_eq!(read["kinds"]["3"], 1, "one Subset: {read}");
    assert!(read["kinds"]["6"].as_u64().unwrap_or(0) > 0, "the rewards span DataFrames: {read}");
    for ((slot, block), node) in blocks.iter().zip(read["blocks"].as_array().unwrap()) {
        assert_eq!(node["slot"], *slot);
        assert_eq!(node["parent"], block.parent_slot);
        assert_eq!(node["entries"], 1, "a block stored without entries is written as one entry");
        assert_eq!(node["rewards"].is_null(), block.rewards.is_empty(), "slot {slot}");
    }
}
