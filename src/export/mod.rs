//! `chronicle worker export`: an LLM training dataset from a chain's
//! canonical store. The blocks of a slot range become documents (one per
//! selected transaction, rendered through a built-in template, with their
//! metadata: `document.rs`, each chain's renderer under `chain/`), are
//! deduplicated by content (and, when asked, by similarity:
//! `near_duplicates.rs`) and split into train and validation by content
//! hash and seed, and are written as shards (`shards.rs`): JSONL (zstd),
//! Parquet and llm.c token files (`tokens.rs`). Then a dataset card and,
//! last, `manifest.json` (`manifest.rs`): a reader that finds the manifest
//! finds every shard it lists. A killed export run again resumes past its
//! finished shards (`checkpoint.rs`).
//!
//! Deterministic: documents are taken in block, then transaction order
//! whatever the concurrency (blocks are read and rendered in parallel, in
//! order), shards close at the same documents, and no file records a time;
//! the same spec over the same blocks gives the same bytes.

pub mod checkpoint;
pub mod document;
pub mod inline_template;
pub mod manifest;
pub mod near_duplicates;
pub mod shards;
pub mod tokens;
pub mod unpublished;
pub mod window;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use self::checkpoint::{Checkpoint, GroupState};
use self::document::{Document, Rendering, Selection};
use self::manifest::{Manifest, Split};
use self::near_duplicates::NearDuplicates;
use self::shards::ShardWriter;
use self::tokens::Tokenizer;
use crate::chain::{self, ChainAdapter};
use crate::crd::chain_source::ChainFamily;
use crate::crd::training_export::ExportFormat;
use crate::pipeline::BlockNumber;
use crate::store;
use crate::telemetry::metrics::{WORKER, WorkerMetrics};

/// Where a chain's documents come from: its canonical store, read.
#[async_trait]
pub trait DocumentSource: Send + Sync {
    /// The stored blocks' numbers within `start..=end`, ascending.
    async fn blocks(&self, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, String>;

    /// The first stored block at or after `number`, with its time (Unix
    /// seconds) where the block records one.
    async fn first_block_from(&self, number: BlockNumber) -> Result<Option<(BlockNumber, Option<i64>)>, String>;

    /// The selected transactions of block `number`, as documents, in order.
    async fn documents(
        &self,
        number: BlockNumber,
        selection: &Selection,
        template: &Rendering,
    ) -> Result<Vec<Document>, String>;

    /// The version of the program-name registry documents are rendered with.
    fn registry_version(&self) -> &'static str;
}

/// Everything an export needs.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    pub chain: ChainFamily,
    pub store: String,
    pub store_access: store::BigtableAccess,
    pub from: BlockNumber,
    pub to: BlockNumber,
    /// Only the blocks of `from..=to` whose time is in this window.
    pub window: Option<window::TimeWindow>,
    pub selection: Selection,
    pub template: Rendering,
    /// Needed for the `tokens` format.
    pub tokenizer: Option<tokens::TokenizerChoice>,
    pub sequence_length: usize,
    /// `file://`, `s3://` or `gs://`: where shards, card and manifest go.
    pub output: String,
    pub formats: Vec<ExportFormat>,
    /// Shards close (both splits at once) once the documents' text since
    /// the last ones reaches this many bytes.
    pub shard_bytes: u64,
    pub validation_fraction: f64,
    pub seed: u64,
    pub exact_dedup: bool,
    /// Drop documents at least this similar (estimated Jaccard of word
    /// 3-grams) to a kept one; none: off.
    pub near_duplicate: Option<f64>,
    /// Blocks read and rendered at once.
    pub concurrency: usize,
}

/// What an export made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub documents: u64,
    pub duplicates: u64,
    pub near_duplicates: u64,
    pub tokens: u64,
    pub shards: u64,
    pub bytes: u64,
    /// `sha256:…` over every shard's path and digest, in order.
    pub digest: String,
    pub manifest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The spec cannot be run as given.
    #[error("{0}")]
    Invalid(String),
    #[error("reading blocks: {0}")]
    Source(String),
    #[error("writing the dataset: {0}")]
    Output(String),
}

/// Runs an export with the chain's adapter.
pub async fn run(config: ExportConfig) -> Result<ExportSummary, ExportError> {
    check(&config)?;
    let adapter = chain::adapter(config.chain).map_err(ExportError::Invalid)?;
    let documents = crate::with_adapter!(adapter, |chain| {
        let store = store::open_for(&chain, &config.store, &config.store_access)
            .await
            .map_err(|e| ExportError::Source(e.to_string()))?;
        chain.document_source(store)
    });
    run_with(documents, config).await
}

