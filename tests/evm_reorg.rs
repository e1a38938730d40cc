//! Reorganizations on a real EVM node (anvil). A follower at commitment
//! `confirmed` stores each block as anvil mines it; the test then replaces
//! the newest blocks (anvil's `evm_snapshot` / `evm_revert`, then other
//! transactions mined in their place), once while the follower runs and once
//! while it is stopped. Each time the store ends up equal to the node again
//! (`chronicle serve` answers as the node does, and knows nothing of the
//! replaced blocks and transactions, though it had cached answers about
//! them in Redis: the follower drops them), the lake never holds a replaced
//! block, and the catalog records the reorganization (what the IngestJob's
//! status and its ChainReorganized Event report).

mod support;

use std::path::Path;
use std::time::Duration;

use chronicle::catalog;
use serde_json::{Value, json};
use support::BigtableEmulator;
use support::evm::*;

async fn number(node: &str, method: &str, params: Value) -> u64 {
    let answer = result(node, method, params).await;
    let quantity = answer.get("number").unwrap_or(&answer).as_str().unwrap().to_string();
    u64::from_str_radix(quantity.trim_start_matches("0x"), 16).unwrap()
}

async fn newest(node: &str) -> u64 {
    number(node, "eth_blockNumber", json!([])).await
}

async fn hash_of(url: &str, block: u64) -> Value {
    result(url, "eth_getBlockByNumber", json!([format!("{block:#x}"), false])).await["hash"].clone()
}

/// A transfer between two of anvil's unlocked accounts, mined at once; its hash.
async fn transfer(node: &str, from: &Value, to: &Value, wei: u64) -> Value {
    result(node, "eth_sendTransaction", json!([{"from": from, "to": to, "value": format!("{wei:#x}")}])).await
}

async fn mine(node: &str, blocks: u64) {
    result(node, "anvil_mine", json!([format!("{blocks:#x}")])).await;
}

/// The newest block of the lake's `table` partitions, from their names (`first-last.parquet`).
fn lake_newest(lake: &Path, table: &str) -> Option<u64> {
    let dir = lake.join("evm").join("anvil").join(table);
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".parquet")?.split_once('-')?.1.parse().ok())
        .max()
}

/// Where a follower writes, and its log.
struct Follower<'a> {
    store: &'a str,
    catalog: &'a str,
    lake: &'a str,
    cache: &'a str,
    emulator: &'a BigtableEmulator,
    log: &'a Path,
}

fn follower(node: &str, f: &Follower) -> tokio::process::Child {
    let (store, catalog, emulator) = (f.store, f.catalog, f.emulator);
    let args = ["--follow", "--from", "0", "--commitment", "confirmed", "--poll-interval", "200ms"];
    let lake_args = ["--lake", f.lake, "--network", "anvil", "--cache", f.cache];
    let log = f.log;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut command = ingest("anvil-reorgs", node, store, catalog, emulator, &args);
    command.args(lake_args).stdout(log.try_clone().unwrap()).stderr(log);
    command.spawn().unwrap()
}

/// Serve's count of cache hits for receipts.
async fn receipt_hits(serve: &str) -> u64 {
    let metrics = reqwest::get(format!("{serve}/metrics")).await.unwrap().text().await.unwrap();
    let hit = r#"chronicle_serve_cache_total{method="eth_getTransactionReceipt",result="hit"} "#;
    metrics.lines().find_map(|l| l.strip_prefix(hit)).map_or(0, |n| n.trim().parse().unwrap())
}

/// Asks serve about each transaction until its answers come from the cache
/// (a block landing in between drops them, as it should).
async fn cache_answers_about(serve: &str, transactions: &[Value]) {
    let before = receipt_hits(serve).await;
    for _ in 0..50 {
        for hash in transactions {
            for method in ["eth_getTransactionByHash", "eth_getTransactionReceipt"] {
                assert!(!result(serve, method, json!([hash])).await.is_null(), "{method} {hash}");
            }
        }
        if receipt_hits(serve).await > before {
            return;
        }
    }
    panic!("serve never answered a receipt from the cache");
}

