//! The canonical block store on both backends (the Bigtable emulator and the
//! embedded store), with real mainnet blocks: round trips, agave's exact row
//! keys and cells, bad input, idempotent writes, the address index.

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::str::FromStr;
use std::sync::Arc;

use chronicle::chain::solana::decode::{DecodeError, block_from_rpc};
use chronicle::chain::solana::response::read_block_file;
use chronicle::store::cells::{Cell, CellStore, KeyRange, Row, Table, TableWrite};
use chronicle::store::embedded::EmbeddedCells;
use chronicle::store::ledger::proto_to_block;
use chronicle::store::ledger::tables;
use chronicle::store::{BlockStore, LedgerStore, StoreError};
use prost::Message as _;
use serde_json::Value;
use solana_pubkey::Pubkey;
use solana_signature::Signature;
use solana_storage_proto::convert::generated;
use solana_transaction_status::{
    BlockEncodingOptions, TransactionDetails, UiTransactionEncoding, VersionedConfirmedBlock,
};
use support::{BigtableEmulator, assert_json_covers, cbt, data_file, dump};

/// The JSON fixtures that carry raw transactions, with the slot each is stored at.
const JSON_FIXTURES: &[(&str, u64)] = &[
    ("solana/block_100000000_json.json", 100_000_000),
    ("solana/block_100000000_subset_json.json", 100_000_000),
    ("solana/block_154808473_v0_json.json", 154_808_473),
    ("solana/transaction_err_json.json", 100_000_000),
];

const PROTOBUF_FIXTURES: &[(&str, u64)] = &[("solana/18144001.pb", 18_144_001), ("solana/64800004.pb", 64_800_004)];

/// agave's reserved account keys (never indexed in `tx-by-addr`), from the
/// format notes, section 5 — kept here independently of the code under test.
const RESERVED: &[&str] = &[
    "11111111111111111111111111111111",
    "Vote111111111111111111111111111111111111111",
    "Stake11111111111111111111111111111111111111",
    "StakeConfig11111111111111111111111111111111",
    "Config1111111111111111111111111111111111111",
    "ComputeBudget111111111111111111111111111111",
    "AddressLookupTab1e1111111111111111111111111",
    "BPFLoader1111111111111111111111111111111111",
    "BPFLoader2111111111111111111111111111111111",
    "BPFLoaderUpgradeab1e11111111111111111111111",
    "LoaderV411111111111111111111111111111111111",
    "NativeLoader1111111111111111111111111111111",
    "Feature111111111111111111111111111111111111",
    "Ed25519SigVerify111111111111111111111111111",
    "KeccakSecp256k11111111111111111111111111111",
    "Secp256r1SigVerify1111111111111111111111111",
    "ZkE1Gama1Proof11111111111111111111111111111",
    "ZkTokenProof1111111111111111111111111111111",
    "Sysvar1111111111111111111111111111111111111",
    "SysvarC1ock11111111111111111111111111111111",
    "SysvarEpochRewards1111111111111111111111111",
    "SysvarEpochSchedu1e111111111111111111111111",
    "SysvarFees111111111111111111111111111111111",
    "Sysvar1nstructions1111111111111111111111111",
    "SysvarLastRestartS1ot1111111111111111111111",
    "SysvarRecentB1ockHashes11111111111111111111",
    "SysvarRent111111111111111111111111111111111",
    "SysvarRewards111111111111111111111111111111",
    "SysvarS1otHashes111111111111111111111111111",
    "SysvarS1otHistory11111111111111111111111111",
    "SysvarStakeHistory1111111111111111111111111",
];

