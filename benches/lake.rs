//! Blocks into the lake, per core: Chronicle's lake sink (derive each
//! block's rows with agave's jsonParsed encoder, then encode and put one
//! Parquet object per table) next to two ceilings measured in the same
//! run on the same blocks: deriving the rows alone, and writing the
//! already-derived rows as Parquet alone. Also the object size under each
//! compression, for the choice in `docs/lake.md`.
//!
//! `cargo bench --bench lake` (BLOCKS sets the count; 400 by default). The
//! real fixture blocks are replayed at consecutive slots; one thread.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::chain::solana::rows::{Rows, SolanaTables, block_rows};
use chronicle::lake::{Lake, parquet_bytes, record_batch};
use chronicle::pipeline::BlockSink;
use chronicle::pipeline::sinks::lake::LakeSink;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

fn line(what: &str, blocks: usize, rows: usize, bytes: usize, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    println!(
        "{what:<34} {:>8.1} blocks/s {:>10.0} rows/s {:>7.2} MB/s",
        blocks as f64 / seconds,
        rows as f64 / seconds,
        bytes as f64 / 1e6 / seconds
    );
    blocks as f64 / seconds
}

/// All tables' Parquet bytes of `rows` under `compression`.
fn encoded_size(rows: &Rows, compression: Compression) -> usize {
    let batches = [
        record_batch(&rows.blocks).unwrap(),
        record_batch(&rows.block_rewards).unwrap(),
        record_batch(&rows.transactions).unwrap(),
        record_batch(&rows.instructions).unwrap(),
        record_batch(&rows.token_transfers).unwrap(),
    ];
    batches
        .iter()
        .map(|batch| {
            let properties = WriterProperties::builder().set_compression(compression).build();
            let mut bytes = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
            writer.write(batch).unwrap();
            writer.close().unwrap();
            bytes.len()
        })
        .sum()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let count: u64 = std::env::var("BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 400 } else { 8 });
    let blocks = support::replayed(1_000_000, count);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!("lake: {count} blocks (4 real blocks replayed), one thread, batches of 100 blocks");

    // Ceiling 1: deriving the rows alone.
    let started = Instant::now();
    let mut derived = Rows::default();
    for (slot, block) in &blocks {
        derived.extend(block_rows(*slot, block).unwrap());
    }
    let derive = started.elapsed();
    let rows = derived.count();

    // Ceiling 2: the derived rows as Parquet, in memory.
    let started = Instant::now();
    let mut bytes = 0;
    for batch in [
        record_batch(&derived.blocks).unwrap(),
        record_batch(&derived.block_rewards).unwrap(),
        record_batch(&derived.transactions).unwrap(),
        record_batch(&derived.instructions).unwrap(),
        record_batch(&derived.token_transfers).unwrap(),
    ] {
        bytes += parquet_bytes(&batch).unwrap().len();
    }
    let encode = started.elapsed();

    // Ours: the lake sink, as an ingest runs it (write each block, flush each batch of 100).
    let dir = tempfile::tempdir().unwrap();
    let lake = Arc::new(Lake::open(&format!("file://{}", dir.path().display()), "solana", "bench").unwrap());
    let sink = LakeSink::new(lake, SolanaTables);
    let blocks: Vec<(u64, chronicle::chain::solana::SolanaBlock)> =
        blocks.iter().map(|(slot, block)| (*slot, block.clone().into())).collect();
    let started = Instant::now();
    let mut written = 0;
    runtime.block_on(async {
        for (i, (slot, block)) in blocks.iter().enumerate() {
            sink.write(*slot, block).await.unwrap();
            if i % 100 == 99 || i + 1 == blocks.len() {
                written += sink.flush().await.unwrap().partitions.iter().map(|p| p.bytes).sum::<u64>() as usize;
            }
        }
    });
    let ours = started.elapsed();

    let ours_rate = line("chronicle lake sink", blocks.len(), rows, written, ours);
    let derive_rate = line("ceiling: derive rows only", blocks.len(), rows, 0, derive);
    let encode_rate = line("ceiling: Parquet encode only", blocks.len(), rows, bytes, encode);
    // Doing both in sequence cannot beat the sum of their times.
    let both = 1.0 / (1.0 / derive_rate + 1.0 / encode_rate);
    println!("{:<34} {:>8.1} blocks/s -> ratio {:.2}", "ceiling: derive + encode", both, ours_rate / both);

    let none = encoded_size(&derived, Compression::UNCOMPRESSED);
    for (name, compression) in [
        ("uncompressed", Compression::UNCOMPRESSED),
        ("snappy", Compression::SNAPPY),
        ("zstd(1)", Compression::ZSTD(ZstdLevel::try_new(1).unwrap())),
        ("zstd(3) [chosen]", Compression::ZSTD(ZstdLevel::try_new(3).unwrap())),
        ("zstd(9)", Compression::ZSTD(ZstdLevel::try_new(9).unwrap())),
    ] {
        let started = Instant::now();
        let size = encoded_size(&derived, compression);
        println!(
            "compression {name:<18} {:>10} bytes ({:.2} of uncompressed), {:.0} ms",
            size,
            size as f64 / none as f64,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
}
