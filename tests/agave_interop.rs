//! Agave's own `solana-storage-bigtable` (`LedgerStorage`, the code agave RPC
//! nodes and `agave-ledger-tool bigtable` run) against the Bigtable emulator:
//! it reads what Chronicle writes, Chronicle reads what it uploads, and for
//! the same blocks both write the same rows, qualifiers and cell payloads.

mod support;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chronicle::store::cells::KeyRange;
use chronicle::store::envelope;
use chronicle::store::ledger::block_to_proto;
use chronicle::store::ledger::tables;
use chronicle::store::{BlockStore, LedgerStore};
use prost::Message as _;
use solana_pubkey::Pubkey;
use solana_storage_bigtable::LedgerStorage;
use solana_transaction_status::{ConfirmedBlock, EntrySummary, VersionedConfirmedBlockWithEntries};
use support::{BigtableEmulator, bigtable_ledger, early_blocks, real_blocks};

/// Chronicle's store on the emulator, in agave's emulator project (`emulator`).
async fn chronicle_store(emulator: &BigtableEmulator, instance: &str) -> Arc<LedgerStore> {
    bigtable_ledger(emulator, "emulator", instance).await
}

/// Equal as stored: agave's protobuf of both (it keeps no difference between
/// absent and empty per-transaction rewards).
fn same_block(read: ConfirmedBlock, expected: &ConfirmedBlock) -> bool {
    block_to_proto(&read).encode_to_vec() == block_to_proto(expected).encode_to_vec()
}

fn agave(emulator: &BigtableEmulator, instance: &str) -> LedgerStorage {
    LedgerStorage::new_for_emulator(instance, "default", &emulator.host(), Some(Duration::from_secs(30))).unwrap()
}

