//! `chronicle serve` over real blocks, asked by the production
//! `solana-rpc-client`: every history method and encoding compared with the
//! recorded node responses, agave's error codes, the Redis cache tier (hits,
//! invalidation on ingest across two replicas, Redis going away), and a
//! property test of the request parser.

mod support;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chronicle::chain::solana::response::read_block_file;
use chronicle::serve::cache::{CacheConfig, Invalidator};
use chronicle::serve::{ServeConfig, router};
use chronicle::store::embedded::EmbeddedCells;
use chronicle::store::{BlockStore, LedgerStore};
use serde_json::{Value, json};
use solana_commitment_config::CommitmentConfig;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config;
use solana_rpc_client_api::config::{RpcBlockConfig, RpcTransactionConfig};
use solana_signature::Signature;
use solana_transaction_status::{ConfirmedBlock, TransactionDetails, UiTransactionEncoding};
use support::{Redis, assert_json_covers, data_file};
use tokio_util::sync::CancellationToken;

const V0: (&str, u64) = ("solana/block_154808473_v0_json.json", 154_808_473);
const LEGACY: (&str, u64) = ("solana/block_100000000_json.json", 100_000_000);

fn source(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(data_file(name)).unwrap()).unwrap()
}

fn block((name, slot): (&str, u64)) -> ConfirmedBlock {
    read_block_file(&data_file(name), Some(slot)).unwrap().1
}

/// A store holding the two JSON fixture blocks.
async fn fixture_store(dir: &std::path::Path) -> Arc<LedgerStore> {
    let store = Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(&dir.join("ledger")).unwrap())));
    for fixture in [V0, LEGACY] {
        store.write_block(fixture.1, &block(fixture), &[]).await.unwrap();
    }
    store
}

/// Starts a serve replica on a free port.
async fn serve(store: Arc<dyn BlockStore>, config: ServeConfig) -> (SocketAddr, CancellationToken) {
    support::serve_on_free_port(store, config).await
}

