//! The BigQuery source end to end against the BigQuery emulator: seeded
//! through its REST API with the rows of two real mainnet blocks (derived
//! from the recorded blocks by `rows::block_rows`; the dataset's schema,
//! one transaction inserted twice as the public dataset sometimes has it),
//! a `--bigquery-dataset` backfill writes lake partitions whose rows equal
//! what was seeded (read back by pyarrow), each row once; a second run
//! resumes at its checkpoint and rewrites nothing; a schema-violating row
//! is a gap naming its table and slot, and the rest of the batch lands.
//! Ethereum's `crypto_ethereum` the same way (real rows: ethereum-etl's
//! expected outputs and the mainnet fixtures'): the lake it fills equals RPC
//! ingestion's byte for byte; what it lacks is a gap saying what, or taken
//! from a real node (anvil).

mod support;

use std::path::Path;
use std::process::Stdio;

use chronicle::catalog;
use chronicle::chain::solana::rows::{Rows, block_rows};
use serde_json::{Value, json};
use support::bigquery::{BigQueryEmulator, DATASET, PROJECT};
use tokio::process::Command;

async fn seed(emulator: &BigQueryEmulator, rows: &Rows) {
    emulator.insert("blocks", &values(&rows.blocks)).await;
    emulator.insert("block_rewards", &values(&rows.block_rewards)).await;
    emulator.insert("transactions", &values(&rows.transactions)).await;
    emulator.insert("instructions", &values(&rows.instructions)).await;
    emulator.insert("token_transfers", &values(&rows.token_transfers)).await;
    emulator.insert("accounts", &values(&rows.accounts)).await;
    emulator.insert("tokens", &values(&rows.tokens)).await;
}

/// An account snapshot and a token's metadata as the dataset records them
/// after a transaction of `rows`' block. Derived, since the fixtures hold no
/// account rows: the fee payer's real post-balance, and a real mint of the
/// block's token balances, retrieved a second after the block.
fn account_and_token(rows: &mut Rows) {
    use chronicle::chain::solana::account_rows::{AccountData, AccountStateRow, TokenRow};
    let tx = rows.transactions.iter().find(|t| !t.pre_token_balances.is_empty()).unwrap().clone();
    let retrieved = tx.block_timestamp.unwrap() + 1_000_000;
    rows.accounts.push(AccountStateRow {
        block_slot: tx.block_slot,
        block_timestamp: tx.block_timestamp,
        block_hash: tx.block_hash.clone(),
        pubkey: tx.accounts[0].pubkey.clone(),
        tx_signature: tx.signature.clone(),
        retrieval_timestamp: retrieved,
        executable: Some(false),
        lamports: Some(tx.balance_changes[0].after),
        owner: Some("11111111111111111111111111111111".into()),
        space: Some(0),
        data: vec![AccountData { raw: Some(String::new()), encoding: Some("base64".into()) }],
        ..AccountStateRow::default()
    });
    rows.tokens.push(TokenRow {
        block_slot: Some(tx.block_slot),
        block_timestamp: tx.block_timestamp,
        block_hash: Some(tx.block_hash.clone()),
        tx_signature: Some(tx.signature.clone()),
        retrieval_timestamp: retrieved,
        is_nft: Some(false),
        mint: Some(tx.pre_token_balances[0].mint.clone()),
        ..TokenRow::default()
    });
}

