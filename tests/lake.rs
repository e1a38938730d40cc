//! The lake target end to end: `chronicle worker ingest --lake` against the
//! loopback node with real mainnet blocks writes one Parquet partition per
//! table and batch, committed in the catalog with the checkpoint; pyarrow
//! (an independent reader) reads back the rows the blocks derive to, under
//! the BigQuery dataset's column names. A re-run replaces the same objects;
//! a partition that cannot be written holds the checkpoint, and the job
//! resumes once the lake is back.

mod support;

use std::path::Path;
use std::process::Stdio;

use chronicle::catalog::{self, LakePartition};
use chronicle::chain::solana::rows::block_rows;
use support::bigquery::dataset_columns;
use support::real_blocks;
use support::rpc_peer::RpcPeer;
use tokio::process::Command;

/// The recorded blocks of slots 100000000 (legacy) and 154808473 (v0, with lookups).
const RANGES: [(u64, u64); 2] = [(99_999_995, 100_000_004), (154_808_470, 154_808_479)];

async fn ingest(peer: &RpcPeer, dir: &Path, job: &str, (from, to): (u64, u64)) -> (bool, String) {
    let lake = format!("file://{}", dir.join("lake").display());
    let output = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["worker", "ingest", "--job", job, "--rpc", &peer.url(), "--lake", &lake])
        .args(["--store", &format!("embedded://{}", dir.join("ledger").display())])
        .args(["--catalog", &format!("embedded://{}", dir.join("catalog").display())])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

async fn partitions(dir: &Path, job: &str) -> Vec<LakePartition> {
    let catalog = catalog::open(&format!("embedded://{}", dir.join("catalog").display())).await.unwrap();
    catalog.partitions(job).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_ingest_fills_the_lake_and_a_rerun_replaces_it() {
    let blocks = real_blocks();
    let peer = RpcPeer::start(blocks.iter().cloned().collect()).await;
    let dir = tempfile::tempdir().unwrap();
    for (i, range) in RANGES.into_iter().enumerate() {
        let (ok, log) = ingest(&peer, dir.path(), &format!("lake-{i}"), range).await;
        assert!(ok, "{log}");
    }
    let mut files = Vec::new();
    for (i, (from, to)) in RANGES.into_iter().enumerate() {
        let (slot, block) = blocks.iter().find(|(s, _)| (from..=to).contains(s)).unwrap();
        let expected = block_rows(*slot, block).unwrap();
        let committed = partitions(dir.path(), &format!("lake-{i}")).await;
        let tables: Vec<&str> = committed.iter().map(|p| p.table.as_str()).collect();
        assert_eq!(tables, ["block_rewards", "blocks", "instructions", "token_transfers", "transactions"]);
        for partition in &committed {
            assert_eq!((partition.first, partition.last), (*slot, *slot), "{partition:?}");
            let file = dir.path().join("lake").join(&partition.path);
            assert!(partition.path.starts_with("solana/mainnet-beta/"), "{}", partition.path);
            let read = support::pyarrow_read(&file);
            let columns: Vec<String> = serde_json::from_value(read["columns"].clone()).unwrap();
            assert_eq!(columns, dataset_columns(&partition.table), "{}: the dataset's columns", partition.table);
            let rows = read["rows"].as_array().unwrap();
            assert_eq!(rows.len() as u64, partition.rows, "{}", partition.table);
            let want = match partition.table.as_str() {
                "blocks" => expected.blocks.len(),
                "block_rewards" => expected.block_rewards.len(),
                "transactions" => expected.transactions.len(),
                "instructions" => expected.instructions.len(),
                "token_transfers" => expected.token_transfers.len(),
                _ => unreachable!(),
            };
            assert_eq!(rows.len(), want, "{}", partition.table);
            if partition.table == "transactions" {
                let signatures: Vec<&str> = rows.iter().map(|r| r["signature"].as_str().unwrap()).collect();
                let derived: Vec<&str> = expected.transactions.iter().map(|t| t.signature.as_str()).collect();
                assert_eq!(signatures, derived);
                assert_eq!(read["types"][2], "timestamp[us, tz=UTC]", "block_timestamp is a TIMESTAMP");
            }
            if partition.table == "blocks" {
                assert_eq!(rows[0]["slot"], *slot);
                assert_eq!(rows[0]["block_hash"], block.blockhash);
            }
            files.push((file.clone(), std::fs::read(&file).unwrap()));
        }
    }
    assert!(files.iter().any(|(f, _)| f.to_string_lossy().contains("/instructions/")));

    // A re-run from scratch (a new catalog) writes the same objects again: replaced, not duplicated.
    std::fs::remove_dir_all(dir.path().join("catalog")).unwrap();
    for (i, range) in RANGES.into_iter().enumerate() {
        let (ok, log) = ingest(&peer, dir.path(), &format!("lake-{i}"), range).await;
        assert!(ok, "{log}");
    }
    let objects = walk(&dir.path().join("lake"));
    assert_eq!(objects.len(), files.len(), "{objects:#?}");
    for (file, bytes) in &files {
        assert_eq!(&std::fs::read(file).unwrap(), bytes, "{} rewritten the same", file.display());
    }
}

/// A partition the lake cannot take holds the batch: nothing committed, the
/// error names the object; once the lake takes it, the job resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_cannot_be_written_holds_the_checkpoint() {
    let peer = RpcPeer::start(real_blocks().into_iter().collect()).await;
    let dir = tempfile::tempdir().unwrap();
    // A directory where the instructions object must go: the put fails.
    let blocker = dir.path().join("lake/solana/mainnet-beta/instructions/000100000000-000100000000.parquet");
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    let (ok, log) = ingest(&peer, dir.path(), "held", RANGES[0]).await;
    assert!(!ok, "the run fails: {log}");
    assert!(log.contains("instructions/000100000000-000100000000.parquet"), "the object is named: {log}");
    let catalog = catalog::open(&format!("embedded://{}", dir.path().join("catalog").display())).await.unwrap();
    let state =
        catalog.shard("held", catalog::ShardRange { shard: 0, start: RANGES[0].0, end: RANGES[0].1 }).await.unwrap();
    assert_eq!(state.checkpoint, None, "the checkpoint held");
    assert!(catalog.partitions("held").await.unwrap().is_empty(), "nothing committed");
    drop(catalog);
    std::fs::remove_dir_all(&blocker).unwrap();
    let (ok, log) = ingest(&peer, dir.path(), "held", RANGES[0]).await;
    assert!(ok, "{log}");
    assert_eq!(partitions(dir.path(), "held").await.len(), 5);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
