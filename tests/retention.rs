//! Retention (`RetentionPolicy`) as its CronJob's pods run it: `chronicle
//! worker run` with a typed retention spec, PostgreSQL as the catalog, on both
//! backends. The stores hold the recorded mainnet blocks replayed at 40
//! consecutive slots (real bodies, derived slots).

mod support;

use std::process::Stdio;
use std::sync::Arc;

use chronicle::catalog::{self, BatchOutcome, Catalog, RetentionRecord, ShardRange};
use chronicle::crd::chain_source::{ChainFamily, Commitment};
use chronicle::crd::retention_policy::{RetentionMethod, RetentionTarget};
use chronicle::store::cells::CellStore;
use chronicle::store::embedded::EmbeddedCells;
use chronicle::store::ledger::tables;
use chronicle::store::{BlockStore, LedgerStore};
use chronicle::worker::spec::{
    ChainSpec, FromEnv, Keep, LakeSpec, RetentionRuleSpec, RetentionSpec, StoreSpec, Work, WorkerSpec,
};
use support::{BigtableEmulator, Postgres, bigtable_ledger, dump, replayed};
use tokio::process::Command;

const FIRST: u64 = 40_000_000;
const COUNT: u64 = 40;
const NEWEST: u64 = FIRST + COUNT - 1;
/// `keepSlots: 15` keeps FIRST+25..=NEWEST.
const CUT: u64 = NEWEST + 1 - 15;

fn canonical(keep: Keep, method: RetentionMethod) -> RetentionRuleSpec {
    RetentionRuleSpec { target: RetentionTarget::Canonical, keep, method }
}

fn spec(store: StoreSpec, rules: Vec<RetentionRuleSpec>, dry_run: bool, guard: &[&str]) -> WorkerSpec {
    WorkerSpec::new(Work::Retention(RetentionSpec {
        policy: "chronicle/keep-recent".into(),
        chain: ChainSpec {
            family: ChainFamily::Solana,
            network: "mainnet-beta".into(),
            commitment: Commitment::Finalized,
            chain_id: None,
            confirmations: None,
            traces: None,
        },
        store,
        catalog: FromEnv::new("CHRONICLE_CATALOG_URL"),
        lake: None,
        rules,
        dry_run,
        guard: guard.iter().map(|g| g.to_string()).collect(),
        caches: Vec::new(),
    }))
}

/// Runs one retention pod's work; returns whether it succeeded and the record it left.
fn worker(spec: &WorkerSpec, catalog_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .args(["worker", "run"])
        .env("CHRONICLE_WORKER_SPEC", spec.to_json())
        .env("CHRONICLE_CATALOG_URL", catalog_url)
        .env("RUST_LOG", "info")
        .env_remove("BIGTABLE_EMULATOR_HOST")
        .stdin(Stdio::null());
    command
}

async fn run(spec: &WorkerSpec, catalog_url: &str) -> (bool, String, Option<RetentionRecord>) {
    let output = worker(spec, catalog_url).output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    let catalog = catalog::open(catalog_url).await.unwrap();
    (output.status.success(), log, catalog.retention("chronicle/keep-recent").await.unwrap())
}

async fn fill(store: &LedgerStore, slots: std::ops::RangeInclusive<u64>) {
    for (slot, block) in replayed(FIRST, COUNT).into_iter().filter(|(s, _)| slots.contains(s)) {
        store.write_block(slot, &block, &[]).await.unwrap();
    }
}

/// A replication job in the catalog that has confirmed `FIRST..=checkpoint`.
async fn replica_confirmed(catalog: &dyn Catalog, checkpoint: u64) {
    let range = ShardRange { shard: 0, start: FIRST, end: NEWEST };
    catalog.shard("chronicle/replica#backfill", range).await.unwrap();
    let outcome = BatchOutcome { checkpoint: Some(checkpoint), ..BatchOutcome::default() };
    catalog.commit("chronicle/replica#backfill", 0, &outcome).await.unwrap();
}

/// A store of each backend, opened by the test, and its spec; `reopen`
/// gives the test a handle again after a worker process used the store.
enum Backend {
    Bigtable(BigtableEmulator),
    Embedded(tempfile::TempDir),
}

impl Backend {
    fn spec(&self, instance: &str) -> StoreSpec {
        match self {
            Backend::Bigtable(emulator) => StoreSpec {
                url: format!("bigtable://emulator/{instance}"),
                emulator_host: Some(emulator.host()),
                credentials_file: None,
            },
            Backend::Embedded(dir) => {
                StoreSpec { url: format!("embedded://{}", dir.path().join(instance).display()), ..StoreSpec::default() }
            }
        }
    }