fn values<T: serde::Serialize>(rows: &[T]) -> Vec<Value> {
    rows.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

async fn backfill(emulator: &BigQueryEmulator, dir: &Path, job: &str, from: u64, to: u64) -> (bool, String) {
    ingest(&emulator.endpoint(), dir, job, from, to, &["--attempts", "2"]).await
}

/// `worker ingest` from the dataset at BigQuery `endpoint` (the emulator, or
/// a proxy in front of it) into a lake under `dir`.
async fn ingest(endpoint: &str, dir: &Path, job: &str, from: u64, to: u64, extra: &[&str]) -> (bool, String) {
    let output = worker(endpoint, dir, job)
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The worker command of a job reading the emulator's dataset into `dir`.
fn worker(endpoint: &str, dir: &Path, job: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .args(["worker", "ingest", "--job", job])
        .args(["--bigquery-dataset", &format!("{PROJECT}.{DATASET}"), "--bigquery-endpoint", endpoint])
        .args(["--bigquery-project", PROJECT])
        .args(BigQueryEmulator::table_flags())
        .args(["--lake", &format!("file://{}", dir.join("lake").display())])
        .args(["--catalog", &format!("embedded://{}", dir.join("catalog").display())])
        .env("RUST_LOG", "info")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .kill_on_drop(true);
    command
}

async fn open_catalog(dir: &Path) -> std::sync::Arc<dyn catalog::Catalog> {
    catalog::open(&format!("embedded://{}", dir.join("catalog").display())).await.unwrap()
}

/// Every file under `dir` with its bytes, by path relative to it.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut found = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                found.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// Block 154808473's rows at `slot`: a derived position for real content,
/// so that two real blocks make a range of several batches.
fn v0_rows_at(slot: u64) -> Rows {
    let blocks = support::real_blocks();
    block_rows(slot, &blocks.iter().find(|(s, _)| *s == 154_808_473).unwrap().1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigquery_backfill_lands_the_seeded_rows_in_the_lake_once() {
    let emulator = BigQueryEmulator::start();
    emulator.create_tables().await;
    let blocks = support::real_blocks();
    let (slot, block) = blocks.iter().find(|(s, _)| *s == 100_000_000).unwrap();
    let mut seeded = block_rows(*slot, block).unwrap();
    account_and_token(&mut seeded);
    seed(&emulator, &seeded).await;
    // The dataset's flaw: a transaction row twice.
    emulator.insert("transactions", &values(&seeded.transactions[..1])).await;

    let dir = tempfile::tempdir().unwrap();
    let (ok, log) = backfill(&emulator, dir.path(), "bq", 99_999_995, 100_000_004).await;
    assert!(ok, "{log}");
    assert!(log.contains("repeats rows"), "the duplicate is reported: {log}");
    let catalog = catalog::open(&format!("embedded://{}", dir.path().join("catalog").display())).await.unwrap();
    let partitions = catalog.partitions("bq").await.unwrap();
    assert_eq!(partitions.len(), 7, "{partitions:?}");
    let shards = catalog.progress("bq").await.unwrap().shards;
    assert_eq!(shards[0].1.duplicates_dropped, 1, "the repeated transaction is counted (status.duplicatesDropped)");
    for partition in &partitions {
        let read = support::pyarrow_read(&dir.path().join("lake").join(&partition.path));
        let rows = read["rows"].as_array().unwrap().clone();
        let columns: Vec<String> = serde_json::from_value(read["columns"].clone()).unwrap();
        assert_eq!(columns, support::bigquery::dataset_columns(&partition.table), "{}", partition.table);
        let expected = match partition.table.as_str() {
            "blocks" => values(&seeded.blocks),
            "block_rewards" => values(&seeded.block_rewards),
            "transactions" => values(&seeded.transactions),
            "instructions" => values(&seeded.instructions),
            "token_transfers" => values(&seeded.token_transfers),
            "accounts" => values(&seeded.accounts),
            "tokens" => values(&seeded.tokens),
            other => panic!("table {other}"),
        };
        assert_eq!(rows.len(), expected.len(), "{}: each row once", partition.table);
        if partition.table == "transactions" {
            let got: Vec<&Value> = rows.iter().map(|r| &r["signature"]).collect();
            let want: Vec<&Value> = expected.iter().map(|r| &r["signature"]).collect();
            assert_eq!(got, want);
        }
        if partition.table == "accounts" {
            for column in ["pubkey", "tx_signature", "lamports", "owner"] {
                assert_eq!(rows[0][column], expected[0][column], "accounts.{column}");
            }
        }
        if partition.table == "tokens" {
            assert_eq!(rows[0]["mint"], expected[0]["mint"]);
        }
        if partition.table == "blocks" {
            for column in ["slot", "block_hash", "height", "previous_block_hash", "transaction_count", "leader"] {
                assert_eq!(rows[0][column], expected[0][column], "blocks.{column}");
            }
        }
    }
    drop(catalog);

    // Again: the checkpoint covers the range; nothing is read or rewritten.
    let before = std::fs::metadata(dir.path().join("lake").join(&partitions[0].path)).unwrap().modified().unwrap();
    let (ok, log) = backfill(&emulator, dir.path(), "bq", 99_999_995, 100_000_004).await;
    assert!(ok, "{log}");
    let after = std::fs::metadata(dir.path().join("lake").join(&partitions[0].path)).unwrap().modified().unwrap();
    assert_eq!(before, after, "nothing rewritten");
}

/// A row that violates the schema (here a transaction without its
/// signature, REQUIRED in our model) is a gap naming table and slot; the
/// batch's other blocks land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_violates_the_schema_is_a_gap_naming_table_and_slot() {
    let emulator = BigQueryEmulator::start();
    emulator.create_tables().await;
    let blocks = support::real_blocks();
    for (slot, block) in blocks.iter().filter(|(s, _)| *s == 100_000_000) {
        seed(&emulator, &block_rows(*slot, block).unwrap()).await;
    }
    // A block row of slot 100000001 and a transaction of it without a signature.
    let mut bad =
        values(&block_rows(100_000_000, &blocks.iter().find(|(s, _)| *s == 100_000_000).unwrap().1).unwrap().blocks);
    bad[0]["slot"] = json!(100_000_001);
    emulator.insert("blocks", &bad).await;
    let time = bad[0]["block_timestamp"].clone();
    let unsigned = json!({"block_slot": 100_000_001, "block_timestamp": time, "block_hash": "x", "index": 0});
    emulator.insert("transactions", &[unsigned]).await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, log) = backfill(&emulator, dir.path(), "bad", 99_999_995, 100_000_004).await;
    assert!(!ok, "a range with a gap is not complete: {log}");
    assert!(log.contains("run again to repair them"), "{log}");
    assert!(log.contains("table transactions, slot 100000001"), "the gap names table and slot: {log}");
    let catalog = catalog::open(&format!("embedded://{}", dir.path().join("catalog").display())).await.unwrap();
    let gaps = catalog.open_gaps("bad", 0, u64::MAX >> 1).await.unwrap();
    assert_eq!(gaps.iter().map(|g| g.slot).collect::<Vec<_>>(), [100_000_001]);
    assert!(gaps[0].reason.contains("signature"), "{}", gaps[0].reason);
    let partitions = catalog.partitions("bad").await.unwrap();
    assert!(partitions.iter().all(|p| (p.first, p.last) == (100_000_000, 100_000_000)), "{partitions:?}");
}

/// BigQuery answers 5xx and quota errors at times: the first query attempts
/// fail (503 backendError, then 403 rateLimitExceeded) through a proxy in
/// front of the emulator; the source retries with backoff and the batch lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_quota_errors_are_retried() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let emulator = BigQueryEmulator::start();
    emulator.create_tables().await;
    let blocks = support::real_blocks();
    let (slot, block) = blocks.iter().find(|(s, _)| *s == 100_000_000).unwrap();
    seed(&emulator, &block_rows(*slot, block).unwrap()).await;

    let failed = Arc::new(AtomicUsize::new(0));
    let upstream = format!("http://127.0.0.1:{}", emulator.port);
    let app = {
        let failed = failed.clone();
        axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (failed, upstream) = (failed.clone(), upstream.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
                if parts.uri.path().ends_with("/queries") {
                    let error = match failed.fetch_add(1, Ordering::SeqCst) {
                        0 | 1 => Some((503, "backendError", "The service is currently unavailable.")),
                        2 => Some((403, "rateLimitExceeded", "Exceeded rate limits: too many concurrent queries.")),
                        _ => None,
                    };
                    if let Some((code, reason, message)) = error {
                        let answer = json!({"error": {"code": code, "message": message,
                            "errors": [{"reason": reason, "message": message, "domain": "global"}], "status": reason}});
                        return axum::response::Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(axum::body::Body::from(answer.to_string()))
                            .unwrap();
                    }
                }
                let url = format!("{upstream}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
                let answer = reqwest::Client::new()
                    .request(parts.method, url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                let bytes = answer.bytes().await.unwrap();
                axum::response::Response::builder().status(status).body(axum::body::Body::from(bytes)).unwrap()
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{proxy}/bigquery/v2");
    let (ok, log) = ingest(&endpoint, dir.path(), "flaky", 99_999_995, 100_000_004, &["--attempts", "5"]).await;
    assert!(ok, "{log}");
    assert!(failed.load(Ordering::SeqCst) > 3, "the errors were answered and retried");
    let catalog = catalog::open(&format!("embedded://{}", dir.path().join("catalog").display())).await.unwrap();
    assert_eq!(catalog.partitions("flaky").await.unwrap().len(), 5);
}

/// Completeness against a node: a block the chain produced that the dataset
/// lacks, and a block with fewer transaction rows than its count, are gaps
/// that say what is missing; a run with `--bigquery-repair` takes both from
/// the node. The second block is block 154808473's content served at slot
/// 100000002 (a derived position; the content is real).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_the_dataset_lacks_are_gaps_or_taken_from_the_node() {
    use support::rpc_peer::RpcPeer;
    let emulator = BigQueryEmulator::start();
    emulator.create_tables().await;
    let blocks = support::real_blocks();
    let legacy = blocks.iter().find(|(s, _)| *s == 100_000_000).unwrap().1.clone();
    let v0 = blocks.iter().find(|(s, _)| *s == 154_808_473).unwrap().1.clone();
    let peer = RpcPeer::start([(100_000_000, legacy.clone()), (100_000_002, v0)].into_iter().collect()).await;
    let mut seeded = block_rows(100_000_000, &legacy).unwrap();
    let full = seeded.transactions.len();
    seeded.transactions.pop(); // the dataset lost one
    seed(&emulator, &seeded).await;

    let dir = tempfile::tempdir().unwrap();
    let check = ["--attempts", "2", "--bigquery-check-rpc", &peer.url()];
    let (ok, log) = ingest(&emulator.endpoint(), dir.path(), "checked", 99_999_995, 100_000_004, &check).await;
    assert!(!ok, "gaps remain: {log}");
    let catalog_url = format!("embedded://{}", dir.path().join("catalog").display());
    let catalog = catalog::open(&catalog_url).await.unwrap();
    let gaps = catalog.open_gaps("checked", 0, u64::MAX >> 1).await.unwrap();
    let reasons: Vec<(u64, &str)> = gaps.iter().map(|g| (g.slot, g.reason.as_str())).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].1.contains(&format!("the dataset has {} of the block's {full} transactions", full - 1)),
        "{reasons:?}"
    );
    assert!(reasons[1].1.contains("the chain produced this block; the dataset lacks it"), "{reasons:?}");
    assert_eq!((reasons[0].0, reasons[1].0), (100_000_000, 100_000_002));
    drop(catalog);

    let repair = ["--attempts", "2", "--bigquery-check-rpc", &peer.url(), "--bigquery-repair"];
    let (ok, log) = ingest(&emulator.endpoint(), dir.path(), "checked", 99_999_995, 100_000_004, &repair).await;
    assert!(ok, "{log}");
    assert!(log.contains("taken from the node instead"), "{log}");
    let catalog = catalog::open(&catalog_url).await.unwrap();
    assert!(catalog.open_gaps("checked", 0, u64::MAX >> 1).await.unwrap().is_empty());
    let transactions: Vec<_> =
        catalog.partitions("checked").await.unwrap().into_iter().filter(|p| p.table == "transactions").collect();
    let rows: u64 = transactions.iter().map(|p| p.rows).sum();
    let expected = full
        + block_rows(100_000_002, &blocks.iter().find(|(s, _)| *s == 154_808_473).unwrap().1)
            .unwrap()
            .transactions
            .len();
    assert_eq!(rows as usize, expected, "both blocks whole, from the node: {transactions:?}");
}

/// A worker killed (SIGKILL) mid-backfill and started again leaves the same
/// lake files, byte for byte, and the same catalog as a run left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backfill_resumes_to_the_same_files_and_catalog() {
    let emulator = BigQueryEmulator::start();
    emulator.create_tables().await;
    let blocks = support::real_blocks();
    let legacy = &blocks.iter().find(|(s, _)| *s == 100_000_000).unwrap().1;
    seed(&emulator, &block_rows(100_000_000, legacy).unwrap()).await;
    seed(&emulator, &v0_rows_at(100_000_003)).await;
    let (from, to, batch) = (99_999_999, 100_000_004, ["--batch-size", "1"]);

    let undisturbed = tempfile::tempdir().unwrap();
    let (ok, log) = ingest(&emulator.endpoint(), undisturbed.path(), "bq", from, to, &batch).await;
    assert!(ok, "{log}");

    let killed = tempfile::tempdir().unwrap();
    let mut child = worker(&emulator.endpoint(), killed.path(), "bq")
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .args(batch)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the first block's partitions are in the lake, before the range is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !killed.path().join("lake").exists() || files(&killed.path().join("lake")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the worker never wrote a partition");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let (ok, log) = ingest(&emulator.endpoint(), killed.path(), "bq", from, to, &batch).await;
    assert!(ok, "{log}");

    let (want, got) = (files(&undisturbed.path().join("lake")), files(&killed.path().join("lake")));
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>(), "the same partitions");
    assert!(want == got, "the same bytes in every partition");
    let (want, got) = (open_catalog(undisturbed.path()).await, open_catalog(killed.path()).await);
    assert_eq!(want.partitions("bq").await.unwrap(), got.partitions("bq").await.unwrap());
    let shards = |progress: chronicle::catalog::JobProgress| progress.shards;
    assert_eq!(shards(want.progress("bq").await.unwrap()), shards(got.progress("bq").await.unwrap()));
}

