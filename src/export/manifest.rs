//! `manifest.json` and the dataset card (`README.md`, Hugging Face's
//! format: YAML front matter with configs, splits and features). The
//! manifest lists every shard with its counts and sha256, what made it
//! (template, registry, tokenizer, Chronicle's version, chain and range,
//! selection, dedup counts) and a dataset digest over the shards; it holds
//! no time, so a rebuild gives the same bytes. It is written last.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ExportConfig;
use super::shards::{hex, under};
use super::tokens::Tokenizer;
use crate::crd::training_export::ExportFormat;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train = 0,
    Validation = 1,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Validation => "validation",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Relative to the dataset's root.
    pub path: String,
    pub split: Split,
    pub format: ExportFormat,
    pub documents: u64,
    /// Token files: tokens, padding included, and whole sequences.
    pub tokens: u64,
    pub sequences: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub format: &'static str,
    pub chronicle_version: &'static str,
    pub chain: String,
    pub first_slot: u64,
    pub last_slot: u64,
    pub selection: SelectionRecord,
    pub template: String,
    pub program_registry: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerRecord>,
    pub sequence_length: usize,
    pub validation_fraction: f64,
    pub seed: u64,
    pub exact_dedup: bool,
    pub exact_duplicates: u64,
    /// MinHash over word 3-grams; none: off.
    pub near_duplicate_threshold: Option<f64>,
    pub near_duplicates: u64,
    pub documents: SplitCounts,
    pub shards: Vec<ShardEntry>,
    /// `sha256:` of every shard's `path sha256` line, in order.
    pub digest: String,
}

#[derive(Debug, Serialize)]
pub struct SelectionRecord {
    /// The time window the slots were chosen by (RFC 3339, `[start, end)`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<[String; 2]>,
    pub programs: Vec<String>,
    pub success_only: bool,
    pub include_votes: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instruction_types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// The fraction of documents kept (by content hash and the seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(seconds: i64) -> String {
    match std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(seconds.max(0) as u64)) {
        Some(time) => humantime::format_rfc3339_seconds(time).to_string(),
        None => seconds.to_string(),
    }
}

#[derive(Debug, Serialize)]
pub struct TokenizerRecord {
    pub encoding: &'static str,
    /// The `tokenizer.json`'s sha256, for a Hugging Face tokenizer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    pub end_of_text: u32,
    pub vocabulary: u32,
    pub token_bytes: usize,
    /// llm.c's `.bin`: 256 int32 header (magic, version, count), then tokens.
    pub file_format: &'static str,
}

#[derive(Debug, Default, Serialize)]
pub struct SplitCounts {
    pub train: u64,
    pub validation: u64,
}

impl Manifest {
    pub fn new(
        config: &ExportConfig,
        registry: &'static str,
        tokenizer: Option<&Tokenizer>,
        shards: Vec<ShardEntry>,
        exact_duplicates: u64,
        near_duplicates: u64,
    ) -> Self {
        let mut documents = SplitCounts::default();
        // Every format of a shard holds the same documents: count one.
        for shard in shards.iter().filter(|s| Some(s.format) == shards.first().map(|f| f.format)) {
            match shard.split {
                Split::Train => documents.train += shard.documents,
                Split::Validation => documents.validation += shard.documents,
            }
        }
        let mut hasher = Sha256::new();
        for shard in &shards {
            hasher.update(format!("{} {}\n", shard.path, shard.sha256));
        }
        Self {
            format: "chronicle-training-export/1",
            chronicle_version: env!("CARGO_PKG_VERSION"),
            chain: config.chain.as_str().to_string(),
            first_slot: config.from,
            last_slot: config.to,
            selection: SelectionRecord {
                window: config.window.map(|w| [rfc3339(w.start), rfc3339(w.end)]),
                programs: config.selection.programs.clone(),
                success_only: config.selection.success_only,
                include_votes: config.selection.include_votes,
                instruction_types: config.selection.instruction_types.clone(),
                min_bytes: config.selection.min_bytes,
                max_bytes: config.selection.max_bytes,
                sample: config.selection.sample,
            },
            template: config.template.id(),
            program_registry: registry,
            tokenizer: tokenizer.map(|t| TokenizerRecord {
                encoding: t.name(),
                file_sha256: t.file_sha256.clone(),
                end_of_text: t.end_of_text,
                vocabulary: t.vocabulary,
                token_bytes: t.width(),
                file_format: "llm.c",
            }),
            sequence_length: config.sequence_length,
            validation_fraction: config.validation_fraction,
            seed: config.seed,
            exact_dedup: config.exact_dedup,
            exact_duplicates,
            near_duplicate_threshold: config.near_duplicate,
            near_duplicates,
            documents,
            shards,
            digest: format!("sha256:{}", hex(&hasher.finalize())),
        }
    }

