//! The PostgreSQL catalog (`tokio-postgres`; schema migrations in
//! `migrations/`, applied by refinery at start). The connection is re-opened
//! after PostgreSQL goes away, so a worker resumes when it returns.

use crate::pipeline::{BlockNumber, SourceHead};
use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::{
    BatchOutcome, Catalog, CatalogError, EpochDigest, ExportRecord, Gap, LakePartition, RecordedHead, Reorg,
    ReplicaCounts, RetentionRecord, RowMismatch, ShardRange, ShardState, redact, unix_now,
};

mod embedded_migrations {
    refinery::embed_migrations!("migrations");
}

/// Advisory lock key held while migrating ("chronicl" in ASCII).
const MIGRATION_LOCK: i64 = 0x6368_726f_6e69_636c;

pub struct PostgresCatalog {
    url: String,
    client: Mutex<Option<Client>>,
}

fn slot_to_sql(slot: BlockNumber) -> i64 {
    i64::try_from(slot).expect("slots stay below 2^63")
}

/// A shard's state from a row whose columns from `first` on are checkpoint,
/// blocks_written, bytes_written, slots_skipped, gaps_found, gaps_repaired,
/// duplicates_dropped.
fn state_of(row: &tokio_postgres::Row, first: usize) -> ShardState {
    let count = |i: usize| row.get::<_, i64>(first + i) as u64;
    ShardState {
        checkpoint: row.get::<_, Option<i64>>(first).map(|c| c as u64),
        blocks_written: count(1),
        bytes_written: count(2),
        slots_skipped: count(3),
        gaps_found: count(4),
        gaps_repaired: count(5),
        duplicates_dropped: count(6),
        replica: Default::default(),
    }
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A replication batch's mismatches and epoch digests, in its commit's
/// transaction (digests are read, combined and written back under a row lock,
/// so shards committing the same epoch add up).
async fn write_replica(
    tx: &tokio_postgres::Transaction<'_>,
    job: &str,
    replica: &super::ReplicaOutcome,
) -> Result<(), tokio_postgres::Error> {
    for m in &replica.mismatches {
        tx.execute(
            "INSERT INTO replica_mismatches (job, table_name, row_key, slot, kind, repaired) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (job, table_name, row_key) DO UPDATE SET slot = $4, kind = $5, repaired = $6, found_at = now()",
            &[&job, &m.table, &m.key, &slot_to_sql(m.slot), &m.kind, &m.repaired],
        )
        .await?;
    }
    for (epoch, part) in &replica.digests {
        let epoch = slot_to_sql(*epoch);
        let held = tx
            .query_opt(
                "SELECT blocks, rows, origin_digest, target_digest FROM replica_digests WHERE job = $1 AND epoch = $2 FOR UPDATE",
                &[&job, &epoch],
            )
            .await?;
        let mut digest = match held {
            Some(row) => EpochDigest {
                epoch: epoch as u64,
                blocks: row.get::<_, i64>(0) as u64,
                rows: row.get::<_, i64>(1) as u64,
                origin: row.get(2),
                target: row.get(3),
            },
            None => EpochDigest { epoch: epoch as u64, ..EpochDigest::default() },
        };
        digest.add(part);
        tx.execute(
            "INSERT INTO replica_digests (job, epoch, blocks, rows, origin_digest, target_digest) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (job, epoch) DO UPDATE SET blocks = $3, rows = $4, origin_digest = $5, target_digest = $6,
                 updated_at = now()",
            &[&job, &epoch, &count(digest.blocks), &count(digest.rows), &digest.origin, &digest.target],
        )
        .await?;
    }
    Ok(())
}

fn slots_to_sql(slots: &[BlockNumber]) -> Vec<i64> {
    slots.iter().copied().map(slot_to_sql).collect()
}

impl PostgresCatalog {
    /// Connects and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, CatalogError> {
        let catalog = Self { url: url.to_string(), client: Mutex::new(None) };
        let mut client = catalog.open_client().await?;
        // Workers of one Indexed Job start together: one migrates, the others wait.
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| catalog.unavailable(format!("locking the schema for migration: {e}")))?;
        let migrated = embedded_migrations::migrations::runner().run_async(&mut client).await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
        migrated.map_err(|e| catalog.unavailable(format!("migrating the schema: {e}")))?;
        unlocked.map_err(|e| catalog.unavailable(format!("unlocking the schema: {e}")))?;
        *catalog.client.lock().await = Some(client);
        Ok(catalog)
    }

    /// A catalog that connects on first use and migrates nothing: for
    /// readers of progress, which must not change the schema.
    pub fn reader(url: &str) -> Self {
        Self { url: url.to_string(), client: Mutex::new(None) }
    }

    /// Each shard's replication counters (none before a worker of this
    /// release migrated the columns in).
    async fn replica_counts(&self, job: &str) -> Result<Vec<(u32, ReplicaCounts)>, CatalogError> {
        let rows = self
            .query_migrated(
                "SELECT shard, rows_copied, rows_compared, rows_missing, rows_mismatched, rows_repaired
                     FROM ingest_shards WHERE job = $1",
                &[&job],
            )
            .await?;
        let n = |row: &tokio_postgres::Row, i: usize| row.get::<_, i64>(i) as u64;
        Ok(rows
            .iter()
            .map(|row| {
                let counts = ReplicaCounts {
                    rows_copied: n(row, 1),
                    rows_compared: n(row, 2),
                    rows_missing: n(row, 3),
                    rows_mismatched: n(row, 4),
                    rows_repaired: n(row, 5),
                };
                (row.get::<_, i32>(0) as u32, counts)
            })
            .collect())
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> CatalogError {
        CatalogError::Unavailable { catalog: redact(&self.url), message: message.to_string() }
    }

    async fn open_client(&self) -> Result<Client, CatalogError> {
        let (client, connection) =
            tokio_postgres::connect(&self.url, NoTls).await.map_err(|e| self.unavailable(format!("connect: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "catalog connection closed");
            }
        });
        Ok(client)
    }

    /// Runs `work` on a live connection, reconnecting first if the last one died.
    async fn with_client<T>(
        &self,
        work: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, CatalogError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.open_client().await?);
        }
        let client = guard.as_mut().expect("connected above");
        let result = work(client).await;
        if result.is_err() && client.is_closed() {
            *guard = None;
        }
        result.map_err(|e| self.unavailable(e))
    }

    /// Rows of a query over a table or column a later migration adds: none
    /// while no worker of this release has migrated the catalog yet (the
    /// controller reads without migrating).
    async fn query_migrated(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, CatalogError> {
        match self.with_client(async |c| c.query(sql, params).await).await {
            Err(e) if e.to_string().contains("does not exist") => Ok(Vec::new()),
            other => other,
        }
    }
}

