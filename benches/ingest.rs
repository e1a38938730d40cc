//! Ingest rate from the loopback Solana peer into each backend, next to two
//! ceilings measured in the same run: how fast the peer serves the same
//! `getBlock` requests to a client that does nothing with them, and how fast
//! the store takes the same blocks' cells pre-encoded.
//!
//! `cargo bench --bench ingest` (BLOCKS sets the count; 600 by default). The
//! peer replays the real fixture blocks at consecutive slots.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::crd::chain_source::{ChainFamily, Commitment};
use chronicle::pipeline::config::{RpcEndpoint, SourceConfig};
use chronicle::store::LedgerStore;
use chronicle::store::ledger::BlockCells;
use chronicle::worker::ingest::{self, IngestConfig};
use futures::StreamExt;
use solana_transaction_status::ConfirmedBlock;
use support::BigtableEmulator;
use support::rpc_peer::RpcPeer;
use tokio_util::sync::CancellationToken;

const CONCURRENCY: usize = 16;

struct Rate {
    blocks: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Rate {
    fn blocks_per_sec(&self) -> f64 {
        self.blocks as f64 / self.elapsed.as_secs_f64()
    }
    fn line(&self) -> String {
        format!(
            "{:>8.1} blocks/s {:>7.2} MB/s",
            self.blocks_per_sec(),
            self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
        )
    }
}

/// The peer's serving rate: the same base64 `getBlock` requests, bodies read and dropped.
async fn peer_ceiling(peer: &RpcPeer, slots: &[u64]) -> Rate {
    let client = reqwest::Client::new();
    let url = peer.url();
    let start = Instant::now();
    let bytes: u64 = futures::stream::iter(slots.iter().copied())
        .map(|slot| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "getBlock", "params": [slot,
                    {"encoding": "base64", "transactionDetails": "full", "rewards": true, "maxSupportedTransactionVersion": 0, "commitment": "finalized"}]});
                client.post(&url).json(&body).send().await.unwrap().bytes().await.unwrap().len() as u64
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    Rate { blocks: slots.len() as u64, bytes, elapsed: start.elapsed() }
}

/// The store's ceiling: the blocks' cells encoded before the clock starts.
async fn store_ceiling(store: &Arc<LedgerStore>, blocks: &BTreeMap<u64, ConfirmedBlock>) -> Rate {
    let encoded: Vec<BlockCells> =
        blocks.iter().map(|(slot, block)| store.block_cells(slot + 10_000_000, block, &[]).unwrap()).collect();
    let bytes = encoded.iter().map(|c| c.stats().bytes).sum();
    let elapsed = support::raw_write(store, encoded, CONCURRENCY).await;
    Rate { blocks: blocks.len() as u64, bytes, elapsed }
}

async fn ingest_rate(peer: &RpcPeer, store: &str, catalog: &str, first: u64, count: u64) -> Rate {
    let config = IngestConfig {
        job: format!("bench-{first}-{store}"),
        chain: ChainFamily::Solana,
        store: store.into(),
        store_access: chronicle::store::BigtableAccess::from_env(),
        catalog: chronicle::pipeline::config::Secret::new(catalog),
        source: SourceConfig::Rpc(RpcEndpoint { attempts: 3, ..RpcEndpoint::new(peer.url(), Commitment::Finalized) }),
        from: Some(first),
        to: Some(first + count - 1),
        follow: false,
        shard: 0,
        shards: 1,
        batch_size: 100,
        concurrency: CONCURRENCY,
        poll_interval: Duration::from_millis(400),
        catalog_patience: Duration::from_secs(60),
        targets: vec![chronicle::crd::ingest_job::IngestTarget::Canonical],
        lake: None,
        caches: Vec::new(),
        chain_metrics: None,
    };
    let start = Instant::now();
    let summary = ingest::run(config, CancellationToken::new()).await.unwrap();
    assert_eq!(summary.written, count);
    Rate { blocks: summary.written, bytes: summary.bytes, elapsed: start.elapsed() }
}

fn report(backend: &str, ours: &Rate, peer: &Rate, store: &Rate) {
    println!("{backend:<10} ingest {}", ours.line());
    println!(
        "{:<10} peer serving ceiling {}  -> ratio {:.2}",
        "",
        peer.line(),
        ours.blocks_per_sec() / peer.blocks_per_sec()
    );
    println!(
        "{:<10} store write ceiling  {}  -> ratio {:.2}",
        "",
        store.line(),
        ours.blocks_per_sec() / store.blocks_per_sec()
    );
}

fn main() {
    // The emulator's address goes into the environment before any other thread exists.
    let emulator = BigtableEmulator::start();
    // SAFETY: single-threaded here; the runtime starts below.
    unsafe { std::env::set_var("BIGTABLE_EMULATOR_HOST", emulator.host()) };
    tokio::runtime::Runtime::new().unwrap().block_on(run());
    drop(emulator);
}

async fn run() {
    let full = std::env::args().any(|a| a == "--bench");
    let count: u64 = std::env::var("BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 600 } else { 12 });
    let first = 1_000_000u64;
    let blocks = support::replayed(first, count);
    let peer = RpcPeer::start(blocks.clone()).await;
    let slots: Vec<u64> = blocks.keys().copied().collect();
    println!("ingest: {count} blocks (4 real blocks replayed), concurrency {CONCURRENCY}, batch 100");
    let dir = tempfile::tempdir().unwrap();

    let store_url = format!("embedded://{}", dir.path().join("ledger").display());
    let catalog_url = format!("embedded://{}", dir.path().join("catalog").display());
    let peer_rate = peer_ceiling(&peer, &slots).await;
    let ours = ingest_rate(&peer, &store_url, &catalog_url, first, count).await;
    let store = chronicle::store::open(&store_url).await.unwrap();
    let store_rate = store_ceiling(&store, &blocks).await;
    drop(store);
    report("embedded", &ours, &peer_rate, &store_rate);

    let bigtable_url = "bigtable://bench/ingest";
    let ours = ingest_rate(&peer, bigtable_url, &catalog_url, first, count).await;
    let store = chronicle::store::open(bigtable_url).await.unwrap();
    let store_rate = store_ceiling(&store, &blocks).await;
    let peer_rate = peer_ceiling(&peer, &slots).await;
    report("bigtable", &ours, &peer_rate, &store_rate);
}