/// One store per backend; the emulator and temp dir live as long as this.
struct Stores {
    _emulator: BigtableEmulator,
    _dir: tempfile::TempDir,
    all: Vec<(&'static str, Arc<LedgerStore>)>,
}

async fn bigtable_store(emulator: &BigtableEmulator, instance: &str) -> Arc<LedgerStore> {
    support::bigtable_ledger(emulator, "chronicle-test", instance).await
}

async fn stores() -> Stores {
    let emulator = BigtableEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(dir.path()).unwrap())));
    let bigtable = bigtable_store(&emulator, "ledger").await;
    Stores { _emulator: emulator, _dir: dir, all: vec![("embedded", embedded), ("bigtable", bigtable)] }
}

fn source_json(relative: &str) -> Value {
    serde_json::from_slice(&std::fs::read(data_file(relative)).unwrap()).unwrap()
}

fn json_block(relative: &str, slot: u64) -> VersionedConfirmedBlock {
    let block = read_block_file(&data_file(relative), Some(slot)).unwrap_or_else(|e| panic!("{relative}: {e}")).1;
    block.try_into().expect("every transaction has meta")
}

fn proto_block(relative: &str) -> (Vec<u8>, VersionedConfirmedBlock) {
    let bytes = std::fs::read(data_file(relative)).unwrap();
    let decoded = generated::ConfirmedBlock::decode(bytes.as_slice()).unwrap();
    let block = proto_to_block(decoded).unwrap().try_into().expect("every transaction has meta");
    (bytes, block)
}

fn options(max_version: Option<u8>, show_rewards: bool) -> BlockEncodingOptions {
    BlockEncodingOptions {
        transaction_details: TransactionDetails::Full,
        show_rewards,
        max_supported_transaction_version: max_version,
    }
}

#[tokio::test]
async fn json_fixtures_round_trip_on_both_backends() {
    for (index, (file, slot)) in JSON_FIXTURES.iter().enumerate() {
        // Several fixtures share a slot: each gets stores of its own.
        let emulator = BigtableEmulator::start();
        let dir = tempfile::tempdir().unwrap();
        let embedded = Arc::new(LedgerStore::new(Arc::new(EmbeddedCells::open(dir.path()).unwrap())));
        let bigtable = bigtable_store(&emulator, &format!("fixture-{index}")).await;
        let mut source = source_json(file);
        drop_inconsistent_status(&mut source);
        let has_versions = source["transactions"][0].get("version").is_some();
        let max_version = has_versions.then_some(0);
        // A response fetched with `rewards: false` has no block rewards field.
        let show_rewards = source.get("rewards").is_some();
        let block = json_block(file, *slot);
        for (backend, store) in [("embedded", embedded), ("bigtable", bigtable)] {
            let context = format!("{file} on {backend}");
            store.write_block(*slot, &block.clone().into(), &[]).await.unwrap();
            let stored = store.block(*slot).await.unwrap().unwrap_or_else(|| panic!("{context}: block missing"));
            let encoded = serde_json::to_value(
                stored.encode_with_options(UiTransactionEncoding::Json, options(max_version, show_rewards)).unwrap(),
            )
            .unwrap();
            assert_json_covers(&source, &encoded, &context);

            // Each transaction by signature, and all statuses in one read.
            let signatures: Vec<Signature> = block.transactions.iter().map(|t| t.transaction.signatures[0]).collect();
            for (i, signature) in signatures.iter().enumerate() {
                let tx =
                    store.transaction(signature).await.unwrap().unwrap_or_else(|| panic!("{context}: tx {i} missing"));
                assert_eq!((tx.slot, tx.index), (*slot, i as u32), "{context}: tx {i} position");
                let ours = serde_json::to_value(tx.encode(UiTransactionEncoding::Json, max_version).unwrap()).unwrap();
                assert_json_covers(
                    &source["transactions"][i]["transaction"],
                    &ours["transaction"],
                    &format!("{context} tx {i}"),
                );
                if show_rewards {
                    // getTransaction always shows rewards; compare metas of responses that carry them.
                    assert_json_covers(
                        &source["transactions"][i]["meta"],
                        &ours["meta"],
                        &format!("{context} tx {i} meta"),
                    );
                }
                assert_eq!(ours["blockTime"], source["blockTime"], "{context}: tx {i} blockTime");
            }
            let statuses = store.signature_statuses(&signatures).await.unwrap();
            for (i, status) in statuses.iter().enumerate() {
                let status = status.as_ref().unwrap_or_else(|| panic!("{context}: status {i} missing"));
                assert_eq!((status.slot, status.index), (*slot, i as u32));
                assert_eq!(
                    status.err.is_some(),
                    !source["transactions"][i]["meta"]["err"].is_null(),
                    "{context}: tx {i} err"
                );
            }
        }
    }
}

