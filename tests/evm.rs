//! EVM chains end to end: real Ethereum mainnet blocks through the EVM
//! layout on both engines and back out of `serve` as the node sent them; a
//! real EVM node (anvil, driven by viem: transfers, an ERC-20 deployed and
//! called, a reverted call) backfilled and followed by `chronicle worker
//! ingest --chain evm`, its history served equal to the node's answers, and
//! read by viem (a stock client) unchanged.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chronicle::chain::ChainAdapter;
use chronicle::chain::evm::traces::BlockTraces;
use chronicle::chain::evm::{Evm, EvmBlock, EvmStore};
use chronicle::serve::ServeConfig;
use serde_json::{Value, json};
use support::BigtableEmulator;
use support::evm::*;

/// Frames in a `callTracer` answer, children included.
fn frames(traces: &Value) -> usize {
    fn count(frame: &Value) -> usize {
        1 + frame["calls"].as_array().map_or(0, |calls| calls.iter().map(count).sum())
    }
    traces.as_array().unwrap().iter().map(|item| count(&item["result"])).sum()
}

async fn serve(store: Arc<EvmStore>, config: ServeConfig) -> SocketAddr {
    let app = chronicle::chain::evm::serve::router(store, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });
    addr
}

/// Every log of the receipts, in block order.
fn logs_of(receipts: &Value) -> Vec<Value> {
    receipts.as_array().unwrap().iter().flat_map(|r| r["logs"].as_array().unwrap().clone()).collect()
}

