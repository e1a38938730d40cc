//! Rows from the BigQuery emulator into the lake: Chronicle's BigQuery
//! source and lake sink (the ingest loop in process) next to two ceilings
//! measured in the same run on the same rows: the emulator answering the
//! same range queries (seven tables) to a client that only reads the bodies, and the
//! same rows written as Parquet from memory.
//!
//! `cargo bench --bench bigquery` (BLOCKS sets the count; 40 by default).
//! The emulator is seeded with the rows of the real fixture blocks replayed
//! at consecutive slots (derived rows, real content).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use chronicle::bigquery::BigQueryAccess;
use chronicle::chain::solana::rows::{Rows, block_rows};
use chronicle::crd::chain_source::ChainFamily;
use chronicle::crd::ingest_job::IngestTarget;
use chronicle::lake::{parquet_bytes, record_batch};
use chronicle::pipeline::config::{BigQueryDataset, SourceConfig};
use chronicle::worker::ingest::{self, IngestConfig, LakeConfig};
use support::bigquery::{BigQueryEmulator, DATASET, PROJECT, TABLES};
use tokio_util::sync::CancellationToken;

fn values<T: serde::Serialize>(rows: &[T]) -> Vec<serde_json::Value> {
    rows.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let count: u64 = std::env::var("BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 40 } else { 4 });
    let first = 1_000_000u64;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let emulator = BigQueryEmulator::start();
        emulator.create_tables().await;
        let mut seeded = Rows::default();
        for (slot, block) in support::replayed(first, count) {
            seeded.extend(block_rows(slot, &block).unwrap());
        }
        emulator.insert("blocks", &values(&seeded.blocks)).await;
        emulator.insert("block_rewards", &values(&seeded.block_rewards)).await;
        emulator.insert("transactions", &values(&seeded.transactions)).await;
        emulator.insert("instructions", &values(&seeded.instructions)).await;
        emulator.insert("token_transfers", &values(&seeded.token_transfers)).await;
        let rows = seeded.count();
        let last = first + count - 1;
        println!("bigquery: {count} blocks, {rows} rows seeded (4 real blocks replayed), one batch per run");

        // Ceiling 1: the emulator answering the same queries, bodies read and dropped.
        let client = reqwest::Client::new();
        let url = format!("{}/projects/{PROJECT}/queries", emulator.endpoint());
        let started = Instant::now();
        let mut served = 0;
        // As the source asks: the range's block times, then blocks by slot
        // within them, the other tables bounded by the blocks' times (none
        // when a block has no time).
        let times: Option<Vec<i64>> = seeded.blocks.iter().map(|b| b.block_timestamp).collect();
        let known: Vec<i64> = seeded.blocks.iter().filter_map(|b| b.block_timestamp).collect();
        let (earliest, latest) = (known.iter().min().unwrap(), known.iter().max().unwrap());
        let between = |column: &str| format!("{column} BETWEEN TIMESTAMP_MICROS({earliest}) AND TIMESTAMP_MICROS({latest})");
        let lookup = format!(
            "SELECT COUNT(*) AS blocks, MIN(block_timestamp) AS first, MAX(block_timestamp) AS last FROM `{PROJECT}.{DATASET}.blocks` WHERE slot BETWEEN {first} AND {last}"
        );
        let body = serde_json::json!({"query": lookup, "useLegacySql": false});
        served += client.post(&url).json(&body).send().await.unwrap().bytes().await.unwrap().len();
        for (table, _) in TABLES {
            let (column, bound) = match table {
                "blocks" => ("slot", format!(" AND ({} OR block_timestamp IS NULL)", between("block_timestamp"))),
                _ if times.is_some() => ("block_slot", format!(" AND {}", between("block_timestamp"))),
                _ => ("block_slot", String::new()),
            };
            let sql =
                format!("SELECT * FROM `{PROJECT}.{DATASET}.{table}` WHERE {column} BETWEEN {first} AND {last}{bound}");
            let body = serde_json::json!({"query": sql, "useLegacySql": false, "maxResults": 1_000_000});
            served += client.post(&url).json(&body).send().await.unwrap().bytes().await.unwrap().len();
        }
        let query = started.elapsed().as_secs_f64();

        // Ceiling 2: the same rows as Parquet from memory.
        let started = Instant::now();
        let mut encoded = 0;
        for batch in [
            record_batch(&seeded.blocks).unwrap(),
            record_batch(&seeded.block_rewards).unwrap(),
            record_batch(&seeded.transactions).unwrap(),
            record_batch(&seeded.instructions).unwrap(),
            record_batch(&seeded.token_transfers).unwrap(),
        ] {
            encoded += parquet_bytes(&batch).unwrap().len();
        }
        let write = started.elapsed().as_secs_f64();

        // Ours: the ingest loop from the emulator into a local lake.
        let dir = tempfile::tempdir().unwrap();
        let config = IngestConfig {
            job: "bench".into(),
            chain: ChainFamily::Solana,
            store: String::new(),
            store_access: chronicle::store::BigtableAccess::default(),
            catalog: chronicle::pipeline::config::Secret::new(format!(
                "embedded://{}",
                dir.path().join("catalog").display()
            )),
            source: SourceConfig::BigQuery(BigQueryDataset {
                access: BigQueryAccess {
                    endpoint: Some(emulator.endpoint()),
                    project: PROJECT.into(),
                    location: None,
                    credentials_file: None,
                    attempts: 2,
                },
                dataset: format!("{PROJECT}.{DATASET}"),
                tables: TABLES.iter().map(|(t, _)| (t.to_string(), t.to_string())).collect(),
                check: None,
                repair: false,
                settle_slots: 0,
            }),
            from: Some(first),
            to: Some(last),
            follow: false,
            shard: 0,
            shards: 1,
            batch_size: count as usize,
            concurrency: 4,
            poll_interval: std::time::Duration::from_millis(400),
            catalog_patience: std::time::Duration::from_secs(60),
            targets: vec![IngestTarget::Lake],
            lake: Some(LakeConfig {
                url: format!("file://{}", dir.path().join("lake").display()),
                network: "bench".into(),
            }),
            caches: Vec::new(),
            chain_metrics: None,
        };
        let started = Instant::now();
        let summary = ingest::run(config, CancellationToken::new()).await.unwrap();
        let ours = started.elapsed().as_secs_f64();
        assert_eq!(summary.written, count);
        let lake: u64 = walk_size(&dir.path().join("lake"));

        let line = |what: &str, seconds: f64, bytes: usize| {
            println!("{what:<36} {:>10.0} rows/s {:>7.2} MB/s", rows as f64 / seconds, bytes as f64 / 1e6 / seconds);
        };
        line("chronicle bigquery -> lake", ours, lake as usize);
        line("ceiling: emulator answers queries", query, served);
        line("ceiling: Parquet write from memory", write, encoded);
        let both = query + write;
        println!("{:<36} {:>10.0} rows/s -> ratio {:.2}", "ceiling: query + write", rows as f64 / both, both / ours);
        emulator.stop();
    });
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { walk_size(&p) } else { p.metadata().map(|m| m.len()).unwrap_or(0) })
                .sum()
        })
        .unwrap_or(0)
}
