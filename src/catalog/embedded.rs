//! The single-node catalog: the same records as the PostgreSQL catalog, in a
//! fjall database of its own. A batch's outcome is one atomic write batch.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::pipeline::BlockNumber;
use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};

use super::{
    BatchOutcome, Catalog, CatalogError, EpochDigest, ExportRecord, Gap, LakePartition, RecordedHead, Reorg,
    RetentionRecord, RowMismatch, ShardRange, ShardState, unix_now,
};
use crate::pipeline::SourceHead;

pub struct EmbeddedCatalog {
    path: PathBuf,
    db: Database,
    shards: Keyspace,
    skipped: Keyspace,
    gaps: Keyspace,
    /// `job NUL path` → partition.
    partitions: Keyspace,
    /// `job` → its source's [`RecordedHead`].
    heads: Keyspace,
    /// `job` → its [`ExportRecord`].
    exports: Keyspace,
    /// `job NUL table NUL key` → a [`RowMismatch`].
    mismatches: Keyspace,
    /// `job NUL epoch` → an [`EpochDigest`].
    digests: Keyspace,
    /// `policy` → its last [`RetentionRecord`].
    retention: Keyspace,
    /// `job NUL sequence` → a [`Reorg`], in the order repaired.
    reorgs: Keyspace,
    /// Commits read-modify-write shard records; one at a time.
    commit_lock: Mutex<()>,
}

#[derive(Serialize, Deserialize)]
struct ShardRecord {
    range: ShardRange,
    state: ShardState,
}

#[derive(Serialize, Deserialize)]
struct GapRecord {
    reason: String,
    attempts: u32,
    repaired: bool,
}

/// `job NUL big-endian number`: keys of one job sort by shard or slot.
fn key(job: &str, number: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(job.len() + 9);
    key.extend_from_slice(job.as_bytes());
    key.push(0);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

fn number_of(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..].try_into().expect("keys end in 8 bytes");
    u64::from_be_bytes(tail)
}

impl EmbeddedCatalog {
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let fail =
            |e: String| CatalogError::Unavailable { catalog: format!("embedded://{}", path.display()), message: e };
        std::fs::create_dir_all(path).map_err(|e| fail(format!("create {}: {e}", path.display())))?;
        let db = Database::builder(path).open().map_err(|e| fail(format!("open: {e}")))?;
        let open = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default).map_err(|e| fail(format!("open {name}: {e}")))
        };
        Ok(Self {
            path: path.to_path_buf(),
            shards: open("ingest_shards")?,
            skipped: open("skipped_slots")?,
            gaps: open("gaps")?,
            partitions: open("lake_partitions")?,
            heads: open("source_heads")?,
            exports: open("exports")?,
            mismatches: open("replica_mismatches")?,
            digests: open("replica_digests")?,
            retention: open("retention_runs")?,
            reorgs: open("reorgs")?,
            db,
            commit_lock: Mutex::new(()),
        })
    }

    fn fail(&self, message: impl std::fmt::Display) -> CatalogError {
        CatalogError::Unavailable { catalog: self.describe(), message: message.to_string() }
    }

    fn shard_record(&self, job: &str, shard: u32) -> Result<Option<ShardRecord>, CatalogError> {
        let Some(bytes) = self.shards.get(key(job, shard.into())).map_err(|e| self.fail(e))? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| self.fail(format!("shard record of {job}/{shard}: {e}")))
    }

    fn gap_record(&self, job: &str, slot: BlockNumber) -> Result<Option<GapRecord>, CatalogError> {
        let Some(bytes) = self.gaps.get(key(job, slot)).map_err(|e| self.fail(e))? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| self.fail(format!("gap record of {job}/{slot}: {e}")))
    }

    fn scan(
        &self,
        keyspace: &Keyspace,
        job: &str,
        start: BlockNumber,
        end: BlockNumber,
    ) -> Result<Vec<(BlockNumber, Vec<u8>)>, CatalogError> {
        keyspace
            .range(key(job, start)..=key(job, end))
            .map(|guard| {
                let (k, v) = guard.into_inner().map_err(|e| self.fail(e))?;
                Ok((number_of(&k), v.to_vec()))
            })
            .collect()
    }
}

