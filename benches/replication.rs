//! Replication throughput (IngestJob `source: store`) between two Bigtable
//! emulators, and into the embedded store, next to the ceilings of the same
//! stores measured in the same run: the raw read of exactly the rows a block
//! owns (keys known in advance, the same multi-row reads, the same
//! concurrency) from the origin, and the raw write of those rows to a fresh
//! target. Then verification of the finished replica (both sides read and
//! compared by row digests, nothing written).
//!
//! Blocks are mainnet-size, DERIVED from real ones: each holds 1,000 of the
//! recorded mainnet transactions (cycled), each copy's first signature
//! rewritten so every transaction has its own `tx` row, as on mainnet.
//!
//! `cargo bench --bench replication` (BLOCKS sets the count; 40 by default).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::crd::chain_source::ChainFamily;
use chronicle::crd::ingest_job::IngestTarget;
use chronicle::pipeline::config::{SourceConfig, StoreOrigin};
use chronicle::store::block_rows::{BlockRows, BlockRowsReader, write_rows};
use chronicle::store::cells::CellStore;
use chronicle::store::embedded::EmbeddedCells;
use chronicle::store::ledger::tables;
use chronicle::store::{BigtableAccess, BlockStore, LedgerStore};
use chronicle::worker::ingest::IngestConfig;
use futures::StreamExt;
use solana_transaction_status::{ConfirmedBlock, TransactionWithStatusMeta};
use support::BigtableEmulator;

const CONCURRENCY: usize = 16;
const TRANSACTIONS_PER_BLOCK: usize = 1_000;
const FIRST: u64 = 9_000_000;

