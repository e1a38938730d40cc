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

    /// What `job` has done so far: its shards, its open gaps, its source's head.
    async fn progress(&self, job: &str) -> Result<JobProgress, CatalogError> {
        let shards = self.shards(job).await?;
        let open_gaps = self.open_gaps(job, 0, i64::MAX as BlockNumber).await?.len() as u64;
        let source_head = self.head(job).await?;
        Ok(JobProgress { shards, open_gaps, source_head })
    }
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
    /// The newest block the job's source held (follow jobs record it).
    pub source_head: Option<RecordedHead>,
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

/// A connection URL with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<unparsable URL>".to_string(),
    }
}