async fn post(addr: SocketAddr, body: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

fn block_config(encoding: UiTransactionEncoding, details: TransactionDetails, rewards: bool) -> RpcBlockConfig {
    RpcBlockConfig {
        encoding: Some(encoding),
        transaction_details: Some(details),
        rewards: Some(rewards),
        commitment: Some(CommitmentConfig::finalized()),
        max_supported_transaction_version: Some(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_client_gets_what_a_node_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    let (addr, _stop) = serve(store, ServeConfig::default()).await;
    let client = RpcClient::new(format!("http://{addr}"));

    // getBlock, json: equal to the recorded response (the v0 one was fetched without rewards).
    for (fixture, rewards) in [(V0, false), (LEGACY, true)] {
        let recorded = source(fixture.0);
        let block = client
            .get_block_with_config(
                fixture.1,
                block_config(UiTransactionEncoding::Json, TransactionDetails::Full, rewards),
            )
            .await
            .unwrap();
        let mut ours = serde_json::to_value(&block).unwrap();
        if recorded["transactions"][0].get("version").is_none() {
            // The legacy recording predates `version`; a node adds it when the client sets maxSupportedTransactionVersion.
            ours["transactions"].as_array_mut().unwrap().iter_mut().for_each(|t| {
                t.as_object_mut().unwrap().remove("version");
            });
        }
        assert_json_covers(&recorded, &ours, &format!("getBlock json {}", fixture.1));
    }

    // jsonParsed: equal to the node's own jsonParsed recording of slot 100000000.
    let parsed = client
        .get_block_with_config(
            LEGACY.1,
            block_config(UiTransactionEncoding::JsonParsed, TransactionDetails::Full, true),
        )
        .await
        .unwrap();
    assert_json_covers(
        &source("solana/block_100000000_jsonParsed.json"),
        &serde_json::to_value(&parsed).unwrap(),
        "getBlock jsonParsed",
    );

    // getTransaction jsonParsed: each transaction equal to its place in that recording.
    let recorded = source("solana/block_100000000_jsonParsed.json");
    for (index, expected) in recorded["transactions"].as_array().unwrap().iter().enumerate() {
        let signature = Signature::from_str(expected["transaction"]["signatures"][0].as_str().unwrap()).unwrap();
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::JsonParsed),
            commitment: None,
            max_supported_transaction_version: Some(0),
        };
        let tx = client.get_transaction_with_config(&signature, config).await.unwrap();
        let ours = serde_json::to_value(&tx.transaction).unwrap();
        let mut expected = expected.clone();
        expected.as_object_mut().unwrap().remove("version"); // the recording predates `version`
        let mut ours = ours;
        ours.as_object_mut().unwrap().remove("version");
        assert_json_covers(&expected, &ours, &format!("getTransaction jsonParsed #{index}"));
    }

    // base64 / base58 carry the same transactions as the json recording.
    let json_block = block(LEGACY);
    for encoding in [UiTransactionEncoding::Base64, UiTransactionEncoding::Base58] {
        let encoded = client
            .get_block_with_config(LEGACY.1, block_config(encoding, TransactionDetails::Full, true))
            .await
            .unwrap();
        let decoded: Vec<_> = encoded.transactions.unwrap().iter().map(|t| t.transaction.decode().unwrap()).collect();
        let expected: Vec<_> = json_block.transactions.iter().map(|t| t.get_transaction()).collect();
        assert_eq!(decoded, expected, "{encoding:?}");
    }

    // transactionDetails signatures / accounts / none, rewards off.
    let recorded = source(LEGACY.0);
    let signatures: Vec<Value> = recorded["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transaction"]["signatures"][0].clone())
        .collect();
    let sigs = client
        .get_block_with_config(
            LEGACY.1,
            block_config(UiTransactionEncoding::Json, TransactionDetails::Signatures, true),
        )
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(sigs.signatures.unwrap()).unwrap(), Value::Array(signatures.clone()));
    let accounts = client
        .get_block_with_config(LEGACY.1, block_config(UiTransactionEncoding::Json, TransactionDetails::Accounts, false))
        .await
        .unwrap();
    let first = serde_json::to_value(&accounts.transactions.unwrap()[0]).unwrap();
    assert_eq!(first["transaction"]["signatures"][0], signatures[0]);
    assert_eq!(
        first["transaction"]["accountKeys"].as_array().unwrap().len(),
        recorded["transactions"][0]["transaction"]["message"]["accountKeys"].as_array().unwrap().len()
    );
    assert!(accounts.rewards.is_none());
    let none = client
        .get_block_with_config(LEGACY.1, block_config(UiTransactionEncoding::Json, TransactionDetails::None, true))
        .await
        .unwrap();
    assert!(none.transactions.is_none() && none.signatures.is_none());
    assert_eq!(none.blockhash, recorded["blockhash"].as_str().unwrap());

    // getTransaction, every encoding.
    for (i, tx) in recorded["transactions"].as_array().unwrap().iter().enumerate() {
        let signature = Signature::from_str(tx["transaction"]["signatures"][0].as_str().unwrap()).unwrap();
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::Json),
            commitment: None,
            max_supported_transaction_version: Some(0),
        };
        let got = client.get_transaction_with_config(&signature, config).await.unwrap();
        let ours = serde_json::to_value(&got).unwrap();
        assert_eq!(ours["slot"], json!(LEGACY.1));
        assert_json_covers(&tx["transaction"], &ours["transaction"], &format!("getTransaction {i}"));
        assert_json_covers(&tx["meta"], &ours["meta"], &format!("getTransaction {i} meta"));
        for encoding in
            [UiTransactionEncoding::Base64, UiTransactionEncoding::Base58, UiTransactionEncoding::JsonParsed]
        {
            let config = RpcTransactionConfig {
                encoding: Some(encoding),
                commitment: None,
                max_supported_transaction_version: Some(0),
            };
            let got = client.get_transaction_with_config(&signature, config).await.unwrap();
            assert_eq!(got.slot, LEGACY.1);
            if encoding != UiTransactionEncoding::JsonParsed {
                assert_eq!(got.transaction.transaction.decode().unwrap(), json_block.transactions[i].get_transaction());
            }
        }
    }

    // getSignaturesForAddress: newest first, with before/until and limit.
    let token = Pubkey::from_str("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA").unwrap();
    let all = client.get_signatures_for_address(&token).await.unwrap();
    assert!(!all.is_empty());
    assert!(all.windows(2).all(|w| (w[0].slot, w[0].transaction_index) >= (w[1].slot, w[1].transaction_index)));
    assert!(all.iter().all(|s| s.confirmation_status == Some(solana_transaction_status::TransactionConfirmationStatus::Finalized)));
    let v0_sig = *block(V0).transactions[0].transaction_signature();
    let config =
        GetConfirmedSignaturesForAddress2Config { before: Some(v0_sig), until: None, limit: Some(1), commitment: None };
    let page = client.get_signatures_for_address_with_config(&token, config).await.unwrap();
    assert!(page.len() <= 1 && page.iter().all(|s| s.signature != v0_sig.to_string()));

    // getBlocks, getBlocksWithLimit, getBlockTime, getFirstAvailableBlock.
    assert_eq!(client.get_blocks(LEGACY.1 - 5, Some(LEGACY.1 + 5)).await.unwrap(), vec![LEGACY.1]);
    assert_eq!(client.get_blocks(V0.1 - 5, None).await.unwrap(), vec![V0.1]);
    assert_eq!(client.get_blocks_with_limit(0, 1).await.unwrap(), vec![LEGACY.1]);
    assert_eq!(client.get_block_time(LEGACY.1).await.unwrap(), recorded["blockTime"].as_i64().unwrap());
    assert_eq!(client.get_first_available_block().await.unwrap(), LEGACY.1);

    // getSignatureStatuses with searchTransactionHistory, in one call.
    let sigs: Vec<Signature> = json_block
        .transactions
        .iter()
        .map(|t| *t.transaction_signature())
        .chain([Signature::from([9u8; 64])])
        .collect();
    let statuses = client.get_signature_statuses_with_history(&sigs).await.unwrap().value;
    assert!(statuses[..sigs.len() - 1].iter().all(|s| s.as_ref().is_some_and(|s| s.slot == LEGACY.1)));
    assert!(statuses.last().unwrap().is_none());

    // The deprecated aliases answer like the current methods.
    let current =
        post(addr, &json!({"jsonrpc": "2.0", "id": 1, "method": "getBlock", "params": [LEGACY.1]}).to_string()).await;
    let alias = post(
        addr,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "getConfirmedBlock", "params": [LEGACY.1]}).to_string(),
    )
    .await;
    assert_eq!(current, alias);
    let alias = post(
        addr,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "getConfirmedBlocks", "params": [LEGACY.1, LEGACY.1 + 9]})
            .to_string(),
    )
    .await;
    assert_eq!(alias["result"], json!([LEGACY.1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_agaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    let (addr, _stop) = serve(store, ServeConfig { max_batch: 3, ..ServeConfig::default() }).await;
    let call = |method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
    };
    let cases = [
        (
            call("getBlock", json!([5])),
            -32001,
            "Block 5 cleaned up, does not exist on node. First available block: 100000000",
        ),
        (call("getBlock", json!([100_000_001])), -32009, "Slot 100000001 was skipped, or missing in long-term storage"),
        (call("getBlock", json!([999_999_999])), -32004, "Block not available for slot 999999999"),
        (call("getBlock", json!([V0.1])), -32015, "Transaction version (0) is not supported by the requesting client"),
        (call("getBlock", json!(["x"])), -32602, "Invalid params: invalid type: string \"x\", expected u64."),
        (call("getBlockTime", json!([100_000_001])), -32009, "Slot 100000001 was skipped"),
        (
            call("getSignaturesForAddress", json!(["TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", {"limit": 1001}])),
            -32602,
            "Invalid limit; max 1000",
        ),
        (call("getSignaturesForAddress", json!(["not-a-key"])), -32602, "Invalid param"),
        (call("getBlocks", json!([0, 600_000_000])), -32602, "Slot range too large; max 500000"),
        (call("getSignatureStatuses", json!([vec!["1"; 257]])), -32602, "Too many inputs provided; max 256"),
        (
            call("getBlock", json!([LEGACY.1, {"commitment": "processed"}])),
            -32602,
            "Method does not support commitment below `confirmed`",
        ),
        (call("sendTransaction", json!(["x"])), -32601, "Method not found"),
        ("{\"jsonrpc\": \"2.0\", ".to_string(), -32700, "Parse error"),
        ("[1,2,3,4]".to_string(), -32600, "Batch too large: 4 requests; max 3"),
        ("{\"id\": 1}".to_string(), -32600, "Invalid request"),
    ];
    for (body, code, message) in cases {
        let answer = post(addr, &body).await;
        let error = answer.get("error").unwrap_or_else(|| panic!("{body}: no error in {answer}"));
        assert_eq!(error["code"], json!(code), "{body}: {answer}");
        assert!(error["message"].as_str().unwrap().starts_with(message), "{body}: {answer}");
    }
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap().text().await.unwrap();
    assert_eq!(health, "ok");
}

fn cached(redis: &Redis, ttl: Duration) -> ServeConfig {
    ServeConfig {
        cache: Some(CacheConfig {
            url: chronicle::pipeline::config::Secret::new(redis.url()),
            ttl,
            immutable_ttl: Duration::from_secs(3600),
            timeout: Duration::from_millis(200),
            max_memory: Some("64mb".into()),
            eviction: Some("allkeys-lru".into()),
            methods: Vec::new(),
            pool_size: 1,
        }),
        ..ServeConfig::default()
    }
}

async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_block_shows_on_the_next_call_through_every_replica() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(&dir.path().join("ledger")).unwrap())));
    let legacy = block(LEGACY);
    store.write_block(LEGACY.1, &legacy, &[]).await.unwrap();
    // A long TTL: only invalidation can make the new signature appear.
    let (one, _a) = serve(store.clone(), cached(&redis, Duration::from_secs(600))).await;
    let (two, _b) = serve(store.clone(), cached(&redis, Duration::from_secs(600))).await;
    let v0 = block(V0);
    let address = v0.transactions[0].account_keys()[0];
    let first_page = json!({"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress", "params": [address.to_string(), {"limit": 10}]}).to_string();
    for replica in [one, two] {
        assert_eq!(post(replica, &first_page).await["result"], json!([]));
        assert_eq!(post(replica, &first_page).await["result"], json!([]), "served from the cache");
    }
    assert!(metric(one, "chronicle_serve_cache_total{method=\"getSignaturesForAddress\",result=\"hit\"}").await >= 1.0);

    // The block lands the way the ingest worker lands it: written, then its answers dropped.
    store.write_block(V0.1, &v0, &[]).await.unwrap();
    let invalidator = Invalidator::new(&redis.url()).unwrap();
    let dropped = invalidator.blocks_written(&store.indexed_addresses(&v0)).await;
    assert!(dropped >= 1, "the cached first page was dropped");
    let signature = v0.transactions[0].transaction_signature().to_string();
    for replica in [one, two] {
        let answer = post(replica, &first_page).await;
        assert_eq!(answer["result"][0]["signature"], json!(signature), "replica {replica}: {answer}");
    }
    // Immutable answers stay cached across invalidations.
    let get_block = json!({"jsonrpc": "2.0", "id": 1, "method": "getBlockTime", "params": [LEGACY.1]}).to_string();
    post(one, &get_block).await;
    invalidator.blocks_written(&[address]).await;
    let hits_before = metric(two, "chronicle_serve_cache_total{method=\"getBlockTime\",result=\"hit\"}").await;
    post(two, &get_block).await;
    assert_eq!(
        metric(two, "chronicle_serve_cache_total{method=\"getBlockTime\",result=\"hit\"}").await,
        hits_before + 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_costs_speed_not_answers() {
    let mut redis = Some(Redis::start());
    let port = redis.as_ref().unwrap().port;
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    let (addr, _stop) = serve(store, cached(redis.as_ref().unwrap(), Duration::from_secs(60))).await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "getBlockTime", "params": [LEGACY.1]}).to_string();
    let expected = json!(1_633_504_705);
    for round in 0..60 {
        if round == 20 {
            redis = None; // killed: the harness stops the server
        }
        if round == 40 {
            redis = Some(Redis::start_on(port));
            tokio::time::sleep(Duration::from_millis(1200)).await; // past the reconnect back-off
        }
        let answer = post(addr, &body).await;
        assert_eq!(answer["result"], expected, "round {round}: {answer}");
    }
    let hits = metric(addr, "chronicle_serve_cache_total{method=\"getBlockTime\",result=\"hit\"}").await;
    assert!(hits >= 30.0, "the cache served before the outage and again after it: {hits} hits");
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    let config = ServeConfig {
        api_keys: vec![chronicle::pipeline::config::Secret::new("k-123")],
        rate_limit: Some(3),
        ..ServeConfig::default()
    };
    let (addr, _stop) = serve(store, config).await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "getFirstAvailableBlock"}).to_string();
    let client = reqwest::Client::new();
    let send = |key: Option<&str>| {
        let mut request =
            client.post(format!("http://{addr}")).header("content-type", "application/json").body(body.clone());
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(send(Some("k-12")).await.unwrap().status(), 401);
    let statuses: Vec<u16> = futures::future::join_all((0..6).map(|_| send(Some("k-123"))))
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert!(statuses.contains(&200) && statuses.contains(&429), "{statuses:?}");

    // A burst above the rate: 1 per second, 4 at once.
    let config = ServeConfig { rate_limit: Some(1), rate_burst: Some(4), ..ServeConfig::default() };
    let (addr, _stop) = serve(fixture_store(tempfile::tempdir().unwrap().path()).await, config).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response =
            client.post(format!("http://{addr}")).header("content-type", "application/json").body(body.clone());
        statuses.push(response.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
}

/// A CacheTier's `methods`: only the listed methods are cached, each with its
/// own TTL; `redis.poolSize` connections per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_listed_methods_are_cached() {
    use chronicle::serve::methods::Method;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    let mut config = cached(&redis, Duration::from_secs(60));
    config.cache.as_mut().unwrap().methods = vec![(Method::GetBlock, Some(Duration::from_millis(300)))];
    config.cache.as_mut().unwrap().pool_size = 3;
    let (addr, _stop) = serve(store, config).await;
    let get_block =
        json!({"jsonrpc": "2.0", "id": 1, "method": "getBlock", "params": [LEGACY.1, {"transactionDetails": "none"}]})
            .to_string();
    let first_available = json!({"jsonrpc": "2.0", "id": 1, "method": "getFirstAvailableBlock"}).to_string();
    let hit = "chronicle_serve_cache_total{method=\"getBlock\",result=\"hit\"}";
    let miss = "chronicle_serve_cache_total{method=\"getBlock\",result=\"miss\"}";
    // Until Redis is connected every lookup is a miss: ask until the block is a hit.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(addr, hit).await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "getBlock is never a cache hit");
        post(addr, &get_block).await;
    }
    for _ in 0..3 {
        post(addr, &first_available).await;
    }
    let unlisted = metric(addr, "chronicle_serve_cache_total{method=\"getFirstAvailableBlock\"").await;
    assert_eq!(unlisted, 0.0, "a method not listed is never looked up");
    // The listed TTL replaces the immutable one: once it passes, the block is read again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let misses = metric(addr, miss).await;
    post(addr, &get_block).await;
    assert_eq!(metric(addr, miss).await, misses + 1.0);
    // `poolSize` connections, used in turn (and this test's own one).
    let mut admin = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut admin).await.unwrap();
    assert_eq!(clients.lines().count(), 3 + 1, "{clients}");
}

