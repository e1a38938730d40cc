//! The catalog: where ingestion keeps its checkpoints, the slots the chain
//! skipped, the gaps still to repair and what was written. PostgreSQL in a
//! cluster (`postgres://…`, migrations run at start), an embedded store on
//! one machine (`embedded:///PATH`).

pub mod embedded;
pub mod postgres;

use std::sync::Arc;

use crate::pipeline::{BlockNumber, SourceHead};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {catalog}: {message}")]
    Unavailable { catalog: String, message: String },
    #[error("catalog {catalog}: job {job} shard {shard}: {message}")]
    Conflict { catalog: String, job: String, shard: u32, message: String },
    #[error("catalog URL {url:?}: {reason}")]
    Url { url: String, reason: String },
}

/// A shard of a job: an inclusive slot range owned by one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRange {
    pub shard: u32,
    pub start: BlockNumber,
    pub end: BlockNumber,
}

/// What the catalog knows of a shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// Every slot from the shard's start up to this one is accounted for.
    pub checkpoint: Option<BlockNumber>,
    pub blocks_written: u64,
    pub bytes_written: u64,
    pub slots_skipped: u64,
    pub gaps_found: u64,
    pub gaps_repaired: u64,
    /// Rows the source gave more than once, kept once.
    #[serde(default)]
    pub duplicates_dropped: u64,
    /// Replication: what was copied and what verification found.
    #[serde(default)]
    pub replica: ReplicaCounts,
}

/// A replication shard's row counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCounts {
    /// Rows written to the target.
    pub rows_copied: u64,
    /// Rows compared with the target (verification).
    pub rows_compared: u64,
    /// Rows the target lacked.
    pub rows_missing: u64,
    /// Rows the target held with other cells.
    pub rows_mismatched: u64,
    /// Missing or mismatched rows rewritten from the origin.
    pub rows_repaired: u64,
}

impl ReplicaCounts {
    pub fn add(&mut self, other: &ReplicaCounts) {
        self.rows_copied += other.rows_copied;
        self.rows_compared += other.rows_compared;
        self.rows_missing += other.rows_missing;
        self.rows_mismatched += other.rows_mismatched;
        self.rows_repaired += other.rows_repaired;
    }
}

/// What a replication batch found and did, committed with its checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaOutcome {
    pub counts: ReplicaCounts,
    /// Rows the target lacked or held otherwise.
    pub mismatches: Vec<RowMismatch>,
    /// The digests of the rows copied, by epoch.
    pub digests: std::collections::BTreeMap<u64, EpochDigest>,
}

impl ReplicaOutcome {
    pub fn merge(&mut self, other: ReplicaOutcome) {
        self.counts.add(&other.counts);
        self.mismatches.extend(other.mismatches);
        for (epoch, digest) in other.digests {
            self.digests.entry(epoch).or_insert_with(|| EpochDigest { epoch, ..EpochDigest::default() }).add(&digest);
        }
    }
}

/// A row verification found wrong in the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowMismatch {
    pub slot: BlockNumber,
    pub table: String,
    pub key: String,
    /// `missing` (not in the target) or `different` (other cells).
    pub kind: String,
    /// Rewritten from the origin.
    pub repaired: bool,
}

/// The rows one job copied in one epoch, digested on each side
/// (`store::block_rows::SetDigest`): equal digests prove the replica's
/// blocks of the epoch equal to the origin's without reading either again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochDigest {
    pub epoch: u64,
    pub blocks: u64,
    pub rows: u64,
    /// Hex digest of the origin's rows.
    pub origin: String,
    /// Hex digest of the target's rows after the copy, read back (verified
    /// jobs only).
    pub target: Option<String>,
}

impl EpochDigest {
    /// Adds another part of the same epoch (order does not matter).
    pub fn add(&mut self, other: &EpochDigest) {
        use crate::store::block_rows::SetDigest;
        let sum = |a: &str, b: &str| -> Option<String> {
            let (mut a, b) = (SetDigest::from_hex(a)?, SetDigest::from_hex(b)?);
            a.combine(&b);
            Some(a.to_hex())
        };
        let first = self.blocks == 0 && self.rows == 0;
        self.origin = if first { other.origin.clone() } else { sum(&self.origin, &other.origin).unwrap_or_default() };
        self.target = match (first, &self.target, &other.target) {
            (true, _, target) => target.clone(),
            (false, Some(a), Some(b)) => sum(a, b),
            _ => None,
        };
        self.blocks += other.blocks;
        self.rows += other.rows;
    }

    /// Both sides digested and equal.
    pub fn proven_equal(&self) -> bool {
        self.target.as_deref() == Some(self.origin.as_str())
    }
}