fn check(config: &ExportConfig) -> Result<(), ExportError> {
    let invalid = |reason: String| Err(ExportError::Invalid(reason));
    if config.from > config.to {
        return invalid(format!("the range {}..={} is empty", config.from, config.to));
    }
    if let Some(window) = config.window.filter(|w| w.start >= w.end) {
        return invalid(format!("the window's start {} is not before its end {}", window.start, window.end));
    }
    if config.formats.contains(&ExportFormat::Tokens) && config.tokenizer.is_none() {
        return invalid("the tokens format needs a tokenizer".into());
    }
    if config.sequence_length == 0 {
        return invalid("sequenceLength must be at least 1".into());
    }
    if config.near_duplicate.is_some_and(|t| !(0.5..=1.0).contains(&t)) {
        return invalid(format!("a near-duplicate threshold of {:?} is not in [0.5, 1]", config.near_duplicate));
    }
    if config.selection.sample.is_some_and(|s| !(s > 0.0 && s <= 1.0)) {
        return invalid(format!("a sample of {:?} is not in (0, 1]", config.selection.sample));
    }
    if let (Some(min), Some(max)) = (config.selection.min_bytes, config.selection.max_bytes)
        && min > max
    {
        return invalid(format!("minBytes {min} exceeds maxBytes {max}"));
    }
    if !(0.0..0.5).contains(&config.validation_fraction) {
        return invalid(format!("validationFraction {} is not in [0, 0.5)", config.validation_fraction));
    }
    Ok(())
}

/// [`run`] over a given source.
pub async fn run_with(source: Arc<dyn DocumentSource>, config: ExportConfig) -> Result<ExportSummary, ExportError> {
    let result = build(source, config).await;
    WorkerMetrics::count(&WORKER.export_runs, if result.is_ok() { "published" } else { "failed" }, 1);
    result
}