mod parser {
    use super::*;
    use proptest::prelude::*;
    use tower::ServiceExt;

    fn deep(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    async fn answer(app: axum::Router, body: Vec<u8>) -> (u16, Vec<u8>) {
        let request = axum::http::Request::post("/")
            .header("content-type", "application/json")
            .extension(axum::extract::ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))))
            .body(axum::body::Body::from(body))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        (status, axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec())
    }

    fn arbitrary_call() -> impl Strategy<Value = Vec<u8>> {
        let method = prop_oneof![
            Just("getBlock".to_string()),
            Just("getTransaction".to_string()),
            Just("getSignaturesForAddress".to_string()),
            Just("getBlocks".to_string()),
            Just("getSignatureStatuses".to_string()),
            Just("getTransactionsForAddress".to_string()),
            Just("getBlocksWithLimit".to_string()),
            ".{0,20}"
        ];
        let leaf = prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            ".{0,40}".prop_map(|s| json!(s)),
            Just(json!(null)),
            Just(json!("99999999999999999999999999999999999999")),
        ];
        let params = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::hash_map(".{0,12}", inner, 0..4).prop_map(|m| json!(m))
            ]
        });
        let call = (method, params)
            .prop_map(|(m, p)| json!({"jsonrpc": "2.0", "id": 1, "method": m, "params": p}).to_string().into_bytes());
        prop_oneof![call, prop::collection::vec(any::<u8>(), 0..200), Just(deep(100_000).into_bytes())]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn no_request_crashes_the_server(body in arbitrary_call()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(dir.path()).unwrap())));
                let app = router(store, ServeConfig::default()).unwrap();
                let (status, answer) = answer(app, body).await;
                prop_assert!(status == 200 || status == 204 || status == 413, "status {}", status);
                if status == 200 {
                    let value: Value = serde_json::from_slice(&answer).expect("a JSON answer");
                    prop_assert!(value.is_object() || value.is_array());
                }
                Ok(())
            })?;
        }
    }
}

