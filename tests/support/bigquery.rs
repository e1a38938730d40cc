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

    /// Creates the dataset and each table with its schema from
    /// `tests/data/solana/bigquery/schemas/` (tables named as ours: the
    /// emulator refuses names with spaces). BIGNUMERIC columns become STRING:
    /// the emulator cannot create them (DuckDB's DECIMAL stops at 38 digits).
    pub async fn create_tables(&self) {
        let client = reqwest::Client::new();
        let dataset = json!({"datasetReference": {"projectId": PROJECT, "datasetId": DATASET}});
        let answer = client.post(self.api("/datasets")).json(&dataset).send().await.unwrap();
        assert!(answer.status().is_success(), "dataset: {}", answer.text().await.unwrap());
        for (table, file) in TABLES {
            let path = format!("{}/tests/data/solana/bigquery/schemas/{file}.json", env!("CARGO_MANIFEST_DIR"));
            let mut fields: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            bignumeric_as_string(&mut fields);
            let body = json!({"tableReference": {"projectId": PROJECT, "datasetId": DATASET, "tableId": table},
                "schema": {"fields": fields}});
            let answer =
                client.post(self.api(&format!("/datasets/{DATASET}/tables"))).json(&body).send().await.unwrap();
            assert!(answer.status().is_success(), "table {table}: {}", answer.text().await.unwrap());
        }
    }

    /// Inserts rows (our row structs, serialized) into `table` (`tabledata.insertAll`).
    pub async fn insert(&self, table: &str, rows: &[Value]) {
        if rows.is_empty() {
            return;
        }
        let rows: Vec<Value> = rows.iter().map(|row| json!({"json": bigquery_json(row)})).collect();
        let url = self.api(&format!("/datasets/{DATASET}/tables/{table}/insertAll"));
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
    let path = format!("{}/tests/data/solana/bigquery/schemas/{file}.json", env!("CARGO_MANIFEST_DIR"));
    let schema: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    schema.iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

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