/// The result of one batch, committed in one transaction after its blocks
/// are durable in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// New checkpoint (only ever moves forward).
    pub checkpoint: Option<BlockNumber>,
    pub written: Vec<BlockNumber>,
    pub bytes: u64,
    pub skipped: Vec<BlockNumber>,
    /// Slots that could not be fetched, with the reason.
    pub gaps: Vec<(BlockNumber, String)>,
    /// Earlier gaps now written.
    pub repaired: Vec<BlockNumber>,
    /// Lake objects the batch wrote, committed with it.
    pub partitions: Vec<LakePartition>,
    /// Rows the source gave more than once in this batch (kept once).
    pub duplicates: u64,
    /// Replication's counters, mismatches and digests.
    pub replica: ReplicaOutcome,
}

/// One Parquet object of the lake: `table`'s rows of blocks `first..=last`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LakePartition {
    pub table: String,
    pub first: BlockNumber,
    pub last: BlockNumber,
    /// Path inside the lake's object store.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub slot: BlockNumber,
    pub reason: String,
    pub attempts: u32,
}

#[async_trait]
pub trait Catalog: Send + Sync {
    fn describe(&self) -> String;

    /// The shard's state, registering it on first sight. A shard already
    /// registered with another range is a conflict (a changed spec needs a new job).
    async fn shard(&self, job: &str, range: ShardRange) -> Result<ShardState, CatalogError>;

    async fn commit(&self, job: &str, shard: u32, outcome: &BatchOutcome) -> Result<(), CatalogError>;

    /// Gaps not yet repaired within `start..=end`, ascending.
    async fn open_gaps(&self, job: &str, start: BlockNumber, end: BlockNumber) -> Result<Vec<Gap>, CatalogError>;

    /// How many gaps of `job` are open, and the lowest `listed` of them
    /// (what a status shows, without reading every gap where the store can count).
    async fn open_gap_summary(&self, job: &str, listed: usize) -> Result<(u64, Vec<Gap>), CatalogError> {
        let mut gaps = self.open_gaps(job, 0, i64::MAX as BlockNumber).await?;
        let open = gaps.len() as u64;
        gaps.truncate(listed);
        Ok((open, gaps))
    }

    /// Slots recorded as skipped within `start..=end`, ascending.
    async fn skipped(&self, job: &str, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, CatalogError>;

    /// The committed lake partitions of `job`, by table then first block.
    async fn partitions(&self, job: &str) -> Result<Vec<LakePartition>, CatalogError>;

    /// Every registered shard of `job` with its state, by shard number.
    async fn shards(&self, job: &str) -> Result<Vec<(ShardRange, ShardState)>, CatalogError>;

    /// Records the newest block `job`'s source held when its worker last asked.
    async fn record_head(&self, job: &str, head: SourceHead) -> Result<(), CatalogError>;

    /// The head last recorded for `job`, if any.
    async fn head(&self, job: &str) -> Result<Option<RecordedHead>, CatalogError>;

    /// Records what an export worker did (its status).
    async fn record_export(&self, job: &str, record: &ExportRecord) -> Result<(), CatalogError>;

    /// The export record of `job`, if its worker has started.
    async fn export(&self, job: &str) -> Result<Option<ExportRecord>, CatalogError>;

    /// Records what a retention run did (its policy's status).
    async fn record_retention(&self, policy: &str, record: &RetentionRecord) -> Result<(), CatalogError>;

    /// The last retention run of `policy`, if one has started.
    async fn retention(&self, policy: &str) -> Result<Option<RetentionRecord>, CatalogError>;

    /// Forgets lake partitions by path (retention removes them): readers stop
    /// listing them before their objects go. Returns how many were known.
    async fn drop_partitions(&self, paths: &[String]) -> Result<u64, CatalogError>;

    /// The rows verification found wrong in `job`'s target, by slot.
    async fn mismatches(&self, job: &str) -> Result<Vec<RowMismatch>, CatalogError>;

    /// The epoch digests of `job`'s copies, by epoch.
    async fn digests(&self, job: &str) -> Result<Vec<EpochDigest>, CatalogError>;

    /// Records a reorganization `job` repaired.
    async fn record_reorg(&self, job: &str, reorg: &Reorg) -> Result<(), CatalogError>;

    /// How many reorganizations `job` repaired, and the last.
    async fn reorgs(&self, job: &str) -> Result<(u64, Option<Reorg>), CatalogError>;

    /// What `job` has done so far: its shards, its open gaps, its source's head.
    async fn progress(&self, job: &str) -> Result<JobProgress, CatalogError> {
        let shards = self.shards(job).await?;
        let (open_gaps, lowest_gaps) = self.open_gap_summary(job, crate::crd::ingest_job::OPEN_GAPS_LISTED).await?;
        let source_head = self.head(job).await?;
        let (reorgs, last_reorg) = self.reorgs(job).await?;
        Ok(JobProgress { shards, open_gaps, lowest_gaps, source_head, reorgs, last_reorg })
    }
}

/// What a retention run did, or would do (a dry run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRecord {
    /// `Running`, `Succeeded` or `Failed`.
    pub phase: String,
    pub dry_run: bool,
    /// Unix seconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The oldest canonical block kept (after the run, or after it in a dry run).
    pub oldest_kept: Option<BlockNumber>,
    /// Where the rules cut: blocks below it go.
    pub cut: Option<BlockNumber>,
    /// Where the replica guard held the cut, when it did (below `cut`).
    pub held_at: Option<BlockNumber>,
    pub blocks_removed: u64,
    pub rows_removed: u64,
    pub bytes_removed: u64,
    pub lake_objects_removed: u64,
    pub lake_bytes_removed: u64,
    /// Space the embedded store gave back, where measured.
    pub bytes_reclaimed: Option<u64>,
    /// A garbage-collection rule set (or that would be), as `maxAge=…s on …`.
    pub gc_rule: Option<String>,
    /// Rules not applied, each with why.
    pub not_applied: Vec<String>,
    /// Why the run failed.
    pub message: Option<String>,
}

