//! Replication between two Bigtable emulators (`IngestJob` `source: store`),
//! run as the controller's pods run it: `chronicle worker run` with a typed
//! worker spec, PostgreSQL as the catalog. The origin holds the four recorded
//! mainnet blocks replayed at consecutive slots (real bodies, derived slots:
//! a range of the recorded slots themselves would be 136 M slots wide). An
//! EVM chain's store (a real anvil chain, with its traces) replicates and is
//! retained by the same workers.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::catalog;
use chronicle::crd::chain_source::{ChainFamily, Commitment};
use chronicle::crd::ingest_job::IngestTarget;
use chronicle::store::cells::{Cell, KeyRange, TableWrite};
use chronicle::store::ledger::tables;
use chronicle::store::{BlockStore, LedgerStore};
use chronicle::worker::spec::{
    ChainSpec, FromEnv, IngestModeSpec, IngestSpec, SourceSpec, StoreSpec, Work, WorkerSpec,
};
use solana_storage_bigtable::LedgerStorage;
use support::{BigtableEmulator, Postgres, bigtable_ledger, dump, real_blocks, replayed};
use tokio::process::{Child, Command};

const PROJECT: &str = "emulator";

struct Replication<'a> {
    origin: &'a BigtableEmulator,
    target: &'a BigtableEmulator,
    catalog: String,
}

impl Replication<'_> {
    fn spec(&self, job: &str, mode: IngestModeSpec, verify: bool) -> WorkerSpec {
        self.spec_of(ChainFamily::Solana, ("origin", "replica"), job, mode, verify)
    }

    /// A replication of `family`'s store between the two instances `(origin, replica)`.
    fn spec_of(
        &self,
        family: ChainFamily,
        (origin, replica): (&str, &str),
        job: &str,
        mode: IngestModeSpec,
        verify: bool,
    ) -> WorkerSpec {
        let store = |emulator: &BigtableEmulator, instance: &str| StoreSpec {
            url: format!("bigtable://{PROJECT}/{instance}"),
            emulator_host: Some(emulator.host()),
            credentials_file: None,
        };
        WorkerSpec::new(Work::Ingest(IngestSpec {
            job: job.into(),
            chain: ChainSpec {
                family,
                network: "mainnet-beta".into(),
                commitment: Commitment::Finalized,
                chain_id: None,
                confirmations: None,
                traces: None,
            },
            source: SourceSpec::Store { origin: store(self.origin, origin), verify, repair: true },
            mode,
            batch_size: 5,
            targets: vec![IngestTarget::Canonical],
            store: store(self.target, replica),
            catalog: FromEnv::new("CHRONICLE_CATALOG_URL"),
            lake: None,
            caches: Vec::new(),
            metrics: None,
        }))
    }

    fn worker(&self, spec: &WorkerSpec) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
        command
            .args(["worker", "run"])
            .env("CHRONICLE_WORKER_SPEC", spec.to_json())
            .env("CHRONICLE_CATALOG_URL", &self.catalog)
            .env("RUST_LOG", "info")
            .env_remove("BIGTABLE_EMULATOR_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, spec: &WorkerSpec) -> String {
        let output = tokio::time::timeout(Duration::from_secs(180), self.worker(spec).output())
            .await
            .expect("the replication finished in time")
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "replication failed:\n{log}");
        log
    }
}

fn backfill(from: u64, to: u64) -> IngestModeSpec {
    IngestModeSpec::Backfill { from, to, shards: 1 }
}

/// The origin, holding the real blocks replayed at `first..first + count`,
/// written in slot order (a replayed signature's `tx` row points at its last slot).
async fn filled_origin(emulator: &BigtableEmulator, first: u64, count: u64) -> Arc<LedgerStore> {
    let origin = bigtable_ledger(emulator, PROJECT, "origin").await;
    for (slot, block) in replayed(first, count) {
        origin.write_block(slot, &block, &[]).await.unwrap();
    }
    origin
}