#[tokio::test]
async fn protobuf_fixtures_are_stored_byte_identical() {
    let stores = stores().await;
    for (file, slot) in PROTOBUF_FIXTURES {
        let (bytes, block) = proto_block(file);
        // agave's own prost types re-encode the recorded message byte for byte.
        let decoded = generated::ConfirmedBlock::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.encode_to_vec(), bytes, "{file}: prost re-encoding");
        for (backend, store) in &stores.all {
            store.write_block(*slot, &block.clone().into(), &[]).await.unwrap();
            let rows = store.cells().read_rows(tables::BLOCKS, &[format!("{slot:016x}")]).await.unwrap();
            let cell = rows[0].cell("proto").unwrap_or_else(|| panic!("{file} on {backend}: no proto cell"));
            assert_eq!(unwrap_envelope(cell), bytes, "{file} on {backend}: stored cell payload");
            let read_back = store.block(*slot).await.unwrap().unwrap();
            assert_eq!(VersionedConfirmedBlock::try_from(read_back).unwrap(), block, "{file} on {backend}: block");
        }
    }
}

/// `transaction_err_json.json` has a transaction whose `err` is set while its
/// deprecated `status` says Ok; no node prints that, and `err` is what we keep.
/// Such a `status` is compared as a node would print it (`{"Err": err}`).
fn drop_inconsistent_status(block: &mut Value) {
    for tx in block["transactions"].as_array_mut().unwrap() {
        let meta = tx["meta"].as_object_mut().unwrap();
        let status_err = meta["status"].get("Err").cloned().unwrap_or(Value::Null);
        if meta["err"] != status_err {
            let consistent = serde_json::json!({ "Err": meta["err"] });
            meta.insert("status".into(), consistent);
        }
    }
}