fn entries() -> Vec<EntrySummary> {
    vec![
        EntrySummary {
            num_hashes: 12_500,
            hash: solana_hash::Hash::new_from_array([4; 32]),
            num_transactions: 0,
            starting_transaction_index: 0,
        },
        EntrySummary {
            num_hashes: 7,
            hash: solana_hash::Hash::new_from_array([5; 32]),
            num_transactions: 1,
            starting_transaction_index: 0,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agave_reads_what_chronicle_writes() {
    let emulator = BigtableEmulator::start();
    let ours = chronicle_store(&emulator, "chronicle-wrote").await;
    let theirs = agave(&emulator, "chronicle-wrote");
    let blocks = real_blocks();
    for (slot, block) in &blocks {
        ours.write_block(*slot, block, &entries()).await.unwrap();
    }
    let slots: Vec<u64> = blocks.iter().map(|(s, _)| *s).collect();
    assert_eq!(theirs.get_first_available_block().await.unwrap(), Some(slots[0]));
    assert_eq!(theirs.get_confirmed_blocks(0, 10).await.unwrap(), slots);
    for (slot, block) in &blocks {
        let read = theirs.get_confirmed_block(*slot).await.unwrap();
        assert!(same_block(read, block), "agave reads slot {slot} differently");
        let read_entries: Vec<EntrySummary> = theirs.get_entries(*slot).await.unwrap().collect();
        assert_eq!(read_entries.len(), 2);
        for (i, tx) in block.transactions.iter().enumerate() {
            let signature = *tx.transaction_signature();
            let status = theirs.get_signature_status(&signature).await.unwrap();
            assert_eq!(
                (status.slot, status.err.is_some()),
                (*slot, tx.get_status_meta().is_some_and(|m| m.status.is_err()))
            );
            let confirmed =
                theirs.get_confirmed_transaction(&signature).await.unwrap().expect("agave finds the transaction");
            assert_eq!((confirmed.slot, confirmed.index), (*slot, i as u32));
        }
        // The address index, through agave's own algorithm, equals ours.
        for address in ours.indexed_addresses(block).into_iter().take(25) {
            let agave_list: Vec<_> =
                theirs.get_confirmed_signatures_for_address(&address, None, None, 1000).await.unwrap();
            let our_list = ours.signatures_for_address(&address, None, None, 1000).await.unwrap();
            let agave_sigs: Vec<_> = agave_list.iter().map(|(s, _)| (s.signature, s.slot, s.memo.clone())).collect();
            let our_sigs: Vec<_> = our_list.iter().map(|s| (s.signature, s.slot, s.memo.clone())).collect();
            assert_eq!(agave_sigs, our_sigs, "address {address}");
        }
    }
}

/// Blocks from the first epochs, whose transactions have no status metadata
/// (real slot 10000 and blocks derived from real ones; see `early_blocks`).
/// Agave's current uploader cannot write these (it takes only blocks whose
/// transactions all have metadata), so this direction is the one to prove:
/// agave reads them as its `MissingMetadata` case, finds their transactions
/// and statuses, and walks their address index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agave_reads_blocks_without_metadata_that_chronicle_writes() {
    use solana_transaction_status::TransactionWithStatusMeta;
    let emulator = BigtableEmulator::start();
    let ours = chronicle_store(&emulator, "early").await;
    let theirs = agave(&emulator, "early");
    let blocks = early_blocks();
    for (slot, block) in &blocks {
        ours.write_block(*slot, block, &[]).await.unwrap();
    }
    for (slot, block) in &blocks {
        let read = theirs.get_confirmed_block(*slot).await.unwrap();
        assert!(same_block(read.clone(), block), "agave reads slot {slot} differently");
        for (i, (theirs_tx, ours_tx)) in read.transactions.iter().zip(&block.transactions).enumerate() {
            let missing = |t: &TransactionWithStatusMeta| matches!(t, TransactionWithStatusMeta::MissingMetadata(_));
            assert_eq!(missing(theirs_tx), missing(ours_tx), "slot {slot} transaction {i}: metadata presence");
            let signature = *ours_tx.transaction_signature();
            let status = theirs.get_signature_status(&signature).await.unwrap();
            let failed = ours_tx.get_status_meta().is_some_and(|m| m.status.is_err());
            assert_eq!((status.slot, status.err.is_some()), (*slot, failed), "slot {slot} transaction {i}: status");
            let confirmed = theirs.get_confirmed_transaction(&signature).await.unwrap().expect("agave finds it");
            assert_eq!((confirmed.slot, confirmed.index), (*slot, i as u32));
            assert_eq!(missing(&confirmed.tx_with_meta), missing(ours_tx));
        }
        for address in ours.indexed_addresses(block).into_iter().take(25) {
            let agave_list = theirs.get_confirmed_signatures_for_address(&address, None, None, 1000).await.unwrap();
            let our_list = ours.signatures_for_address(&address, None, None, 1000).await.unwrap();
            let agave_sigs: Vec<_> =
                agave_list.iter().map(|(s, _)| (s.signature, s.slot, s.err.clone(), s.memo.clone())).collect();
            let our_sigs: Vec<_> =
                our_list.iter().map(|s| (s.signature, s.slot, s.err.clone(), s.memo.clone())).collect();
            assert_eq!(agave_sigs, our_sigs, "address {address}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chronicle_reads_what_agave_uploads_and_both_write_the_same_cells() {
    let emulator = BigtableEmulator::start();
    let agave_instance = "agave-wrote";
    let ours_instance = "chronicle-wrote";
    // Agave's uploader needs the tables to exist (init-bigtable.sh does this for it).
    let agave_side = chronicle_store(&emulator, agave_instance).await;
    let ours = chronicle_store(&emulator, ours_instance).await;
    let theirs = agave(&emulator, agave_instance);
    let blocks = real_blocks();
    for (slot, block) in &blocks {
        theirs
            .upload_confirmed_block_with_entries(
                *slot,
                VersionedConfirmedBlockWithEntries {
                    block: block.clone().try_into().expect("agave uploads only blocks with metadata"),
                    entries: entries(),
                },
            )
            .await
            .unwrap();
        ours.write_block(*slot, block, &entries()).await.unwrap();
    }
    // Chronicle reads agave's upload.
    for (slot, block) in &blocks {
        let read = agave_side.block(*slot).await.unwrap().expect("chronicle finds agave's block");
        assert!(same_block(read, block), "chronicle reads agave's slot {slot} differently");
        let token = Pubkey::from_str("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA").unwrap();
        assert_eq!(
            agave_side.signatures_for_address(&token, None, None, 100).await.unwrap(),
            ours.signatures_for_address(&token, None, None, 100).await.unwrap()
        );
    }
    // Same rows, same qualifiers, same payloads (compression framing aside),
    // in agave's four tables (Chronicle's owner index is its own).
    for table in tables::AGAVE {
        let all = || KeyRange { start: String::new(), end: None };
        let theirs_rows = agave_side.cells().scan(table, all(), usize::MAX, false).await.unwrap();
        let ours_rows = ours.cells().scan(table, all(), usize::MAX, false).await.unwrap();
        assert_eq!(theirs_rows.len(), ours_rows.len(), "{table}: row count");
        assert!(!ours_rows.is_empty(), "{table}: has rows");
        for (a, b) in theirs_rows.iter().zip(&ours_rows) {
            assert_eq!(a.key, b.key, "{table}: row keys");
            let qualifiers =
                |r: &chronicle::store::cells::Row| r.cells.iter().map(|(q, _)| q.clone()).collect::<Vec<_>>();
            assert_eq!(qualifiers(a), qualifiers(b), "{table} {}: qualifiers", a.key);
            for ((_, va), (_, vb)) in a.cells.iter().zip(&b.cells) {
                assert_eq!(va[..4], vb[..4], "{table} {}: compression method", a.key);
                assert!(
                    envelope::decompress(va).unwrap() == envelope::decompress(vb).unwrap(),
                    "{table} {}: payload",
                    a.key
                );
            }
        }
    }
}

/// An instance only agave ever wrote has none of Chronicle's own tables:
/// Chronicle still lists every row of its blocks (what replication copies and
/// retention deletes) and answers token-owner history with nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agave_made_instance_without_chronicles_tables_reads_whole() {
    use chronicle::store::block_rows::BlockRowsReader;
    use chronicle::store::cells::CellStore;
    let emulator = BigtableEmulator::start();
    let cells = chronicle::store::bigtable::BigtableCells::connect(chronicle::store::bigtable::BigtableConfig {
        project: "emulator".into(),
        instance: "agave-only".into(),
        app_profile: "default".into(),
        emulator_host: Some(emulator.host()),
        credentials_file: None,
        timeout: Duration::from_secs(30),
    })
    .await
    .unwrap();
    // What agave's init-bigtable.sh creates: its four tables.
    cells.ensure_tables(&tables::AGAVE).await.unwrap();
    assert!(!cells.has_table(tables::TX_BY_OWNER).await.unwrap());
    let theirs = agave(&emulator, "agave-only");
    // The v0 block: its swap's token balances name owners outside its keys.
    let (slot, block) = real_blocks().into_iter().find(|(slot, _)| *slot == 154_808_473).unwrap();
    let upload = VersionedConfirmedBlockWithEntries { block: block.clone().try_into().unwrap(), entries: entries() };
    theirs.upload_confirmed_block_with_entries(slot, upload).await.unwrap();

    let store = LedgerStore::new(Arc::new(cells));
    let rows = store.block_rows(slot).await.unwrap().expect("the block's rows");
    assert!(rows.rows.iter().all(|(table, _)| tables::AGAVE.contains(table)));
    assert!(rows.rows.iter().any(|(table, _)| *table == tables::TX_BY_ADDR));
    let owner = Pubkey::from_str("7tpzQQEQFJTi32eo89yFuV4ST41NSC7c6xd9Sny36iXW").unwrap();
    assert_eq!(store.owner_history(&owner, u64::MAX, 0, 10, false).await.unwrap(), vec![]);
}
