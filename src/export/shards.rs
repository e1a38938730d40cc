//! A split's shards: documents gathered until the export closes the shard
//! group (`checkpoint.rs`), then written in every requested format under
//! the same name —
//! `data/<split>-NNNNN.jsonl.zst`, `data/<split>-NNNNN.parquet`,
//! `tokens/<split>-NNNNN.bin` — so a token shard holds exactly its text
//! shard's documents. Each object is written whole (one `put`).

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

use super::ExportConfig;
use super::document::Document;
use super::manifest::{ShardEntry, Split};
use super::tokens::{Tokenizer, pack, token_file};
use crate::crd::training_export::ExportFormat;

/// zstd level of JSONL shards (the lake's choice; text compresses alike).
const JSONL_ZSTD_LEVEL: i32 = 3;

pub struct ShardWriter {
    store: Arc<dyn ObjectStore>,
    root: Path,
    split: Split,
    formats: Vec<ExportFormat>,
    sequence_length: usize,
    tokenizer: Option<Arc<Tokenizer>>,
    documents: Vec<Document>,
    tokens: Vec<Vec<u32>>,
    next: u32,
    written: Vec<ShardEntry>,
}

impl ShardWriter {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: Path,
        split: Split,
        config: &ExportConfig,
        tokenizer: Option<Arc<Tokenizer>>,
        next: u32,
        written: Vec<ShardEntry>,
    ) -> Self {
        let mut formats = config.formats.clone();
        formats.sort_by_key(|f| *f as u8);
        formats.dedup();
        Self {
            store,
            root,
            split,
            formats,
            sequence_length: config.sequence_length,
            tokenizer,
            documents: Vec::new(),
            tokens: Vec::new(),
            next,
            written,
        }
    }

    pub fn push(&mut self, document: Document, tokens: Vec<u32>) {
        self.documents.push(document);
        self.tokens.push(tokens);
    }

    /// The next shard's number.
    pub fn next(&self) -> u32 {
        self.next
    }

    /// Every shard written, in order.
    pub fn written(&self) -> &[ShardEntry] {
        &self.written
    }

    /// Writes the documents gathered as the next shard (none: nothing).
    pub async fn flush(&mut self) -> Result<(), String> {
        if self.documents.is_empty() {
            return Ok(());
        }
        let name = format!("{}-{:05}", self.split.name(), self.next);
        let documents = std::mem::take(&mut self.documents);
        let tokens = std::mem::take(&mut self.tokens);
        self.next += 1;
        for format in self.formats.clone() {
            let (path, bytes, counts) = match format {
                ExportFormat::Jsonl => (format!("data/{name}.jsonl.zst"), jsonl(&documents)?, (0, 0)),
                ExportFormat::Parquet => (format!("data/{name}.parquet"), parquet(&documents)?, (0, 0)),
                ExportFormat::Tokens => {
                    let Some(tokenizer) = &self.tokenizer else { continue };
                    let packed = pack(&tokens, self.sequence_length, tokenizer.end_of_text);
                    let file = token_file(&packed.tokens, tokenizer.width())?;
                    (format!("tokens/{name}.bin"), file, (packed.tokens.len() as u64, packed.sequences))
                }
            };
            let entry = ShardEntry {
                path: path.clone(),
                split: self.split,
                format,
                documents: documents.len() as u64,
                tokens: counts.0,
                sequences: counts.1,
                bytes: bytes.len() as u64,
                sha256: hex(&Sha256::digest(&bytes)),
            };
            let location = under(&self.root, &path);
            self.store.put(&location, bytes.into()).await.map_err(|e| format!("{location}: {e}"))?;
            self.written.push(entry);
        }
        Ok(())
    }
}

/// One JSON object per line, zstd-compressed.
fn jsonl(documents: &[Document]) -> Result<Vec<u8>, String> {
    let mut text = Vec::new();
    for document in documents {
        serde_json::to_writer(&mut text, document).map_err(|e| e.to_string())?;
        text.push(b'\n');
    }
    zstd::encode_all(text.as_slice(), JSONL_ZSTD_LEVEL).map_err(|e| format!("compressing: {e}"))
}

fn parquet(documents: &[Document]) -> Result<Vec<u8>, String> {
    let batch = crate::lake::record_batch(documents)?;
    crate::lake::parquet_bytes(&batch)
}

/// `path` (with `/`s) inside `root`.
pub fn under(root: &Path, path: &str) -> Path {
    match root.as_ref() {
        "" => Path::from(path),
        prefix => Path::from(format!("{prefix}/{path}")),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
