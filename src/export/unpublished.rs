//! What a `TrainingExport` deleted before it published leaves behind:
//! shards, token files, resume state and a dataset card that no manifest
//! lists. The reconciler's finalizer runs this (a cleanup Job,
//! `chronicle worker run` with [`ExportCleanupSpec`]) so that deleting an
//! export mid-run does not leave half a dataset in the bucket.
//!
//! Only names an export writes are touched — `data/{train,validation}-NNNNN.{jsonl.zst,parquet}`,
//! `tokens/{train,validation}-NNNNN.bin`, `_resume/checkpoint.json`,
//! `_resume/group-NNNNN.bin`, and a `README.md` Chronicle wrote when no
//! manifest is published: an object a published `manifest.json` lists
//! stays (a dataset an earlier generation published there), and so does
//! anything else at the output (another tool's files under `data/` too).
//!
//! [`ExportCleanupSpec`]: crate::worker::spec::ExportCleanupSpec

use std::collections::HashSet;

use object_store::ObjectStoreExt;
use serde::Deserialize;

use super::ExportError;
use super::shards::under;

/// The dataset layout's prefixes under the output.
const LAYOUT: [&str; 3] = ["data", "tokens", "_resume"];

/// What every card Chronicle writes says (`manifest.rs`).
const CARD_MARK: &str = "Exported by Chronicle";

/// Whether `path` (relative to the output) is a name an export writes.
fn is_written_by_an_export(path: &str) -> bool {
    let numbered = |name: &str, prefix: &str, suffix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(|n| n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let shard = |name: &str, suffixes: &[&str]| {
        ["train-", "validation-"].iter().any(|split| suffixes.iter().any(|suffix| numbered(name, split, suffix)))
    };
    match path.split_once('/') {
        Some(("data", name)) => shard(name, &[".jsonl.zst", ".parquet"]),
        Some(("tokens", name)) => shard(name, &[".bin"]),
        Some(("_resume", name)) => name == "checkpoint.json" || numbered(name, "group-", ".bin"),
        _ => false,
    }
}

#[derive(Deserialize)]
struct PublishedShards {
    shards: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    path: String,
}

/// What was removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub objects: u64,
    pub bytes: u64,
    /// Objects a published manifest lists, left in place.
    pub kept: u64,
}

/// Removes the unpublished part of the dataset at `output`.
pub async fn remove(output: &str) -> Result<Removed, ExportError> {
    let fail = |e: String| ExportError::Output(e);
    let (store, root) = crate::lake::object_store_at(output).map_err(|e| fail(e.to_string()))?;
    let manifest = under(&root, "manifest.json");
    let listed: Option<HashSet<String>> = match store.get(&manifest).await {
        Ok(found) => {
            let bytes = found.bytes().await.map_err(|e| fail(format!("{manifest}: {e}")))?;
            let published: PublishedShards = serde_json::from_slice(&bytes)
                .map_err(|e| fail(format!("{manifest} is not a Chronicle manifest, so nothing is removed: {e}")))?;
            Some(published.shards.into_iter().map(|s| s.path).collect())
        }
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(fail(format!("{manifest}: {e}"))),
    };
    let mut removed = Removed::default();
    let mut candidates = Vec::new();
    for prefix in LAYOUT {
        let objects: Vec<_> = futures::TryStreamExt::try_collect(store.list(Some(&under(&root, prefix))))
            .await
            .map_err(|e| fail(format!("listing {}: {e}", under(&root, prefix))))?;
        candidates.extend(objects);
    }
    // The card describes the published dataset; without one it is partial.
    let card = under(&root, "README.md");
    if listed.is_none()
        && let Ok(found) = store.get(&card).await
    {
        let meta = found.meta.clone();
        let text = found.bytes().await.map_err(|e| fail(format!("{card}: {e}")))?;
        if String::from_utf8_lossy(&text).contains(CARD_MARK) {
            candidates.push(meta);
        }
    }
    for object in candidates {
        let relative = object.location.as_ref().strip_prefix(root.as_ref()).unwrap_or(object.location.as_ref());
        let relative = relative.trim_start_matches('/');
        if relative != "README.md" && !is_written_by_an_export(relative) {
            continue;
        }
        if listed.as_ref().is_some_and(|paths| paths.contains(relative)) {
            removed.kept += 1;
            continue;
        }
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(fail(format!("{}: {e}", object.location))),
        }
        removed.objects += 1;
        removed.bytes += object.size;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Beside a published dataset, what it does not list goes and what it lists stays.
    #[tokio::test]
    async fn what_a_published_manifest_lists_stays() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let file = dir.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        };
        write("manifest.json", r#"{"shards": [{"path": "data/train-00000.jsonl.zst"}]}"#);
        write("README.md", "Exported by Chronicle: the published dataset's card");
        write("data/train-00000.jsonl.zst", "listed");
        write("data/train-00001.jsonl.zst", "not listed");
        write("tokens/train-00001.bin", "not listed");
        write("_resume/checkpoint.json", "{}");
        write("notes.txt", "not the dataset's");
        write("data/someone-else.parquet", "not an export's name");
        let removed = remove(&format!("file://{}", dir.path().display())).await.unwrap();
        assert_eq!((removed.objects, removed.kept), (3, 1));
        for (path, stays) in [
            ("manifest.json", true),
            ("README.md", true),
            ("data/train-00000.jsonl.zst", true),
            ("data/train-00001.jsonl.zst", false),
            ("tokens/train-00001.bin", false),
            ("_resume/checkpoint.json", false),
            ("notes.txt", true),
            ("data/someone-else.parquet", true),
        ] {
            assert_eq!(dir.path().join(path).exists(), stays, "{path}");
        }
    }

    #[tokio::test]
    async fn a_manifest_that_is_not_chronicles_stops_the_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), "[1, 2]").unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/x.parquet"), "someone's").unwrap();
        let error = remove(&format!("file://{}", dir.path().display())).await.unwrap_err();
        assert!(error.to_string().contains("is not a Chronicle manifest"), "{error}");
        assert!(dir.path().join("data/x.parquet").exists());
    }
}
