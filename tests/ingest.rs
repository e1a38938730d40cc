//! `chronicle worker ingest` as a process, against the loopback Solana peer,
//! a real PostgreSQL catalog (or the embedded one) and both block stores:
//! backfill, SIGKILL and resume, gaps and their repair, a catalog outage,
//! following the tip and stopping on SIGTERM.
//!
//! Where a test needs more blocks than the recorded ones, the peer replays
//! the real fixture blocks at consecutive slots (block bodies unchanged).

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::catalog::{self, ShardRange};
use chronicle::store::cells::CellStore;
use chronicle::store::embedded::EmbeddedCells;
use chronicle::store::ledger::block_to_proto;
use chronicle::store::{BlockStore, LedgerStore};
use prost::Message as _;
use solana_transaction_status::ConfirmedBlock;
use support::rpc_peer::{Fault, RpcPeer};
use support::{BigtableEmulator, Postgres, bigtable_ledger, dump, real_blocks, replayed};
use tokio::process::{Child, Command};

fn worker(peer: &RpcPeer, store: &str, catalog: &str, job: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .args(["worker", "ingest", "--job", job, "--rpc", &peer.url(), "--store", store, "--catalog", catalog])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs a worker to the end; returns its exit code and log.
async fn run(mut command: Command) -> (i32, String) {
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("worker finished in time")
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), log)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn embedded(dir: &std::path::Path) -> (String, Arc<LedgerStore>) {
    let path = dir.join("ledger");
    (
        format!("embedded://{}", path.display()),
        Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(&path).unwrap()))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_of_every_fixture_slot_reads_back_equal() {
    let blocks: BTreeMap<u64, ConfirmedBlock> = real_blocks().into_iter().collect();
    let peer = RpcPeer::start(blocks.clone()).await;
    let pg = Postgres::start();
    let emulator = BigtableEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let embedded_catalog = format!("embedded://{}", dir.path().join("catalog").display());
    // Slots 64800000-64800003 produced no block (the parent of 64800004 is 64799999).
    let ranges = [
        (18_144_001u64, 18_144_001u64),
        (64_800_000, 64_800_004),
        (100_000_000, 100_000_000),
        (154_808_473, 154_808_473),
    ];
    let backends = [
        ("embedded", format!("embedded://{}", dir.path().join("ledger").display()), embedded_catalog.clone()),
        ("bigtable", "bigtable://chronicle-test/ingest".to_string(), pg.url()),
    ];
    for (backend, store, catalog) in &backends {
        for (from, to) in ranges {
            let job = format!("fixtures-{from}");
            let mut command =
                worker(&peer, store, catalog, &job, &["--from", &from.to_string(), "--to", &to.to_string()]);
            command.env("BIGTABLE_EMULATOR_HOST", emulator.host());
            let (code, log) = run(command).await;
            assert_eq!(code, 0, "{backend} {from}..={to}:\n{log}");
        }
        let opened = match store.starts_with("bigtable://") {
            true => bigtable_ledger(&emulator, "chronicle-test", "ingest").await,
            false => chronicle::store::open(store).await.unwrap(),
        };
        for (slot, block) in &blocks {
            let stored = opened.block(*slot).await.unwrap().unwrap_or_else(|| panic!("{backend}: slot {slot} missing"));
            // Equal as stored: the protobuf agave writes (which keeps no
            // difference between absent and empty per-transaction rewards).
            let stored = block_to_proto(&stored).encode_to_vec();
            let expected = block_to_proto(block).encode_to_vec();
            assert!(stored == expected, "{backend}: slot {slot} reads back different");
        }
        drop(opened);
        let catalog = catalog::open(catalog).await.unwrap();
        let skipped = catalog.skipped("fixtures-64800000", 64_800_000, 64_800_004).await.unwrap();
        assert_eq!(skipped, vec![64_800_000, 64_800_001, 64_800_002, 64_800_003], "{backend}: skipped slots");
        assert!(catalog.open_gaps("fixtures-64800000", 0, u64::MAX >> 1).await.unwrap().is_empty());
        let state = catalog
            .shard("fixtures-64800000", ShardRange { shard: 0, start: 64_800_000, end: 64_800_004 })
            .await
            .unwrap();
        assert_eq!(
            (state.checkpoint, state.blocks_written, state.slots_skipped),
            (Some(64_800_004), 1, 4),
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backfill_resumes_without_refetching() {
    let (first, count, batch) = (1_000u64, 40u64, 5u64);
    let blocks = replayed(first, count);
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let range = ["--from", "1000", "--to", "1039", "--batch-size", "5", "--concurrency", "1"];

    // The reference: one uninterrupted run.
    let clean_peer = RpcPeer::start(blocks.clone()).await;
    let clean_path = dir.path().join("clean");
    let clean_url = format!("embedded://{}", clean_path.display());
    let (code, log) = run(worker(&clean_peer, &clean_url, &pg.url(), "clean", &range)).await;
    assert_eq!(code, 0, "{log}");

    // The same backfill, SIGKILLed in the middle and started again.
    let peer = RpcPeer::start(blocks).await;
    peer.set_delay(Duration::from_millis(40));
    let killed_path = dir.path().join("killed");
    let killed_url = format!("embedded://{}", killed_path.display());
    let mut child: Child = worker(&peer, &killed_url, &pg.url(), "killed", &range).spawn().unwrap();
    wait_for("a dozen blocks fetched", || peer.requests("getBlock").len() >= 12).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let fetched_before = peer.requests("getBlock").len();
    peer.set_delay(Duration::ZERO);
    let (code, log) = run(worker(&peer, &killed_url, &pg.url(), "killed", &range)).await;
    assert_eq!(code, 0, "resumed run:\n{log}");

    let twice: Vec<u64> = (first..first + count).filter(|s| peer.count("getBlock", *s) > 1).collect();
    assert!(twice.len() as u64 <= batch, "refetched more than the batch in flight: {twice:?}");
    assert!(twice.iter().all(|s| *s < first + fetched_before as u64 + 1), "refetched slots come from the killed batch");
    assert!((first..first + count).all(|s| peer.count("getBlock", s) >= 1));

    let clean: Arc<dyn CellStore> = Arc::new(EmbeddedCells::open(&clean_path).unwrap());
    let killed: Arc<dyn CellStore> = Arc::new(EmbeddedCells::open(&killed_path).unwrap());
    assert_eq!(dump(&killed).await, dump(&clean).await, "the resumed store differs from an uninterrupted run");
    let catalog = catalog::open(&pg.url()).await.unwrap();
    let state = catalog.shard("killed", ShardRange { shard: 0, start: 1000, end: 1039 }).await.unwrap();
    assert_eq!((state.checkpoint, state.blocks_written), (Some(1039), 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_become_gaps_and_a_later_run_repairs_them() {
    let peer = RpcPeer::start(replayed(2_000, 20)).await;
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (store_url, _) = embedded(dir.path());
    peer.always(2_003, Fault::Rpc(-32004));
    peer.always(2_007, Fault::Rpc(-32009));
    peer.always(2_011, Fault::Delay(Duration::from_secs(3)));
    peer.always(2_015, Fault::Rpc(-32007));
    peer.inject(2_001, [Fault::TooManyRequests, Fault::TooManyRequests]);
    let range = ["--from", "2000", "--to", "2019", "--batch-size", "10", "--timeout", "1", "--attempts", "2"];
    let (code, log) = run(worker(&peer, &store_url, &pg.url(), "gaps", &range)).await;
    assert_eq!(code, 3, "an incomplete range exits 3:\n{log}");
    assert!(log.contains("3 slots could not be fetched") && log.contains("2003, 2007, 2011"), "{log}");

    let catalog = catalog::open(&pg.url()).await.unwrap();
    let gaps = catalog.open_gaps("gaps", 2_000, 2_019).await.unwrap();
    assert_eq!(gaps.iter().map(|g| g.slot).collect::<Vec<_>>(), vec![2_003, 2_007, 2_011]);
    // What a status shows: the count of all, the lowest listed (one query, limited).
    let (open, lowest) = catalog.open_gap_summary("gaps", 2).await.unwrap();
    assert_eq!((open, lowest.iter().map(|g| g.slot).collect::<Vec<_>>()), (3, vec![2_003, 2_007]));
    assert_eq!(catalog.progress("gaps").await.unwrap().open_gaps, 3);
    assert!(
        gaps[0].reason.contains("-32004") && gaps[1].reason.contains("-32009") && gaps[2].reason.contains("timed out"),
        "{gaps:?}"
    );
    assert_eq!(
        catalog.skipped("gaps", 2_000, 2_019).await.unwrap(),
        vec![2_015],
        "-32007 is a skipped slot, not a gap"
    );
    assert_eq!(peer.count("getBlock", 2_001), 3, "429s are retried by the client");

    // The node recovers; the next run repairs the gaps and nothing else.
    peer.clear_faults();
    peer.always(2_015, Fault::Rpc(-32007));
    let before: Vec<usize> = (2_000..2_020).map(|s| peer.count("getBlock", s)).collect();
    let (code, log) = run(worker(&peer, &store_url, &pg.url(), "gaps", &range)).await;
    assert_eq!(code, 0, "{log}");
    let refetched: Vec<u64> =
        (2_000..2_020).filter(|s| peer.count("getBlock", *s) > before[(*s - 2_000) as usize]).collect();
    assert_eq!(refetched, vec![2_003, 2_007, 2_011]);
    assert!(catalog.open_gaps("gaps", 2_000, 2_019).await.unwrap().is_empty());
    assert_eq!(catalog.open_gap_summary("gaps", 2).await.unwrap(), (0, Vec::new()));
    let state = catalog.shard("gaps", ShardRange { shard: 0, start: 2_000, end: 2_019 }).await.unwrap();
    assert_eq!((state.gaps_found, state.gaps_repaired, state.blocks_written, state.slots_skipped), (3, 3, 19, 1));
    let store = chronicle::store::open(&store_url).await.unwrap();
    assert_eq!(store.blocks(2_000, 100).await.unwrap(), (2_000..2_020).filter(|s| *s != 2_015).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_outage_holds_the_checkpoint_and_loses_nothing() {
    let peer = RpcPeer::start(replayed(3_000, 30)).await;
    peer.set_delay(Duration::from_millis(30));
    let mut pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (store_url, _) = embedded(dir.path());
    let range = ["--from", "3000", "--to", "3029", "--batch-size", "5", "--concurrency", "2"];
    let child = worker(&peer, &store_url, &pg.url(), "outage", &range).spawn().unwrap();
    wait_for("a few blocks", || peer.requests("getBlock").len() >= 8).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fetched_during_outage = peer.requests("getBlock").len();
    assert!(fetched_during_outage < 30, "the worker went on without its catalog");
    pg.start_again();
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.unwrap().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("catalog unavailable; checkpoint held"), "{log}");
    assert!((3_000..3_030).all(|s| peer.count("getBlock", s) == 1), "a block was fetched twice");
    let catalog = catalog::open(&pg.url()).await.unwrap();
    let state = catalog.shard("outage", ShardRange { shard: 0, start: 3_000, end: 3_029 }).await.unwrap();
    assert_eq!((state.checkpoint, state.blocks_written), (Some(3_029), 30), "nothing lost, nothing counted twice");
    let store = chronicle::store::open(&store_url).await.unwrap();
    assert_eq!(store.blocks(3_000, 100).await.unwrap().len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_tails_new_blocks_and_stops_on_sigterm() {
    let mut blocks = replayed(5_000, 4);
    let later = blocks.split_off(&5_003);
    let peer = RpcPeer::start(blocks).await;
    let dir = tempfile::tempdir().unwrap();
    let (store_url, _) = embedded(dir.path());
    let catalog_url = format!("embedded://{}", dir.path().join("catalog").display());
    let ws = peer.ws_url();
    let child =
        worker(&peer, &store_url, &catalog_url, "tip", &["--follow", "--from", "5000", "--ws", &ws]).spawn().unwrap();
    wait_for("the first blocks", || peer.count("getBlock", 5_002) == 1).await;
    // New blocks land: 5003 and 5005 (5004 skipped).
    let block = later.into_values().next().unwrap();
    peer.produce(5_003, block.clone());
    peer.produce(5_005, block);
    wait_for("the new blocks", || peer.count("getBlock", 5_005) == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let the batch commit
    // SAFETY: kill(2) on the worker we spawned.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "SIGTERM exits 0:\n{log}");
    assert!(log.contains("stop requested"), "{log}");
    let catalog = catalog::open(&catalog_url).await.unwrap();
    let state = catalog.shard("tip", ShardRange { shard: 0, start: 5_000, end: u64::MAX >> 1 }).await.unwrap();
    assert_eq!(state.checkpoint, Some(5_005));
    assert_eq!(catalog.skipped("tip", 5_000, 5_005).await.unwrap(), vec![5_004]);
    let store = chronicle::store::open(&store_url).await.unwrap();
    assert_eq!(store.blocks(5_000, 10).await.unwrap(), vec![5_000, 5_001, 5_002, 5_003, 5_005]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_shards_survive_a_node_restart() {
    let mut peer = RpcPeer::start(replayed(4_000, 40)).await;
    peer.set_delay(Duration::from_millis(25));
    let pg = Postgres::start();
    let emulator = BigtableEmulator::start();
    let store_url = "bigtable://chronicle-test/shards";
    // Two shards of one range, as an Indexed Job runs them: JOB_COMPLETION_INDEX picks the shard.
    let workers: Vec<Child> = (0..2)
        .map(|index| {
            let mut command = worker(
                &peer,
                store_url,
                &pg.url(),
                "sharded",
                &["--from", "4000", "--to", "4039", "--shard-count", "2", "--batch-size", "5"],
            );
            command.env("JOB_COMPLETION_INDEX", index.to_string()).env("BIGTABLE_EMULATOR_HOST", emulator.host());
            command.spawn().unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fetched = peer.requests("getBlock");
        if fetched.iter().any(|s| s.is_some_and(|s| s < 4_020)) && fetched.iter().any(|s| s.is_some_and(|s| s >= 4_020))
        {
            break;
        }
        if Instant::now() > deadline {
            for worker in workers {
                let output = worker.wait_with_output().await.unwrap();
                eprintln!("worker: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
            }
            panic!("timed out waiting for both shards under way; requests: {:?}", peer.requests("getBlock"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peer.restart().await; // in-flight connections drop; the node comes back on the same address
    for worker in workers {
        let output = tokio::time::timeout(Duration::from_secs(120), worker.wait_with_output()).await.unwrap().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let store = bigtable_ledger(&emulator, "chronicle-test", "shards").await;
    assert_eq!(store.blocks(4_000, 100).await.unwrap(), (4_000..4_040).collect::<Vec<_>>());
    let catalog = catalog::open(&pg.url()).await.unwrap();
    for (shard, start, end) in [(0, 4_000, 4_019), (1, 4_020, 4_039)] {
        let state = catalog.shard("sharded", ShardRange { shard, start, end }).await.unwrap();
        assert_eq!((state.checkpoint, state.blocks_written), (Some(end), 20), "shard {shard}");
    }
}

/// With `--commitment confirmed` a block is stored as soon as it is
/// confirmed; when the finalized chain does not list it, it is removed again
/// and recorded as skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_blocks_the_cluster_skips_are_removed() {
    let peer = RpcPeer::start(replayed(6_000, 6)).await;
    peer.orphan(6_003);
    let dir = tempfile::tempdir().unwrap();
    let (store_url, _) = embedded(dir.path());
    let catalog_url = format!("embedded://{}", dir.path().join("catalog").display());
    let child = worker(
        &peer,
        &store_url,
        &catalog_url,
        "confirmed",
        &["--follow", "--from", "6000", "--commitment", "confirmed"],
    )
    .spawn()
    .unwrap();
    wait_for("all six blocks fetched", || peer.count("getBlock", 6_005) == 1).await;
    // Until the orphan is gone: the follower lists finalized blocks after each batch.
    let deadline = Instant::now() + Duration::from_secs(30);
    while peer.requests("getBlocks").len() < 2 {
        assert!(Instant::now() < deadline, "the follower never checked finalization");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, log) = support::terminate(child).await;
    assert!(status.success(), "{log}");
    assert!(log.contains("confirmed block was not finalized"), "{log}");
    let store = chronicle::store::open(&store_url).await.unwrap();
    assert_eq!(store.blocks(6_000, 10).await.unwrap(), vec![6_000, 6_001, 6_002, 6_004, 6_005]);
    let catalog = catalog::open(&catalog_url).await.unwrap();
    assert_eq!(catalog.skipped("confirmed", 6_000, 6_005).await.unwrap(), vec![6_003]);
}

/// A paid endpoint: the token comes from the environment (a Secret in a pod),
/// goes out in the configured header, and never into the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_token_is_sent_and_never_logged() {
    let peer = RpcPeer::start(replayed(8_000, 3)).await;
    peer.require_header("x-api-key", "t0ken-s3cret");
    let dir = tempfile::tempdir().unwrap();
    let (store_url, _) = embedded(dir.path());
    let catalog_url = format!("embedded://{}", dir.path().join("catalog").display());
    let mut command = worker(
        &peer,
        &store_url,
        &catalog_url,
        "paid",
        &["--from", "8000", "--to", "8002", "--rpc-auth-header", "x-api-key"],
    );
    command.env("CHRONICLE_RPC_TOKEN", "t0ken-s3cret").env("RUST_LOG", "debug");
    let (code, log) = run(command).await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("t0ken-s3cret"), "the token reached the log");
    assert_eq!(peer.requests("getBlock").len(), 3);
}

/// A store fed at `confirmed` holds blocks ahead of finality: `serve` shows
/// them to `confirmed` readers only, and once the cluster finalizes past
/// them, a block it skipped is gone from the store, every answer and the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_blocks_show_only_to_confirmed_readers_until_final() {
    use serde_json::{Value, json};
    let peer = RpcPeer::start(replayed(6_100, 6)).await;
    peer.orphan(6_104);
    peer.set_finalized(6_101);
    let emulator = BigtableEmulator::start();
    let redis = support::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let catalog_url = format!("embedded://{}", dir.path().join("catalog").display());
    let store_url = "bigtable://chronicle-test/confirmed";
    let follow = ["--follow", "--from", "6100", "--commitment", "confirmed", "--cache"];
    let mut command = worker(&peer, store_url, &catalog_url, "ahead", &[&follow[..], &[redis.url().as_str()]].concat());
    command.env("BIGTABLE_EMULATOR_HOST", emulator.host());
    let child = command.spawn().unwrap();
    let store = bigtable_ledger(&emulator, "chronicle-test", "confirmed").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(store.block(6_105).await.unwrap().is_some() && store.finalized_slot().await.unwrap() == Some(6_101)) {
        assert!(Instant::now() < deadline, "the follower did not store 6105 with the watermark at 6101");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = chronicle::serve::ServeConfig {
        cache: Some(chronicle::serve::cache::CacheConfig {
            ttl: Duration::from_secs(600),
            ..chronicle::serve::cache::CacheConfig::new(redis.url())
        }),
        ..Default::default()
    };
    let (addr, _stop) = support::serve_on_free_port(store.clone(), config).await;
    let call = |method: &str, params: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        async move {
            let client = reqwest::Client::new();
            client.post(format!("http://{addr}")).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let confirmed = json!({"commitment": "confirmed", "transactionDetails": "none", "rewards": false});
    let finalized = json!({"transactionDetails": "none", "rewards": false});

    // Finalized readers (the default) stop at the watermark; confirmed readers see all.
    assert_eq!(call("getBlock", json!([6_103, finalized])).await["error"]["code"], -32004);
    assert!(call("getBlock", json!([6_103, confirmed])).await["result"]["blockhash"].is_string());
    assert_eq!(call("getSlot", json!([])).await["result"], 6_101);
    assert_eq!(call("getSlot", json!([{"commitment": "confirmed"}])).await["result"], 6_105);
    assert_eq!(call("getBlocks", json!([6_100])).await["result"], json!([6_100, 6_101]));
    let all = call("getBlocks", json!([6_100, {"commitment": "confirmed"}])).await;
    assert_eq!(all["result"], json!([6_100, 6_101, 6_102, 6_103, 6_104, 6_105]));
    // The block the cluster will skip, answered (and cached) for confirmed readers.
    for _ in 0..2 {
        assert!(call("getBlock", json!([6_104, confirmed])).await["result"]["blockhash"].is_string());
    }

    // The cluster finalizes through 6105 without 6104, and a new block lands.
    peer.set_finalized(6_105);
    peer.produce(6_106, replayed(6_106, 1).remove(&6_106).unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.finalized_slot().await.unwrap() != Some(6_105) {
        assert!(Instant::now() < deadline, "the watermark never reached 6105");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.block(6_104).await.unwrap().is_none(), "the skipped block is removed from the store");
    let gone = call("getBlock", json!([6_104, confirmed])).await;
    assert_eq!(gone["error"]["code"], -32009, "not served from the cache either: {gone}");
    assert!(call("getBlock", json!([6_105, finalized])).await["result"]["blockhash"].is_string());
    assert_eq!(call("getSlot", json!([])).await["result"], 6_105);
    let (status, log) = support::terminate(child).await;
    assert!(status.success(), "{log}");
}