/// The compression envelope, decoded from scratch: a u32 little-endian method
/// tag (0 none, 1 bzip2, 2 gzip, 3 zstd) followed by the payload.
fn unwrap_envelope(cell: &[u8]) -> Vec<u8> {
    let tag = u32::from_le_bytes(cell[..4].try_into().unwrap());
    let payload = &cell[4..];
    let mut out = Vec::new();
    match tag {
        0 => out.extend_from_slice(payload),
        3 => {
            assert_eq!(&payload[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
            zstd::stream::read::Decoder::new(payload).unwrap().read_to_end(&mut out).unwrap();
        }
        other => panic!("a 4.x writer only uses tags 0 and 3, found {other}"),
    }
    out
}

/// Row keys of one table as `cbt read` prints them (the line after each rule).
fn cbt_keys(emulator: &BigtableEmulator, instance: &str, table: &str) -> (BTreeSet<String>, String) {
    let out = cbt(emulator, "chronicle-test", instance, &["read", table]);
    let lines: Vec<&str> = out.lines().collect();
    let keys = lines.windows(2).filter(|w| w[0].starts_with("----")).map(|w| w[1].trim().to_string()).collect();
    (keys, out)
}

#[tokio::test]
async fn bigtable_rows_are_agaves_layout() {
    let emulator = BigtableEmulator::start();
    let store = bigtable_store(&emulator, "layout").await;
    let (file, slot) = ("solana/block_154808473_v0_json.json", 154_808_473u64);
    store.write_block(slot, &json_block(file, slot).into(), &[]).await.unwrap();
    let source = source_json(file);

    let (blocks, out) = cbt_keys(&emulator, "layout", "blocks");
    assert_eq!(blocks, BTreeSet::from(["00000000093a3099".to_string()]), "blocks keys");
    assert!(out.contains("x:proto"), "blocks qualifier: {out}");

    let tx = &source["transactions"][0];
    let signature = tx["transaction"]["signatures"][0].as_str().unwrap().to_string();
    let (tx_keys, out) = cbt_keys(&emulator, "layout", "tx");
    assert_eq!(tx_keys, BTreeSet::from([signature]), "tx keys");
    assert!(out.contains("x:bin"), "tx qualifier: {out}");

    // Static keys, then the addresses loaded from lookup tables; reserved keys excluded.
    let message = &tx["transaction"]["message"];
    let loaded = &tx["meta"]["loadedAddresses"];
    let addresses = [&message["accountKeys"], &loaded["writable"], &loaded["readonly"]]
        .into_iter()
        .flat_map(|list| list.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()))
        .filter(|a| !RESERVED.contains(&a.as_str()));
    let expected: BTreeSet<String> = addresses.map(|a| format!("{a}/{:016x}", !slot)).collect();
    assert!(expected.iter().all(|k| k.ends_with("/fffffffff6c5cf66")));
    assert!(!loaded["writable"].as_array().unwrap().is_empty(), "the fixture exercises lookup tables");
    let (by_addr, out) = cbt_keys(&emulator, "layout", "tx-by-addr");
    assert_eq!(by_addr, expected, "tx-by-addr keys");
    assert!(out.contains("x:proto"), "tx-by-addr qualifier");

    // The blocks cell decodes with the envelope read from scratch.
    let rows = store.cells().read_rows(tables::BLOCKS, &["00000000093a3099".to_string()]).await.unwrap();
    let cell = rows[0].cell("proto").unwrap();
    assert_eq!(&cell[..4], &[3, 0, 0, 0], "blocks cells are zstd");
    let decoded = generated::ConfirmedBlock::decode(unwrap_envelope(cell).as_slice()).unwrap();
    assert_eq!(decoded.blockhash, source["blockhash"].as_str().unwrap());
    assert!(decoded.transactions[0].transaction.as_ref().unwrap().message.as_ref().unwrap().versioned);
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_changes_nothing() {
    let stores = stores().await;
    let (file, slot) = JSON_FIXTURES[0];
    let good = json_block(file, slot);
    for (backend, store) in &stores.all {
        store.write_block(slot, &good.clone().into(), &[]).await.unwrap();
        let before = dump(store.cells()).await;

        // A block JSON without its blockhash.
        let mut broken = source_json(file);
        broken.as_object_mut().unwrap().remove("blockhash");
        let err = block_from_rpc(slot, &broken).unwrap_err();
        assert!(matches!(&err, DecodeError::Shape { slot: s, .. } if *s == slot), "{err}");
        assert!(err.to_string().contains("slot 100000000") && err.to_string().contains("blockhash"), "{err}");

        // An instruction that points past the account keys is refused before any write.
        let mut bad = good.clone();
        if let solana_message::VersionedMessage::Legacy(m) = &mut bad.transactions[0].transaction.message {
            m.instructions[0].program_id_index = 200;
        }
        let err = store.write_block(slot + 1, &bad.into(), &[]).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidBlock { slot: s, .. } if s == slot + 1), "{backend}: {err}");
        assert_eq!(dump(store.cells()).await, before, "{backend}: a refused block changed the store");

        // Cells that are truncated, carry an unknown compression tag, or hold garbage.
        let cases: [(u64, Vec<u8>, &str); 3] = [
            (7, vec![3, 0], "shorter than the 4-byte compression tag"),
            (8, vec![9, 0, 0, 0, 1, 2, 3], "unknown compression tag 9"),
            (9, vec![3, 0, 0, 0, 0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3], "does not decompress"),
        ];
        for (bad_slot, value, expected) in cases {
            let cell = Cell { key: format!("{bad_slot:016x}"), qualifier: "proto", value };
            store.cells().write(vec![TableWrite { table: tables::BLOCKS, cells: vec![cell] }]).await.unwrap();
            let err = store.block(bad_slot).await.unwrap_err();
            match &err {
                StoreError::Corrupt { table: tables::BLOCKS, slot: Some(s), reason, .. } if *s == bad_slot => {
                    assert!(reason.contains(expected), "{backend}: {err}")
                }
                other => panic!("{backend}: expected a corrupt blocks cell at slot {bad_slot}, got {other}"),
            }
            assert!(
                err.to_string().contains(&format!("slot {bad_slot}")) && err.to_string().contains("blocks"),
                "{err}"
            );
        }
        // A protobuf payload that is not a block.
        let garbage = chronicle::store::envelope::envelope(chronicle::store::envelope::Method::None, &[0xff; 16]);
        let cell = Cell { key: format!("{:016x}", 10), qualifier: "proto", value: garbage };
        store.cells().write(vec![TableWrite { table: tables::BLOCKS, cells: vec![cell] }]).await.unwrap();
        assert!(matches!(
            store.block(10).await,
            Err(StoreError::Corrupt { table: tables::BLOCKS, slot: Some(10), .. })
        ));

        // A garbled tx cell names the tx table and the signature.
        let signature = good.transactions[1].transaction.signatures[0].to_string();
        let cell = Cell { key: signature.clone(), qualifier: "bin", value: vec![0, 0, 0, 0, 1] };
        store.cells().write(vec![TableWrite { table: tables::TX, cells: vec![cell] }]).await.unwrap();
        let err = store.signature_status(&Signature::from_str(&signature).unwrap()).await.unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { table: tables::TX, key, .. } if *key == signature), "{err}");

        // What was stored before is intact.
        let block = store.block(slot).await.unwrap().unwrap();
        assert_eq!(VersionedConfirmedBlock::try_from(block).unwrap(), good, "{backend}");
    }
}

