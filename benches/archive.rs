//! Epoch archive (Old Faithful CAR) ingestion, per core and wall (the worker
//! assembles blocks on every core; the reader itself is one stream), next to the
//! ceilings measured in the same run: the raw CAR scan (read every section
//! and check its CID, nothing decoded), the archive decode alone (scan +
//! DAG-CBOR + frames + zstd metadata + block assembly), and each store's raw
//! write ceiling (the same blocks' cells, encoded before the clock starts,
//! written straight to the engine).
//!
//! Blocks are mainnet-size, DERIVED from real ones: each holds 1,000 of the
//! recorded mainnet transactions (cycled, each copy's first signature made
//! unique), chained slot to slot from slot 0; the archive is written by
//! Chronicle's own writer from them.
//!
//! `cargo bench --bench archive` (BLOCKS sets the count; 200 by default).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::chain::solana::archive::car::CarReader;
use chronicle::chain::solana::archive::reader::{BlockReader, Next};
use chronicle::chain::solana::archive::{ArchiveRange, write_archive};
use chronicle::crd::chain_source::ChainFamily;
use chronicle::crd::ingest_job::IngestTarget;
use chronicle::pipeline::config::{ArchiveLocation, SourceConfig};
use chronicle::store::{BigtableAccess, BlockStore, LedgerStore};
use chronicle::worker::ingest::IngestConfig;
use solana_transaction_status::{ConfirmedBlock, TransactionWithStatusMeta};
use support::BigtableEmulator;

const TRANSACTIONS_PER_BLOCK: usize = 1_000;
const EPOCH: u64 = 432_000;

/// A mainnet-size block whose blockhash is its own (a chain needs distinct ones).
fn mainnet_size_block(slot: u64, template: &ConfirmedBlock, real: &[TransactionWithStatusMeta]) -> ConfirmedBlock {
    use sha2::Digest;
    let blockhash = solana_hash::Hash::new_from_array(sha2::Sha256::digest(slot.to_le_bytes()).into());
    let block = support::mainnet_size_block(slot, template, real, TRANSACTIONS_PER_BLOCK);
    ConfirmedBlock { blockhash: blockhash.to_string(), ..block }
}

/// CPU seconds this process has used (user + system, every thread).
fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

struct Figure {
    blocks: u64,
    bytes: u64,
    elapsed: Duration,
    cpu: f64,
}

impl Figure {
    async fn measure<F: std::future::Future<Output = (u64, u64)>>(run: F) -> Figure {
        let (cpu, start) = (cpu_seconds(), Instant::now());
        let (blocks, bytes) = run.await;
        Figure { blocks, bytes, elapsed: start.elapsed(), cpu: cpu_seconds() - cpu }
    }
    fn per_core(&self) -> f64 {
        self.blocks as f64 / self.cpu.max(1e-9)
    }
    fn line(&self, what: &str) -> String {
        let wall = self.blocks as f64 / self.elapsed.as_secs_f64();
        format!(
            "{what:<36} {wall:>8.1} blocks/s {:>9.0} tx/s wall | {:>8.1} blocks/s {:>9.0} tx/s per core | {:>7.1} MB/s",
            wall * TRANSACTIONS_PER_BLOCK as f64,
            self.per_core(),
            self.per_core() * TRANSACTIONS_PER_BLOCK as f64,
            self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
        )
    }
}

async fn scan(path: &Path) -> (u64, u64) {
    let file = tokio::fs::File::open(path).await.unwrap();
    let mut car = CarReader::open(CarReader::buffered(file)).await.unwrap();
    let mut blocks = 0;
    while let Some(section) = car.next(true).await.unwrap() {
        blocks += u64::from(section.node.get(1) == Some(&2));
    }
    (blocks, car.position())
}

async fn decode(path: &Path) -> (u64, u64) {
    let file = tokio::fs::File::open(path).await.unwrap();
    let mut reader = BlockReader::open(CarReader::buffered(file), "bench".into(), EPOCH).await.unwrap();
    let mut blocks = 0;
    while let Next::Block(read) = reader.next(0).await.unwrap() {
        assert_eq!(read.block.unwrap().assemble().unwrap().transactions.len(), TRANSACTIONS_PER_BLOCK);
        blocks += 1;
    }
    (blocks, std::fs::metadata(path).unwrap().len())
}