#[async_trait]
impl Catalog for PostgresCatalog {
    fn describe(&self) -> String {
        redact(&self.url)
    }

    async fn shard(&self, job: &str, range: ShardRange) -> Result<ShardState, CatalogError> {
        let row = self
            .with_client(async |c| {
                c.execute(
                    "INSERT INTO ingest_shards (job, shard, start_slot, end_slot) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&job, &(range.shard as i32), &slot_to_sql(range.start), &slot_to_sql(range.end)],
                )
                .await?;
                c.query_one(
                    "SELECT start_slot, end_slot, checkpoint, blocks_written, bytes_written, slots_skipped, gaps_found, gaps_repaired,
                     duplicates_dropped FROM ingest_shards WHERE job = $1 AND shard = $2",
                    &[&job, &(range.shard as i32)],
                )
                .await
            })
            .await?;
        let (start, end): (i64, i64) = (row.get(0), row.get(1));
        if (start, end) != (slot_to_sql(range.start), slot_to_sql(range.end)) {
            return Err(CatalogError::Conflict {
                catalog: self.describe(),
                job: job.into(),
                shard: range.shard,
                message: format!("registered for slots {start}..={end}, now asked for {}..={}", range.start, range.end),
            });
        }
        Ok(state_of(&row, 2))
    }