async fn open_embedded(dir: &Path) -> Arc<EvmStore> {
    let url = format!("embedded://{}", dir.display());
    chronicle::store::open_for(&Evm, &url, &Default::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mainnet_blocks_round_trip_through_both_engines_and_serve_as_the_node_sent_them() {
    let emulator = BigtableEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let stores =
        [("embedded", open_embedded(dir.path()).await), ("bigtable", open_bigtable(&emulator, "mainnet").await)];
    let blocks: Vec<(u64, Value, Value)> = MAINNET.iter().map(|f| mainnet_block(f)).collect();
    for (engine, store) in stores {
        let (mut json_bytes, mut stored_bytes) = (0, 0);
        for (file, (_, block, receipts)) in MAINNET.iter().zip(&blocks) {
            let evm = mainnet_evm_block(file);
            let traces = evm.traces.as_ref().unwrap().answer();
            json_bytes += [block, receipts, traces].iter().map(|v| serde_json::to_vec(v).unwrap().len()).sum::<usize>();
            stored_bytes += store.write_block(&evm).await.unwrap().bytes;
            // Writing the same block again changes nothing.
            store.write_block(&evm).await.unwrap();
        }
        println!("{engine}: {stored_bytes} bytes stored for {json_bytes} bytes of the node's JSON (compact)");
        let config = ServeConfig { chain_id: Some(1), ..ServeConfig::default() };
        let url = format!("http://{}", serve(store.clone(), config).await);
        assert_eq!(result(&url, "eth_blockNumber", json!([])).await, json!("0x1043600"), "{engine}");
        assert_eq!(result(&url, "eth_chainId", json!([])).await, json!("0x1"));
        let mut transactions = 0;
        for (number, block, receipts) in &blocks {
            let tag = format!("{number:#x}");
            assert_eq!(
                &result(&url, "eth_getBlockByNumber", json!([tag, true])).await,
                block,
                "{engine} block {number}"
            );
            let hash = block["hash"].clone();
            assert_eq!(&result(&url, "eth_getBlockByHash", json!([hash, true])).await, block, "{engine} {hash}");
            let short = result(&url, "eth_getBlockByNumber", json!([tag, false])).await;
            let hashes: Vec<Value> =
                block["transactions"].as_array().unwrap().iter().map(|t| t["hash"].clone()).collect();
            assert_eq!(short["transactions"], Value::Array(hashes));
            assert_eq!(short["stateRoot"], block["stateRoot"]);
            for (tx, receipt) in block["transactions"].as_array().unwrap().iter().zip(receipts.as_array().unwrap()) {
                let hash = tx["hash"].clone();
                assert_eq!(&result(&url, "eth_getTransactionByHash", json!([hash])).await, tx, "{engine} tx {hash}");
                assert_eq!(&result(&url, "eth_getTransactionReceipt", json!([hash])).await, receipt, "{engine} {hash}");
                transactions += 1;
            }
            let logs = result(&url, "eth_getLogs", json!([{"fromBlock": tag, "toBlock": tag}])).await;
            assert_eq!(logs, Value::Array(logs_of(receipts)), "{engine} logs of block {number}");
            let traced = result(&url, "debug_traceBlockByNumber", json!([tag, {"tracer": "callTracer"}])).await;
            let file = MAINNET.iter().find(|f| f.contains(&format!("_{number}."))).unwrap();
            assert_eq!(&traced, mainnet_traces(file).answer(), "{engine} traces of block {number}");
            let top = result(
                &url,
                "debug_traceBlockByNumber",
                json!([tag, {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": true}}]),
            )
            .await;
            assert!(top.as_array().unwrap().iter().all(|t| t["result"].get("calls").is_none()), "{engine} {number}");
            assert_eq!(top.as_array().unwrap().len(), block["transactions"].as_array().unwrap().len());
        }
        assert_eq!(transactions, 197, "every fixture transaction was asked for");
        // Filters: one contract's logs, one topic, in the post-Shanghai block.
        let (_, _, receipts) = &blocks[4];
        let all = logs_of(receipts);
        let first = &all[0];
        let by_address: Vec<Value> = all.iter().filter(|l| l["address"] == first["address"]).cloned().collect();
        let filter = json!([{"fromBlock": "0x1043600", "toBlock": "0x1043600", "address": first["address"]}]);
        assert_eq!(result(&url, "eth_getLogs", filter).await, Value::Array(by_address));
        let topic = first["topics"][0].clone();
        let by_topic: Vec<Value> = all.iter().filter(|l| l["topics"][0] == topic).cloned().collect();
        let filter = json!([{"blockHash": blocks[4].1["hash"], "topics": [topic]}]);
        assert_eq!(result(&url, "eth_getLogs", filter).await, Value::Array(by_topic));
        // Traces are served in the format they were stored in, and only with the tracer stored.
        let parity = call(&url, "trace_block", json!(["0x1043600"])).await;
        assert!(parity["error"]["message"].as_str().unwrap().contains("ask debug_traceBlockByNumber"), "{parity}");
        let other = call(&url, "debug_traceBlockByNumber", json!(["0x1043600", {"tracer": "prestateTracer"}])).await;
        assert_eq!(other["error"]["code"], -32602, "{other}");
        let logs = json!(["0x1043600", {"tracer": "callTracer", "tracerConfig": {"withLog": true}}]);
        let with_logs = call(&url, "debug_traceBlockByNumber", logs).await;
        assert!(with_logs["error"]["message"].as_str().unwrap().contains("withLog"), "{with_logs}");
        // What the store does not hold is null, as a node answers.
        assert_eq!(result(&url, "eth_getBlockByNumber", json!(["0x5", false])).await, Value::Null);
        assert_eq!(result(&url, "trace_block", json!(["0x5"])).await, Value::Null);
        let unknown = format!("0x{}", "ab".repeat(32));
        assert_eq!(result(&url, "eth_getTransactionByHash", json!([unknown])).await, Value::Null);
        assert_eq!(result(&url, "eth_getTransactionReceipt", json!([unknown])).await, Value::Null);
        assert_eq!(result(&url, "eth_getBlockByHash", json!([unknown, false])).await, Value::Null);
        // Bad requests: a clear error, nothing else.
        let bad = call(&url, "eth_getBlockByNumber", json!(["0xzz", true])).await;
        assert_eq!(bad["error"]["code"], -32602, "{bad}");
        // A range past the newest stored block ends there, as on a node.
        let past = json!([{"fromBlock": "0x1043600", "toBlock": "0x1044000"}]);
        assert_eq!(result(&url, "eth_getLogs", past).await, Value::Array(logs_of(&blocks[4].2)));
        let wide = call(&url, "eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": "0x1043600"}])).await;
        assert_eq!(wide["error"]["code"], -32005, "{wide}");
        assert!(wide["error"]["message"].as_str().unwrap().contains("max block range"), "{wide}");
        let backwards = call(&url, "eth_getLogs", json!([{"fromBlock": "0x10", "toBlock": "0x1"}])).await;
        assert_eq!(backwards["error"]["code"], -32602, "{backwards}");
        let hash = call(&url, "eth_getTransactionByHash", json!(["0x12"])).await;
        assert_eq!(hash["error"]["code"], -32602, "{hash}");
        // Replication, verification and retention see a block's rows through the layout.
        let rows = Evm.rows_reader(store.clone()).block_rows(17053184).await.unwrap().unwrap();
        assert!(rows.rows.len() > 125, "{} rows", rows.rows.len());
        assert!(rows.rows.iter().any(|(table, _)| *table == chronicle::chain::evm::layout::tables::TRACES));
        assert_eq!(rows.rows.last().unwrap().0, chronicle::chain::evm::layout::tables::BLOCKS, "the block row last");
        let deleted = store.delete_range(4370006, 4370006).await.unwrap();
        assert_eq!(deleted.blocks, 1);
        assert_eq!(result(&url, "eth_getBlockByNumber", json!(["0x42ae56", false])).await, Value::Null);
        let moved = &blocks[2].1["transactions"][0]["hash"];
        assert_eq!(result(&url, "eth_getTransactionByHash", json!([moved])).await, Value::Null);
        assert_eq!(store.traces(4370006).await.unwrap(), None, "the traces went with the block");
        assert_eq!(&result(&url, "eth_getBlockByNumber", json!(["0x1043600", true])).await, &blocks[4].1);
    }
}

/// The mainnet blocks through the lake sink, read back by pyarrow equal to the node's JSON:
/// each block once, every transaction with its sender and value, every log.
#[tokio::test]
async fn mainnet_blocks_round_trip_through_the_lake() {
    use chronicle::pipeline::BlockSink;
    let dir = tempfile::tempdir().unwrap();
    let lake = chronicle::lake::Lake::open(&format!("file://{}", dir.path().display()), "evm", "mainnet").unwrap();
    let sink = chronicle::pipeline::sinks::lake::LakeSink::new(Arc::new(lake), chronicle::chain::evm::rows::EvmTables);
    let blocks: Vec<(u64, Value, Value)> = MAINNET.iter().map(|f| mainnet_block(f)).collect();
    for (file, (number, ..)) in MAINNET.iter().zip(&blocks) {
        sink.write(*number, &mainnet_evm_block(file)).await.unwrap();
    }
    let flushed = sink.flush().await.unwrap();
    assert_eq!(flushed.partitions.len(), 6, "one partition per table");
    let quantity = |v: &Value| u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    let rows = |table: &str| lake_rows(dir.path(), table);
    let mut numbers: Vec<u64> = rows("blocks").iter().map(|b| b["number"].as_u64().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, blocks.iter().map(|(n, ..)| *n).collect::<Vec<_>>());
    let transactions = rows("transactions");
    let node_transactions: Vec<&Value> =
        blocks.iter().flat_map(|(_, block, _)| block["transactions"].as_array().unwrap()).collect();
    assert_eq!(transactions.len(), node_transactions.len());
    for tx in node_transactions {
        let row = transactions.iter().find(|t| t["hash"] == tx["hash"]).unwrap_or_else(|| panic!("{}", tx["hash"]));
        assert_eq!(row["from_address"], tx["from"], "{}", tx["hash"]);
        assert_eq!(row["value"], json!(quantity(&tx["value"]).to_string()), "{}", tx["hash"]);
    }
    let logs: usize = blocks.iter().map(|(_, _, receipts)| logs_of(receipts).len()).sum();
    assert_eq!(rows("logs").len(), logs);
    assert_eq!(rows("receipts").len(), transactions.len());
    // A trace row per call frame, each transaction's top call first, named by its transaction.
    let traces = rows("traces");
    let frames: usize = MAINNET.iter().map(|f| frames(mainnet_traces(f).answer())).sum();
    assert_eq!(traces.len(), frames);
    for tx in transactions.iter() {
        let top = format!("call_{}_", tx["hash"].as_str().unwrap());
        let row = traces
            .iter()
            .find(|t| t["trace_id"] == top.as_str() || t["trace_id"] == top.replacen("call", "create", 1).as_str());
        let row = row.unwrap_or_else(|| panic!("no top trace for {}", tx["hash"]));
        assert_eq!(row["from_address"], tx["from_address"], "{}", tx["hash"]);
        assert_eq!(row["block_hash"], tx["block_hash"]);
    }
}

#[test]
fn malformed_blocks_are_refused_with_what_is_wrong() {
    let (number, block, receipts) = mainnet_block("raw_block_13998626.json");
    let wrong = EvmBlock::from_json(number + 1, block.clone(), receipts.clone()).unwrap_err();
    assert!(wrong.to_string().contains("the node answered block 13998626"), "{wrong}");
    let mut fewer = receipts.clone();
    fewer.as_array_mut().unwrap().pop();
    let missing = EvmBlock::from_json(number, block.clone(), fewer).unwrap_err();
    assert!(missing.to_string().contains("6 receipts for 7 transactions"), "{missing}");
    let mut swapped = receipts.clone();
    swapped.as_array_mut().unwrap().swap(0, 1);
    let other = EvmBlock::from_json(number, block.clone(), swapped).unwrap_err();
    assert!(other.to_string().contains("receipt 0 is for"), "{other}");
    let mut broken = block.clone();
    broken["transactions"][2]["hash"] = json!("0x1234");
    let undecodable = EvmBlock::from_json(number, broken, receipts.clone()).unwrap_err();
    assert!(undecodable.to_string().starts_with("block 13998626: not an EVM block"), "{undecodable}");
    let mut hashes_only = block.clone();
    hashes_only["transactions"] = json!([]);
    let empty = EvmBlock::from_json(number, hashes_only, receipts.clone()).unwrap_err();
    assert!(empty.to_string().contains("0 transactions"), "{empty}");
    // Traces that are not this block's.
    let traced = || EvmBlock::from_json(number, block.clone(), receipts.clone()).unwrap();
    let BlockTraces::CallTracer(mut fewer) = mainnet_traces("raw_block_13998626.json") else { unreachable!() };
    fewer.as_array_mut().unwrap().pop();
    let short = traced().with_traces(Some(BlockTraces::CallTracer(fewer))).unwrap_err();
    assert!(short.to_string().contains("6 traces for 7 transactions"), "{short}");
    let elsewhere = support::evm::etl_answer("trace_block_1000000.json");
    let foreign = traced().with_traces(Some(BlockTraces::Parity(elsewhere))).unwrap_err();
    assert!(foreign.to_string().contains("is of block 1000000"), "{foreign}");
}

/// ethereum-etl's four traced mainnet blocks, each traced by `trace_block`
/// and by geth's `callTracer`: our rows from each equal ethereum-etl's, and
/// where its geth path leaves a transaction hash, status and id empty, ours
/// equal those its `trace_block` path gives for the same call.
#[test]
fn trace_rows_equal_ethereum_etl_for_both_trace_formats() {
    use chronicle::chain::evm::trace_rows::{BlockContext, trace_rows};
    for number in [1000000u64, 1000690, 1000895, 1011973] {
        let parity = etl_answer(&format!("trace_block_{number}.json"));
        let hash = parity[0]["blockHash"].as_str().unwrap().to_string();
        let mut transactions: Vec<String> = Vec::new();
        for hash in parity.as_array().unwrap().iter().filter_map(|t| t["transactionHash"].as_str()) {
            if !transactions.iter().any(|h| h == hash) {
                transactions.push(hash.to_string());
            }
        }
        let block = BlockContext { number, hash: &hash, timestamp: 0, transactions: &transactions };
        let parity = BlockTraces::Parity(parity);
        parity.check(number, &hash, &transactions).unwrap();
        // The same traces checked against another block of that number, or missing a transaction.
        let fork = format!("0x{}", "ab".repeat(32));
        assert!(parity.check(number, &fork, &transactions).unwrap_err().contains("not 0xabab"));
        let mut fewer = parity.answer().clone();
        fewer.as_array_mut().unwrap().remove(0);
        let missing = BlockTraces::Parity(fewer).check(number, &hash, &transactions).unwrap_err();
        assert!(missing.contains(&format!("top-level traces for {} transactions", transactions.len())), "{missing}");
        let ours: Vec<Cells> = trace_rows(&block, &parity).unwrap().iter().map(cells).collect();
        let want = etl_expected(&format!("expected_traces_{number}.csv"));
        assert_rows_match(&format!("traces of {number}"), &want, &ours, "trace_id");

        let geth = BlockTraces::CallTracer(etl_answer(&format!("debug_traceBlockByNumber_{number}.json")));
        geth.check(number, &hash, &transactions).unwrap();
        let ours = trace_rows(&block, &geth).unwrap();
        let want_geth = etl_expected(&format!("expected_geth_traces_{number}.csv"));
        assert_eq!(ours.len(), want_geth.len(), "geth traces of {number}");
        for (row, expected) in ours.iter().zip(&want_geth) {
            let have = cells(row);
            for (column, cell) in expected {
                if ["transaction_hash", "status", "trace_id"].contains(&column.as_str()) {
                    assert_eq!(cell, "", "ethereum-etl's geth path leaves {column} empty");
                    continue;
                }
                assert_eq!(&have[column], cell, "geth traces of {number}, {}: column {column}", row.trace_id);
            }
            let same_call = want.iter().find(|w| w["trace_id"] == row.trace_id);
            let same_call = same_call.unwrap_or_else(|| panic!("{number}: no trace_block trace {}", row.trace_id));
            assert_eq!(have["transaction_hash"], same_call["transaction_hash"]);
            assert_eq!(have["status"], same_call["status"], "{}", row.trace_id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anvil_chain_is_backfilled_followed_and_served_as_the_node_serves_it() {
    let modules = tokio::task::spawn_blocking(support::node_modules).await.unwrap();
    let anvil = Anvil::start(&modules);
    let token_sol = format!("{}/tests/evm/Token.sol", env!("CARGO_MANIFEST_DIR"));
    let driven: Value =
        serde_json::from_str(&node_script(&modules, "evm_drive.mjs", &[&anvil.url, &token_sol])).unwrap();
    assert_eq!(driven["failed"], "reverted");
    let token = driven["token"].as_str().unwrap().to_string();
    let emulator = BigtableEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let (store_url, catalog) =
        ("bigtable://chronicle-test/anvil", format!("embedded://{}/catalog", dir.path().display()));

    // Backfill to the finalized block.
    let last = finalized(&anvil.url).await;
    assert!(last > 10, "finalized {last}");
    let to = last.to_string();
    let lake = dir.path().join("lake");
    let lake_url = format!("file://{}", lake.display());
    std::fs::create_dir_all(dir.path().join("metrics")).unwrap();
    let metrics = support::VictoriaMetrics::start(&dir.path().join("metrics"));
    let metrics_url = metrics.url();
    let backfill = ["--from", "0", "--to", &to, "--lake", &lake_url, "--network", "anvil"];
    let backfill =
        [&backfill[..], &["--metrics-url", &metrics_url, "--metrics-org", "chronicle", "--metrics-bucket", "anvil"]]
            .concat();
    // The node URL as providers hand them out, with a key in it: never logged.
    let keyed = format!("{}/?api-key=key-{}", anvil.url, support::SECRET_MARK);
    let out = ingest("anvil-history", &keyed, store_url, &catalog, &emulator, &backfill).output().await.unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    support::assert_no_secret(&log);

    // Chain metrics: a point per block, its aggregates equal to the node's header and receipts.
    let points = chain_points(&metrics, last).await;
    for number in 0..=last {
        let tag = format!("{number:#x}");
        let block = result(&anvil.url, "eth_getBlockByNumber", json!([tag, false])).await;
        let receipts = result(&anvil.url, "eth_getBlockReceipts", json!([tag])).await;
        let receipts = receipts.as_array().unwrap();
        let quantity = |v: &Value| u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        let fees: u128 = receipts.iter().map(|r| quantity(&r["gasUsed"]) * quantity(&r["effectiveGasPrice"])).sum();
        let failed = receipts.iter().filter(|r| r["status"] == "0x0").count() as i64;
        let point = |field: &str| points.get(&(field.to_string(), number as i64)).copied();
        assert_eq!(point("transactions"), Some(receipts.len() as i64), "block {number}");
        assert_eq!(point("failed_transactions"), Some(failed), "block {number}");
        assert_eq!(point("compute_units"), Some(quantity(&block["gasUsed"]) as i64), "block {number}: gas used");
        assert_eq!(point("fees"), Some((fees / 1_000_000_000) as i64), "block {number}: fees in gwei");
    }

    // `chronicle serve --chain evm`, as a CacheTier's replica runs it, over the same store.
    let store = open_bigtable(&emulator, "anvil").await;
    let (_served, serve_url) = serve_binary(store_url, &emulator, &[]).await;
    assert_eq!(result(&serve_url, "eth_blockNumber", json!([])).await, json!(format!("{last:#x}")));
    let transactions = assert_served_like_the_node(&serve_url, &anvil.url, 0, last).await;
    assert_eq!(transactions, driven["transactions"].as_array().unwrap().len());

    // The lake's rows, read back by pyarrow: a row per transaction, and a
    // token transfer per Transfer log the node reports, with its amount.
    let parquet = |table: &str| {
        let rows = lake_rows(&lake, table);
        assert!(!rows.is_empty(), "no {table} rows under {}", lake.display());
        rows
    };
    assert_eq!(parquet("transactions").len(), transactions);
    let topic = chronicle::chain::evm::rows::TRANSFER_TOPIC;
    let filter = json!([{"fromBlock": "0x0", "toBlock": format!("{last:#x}"), "topics": [topic]}]);
    let transfer_logs = result(&anvil.url, "eth_getLogs", filter).await;
    let transfers = parquet("token_transfers");
    assert_eq!(transfers.len(), transfer_logs.as_array().unwrap().len());
    for log in transfer_logs.as_array().unwrap() {
        let hash = log["transactionHash"].as_str().unwrap();
        let row = transfers.iter().find(|t| t["transaction_hash"] == hash).unwrap();
        let amount = u128::from_str_radix(log["data"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(row["value"], json!(amount.to_string()), "{hash}");
        assert_eq!(row["token_address"], json!(token));
    }

    // A trace row per trace the node reports: the ERC-20's creation among them.
    let mut node_traces = Vec::new();
    for number in 0..=last {
        node_traces.extend(
            result(&anvil.url, "trace_block", json!([format!("{number:#x}")])).await.as_array().unwrap().clone(),
        );
    }
    let traces = parquet("traces");
    assert_eq!(traces.len(), node_traces.len());
    let created = traces.iter().find(|t| t["trace_type"] == "create").expect("the token's creation");
    assert_eq!(created["to_address"], json!(token.to_lowercase()));
    assert!(traces.iter().all(|t| t["status"] == 1 || t["error"].is_string()));

    // A training export of the chain: a document per transaction, the
    // reverted one a failure, the token transfers named in the summaries.
    let out = dir.path().join("dataset");
    let exported = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["worker", "export", "--chain", "evm", "--store", store_url, "--from", "0", "--to", &to])
        .args(["--out", &format!("file://{}", out.display()), "--validation-fraction", "0", "--no-dedup"])
        .env("BIGTABLE_EMULATOR_HOST", emulator.host())
        .output()
        .await
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&exported.stdout), String::from_utf8_lossy(&exported.stderr));
    assert!(exported.status.success(), "{log}");
    let shard = std::fs::read(out.join("data/train-00000.jsonl.zst")).unwrap();
    let text = zstd::decode_all(shard.as_slice()).unwrap();
    let documents: Vec<Value> =
        text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    let mut ids: Vec<&str> = documents.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let mut driven_ids: Vec<&str> =
        driven["transactions"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    (ids.sort(), driven_ids.sort());
    assert_eq!(ids, driven_ids, "a document per transaction");
    let failed: Vec<&Value> = documents.iter().filter(|d| d["status"] == "failure").collect();
    assert_eq!(failed.len(), 1, "the reverted call");
    assert!(failed[0]["text"].as_str().unwrap().contains("It failed (reverted)"), "{}", failed[0]);
    let transfers = documents.iter().filter(|d| d["text"].as_str().unwrap().contains(&format!("of token {token}")));
    assert_eq!(transfers.count(), 3, "the mint at deployment and the two ERC-20 transfers");
    assert!(documents.iter().all(|d| d["template"] == "transaction-summary@1" && d["block_time"].is_i64()));

    // A stock client reads serve unchanged.
    let said = node_script(&modules, "evm_client.mjs", &[&serve_url, &anvil.url, "0", &to, &token]);
    assert!(said.contains("as the node answers them"), "{said}");

    // With the node as its upstream, a tier's replica passes what it does not
    // serve (eth_getBalance, eth_call, ...) and, taking misses, a block it does
    // not hold yet; without one, that block is null as on a node.
    let ahead = json!([format!("{:#x}", last + 1), true]);
    assert_eq!(result(&serve_url, "eth_getBlockByNumber", ahead.clone()).await, Value::Null);
    let unknown = call(&serve_url, "eth_getBalance", json!([token, "latest"])).await;
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    let args = ["--upstream", anvil.url.as_str(), "--upstream-misses"];
    let (_upstreamed, upstream_url) = serve_binary(store_url, &emulator, &args).await;
    let node_block = result(&anvil.url, "eth_getBlockByNumber", ahead.clone()).await;
    assert!(!node_block.is_null());
    assert_eq!(result(&upstream_url, "eth_getBlockByNumber", ahead).await, node_block, "a miss passes through");
    // Anvil's first default account, which sent the transfers.
    let balance = json!(["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "latest"]);
    assert_eq!(
        result(&upstream_url, "eth_getBalance", balance.clone()).await,
        result(&anvil.url, "eth_getBalance", balance).await
    );
    let stored = json!([format!("{last:#x}"), false]);
    assert_eq!(
        result(&upstream_url, "eth_getBlockByNumber", stored.clone()).await,
        result(&serve_url, "eth_getBlockByNumber", stored).await
    );

    // Follow: new blocks land as they are finalized.
    let next = (last + 1).to_string();
    let follow = ["--follow", "--from", next.as_str(), "--poll-interval", "200ms"];
    let mut follower = ingest("anvil-follow", &anvil.url, store_url, &catalog, &emulator, &follow).spawn().unwrap();
    node_script(&modules, "evm_drive.mjs", &[&anvil.url, &token_sol]);
    let newer = finalized(&anvil.url).await;
    assert!(newer > last);
    let reached = format!("the follower did not reach block {newer}");
    wait_for_worker(&mut follower, &reached, || async { store.newest().await.unwrap() == Some(newer) }).await;
    let followed = assert_served_like_the_node(&serve_url, &anvil.url, last + 1, newer).await;
    assert!(followed >= 10, "{followed} transactions followed");
    // SIGTERM: the follower stops cleanly at a checkpoint.
    stop_worker(follower).await;
}

/// Every `chain_blocks_*` sample of the evm chain, by field and block (matched
/// through the `slot` field at the same timestamp), once blocks `0..=last` all show.
async fn chain_points(server: &support::VictoriaMetrics, last: u64) -> std::collections::BTreeMap<(String, i64), i64> {
    let query = "/api/v1/export?match[]=%7B__name__%3D~%22chain_blocks_.%2A%22,chain%3D%22evm%22%7D";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let body = support::http_get(server.port, query).unwrap_or_default();
        let series: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let samples = |s: &Value| {
            let times = s["timestamps"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap());
            times.zip(s["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as i64)).collect::<Vec<_>>()
        };
        let mut block_at = std::collections::BTreeMap::new();
        for s in series.iter().filter(|s| s["metric"]["__name__"] == "chain_blocks_slot") {
            assert_eq!(s["metric"]["network"], "anvil", "{s}");
            block_at.extend(samples(s));
        }
        let mut points = std::collections::BTreeMap::new();
        for s in &series {
            let field = s["metric"]["__name__"].as_str().unwrap().trim_start_matches("chain_blocks_").to_string();
            for (time, value) in samples(s) {
                if let Some(&number) = block_at.get(&time) {
                    points.insert((field.clone(), number), value);
                }
            }
        }
        if (0..=last as i64).all(|n| points.contains_key(&("compute_units".to_string(), n))) {
            return points;
        }
        assert!(std::time::Instant::now() < deadline, "not every block's point shows: {points:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[test]
fn lake_rows_equal_ethereum_etl_for_its_own_test_blocks() {
    use chronicle::chain::evm::rows;
    let mut blocks = Vec::new();
    let mut transactions = Vec::new();
    for (number, file) in [
        (483920, "eth_getBlockByNumber_483920.json"),
        (47218, "eth_getBlockByNumber_47218.json"),
        (47219, "eth_getBlockByNumber_47219.json"),
    ] {
        let (block, txs) = rows::block_rows(number, &etl_answer(file)).unwrap();
        blocks.push(block);
        transactions.extend(txs);
    }
    let ours_blocks: Vec<Cells> = blocks.iter().map(cells).collect();
    // The lake's block_timestamp is a TIMESTAMP in microseconds; ethereum-etl's CSV prints seconds.
    let ours_txs: Vec<Cells> = transactions
        .iter()
        .map(|tx| {
            let mut row = cells(tx);
            row.insert("block_timestamp".into(), (tx.block_timestamp / 1_000_000).to_string());
            row
        })
        .collect();
    let mut want_blocks = etl_expected("expected_blocks_483920.csv");
    want_blocks.extend(etl_expected("expected_blocks_47218_47219.csv"));
    assert_rows_match("blocks", &want_blocks, &ours_blocks, "number");
    let mut want_txs = etl_expected("expected_transactions_483920.csv");
    want_txs.extend(etl_expected("expected_transactions_47218_47219.csv"));
    assert_rows_match("transactions", &want_txs, &ours_txs, "hash");

    // The block's four receipts: their rows, their logs, the token transfers in those logs.
    let receipts: Vec<Value> = ["0x04cbcb23", "0xcea6f897", "0x463d53f0", "0x05287a56"]
        .iter()
        .map(|h| etl_answer(&format!("eth_getTransactionReceipt_{h}.json")))
        .collect();
    let (mut receipt_rows, mut log_rows) = (Vec::new(), Vec::new());
    for receipt in &receipts {
        let (row, logs) = rows::receipt_rows(483920, receipt).unwrap();
        receipt_rows.push(cells(&row));
        log_rows.extend(logs);
    }
    assert_rows_match("receipts", &etl_expected("expected_receipts_483920.csv"), &receipt_rows, "transaction_hash");
    let logs: Vec<Cells> = log_rows.iter().map(cells).collect();
    assert_rows_match("logs", &etl_expected("expected_logs_483920.csv"), &logs, "log_index");
    let transfers: Vec<Cells> = log_rows.iter().filter_map(rows::token_transfer).map(|t| cells(&t)).collect();
    assert_rows_match("token_transfers", &etl_expected("expected_token_transfers_483920.csv"), &transfers, "log_index");

    // Whole blocks: the mainnet fixtures' rows, one per transaction, receipt and log.
    for file in MAINNET {
        let (number, block, receipts) = mainnet_block(file);
        let evm = EvmBlock::from_json(number, block.clone(), receipts.clone()).unwrap();
        let rows = rows::rows_of(&evm).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(rows.blocks[0].hash, block["hash"].as_str().unwrap());
        assert_eq!(rows.transactions.len(), block["transactions"].as_array().unwrap().len(), "{file}");
        assert_eq!(rows.receipts.len(), rows.transactions.len(), "{file}");
        assert_eq!(rows.logs.len(), logs_of(&receipts).len(), "{file}");
    }
    // A value that is not a quantity names the block and the field.
    let mut broken = etl_answer("eth_getBlockByNumber_47218.json");
    broken["transactions"][1]["gas"] = json!("0xnope");
    let error = rows::block_rows(47218, &broken).unwrap_err();
    assert!(error.starts_with("block 47218: transaction field gas:"), "{error}");
}
