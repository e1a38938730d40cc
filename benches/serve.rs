//! Read latency and throughput of `chronicle serve`, measured in one run
//! against two references on the same machine and data:
//!
//! 1. agave's own read path — `solana-storage-bigtable`'s `LedgerStorage`, the
//!    library an agave RPC node calls — on the same Bigtable emulator, p50/p99
//!    per method, next to `chronicle serve` over HTTP (no cache);
//! 2. a loopback load generator on `chronicle serve`, cold (store) and warm
//!    (Redis cache), next to Redis's own GET ceiling.
//!
//! `cargo bench --bench serve` (ROUNDS sets the samples per method; 200 by default).

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::serve::cache::CacheConfig;
use chronicle::serve::{ServeConfig, router};
use chronicle::store::BlockStore;
use futures::StreamExt;
use serde_json::{Value, json};
use solana_pubkey::Pubkey;
use solana_signature::Signature;
use solana_storage_bigtable::LedgerStorage;
use support::{BigtableEmulator, Redis};

/// p50 and p99 of samples, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.50), at(0.99))
}

async fn timed<F, Fut>(rounds: usize, mut call: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let start = Instant::now();
        call(i).await;
        samples.push(start.elapsed());
    }
    samples
}

async fn rpc(client: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let answer: Value = client.post(url).json(&body).send().await.unwrap().json().await.unwrap();
    assert!(answer.get("result").is_some(), "{method}: {answer}");
    answer
}

async fn start_serve(store: Arc<dyn BlockStore>, config: ServeConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(store, config).unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });
    format!("http://{addr}")
}

fn line(method: &str, agave: (f64, f64), ours: (f64, f64)) {
    println!(
        "{method:<36} agave LedgerStorage p50 {:>7.3} ms p99 {:>7.3} ms | chronicle serve p50 {:>7.3} ms p99 {:>7.3} ms | p50 speed-up {:.2}x",
        agave.0,
        agave.1,
        ours.0,
        ours.1,
        agave.0 / ours.0
    );
}

struct Load {
    requests: usize,
    elapsed: Duration,
    p50: f64,
    p99: f64,
}

