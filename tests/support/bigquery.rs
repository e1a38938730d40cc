//! The BigQuery emulator (PyPI `bqemulator`, DuckDB underneath; see
//! `scripts/install-deps.sh`), and seeding it with rows through its REST
//! API, as a BigQuery client would insert them.

use std::process::Command;

use serde_json::{Value, json};

use super::{Process, free_port, missing, on_path};

pub const PROJECT: &str = "chronicle-test";
pub const DATASET: &str = "crypto_solana_mainnet_us";

pub struct BigQueryEmulator {
    pub port: u16,
    process: Process,
    _dir: tempfile::TempDir,
}

impl BigQueryEmulator {
    pub fn start() -> Self {
        let binary = on_path("bqemulator").unwrap_or_else(|| {
            missing("the BigQuery emulator (bqemulator)", "scripts/install-deps.sh installs it from PyPI")
        });
        let (port, grpc) = (free_port(), free_port());
        let dir = tempfile::tempdir().expect("temp dir");
        let mut process = Process::spawn(
            "BigQuery emulator",
            Command::new(binary)
                .args(["start", "--rest-port", &port.to_string(), "--grpc-port", &grpc.to_string()])
                .args(["--project", PROJECT])
                .current_dir(dir.path()),
            dir.path().join("bqemulator.log"),
        );
        let url = format!("http://127.0.0.1:{port}/bigquery/v2/projects/{PROJECT}/datasets");
        process.wait_until(|| answers_ok(&url));
        Self { port, process, _dir: dir }
    }

    /// The REST base a client is given (`--bigquery-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/bigquery/v2", self.port)
    }

    fn api(&self, path: &str) -> String {
        format!("{}/projects/{PROJECT}{path}", self.endpoint())
    }

    /// Creates the Solana dataset and each table with its schema from
    /// `tests/data/solana/bigquery/schemas/` (tables named as ours: the
    /// emulator refuses names with spaces).
    pub async fn create_tables(&self) {
        self.create_dataset(DATASET, "solana/bigquery/schemas", &TABLES).await;
    }

    /// Creates the Ethereum dataset (`crypto_ethereum`'s tables, schemas from
    /// `tests/data/evm/bigquery/schemas/`).
    pub async fn create_evm_tables(&self) {
        let tables = EVM_TABLES.map(|t| (t, t));
        self.create_dataset(EVM_DATASET, "evm/bigquery/schemas", &tables).await;
    }

    /// Creates `dataset` with each `(table, schema file)` of `schemas` (a
    /// folder of `tests/data/`). BIGNUMERIC columns become STRING: the
    /// emulator cannot create them (DuckDB's DECIMAL stops at 38 digits).
    async fn create_dataset(&self, dataset: &str, schemas: &str, tables: &[(&str, &str)]) {
        let client = reqwest::Client::new();
        let body = json!({"datasetReference": {"projectId": PROJECT, "datasetId": dataset}});
        let answer = client.post(self.api("/datasets")).json(&body).send().await.unwrap();
        assert!(answer.status().is_success(), "dataset: {}", answer.text().await.unwrap());
        for (table, file) in tables {
            let mut fields = schema(schemas, file);
            bignumeric_as_string(&mut fields);
            let body = json!({"tableReference": {"projectId": PROJECT, "datasetId": dataset, "tableId": table},
                "schema": {"fields": fields}});
            let answer =
                client.post(self.api(&format!("/datasets/{dataset}/tables"))).json(&body).send().await.unwrap();
            assert!(answer.status().is_success(), "table {table}: {}", answer.text().await.unwrap());
        }
    }

    /// Inserts rows (our row structs, serialized) into the Solana dataset's `table`.
    pub async fn insert(&self, table: &str, rows: &[Value]) {
        self.insert_into(DATASET, table, rows).await
    }

    /// Inserts rows into `dataset.table` (`tabledata.insertAll`).
    pub async fn insert_into(&self, dataset: &str, table: &str, rows: &[Value]) {
        if rows.is_empty() {
            return;
        }
        let rows: Vec<Value> = rows.iter().map(|row| json!({"json": bigquery_json(row)})).collect();
        let url = self.api(&format!("/datasets/{dataset}/tables/{table}/insertAll"));
        let answer = reqwest::Client::new().post(url).json(&json!({"rows": rows})).send().await.unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap();
        let errors = body.get("insertErrors").and_then(Value::as_array).map_or(0, Vec::len);
        assert!(status.is_success() && errors == 0, "insert into {table}: {body}");
    }

    /// The `--bigquery-table` flags naming our tables as created here.
    pub fn table_flags() -> Vec<String> {
        TABLES.iter().flat_map(|(table, _)| ["--bigquery-table".to_string(), format!("{table}={table}")]).collect()
    }

    pub fn stop(self) {
        drop(self.process);
    }
}

