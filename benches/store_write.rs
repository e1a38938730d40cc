//! Write throughput of the canonical block store, per backend, next to the
//! ceiling of that backend measured in the same run: the same cells,
//! pre-encoded, written with the same concurrency (so the ratio is what the
//! agave encoding, indexing and compression cost on top of the raw writes).
//!
//! `cargo bench --bench store_write` (set BLOCKS to change the count; 2000 by default).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::store::embedded::EmbeddedCells;
use chronicle::store::ledger::BlockCells;
use chronicle::store::{BlockStore, LedgerStore};
use futures::StreamExt;
use solana_transaction_status::ConfirmedBlock;
use support::BigtableEmulator;

const CONCURRENCY: usize = 8;

struct Run {
    blocks: usize,
    bytes: u64,
    elapsed: Duration,
}

impl Run {
    fn blocks_per_sec(&self) -> f64 {
        self.blocks as f64 / self.elapsed.as_secs_f64()
    }
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Writes `count` blocks (fixtures cycled over consecutive slots) through the ledger.
async fn ledger_run(store: &Arc<LedgerStore>, blocks: &[ConfirmedBlock], first_slot: u64, count: usize) -> Run {
    let start = Instant::now();
    let bytes: u64 = futures::stream::iter(0..count)
        .map(|i| {
            // A task per block, as the ingest worker runs them, so encoding uses every core.
            let store = store.clone();
            let block = blocks[i % blocks.len()].clone();
            async move {
                tokio::spawn(async move { store.write_block(first_slot + i as u64, &block, &[]).await.unwrap().bytes })
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |sum, b| async move { sum + b })
        .await;
    store.sync().await.unwrap();
    Run { blocks: count, bytes, elapsed: start.elapsed() }
}

/// The ceiling: the same kind of cells, encoded before the clock starts,
/// written straight to the engine in the same order (indexes, then blocks).
async fn raw_run(store: &Arc<LedgerStore>, blocks: &[ConfirmedBlock], first_slot: u64, count: usize) -> Run {
    let encoded: Vec<BlockCells> =
        (0..count).map(|i| store.block_cells(first_slot + i as u64, &blocks[i % blocks.len()], &[]).unwrap()).collect();
    let bytes = encoded.iter().map(|c| c.stats().bytes).sum();
    let elapsed = support::raw_write(store, encoded, CONCURRENCY).await;
    Run { blocks: count, bytes, elapsed }
}

fn report(backend: &str, ours: &Run, ceiling: &Run) {
    println!(
        "{backend:<10} chronicle {:>9.1} blocks/s {:>7.2} MB/s | raw ceiling {:>9.1} blocks/s {:>7.2} MB/s | ratio {:.2}",
        ours.blocks_per_sec(),
        ours.mb_per_sec(),
        ceiling.blocks_per_sec(),
        ceiling.mb_per_sec(),
        ours.blocks_per_sec() / ceiling.blocks_per_sec()
    );
}

/// What each table costs for the recorded blocks, Chronicle's owner index
/// (`tx-by-owner`, `tx-by-owner-changed`) next to agave's four tables.
fn table_bytes(store: &LedgerStore, blocks: &[ConfirmedBlock]) {
    let mut by_table: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for (i, block) in blocks.iter().enumerate() {
        let cells = store.block_cells(i as u64 + 1, block, &[]).unwrap();
        for write in cells.indexes.iter().chain(std::iter::once(&cells.block)) {
            let entry = by_table.entry(write.table.to_string()).or_default();
            entry.0 += write.cells.len();
            entry.1 += write.cells.iter().map(|c| (c.key.len() + c.value.len()) as u64).sum::<u64>();
        }
    }
    let total: u64 = by_table.values().map(|(_, bytes)| bytes).sum();
    for (table, (rows, bytes)) in &by_table {
        println!(
            "  table {table:<20} {rows:>6} rows {bytes:>10} bytes ({:.2}% of the cells)",
            100.0 * *bytes as f64 / total as f64
        );
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a
    // quick smoke test instead.
    let full = std::env::args().any(|a| a == "--bench");
    let default = if full { 2000 } else { 16 };
    let count: usize = std::env::var("BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let blocks: Vec<ConfirmedBlock> = support::real_blocks().into_iter().map(|(_, b)| b).collect();
    let txs: usize = blocks.iter().map(|b| b.transactions.len()).sum();
    println!(
        "store_write: {count} blocks per run, cycling {} real blocks ({txs} transactions), concurrency {CONCURRENCY}",
        blocks.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(dir.path()).unwrap())));
    table_bytes(&embedded, &blocks);
    let ceiling = raw_run(&embedded, &blocks, 1_000_000, count).await;
    let ours = ledger_run(&embedded, &blocks, 2_000_000, count).await;
    report("embedded", &ours, &ceiling);

    let emulator = BigtableEmulator::start();
    let bigtable = support::bigtable_ledger(&emulator, "bench", "bench").await;
    let count = count / 4; // the in-memory emulator is the slow part; keep the run short
    let ceiling = raw_run(&bigtable, &blocks, 1_000_000, count).await;
    let ours = ledger_run(&bigtable, &blocks, 2_000_000, count).await;
    report("bigtable", &ours, &ceiling);
}