/// `concurrency` clients each sending requests back to back for `total` requests.
async fn load<F, Fut>(total: usize, concurrency: usize, call: F) -> Load
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    let samples: Vec<Duration> = futures::stream::iter(0..total)
        .map(|i| {
            let fut = call(i);
            async move {
                let t = Instant::now();
                fut.await;
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let (p50, p99) = percentiles(samples);
    Load { requests: total, elapsed, p50, p99 }
}

impl Load {
    fn line(&self, what: &str) -> String {
        format!(
            "{what:<44} {:>9.0} req/s p50 {:>7.3} ms p99 {:>7.3} ms",
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.p50,
            self.p99
        )
    }
}

fn main() {
    let emulator = BigtableEmulator::start();
    let redis = Redis::start();
    tokio::runtime::Runtime::new().unwrap().block_on(run(&emulator, &redis));
}

async fn run(emulator: &BigtableEmulator, redis: &Redis) {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 200 } else { 5 });
    let store = support::bigtable_ledger(emulator, "emulator", "solana-ledger").await;
    let blocks = support::real_blocks();
    for (slot, block) in &blocks {
        store.write_block(*slot, block, &[]).await.unwrap();
    }
    let agave =
        LedgerStorage::new_for_emulator("solana-ledger", "default", &emulator.host(), Some(Duration::from_secs(30)))
            .unwrap();
    let url = start_serve(store.clone(), ServeConfig::default()).await;
    let client = reqwest::Client::new();

    let signatures: Vec<(u64, Signature)> = blocks
        .iter()
        .flat_map(|(slot, b)| b.transactions.iter().map(move |t| (*slot, *t.transaction_signature())))
        .collect();
    let (busy_slot, busy) = &blocks[0];
    let address: Pubkey = store
        .indexed_addresses(busy)
        .into_iter()
        .max_by_key(|a| busy.transactions.iter().filter(|t| t.account_keys().iter().any(|k| k == a)).count())
        .unwrap();
    let hundred: Vec<Signature> = signatures.iter().take(100).map(|(_, s)| *s).collect();
    let hundred_text: Vec<String> = hundred.iter().map(ToString::to_string).collect();
    println!(
        "serve: {} real blocks ({} transactions) in the Bigtable emulator, {rounds} samples per method",
        blocks.len(),
        signatures.len()
    );
    println!("-- agave's read path and chronicle serve (HTTP, no cache) on the same emulator --");

    let pick = |i: usize| signatures[i % signatures.len()].1;
    let agave_tx = timed(rounds, |i| {
        let agave = &agave;
        async move {
            agave.get_confirmed_transaction(&pick(i)).await.unwrap().unwrap();
        }
    })
    .await;
    let ours_tx = timed(rounds, |i| {
        let (client, url) = (&client, &url);
        async move {
            rpc(client, url, "getTransaction", json!([pick(i).to_string(), {"maxSupportedTransactionVersion": 0}]))
                .await;
        }
    })
    .await;
    line("getTransaction", percentiles(agave_tx), percentiles(ours_tx));

    let agave_sigs = timed(rounds, |_| {
        let agave = &agave;
        async move {
            agave.get_confirmed_signatures_for_address(&address, None, None, 1000).await.unwrap();
        }
    })
    .await;
    let ours_sigs = timed(rounds, |_| {
        let (client, url) = (&client, &url);
        async move {
            rpc(client, url, "getSignaturesForAddress", json!([address.to_string()])).await;
        }
    })
    .await;
    line("getSignaturesForAddress", percentiles(agave_sigs), percentiles(ours_sigs));

    // agave reads statuses one row at a time; chronicle in one multi-row read.
    let agave_statuses = timed(rounds, |_| {
        let (agave, hundred) = (&agave, &hundred);
        async move {
            for signature in hundred {
                agave.get_signature_status(signature).await.unwrap();
            }
        }
    })
    .await;
    let ours_statuses = timed(rounds, |_| {
        let (client, url, hundred_text) = (&client, &url, &hundred_text);
        async move {
            rpc(client, url, "getSignatureStatuses", json!([hundred_text, {"searchTransactionHistory": true}])).await;
        }
    })
    .await;
    line(
        &format!("getSignatureStatuses ({} signatures)", hundred.len()),
        percentiles(agave_statuses),
        percentiles(ours_statuses),
    );

    let agave_block = timed(rounds, |_| {
        let agave = &agave;
        async move {
            agave.get_confirmed_block(*busy_slot).await.unwrap();
        }
    })
    .await;
    let ours_block = timed(rounds, |_| {
        let (client, url) = (&client, &url);
        async move {
            rpc(
                client,
                url,
                "getBlock",
                json!([*busy_slot, {"encoding": "base64", "maxSupportedTransactionVersion": 0}]),
            )
            .await;
        }
    })
    .await;
    line("getBlock (89 transactions)", percentiles(agave_block), percentiles(ours_block));

    println!("-- loopback load, 16 clients: cold (store) vs warm (Redis cache) vs Redis GET --");
    let total = rounds * 10;
    let cached_url = start_serve(
        store.clone(),
        ServeConfig {
            cache: Some(CacheConfig {
                url: chronicle::pipeline::config::Secret::new(redis.url()),
                ttl: Duration::from_secs(600),
                immutable_ttl: Duration::from_secs(3600),
                timeout: Duration::from_millis(250),
                max_memory: None,
                eviction: None,
                methods: Vec::new(),
                pool_size: 1,
            }),
            ..ServeConfig::default()
        },
    )
    .await;
    let calls: Vec<(&str, Value)> = vec![
        ("getTransaction", json!([pick(0).to_string(), {"maxSupportedTransactionVersion": 0}])),
        ("getBlock", json!([*busy_slot, {"encoding": "base64", "maxSupportedTransactionVersion": 0}])),
        ("getSignaturesForAddress", json!([address.to_string()])),
    ];
    for (method, params) in &calls {
        let cold = load(total, 16, |_| {
            let (client, url, params) = (&client, &url, params.clone());
            async move {
                rpc(client, url, method, params).await;
            }
        })
        .await;
        rpc(&client, &cached_url, method, params.clone()).await; // warm it
        let warm = load(total, 16, |_| {
            let (client, url, params) = (&client, &cached_url, params.clone());
            async move {
                rpc(client, url, method, params).await;
            }
        })
        .await;
        println!("{}", cold.line(&format!("{method} cold")));
        println!("{}", warm.line(&format!("{method} warm")));
    }
    let redis_client = redis::Client::open(redis.url()).unwrap();
    let connection = redis_client.get_multiplexed_async_connection().await.unwrap();
    let _: () =
        redis::cmd("SET").arg("bench:key").arg("x".repeat(4096)).query_async(&mut connection.clone()).await.unwrap();
    let ceiling = load(total * 4, 16, |_| {
        let mut connection = connection.clone();
        async move {
            let _: Vec<u8> = redis::cmd("GET").arg("bench:key").query_async(&mut connection).await.unwrap();
        }
    })
    .await;
    println!("{}", ceiling.line("Redis GET 4 KiB (ceiling of a warm hit)"));
}