/// Follow mode: a follower reads what the dataset holds, then picks up the
/// rows inserted later, and records the dataset's newest block with its
/// time (what the IngestJob's status reports as the source's lag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_picks_up_newer_rows_and_records_the_datasets_head() {
    let emulator = BigQueryEmulator::start();
    emulator.create_tables().await;
    let blocks = support::real_blocks();
    let legacy = &blocks.iter().find(|(s, _)| *s == 100_000_000).unwrap().1;
    seed(&emulator, &block_rows(100_000_000, legacy).unwrap()).await;

    let dir = tempfile::tempdir().unwrap();
    let child = worker(&emulator.endpoint(), dir.path(), "tail")
        .args(["--follow", "--from", "99999999", "--poll-interval", "300ms", "--bigquery-settle-slots", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let partition = |slot: u64| {
        dir.path().join("lake/solana/mainnet-beta/blocks").join(format!("{:012}-{:012}.parquet", slot, slot))
    };
    let wait_for = |path: std::path::PathBuf| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "never written: {}", path.display());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    wait_for(partition(100_000_000)).await;
    // The dataset grows: a newer block's rows arrive.
    let newer = v0_rows_at(100_000_003);
    seed(&emulator, &newer).await;
    wait_for(partition(100_000_003)).await;
    let (status, log) = support::terminate(child).await;
    assert!(status.success(), "{log}");

    let catalog = catalog::open(&format!("embedded://{}", dir.path().join("catalog").display())).await.unwrap();
    let progress = catalog.progress("tail").await.unwrap();
    assert_eq!(progress.shards[0].1.checkpoint, Some(100_000_003), "{log}");
    let head = progress.source_head.expect("the dataset's head is recorded");
    assert_eq!(head.head.number, 100_000_003);
    let time = newer.blocks[0].block_timestamp.map(|micros| micros / 1_000_000);
    assert_eq!(head.head.time, time, "with its block time");
    assert!(head.observed_at - time.unwrap() > 3600, "the dataset's block is long past: the lag shows it");
    let transactions: u64 =
        catalog.partitions("tail").await.unwrap().iter().filter(|p| p.table == "transactions").map(|p| p.rows).sum();
    let expected = block_rows(100_000_000, legacy).unwrap().transactions.len() + newer.transactions.len();
    assert_eq!(transactions as usize, expected, "each block's transactions once");
}

