//! `chronicle serve` as a drop-in endpoint: the methods clients call around
//! history (health, version, slot, height, blockhashes, epochs, inflation
//! rewards) answered from real stored blocks and checked against the values
//! those recorded blocks carry; the upstream pass-through against a loopback
//! node; and the address-history extensions (`beforeSlot`/`untilSlot`,
//! ascending order, `minContextSlot`, `filters.signature`).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use chronicle::chain::solana::response::read_block_file;
use chronicle::serve::ServeConfig;
use chronicle::serve::upstream::UpstreamConfig;
use chronicle::store::embedded::EmbeddedCells;
use chronicle::store::{BlockStore, LedgerStore};
use serde_json::{Value, json};
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_transaction_status::{ConfirmedBlock, RewardType};
use support::data_file;
use support::rpc_peer::RpcPeer;
use tokio_util::sync::CancellationToken;

const V0: (&str, u64) = ("solana/block_154808473_v0_json.json", 154_808_473);
const LEGACY: (&str, u64) = ("solana/block_100000000_json.json", 100_000_000);

fn recorded(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(data_file(name)).unwrap()).unwrap()
}

fn block((name, slot): (&str, u64)) -> ConfirmedBlock {
    read_block_file(&data_file(name), Some(slot)).unwrap().1
}

fn empty_store(dir: &std::path::Path) -> Arc<LedgerStore> {
    Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(&dir.join("ledger")).unwrap())))
}

async fn fixture_store(dir: &std::path::Path) -> Arc<LedgerStore> {
    let store = empty_store(dir);
    for fixture in [LEGACY, V0] {
        store.write_block(fixture.1, &block(fixture), &[]).await.unwrap();
    }
    store
}

async fn serve(store: Arc<dyn BlockStore>, config: ServeConfig) -> (SocketAddr, CancellationToken) {
    support::serve_on_free_port(store, config).await
}

/// One JSON-RPC call; the whole response object.
async fn call(addr: SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    reqwest::Client::new().post(format!("http://{addr}")).json(&body).send().await.unwrap().json().await.unwrap()
}

async fn result(addr: SocketAddr, method: &str, params: Value) -> Value {
    let answer = call(addr, method, params).await;
    assert!(answer.get("error").is_none(), "{method}: {answer}");
    answer["result"].clone()
}