/// 20 slots each side of the boundary between epochs 249 and 250.
const FIRST: u64 = 250 * 432_000 - 20;
const LAST: u64 = FIRST + 39;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_equals_its_origin_and_verification_finds_and_repairs_damage() {
    let (origin_emulator, target_emulator) = (BigtableEmulator::start(), BigtableEmulator::start());
    let origin = filled_origin(&origin_emulator, FIRST, LAST - FIRST + 1).await;
    let pg = Postgres::start();
    let replication = Replication { origin: &origin_emulator, target: &target_emulator, catalog: pg.url() };
    let (first, last) = (FIRST, LAST);

    replication.run(&replication.spec("copy", backfill(first, last), false)).await;
    let target = bigtable_ledger(&target_emulator, PROJECT, "replica").await;
    let origin_rows = dump(origin.cells()).await;
    assert_eq!(dump(target.cells()).await, origin_rows, "the replica differs from its origin row by row");
    assert!(origin_rows.len() > 100, "every table is copied, not just blocks");
    assert!(origin_rows.iter().any(|(t, _)| *t == tables::TX_BY_OWNER), "Chronicle's owner index is copied too");

    // Agave's own reader reads the replica.
    let agave =
        LedgerStorage::new_for_emulator("replica", "default", &target_emulator.host(), Some(Duration::from_secs(30)))
            .unwrap();
    for (slot, block) in replayed(LAST - 3, 4) {
        let read = agave.get_confirmed_block(slot).await.unwrap();
        assert_eq!(read.blockhash, block.blockhash, "agave reads slot {slot} from the replica");
        let signature = *block.transactions[0].transaction_signature();
        let found = agave.get_confirmed_transaction(&signature).await.unwrap().expect("agave finds the transaction");
        assert_eq!(found.slot, slot);
    }
    assert_eq!(agave.get_confirmed_blocks(FIRST, 100).await.unwrap(), (FIRST..=LAST).collect::<Vec<_>>());

    // Damage the replica: one cell changed, one index row deleted.
    let cells = target.cells();
    let signature = replayed(LAST - 3, 4)[&(LAST - 2)].transactions[0].transaction_signature().to_string();
    let tx_row = cells.read_rows(tables::TX, std::slice::from_ref(&signature)).await.unwrap().remove(0);
    let mut corrupted = tx_row.cells[0].1.clone();
    *corrupted.last_mut().unwrap() ^= 0xff;
    let cell = Cell { key: signature.clone(), qualifier: "bin", value: corrupted };
    cells.write(vec![TableWrite { table: tables::TX, cells: vec![cell] }]).await.unwrap();
    let by_addr = cells
        .scan(tables::TX_BY_ADDR, KeyRange { start: String::new(), end: None }, 1, true)
        .await
        .unwrap()
        .remove(0)
        .key;
    cells.delete_rows(tables::TX_BY_ADDR, std::slice::from_ref(&by_addr)).await.unwrap();
    assert_ne!(dump(target.cells()).await, origin_rows);

    // The verifying run, its /metrics scraped once its work is done.
    let mut worker = replication.worker(&replication.spec("verify", backfill(first, last), true));
    let run = tokio::task::block_in_place(|| support::run_and_scrape(worker.as_std_mut()));
    assert!(run.success, "replication failed:\n{}", run.log);
    assert_eq!(dump(target.cells()).await, origin_rows, "verification repaired the replica");
    let rows = |outcome: &str| {
        support::sample(&run.metrics, &format!("chronicle_replication_rows_total{{outcome=\"{outcome}\"}}"))
    };
    assert_eq!(rows("compared"), Some(origin_rows.len() as f64), "{}", run.metrics);
    assert_eq!(
        (rows("missing"), rows("mismatched"), rows("repaired"), rows("copied")),
        (Some(1.0), Some(1.0), Some(2.0), Some(2.0))
    );
    let catalog = catalog::open(&pg.url()).await.unwrap();
    let mismatches = catalog.mismatches("verify").await.unwrap();
    let mut found: Vec<(&str, &str, &str, bool)> =
        mismatches.iter().map(|m| (m.table.as_str(), m.key.as_str(), m.kind.as_str(), m.repaired)).collect();
    found.sort();
    let expected =
        vec![("tx", signature.as_str(), "different", true), ("tx-by-addr", by_addr.as_str(), "missing", true)];
    assert_eq!(found, expected, "exactly the damaged rows are found");
    let shards = catalog.shards("verify").await.unwrap();
    let counts = shards[0].1.replica;
    assert_eq!((counts.rows_missing, counts.rows_mismatched, counts.rows_repaired), (1, 1, 2));
    assert_eq!(counts.rows_compared, origin_rows.len() as u64);
    assert_eq!(counts.rows_copied, 2, "rows already equal are not written again");
    // One digest per epoch, both sides equal: the replica is proven equal.
    let digests = catalog.digests("verify").await.unwrap();
    assert_eq!(digests.iter().map(|d| (d.epoch, d.blocks)).collect::<Vec<_>>(), vec![(249, 20), (250, 20)]);
    assert!(digests.iter().all(|d| d.proven_equal()), "{digests:?}");
    assert_eq!(digests.iter().map(|d| d.rows).sum::<u64>(), origin_rows.len() as u64);
    // The plain copy digested the origin side only.
    let copy = catalog.digests("copy").await.unwrap();
    assert_eq!(
        copy.iter().map(|d| &d.origin).collect::<Vec<_>>(),
        digests.iter().map(|d| &d.origin).collect::<Vec<_>>()
    );
    assert!(copy.iter().all(|d| d.target.is_none()));

    // Verifying again finds nothing.
    replication.run(&replication.spec("verify-again", backfill(first, last), true)).await;
    assert!(catalog.mismatches("verify-again").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replication_resumes_to_the_same_replica() {
    let (origin_emulator, target_emulator) = (BigtableEmulator::start(), BigtableEmulator::start());
    let (first, count) = (500_000, 300);
    let origin = filled_origin(&origin_emulator, first, count).await;
    let pg = Postgres::start();
    let replication = Replication { origin: &origin_emulator, target: &target_emulator, catalog: pg.url() };
    let spec = replication.spec("killed", backfill(first, first + count - 1), false);
    let catalog = catalog::open(&pg.url()).await.unwrap();

    let mut child: Child = replication.worker(&spec).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        let checkpoint = catalog.shards("killed").await.ok().and_then(|s| s.first().and_then(|(_, st)| st.checkpoint));
        if let Some(checkpoint) = checkpoint {
            break checkpoint;
        }
        assert!(Instant::now() < deadline, "no checkpoint committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.start_kill().unwrap(); // SIGKILL mid-copy
    child.wait().await.unwrap();
    assert!(at_kill < first + count - 1, "killed before the end (at checkpoint {at_kill})");

    replication.run(&spec).await;
    let target = bigtable_ledger(&target_emulator, PROJECT, "replica").await;
    assert_eq!(dump(target.cells()).await, dump(origin.cells()).await, "the resumed replica differs from its origin");
    let state = &catalog.shards("killed").await.unwrap()[0].1;
    assert_eq!(state.checkpoint, Some(first + count - 1));
    assert_eq!(state.blocks_written, count, "each block committed once across the two runs");
}

/// A following replication copies blocks as they land — of an origin fed at
/// `confirmed`, only those through its finalized watermark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailing_replication_picks_up_new_blocks() {
    let (origin_emulator, target_emulator) = (BigtableEmulator::start(), BigtableEmulator::start());
    let origin = filled_origin(&origin_emulator, FIRST, 8).await;
    // The origin is fed at `confirmed`: only blocks through its watermark are final.
    origin.set_finalized_slot(FIRST + 5).await.unwrap();
    let pg = Postgres::start();
    let replication = Replication { origin: &origin_emulator, target: &target_emulator, catalog: pg.url() };
    let spec = replication.spec("tail", IngestModeSpec::Follow { from: Some(FIRST) }, true);
    let child = replication.worker(&spec).spawn().unwrap();
    let target = bigtable_ledger(&target_emulator, PROJECT, "replica").await;
    let wait_for = async |slot: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while target.block(slot).await.unwrap().is_none() {
            assert!(Instant::now() < deadline, "slot {slot} did not reach the replica");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_for(FIRST + 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(target.block(FIRST + 6).await.unwrap().is_none(), "a block above the origin's watermark was copied");
    // A block written to the origin after the replication started, and the origin's watermark moving past it.
    let (_, block) = real_blocks().remove(0);
    origin.write_block(FIRST + 9, &block, &[]).await.unwrap();
    origin.set_finalized_slot(FIRST + 9).await.unwrap();
    wait_for(FIRST + 9).await;
    let (status, log) = support::terminate(child).await;
    assert!(status.success(), "the follower stops cleanly on SIGTERM:\n{log}");
    assert_eq!(dump(target.cells()).await, dump(origin.cells()).await);
    let catalog = catalog::open(&pg.url()).await.unwrap();
    let head = catalog.head("tail").await.unwrap().expect("the origin's head is recorded");
    assert_eq!(head.head.number, FIRST + 9);
}

/// An anvil chain (transfers, an ERC-20, a reverted call) ingested with its
/// traces, replicated to another instance equal row by row, a damaged row
/// found and repaired by verification; then retention on the replica keeps
/// the newest 10 blocks, exactly their rows left in every table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evm_store_is_replicated_verified_and_retained() {
    use chronicle::chain::evm::layout::tables as evm;
    use chronicle::store::block_rows::BlockRowsReader;
    use support::evm::{Anvil, finalized, ingest, node_script};
    let modules = tokio::task::spawn_blocking(support::node_modules).await.unwrap();
    let anvil = Anvil::start(&modules);
    let token_sol = format!("{}/tests/evm/Token.sol", env!("CARGO_MANIFEST_DIR"));
    node_script(&modules, "evm_drive.mjs", &[&anvil.url, &token_sol]);
    let newest = finalized(&anvil.url).await;
    let emulator = BigtableEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let catalog = format!("embedded://{}/catalog", dir.path().display());
    let (to, origin_url) = (newest.to_string(), format!("bigtable://{PROJECT}/evm-origin"));
    let out = ingest("anvil", &anvil.url, &origin_url, &catalog, &emulator, &["--from", "0", "--to", &to])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let access = chronicle::store::BigtableAccess { emulator_host: Some(emulator.host()), credentials_file: None };
    let open = |instance: &str| {
        let url = format!("bigtable://{PROJECT}/{instance}");
        let access = access.clone();
        async move { chronicle::store::open_for(&chronicle::chain::evm::Evm, &url, &access).await.unwrap() }
    };
    let origin = open("evm-origin").await;
    let origin_rows = support::dump_tables(origin.cells(), &evm::ALL).await;
    let traces = origin_rows.iter().filter(|(t, _)| *t == evm::TRACES).count() as u64;
    assert_eq!(traces, newest + 1, "every block stored with its traces");

    let pg = Postgres::start();
    let replication = Replication { origin: &emulator, target: &emulator, catalog: pg.url() };
    let instances = ("evm-origin", "evm-replica");
    let spec = |job: &str, verify| replication.spec_of(ChainFamily::Evm, instances, job, backfill(0, newest), verify);
    replication.run(&spec("evm-copy", false)).await;
    let replica = open("evm-replica").await;
    assert_eq!(support::dump_tables(replica.cells(), &evm::ALL).await, origin_rows, "the replica differs");

    // One trace row damaged, one address row lost: verification finds and repairs both.
    let cells = replica.cells();
    let key = format!("{:016x}", newest);
    let mut damaged = cells.read_rows(evm::TRACES, std::slice::from_ref(&key)).await.unwrap().remove(0);
    *damaged.cells[0].1.last_mut().unwrap() ^= 0xff;
    let cell = Cell { key: key.clone(), qualifier: "json", value: damaged.cells[0].1.clone() };
    cells.write(vec![TableWrite { table: evm::TRACES, cells: vec![cell] }]).await.unwrap();
    let everything = KeyRange { start: String::new(), end: None };
    let by_addr = cells.scan(evm::TX_BY_ADDR, everything, 1, false).await.unwrap().remove(0).key;
    cells.delete_rows(evm::TX_BY_ADDR, std::slice::from_ref(&by_addr)).await.unwrap();
    replication.run(&spec("evm-verify", true)).await;
    assert_eq!(support::dump_tables(replica.cells(), &evm::ALL).await, origin_rows, "verification repaired it");
    let catalog = catalog::open(&pg.url()).await.unwrap();
    let mut found: Vec<(String, String)> =
        catalog.mismatches("evm-verify").await.unwrap().into_iter().map(|m| (m.table, m.key)).collect();
    found.sort();
    assert_eq!(found, vec![("evm-traces".to_string(), key), ("evm-tx-by-addr".to_string(), by_addr)]);

    // Retention on the replica: the newest 10 blocks stay, with exactly their rows.
    let cut = newest + 1 - 10;
    let mut kept = Vec::new();
    for number in cut..=newest {
        kept.extend(origin.block_rows(number).await.unwrap().unwrap().rows);
    }
    let retention = chronicle::worker::spec::RetentionSpec {
        policy: "chronicle/evm-recent".into(),
        chain: ChainSpec {
            family: ChainFamily::Evm,
            network: "anvil".into(),
            commitment: Commitment::Finalized,
            chain_id: Some(31337),
            confirmations: None,
            traces: None,
        },
        store: StoreSpec {
            url: format!("bigtable://{PROJECT}/evm-replica"),
            emulator_host: Some(emulator.host()),
            credentials_file: None,
        },
        catalog: FromEnv::new("CHRONICLE_CATALOG_URL"),
        lake: None,
        rules: vec![chronicle::worker::spec::RetentionRuleSpec {
            target: chronicle::crd::retention_policy::RetentionTarget::Canonical,
            keep: chronicle::worker::spec::Keep::Slots { slots: 10 },
            method: chronicle::crd::retention_policy::RetentionMethod::Prune,
        }],
        dry_run: false,
        guard: Vec::new(),
        caches: Vec::new(),
    };
    replication.run(&WorkerSpec::new(Work::Retention(retention))).await;
    let mut left = support::dump_tables(replica.cells(), &evm::ALL).await;
    let key_of = |(table, row): &(chronicle::store::cells::Table, chronicle::store::cells::Row)| {
        (table.name().to_string(), row.key.clone())
    };
    left.sort_by_key(key_of);
    kept.sort_by_key(key_of);
    assert_eq!(left, kept, "every table holds exactly the kept blocks' rows");
    assert_eq!(replica.oldest().await.unwrap(), Some(cut));
}