/// The worker command of an evm job reading the emulator's `crypto_ethereum` into `dir`.
fn evm_worker(emulator: &BigQueryEmulator, dir: &Path, job: &str, (from, to): (u64, u64), extra: &[&str]) -> Command {
    use support::bigquery::EVM_DATASET;
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .args(["worker", "ingest", "--chain", "evm", "--network", "mainnet", "--job", job])
        .args(["--from", &from.to_string(), "--to", &to.to_string(), "--attempts", "2"])
        .args(["--bigquery-dataset", &format!("{PROJECT}.{EVM_DATASET}"), "--bigquery-endpoint", &emulator.endpoint()])
        .args(["--bigquery-project", PROJECT])
        .args(["--lake", &format!("file://{}", dir.join("lake").display())])
        .args(["--catalog", &format!("embedded://{}", dir.join("catalog").display())])
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn run(mut command: Command) -> (bool, String) {
    let output = command.output().await.unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

async fn seed_evm(emulator: &BigQueryEmulator, tables: Vec<(&str, Vec<Value>)>) {
    for (table, rows) in tables {
        emulator.insert_into(support::bigquery::EVM_DATASET, table, &rows).await;
    }
}

/// BigQuery's `crypto_ethereum` as a source: the lake it fills is the lake
/// RPC ingestion fills from the node's answers for the same blocks, file for
/// file and byte for byte. The dataset is seeded with (a) ethereum-etl's own
/// expected rows of block 483920 (its CSVs, real rows, joined as the
/// dataset's enrich step joins transactions and receipts; no traces table
/// read), and (b) the five mainnet fixture blocks' rows with their 946
/// recorded call frames, put in the dataset's schema (block times as
/// TIMESTAMPs, receipts as `receipt_*` columns, wei past 2^64 as NUMERIC),
/// one transaction inserted twice as the public datasets sometimes have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ethereum_dataset_fills_the_lake_as_the_node_does() {
    use chronicle::chain::evm::rows::{self, EvmTables};
    use chronicle::pipeline::BlockSink;
    use support::bigquery::{evm_dataset_rows, evm_row_from_cells};
    use support::evm::{MAINNET, etl_answer, etl_expected, mainnet_evm_block};
    let emulator = BigQueryEmulator::start();
    emulator.create_evm_tables().await;

    // (a) ethereum-etl's rows of block 483920, in the dataset's form.
    let block = etl_expected("expected_blocks_483920.csv").remove(0);
    let receipts = etl_expected("expected_receipts_483920.csv");
    let time = |row: &mut support::evm::Cells| {
        row.insert("block_timestamp".into(), block["timestamp"].clone());
    };
    let transactions: Vec<Value> = etl_expected("expected_transactions_483920.csv")
        .into_iter()
        .map(|mut tx| {
            let receipt = receipts.iter().find(|r| r["transaction_hash"] == tx["hash"]).unwrap();
            for column in
                ["cumulative_gas_used", "gas_used", "contract_address", "root", "status", "effective_gas_price"]
            {
                tx.insert(format!("receipt_{column}"), receipt[column].clone());
            }
            evm_row_from_cells("transactions", &tx)
        })
        .collect();
    let with_block = |table: &'static str, file: &str| -> Vec<Value> {
        etl_expected(file)
            .into_iter()
            .map(|mut row| {
                time(&mut row);
                evm_row_from_cells(table, &row)
            })
            .collect()
    };
    seed_evm(
        &emulator,
        vec![
            ("blocks", vec![evm_row_from_cells("blocks", &block)]),
            ("transactions", transactions),
            ("logs", with_block("logs", "expected_logs_483920.csv")),
        ],
    )
    .await;
    // (b) the mainnet fixtures, and one transaction again.
    let fixtures: Vec<chronicle::chain::evm::EvmBlock> = MAINNET.iter().map(|f| mainnet_evm_block(f)).collect();
    for block in &fixtures {
        let rows = chronicle::chain::evm::rows::rows_of(block).unwrap();
        seed_evm(&emulator, evm_dataset_rows(&rows)).await;
    }
    let busiest = chronicle::chain::evm::rows::rows_of(fixtures.last().unwrap()).unwrap();
    let again = evm_dataset_rows(&busiest).into_iter().find(|(t, _)| *t == "transactions").unwrap().1[..1].to_vec();
    seed_evm(&emulator, vec![("transactions", again)]).await;

    // The lake RPC ingestion writes for the same blocks, a partition set per
    // block. Block 483920's receipts are ethereum-etl's recordings of an old
    // node's answers (no `from`): its rows come from the row mappers directly.
    let node = tempfile::tempdir().unwrap();
    let lake = chronicle::lake::Lake::open(&format!("file://{}", node.path().display()), "evm", "mainnet").unwrap();
    let lake = std::sync::Arc::new(lake);
    let (block_row, transactions) = rows::block_rows(483920, &etl_answer("eth_getBlockByNumber_483920.json")).unwrap();
    let mut etl_rows = rows::EvmRows { blocks: vec![block_row], transactions, ..rows::EvmRows::default() };
    for hash in ["0x04cbcb23", "0xcea6f897", "0x463d53f0", "0x05287a56"] {
        let (receipt, logs) =
            rows::receipt_rows(483920, &etl_answer(&format!("eth_getTransactionReceipt_{hash}.json"))).unwrap();
        etl_rows.receipts.push(receipt);
        etl_rows.token_transfers.extend(logs.iter().filter_map(rows::token_transfer));
        etl_rows.logs.extend(logs);
    }
    let sink = chronicle::pipeline::sinks::lake::LakeSink::new(lake.clone(), EvmTables);
    sink.write(483920, &etl_rows).await.unwrap();
    sink.flush().await.unwrap();
    let sink = chronicle::pipeline::sinks::lake::LakeSink::new(lake, EvmTables);
    for block in &fixtures {
        sink.write(block.index.number, block).await.unwrap();
        sink.flush().await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let (ok, log) =
        run(evm_worker(&emulator, dir.path(), "etl", (483920, 483920), &["--bigquery-table", "traces="])).await;
    assert!(ok, "{log}");
    let mut duplicates = 0;
    for block in &fixtures {
        let number = block.index.number;
        let (ok, log) = run(evm_worker(&emulator, dir.path(), &format!("b{number}"), (number, number), &[])).await;
        assert!(ok, "block {number}: {log}");
        let catalog = open_catalog(dir.path()).await;
        duplicates += catalog.progress(&format!("b{number}")).await.unwrap().shards[0].1.duplicates_dropped;
    }
    assert_eq!(duplicates, 1, "the repeated transaction is dropped and counted");

    let (want, got) = (files(node.path()), files(&dir.path().join("lake")));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the same partitions");
    for (path, bytes) in &want {
        if got[path] != *bytes {
            let (ours, theirs) = (
                support::pyarrow_read(&node.path().join(path)),
                support::pyarrow_read(&dir.path().join("lake").join(path)),
            );
            assert_eq!(theirs, ours, "{path}: the dataset's rows differ from the node's");
            panic!("{path}: the same rows in different bytes");
        }
    }
    let traces = want.keys().filter(|p| p.contains("/traces/")).count();
    assert_eq!(traces, 5, "a traces partition for each fixture block (genesis's holds no row), none for 483920");
}

/// What the dataset lacks is a gap that says what is missing: a block
/// number it does not list (every number is a block on an EVM chain), rows
/// of another fork, a transaction row short of the block's count, a
/// transaction without its top-level trace, logs a block's bloom promises.
/// Nothing of those blocks reaches the lake; a number past the dataset's
/// newest block is waited for, not a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_ethereum_dataset_lacks_is_a_gap_saying_what() {
    use support::bigquery::evm_dataset_rows;
    use support::evm::mainnet_evm_block;
    let emulator = BigQueryEmulator::start();
    emulator.create_evm_tables().await;
    let rows_of =
        |file: &str| evm_dataset_rows(&chronicle::chain::evm::rows::rows_of(&mainnet_evm_block(file)).unwrap());
    // 468178 not at all; 468179 with its transaction from another fork.
    let mut forked = rows_of("raw_block_468179.json");
    let transactions = &mut forked.iter_mut().find(|(t, _)| *t == "transactions").unwrap().1;
    transactions[0]["block_hash"] = json!(format!("0x{}", "ab".repeat(32)));
    seed_evm(&emulator, forked).await;
    // 13998626 without its last transaction.
    let mut short = rows_of("raw_block_13998626.json");
    short.iter_mut().find(|(t, _)| *t == "transactions").unwrap().1.pop();
    seed_evm(&emulator, short).await;
    // 4370006 without one transaction's top-level trace.
    let mut untraced = rows_of("raw_block_4370006.json");
    let traces = &mut untraced.iter_mut().find(|(t, _)| *t == "traces").unwrap().1;
    let top = traces.iter().position(|t| t["trace_address"].is_null() && t["transaction_hash"].is_string()).unwrap();
    traces.remove(top);
    seed_evm(&emulator, untraced).await;
    // Genesis twice, the second row of another hash.
    let mut genesis = rows_of("raw_block_0.json");
    let blocks = &mut genesis.iter_mut().find(|(t, _)| *t == "blocks").unwrap().1;
    let mut other = blocks[0].clone();
    other["hash"] = json!(format!("0x{}", "cd".repeat(32)));
    blocks.push(other);
    seed_evm(&emulator, genesis).await;
    // 17053184 without its logs (the dataset loads each table on its own schedule).
    let mut unlogged = rows_of("raw_block_17053184.json");
    unlogged.iter_mut().find(|(t, _)| *t == "logs").unwrap().1.clear();
    seed_evm(&emulator, unlogged).await;

    let dir = tempfile::tempdir().unwrap();
    let fork = format!("rows of block hash 0x{}", "ab".repeat(32));
    type Gaps<'a> = &'a [(u64, &'a str)];
    let cases: [(u64, u64, Gaps); 5] = [
        (0, 0, &[(0, "block 0: the dataset has two blocks of this number")]),
        (
            468178,
            468179,
            &[(468178, "block 468178: every number is a block; the dataset lacks this one"), (468179, &fork)],
        ),
        (13998626, 13998626, &[(13998626, "block 13998626: the dataset has 6 of the block's 7 transactions")]),
        (4370006, 4370006, &[(4370006, "block 4370006: the dataset has traces of 63 of the block's 64 transactions")]),
        (17053184, 17053184, &[(17053184, "the block's logs bloom is set; the dataset has none of its logs")]),
    ];
    for (from, to, want) in cases {
        let job = format!("gap{from}");
        let (ok, log) = run(evm_worker(&emulator, dir.path(), &job, (from, to), &[])).await;
        assert!(!ok, "a range with a gap is not complete: {log}");
        assert!(log.contains("run again to repair them"), "{log}");
        let catalog = open_catalog(dir.path()).await;
        let gaps = catalog.open_gaps(&job, 0, u64::MAX >> 1).await.unwrap();
        assert_eq!(gaps.iter().map(|g| g.slot).collect::<Vec<_>>(), want.iter().map(|(n, _)| *n).collect::<Vec<_>>());
        for (gap, (_, reason)) in gaps.iter().zip(want) {
            assert!(gap.reason.contains(reason), "{}", gap.reason);
        }
        assert!(catalog.partitions(&job).await.unwrap().is_empty(), "no row of a gap's block reaches the lake");
    }
    // A range past the dataset's newest block is waited for (retried), not a gap.
    let log = dir.path().join("ahead.log");
    let mut ahead = evm_worker(&emulator, dir.path(), "ahead", (17053185, 17053185), &[]);
    let mut ahead = ahead.stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("the dataset's newest block is 17053184; 17053185 is not in it yet")
    {
        assert!(std::time::Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ahead.start_kill().unwrap();
    ahead.wait().await.unwrap();
    assert!(open_catalog(dir.path()).await.open_gaps("ahead", 0, u64::MAX >> 1).await.unwrap().is_empty());
}

/// Checked against a real node (anvil), an Ethereum dataset that lacks a
/// block and holds another without its transaction is completed from the
/// node with `--bigquery-repair`: the lake equals what RPC ingestion of the
/// node writes for the range, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ethereum_dataset_is_completed_from_its_node() {
    use chronicle::chain::ChainAdapter;
    use chronicle::chain::evm::rows::{EvmTables, rows_of};
    use chronicle::crd::chain_source::Commitment;
    use chronicle::pipeline::BlockSink;
    use chronicle::pipeline::config::{RpcEndpoint, SourceConfig};
    use support::evm::{Anvil, result};
    let anvil = Anvil::start(&support::node_modules());
    let accounts = result(&anvil.url, "eth_accounts", json!([])).await;
    for n in 1..=6u64 {
        let transfer = json!({"from": accounts[0], "to": accounts[n as usize % 3 + 1], "value": format!("{:#x}", n * 10u64.pow(18))});
        result(&anvil.url, "eth_sendTransaction", json!([transfer])).await; // one block each
    }
    result(&anvil.url, "anvil_mine", json!(["0x46"])).await; // anvil's finalized is 64 below its newest
    let (from, to) = (1u64, 8u64);

    // The node's blocks as RPC ingestion reads them, and the lake it writes.
    let node = chronicle::chain::evm::Evm
        .source(&SourceConfig::Rpc(RpcEndpoint::new(anvil.url.clone(), Commitment::Finalized)), None)
        .unwrap();
    let reference = tempfile::tempdir().unwrap();
    let lake =
        chronicle::lake::Lake::open(&format!("file://{}", reference.path().display()), "evm", "mainnet").unwrap();
    let sink = chronicle::pipeline::sinks::lake::LakeSink::new(std::sync::Arc::new(lake), EvmTables);
    let emulator = BigQueryEmulator::start();
    emulator.create_evm_tables().await;
    for number in from..=to {
        let block = node.block(number).await.unwrap();
        sink.write(number, &block).await.unwrap();
        let mut rows = support::bigquery::evm_dataset_rows(&rows_of(&block).unwrap());
        match number {
            3 => continue, // the dataset lacks block 3
            5 => rows.iter_mut().find(|(t, _)| *t == "transactions").unwrap().1.clear(),
            _ => {}
        }
        seed_evm(&emulator, rows).await;
    }
    sink.flush().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let repair = ["--bigquery-check-rpc", &anvil.url, "--bigquery-repair"];
    let (ok, log) = run(evm_worker(&emulator, dir.path(), "repaired", (from, to), &repair)).await;
    assert!(ok, "{log}");
    assert_eq!(log.matches("taken from the node instead").count(), 2, "{log}");
    let catalog = open_catalog(dir.path()).await;
    assert!(catalog.open_gaps("repaired", 0, u64::MAX >> 1).await.unwrap().is_empty());
    let (want, got) = (files(reference.path()), files(&dir.path().join("lake")));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the same partitions");
    assert!(want == got, "the same bytes in every partition");
}