#[tokio::test]
async fn writes_are_idempotent() {
    let stores = stores().await;
    let (file, slot) = JSON_FIXTURES[0];
    let block = json_block(file, slot);
    for (backend, store) in &stores.all {
        store.write_block(slot, &block.clone().into(), &[]).await.unwrap();
        let first = dump(store.cells()).await;
        store.write_block(slot, &block.clone().into(), &[]).await.unwrap();
        assert_eq!(dump(store.cells()).await, first, "{backend}: a second write changed cells");
        assert!(first.iter().any(|(t, _)| *t == tables::TX_BY_ADDR));
    }
}

#[tokio::test]
async fn address_history_is_newest_first_with_before_and_until() {
    let stores = stores().await;
    let (file, slot) = PROTOBUF_FIXTURES[0];
    let (_, block) = proto_block(file);
    // An address touched by several transactions of the block.
    let mut counts = std::collections::HashMap::<Pubkey, Vec<u32>>::new();
    for (i, tx) in block.transactions.iter().enumerate() {
        for key in tx.account_keys().iter() {
            if !RESERVED.contains(&key.to_string().as_str()) {
                counts.entry(*key).or_default().push(i as u32);
            }
        }
    }
    let (address, indexes) = counts.into_iter().max_by_key(|(k, v)| (v.len(), *k)).unwrap();
    assert!(indexes.len() >= 3, "fixture has an address in several transactions");
    let signature = |i: u32| block.transactions[i as usize].transaction.signatures[0];
    let newest_first: Vec<u32> = indexes.iter().rev().copied().collect();
    for (backend, store) in &stores.all {
        store.write_block(slot, &block.clone().into(), &[]).await.unwrap();
        let all = store.signatures_for_address(&address, None, None, 1000).await.unwrap();
        assert_eq!(all.iter().map(|s| s.index).collect::<Vec<_>>(), newest_first, "{backend}: all");
        assert!(all.iter().all(|s| s.slot == slot && s.block_time == block.block_time));
        let page = store.signatures_for_address(&address, None, None, 2).await.unwrap();
        assert_eq!(page.iter().map(|s| s.index).collect::<Vec<_>>(), newest_first[..2], "{backend}: limit");
        let before =
            store.signatures_for_address(&address, Some(&signature(newest_first[0])), None, 1000).await.unwrap();
        assert_eq!(before.iter().map(|s| s.index).collect::<Vec<_>>(), newest_first[1..], "{backend}: before");
        let until = store
            .signatures_for_address(&address, None, Some(&signature(*newest_first.last().unwrap())), 1000)
            .await
            .unwrap();
        assert_eq!(
            until.iter().map(|s| s.index).collect::<Vec<_>>(),
            newest_first[..newest_first.len() - 1],
            "{backend}: until"
        );
        let missing = Signature::from([7u8; 64]);
        assert!(matches!(
            store.signatures_for_address(&address, Some(&missing), None, 10).await,
            Err(StoreError::SignatureNotFound(_))
        ));
    }
}

