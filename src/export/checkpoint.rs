//! Resuming a killed export past its finished shards. Shards close in
//! groups (both splits at once, once the group's text reaches the shard
//! size), so at a group's end no document waits in memory: everything the
//! rest of the export needs is the position in the document stream, the
//! counts, the shards written and the dedup state. After each group the
//! export writes, under `_resume/` in its output:
//!
//! - `group-NNNNN.bin`: the group's dedup state (the content hashes it
//!   added to the exact-dedup set and the MinHash signatures it added to
//!   the near-duplicate index), bincode, zstd — written once, even empty;
//! - `checkpoint.json`: where to go on (the next block and how many of its
//!   documents are taken), the counts and every shard entry so far, and
//!   the export's fingerprint — rewritten, last.
//!
//! A run that finds a checkpoint with its own fingerprint rebuilds the
//! dedup state from the group files (in order, so the index answers as it
//! did) and reads on from the checkpoint's block: finished shards are
//! neither read, rendered nor written again, and the dataset is the same
//! bytes as an undisturbed run's. A checkpoint of another definition is
//! ignored (the export starts over). `_resume/` is removed once the
//! manifest is published.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ExportConfig;
use super::manifest::{Manifest, ShardEntry};
use super::shards::{hex, under};
use super::tokens::Tokenizer;
use crate::pipeline::BlockNumber;

const DIR: &str = "_resume";
const CHECKPOINT: &str = "_resume/checkpoint.json";
/// zstd level of the group files (hashes and signatures barely compress; keep it cheap).
const STATE_ZSTD_LEVEL: i32 = 1;

/// Where a resumed export goes on, and what it has made so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`fingerprint`] of the export that wrote it.
    pub fingerprint: String,
    /// The block to read on from, and how many of its documents are taken.
    pub block: BlockNumber,
    pub skip: usize,
    /// Finished shard groups (`group-00000.bin` … ).
    pub groups: u32,
    pub documents: u64,
    pub duplicates: u64,
    pub near_duplicates: u64,
    /// The next shard number of each split (train, validation).
    pub next_shard: [u32; 2],
    pub shards: Vec<ShardEntry>,
}

/// What one group added to the dedup state, in the order it was added.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GroupState {
    pub hashes: Vec<[u8; 32]>,
    pub signatures: Vec<Vec<u32>>,
}

/// What defines the dataset: the manifest's description of it (chain,
/// resolved range, selection, template, registry, tokenizer and its file,
/// sequence length, split, dedup, Chronicle's version), the store, the
/// formats and the shard size. Anything that changes a byte changes it.
pub fn fingerprint(config: &ExportConfig, registry: &'static str, tokenizer: Option<&Tokenizer>) -> String {
    let definition = Manifest::new(config, registry, tokenizer, Vec::new(), 0, 0);
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&definition).expect("a manifest serializes"));
    hasher.update(format!("\n{}\n{:?}\n{}\n", config.store, config.formats, config.shard_bytes));
    format!("sha256:{}", hex(&hasher.finalize()))
}

/// The output's checkpoint, if it has one of this fingerprint.
pub async fn load(store: &dyn ObjectStore, root: &Path, fingerprint: &str) -> Result<Option<Checkpoint>, String> {
    let location = under(root, CHECKPOINT);
    let bytes = match store.get(&location).await {
        Ok(found) => found.bytes().await.map_err(|e| format!("{location}: {e}"))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(format!("{location}: {e}")),
    };
    match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(checkpoint) if checkpoint.fingerprint == fingerprint => Ok(Some(checkpoint)),
        Ok(_) => {
            tracing::warn!(checkpoint = %location, "the output holds a checkpoint of another export definition: starting over");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(checkpoint = %location, error = %e, "the output's checkpoint is unreadable: starting over");
            Ok(None)
        }
    }
}

/// The dedup state the checkpoint's groups added, group by group.
pub async fn load_groups(
    store: &dyn ObjectStore,
    root: &Path,
    checkpoint: &Checkpoint,
) -> Result<Vec<GroupState>, String> {
    let mut groups = Vec::with_capacity(checkpoint.groups as usize);
    for group in 0..checkpoint.groups {
        let location = under(root, &group_path(group));
        let bytes = match store.get(&location).await {
            Ok(found) => found.bytes().await.map_err(|e| format!("{location}: {e}"))?,
            // Written before the checkpoint that counts it, even when empty.
            Err(e) => return Err(format!("{location}: {e} (the checkpoint counts it: remove _resume/ to start over)")),
        };
        let raw = zstd::decode_all(bytes.as_ref()).map_err(|e| format!("{location}: {e}"))?;
        groups.push(bincode::deserialize(&raw).map_err(|e| format!("{location}: {e}"))?);
    }
    Ok(groups)
}

/// Records a finished group: its dedup state, then the checkpoint.
pub async fn save(
    store: &dyn ObjectStore,
    root: &Path,
    checkpoint: &Checkpoint,
    group: &GroupState,
) -> Result<(), String> {
    let location = under(root, &group_path(checkpoint.groups - 1));
    let raw = bincode::serialize(group).map_err(|e| format!("{location}: {e}"))?;
    let bytes = zstd::encode_all(raw.as_slice(), STATE_ZSTD_LEVEL).map_err(|e| format!("{location}: {e}"))?;
    store.put(&location, bytes.into()).await.map_err(|e| format!("{location}: {e}"))?;
    let location = under(root, CHECKPOINT);
    let bytes = serde_json::to_vec(checkpoint).map_err(|e| format!("{location}: {e}"))?;
    store.put(&location, bytes.into()).await.map(drop).map_err(|e| format!("{location}: {e}"))
}

/// Removes `_resume/`: the checkpoint first, so that a removal cut short
/// never leaves a checkpoint whose group files are gone.
pub async fn remove(store: &dyn ObjectStore, root: &Path) -> Result<(), String> {
    let checkpoint = under(root, CHECKPOINT);
    match store.delete(&checkpoint).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(format!("{checkpoint}: {e}")),
    }
    super::remove_under(store, &under(root, DIR)).await
}

fn group_path(group: u32) -> String {
    format!("{DIR}/group-{group:05}.bin")
}
