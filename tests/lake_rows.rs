//! Solana's normalized rows against blockchain-etl's own expected outputs
//! (`tests/data/solana/bigquery/`, real mainnet data, MIT): the block row of
//! slot 138802069, the 21 instruction rows of a transaction, and the 570
//! token transfers of slot 138802069. Our columns are the BigQuery dataset's
//! (`schemas/`); the expected files are the exporter's CSVs, mapped column by
//! column. The deliberate differences are asserted, not skipped (see
//! `docs/lake.md`).

use std::collections::BTreeMap;
use std::io::Read;

use chronicle::chain::solana::rows::{BlockContext, InstructionRow, Param, rows_of, transaction_rows};
use chronicle::chain::solana::token_transfers::token_transfers;
use serde_json::Value;
use solana_transaction_status::{EncodedConfirmedTransactionWithStatusMeta, UiConfirmedBlock};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/solana/bigquery/expected");

fn read(name: &str) -> String {
    let path = format!("{DATA}/{name}");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if name.ends_with(".gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_string(&mut text).unwrap();
        text
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

fn csv_rows(name: &str) -> Vec<BTreeMap<String, String>> {
    let text = read(name);
    csv::Reader::from_reader(text.as_bytes()).deserialize().map(|r| r.unwrap()).collect()
}

/// The `result` of a JSON-RPC batch response's first answer.
fn result<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let answers: Value = serde_json::from_str(&read(name)).unwrap();
    serde_json::from_value(answers[0]["result"].clone()).unwrap()
}

fn params_object(params: &[Param]) -> Value {
    params
        .iter()
        .map(|p| (p.key.clone(), serde_json::from_str(&p.value).unwrap()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[test]
fn the_block_row_and_its_rewards_match_blockchain_etl() {
    let block: UiConfirmedBlock = result("138802069_getBlock_signatures.json.gz");
    let rows = rows_of(138_802_069, &block);
    let expected = &csv_rows("138802069_expected_blocks.csv")[0];
    let row = &rows.blocks[0];
    assert_eq!(row.slot.to_string(), expected["number"]);
    assert_eq!(row.height.unwrap().to_string(), expected["height"]);
    assert_eq!(row.block_hash, expected["hash"]);
    assert_eq!(row.previous_block_hash.as_deref(), Some(expected["previous_block_hash"].as_str()));
    assert_eq!((row.block_timestamp.unwrap() / 1_000_000).to_string(), expected["timestamp"]);
    assert_eq!(row.transaction_count.unwrap().to_string(), expected["transaction_count"]);
    assert_eq!(row.leader_reward.unwrap().to_string(), expected["leader_reward"]);
    assert_eq!(row.leader.as_deref(), Some(expected["leader"].as_str()));
    // The exporter's `rewards` JSON column is the dataset's Block_Rewards table.
    let rewards: Vec<Value> = serde_json::from_str(&expected["rewards"]).unwrap();
    assert_eq!(rows.block_rewards.len(), rewards.len());
    assert_eq!(rewards.len(), 1766);
    for (row, reward) in rows.block_rewards.iter().zip(&rewards) {
        assert_eq!(row.pubkey.as_deref(), reward["pubkey"].as_str());
        assert_eq!(row.lamports, reward["lamports"].as_i64());
        assert_eq!(row.post_balance, reward["postBalance"].as_u64());
        assert_eq!(row.commission.map(u64::from), reward["commission"].as_u64());
        assert_eq!(row.reward_type.as_deref(), reward["rewardType"].as_str());
        assert_eq!((row.block_slot, row.block_hash.as_str()), (138_802_069, expected["hash"].as_str()));
    }
}

/// Programs only blockchain-etl's first exporter decodes itself (Serum DEX
/// v3, Mango v3: both retired); the node does not parse them, the BigQuery
/// dataset does not decode them, and neither do we.
const DECODED_BY_THE_OLD_EXPORTER_ONLY: [&str; 2] =
    ["9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin", "mv3ekLzLbnVPNxjSKvqBpU3ZeZXPQdEC3bp5MDEBG68"];

#[test]
fn instruction_rows_match_blockchain_etl() {
    let transaction: EncodedConfirmedTransactionWithStatusMeta = result("getTransaction_instructions_input.json");
    let context = BlockContext { slot: transaction.slot, hash: "unknown".into(), timestamp: transaction.block_time };
    let rows = transaction_rows(&context, 0, &transaction.transaction);
    let expected = csv_rows("getTransaction_expected_instructions.csv");
    assert_eq!(rows.instructions.len(), expected.len());
    assert_eq!(expected.len(), 21);
    let mut decoded_elsewhere = 0;
    for (row, want) in rows.instructions.iter().zip(&expected) {
        let at = format!("instruction {}/{}", want["parent_index"], want["index"]);
        assert_eq!(row.tx_signature, want["tx_signature"], "{at}");
        assert_eq!(row.index.to_string(), want["index"], "{at}");
        assert_eq!(row.parent_index.map(|p| p.to_string()).unwrap_or_default(), want["parent_index"], "{at}");
        assert_eq!(row.program_id, want["program_id"], "{at}");
        assert_eq!(row.data.clone().unwrap_or_default(), want["data"], "{at}");
        // The exporter writes `null` for a parsed instruction's accounts; the dataset `[]`.
        let accounts: Option<Vec<String>> = serde_json::from_str(&want["accounts"]).unwrap();
        assert_eq!(row.accounts, accounts.unwrap_or_default(), "{at}");
        if DECODED_BY_THE_OLD_EXPORTER_ONLY.contains(&row.program_id.as_str()) {
            decoded_elsewhere += 1;
            assert_eq!((row.program.as_deref(), row.instruction_type.as_deref()), (None, None), "{at}");
            assert!(row.params.is_empty(), "{at}");
            continue;
        }
        assert_eq!(row.program.clone().unwrap_or_default(), want["program"], "{at}");
        assert_eq!(row.instruction_type.clone().unwrap_or_default(), want["instruction_type"], "{at}");
        let params: Value = serde_json::from_str(&want["params"]).unwrap();
        assert_eq!(params_object(&row.params), params, "{at}");
    }
    assert_eq!(decoded_elsewhere, 12, "Serum and Mango rows");
    let tx = &rows.transactions[0];
    assert_eq!((tx.fee, tx.status.as_deref()), (Some(5000), Some("Success")));
    assert_eq!(tx.accounts.len(), tx.balance_changes.len());
}

/// The exporter's instruction CSV row as our row (its `params` JSON object
/// becomes key/value params, `accounts` `null` becomes empty).
fn instruction_from_csv(row: &BTreeMap<String, String>) -> InstructionRow {
    let text = |key: &str| Some(row[key].clone()).filter(|v| !v.is_empty());
    let params = match serde_json::from_str::<Value>(&row["params"]) {
        Ok(Value::Object(info)) => info.into_iter().map(|(key, v)| Param { key, value: v.to_string() }).collect(),
        _ => Vec::new(),
    };
    InstructionRow {
        block_slot: 138_802_069,
        tx_signature: row["tx_signature"].clone(),
        index: row["index"].parse().unwrap(),
        parent_index: text("parent_index").map(|p| p.parse().unwrap()),
        accounts: serde_json::from_str::<Option<Vec<String>>>(&row["accounts"]).unwrap_or_default().unwrap_or_default(),
        data: text("data"),
        program: text("program"),
        program_id: row["program_id"].clone(),
        instruction_type: text("instruction_type"),
        params,
        ..InstructionRow::default()
    }
}

#[test]
fn token_transfers_match_blockchain_etl() {
    let instructions: Vec<InstructionRow> =
        csv_rows("token_transfers_input_instructions.csv.gz").iter().map(instruction_from_csv).collect();
    assert_eq!(instructions.len(), 5376);
    // One list per transaction's top level and per inner group, in order.
    let mut transfers = Vec::new();
    let mut start = 0;
    for end in 1..=instructions.len() {
        let same = |a: &InstructionRow, b: &InstructionRow| {
            (&a.tx_signature, a.parent_index) == (&b.tx_signature, b.parent_index)
        };
        if end == instructions.len() || !same(&instructions[start], &instructions[end]) {
            transfers.extend(token_transfers(&instructions[start..end]));
            start = end;
        }
    }
    let expected = csv_rows("token_transfers_expected.csv");
    assert_eq!(transfers.len(), expected.len());
    assert_eq!(expected.len(), 570);
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let number = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    for (row, want) in transfers.iter().zip(&expected) {
        let got = [
            text(&row.source),
            text(&row.destination),
            text(&row.authority),
            number(row.value),
            number(row.decimals.map(u64::from)),
            text(&row.mint),
            text(&row.mint_authority),
            row.transfer_type.clone(),
            row.tx_signature.clone(),
        ];
        let columns = [
            "source",
            "destination",
            "authority",
            "value",
            "decimals",
            "mint",
            "mint_authority",
            "transfer_type",
            "tx_signature",
        ];
        let want: Vec<String> = columns.iter().map(|c| want[*c].clone()).collect();
        assert_eq!(got.to_vec(), want);
    }
}
