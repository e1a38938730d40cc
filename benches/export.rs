//! Training export throughput: Chronicle's export (read each block from the
//! embedded store, derive its rows, render each transaction, tokenize,
//! deduplicate, split, write JSONL and token shards) next to a ceiling
//! measured in the same run on the same documents: the tokenizer encoding
//! their text alone on one core. Both tokenizers: tiktoken-rs (cl100k_base)
//! and Hugging Face `tokenizers` (all-MiniLM-L6-v2's tokenizer.json, the
//! offline one in tests/data). Per core, since the export renders and
//! tokenizes on every core.
//!
//! `cargo bench --bench export` (BLOCKS sets the count; 400 by default).
//! The real fixture blocks are replayed at consecutive slots (real
//! content; votes included, so that every transaction is a document).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use chronicle::crd::chain_source::ChainFamily;
use chronicle::crd::training_export::{ExportFormat, TokenizerEncoding};
use chronicle::export::document::{Rendering, Selection, Template};
use chronicle::export::tokens::{HuggingFaceFile, Tokenizer, TokenizerChoice};
use chronicle::export::{ExportConfig, run};
use chronicle::store::BlockStore;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let count: u64 = std::env::var("BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 400 } else { 8 });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("embedded://{}", dir.path().join("ledger").display());
        let store = chronicle::store::open(&url).await.unwrap();
        let blocks = support::replayed(1_000_000, count);
        for (slot, block) in &blocks {
            store.write_block(*slot, block, &[]).await.unwrap();
        }
        store.sync().await.unwrap();
        drop(store);
        let tokenizers = [
            ("tiktoken-rs cl100k_base", TokenizerChoice::Encoding(TokenizerEncoding::Cl100kBase)),
            (
                "HF tokenizers MiniLM",
                TokenizerChoice::HuggingFace(HuggingFaceFile {
                    path: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tokenizers/all-MiniLM-L6-v2/tokenizer.json")
                        .into(),
                    sha256: None,
                    end_of_text: None,
                }),
            ),
        ];
        println!("export: {count} blocks, {cores} cores");
        for (name, choice) in tokenizers {
            let out = dir.path().join(name.replace(' ', "-"));
            let config = ExportConfig {
                chain: ChainFamily::Solana,
                store: url.clone(),
                store_access: chronicle::store::BigtableAccess::default(),
                from: 1_000_000,
                to: 1_000_000 + count - 1,
                window: None,
                selection: Selection { include_votes: true, ..Selection::default() },
                template: Rendering::Builtin(Template::TransactionSummary),
                tokenizer: Some(choice.clone()),
                sequence_length: 2048,
                output: format!("file://{}", out.display()),
                formats: vec![ExportFormat::Jsonl, ExportFormat::Tokens],
                shard_bytes: 64 << 20,
                validation_fraction: 0.01,
                seed: 0,
                // Replayed blocks repeat their transactions: keep them all, so every block counts.
                exact_dedup: false,
                near_duplicate: None,
                concurrency: cores * 2,
            };
            let started = Instant::now();
            let summary = run(config).await.unwrap();
            let ours = started.elapsed().as_secs_f64();

            // The ceiling: the same documents' text, encoded alone on one core.
            let texts = read_texts(&out);
            let tokenizer = Tokenizer::open(&choice).await.unwrap();
            let started = Instant::now();
            let encoded: usize = texts.iter().map(|t| tokenizer.encode(t).map_or(0, |t| t.len())).sum();
            let ceiling = started.elapsed().as_secs_f64();
            let bytes: usize = texts.iter().map(String::len).sum();
            let per_core = |n: f64| n / ours / cores as f64;
            println!("{name}: {} documents, {} tokens (padding included)", summary.documents, summary.tokens);
            println!(
                "  chronicle export         {:>10.0} docs/s {:>12.0} tokens/s  per core {:>9.0} docs/s {:>11.0} tokens/s",
                summary.documents as f64 / ours,
                encoded as f64 / ours,
                per_core(summary.documents as f64),
                per_core(encoded as f64)
            );
            println!(
                "  ceiling: tokenizer alone {:>10.0} docs/s {:>12.0} tokens/s  one core, {:.2} MB/s of text",
                texts.len() as f64 / ceiling,
                encoded as f64 / ceiling,
                bytes as f64 / 1e6 / ceiling
            );
            // What every document costs before tokenizing: reading its block and deriving its rows (one core).
            let (read, derive) = read_and_derive(&url, &blocks).await;
            println!(
                "  ceiling: rows derived alone {:.1} blocks/s, blocks read alone {:.1} blocks/s (one core)",
                count as f64 / derive,
                count as f64 / read
            );
            let all = ceiling + derive + read;
            println!(
                "  ceiling: read + derive + tokenize, one core {:>8.0} docs/s -> ratio per core {:.2}",
                summary.documents as f64 / all,
                per_core(summary.documents as f64) / (summary.documents as f64 / all)
            );
            println!(
                "  ratio (per core, tokens/s) {:.2} of the tokenizer alone",
                per_core(encoded as f64) / (encoded as f64 / ceiling)
            );
        }
    });
}

/// Seconds to read every block back from the store (one at a time), and to
/// derive their rows.
async fn read_and_derive(
    url: &str,
    blocks: &std::collections::BTreeMap<u64, solana_transaction_status::ConfirmedBlock>,
) -> (f64, f64) {
    let started = Instant::now();
    for (slot, block) in blocks {
        std::hint::black_box(chronicle::chain::solana::rows::block_rows(*slot, block).unwrap());
    }
    let derive = started.elapsed().as_secs_f64();
    let store = chronicle::store::open(url).await.unwrap();
    let started = Instant::now();
    for slot in blocks.keys() {
        std::hint::black_box(store.block(*slot).await.unwrap().unwrap());
    }
    (started.elapsed().as_secs_f64(), derive)
}

/// Every document's text from the JSONL shards, in order.
fn read_texts(out: &std::path::Path) -> Vec<String> {
    let mut paths: Vec<_> = std::fs::read_dir(out.join("data")).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let mut texts = Vec::new();
    for path in paths {
        let text = zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let document: serde_json::Value = serde_json::from_slice(line).unwrap();
            texts.push(document["text"].as_str().unwrap().to_string());
        }
    }
    texts
}
