//! `chronicle import` and `chronicle get-block` as an operator runs them, on
//! the embedded store: real blocks in, RPC-shaped blocks out; every encoding
//! that carries raw transactions imports; jsonParsed and broken files are
//! refused with a clear message and leave what is stored alone.

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{assert_json_covers, data_file};

fn chronicle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chronicle")).args(args).env("RUST_LOG", "warn").output().expect("run chronicle")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn get_block(store: &str, slot: &str, extra: &[&str]) -> Value {
    let mut args = vec!["get-block", "--store", store, slot];
    args.extend_from_slice(extra);
    let out = chronicle(&args);
    assert!(out.status.success(), "get-block {extra:?} failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("get-block prints JSON")
}

#[test]
fn import_then_get_block_in_every_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("embedded://{}", dir.path().join("ledger").display());
    let source_file = data_file("solana/block_154808473_v0_json.json");

    // The slot comes from --slot, or from a file name that starts with it.
    let named = dir.path().join("154808473_v0.json");
    std::fs::copy(&source_file, &named).unwrap();
    let out = chronicle(&["import", "--store", &store, named.to_str().unwrap()]);
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    let source: Value = serde_json::from_slice(&std::fs::read(&source_file).unwrap()).unwrap();
    let json = get_block(&store, "154808473", &["--max-supported-transaction-version", "0", "--no-rewards"]);
    assert_json_covers(&source, &json, "get-block json");

    // base64 and base58 responses carry the same raw transactions: each imports
    // into a fresh store and prints back the same block.
    for encoding in ["base64", "base58"] {
        let encoded =
            get_block(&store, "154808473", &["--encoding", encoding, "--max-supported-transaction-version", "0"]);
        let file = dir.path().join(format!("154808473_{encoding}.json.gz"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(
            &mut gz,
            &serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": encoded})).unwrap(),
        )
        .unwrap();
        std::fs::write(&file, gz.finish().unwrap()).unwrap();
        let other = format!("embedded://{}", dir.path().join(encoding).display());
        let out = chronicle(&["import", "--store", &other, file.to_str().unwrap()]);
        assert!(out.status.success(), "import of {encoding} failed: {}", stderr(&out));
        let again = get_block(&other, "154808473", &["--max-supported-transaction-version", "0", "--no-rewards"]);
        assert_eq!(again, json, "{encoding} import differs");
    }
}

#[test]
fn refused_files_say_why_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("embedded://{}", dir.path().join("ledger").display());
    let good = data_file("solana/block_100000000_json.json");
    let out = chronicle(&["import", "--store", &store, "--slot", "100000000", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = get_block(&store, "100000000", &[]);

    let parsed = data_file("solana/block_241043141_jsonParsed.json");
    let out = chronicle(&["import", "--store", &store, "--slot", "241043141", parsed.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("jsonParsed encoding, whose parsed instructions cannot be stored losslessly"),
        "{}",
        stderr(&out)
    );

    // No slot in the name and no --slot.
    let out = chronicle(&["import", "--store", &store, good.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("pass --slot"), "{}", stderr(&out));

    // A block missing a required field, and a file that is not JSON.
    let mut broken: Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    broken.as_object_mut().unwrap().remove("parentSlot");
    let broken_file = dir.path().join("100000000_broken.json");
    std::fs::write(&broken_file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let garbage = dir.path().join("100000000_garbage.json");
    std::fs::write(&garbage, b"{\"blockhash\": ").unwrap();
    let out = chronicle(&["import", "--store", &store, broken_file.to_str().unwrap(), garbage.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("slot 100000000") && err.contains("parentSlot"), "{err}");
    assert!(err.contains("100000000_garbage.json: not JSON"), "{err}");

    assert_eq!(get_block(&store, "100000000", &[]), before, "a refused import changed the stored block");
    let out = chronicle(&["get-block", "--store", &store, "5"]);
    assert!(!out.status.success() && stderr(&out).contains("slot 5: no block"), "{}", stderr(&out));
}