#[tokio::test]
async fn block_listing_and_deletion() {
    let stores = stores().await;
    let (v0_file, v0_slot) = JSON_FIXTURES[2];
    let (pb_file, pb_slot) = PROTOBUF_FIXTURES[0];
    let (_, pb_block) = proto_block(pb_file);
    for (backend, store) in &stores.all {
        assert_eq!(store.first_available_block().await.unwrap(), None, "{backend}: empty store");
        assert_eq!(store.last_block().await.unwrap(), None, "{backend}: empty store");
        store.write_block(v0_slot, &json_block(v0_file, v0_slot).into(), &[]).await.unwrap();
        store.write_block(pb_slot, &pb_block.clone().into(), &[]).await.unwrap();
        assert_eq!(store.first_available_block().await.unwrap(), Some(pb_slot));
        assert_eq!(store.last_block().await.unwrap(), Some(v0_slot), "{backend}: last block");
        assert_eq!(store.blocks(0, 10).await.unwrap(), vec![pb_slot, v0_slot]);
        assert_eq!(store.blocks(pb_slot + 1, 10).await.unwrap(), vec![v0_slot]);
        assert_eq!(store.blocks(0, 1).await.unwrap(), vec![pb_slot]);
        assert_eq!(store.block_time(pb_slot).await.unwrap(), Some(None), "18144001 has no block time");
        assert_eq!(store.block_time(1).await.unwrap(), None);

        let stats = store.delete_range(0, pb_slot).await.unwrap();
        assert_eq!(stats.blocks, 1, "{backend}");
        assert_eq!(store.blocks(0, 10).await.unwrap(), vec![v0_slot]);
        let sig = pb_block.transactions[0].transaction.signatures[0];
        assert_eq!(store.signature_status(&sig).await.unwrap(), None, "{backend}: tx row deleted");
        let left: Vec<(Table, Row)> = dump(store.cells()).await;
        assert!(
            left.iter().all(|(t, r)| *t != tables::TX_BY_ADDR || r.key.ends_with(&format!("{:016x}", !v0_slot))),
            "{backend}: index rows of the deleted slot remain"
        );
    }
}

#[tokio::test]
async fn json_parsed_is_rendered_as_a_node_renders_it() {
    let stores = stores().await;
    let (file, slot) = JSON_FIXTURES[0];
    let expected = source_json("solana/block_100000000_jsonParsed.json");
    for (backend, store) in &stores.all {
        store.write_block(slot, &json_block(file, slot).into(), &[]).await.unwrap();
        let block = store.block(slot).await.unwrap().unwrap();
        let ours = serde_json::to_value(
            block.encode_with_options(UiTransactionEncoding::JsonParsed, options(Some(0), true)).unwrap(),
        )
        .unwrap();
        assert_json_covers(&expected, &ours, &format!("jsonParsed on {backend}"));
    }
}