    pub fn total_tokens(&self) -> u64 {
        self.shards.iter().map(|s| s.tokens).sum()
    }

    /// Writes the card, then the manifest; returns the manifest's URL.
    pub async fn publish(&self, store: &dyn ObjectStore, root: &Path, url: &str) -> Result<String, String> {
        let put = async |path: &str, bytes: Vec<u8>| {
            let location = under(root, path);
            store.put(&location, bytes.into()).await.map(drop).map_err(|e| format!("{location}: {e}"))
        };
        put("README.md", self.card().into_bytes()).await?;
        let mut manifest = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        manifest.push(b'\n');
        put("manifest.json", manifest).await?;
        Ok(format!("{}/manifest.json", url.trim_end_matches('/')))
    }

    /// A Hugging Face dataset card: `load_dataset(<dir>)` reads the JSONL
    /// shards (or the Parquet ones when there are no JSONL);
    /// `load_dataset("parquet", data_files=…)` the Parquet shards beside them.
    fn card(&self) -> String {
        // A dataset directory has one format for `datasets`: the JSONL shards
        // when there are any, else the Parquet ones.
        let mut yaml = String::from("---\nconfigs:\n");
        let format = [ExportFormat::Jsonl, ExportFormat::Parquet]
            .into_iter()
            .find(|format| self.shards.iter().any(|s| s.format == *format));
        for (name, format, pattern) in
            [("default", ExportFormat::Jsonl, "jsonl.zst"), ("default", ExportFormat::Parquet, "parquet")]
                .into_iter()
                .filter(|(_, f, _)| Some(*f) == format)
        {
            let splits: Vec<Split> = [Split::Train, Split::Validation]
                .into_iter()
                .filter(|split| self.shards.iter().any(|s| s.format == format && s.split == *split))
                .collect();
            if splits.is_empty() {
                continue;
            }
            yaml += &format!("- config_name: {name}\n  data_files:\n");
            for split in splits {
                yaml += &format!("  - split: {}\n    path: data/{}-*.{pattern}\n", split.name(), split.name());
            }
        }
        yaml += "dataset_info:\n  features:\n";
        for (name, dtype) in [
            ("id", "string"),
            ("text", "string"),
            ("slot", "uint64"),
            ("block_time", "int64"),
            ("status", "string"),
            ("fee", "uint64"),
            ("template", "string"),
        ] {
            yaml += &format!("  - name: {name}\n    dtype: {dtype}\n");
        }
        for list in ["programs", "mints"] {
            yaml += &format!("  - name: {list}\n    sequence: string\n");
        }
        // Chat and instruction forms fill these; the others leave them empty.
        yaml += "  - name: messages\n    list:\n    - name: role\n      dtype: string\n    - name: content\n      dtype: string\n";
        yaml += "  - name: prompt\n    dtype: string\n  - name: completion\n    dtype: string\n";
        // Only the splits that have documents (`datasets` expects every split listed).
        yaml += "  splits:\n";
        for (name, count) in [("train", self.documents.train), ("validation", self.documents.validation)] {
            if count > 0 {
                yaml += &format!("  - name: {name}\n    num_examples: {count}\n");
            }
        }
        yaml += "license: other\n---\n\n";
        let tokens = match &self.tokenizer {
            Some(t) => format!(
                "Token files (`tokens/`) are llm.c's format: a header of 256 little-endian int32 \
                 (magic, version, token count), then {}-byte tokens of `{}`, each document preceded \
                 by end-of-text ({}) and packed into sequences of {} tokens.\n\n",
                t.token_bytes, t.encoding, t.end_of_text, self.sequence_length
            ),
            None => String::new(),
        };
        format!(
            "{yaml}# Transactions of {}, slots {}–{}\n\nExported by Chronicle {} with template `{}` \
             (program names: `{}`): {} training and {} validation documents, split by content hash \
             with seed {}; {} exact and {} near duplicates dropped. Dataset digest `{}`; every shard's sha256 is \
             in `manifest.json`.\n\n`datasets.load_dataset(\"<this directory>\")` loads the text; Parquet \
             shards (`data/*.parquet`, same documents) load with `load_dataset(\"parquet\", \
             data_files={{\"train\": \"data/train-*.parquet\", \"validation\": \"data/validation-*.parquet\"}})`.\n\n\
             {tokens}License: the chain's public data; check the terms of the \
             source you read it from before redistributing.\n",
            self.chain,
            self.first_slot,
            self.last_slot,
            self.chronicle_version,
            self.template,
            self.program_registry,
            self.documents.train,
            self.documents.validation,
            self.seed,
            self.exact_duplicates,
            self.near_duplicates,
            self.digest,
        )
    }
}