async fn ingest(archives: &Path, store: &str, emulator: Option<&str>, count: u64) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = IngestConfig {
        job: "bench".into(),
        chain: ChainFamily::Solana,
        store: store.into(),
        store_access: BigtableAccess { emulator_host: emulator.map(String::from), credentials_file: None },
        catalog: chronicle::pipeline::config::Secret::new(format!("embedded://{}", dir.path().display())),
        source: SourceConfig::Archive(ArchiveLocation {
            url: format!("file://{}/epoch-{{epoch}}.car", archives.display()),
            epoch_slots: EPOCH,
        }),
        from: Some(0),
        to: Some(count - 1),
        follow: false,
        shard: 0,
        shards: 1,
        batch_size: 50,
        concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 16),
        poll_interval: Duration::from_secs(1),
        catalog_patience: Duration::from_secs(10),
        targets: vec![IngestTarget::Canonical],
        lake: None,
        caches: Vec::new(),
        chain_metrics: None,
    };
    let summary = chronicle::worker::ingest::run(config, Default::default()).await.unwrap();
    assert_eq!(summary.written, count, "every block stored");
    (count, summary.bytes)
}

/// The ceiling: the same blocks' cells, encoded before the clock, written straight.
async fn raw_write(store: &Arc<LedgerStore>, blocks: &[(u64, ConfirmedBlock)]) -> Figure {
    let encoded: Vec<_> = blocks.iter().map(|(slot, block)| store.block_cells(*slot, block, &[]).unwrap()).collect();
    let bytes = encoded.iter().map(|c| c.stats().bytes).sum();
    let store = store.clone();
    Figure::measure(async move {
        support::raw_write(&store, encoded, 16).await;
        (blocks.len() as u64, bytes)
    })
    .await
}

fn report(store: &str, ours: &Figure, scan: &Figure, decode: &Figure, write: &Figure) {
    println!("{store}");
    println!("  {}", write.line("raw write ceiling (store)"));
    println!(
        "  {} | per core {:.2} of the decode alone, {:.2} of the raw scan; wall {:.2} of the store's raw write",
        ours.line("archive → store (ingest worker)"),
        ours.per_core() / decode.per_core(),
        ours.per_core() / scan.per_core(),
        (ours.blocks as f64 / ours.elapsed.as_secs_f64()) / (write.blocks as f64 / write.elapsed.as_secs_f64())
    );
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let count: u64 = std::env::var("BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 200 } else { 4 });
    let real = support::real_blocks();
    let transactions: Vec<TransactionWithStatusMeta> =
        real.iter().flat_map(|(_, b)| b.transactions.iter().cloned()).collect();
    let mut blocks: Vec<(u64, ConfirmedBlock)> =
        (0..count).map(|slot| (slot, mainnet_size_block(slot, &real[0].1, &transactions))).collect();
    for i in 0..blocks.len() {
        let previous = if i == 0 { blocks[0].1.blockhash.clone() } else { blocks[i - 1].1.blockhash.clone() };
        blocks[i].1.previous_blockhash = previous;
    }

    // The archive, written by Chronicle's writer from an embedded store (outside the clock).
    let dir = tempfile::tempdir().unwrap();
    let origin = chronicle::store::open(&format!("embedded://{}", dir.path().join("origin").display())).await.unwrap();
    for (slot, block) in &blocks {
        origin.write_block(*slot, block, &[]).await.unwrap();
    }
    origin.sync().await.unwrap();
    let archives = dir.path().join("archives");
    std::fs::create_dir_all(&archives).unwrap();
    let path = archives.join("epoch-0.car");
    let range = ArchiveRange { first: 0, last: EPOCH - 1, epoch: Some(0), limits: Default::default() };
    let written = write_archive(&origin, &range, &path).await.unwrap();
    drop(origin);
    println!(
        "archive: {count} mainnet-size blocks ({TRANSACTIONS_PER_BLOCK} real transactions each, derived), \
         {:.2} MB per block in the CAR, {} cores",
        written.bytes as f64 / 1e6 / count as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let scan = Figure::measure(scan(&path)).await;
    let decode = Figure::measure(decode(&path)).await;
    println!("  {}", scan.line("raw CAR scan (read + CID check)"));
    println!(
        "  {} | per core {:.2} of the raw scan",
        decode.line("archive decode alone"),
        decode.per_core() / scan.per_core()
    );

    // Into the embedded store.
    let ceiling =
        chronicle::store::open(&format!("embedded://{}", dir.path().join("ceiling").display())).await.unwrap();
    let write = raw_write(&ceiling, &blocks).await;
    drop(ceiling);
    let target = format!("embedded://{}", dir.path().join("copy").display());
    let ours = Figure::measure(ingest(&archives, &target, None, count)).await;
    report("embedded store", &ours, &scan, &decode, &write);

    // Into Bigtable (the emulator, on loopback).
    let emulator = BigtableEmulator::start();
    let ceiling = support::bigtable_ledger(&emulator, "bench", "ceiling").await;
    let write = raw_write(&ceiling, &blocks).await;
    drop(support::bigtable_ledger(&emulator, "bench", "copy").await);
    let ours = Figure::measure(ingest(&archives, "bigtable://bench/copy", Some(&emulator.host()), count)).await;
    report("bigtable (emulator, loopback)", &ours, &scan, &decode, &write);
}