/// End to end: the ingest worker (a process, following the loopback node)
/// writes a block to Bigtable and drops the cached answers it changes; two
/// serve replicas with a 10-minute TTL show the new signature at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_updates_the_cache_of_every_replica() {
    use support::BigtableEmulator;
    use support::rpc_peer::RpcPeer;

    let redis = Redis::start();
    let emulator = BigtableEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let peer = RpcPeer::start([(7_000u64, block(LEGACY))].into_iter().collect()).await;
    let store: Arc<dyn BlockStore> = support::bigtable_ledger(&emulator, "chronicle-test", "serve").await;
    let catalog = format!("embedded://{}", dir.path().join("catalog").display());
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args([
            "worker",
            "ingest",
            "--follow",
            "--from",
            "7000",
            "--job",
            "tip",
            "--rpc",
            &peer.url(),
            "--ws",
            &peer.ws_url(),
        ])
        .args(["--store", "bigtable://chronicle-test/serve", "--catalog", &catalog, "--cache", &redis.url()])
        .env("BIGTABLE_EMULATOR_HOST", emulator.host())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (one, _a) = serve(store.clone(), cached(&redis, Duration::from_secs(600))).await;
    let (two, _b) = serve(store.clone(), cached(&redis, Duration::from_secs(600))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.block(7_000).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the worker did not ingest slot 7000");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v0 = block(V0);
    let address = v0.transactions[0].account_keys()[0];
    let first_page =
        json!({"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress", "params": [address.to_string()]})
            .to_string();
    for replica in [one, two] {
        assert_eq!(post(replica, &first_page).await["result"], json!([]), "cached empty first page");
    }
    peer.produce(7_001, v0.clone());
    let signature = json!(v0.transactions[0].transaction_signature().to_string());
    while post(one, &first_page).await["result"][0]["signature"] != signature {
        assert!(std::time::Instant::now() < deadline, "the new signature never reached replica one");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The very next call on the other replica shows it too.
    assert_eq!(post(two, &first_page).await["result"][0]["signature"], signature);
    worker.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_for_address_pages_filters_and_sorts() {
    use chronicle::store::ledger::proto_to_block;
    use prost::Message as _;
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    let bytes = std::fs::read(data_file("solana/18144001.pb")).unwrap();
    let decoded = solana_storage_proto::convert::generated::ConfirmedBlock::decode(bytes.as_slice()).unwrap();
    let busy = proto_to_block(decoded).unwrap();
    store.write_block(18_144_001, &busy, &[]).await.unwrap();
    let (addr, _stop) = serve(store.clone(), ServeConfig::default()).await;
    // The most active non-reserved address of the 89-transaction block.
    let address = store
        .indexed_addresses(&busy)
        .into_iter()
        .max_by_key(|a| busy.transactions.iter().filter(|t| t.account_keys().iter().any(|k| k == a)).count())
        .unwrap();
    let call = |config: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "getTransactionsForAddress", "params": [address.to_string(), config]}).to_string()
    };
    let reference = post(
        addr,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress", "params": [address.to_string()]})
            .to_string(),
    )
    .await["result"]
        .clone();
    let expected: Vec<Value> = reference.as_array().unwrap().iter().map(|e| e["signature"].clone()).collect();
    assert!(expected.len() >= 3, "address {address} has several transactions");

    let all = post(addr, &call(json!({}))).await["result"].clone();
    let sigs: Vec<Value> = all["data"].as_array().unwrap().iter().map(|e| e["signature"].clone()).collect();
    assert_eq!(sigs, expected, "desc = getSignaturesForAddress");
    assert_eq!(all["paginationToken"], Value::Null);

    let asc = post(addr, &call(json!({"sortOrder": "asc"}))).await["result"].clone();
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(asc["data"].as_array().unwrap().iter().map(|e| e["signature"].clone()).collect::<Vec<_>>(), reversed);

    // Pages of two, walked with the token, add up to the whole history.
    let mut walked = Vec::new();
    let mut token = Value::Null;
    loop {
        let page = post(addr, &call(json!({"limit": 2, "paginationToken": token}))).await["result"].clone();
        walked.extend(page["data"].as_array().unwrap().iter().map(|e| e["signature"].clone()));
        token = page["paginationToken"].clone();
        if token.is_null() {
            break;
        }
    }
    assert_eq!(walked, expected);

    // Status filters split the history; full details carry the transactions.
    let failed =
        post(addr, &call(json!({"filters": {"status": "failed"}}))).await["result"]["data"].as_array().unwrap().len();
    let succeeded = post(addr, &call(json!({"filters": {"status": "succeeded"}}))).await["result"]["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(failed + succeeded, expected.len());
    let full = post(addr, &call(json!({"transactionDetails": "full", "limit": 3, "encoding": "json"}))).await["result"]
        .clone();
    for (item, signature) in full["data"].as_array().unwrap().iter().zip(&expected) {
        assert_eq!(&item["transaction"]["signatures"][0], signature);
        assert_eq!(item["slot"], json!(18_144_001));
    }
    let none = post(addr, &call(json!({"filters": {"slot": {"gt": 18_144_001}}}))).await["result"]["data"].clone();
    assert_eq!(none, json!([]));
    let error = post(addr, &call(json!({"transactionDetails": "full", "limit": 101}))).await;
    assert_eq!(error["error"]["code"], json!(-32602), "{error}");
}