async fn error(addr: SocketAddr, method: &str, params: Value) -> Value {
    let answer = call(addr, method, params).await;
    answer.get("error").cloned().unwrap_or_else(|| panic!("{method} should fail: {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_methods_answer_from_the_stored_tip() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    let (addr, _stop) = serve(store, ServeConfig::default()).await;
    let tip = recorded(V0.0);
    let older = recorded(LEGACY.0);
    let height = tip["blockHeight"].as_u64().unwrap();

    // The stock Rust client, as an application calls it on connect.
    let client = RpcClient::new(format!("http://{addr}"));
    client.get_health().await.unwrap();
    let version = client.get_version().await.unwrap();
    assert_eq!(version.solana_core, "4.2.2", "the agave release whose encoders serve here");
    assert_eq!(client.get_genesis_hash().await.unwrap().to_string(), "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d");
    assert_eq!(client.get_slot().await.unwrap(), V0.1);
    assert_eq!(client.get_block_height().await.unwrap(), height, "the recorded tip block's blockHeight");
    assert_eq!(client.minimum_ledger_slot().await.unwrap(), LEGACY.1);
    let (blockhash, last_valid) = client.get_latest_blockhash_with_commitment(Default::default()).await.unwrap();
    assert_eq!(blockhash.to_string(), tip["blockhash"].as_str().unwrap());
    assert_eq!(last_valid, height + 150, "agave: block height + MAX_PROCESSING_AGE");

    // A blockhash is valid while at most 150 blocks are newer: both stored ones are.
    for hash in [&tip["blockhash"], &older["blockhash"]] {
        let answer = result(addr, "isBlockhashValid", json!([hash, {"commitment": "finalized"}])).await;
        assert_eq!(answer["value"], true, "{hash}");
        assert_eq!(answer["context"]["slot"], V0.1);
    }
    let unknown = result(addr, "isBlockhashValid", json!([older["previousBlockhash"]])).await;
    assert_eq!(unknown["value"], false, "a blockhash no stored block produced");
    let bad = error(addr, "isBlockhashValid", json!(["not-a-hash"])).await;
    assert_eq!(bad["code"], -32602);

    // Epochs on mainnet's schedule (432,000 slots, no warmup).
    let info = client.get_epoch_info().await.unwrap();
    assert_eq!((info.epoch, info.slot_index, info.slots_in_epoch), (358, V0.1 - 358 * 432_000, 432_000));
    assert_eq!((info.absolute_slot, info.block_height), (V0.1, height));
    let schedule = result(addr, "getEpochSchedule", json!([])).await;
    assert_eq!(
        schedule,
        json!({"slotsPerEpoch": 432000, "leaderScheduleSlotOffset": 432000, "warmup": false, "firstNormalEpoch": 0, "firstNormalSlot": 0})
    );

    // minContextSlot past the tip: agave's error and data.
    let ahead = error(addr, "getSlot", json!([{"minContextSlot": V0.1 + 1}])).await;
    assert_eq!(
        ahead,
        json!({"code": -32016, "message": "Minimum context slot has not been reached", "data": {"contextSlot": V0.1}})
    );

    // An empty store is unhealthy, as a node that has no bank is.
    let empty_dir = tempfile::tempdir().unwrap();
    let (empty, _stop2) = serve(empty_store(empty_dir.path()), ServeConfig::default()).await;
    let unhealthy = error(empty, "getHealth", json!([])).await;
    assert_eq!(unhealthy, json!({"code": -32005, "message": "Node is unhealthy", "data": {"numSlotsBehind": null}}));
    assert_eq!(error(empty, "getSlot", json!([])).await["code"], -32005);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflation_rewards_come_from_the_epoch_boundary_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = empty_store(dir.path());
    // 64800004 opens epoch 150 (slots 64800000-64800003 produced no block):
    // it carries epoch 149's 10,185 vote and stake rewards.
    // The store also holds 18144001, so the boundary is inside the stored span.
    let blocks = support::real_blocks();
    let (slot, boundary) = blocks.iter().find(|(slot, _)| *slot == 64_800_004).cloned().unwrap();
    for (slot, block) in blocks.iter().filter(|(slot, _)| *slot < 100_000_000) {
        store.write_block(*slot, block, &[]).await.unwrap();
    }
    let (addr, _stop) = serve(store, ServeConfig::default()).await;

    // The expectation, computed from the recorded block as agave does: Voting and Staking rewards only.
    let voting = boundary.rewards.iter().find(|r| r.reward_type == Some(RewardType::Voting)).unwrap();
    let staking = boundary.rewards.iter().find(|r| r.reward_type == Some(RewardType::Staking)).unwrap();
    let fee = boundary.rewards.iter().find(|r| r.reward_type == Some(RewardType::Fee));
    let nobody = "11111111111111111111111111111111";
    let mut addresses = vec![voting.pubkey.as_str(), staking.pubkey.as_str(), nobody];
    if let Some(fee) = fee {
        addresses.push(fee.pubkey.as_str());
    }
    let expected = |r: &solana_transaction_status::Reward| json!({"epoch": 149, "effectiveSlot": slot, "amount": r.lamports.unsigned_abs(), "postBalance": r.post_balance, "commission": r.commission});
    let named = result(addr, "getInflationReward", json!([addresses, {"epoch": 149}])).await;
    assert_eq!(named[0], expected(voting));
    assert_eq!(named[1], expected(staking));
    assert_eq!(named[2], Value::Null);
    if fee.is_some() {
        assert_eq!(named[3], Value::Null, "fee rewards are not inflation rewards");
    }
    // Without an epoch: the one before the tip's.
    let default = result(addr, "getInflationReward", json!([addresses])).await;
    assert_eq!(default, named);
    // An epoch whose boundary is older than the store: agave's cleaned-up error.
    let old = error(addr, "getInflationReward", json!([addresses, {"epoch": 30}])).await;
    assert_eq!(old["code"], -32001);
    // Epoch 100's boundary falls in the store's gap: the next stored block is not a boundary.
    let gap = error(addr, "getInflationReward", json!([addresses, {"epoch": 100}])).await;
    assert_eq!(gap["code"], -32018, "{gap}");
    // The current epoch's rewards are not credited yet: the next boundary is not stored.
    let early = error(addr, "getInflationReward", json!([addresses, {"epoch": 150}])).await;
    assert_eq!(early["code"], -32004);
    assert_eq!(error(addr, "getInflationReward", json!([["bad"]])).await["code"], -32602);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_answers_what_serve_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    // The upstream holds one block newer than the store's tip.
    let newer = V0.1 + 5;
    let mut peer = RpcPeer::start(BTreeMap::from([(newer, block(V0))])).await;
    let mut upstream = UpstreamConfig::new(peer.url());
    upstream.forward_misses = true;
    // With a cache tier: what the upstream answers must never land in it.
    let redis = support::Redis::start();
    let cache = chronicle::serve::cache::CacheConfig::new(redis.url());
    let config = ServeConfig { upstream: Some(upstream), cache: Some(cache), ..ServeConfig::default() };
    let (addr, _stop) = serve(store.clone(), config).await;

    // An unknown method passes through unchanged.
    let balance = result(addr, "getBalance", json!(["11111111111111111111111111111111"])).await;
    assert_eq!(balance["value"], 1_000_000_000u64);
    // A miss past the tip is the upstream's block, asked each time (never cached).
    let direct = result(peer_addr(&peer), "getBlock", json!([newer, {"maxSupportedTransactionVersion": 0}])).await;
    for _ in 0..2 {
        let through = result(addr, "getBlock", json!([newer, {"maxSupportedTransactionVersion": 0}])).await;
        assert_eq!(through, direct);
    }
    assert_eq!(peer.count("getBlock", newer), 3, "each miss asked the upstream: none was cached");
    let mut admin = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("chronicle:rpc:getBlock:*").query_async(&mut admin).await.unwrap();
    assert!(keys.is_empty(), "an upstream answer was cached: {keys:?}");
    // Inside the stored span a missing slot is answered here — a skip or a gap, never hidden by the upstream.
    let inside = LEGACY.1 + 1;
    let skipped = error(addr, "getBlock", json!([inside])).await;
    assert_eq!(skipped["code"], -32009);
    assert_eq!(peer.count("getBlock", inside), 0);
    // The upstream's own errors come back as it sent them.
    let unknown = error(addr, "getAccountInfo", json!(["11111111111111111111111111111111"])).await;
    assert_eq!(unknown, json!({"code": -32601, "message": "Method not found: getAccountInfo"}));

    // Health against the upstream's head: 5 slots behind is healthy, 300 is not.
    assert_eq!(result(addr, "getHealth", json!([])).await, "ok");
    peer.set_tip(V0.1 + 300);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await; // past the head's reuse
    let behind = error(addr, "getHealth", json!([])).await;
    assert_eq!(
        behind,
        json!({"code": -32005, "message": "Node is behind by 300 slots", "data": {"numSlotsBehind": 300}})
    );

    // A down upstream: a clear error, never an empty answer.
    let peer_port = peer.addr;
    peer.stop().await;
    let down = error(addr, "getBalance", json!(["11111111111111111111111111111111"])).await;
    assert_eq!(down["code"], -32098, "{down}");
    let message = down["message"].as_str().unwrap();
    assert!(message.contains("unreachable") && message.contains(&peer_port.port().to_string()), "{message}");
    let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("reason=\"unknown_method\",outcome=\"unreachable\""), "{metrics}");

    // Without forwardMisses, misses stay misses; a rate-limited upstream says so.
    let peer = RpcPeer::start(BTreeMap::from([(newer, block(V0))])).await;
    let mut limited = UpstreamConfig::new(peer.url());
    limited.requests_per_second = Some(1);
    let (addr, _stop) = serve(store, ServeConfig { upstream: Some(limited), ..ServeConfig::default() }).await;
    assert_eq!(error(addr, "getBlock", json!([newer])).await["code"], -32004);
    assert_eq!(peer.count("getBlock", newer), 0);
    result(addr, "getBalance", json!(["11111111111111111111111111111111"])).await;
    let limited = error(addr, "getBalance", json!(["11111111111111111111111111111111"])).await;
    assert_eq!(limited["code"], -32097, "{limited}");
}

fn peer_addr(peer: &RpcPeer) -> SocketAddr {
    peer.addr
}

/// An address's history from the recorded blocks, newest first: (slot, index, signature).
fn history(address: &str) -> Vec<(u64, usize, String)> {
    let mut out = Vec::new();
    for (name, slot) in [V0, LEGACY] {
        let txs = recorded(name)["transactions"].as_array().unwrap().clone();
        for (index, tx) in txs.iter().enumerate().rev() {
            let keys = tx["transaction"]["message"]["accountKeys"].as_array().unwrap();
            let loaded = tx["meta"]["loadedAddresses"].as_object();
            let in_loaded =
                loaded.is_some_and(|l| l.values().any(|v| v.as_array().unwrap().iter().any(|k| k == address)));
            if keys.iter().any(|k| k == address) || in_loaded {
                out.push((slot, index, tx["transaction"]["signatures"][0].as_str().unwrap().to_string()));
            }
        }
    }
    out
}

fn signatures(answer: &Value) -> Vec<String> {
    answer.as_array().unwrap().iter().map(|e| e["signature"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_history_by_slot_and_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    let (addr, _stop) = serve(store, ServeConfig::default()).await;

    // An account in two transactions of the slot-100000000 block (the index
    // leaves out reserved keys such as the vote program, as agave's does).
    let account = "FsJ3A3u2vn5cTVofAjvy6y5kwABJAqYWpe4975bi2epH";
    let newest_first: Vec<String> = history(account).into_iter().map(|e| e.2).collect();
    assert_eq!(newest_first.len(), 2);
    let plain = result(addr, "getSignaturesForAddress", json!([account])).await;
    assert_eq!(signatures(&plain), newest_first);
    let oldest_first: Vec<String> = newest_first.iter().rev().cloned().collect();
    let asc = result(addr, "getSignaturesForAddress", json!([account, {"sortOrder": "asc"}])).await;
    assert_eq!(signatures(&asc), oldest_first);
    let asc1 = result(addr, "getSignaturesForAddress", json!([account, {"sortOrder": "asc", "limit": 1}])).await;
    assert_eq!(signatures(&asc1), oldest_first[..1]);

    // The token program: one transaction in each block. Slot bounds are exclusive.
    let token = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
    let both_blocks = history(token);
    assert_eq!(both_blocks.iter().map(|e| e.0).collect::<Vec<_>>(), [V0.1, LEGACY.1]);
    let before = result(addr, "getSignaturesForAddress", json!([token, {"beforeSlot": V0.1}])).await;
    assert_eq!(signatures(&before), [both_blocks[1].2.clone()]);
    let until = result(addr, "getSignaturesForAddress", json!([token, {"untilSlot": LEGACY.1}])).await;
    assert_eq!(signatures(&until), [both_blocks[0].2.clone()]);
    let none =
        result(addr, "getSignaturesForAddress", json!([token, {"beforeSlot": V0.1, "untilSlot": LEGACY.1}])).await;
    assert_eq!(none, json!([]));

    // `before` (a signature) with ascending order: the older entries, oldest first.
    let (newest, oldest) = (&both_blocks[0].2, &both_blocks[1].2);
    let asc_before =
        result(addr, "getSignaturesForAddress", json!([token, {"before": newest, "sortOrder": "asc"}])).await;
    assert_eq!(signatures(&asc_before), [oldest.clone()]);

    let both = error(addr, "getSignaturesForAddress", json!([token, {"before": newest, "beforeSlot": 1}])).await;
    assert_eq!(both["message"], "before and beforeSlot are mutually exclusive");
    let ahead = error(addr, "getSignaturesForAddress", json!([token, {"minContextSlot": V0.1 + 1}])).await;
    assert_eq!(ahead["code"], -32016);

    // getTransactionsForAddress `filters.signature`: by the named transactions' positions.
    let page = |filter: Value| {
        let params = json!([token, {"filters": {"signature": filter}}]);
        async move { signatures(&result(addr, "getTransactionsForAddress", params).await["data"]) }
    };
    assert_eq!(page(json!({"lt": newest})).await, [oldest.clone()]);
    assert_eq!(page(json!({"lte": newest})).await, [newest.clone(), oldest.clone()]);
    assert_eq!(page(json!({"gt": oldest})).await, [newest.clone()]);
    assert_eq!(page(json!({"gte": oldest, "lte": oldest})).await, [oldest.clone()]);
}

/// `filters.tokenAccounts` on the v0 block's swap, whose token balances name
/// ten owners (five not among its keys): what each owner's history must be,
/// computed here from the recorded JSON, as Helius defines the values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_account_history_follows_the_owners() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path()).await;
    let (addr, _stop) = serve(store, ServeConfig::default()).await;
    let tx = recorded(V0.0)["transactions"][0].clone();
    let signature = tx["transaction"]["signatures"][0].as_str().unwrap().to_string();
    let meta = &tx["meta"];
    let mut keys: Vec<Value> = tx["transaction"]["message"]["accountKeys"].as_array().unwrap().clone();
    for list in ["writable", "readonly"] {
        keys.extend(meta["loadedAddresses"][list].as_array().unwrap().iter().cloned());
    }
    // owner → did one of its accounts' amounts change (or the account close)?
    let mut owners: BTreeMap<String, bool> = BTreeMap::new();
    let amounts = |list: &str| -> BTreeMap<u64, (String, String)> {
        meta[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let entry = (
                    b["owner"].as_str().unwrap().to_string(),
                    b["uiTokenAmount"]["amount"].as_str().unwrap().to_string(),
                );
                (b["accountIndex"].as_u64().unwrap(), entry)
            })
            .collect()
    };
    let (pre, post) = (amounts("preTokenBalances"), amounts("postTokenBalances"));
    for (index, (owner, before)) in &pre {
        let changed = post.get(index).is_none_or(|(_, after)| after != before);
        *owners.entry(owner.clone()).or_default() |= changed;
    }
    for (index, (owner, after)) in &post {
        let changed = pre.get(index).map_or(after != "0", |(_, before)| before != after);
        *owners.entry(owner.clone()).or_default() |= changed;
    }
    assert_eq!(owners.len(), 10);
    let outside = owners.keys().filter(|o| !keys.iter().any(|k| k == *o)).count();
    assert_eq!(outside, 5, "owners not among the transaction's keys");
    let unchanged_outside = owners.iter().filter(|(o, changed)| !**changed && !keys.iter().any(|k| k == *o)).count();
    assert!(unchanged_outside > 0, "some owner is reached only through `all`");

    for (owner, changed) in &owners {
        let named = keys.iter().any(|k| k == owner);
        for (mode, expected) in [("none", named), ("all", true), ("balanceChanged", named || *changed)] {
            let params = json!([owner, {"filters": {"tokenAccounts": mode}}]);
            let found = signatures(&result(addr, "getTransactionsForAddress", params).await["data"]);
            let want: Vec<String> = if expected { vec![signature.clone()] } else { Vec::new() };
            assert_eq!(found, want, "owner {owner}, tokenAccounts {mode}");
        }
    }
    let bad = error(addr, "getTransactionsForAddress", json!([V0_PAYER, {"filters": {"tokenAccounts": "some"}}])).await;
    assert_eq!(bad["code"], -32602);
}

const V0_PAYER: &str = "11111111111111111111111111111111";