#[async_trait]
impl Catalog for EmbeddedCatalog {
    fn describe(&self) -> String {
        format!("embedded://{}", self.path.display())
    }

    async fn shard(&self, job: &str, range: ShardRange) -> Result<ShardState, CatalogError> {
        let _guard = self.commit_lock.lock().expect("catalog lock");
        match self.shard_record(job, range.shard)? {
            Some(record) if record.range != range => Err(CatalogError::Conflict {
                catalog: self.describe(),
                job: job.into(),
                shard: range.shard,
                message: format!(
                    "registered for slots {}..={}, now asked for {}..={}",
                    record.range.start, record.range.end, range.start, range.end
                ),
            }),
            Some(record) => Ok(record.state),
            None => {
                let record = ShardRecord { range, state: ShardState::default() };
                let value = serde_json::to_vec(&record).expect("records serialize");
                self.shards.insert(key(job, range.shard.into()), value).map_err(|e| self.fail(e))?;
                self.db.persist(PersistMode::SyncAll).map_err(|e| self.fail(e))?;
                Ok(record.state)
            }
        }
    }

    async fn commit(&self, job: &str, shard: u32, outcome: &BatchOutcome) -> Result<(), CatalogError> {
        let _guard = self.commit_lock.lock().expect("catalog lock");
        let mut record = self
            .shard_record(job, shard)?
            .ok_or_else(|| self.fail(format!("job {job} shard {shard} was never registered")))?;
        let mut batch = self.db.batch();
        let state = &mut record.state;
        for slot in &outcome.skipped {
            if !self.skipped.contains_key(key(job, *slot)).map_err(|e| self.fail(e))? {
                batch.insert(&self.skipped, key(job, *slot), []);
                state.slots_skipped += 1;
            }
        }
        for (slot, reason) in &outcome.gaps {
            let attempts = match self.gap_record(job, *slot)? {
                Some(gap) => gap.attempts + 1,
                None => {
                    state.gaps_found += 1;
                    1
                }
            };
            let gap = GapRecord { reason: reason.clone(), attempts, repaired: false };
            batch.insert(&self.gaps, key(job, *slot), serde_json::to_vec(&gap).expect("records serialize"));
        }
        for slot in &outcome.repaired {
            if let Some(mut gap) = self.gap_record(job, *slot)?.filter(|g| !g.repaired) {
                gap.repaired = true;
                state.gaps_repaired += 1;
                batch.insert(&self.gaps, key(job, *slot), serde_json::to_vec(&gap).expect("records serialize"));
            }
        }
        for partition in &outcome.partitions {
            let mut key = job.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(partition.path.as_bytes());
            batch.insert(&self.partitions, key, serde_json::to_vec(partition).expect("records serialize"));
        }
        for m in &outcome.replica.mismatches {
            let key = [job.as_bytes(), &[0], m.table.as_bytes(), &[0], m.key.as_bytes()].concat();
            batch.insert(&self.mismatches, key, serde_json::to_vec(m).expect("records serialize"));
        }
        for (epoch, part) in &outcome.replica.digests {
            let mut digest = match self.digests.get(key(job, *epoch)).map_err(|e| self.fail(e))? {
                Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.fail(format!("digest {epoch}: {e}")))?,
                None => EpochDigest { epoch: *epoch, ..EpochDigest::default() },
            };
            digest.add(part);
            batch.insert(&self.digests, key(job, *epoch), serde_json::to_vec(&digest).expect("records serialize"));
        }
        state.replica.add(&outcome.replica.counts);
        state.blocks_written += outcome.written.len() as u64;
        state.duplicates_dropped += outcome.duplicates;
        state.bytes_written += outcome.bytes;
        if let Some(checkpoint) = outcome.checkpoint {
            state.checkpoint = Some(state.checkpoint.map_or(checkpoint, |c| c.max(checkpoint)));
        }
        batch.insert(&self.shards, key(job, shard.into()), serde_json::to_vec(&record).expect("records serialize"));
        batch.commit().map_err(|e| self.fail(e))?;
        self.db.persist(PersistMode::SyncAll).map_err(|e| self.fail(e))
    }

    async fn record_retention(&self, policy: &str, record: &RetentionRecord) -> Result<(), CatalogError> {
        let value = serde_json::to_vec(record).expect("records serialize");
        self.retention.insert(policy.as_bytes(), value).map_err(|e| self.fail(e))?;
        self.db.persist(PersistMode::SyncAll).map_err(|e| self.fail(e))
    }

    async fn retention(&self, policy: &str) -> Result<Option<RetentionRecord>, CatalogError> {
        let Some(bytes) = self.retention.get(policy.as_bytes()).map_err(|e| self.fail(e))? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| self.fail(format!("retention record of {policy}: {e}")))
    }

    async fn drop_partitions(&self, paths: &[String]) -> Result<u64, CatalogError> {
        let _guard = self.commit_lock.lock().expect("catalog lock");
        let mut batch = self.db.batch();
        let mut dropped = 0;
        for guard in self.partitions.iter() {
            let (key, value) = guard.into_inner().map_err(|e| self.fail(e))?;
            let partition: LakePartition = serde_json::from_slice(&value).map_err(|e| self.fail(e))?;
            if paths.contains(&partition.path) {
                batch.remove(&self.partitions, key.to_vec());
                dropped += 1;
            }
        }
        batch.commit().map_err(|e| self.fail(e))?;
        self.db.persist(PersistMode::SyncAll).map_err(|e| self.fail(e))?;
        Ok(dropped)
    }

    async fn mismatches(&self, job: &str) -> Result<Vec<RowMismatch>, CatalogError> {
        let prefix = [job.as_bytes(), &[0]].concat();
        let mut found = Vec::new();
        for guard in self.mismatches.prefix(prefix) {
            let (_, value) = guard.into_inner().map_err(|e| self.fail(e))?;
            found.push(serde_json::from_slice::<RowMismatch>(&value).map_err(|e| self.fail(format!("mismatch: {e}")))?);
        }
        found.sort_by(|a, b| (a.slot, &a.table, &a.key).cmp(&(b.slot, &b.table, &b.key)));
        Ok(found)
    }

    async fn digests(&self, job: &str) -> Result<Vec<EpochDigest>, CatalogError> {
        self.scan(&self.digests, job, 0, u64::MAX)?
            .into_iter()
            .map(|(epoch, bytes)| serde_json::from_slice(&bytes).map_err(|e| self.fail(format!("digest {epoch}: {e}"))))
            .collect()
    }

    async fn open_gaps(&self, job: &str, start: BlockNumber, end: BlockNumber) -> Result<Vec<Gap>, CatalogError> {
        let mut gaps = Vec::new();
        for (slot, bytes) in self.scan(&self.gaps, job, start, end)? {
            let gap: GapRecord = serde_json::from_slice(&bytes).map_err(|e| self.fail(format!("gap {slot}: {e}")))?;
            if !gap.repaired {
                gaps.push(Gap { slot, reason: gap.reason, attempts: gap.attempts });
            }
        }
        Ok(gaps)
    }

    async fn skipped(&self, job: &str, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, CatalogError> {
        Ok(self.scan(&self.skipped, job, start, end)?.into_iter().map(|(slot, _)| slot).collect())
    }

    async fn partitions(&self, job: &str) -> Result<Vec<LakePartition>, CatalogError> {
        let mut prefix = job.as_bytes().to_vec();
        prefix.push(0);
        let mut partitions = Vec::new();
        for guard in self.partitions.prefix(&prefix) {
            let (_, value) = guard.into_inner().map_err(|e| self.fail(e))?;
            let partition: LakePartition =
                serde_json::from_slice(&value).map_err(|e| self.fail(format!("lake partition of {job}: {e}")))?;
            partitions.push(partition);
        }
        partitions.sort_by(|a, b| (&a.table, a.first).cmp(&(&b.table, b.first)));
        Ok(partitions)
    }

    async fn shards(&self, job: &str) -> Result<Vec<(ShardRange, ShardState)>, CatalogError> {
        let mut shards = Vec::new();
        for (shard, bytes) in self.scan(&self.shards, job, 0, u32::MAX.into())? {
            let record: ShardRecord =
                serde_json::from_slice(&bytes).map_err(|e| self.fail(format!("shard record of {job}/{shard}: {e}")))?;
            shards.push((record.range, record.state));
        }
        Ok(shards)
    }

    async fn record_head(&self, job: &str, head: SourceHead) -> Result<(), CatalogError> {
        let recorded = RecordedHead { head, observed_at: unix_now() };
        self.heads.insert(job, serde_json::to_vec(&recorded).expect("records serialize")).map_err(|e| self.fail(e))?;
        self.db.persist(PersistMode::SyncAll).map_err(|e| self.fail(e))
    }

    async fn record_export(&self, job: &str, record: &ExportRecord) -> Result<(), CatalogError> {
        self.exports.insert(job, serde_json::to_vec(record).expect("records serialize")).map_err(|e| self.fail(e))?;
        self.db.persist(PersistMode::SyncAll).map_err(|e| self.fail(e))
    }

    async fn export(&self, job: &str) -> Result<Option<ExportRecord>, CatalogError> {
        let Some(bytes) = self.exports.get(job).map_err(|e| self.fail(e))? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| self.fail(format!("export record of {job}: {e}")))
    }

    async fn record_reorg(&self, job: &str, reorg: &Reorg) -> Result<(), CatalogError> {
        let _commits = self.commit_lock.lock().expect("commit lock");
        let next = self.scan(&self.reorgs, job, 0, u64::MAX)?.last().map_or(0, |(n, _)| n + 1);
        let bytes = serde_json::to_vec(reorg).expect("records serialize");
        self.reorgs.insert(key(job, next), bytes).map_err(|e| self.fail(e))?;
        self.db.persist(PersistMode::SyncAll).map_err(|e| self.fail(e))
    }

    async fn reorgs(&self, job: &str) -> Result<(u64, Option<Reorg>), CatalogError> {
        let recorded = self.scan(&self.reorgs, job, 0, u64::MAX)?;
        let last = match recorded.last() {
            Some((_, bytes)) => {
                Some(serde_json::from_slice(bytes).map_err(|e| self.fail(format!("reorg record of {job}: {e}")))?)
            }
            None => None,
        };
        Ok((recorded.len() as u64, last))
    }

    async fn head(&self, job: &str) -> Result<Option<RecordedHead>, CatalogError> {
        let Some(bytes) = self.heads.get(job).map_err(|e| self.fail(e))? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| self.fail(format!("source head of {job}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn progress_lists_every_shard_and_the_open_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = EmbeddedCatalog::open(dir.path()).unwrap();
        let ranges = [ShardRange { shard: 0, start: 100, end: 199 }, ShardRange { shard: 1, start: 200, end: 299 }];
        for range in ranges {
            catalog.shard("ns/job", range).await.unwrap();
        }
        catalog.shard("ns/other", ranges[0]).await.unwrap();
        let outcome = BatchOutcome {
            checkpoint: Some(149),
            written: (100..148).collect(),
            bytes: 4800,
            skipped: vec![148],
            gaps: vec![(149, "timeout".into())],
            ..BatchOutcome::default()
        };
        catalog.commit("ns/job", 0, &outcome).await.unwrap();
        let progress = catalog.progress("ns/job").await.unwrap();
        assert_eq!(progress.open_gaps, 1);
        let shards: Vec<(u32, Option<BlockNumber>, u64)> =
            progress.shards.iter().map(|(r, s)| (r.shard, s.checkpoint, s.blocks_written)).collect();
        assert_eq!(shards, vec![(0, Some(149), 48), (1, None, 0)]);
    }
}