struct Figure {
    blocks: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Figure {
    fn blocks_per_sec(&self) -> f64 {
        self.blocks as f64 / self.elapsed.as_secs_f64()
    }
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
    fn line(&self, what: &str) -> String {
        format!("{what:<28} {:>8.1} blocks/s {:>8.2} MB/s", self.blocks_per_sec(), self.mb_per_sec())
    }
}

async fn bigtable(emulator: &BigtableEmulator, instance: &str) -> Arc<LedgerStore> {
    support::bigtable_ledger(emulator, "bench", instance).await
}

/// The origin's rows of every block, read the way the replication reads
/// them (its keys found from the block), outside the clock.
async fn all_rows(origin: &LedgerStore, count: u64) -> Vec<BlockRows> {
    let mut rows = Vec::new();
    for slot in FIRST..FIRST + count {
        rows.push(origin.block_rows(slot).await.unwrap().unwrap());
    }
    rows
}

/// Ceiling: the known keys of every block read back with the same multi-row reads.
async fn raw_read(origin: &Arc<dyn CellStore>, rows: &[BlockRows]) -> Figure {
    let start = Instant::now();
    let bytes: u64 = futures::stream::iter(rows)
        .map(|block| {
            let origin = origin.clone();
            async move {
                let read = chronicle::store::block_rows::read_same_rows(origin.as_ref(), block).await.unwrap();
                read.values().map(chronicle::store::block_rows::row_bytes).sum::<u64>()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |sum, b| async move { sum + b })
        .await;
    Figure { blocks: rows.len() as u64, bytes, elapsed: start.elapsed() }
}

/// Ceiling: the rows, already in memory, written to a fresh target.
async fn raw_write(target: &Arc<dyn CellStore>, rows: &[BlockRows]) -> Figure {
    let start = Instant::now();
    futures::stream::iter(rows)
        .map(|block| {
            let target = target.clone();
            async move { write_rows(target.as_ref(), &block.rows, true).await.unwrap() }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    target.sync().await.unwrap();
    Figure { blocks: rows.len() as u64, bytes: rows.iter().map(BlockRows::bytes).sum(), elapsed: start.elapsed() }
}

/// The replication itself (the worker's loop, in process), or a verification of it.
async fn replicate(
    origin: &str,
    origin_host: &str,
    target: &str,
    target_host: Option<&str>,
    count: u64,
    verify: bool,
) -> Figure {
    let dir = tempfile::tempdir().unwrap();
    let config = IngestConfig {
        job: format!("bench-{verify}"),
        chain: ChainFamily::Solana,
        store: target.into(),
        store_access: BigtableAccess { emulator_host: target_host.map(String::from), credentials_file: None },
        catalog: chronicle::pipeline::config::Secret::new(format!("embedded://{}", dir.path().display())),
        source: SourceConfig::Store(StoreOrigin {
            url: origin.into(),
            access: BigtableAccess { emulator_host: Some(origin_host.into()), credentials_file: None },
            verify,
            repair: true,
        }),
        from: Some(FIRST),
        to: Some(FIRST + count - 1),
        follow: false,
        shard: 0,
        shards: 1,
        batch_size: 50,
        concurrency: chronicle::worker::run::STORE_CONCURRENCY,
        poll_interval: Duration::from_secs(1),
        catalog_patience: Duration::from_secs(10),
        targets: vec![IngestTarget::Canonical],
        lake: None,
        caches: Vec::new(),
        chain_metrics: None,
    };
    let start = Instant::now();
    let summary =
        chronicle::replication::run(&chronicle::chain::solana::Solana, config, Default::default()).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(summary.written, count, "every block copied");
    Figure { blocks: count, bytes: summary.bytes, elapsed }
}

fn report(case: &str, ours: &Figure, read: &Figure, write: &Figure, verify: &Figure, copied_bytes: u64) {
    let ceiling = read.blocks_per_sec().min(write.blocks_per_sec());
    println!("{case}");
    println!("  {}", read.line("raw read ceiling (origin)"));
    println!("  {}", write.line("raw write ceiling (target)"));
    let ours_line = Figure { bytes: copied_bytes, ..Figure { blocks: ours.blocks, bytes: 0, elapsed: ours.elapsed } };
    println!("  {} | ratio {:.2} of the lower ceiling", ours_line.line("replication"), ours.blocks_per_sec() / ceiling);
    let verify_line =
        Figure { bytes: copied_bytes * 2, ..Figure { blocks: verify.blocks, bytes: 0, elapsed: verify.elapsed } };
    println!(
        "  {} | ratio {:.2} of the raw read (both sides read)",
        verify_line.line("verification (read both)"),
        verify.blocks_per_sec() / read.blocks_per_sec()
    );
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let count: u64 = std::env::var("BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 40 } else { 4 });
    let real = support::real_blocks();
    let transactions: Vec<TransactionWithStatusMeta> =
        real.iter().flat_map(|(_, b)| b.transactions.iter().cloned()).collect();
    let blocks: Vec<(u64, ConfirmedBlock)> = (0..count)
        .map(|i| (FIRST + i, support::mainnet_size_block(FIRST + i, &real[0].1, &transactions, TRANSACTIONS_PER_BLOCK)))
        .collect();

    let origin_emulator = BigtableEmulator::start();
    let target_emulator = BigtableEmulator::start();
    let origin = bigtable(&origin_emulator, "origin").await;
    futures::stream::iter(&blocks)
        .map(|(slot, block)| {
            let origin = origin.clone();
            async move { origin.write_block(*slot, block, &[]).await.unwrap() }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let rows = all_rows(&origin, count).await;
    let copied: u64 = rows.iter().map(BlockRows::bytes).sum();
    let per_block: usize = rows.iter().map(|r| r.rows.len()).sum::<usize>() / rows.len();
    println!(
        "replication: {count} mainnet-size blocks ({TRANSACTIONS_PER_BLOCK} real transactions each, derived), \
         {per_block} rows and {:.2} MB per block as stored, concurrency {CONCURRENCY}",
        copied as f64 / 1e6 / count as f64
    );
    let origin_cells = origin.cells().clone();
    let origin_url = "bigtable://bench/origin";

    // Bigtable → Bigtable.
    let read = raw_read(&origin_cells, &rows).await;
    let ceiling_target = bigtable(&target_emulator, "ceiling").await;
    let write = raw_write(ceiling_target.cells(), &rows).await;
    drop(bigtable(&target_emulator, "replica").await);
    let host = target_emulator.host();
    let ours =
        replicate(origin_url, &origin_emulator.host(), "bigtable://bench/replica", Some(&host), count, false).await;
    let verify =
        replicate(origin_url, &origin_emulator.host(), "bigtable://bench/replica", Some(&host), count, true).await;
    report("bigtable → bigtable (two emulators)", &ours, &read, &write, &verify, copied);

    // Bigtable → embedded.
    let dir = tempfile::tempdir().unwrap();
    let ceiling_cells: Arc<dyn CellStore> = Arc::new(EmbeddedCells::open(&dir.path().join("ceiling")).unwrap());
    ceiling_cells.ensure_tables(&tables::ALL).await.unwrap();
    let write = raw_write(&ceiling_cells, &rows).await;
    let target = format!("embedded://{}", dir.path().join("replica").display());
    let ours = replicate(origin_url, &origin_emulator.host(), &target, None, count, false).await;
    let verify = replicate(origin_url, &origin_emulator.host(), &target, None, count, true).await;
    report("bigtable → embedded", &ours, &read, &write, &verify, copied);
}