/// Blocks `from..=to` as serve and the node answer them, and none of `gone` (replaced transactions) in serve.
async fn assert_repaired(serve: &str, node: &str, from: u64, to: u64, gone: &[Value]) {
    assert_served_like_the_node(serve, node, from, to).await;
    for hash in gone {
        for method in ["eth_getTransactionByHash", "eth_getTransactionReceipt"] {
            assert_eq!(result(serve, method, json!([hash])).await, Value::Null, "{method} {hash} was replaced");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorganized_blocks_are_taken_back_and_fetched_again_live_and_across_a_restart() {
    let modules = tokio::task::spawn_blocking(support::node_modules).await.unwrap();
    let anvil = Anvil::start(&modules);
    let node = anvil.url.as_str();
    let accounts = result(node, "eth_accounts", json!([])).await;
    let (alice, bob, carol) = (&accounts[0], &accounts[1], &accounts[2]);
    for wei in [1_000, 2_000, 3_000] {
        transfer(node, alice, bob, wei).await;
    }
    mine(node, 70).await;
    let emulator = BigtableEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let store_url = "bigtable://chronicle-test/anvil-reorgs";
    let catalog_url = format!("embedded://{}/catalog", dir.path().display());
    let lake = dir.path().join("lake");
    let lake_url = format!("file://{}", lake.display());
    let log = dir.path().join("follower.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let redis = support::Redis::start();
    let cache = redis.url();
    let f = Follower {
        store: store_url,
        catalog: &catalog_url,
        lake: &lake_url,
        cache: &cache,
        emulator: &emulator,
        log: &log,
    };

    // The follower stores up to the newest block, not just the final one.
    let mut worker = follower(node, &f);
    let (_served, serve) = serve_binary(store_url, &emulator, &["--cache", &cache]).await;
    let stored = |block: u64| {
        let serve = serve.clone();
        // Before the first block lands, serve answers an error.
        async move { call(&serve, "eth_blockNumber", json!([])).await["result"] == json!(format!("{block:#x}")) }
    };
    let head = newest(node).await;
    assert!(head > number(node, "eth_getBlockByNumber", json!(["finalized", false])).await + 60);
    wait_for_worker(&mut worker, "the follower did not store the newest block", || stored(head)).await;

    // Every block of `from..=to` stored as the node has it now.
    let matches = |from: u64, to: u64| {
        let serve = serve.clone();
        async move {
            for number in from..=to {
                if hash_of(&serve, number).await != hash_of(node, number).await {
                    return false;
                }
            }
            stored(to).await
        }
    };

    // A reorganization while it runs: four blocks mined, then replaced by a
    // shorter chain (two blocks: no newer block comes to show the fork), which
    // then grows.
    let base = head;
    let snapshot = result(node, "evm_snapshot", json!([])).await;
    let replaced_txs = vec![transfer(node, alice, bob, 11).await, transfer(node, bob, carol, 12).await];
    mine(node, 2).await;
    wait_for_worker(&mut worker, "the follower did not store the first fork", || stored(base + 4)).await;
    let replaced_block = hash_of(&serve, base + 1).await;
    cache_answers_about(&serve, &replaced_txs).await;
    assert_eq!(result(node, "evm_revert", json!([snapshot])).await, json!(true));
    let kept_tx = transfer(node, alice, carol, 13).await;
    mine(node, 1).await;
    let shorter = || matches(base - 2, base + 2);
    wait_for_worker(&mut worker, "the follower did not repair the reorganization to a shorter chain", shorter).await;
    assert_repaired(&serve, node, base - 2, base + 2, &replaced_txs).await;
    mine(node, 4).await;
    wait_for_worker(&mut worker, "the follower did not go on after the repair", || matches(base + 1, base + 6)).await;
    assert_repaired(&serve, node, base - 2, base + 6, &replaced_txs).await;
    assert_eq!(result(&serve, "eth_getBlockByHash", json!([replaced_block, false])).await, Value::Null);
    assert!(!result(&serve, "eth_getTransactionByHash", json!([kept_tx])).await.is_null());
    assert!(read_log().contains("the chain was reorganized above block"), "{}", read_log());

    // A reorganization while it is stopped: the restart takes back every
    // block above its checkpoint (no further than the final tip) and fetches
    // the chain as it is now.
    let snapshot = result(node, "evm_snapshot", json!([])).await;
    let stale_txs = vec![transfer(node, carol, alice, 21).await, transfer(node, carol, bob, 22).await];
    mine(node, 1).await;
    wait_for_worker(&mut worker, "the follower did not store the second fork", || stored(base + 9)).await;
    cache_answers_about(&serve, &stale_txs).await;
    stop_worker(worker).await;
    assert_eq!(result(node, "evm_revert", json!([snapshot])).await, json!(true));
    transfer(node, bob, alice, 23).await;
    mine(node, 3).await;
    let mut worker = follower(node, &f);
    let caught_up = || matches(base + 1, base + 10);
    wait_for_worker(&mut worker, "the restarted follower did not fetch the chain again", caught_up).await;
    assert_repaired(&serve, node, 0, base + 10, &stale_txs).await;

    // Once final, the blocks reach the lake, and no replaced one ever did.
    let last = base + 10;
    mine(node, 70).await;
    let in_lake = || async {
        mine(node, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        ["blocks", "transactions"].iter().all(|t| lake_newest(&lake, t).is_some_and(|n| n >= last))
    };
    wait_for_worker(&mut worker, "the lake did not take the final blocks", in_lake).await;
    stop_worker(worker).await;
    let blocks = lake_rows(&lake, "blocks");
    let mut numbers: Vec<u64> = blocks.iter().map(|b| b["number"].as_u64().unwrap()).collect();
    numbers.sort();
    let through = *numbers.last().unwrap();
    assert_eq!(numbers, (0..=through).collect::<Vec<_>>(), "each block once, none missing");
    for block in &blocks {
        let number = block["number"].as_u64().unwrap();
        assert_eq!(block["hash"], hash_of(node, number).await, "block {number} in the lake is the node's");
    }
    let lake_txs: Vec<Value> = lake_rows(&lake, "transactions").iter().map(|t| t["hash"].clone()).collect();
    let mut node_txs = Vec::new();
    for number in 0..=through {
        let block = result(node, "eth_getBlockByNumber", json!([format!("{number:#x}"), false])).await;
        node_txs.extend(block["transactions"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(lake_txs.len(), node_txs.len());
    assert!(node_txs.iter().all(|tx| lake_txs.contains(tx)));
    assert!(replaced_txs.iter().chain(&stale_txs).all(|tx| !lake_txs.contains(tx)));

    // The catalog recorded the live reorganization: where the chains parted and what replaced what.
    let catalog = catalog::open(&catalog_url).await.unwrap();
    let (count, last_reorg) = catalog.reorgs("anvil-reorgs").await.unwrap();
    assert!(count >= 1, "{count} reorganizations recorded");
    let live = last_reorg.unwrap();
    assert_eq!((live.base, live.depth, json!(live.replaced)), (base, 4, replaced_block), "{live:?}");
    // What replaced it, when the node had a block there as the fork was repaired.
    assert!(live.replacement.is_none() || json!(live.replacement) == hash_of(node, base + 1).await, "{live:?}");
    let progress = catalog.progress("anvil-reorgs").await.unwrap();
    assert_eq!(progress.reorgs, count);
    let log = read_log();
    assert!(log.contains("taking back blocks an earlier run stored ahead of finality"), "{log}");
    support::assert_no_secret(&log);
}