/// The BigQuery dataset's column names of our table `table`.
pub fn dataset_columns(table: &str) -> Vec<String> {
    let (_, file) = TABLES.iter().find(|(ours, _)| *ours == table).unwrap_or_else(|| panic!("no table {table}"));
    schema("solana/bigquery/schemas", file)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// A table's schema (its fields) from `tests/data/{folder}/{file}.json`.
pub fn schema(folder: &str, file: &str) -> Value {
    let path = format!("{}/tests/data/{folder}/{file}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

pub const EVM_DATASET: &str = "crypto_ethereum";
/// The tables Chronicle reads (the dataset's `token_transfers` is derived from `logs`, as from a node).
pub const EVM_TABLES: [&str; 4] = ["blocks", "transactions", "logs", "traces"];

/// Our table names and their schema files.
pub const TABLES: [(&str, &str); 7] = [
    ("blocks", "Blocks"),
    ("block_rewards", "Block_Rewards"),
    ("transactions", "Transactions"),
    ("instructions", "Instructions"),
    ("token_transfers", "Token_Transfers"),
    ("accounts", "Accounts"),
    ("tokens", "Tokens"),
];

fn bignumeric_as_string(fields: &mut Value) {
    for field in fields.as_array_mut().into_iter().flatten() {
        if field["type"] == "BIGNUMERIC" {
            field["type"] = json!("STRING");
        }
        if let Some(nested) = field.get_mut("fields") {
            bignumeric_as_string(nested);
        }
    }
}

/// A row as insertAll takes it: TIMESTAMP as RFC 3339 text (our rows hold
/// microseconds). Not a number: BigQuery reads one as seconds, the emulator
/// as microseconds.
fn bigquery_json(row: &Value) -> Value {
    let mut row = row.clone();
    for column in ["block_timestamp", "retrieval_timestamp"] {
        if let Some(micros) = row.get(column).and_then(Value::as_i64) {
            let time = k8s_openapi::jiff::Timestamp::from_microsecond(micros).expect("a time");
            row[column] = json!(time.to_string());
        }
    }
    row
}

/// Whether a GET of `url` answers 200 (for readiness polls, outside any runtime).
fn answers_ok(url: &str) -> bool {
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) })
    })
    .join()
    .unwrap_or(false)
}

/// A TIMESTAMP cell as insertAll takes it, from seconds since the epoch.
fn rfc3339(seconds: i64) -> Value {
    json!(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("a time").to_string())
}

fn value(row: &impl serde::Serialize) -> Value {
    serde_json::to_value(row).unwrap()
}

/// Only `schema`'s columns of `row` (the dataset has no column of ours beyond its own).
fn in_schema(mut row: Value, schema: &Value) -> Value {
    let names: Vec<&str> = schema.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    row.as_object_mut().unwrap().retain(|column, _| names.contains(&column.as_str()));
    row
}

/// Our EVM rows as `crypto_ethereum` holds them (as its enrich step builds
/// them from ethereum-etl's export): a block's time as a TIMESTAMP, each
/// transaction's receipt in its `receipt_*` columns, logs with their block's
/// time, traces without our `trace_index`.
pub fn evm_dataset_rows(rows: &chronicle::chain::evm::rows::EvmRows) -> Vec<(&'static str, Vec<Value>)> {
    let schema = |table: &str| schema("evm/bigquery/schemas", table);
    let block = |number: u64| rows.blocks.iter().find(|b| b.number == number).expect("the block's row");
    let blocks = rows
        .blocks
        .iter()
        .map(|b| {
            let mut row = value(b);
            row["timestamp"] = rfc3339(b.timestamp as i64);
            for withdrawal in row["withdrawals"].as_array_mut().unwrap() {
                withdrawal["amount"] = json!(withdrawal["amount"].to_string()); // a STRING column
            }
            in_schema(row, &schema("blocks"))
        })
        .collect();
    let transactions = rows
        .transactions
        .iter()
        .map(|tx| {
            let receipt = rows.receipts.iter().find(|r| r.transaction_hash == tx.hash).expect("its receipt");
            let mut row = value(tx);
            for (column, cell) in value(receipt).as_object().unwrap() {
                row[format!("receipt_{column}")] = cell.clone();
            }
            in_schema(row, &schema("transactions"))
        })
        .collect();
    let logs = rows
        .logs
        .iter()
        .map(|log| {
            let mut row = value(log);
            row["block_timestamp"] = json!(block(log.block_number).timestamp as i64 * 1_000_000);
            in_schema(row, &schema("logs"))
        })
        .collect();
    let traces = rows.traces.iter().flatten().map(|trace| in_schema(value(trace), &schema("traces"))).collect();
    vec![("blocks", blocks), ("transactions", transactions), ("logs", logs), ("traces", traces)]
}

/// ethereum-etl CSV cells (`support::evm::etl_expected`) as a row of
/// `crypto_ethereum.table`, each cell typed by the schema: empty is null (or
/// an empty list), INT64 a number, TIMESTAMP seconds, REPEATED comma-separated.
pub fn evm_row_from_cells(table: &str, cells: &std::collections::BTreeMap<String, String>) -> Value {
    let mut row = serde_json::Map::new();
    for field in schema("evm/bigquery/schemas", table).as_array().unwrap() {
        let name = field["name"].as_str().unwrap();
        let Some(cell) = cells.get(name) else { continue };
        let repeated = field["mode"] == "REPEATED";
        let value = match (field["type"].as_str().unwrap(), cell.as_str()) {
            (_, "") if repeated => json!([]),
            (_, "") => Value::Null,
            ("RECORD", cell) => panic!("{table}.{name}: a record from CSV ({cell})"),
            (_, cell) if repeated => json!(cell.split(',').collect::<Vec<_>>()),
            ("INT64", cell) => json!(cell.parse::<i64>().unwrap_or_else(|_| panic!("{table}.{name}: {cell}"))),
            ("TIMESTAMP", cell) => rfc3339(cell.parse().unwrap()),
            (_, cell) => json!(cell),
        };
        row.insert(name.to_string(), value);
    }
    Value::Object(row)
}
