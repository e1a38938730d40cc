//! `chronicle worker export` end to end: the four real mainnet blocks in an
//! embedded store become a training dataset that Python loads as it is —
//! Hugging Face `datasets` reads the JSONL and Parquet configs (both
//! splits), `numpy.memmap` reads the llm.c token files, and `tiktoken`
//! (its cl100k ranks given offline, from tiktoken-rs) decodes a document's
//! tokens back to its text. The same spec at another concurrency gives the
//! same bytes; bad input fails with the reason and publishes no manifest.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chronicle::store::BlockStore;
use serde_json::Value;

const RANGE: [&str; 4] = ["--from", "0", "--to", "200000000"];

/// An embedded store holding the real blocks.
async fn store_with_real_blocks(dir: &Path) -> String {
    let url = format!("embedded://{}", dir.join("ledger").display());
    let store = chronicle::store::open(&url).await.unwrap();
    for (slot, block) in support::real_blocks() {
        store.write_block(slot, &block, &[]).await.unwrap();
    }
    store.sync().await.unwrap();
    url
}

fn export_command(store: &str, out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .args(["worker", "export", "--store", store, "--out", &format!("file://{}", out.display())])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

fn export(store: &str, out: &Path, extra: &[&str]) -> (bool, String) {
    let output = export_command(store, out, extra).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `python3 -c SCRIPT ARGS…` with Hugging Face `datasets` offline, its cache under `dir`.
fn python(script: &str, args: &[&Path], dir: &Path) -> Command {
    let mut command = Command::new("python3");
    command.args(["-c", script]).args(args).env("HF_DATASETS_OFFLINE", "1").env("HF_HOME", dir.join("hf"));
    command
}

const FULL: [&str; 14] = [
    "--tokenizer",
    "cl100k_base",
    "--formats",
    "jsonl,parquet,tokens",
    "--sequence-length",
    "256",
    "--validation-fraction",
    "0.3",
    "--seed",
    "7",
    "--shard-bytes",
    "2000",
    "--template",
    "transaction-summary",
];

/// tiktoken's cache directory with the cl100k ranks tiktoken-rs ships, under
/// the name tiktoken looks for (sha1 of the official download URL).
fn tiktoken_cache(dir: &Path) -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cargo"));
    let registry = home.join("registry/src");
    let ranks = std::fs::read_dir(&registry)
        .unwrap()
        .flat_map(|index| std::fs::read_dir(index.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("tiktoken-rs-"))
        .map(|p| p.join("assets/cl100k_base.tiktoken"))
        .find(|p| p.exists())
        .expect("tiktoken-rs's cl100k ranks in the cargo registry");
    let cache = dir.join("tiktoken");
    std::fs::create_dir_all(&cache).unwrap();
    // sha1("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken")
    std::fs::copy(ranks, cache.join("9b5ad71b2ce5302211f9c61530b329a4922fc6a4")).unwrap();
    cache
}

const LOAD: &str = r#"
import json, sys, numpy as np, tiktoken, datasets
out = sys.argv[1]
manifest = json.load(open(f"{out}/manifest.json"))
jsonl = datasets.load_dataset(out)
parquet = datasets.load_dataset("parquet", data_files={s: f"{out}/data/{s}-*.parquet" for s in ["train", "validation"]})
result = {"jsonl": {s: jsonl[s].num_rows for s in jsonl}, "parquet": {s: parquet[s].num_rows for s in parquet}}
first = jsonl["train"][0]
shard = next(s for s in manifest["shards"] if s["format"] == "tokens" and s["split"] == "train")
header = np.memmap(f"{out}/{shard['path']}", dtype=np.int32, mode="r", shape=(256,))
tokens = np.memmap(f"{out}/{shard['path']}", dtype=np.uint32, mode="r", offset=1024)
assert header[2] == len(tokens), (header[2], len(tokens))
eot = manifest["tokenizer"]["end_of_text"]
ids = tokens.tolist()
assert ids[0] == eot
end = ids.index(eot, 1)
result["decoded"] = tiktoken.get_encoding("cl100k_base").decode(ids[1:end])
result["first_text"] = first["text"]
result["first_keys"] = sorted(first.keys())
result["header"] = [int(header[0]), int(header[1])]
print(json.dumps(result))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_loads_in_python_as_it_is_and_is_the_same_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_real_blocks(dir.path()).await;
    let out = dir.path().join("dataset");
    let (ok, log) = export(&store, &out, &[&RANGE[..], &FULL[..], &["--concurrency", "4"]].concat());
    assert!(ok, "{log}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let (train, validation) =
        (manifest["documents"]["train"].as_u64().unwrap(), manifest["documents"]["validation"].as_u64().unwrap());
    assert!(train > 0 && validation > 0, "both splits: {manifest}");
    assert!(manifest["shards"].as_array().unwrap().len() > 6, "several shards per split and format: {manifest}");

    let output =
        python(LOAD, &[&out], dir.path()).env("TIKTOKEN_CACHE_DIR", tiktoken_cache(dir.path())).output().unwrap();
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    let loaded: Value = serde_json::from_slice(&output.stdout).unwrap();
    for config in ["jsonl", "parquet"] {
        assert_eq!(loaded[config]["train"].as_u64(), Some(train), "{config}: {loaded}");
        assert_eq!(loaded[config]["validation"].as_u64(), Some(validation), "{config}: {loaded}");
    }
    assert_eq!(loaded["decoded"], loaded["first_text"], "the tokens decode to the first document");
    assert!(loaded["first_text"].as_str().unwrap().starts_with("Solana transaction "), "{loaded}");
    assert_eq!(loaded["header"], serde_json::json!([20240801, 7]), "llm.c's uint32 header");
    for key in ["block_time", "fee", "id", "mints", "programs", "slot", "status", "template", "text"] {
        assert!(loaded["first_keys"].as_array().unwrap().iter().any(|k| k == key), "{key}: {loaded}");
    }

    // Again, one block at a time: the same bytes, the same digest; its
    // /metrics, scraped once the work is done, count what the manifest lists.
    let again = dir.path().join("again");
    let mut command = export_command(&store, &again, &[&RANGE[..], &FULL[..], &["--concurrency", "1"]].concat());
    let run = tokio::task::block_in_place(|| support::run_and_scrape(&mut command));
    assert!(run.success, "{}", run.log);
    let metric = |series: &str| support::sample(&run.metrics, series);
    assert_eq!(metric(r#"chronicle_export_runs_total{outcome="published"}"#), Some(1.0), "{}", run.metrics);
    assert_eq!(metric(r#"chronicle_export_documents_total{outcome="kept"}"#), Some((train + validation) as f64));
    let shards = manifest["shards"].as_array().unwrap();
    assert_eq!(metric("chronicle_export_shards_total"), Some(shards.len() as f64));
    let tokens: u64 = shards.iter().filter_map(|s| s["tokens"].as_u64()).sum();
    assert_eq!(metric("chronicle_export_tokens_total"), Some(tokens as f64), "{}", run.metrics);
    let bytes: u64 = shards.iter().filter_map(|s| s["bytes"].as_u64()).sum();
    assert_eq!(metric("chronicle_export_bytes_total"), Some(bytes as f64), "{}", run.metrics);
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), std::fs::read(again.join("manifest.json")).unwrap());
    for shard in manifest["shards"].as_array().unwrap() {
        let path = shard["path"].as_str().unwrap();
        assert_eq!(std::fs::read(out.join(path)).unwrap(), std::fs::read(again.join(path)).unwrap(), "{path}");
    }
}

/// An export declared by time: the stored blocks whose recorded time is in
/// the window, found by binary search over the store. The two recorded JSON
/// blocks both carry 2021-10-06 07:18:25 UTC; the protobuf ones are older.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_window_selects_the_blocks_produced_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_real_blocks(dir.path()).await;
    let out = dir.path().join("window");
    let window = ["--start-time", "2021-10-06T07:00:00Z", "--end-time", "2021-10-06T08:00:00Z"];
    let (ok, log) = export(&store, &out, &window);
    assert!(ok, "{log}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        (manifest["first_slot"].as_u64(), manifest["last_slot"].as_u64()),
        (Some(100_000_000), Some(154_808_473))
    );
    assert_eq!(manifest["selection"]["window"], serde_json::json!(["2021-10-06T07:00:00Z", "2021-10-06T08:00:00Z"]));
    // Within slot bounds, and a window with no block: an error, nothing published.
    let (ok, log) = export(&store, &dir.path().join("bounded"), &[&window[..], &["--from", "100000001"]].concat());
    assert!(ok, "{log}");
    let bounded: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bounded/manifest.json")).unwrap()).unwrap();
    assert_eq!(bounded["first_slot"].as_u64(), Some(154_808_473));
    let empty = dir.path().join("empty");
    let (ok, log) =
        export(&store, &empty, &["--start-time", "2021-10-06T08:00:00Z", "--end-time", "2021-10-07T00:00:00Z"]);
    assert!(
        !ok && log.contains("no block whose time is in the window [2021-10-06T08:00:00Z, 2021-10-07T00:00:00Z)"),
        "{log}"
    );
    assert!(!empty.join("manifest.json").exists());
}

/// Compares a token shard with Python's `tokenizers` encoding the same
/// documents with the same `tokenizer.json` (no truncation, padding or added
/// special tokens; special-token text encoded as text), each preceded by
/// end-of-text; prints how many documents matched.
const HF_CHECK: &str = r#"
import json, sys, numpy as np, datasets, tokenizers
out, path = sys.argv[1], sys.argv[2]
manifest = json.load(open(f"{out}/manifest.json"))
tok = tokenizers.Tokenizer.from_file(path)
tok.no_truncation(); tok.no_padding(); tok.encode_special_tokens = True
eot = manifest["tokenizer"]["end_of_text"]
assert eot == tok.token_to_id("[SEP]"), eot
shard = next(s for s in manifest["shards"] if s["format"] == "tokens" and s["split"] == "train")
header = np.memmap(f"{out}/{shard['path']}", dtype=np.int32, mode="r", shape=(256,))
assert [int(header[0]), int(header[1])] == [20240520, 1], "llm.c's uint16 header"
ids = np.memmap(f"{out}/{shard['path']}", dtype=np.uint16, mode="r", offset=1024).tolist()
train = datasets.load_dataset(out)["train"]
expected = []
for i in range(shard["documents"]):
    expected += [eot] + tok.encode(train[i]["text"], add_special_tokens=False).ids
expected += [eot] * (len(ids) - len(expected))
assert ids == expected, (len(ids), len(expected), next(i for i, (a, b) in enumerate(zip(ids, expected)) if a != b))
print(shard["documents"])
"#;

/// A Hugging Face `tokenizer.json` (all-MiniLM-L6-v2's, `tests/data/tokenizers/`),
/// from a file and from a URL pinned by sha256: the token shards equal what
/// Python's `tokenizers` makes of the same documents with the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hugging_face_tokenizer_json_tokenizes_as_python_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_real_blocks(dir.path()).await;
    let file = support::data_file("tokenizers/all-MiniLM-L6-v2/tokenizer.json");
    let sha256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037";
    let args = |tokenizer: &str| {
        let mut args: Vec<String> = RANGE.iter().map(|a| a.to_string()).collect();
        args.extend(
            ["--formats", "jsonl,tokens", "--sequence-length", "128", "--tokenizer-json", tokenizer].map(String::from),
        );
        args.extend(["--tokenizer-sha256", sha256, "--validation-fraction", "0.3", "--seed", "7"].map(String::from));
        args
    };
    let out = dir.path().join("from-file");
    let from_file = args(file.to_str().unwrap());
    let (ok, log) = export(&store, &out, &from_file.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{log}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tokenizer"]["encoding"], "huggingface");
    assert_eq!(manifest["tokenizer"]["file_sha256"], sha256);
    let output = python(HF_CHECK, &[&out, &file], dir.path()).output().unwrap();
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    let matched: u64 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap();
    assert!(matched > 0, "documents compared");

    // The same file from a URL, pinned: the same dataset; a wrong pin is refused.
    let port = support::free_port();
    let mut server = std::process::Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(file.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/tokenizer.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while support::http_get(port, "/tokenizer.json").is_none() {
        assert!(std::time::Instant::now() < deadline, "the file server never answered");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let again = dir.path().join("from-url");
    let (ok, log) = export(&store, &again, &args(&url).iter().map(String::as_str).collect::<Vec<_>>());
    let refused_dir = dir.path().join("refused");
    let mut wrong = args(&url);
    let pin = wrong.iter().position(|a| a == sha256).unwrap();
    wrong[pin] = "0".repeat(64);
    let refused = export(&store, &refused_dir, &wrong.iter().map(String::as_str).collect::<Vec<_>>());
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(ok, "{log}");
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), std::fs::read(again.join("manifest.json")).unwrap());
    assert!(!refused.0 && refused.1.contains("not the 0000"), "{}", refused.1);
    assert!(!refused_dir.join("manifest.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_the_reason_and_publishes_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_real_blocks(dir.path()).await;
    let cases: [(&str, Vec<&str>, &str); 4] = [
        ("template", [&RANGE[..], &["--template", "haiku"]].concat(), "unknown template \"haiku\""),
        ("tokenizer", [&RANGE[..], &["--tokenizer", "gpt5", "--formats", "tokens"]].concat(), "unknown tokenizer"),
        ("reversed", vec!["--from", "10", "--to", "5"], "the range 10..=5 is empty"),
        ("no blocks", vec!["--from", "5", "--to", "10"], "the store holds no block in 5..=10"),
    ];
    for (name, args, reason) in cases {
        let out = dir.path().join(name);
        let (ok, log) = export(&store, &out, &args);
        assert!(!ok, "{name}: {log}");
        assert!(log.contains(reason), "{name}: {log}");
        assert!(!out.join("manifest.json").exists(), "{name}: no manifest");
    }
    // An output that cannot be written: a directory where a file is.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("data"), b"not a directory").unwrap();
    let (ok, log) = export(&store, &blocked, &RANGE);
    assert!(!ok, "{log}");
    assert!(log.contains("writing the dataset") && log.contains("data/train-00000.jsonl.zst"), "{log}");
    assert!(!blocked.join("manifest.json").exists());
}

/// What a TrainingExport's pod runs: `worker run` with an export spec
/// records its outcome in the catalog (the resource's status reads it):
/// `Succeeded` with the manifest's digest, or `Failed` with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_worker_records_its_outcome_in_the_catalog() {
    use chronicle::worker::spec::{ChainSpec, ExportSpec, FromEnv, StoreSpec, Work, WorkerSpec};
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_real_blocks(dir.path()).await;
    let catalog = format!("embedded://{}", dir.path().join("catalog").display());
    let spec = |job: &str, from: u64| ExportSpec {
        job: job.into(),
        chain: ChainSpec {
            family: chronicle::crd::chain_source::ChainFamily::Solana,
            network: "mainnet-beta".into(),
            commitment: chronicle::crd::chain_source::Commitment::Finalized,
            chain_id: None,
            confirmations: None,
            traces: None,
        },
        store: StoreSpec { url: store.clone(), ..StoreSpec::default() },
        catalog: FromEnv::new("CHRONICLE_CATALOG"),
        from,
        to: 200_000_000,
        window: None,
        programs: Vec::new(),
        success_only: false,
        include_votes: false,
        instruction_types: Vec::new(),
        min_bytes: None,
        max_bytes: None,
        sample: None,
        template: chronicle::crd::training_export::RenderTemplate {
            builtin: Some(chronicle::crd::training_export::BuiltinTemplate::TransactionJson),
            inline: None,
        },
        tokenizer: Some(chronicle::crd::training_export::TokenizerEncoding::O200kBase),
        hugging_face_tokenizer: None,
        sequence_length: 512,
        output: format!("file://{}", dir.path().join(job).display()),
        formats: vec![
            chronicle::crd::training_export::ExportFormat::Jsonl,
            chronicle::crd::training_export::ExportFormat::Tokens,
        ],
        shard_bytes: 1 << 20,
        validation_fraction: 0.1,
        seed: 1,
        exact_dedup: true,
        near_duplicate: None,
    };
    let run = |spec: ExportSpec| {
        let output = Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .args(["worker", "run"])
            .env("CHRONICLE_WORKER_SPEC", WorkerSpec::new(Work::Export(spec)).to_json())
            .env("CHRONICLE_CATALOG", &catalog)
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, log) = run(spec("done", 0));
    assert!(ok, "{log}");
    let (ok, _) = run(spec("empty", 300_000_000));
    assert!(!ok, "a range after every stored block");

    let opened = chronicle::catalog::open(&catalog).await.unwrap();
    let done = opened.export("done").await.unwrap().expect("a record");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("done/manifest.json")).unwrap()).unwrap();
    assert_eq!(done.phase, "Succeeded");
    assert_eq!(done.digest.as_deref(), manifest["digest"].as_str());
    assert_eq!(manifest["tokenizer"]["encoding"], "o200k_base");
    assert!(done.documents > 0 && done.tokens > 0, "{done:?}");
    let failed = opened.export("empty").await.unwrap().expect("a record");
    assert_eq!(failed.phase, "Failed");
    assert!(failed.message.unwrap().contains("the range 300000000..=200000000 is empty"));
}

/// Near duplicates: the real blocks' transactions of one program render to
/// summaries that differ in a few words; at a threshold of 0.6 some are
/// dropped and counted, the same ones every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_duplicates_are_dropped_and_counted_the_same_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_real_blocks(dir.path()).await;
    let manifest = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let (ok, log) = export(&store, &out, &[&RANGE[..], &["--include-votes"], extra].concat());
        assert!(ok, "{log}");
        serde_json::from_slice::<Value>(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
    };
    let all = manifest("all", &[]);
    let near = manifest("near", &["--near-duplicate", "0.6"]);
    let again = manifest("again", &["--near-duplicate", "0.6"]);
    let documents =
        |m: &Value| m["documents"]["train"].as_u64().unwrap() + m["documents"]["validation"].as_u64().unwrap();
    let dropped = near["near_duplicates"].as_u64().unwrap();
    assert!(dropped > 0, "{near}");
    assert_eq!(documents(&near) + dropped, documents(&all), "every document kept or counted");
    assert_eq!(near["digest"], again["digest"]);
    assert_eq!(near["near_duplicate_threshold"], 0.6);
}

/// An export killed (SIGKILL) once its first shards are written publishes
/// nothing; run again, it resumes past the shards its checkpoint holds
/// (they are not written again: same file, same modification time; the
/// log says where it went on) and publishes the same manifest, digest and
/// shards as an export left alone, with near-duplicate removal on so that
/// the dedup state is carried over too. 400 blocks: the real ones
/// replayed, so that the export runs long enough to be killed midway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_export_resumes_past_its_finished_shards_and_gives_the_same_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("embedded://{}", dir.path().join("ledger").display());
    let store = chronicle::store::open(&url).await.unwrap();
    for (slot, block) in support::replayed(1_000_000, 400) {
        store.write_block(slot, &block, &[]).await.unwrap();
    }
    store.sync().await.unwrap();
    drop(store);
    let args = ["--from", "1000000", "--to", "1000399", "--include-votes", "--shard-bytes", "4096"];
    // The replayed blocks' documents differ by their slot alone: near-duplicates of the first four blocks'.
    let args = [&args[..], &["--near-duplicate", "0.6", "--validation-fraction", "0.2"]].concat();
    let args = [&args[..], &["--tokenizer", "cl100k_base", "--formats", "jsonl,tokens"]].concat();
    let undisturbed = dir.path().join("undisturbed");
    let (ok, log) = export(&url, &undisturbed, &args);
    assert!(ok, "{log}");
    // (object_store removes files; a local directory may stay, empty.)
    let resume_files = |dir: &Path| std::fs::read_dir(dir.join("_resume")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(resume_files(&undisturbed), 0, "a published export leaves no resume state");

    let killed = dir.path().join("killed");
    let mut child = export_command(&url, &killed, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !killed.join("data/train-00002.jsonl.zst").exists() {
        assert!(std::time::Instant::now() < deadline, "no shard written");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("manifest.json").exists(), "a killed export publishes no manifest");
    // Shard 0 closed a group before shard 2 was written: its checkpoint holds it.
    let first = killed.join("data/train-00000.jsonl.zst");
    let written = std::fs::metadata(&first).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (ok, log) = export(&url, &killed, &args);
    assert!(ok, "{log}");
    assert!(log.contains("resuming the export past its finished shards"), "{log}");
    assert_eq!(std::fs::metadata(&first).unwrap().modified().unwrap(), written, "a finished shard is not rewritten");
    let read = |dir: &Path| std::fs::read(dir.join("manifest.json")).unwrap();
    assert_eq!(read(&undisturbed), read(&killed), "the same manifest, digest and shard list");
    let manifest: Value = serde_json::from_slice(&read(&killed)).unwrap();
    assert!(manifest["near_duplicates"].as_u64().unwrap() > 0, "the carried-over index dropped documents");
    assert_eq!(resume_files(&killed), 0, "resume state removed once published");

    // With a metrics linger (which listens for signals), a SIGTERM still ends the run unfinished.
    let stopped = dir.path().join("stopped");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = export_command(&url, &stopped, &args)
        .env("CHRONICLE_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("CHRONICLE_METRICS_LINGER", "120s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !stopped.join("data/train-00001.jsonl.zst").exists() {
        assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(120), "no shard written");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{log}");
    assert!(log.contains("stop requested: the run ends unfinished"), "{log}");
    assert!(!stopped.join("manifest.json").exists(), "a stopped export publishes nothing");
}

/// A template of the user's own (`--template-file`, the CRD's
/// `spec.template.inline`): each document is the template rendered over the
/// transaction's normalized data — checked against the same data as the
/// `transaction-json` export of the same blocks writes it — and a
/// transaction it renders empty for gives no document. A template with a
/// syntax error or an unknown field fails with the line, publishing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_template_renders_each_transactions_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_real_blocks(dir.path()).await;
    let template = dir.path().join("template.j2");
    std::fs::write(
        &template,
        "{% if fee and fee > 5000 %}{{ signature }} in slot {{ slot }} paid {{ fee }} lamports for \
         {{ instructions | length }} instructions: {{ instructions | map(attribute='program') | join(', ') }}{% endif %}",
    )
    .unwrap();
    let plain = [&RANGE[..], &["--include-votes", "--no-dedup", "--formats", "jsonl", "--validation-fraction", "0"]];
    let (json_out, inline_out) = (dir.path().join("json"), dir.path().join("inline"));
    let (ok, log) = export(&store, &json_out, &[&plain.concat()[..], &["--template", "transaction-json"]].concat());
    assert!(ok, "{log}");
    let file = template.display().to_string();
    let (ok, log) = export(&store, &inline_out, &[&plain.concat()[..], &["--template-file", &file]].concat());
    assert!(ok, "{log}");
    let documents = |out: &Path| -> Vec<Value> {
        let shard = std::fs::read(out.join("data/train-00000.jsonl.zst")).unwrap();
        let text = zstd::decode_all(shard.as_slice()).unwrap();
        text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
    };
    let expected: Vec<(String, String)> = documents(&json_out)
        .iter()
        .map(|doc| serde_json::from_str::<Value>(doc["text"].as_str().unwrap()).unwrap())
        .filter(|tx| tx["fee"].as_u64().is_some_and(|fee| fee > 5000))
        .map(|tx| {
            let programs: Vec<&str> =
                tx["instructions"].as_array().unwrap().iter().map(|i| i["program"].as_str().unwrap()).collect();
            let text = format!(
                "{} in slot {} paid {} lamports for {} instructions: {}",
                tx["signature"].as_str().unwrap(),
                tx["slot"],
                tx["fee"],
                programs.len(),
                programs.join(", ")
            );
            (tx["signature"].as_str().unwrap().to_string(), text)
        })
        .collect();
    let rendered = documents(&inline_out);
    assert!(!expected.is_empty() && rendered.len() < documents(&json_out).len(), "some, not all, pay above 5000");
    let got: Vec<(String, String)> =
        rendered.iter().map(|d| (d["id"].as_str().unwrap().into(), d["text"].as_str().unwrap().into())).collect();
    assert_eq!(got, expected);
    let template_id = rendered[0]["template"].as_str().unwrap();
    assert!(template_id.starts_with("inline@"), "{template_id}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(inline_out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["template"], template_id);

    for (source, says) in
        [("{% if fee %}unclosed", "line 1"), ("{{ signature }}\n{{ feee }}", "line 2: undefined value (`feee`)")]
    {
        std::fs::write(&template, source).unwrap();
        let out = dir.path().join("bad");
        let (ok, log) = export(&store, &out, &[&plain.concat()[..], &["--template-file", &file]].concat());
        assert!(!ok && log.contains(says), "{source:?}: {log}");
        assert!(!out.join("manifest.json").exists());
    }
}

/// The selection's finer filters, each checked against the unfiltered
/// export of the same blocks: instruction types (a transaction with an
/// instruction of a listed parsed type), size bounds on the document's
/// text, and a deterministic sample (sha256("sample" ‖ seed ‖ sha256(text))
/// below the fraction, recomputed here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instruction_types_size_bounds_and_samples_select_documents() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_real_blocks(dir.path()).await;
    let plain =
        [&RANGE[..], &["--include-votes", "--no-dedup", "--template", "transaction-json", "--formats", "jsonl"]];
    let plain = [&plain.concat()[..], &["--validation-fraction", "0", "--seed", "7"]].concat();
    let run = |name: &str, extra: &[&str]| -> Vec<Value> {
        let out = dir.path().join(name);
        let (ok, log) = export(&store, &out, &[&plain[..], extra].concat());
        assert!(ok, "{name}: {log}");
        let shard = std::fs::read(out.join("data/train-00000.jsonl.zst")).unwrap();
        let text = zstd::decode_all(shard.as_slice()).unwrap();
        text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
    };
    let ids = |docs: &[Value]| -> Vec<String> { docs.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect() };
    let all = run("all", &[]);
    let pick = |keep: &dyn Fn(&Value) -> bool| ids(&all.iter().filter(|d| keep(d)).cloned().collect::<Vec<_>>());

    let transfers = run("transfers", &["--instruction-types", "transfer,transferChecked"]);
    let has_transfer = |d: &Value| {
        let tx: Value = serde_json::from_str(d["text"].as_str().unwrap()).unwrap();
        tx["instructions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| ["transfer", "transferChecked"].contains(&i["type"].as_str().unwrap_or("")))
    };
    assert_eq!(ids(&transfers), pick(&has_transfer));
    assert!(!transfers.is_empty() && transfers.len() < all.len(), "some, not all, transfer");

    let mut sizes: Vec<usize> = all.iter().map(|d| d["text"].as_str().unwrap().len()).collect();
    sizes.sort();
    let (low, high) = (sizes[sizes.len() / 4], sizes[sizes.len() * 3 / 4]);
    let bounded = run("bounded", &["--min-bytes", &low.to_string(), "--max-bytes", &high.to_string()]);
    let within = |d: &Value| (low..=high).contains(&d["text"].as_str().unwrap().len());
    assert_eq!(ids(&bounded), pick(&within));

    let sampled = run("sampled", &["--sample", "0.5"]);
    let drawn = |d: &Value| {
        let mut hasher = Sha256::new();
        hasher.update(b"sample");
        hasher.update(7u64.to_le_bytes());
        hasher.update(Sha256::digest(d["text"].as_str().unwrap().as_bytes()));
        let bits: [u8; 8] = hasher.finalize()[..8].try_into().unwrap();
        (u64::from_le_bytes(bits) as f64 / (u64::MAX as f64 + 1.0)) < 0.5
    };
    assert_eq!(ids(&sampled), pick(&drawn));
    assert!(sampled.len() * 3 > all.len() && sampled.len() * 3 < all.len() * 2, "about half: {}", sampled.len());
    assert_eq!(ids(&run("sampled-again", &["--sample", "0.5"])), ids(&sampled), "the same sample every time");
}

/// The chat and instruction forms load as Hugging Face expects them: a
/// `messages` column of role/content turns (system, the transaction's data
/// asked about, its summary answered) and `prompt`/`completion` pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_instruction_forms_load_with_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_real_blocks(dir.path()).await;
    for template in ["transaction-chat", "transaction-instruct"] {
        let out = dir.path().join(template);
        let args = [&RANGE[..], &["--template", template, "--formats", "jsonl,parquet", "--validation-fraction", "0"]];
        let (ok, log) = export(&store, &out, &args.concat());
        assert!(ok, "{log}");
        let script = r#"
import json, sys, datasets
out = sys.argv[1]
d = datasets.load_dataset(out)["train"]
p = datasets.load_dataset("parquet", data_files={"train": f"{out}/data/train-*.parquet"})["train"]
row = d[0]
print(json.dumps({"rows": d.num_rows, "parquet": p.num_rows, "messages": row["messages"], "prompt": row["prompt"],
    "completion": row["completion"], "text": row["text"]}))
"#;
        let output = python(script, &[&out], dir.path()).output().unwrap();
        assert!(output.status.success(), "{template}: {}", String::from_utf8_lossy(&output.stderr));
        let row: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(row["rows"], row["parquet"], "{template}: {row}");
        if template == "transaction-chat" {
            let roles: Vec<&str> =
                row["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
            assert_eq!(roles, ["system", "user", "assistant"], "{row}");
            assert!(row["messages"][2]["content"].as_str().unwrap().starts_with("Solana transaction "), "{row}");
        } else {
            assert!(row["prompt"].as_str().unwrap().starts_with("What does this Solana transaction do?"), "{row}");
            let text = row["text"].as_str().unwrap();
            assert!(text.ends_with(row["completion"].as_str().unwrap()), "{row}");
        }
    }
}