#[tokio::test]
async fn entries_are_stored_when_known() {
    let stores = stores().await;
    let (file, slot) = PROTOBUF_FIXTURES[0];
    let (_, block) = proto_block(file);
    let entries = vec![
        solana_transaction_status::EntrySummary {
            num_hashes: 12_500,
            hash: solana_hash::Hash::new_from_array([1; 32]),
            num_transactions: 0,
            starting_transaction_index: 0,
        },
        solana_transaction_status::EntrySummary {
            num_hashes: 3,
            hash: solana_hash::Hash::new_from_array([2; 32]),
            num_transactions: 89,
            starting_transaction_index: 0,
        },
    ];
    for (backend, store) in &stores.all {
        store.write_block(slot, &block.clone().into(), &entries).await.unwrap();
        let read = store.entries(slot).await.unwrap().unwrap_or_else(|| panic!("{backend}: no entries"));
        assert_eq!(read.len(), 2);
        assert_eq!((read[1].num_hashes, read[1].num_transactions, read[1].hash), (3, 89, entries[1].hash));
        assert_eq!(store.entries(slot + 1).await.unwrap().map(|e| e.len()), None);
    }
}

/// An engine whose index writes fail, as a store that goes away mid-block would.
struct FailingIndexes(Arc<dyn CellStore>);

#[async_trait::async_trait]
impl CellStore for FailingIndexes {
    fn describe(&self) -> String {
        self.0.describe()
    }
    async fn ensure_tables(&self, tables: &[Table]) -> Result<(), chronicle::store::cells::BackendError> {
        self.0.ensure_tables(tables).await
    }
    async fn write(&self, writes: Vec<TableWrite>) -> Result<(), chronicle::store::cells::BackendError> {
        if writes.iter().any(|w| w.table == tables::TX_BY_ADDR) {
            return Err(chronicle::store::cells::BackendError {
                backend: self.describe(),
                table: "tx-by-addr".into(),
                message: "connection reset".into(),
            });
        }
        self.0.write(writes).await
    }
    async fn read_rows(
        &self,
        table: Table,
        keys: &[String],
    ) -> Result<Vec<Row>, chronicle::store::cells::BackendError> {
        self.0.read_rows(table, keys).await
    }
    async fn scan(
        &self,
        table: Table,
        range: KeyRange,
        limit: usize,
        keys_only: bool,
    ) -> Result<Vec<Row>, chronicle::store::cells::BackendError> {
        self.0.scan(table, range, limit, keys_only).await
    }
    async fn delete_rows(&self, table: Table, keys: &[String]) -> Result<(), chronicle::store::cells::BackendError> {
        self.0.delete_rows(table, keys).await
    }
    async fn sync(&self) -> Result<(), chronicle::store::cells::BackendError> {
        self.0.sync().await
    }
}

#[tokio::test]
async fn a_failed_index_write_leaves_no_block_visible() {
    let stores = stores().await;
    let (file, slot) = PROTOBUF_FIXTURES[0];
    let (_, block) = proto_block(file);
    for (backend, store) in &stores.all {
        let failing = LedgerStore::new(Arc::new(FailingIndexes(store.cells().clone())));
        let err = failing.write_block(slot, &block.clone().into(), &[]).await.unwrap_err();
        assert!(err.to_string().contains("tx-by-addr") && err.to_string().contains("connection reset"), "{err}");
        assert_eq!(store.block(slot).await.unwrap(), None, "{backend}: block visible without its indexes");
        assert_eq!(store.blocks(0, 10).await.unwrap(), Vec::<u64>::new());
        // The retry (a healthy store) completes the block.
        store.write_block(slot, &block.clone().into(), &[]).await.unwrap();
        assert!(store.block(slot).await.unwrap().is_some());
    }
}