    async fn open(&self, instance: &str) -> Arc<LedgerStore> {
        match self {
            Backend::Bigtable(emulator) => bigtable_ledger(emulator, "emulator", instance).await,
            Backend::Embedded(dir) => {
                let cells = EmbeddedCells::open(&dir.path().join(instance)).unwrap();
                cells.ensure_tables(&tables::ALL).await.unwrap();
                Arc::new(LedgerStore::new(Arc::new(cells)))
            }
        }
    }
}

async fn prunes_exactly_below_the_cut(backend: Backend) {
    let pg = Postgres::start();
    let catalog = catalog::open(&pg.url()).await.unwrap();
    let store = backend.open("ledger").await;
    fill(&store, FIRST..=NEWEST).await;
    // What the store must hold afterwards: the kept blocks alone, written the same way.
    let expected = backend.open("expected").await;
    fill(&expected, CUT..=NEWEST).await;
    let expected_rows = dump(expected.cells()).await;
    drop(expected);
    let before = dump(store.cells()).await;
    // An address of a block below the cut, and its history before pruning.
    let address = replayed(FIRST, 1)[&FIRST].transactions[0].account_keys()[0];
    let history = store.signatures_for_address(&address, None, None, 1000).await.unwrap();
    assert!(history.iter().any(|s| s.slot < CUT));
    drop(store);
    let keep = canonical(Keep::Slots { slots: 15 }, RetentionMethod::Prune);
    let guard = ["chronicle/replica#backfill"];

    // A dry run reports and changes nothing.
    let (ok, log, record) = run(&spec(backend.spec("ledger"), vec![keep.clone()], true, &[]), &pg.url()).await;
    assert!(ok, "{log}");
    let dry = record.unwrap();
    assert_eq!((dry.phase.as_str(), dry.dry_run, dry.cut, dry.oldest_kept), ("Succeeded", true, Some(CUT), Some(CUT)));
    assert_eq!(dry.blocks_removed, CUT - FIRST);
    let store = backend.open("ledger").await;
    assert_eq!(dump(store.cells()).await, before, "a dry run changes nothing");
    drop(store);

    // The guard holds the cut at what the replica confirmed.
    // Its /metrics, scraped once its work is done, count what it removed.
    replica_confirmed(catalog.as_ref(), FIRST + 9).await;
    let mut worker = worker(&spec(backend.spec("ledger"), vec![keep.clone()], false, &guard), &pg.url());
    let scraped = tokio::task::block_in_place(|| support::run_and_scrape(worker.as_std_mut()));
    assert!(scraped.success, "{}", scraped.log);
    let held = catalog.retention("chronicle/keep-recent").await.unwrap().unwrap();
    let metrics = &scraped.metrics;
    let removed = |outcome: &str| {
        support::sample(metrics, &format!("chronicle_retention_removed_total{{outcome=\"{outcome}\"}}"))
    };
    assert_eq!(support::sample(metrics, r#"chronicle_retention_runs_total{outcome="succeeded"}"#), Some(1.0));
    assert_eq!((removed("blocks"), removed("rows")), (Some(10.0), Some(held.rows_removed as f64)), "{metrics}");
    assert_eq!(removed("bytes"), Some(held.bytes_removed as f64));
    assert_eq!((held.cut, held.held_at, held.oldest_kept), (Some(CUT), Some(FIRST + 10), Some(FIRST + 10)));
    assert_eq!(held.blocks_removed, 10);
    let store = backend.open("ledger").await;
    assert_eq!(store.first_available_block().await.unwrap(), Some(FIRST + 10));
    drop(store);

    // Once the replica confirms everything, the rules' cut applies.
    replica_confirmed(catalog.as_ref(), NEWEST).await;
    let (ok, log, record) = run(&spec(backend.spec("ledger"), vec![keep], false, &guard), &pg.url()).await;
    assert!(ok, "{log}");
    let done = record.unwrap();
    assert_eq!((done.held_at, done.oldest_kept), (None, Some(CUT)));
    assert_eq!(held.rows_removed + done.rows_removed, dry.rows_removed, "the dry run counted exactly what went");
    assert_eq!(held.bytes_removed + done.bytes_removed, dry.bytes_removed);
    let store = backend.open("ledger").await;
    let remaining = dump(store.cells()).await;
    assert_eq!(remaining, expected_rows, "every table holds exactly the rows of the kept blocks");
    assert_eq!(store.first_available_block().await.unwrap(), Some(CUT));
    let history = store.signatures_for_address(&address, None, None, 1000).await.unwrap();
    assert!(!history.is_empty() && history.iter().all(|s| s.slot >= CUT), "address history moves with the cut");
    if matches!(backend, Backend::Embedded(_)) {
        assert!(done.bytes_reclaimed.is_some(), "the embedded store measures the space it gave back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_bigtable_exactly_below_the_cut() {
    prunes_exactly_below_the_cut(Backend::Bigtable(BigtableEmulator::start())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_the_embedded_store_exactly_below_the_cut() {
    prunes_exactly_below_the_cut(Backend::Embedded(tempfile::tempdir().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_rule_is_set_on_bigtable_and_refused_by_the_embedded_store() {
    let pg = Postgres::start();
    let emulator = BigtableEmulator::start();
    let backend = Backend::Bigtable(emulator);
    drop(backend.open("ledger").await);
    let rule = canonical(Keep::Age { seconds: 180 * 86_400 }, RetentionMethod::GcRule);
    let (ok, log, record) = run(&spec(backend.spec("ledger"), vec![rule.clone()], false, &[]), &pg.url()).await;
    assert!(ok, "{log}");
    assert!(record.unwrap().gc_rule.unwrap().starts_with("maxAge=15552000s"));
    let Backend::Bigtable(emulator) = &backend else { unreachable!() };
    for table in ["blocks", "tx", "tx-by-addr", "entries"] {
        let listed = support::cbt(emulator, "emulator", "ledger", &["ls", table]);
        assert!(listed.contains("age() > 180d"), "{table}: {listed}");
    }
    let embedded = Backend::Embedded(tempfile::tempdir().unwrap());
    drop(embedded.open("ledger").await);
    let (ok, _, record) = run(&spec(embedded.spec("ledger"), vec![rule], false, &[]), &pg.url()).await;
    let record = record.unwrap();
    assert!(!ok && record.phase == "Failed", "{record:?}");
    assert!(record.message.unwrap().contains("no garbage-collection rules"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_partitions_wholly_below_the_cut_are_removed() {
    let blocks = replayed(FIRST, COUNT);
    let peer = support::rpc_peer::RpcPeer::start(blocks).await;
    let dir = tempfile::tempdir().unwrap();
    let (ledger, catalog_url) =
        (dir.path().join("ledger"), format!("embedded://{}", dir.path().join("catalog").display()));
    let lake = format!("file://{}", dir.path().join("lake").display());
    let output = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["worker", "ingest", "--job", "lake", "--rpc", &peer.url(), "--lake", &lake, "--batch-size", "10"])
        .args(["--store", &format!("embedded://{}", ledger.display()), "--catalog", &catalog_url])
        .args(["--from", &FIRST.to_string(), "--to", &NEWEST.to_string()])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut worker = spec(
        StoreSpec { url: format!("embedded://{}", ledger.display()), ..StoreSpec::default() },
        vec![RetentionRuleSpec {
            target: RetentionTarget::Lake,
            keep: Keep::Slots { slots: 15 },
            method: RetentionMethod::Prune,
        }],
        false,
        &[],
    );
    let Work::Retention(retention) = &mut worker.work else { unreachable!() };
    retention.lake = Some(LakeSpec { url: lake.clone() });
    let (ok, log, record) = run(&worker, &catalog_url).await;
    assert!(ok, "{log}");
    let record = record.unwrap();
    // Batches of 10 slots: [F, F+9] and [F+10, F+19] lie below F+25; [F+20, F+29] straddles it and stays.
    let tables = 5;
    assert_eq!(record.lake_objects_removed, 2 * tables, "{record:?}");
    let catalog = catalog::open(&catalog_url).await.unwrap();
    let left = catalog.partitions("lake").await.unwrap();
    assert!(left.iter().all(|p| p.first >= FIRST + 20), "{left:?}");
    assert_eq!(left.len() as u64, 2 * tables);
    for partition in left {
        assert!(dir.path().join("lake").join(&partition.path).is_file());
    }
    let blocks_dir = dir.path().join("lake/solana/mainnet-beta/blocks");
    let mut files: Vec<String> =
        std::fs::read_dir(blocks_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            format!("{:012}-{:012}.parquet", FIRST + 20, FIRST + 29),
            format!("{:012}-{:012}.parquet", FIRST + 30, NEWEST)
        ]
    );
}