    async fn commit(&self, job: &str, shard: u32, outcome: &BatchOutcome) -> Result<(), CatalogError> {
        let written = outcome.written.len() as i64;
        let bytes = i64::try_from(outcome.bytes).unwrap_or(i64::MAX);
        let checkpoint = outcome.checkpoint.map(slot_to_sql);
        let skipped = slots_to_sql(&outcome.skipped);
        let repaired = slots_to_sql(&outcome.repaired);
        let gap_slots = slots_to_sql(&outcome.gaps.iter().map(|(s, _)| *s).collect::<Vec<_>>());
        let gap_reasons: Vec<&str> = outcome.gaps.iter().map(|(_, r)| r.as_str()).collect();
        let partitions = &outcome.partitions;
        let duplicates = count(outcome.duplicates);
        let replica = outcome.replica.counts;
        self.with_client(async |c| {
            let tx = c.transaction().await?;
            let new_skips: i64 = tx
                .query_one(
                    "WITH ins AS (INSERT INTO skipped_slots (job, slot) SELECT $1, unnest($2::bigint[])
                     ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM ins",
                    &[&job, &skipped],
                )
                .await?
                .get(0);
            let new_gaps: i64 = tx
                .query_one(
                    "WITH ins AS (INSERT INTO gaps (job, slot, reason) SELECT $1, s, r FROM unnest($2::bigint[], $3::text[]) AS t(s, r)
                     ON CONFLICT (job, slot) DO UPDATE SET attempts = gaps.attempts + 1, reason = excluded.reason, repaired_at = NULL
                     RETURNING (xmax = 0) AS inserted) SELECT count(*) FROM ins WHERE inserted",
                    &[&job, &gap_slots, &gap_reasons],
                )
                .await?
                .get(0);
            let repaired = tx
                .execute(
                    "UPDATE gaps SET repaired_at = now() WHERE job = $1 AND slot = ANY($2) AND repaired_at IS NULL",
                    &[&job, &repaired],
                )
                .await? as i64;
            for p in partitions {
                tx.execute(
                    "INSERT INTO lake_partitions (path, job, table_name, first_block, last_block, rows, bytes)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (path) DO UPDATE SET job = excluded.job, rows = excluded.rows, bytes = excluded.bytes,
                        committed_at = now()",
                    &[&p.path, &job, &p.table, &slot_to_sql(p.first), &slot_to_sql(p.last), &(p.rows as i64), &(p.bytes as i64)],
                )
                .await?;
            }
            write_replica(&tx, job, &outcome.replica).await?;
            tx.execute(
                "UPDATE ingest_shards SET
                    checkpoint = CASE WHEN $3::bigint IS NULL THEN checkpoint ELSE GREATEST(COALESCE(checkpoint, $3), $3) END,
                    blocks_written = blocks_written + $4, bytes_written = bytes_written + $5,
                    slots_skipped = slots_skipped + $6, gaps_found = gaps_found + $7, gaps_repaired = gaps_repaired + $8,
                    duplicates_dropped = duplicates_dropped + $9,
                    rows_copied = rows_copied + $10, rows_compared = rows_compared + $11, rows_missing = rows_missing + $12,
                    rows_mismatched = rows_mismatched + $13, rows_repaired = rows_repaired + $14, updated_at = now()
                 WHERE job = $1 AND shard = $2",
                &[
                    &job,
                    &(shard as i32),
                    &checkpoint,
                    &written,
                    &bytes,
                    &new_skips,
                    &new_gaps,
                    &repaired,
                    &duplicates,
                    &count(replica.rows_copied),
                    &count(replica.rows_compared),
                    &count(replica.rows_missing),
                    &count(replica.rows_mismatched),
                    &count(replica.rows_repaired),
                ],
            )
            .await?;
            tx.commit().await
        })
        .await
    }

    async fn partitions(&self, job: &str) -> Result<Vec<LakePartition>, CatalogError> {
        let rows = self
            .with_client(async |c| {
                c.query(
                    "SELECT table_name, first_block, last_block, path, rows, bytes FROM lake_partitions
                     WHERE job = $1 ORDER BY table_name, first_block",
                    &[&job],
                )
                .await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|row| LakePartition {
                table: row.get(0),
                first: row.get::<_, i64>(1) as u64,
                last: row.get::<_, i64>(2) as u64,
                path: row.get(3),
                rows: row.get::<_, i64>(4) as u64,
                bytes: row.get::<_, i64>(5) as u64,
            })
            .collect())
    }

    async fn shards(&self, job: &str) -> Result<Vec<(ShardRange, ShardState)>, CatalogError> {
        let rows = self
            .with_client(async |c| {
                c.query(
                    "SELECT shard, start_slot, end_slot, checkpoint, blocks_written, bytes_written, slots_skipped, gaps_found, gaps_repaired,
                     duplicates_dropped FROM ingest_shards WHERE job = $1 ORDER BY shard",
                    &[&job],
                )
                .await
            })
            .await?;
        let mut shards: Vec<(ShardRange, ShardState)> = rows
            .iter()
            .map(|row| {
                let range = ShardRange {
                    shard: row.get::<_, i32>(0) as u32,
                    start: row.get::<_, i64>(1) as u64,
                    end: row.get::<_, i64>(2) as u64,
                };
                (range, state_of(row, 3))
            })
            .collect();
        for (shard, counts) in self.replica_counts(job).await? {
            if let Some((_, state)) = shards.iter_mut().find(|(r, _)| r.shard == shard) {
                state.replica = counts;
            }
        }
        Ok(shards)
    }

    async fn record_retention(&self, policy: &str, record: &RetentionRecord) -> Result<(), CatalogError> {
        let json = serde_json::to_string(record).expect("records serialize");
        self.with_client(async |c| {
            c.execute(
                "INSERT INTO retention_runs (policy, record) VALUES ($1, $2)
                 ON CONFLICT (policy) DO UPDATE SET record = $2, updated_at = now()",
                &[&policy, &json],
            )
            .await
        })
        .await
        .map(drop)
    }

    async fn retention(&self, policy: &str) -> Result<Option<RetentionRecord>, CatalogError> {
        // A primary-key lookup: at most one row (none before the table is migrated in).
        let row = self
            .query_migrated("SELECT record FROM retention_runs WHERE policy = $1", &[&policy])
            .await?
            .into_iter()
            .next();
        row.map(|row| {
            serde_json::from_str(row.get::<_, &str>(0))
                .map_err(|e| self.unavailable(format!("retention record of {policy}: {e}")))
        })
        .transpose()
    }

    async fn drop_partitions(&self, paths: &[String]) -> Result<u64, CatalogError> {
        self.with_client(async |c| c.execute("DELETE FROM lake_partitions WHERE path = ANY($1)", &[&paths]).await).await
    }

    async fn mismatches(&self, job: &str) -> Result<Vec<RowMismatch>, CatalogError> {
        let rows = self
            .query_migrated(
                "SELECT slot, table_name, row_key, kind, repaired FROM replica_mismatches WHERE job = $1
                     ORDER BY slot, table_name, row_key",
                &[&job],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| RowMismatch {
                slot: r.get::<_, i64>(0) as u64,
                table: r.get(1),
                key: r.get(2),
                kind: r.get(3),
                repaired: r.get(4),
            })
            .collect())
    }

    async fn digests(&self, job: &str) -> Result<Vec<EpochDigest>, CatalogError> {
        let rows = self
            .query_migrated(
                "SELECT epoch, blocks, rows, origin_digest, target_digest FROM replica_digests WHERE job = $1 ORDER BY epoch",
                &[&job],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| EpochDigest {
                epoch: r.get::<_, i64>(0) as u64,
                blocks: r.get::<_, i64>(1) as u64,
                rows: r.get::<_, i64>(2) as u64,
                origin: r.get(3),
                target: r.get(4),
            })
            .collect())
    }

    async fn record_head(&self, job: &str, head: SourceHead) -> Result<(), CatalogError> {
        let (number, now) = (slot_to_sql(head.number), unix_now());
        self.with_client(async |c| {
            c.execute(
                "INSERT INTO source_heads (job, newest_block, block_time, observed_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (job) DO UPDATE SET newest_block = $2, block_time = $3, observed_at = $4",
                &[&job, &number, &head.time, &now],
            )
            .await
        })
        .await
        .map(drop)
    }

    async fn record_export(&self, job: &str, record: &ExportRecord) -> Result<(), CatalogError> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (documents, tokens, shards, bytes) =
            (count(record.documents), count(record.tokens), count(record.shards), count(record.bytes));
        self.with_client(async |c| {
            c.execute(
                "INSERT INTO exports (job, phase, documents, tokens, shards, bytes, manifest, digest, message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (job) DO UPDATE SET phase = $2, documents = $3, tokens = $4, shards = $5, bytes = $6,
                     manifest = $7, digest = $8, message = $9, updated_at = now()",
                &[
                    &job,
                    &record.phase,
                    &documents,
                    &tokens,
                    &shards,
                    &bytes,
                    &record.manifest,
                    &record.digest,
                    &record.message,
                ],
            )
            .await
        })
        .await
        .map(drop)
    }

    async fn export(&self, job: &str) -> Result<Option<ExportRecord>, CatalogError> {
        // A primary-key lookup: at most one row (none before the table is migrated in).
        let row = self
            .query_migrated(
                "SELECT phase, documents, tokens, shards, bytes, manifest, digest, message FROM exports WHERE job = $1",
                &[&job],
            )
            .await?
            .into_iter()
            .next();
        Ok(row.map(|row| ExportRecord {
            phase: row.get(0),
            documents: row.get::<_, i64>(1) as u64,
            tokens: row.get::<_, i64>(2) as u64,
            shards: row.get::<_, i64>(3) as u64,
            bytes: row.get::<_, i64>(4) as u64,
            manifest: row.get(5),
            digest: row.get(6),
            message: row.get(7),
        }))
    }

    async fn record_reorg(&self, job: &str, reorg: &Reorg) -> Result<(), CatalogError> {
        let (base, depth) = (slot_to_sql(reorg.base), count(reorg.depth));
        self.with_client(async |c| {
            c.execute(
                "INSERT INTO reorgs (job, base, depth, replaced, replacement, repaired_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&job, &base, &depth, &reorg.replaced, &reorg.replacement, &reorg.repaired_at],
            )
            .await
        })
        .await
        .map(drop)
    }

    async fn reorgs(&self, job: &str) -> Result<(u64, Option<Reorg>), CatalogError> {
        let rows = self
            .query_migrated(
                "SELECT (SELECT count(*) FROM reorgs WHERE job = $1), base, depth, replaced, replacement, repaired_at
                 FROM reorgs WHERE job = $1 ORDER BY id DESC LIMIT 1",
                &[&job],
            )
            .await?;
        Ok(rows.into_iter().next().map_or((0, None), |row| {
            let last = Reorg {
                base: row.get::<_, i64>(1) as u64,
                depth: row.get::<_, i64>(2) as u64,
                replaced: row.get(3),
                replacement: row.get(4),
                repaired_at: row.get(5),
            };
            (row.get::<_, i64>(0) as u64, Some(last))
        }))
    }

    async fn head(&self, job: &str) -> Result<Option<RecordedHead>, CatalogError> {
        // A primary-key lookup: at most one row (none before the table is migrated in).
        let row = self
            .query_migrated("SELECT newest_block, block_time, observed_at FROM source_heads WHERE job = $1", &[&job])
            .await?
            .into_iter()
            .next();
        Ok(row.map(|row| RecordedHead {
            head: SourceHead { number: row.get::<_, i64>(0) as u64, time: row.get(1) },
            observed_at: row.get(2),
        }))
    }

    async fn open_gaps(&self, job: &str, start: BlockNumber, end: BlockNumber) -> Result<Vec<Gap>, CatalogError> {
        let rows = self
            .with_client(async |c| {
                c.query(
                    "SELECT slot, reason, attempts FROM gaps WHERE job = $1 AND slot BETWEEN $2 AND $3 AND repaired_at IS NULL ORDER BY slot",
                    &[&job, &slot_to_sql(start), &slot_to_sql(end)],
                )
                .await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| Gap { slot: r.get::<_, i64>(0) as u64, reason: r.get(1), attempts: r.get::<_, i32>(2) as u32 })
            .collect())
    }

    /// One query: the lowest `listed` open gaps, each row carrying the count
    /// of all of them (the window is counted before the limit).
    async fn open_gap_summary(&self, job: &str, listed: usize) -> Result<(u64, Vec<Gap>), CatalogError> {
        let limit = listed as i64;
        let rows = self
            .with_client(async |c| {
                c.query(
                    "SELECT slot, reason, attempts, count(*) OVER () FROM gaps WHERE job = $1 AND repaired_at IS NULL ORDER BY slot LIMIT $2",
                    &[&job, &limit],
                )
                .await
            })
            .await?;
        let open = rows.first().map_or(0, |r| r.get::<_, i64>(3) as u64);
        let gaps = rows
            .iter()
            .map(|r| Gap { slot: r.get::<_, i64>(0) as u64, reason: r.get(1), attempts: r.get::<_, i32>(2) as u32 })
            .collect();
        Ok((open, gaps))
    }

    async fn skipped(&self, job: &str, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, CatalogError> {
        let rows = self
            .with_client(async |c| {
                c.query(
                    "SELECT slot FROM skipped_slots WHERE job = $1 AND slot BETWEEN $2 AND $3 ORDER BY slot",
                    &[&job, &slot_to_sql(start), &slot_to_sql(end)],
                )
                .await
            })
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }
}