async fn build(source: Arc<dyn DocumentSource>, mut config: ExportConfig) -> Result<ExportSummary, ExportError> {
    check(&config)?;
    if let Some(window) = config.window {
        let slots =
            window::slots_of(source.as_ref(), window, config.from, config.to).await.map_err(ExportError::Source)?;
        (config.from, config.to) = slots.ok_or_else(|| {
            ExportError::Invalid(format!(
                "the store holds no block whose time is in the window [{}, {}): nothing to export",
                manifest::rfc3339(window.start),
                manifest::rfc3339(window.end)
            ))
        })?;
    }
    let tokenizer = match (config.formats.contains(&ExportFormat::Tokens), &config.tokenizer) {
        (true, Some(choice)) => Some(Arc::new(Tokenizer::open(choice).await.map_err(ExportError::Invalid)?)),
        _ => None,
    };
    let (store, root) = crate::lake::object_store_at(&config.output).map_err(|e| ExportError::Output(e.to_string()))?;
    let fingerprint = checkpoint::fingerprint(&config, source.registry_version(), tokenizer.as_deref());
    let resumed = checkpoint::load(store.as_ref(), &root, &fingerprint).await.map_err(ExportError::Output)?;
    if resumed.is_none() {
        // Another definition's resume state must not outlive the shards this run overwrites.
        checkpoint::remove(store.as_ref(), &root).await.map_err(ExportError::Output)?;
    }
    // Where a resumed run starts: a block, and how many of its documents are taken.
    let start = resumed.as_ref().map(|c| (c.block, c.skip));
    let mut at = resumed.unwrap_or(Checkpoint { fingerprint, ..Checkpoint::default() });
    let mut blocks = source.blocks(config.from, config.to).await.map_err(ExportError::Source)?;
    if blocks.is_empty() {
        return Err(ExportError::Invalid(format!(
            "the store holds no block in {}..={}: nothing to export",
            config.from, config.to
        )));
    }
    let mut writers = [Split::Train, Split::Validation].map(|split| {
        let written = at.shards.iter().filter(|s| s.split == split).cloned().collect();
        ShardWriter::new(
            store.clone(),
            root.clone(),
            split,
            &config,
            tokenizer.clone(),
            at.next_shard[split as usize],
            written,
        )
    });
    let mut seen = HashSet::new();
    let (mut near, signer) = match config.near_duplicate {
        Some(threshold) => {
            let (index, signer) = NearDuplicates::new(threshold);
            (Some(index), Some(signer))
        }
        None => (None, None),
    };
    if start.is_some() {
        // The dedup state as it stood, rebuilt in the order it was built.
        for group in checkpoint::load_groups(store.as_ref(), &root, &at).await.map_err(ExportError::Output)? {
            seen.extend(group.hashes);
            if let Some(index) = near.as_mut() {
                group.signatures.into_iter().for_each(|signature| index.keep(signature));
            }
        }
        blocks.retain(|number| *number >= at.block);
        tracing::info!(
            slot = at.block,
            groups = at.groups,
            shards = at.shards.len(),
            documents = at.documents,
            "resuming the export past its finished shards"
        );
    }
    // What the open group adds to the dedup state, and its text so far.
    let (mut group, mut group_text) = (GroupState::default(), 0u64);

    // Blocks are read, rendered and tokenized in parallel (one task each, so
    // on every core), and taken in order.
    let rendered = futures::stream::iter(blocks)
        .map(|number| {
            let (source, selection, template, tokenizer, signer) =
                (source.clone(), config.selection.clone(), config.template.clone(), tokenizer.clone(), signer.clone());
            let seed = config.seed;
            let task = tokio::spawn(async move {
                let docs = source.documents(number, &selection, &template).await?;
                let docs = docs
                    .into_iter()
                    .filter(|doc| selection.keeps(doc, seed))
                    .map(|doc| {
                        let tokens = match &tokenizer {
                            Some(t) => t.encode(&doc.text).map_err(|e| format!("slot {number}: {e}"))?,
                            None => Vec::new(),
                        };
                        let signature = signer.as_ref().map(|s| s.signature(&doc.text));
                        Ok((doc, tokens, signature))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok::<_, String>((number, docs))
            });
            async move { task.await.map_err(|e| format!("block {number}: rendering failed: {e}"))? }
        })
        .buffered(config.concurrency.max(1));
    futures::pin_mut!(rendered);
    while let Some(block) = rendered.next().await {
        let (number, docs) = block.map_err(ExportError::Source)?;
        // A resumed block's first documents were taken before the checkpoint.
        let taken = match start {
            Some((block, skip)) if block == number => skip,
            _ => 0,
        };
        for (index, (document, tokens, signature)) in docs.into_iter().enumerate().skip(taken) {
            let hash = document.content_hash();
            if config.exact_dedup {
                if !seen.insert(hash) {
                    at.duplicates += 1;
                    WorkerMetrics::count(&WORKER.export_documents, "duplicate", 1);
                    continue;
                }
                group.hashes.push(hash);
            }
            if let (Some(index), Some(signature)) = (near.as_mut(), signature) {
                if index.is_duplicate(&signature) {
                    at.near_duplicates += 1;
                    WorkerMetrics::count(&WORKER.export_documents, "near_duplicate", 1);
                    continue;
                }
                group.signatures.push(signature);
            }
            at.documents += 1;
            WorkerMetrics::count(&WORKER.export_documents, "kept", 1);
            group_text += document.text.len() as u64;
            writers[split_of(&hash, config.seed, config.validation_fraction) as usize].push(document, tokens);
            if group_text >= config.shard_bytes.max(1) {
                // The group closes: its shards, then what resuming needs.
                for writer in &mut writers {
                    writer.flush().await.map_err(ExportError::Output)?;
                }
                (at.block, at.skip, at.groups) = (number, index + 1, at.groups + 1);
                at.next_shard = writers.each_ref().map(|w| w.next());
                at.shards = writers.iter().flat_map(|w| w.written().iter().cloned()).collect();
                checkpoint::save(store.as_ref(), &root, &at, &group).await.map_err(ExportError::Output)?;
                (group, group_text) = (GroupState::default(), 0);
            }
        }
    }
    for writer in &mut writers {
        writer.flush().await.map_err(ExportError::Output)?;
    }
    let shards = writers.iter().flat_map(|w| w.written().iter().cloned()).collect();
    let manifest = Manifest::new(
        &config,
        source.registry_version(),
        tokenizer.as_deref(),
        shards,
        at.duplicates,
        at.near_duplicates,
    );
    let url = manifest.publish(store.as_ref(), &root, &config.output).await.map_err(ExportError::Output)?;
    if let Err(e) = checkpoint::remove(store.as_ref(), &root).await {
        tracing::warn!(error = %e, "the dataset is published; its resume state was not all removed");
    }
    WORKER.export_tokens.inc_by(manifest.total_tokens());
    WORKER.export_shards.inc_by(manifest.shards.len() as u64);
    WORKER.export_bytes.inc_by(manifest.shards.iter().map(|s| s.bytes).sum());
    Ok(ExportSummary {
        documents: at.documents,
        duplicates: at.duplicates,
        near_duplicates: at.near_duplicates,
        tokens: manifest.total_tokens(),
        shards: manifest.shards.len() as u64,
        bytes: manifest.shards.iter().map(|s| s.bytes).sum(),
        digest: manifest.digest.clone(),
        manifest: url,
    })
}

/// Deletes every object under `prefix`.
pub async fn remove_under(store: &dyn ObjectStore, prefix: &Path) -> Result<(), String> {
    let objects: Vec<_> = store.list(Some(prefix)).try_collect().await.map_err(|e| format!("listing {prefix}: {e}"))?;
    for object in objects {
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(format!("{}: {e}", object.location)),
        }
    }
    Ok(())
}

/// Train or validation, by the content hash and the seed: the same document
/// lands in the same split whatever else is exported with it.
pub fn split_of(hash: &[u8; 32], seed: u64, validation_fraction: f64) -> Split {
    // sha256(seed ‖ hash): no domain, as datasets made before sampling existed drew it.
    if document::draw(b"", seed, hash) < validation_fraction { Split::Validation } else { Split::Train }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn the_split_follows_the_seed_and_fraction() {
        let hashes: Vec<[u8; 32]> = (0u32..2000).map(|i| Sha256::digest(i.to_le_bytes()).into()).collect();
        let validation =
            |seed, fraction| hashes.iter().filter(|h| split_of(h, seed, fraction) == Split::Validation).count();
        assert_eq!(validation(1, 0.0), 0);
        let share = validation(1, 0.1);
        assert!((150..250).contains(&share), "about a tenth: {share}");
        assert_eq!(share, validation(1, 0.1), "deterministic");
        assert_ne!(share, validation(2, 0.1), "another seed, another split");
    }
}