/// What an export worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    /// `Running`, `Succeeded` or `Failed`.
    pub phase: String,
    pub documents: u64,
    pub tokens: u64,
    pub shards: u64,
    pub bytes: u64,
    pub manifest: Option<String>,
    pub digest: Option<String>,
    /// Why it failed.
    pub message: Option<String>,
}

/// A reorganization a follower repaired: the blocks it had stored above
/// `base` were not the chain's any more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reorg {
    /// The newest block the stored chain and the source's still shared.
    pub base: BlockNumber,
    /// Blocks taken back from every sink above it, and fetched again.
    pub depth: u64,
    /// The hash of the first block replaced, and of the block now in its place.
    pub replaced: String,
    pub replacement: Option<String>,
    /// Unix seconds.
    pub repaired_at: i64,
}

/// A source's head as a worker saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedHead {
    pub head: SourceHead,
    /// When the worker asked (Unix seconds).
    pub observed_at: i64,
}

/// A job's progress as the catalog records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub shards: Vec<(ShardRange, ShardState)>,
    pub open_gaps: u64,
    /// The lowest of them (at most `OPEN_GAPS_LISTED`), ascending.
    pub lowest_gaps: Vec<Gap>,
    /// The newest block the job's source held (follow jobs record it).
    pub source_head: Option<RecordedHead>,
    /// Reorganizations repaired (followers ahead of finality), and the last.
    pub reorgs: u64,
    pub last_reorg: Option<Reorg>,
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Opens the catalog a URL names to read progress, without creating or
/// migrating anything (the workers do that). Only a shared catalog can be
/// read from elsewhere: an embedded one lives on its worker's volume.
pub fn open_reader(url: &str) -> Result<Arc<dyn Catalog>, CatalogError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresCatalog::reader(url)))
    } else {
        Err(CatalogError::Url {
            url: redact(url),
            reason: "only a PostgreSQL catalog can be read from outside its workers".into(),
        })
    }
}

/// Opens the catalog a URL names.
pub async fn open(url: &str) -> Result<Arc<dyn Catalog>, CatalogError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresCatalog::connect(url).await?))
    } else if let Some(path) = url.strip_prefix("embedded://") {
        if !path.starts_with('/') {
            return Err(CatalogError::Url { url: url.into(), reason: "expected embedded:///ABSOLUTE/PATH".into() });
        }
        Ok(Arc::new(embedded::EmbeddedCatalog::open(std::path::Path::new(path))?))
    } else {
        Err(CatalogError::Url { url: redact(url), reason: "expected postgres://… or embedded:///PATH".into() })
    }
}

/// A connection URL with its password replaced, for messages and logs: the
/// `user:password@` part and the query parameters libpq reads one from.
pub fn redact(url: &str) -> String {
    const SECRET_PARAMETERS: [&str; 3] = ["password", "sslpassword", "passfile"];
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if parsed.query_pairs().any(|(k, _)| SECRET_PARAMETERS.contains(&k.as_ref())) {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let hidden = SECRET_PARAMETERS.contains(&k.as_ref());
                        (k.into_owned(), if hidden { "***".into() } else { v.into_owned() })
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_catalog_url_is_described_without_its_password() {
        assert_eq!(redact("postgres://chronicle:hunter2@db:5432/catalog"), "postgres://chronicle:***@db:5432/catalog");
        assert_eq!(
            redact("postgres://chronicle@db/catalog?sslmode=require&password=hunter2"),
            "postgres://chronicle@db/catalog?sslmode=require&password=***"
        );
        assert_eq!(redact("postgres://db/catalog"), "postgres://db/catalog");
        assert_eq!(redact("not a url"), "<unparsable URL>");
    }
}
