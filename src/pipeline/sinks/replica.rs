//! The canonical target of a replication (`source: store`): a block's rows,
//! read from the origin store, written to the target cell for cell (no
//! decoding, no re-encoding), the block's own row last so that readers see it
//! only once its index rows are there.
//!
//! Verifying (`verify: true`), the sink first reads the same rows from the
//! target and compares digests: rows the target lacks (`missing`) or holds
//! otherwise (`different`) are recorded and, when repair is on, rewritten;
//! rows already equal are not written again. Whatever it writes it reads back
//! and compares before the checkpoint may pass the block. Every row's digest
//! goes into its epoch's digest, on each side, committed with the checkpoint.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::catalog::{EpochDigest, ReplicaOutcome, RowMismatch};
use crate::pipeline::{BlockNumber, BlockSink, Flushed, SinkPolicy, Written};
use crate::store::block_rows::{self, BlockRows, SetDigest, row_digest};
use crate::store::cells::{CellStore, Row, Table};

pub struct ReplicaSink {
    target: Arc<dyn CellStore>,
    verify: bool,
    repair: bool,
    /// Blocks per epoch, for the epoch digests.
    epoch_slots: u64,
    outcome: Mutex<ReplicaOutcome>,
}

impl ReplicaSink {
    pub fn new(target: Arc<dyn CellStore>, verify: bool, repair: bool, epoch_slots: u64) -> Self {
        Self { target, verify, repair, epoch_slots: epoch_slots.max(1), outcome: Mutex::default() }
    }

    fn fail(&self, slot: BlockNumber, what: &str, e: impl std::fmt::Display) -> String {
        format!("slot {slot}: {what} {}: {e}", self.target.describe())
    }

    /// Compares `rows` with the target, writes what differs (all of it when
    /// not verifying) and checks what was written. Returns the bytes written
    /// and the block's part of the outcome.
    async fn copy(&self, rows: &BlockRows) -> Result<(u64, ReplicaOutcome), String> {
        let slot = rows.slot;
        let mut part = ReplicaOutcome::default();
        let origin_digests: Vec<[u8; 32]> = rows.rows.iter().map(|(t, r)| row_digest(*t, r)).collect();
        let mut to_write: Vec<(Table, Row)> = Vec::new();
        // What the target holds of the block's rows before any write.
        let mut held_digest = SetDigest::default();
        if self.verify {
            let held = block_rows::read_same_rows(self.target.as_ref(), rows)
                .await
                .map_err(|e| self.fail(slot, "reading", e))?;
            part.counts.rows_compared += rows.rows.len() as u64;
            for ((table, row), digest) in rows.rows.iter().zip(&origin_digests) {
                let theirs = held.get(&(*table, row.key.clone())).map(|r| row_digest(*table, r));
                if let Some(theirs) = &theirs {
                    held_digest.add_row(theirs);
                }
                let kind = match theirs {
                    None => "missing",
                    Some(theirs) if theirs != *digest => "different",
                    Some(_) => continue,
                };
                match kind {
                    "missing" => part.counts.rows_missing += 1,
                    _ => part.counts.rows_mismatched += 1,
                }
                part.mismatches.push(RowMismatch {
                    slot,
                    table: table.name().into(),
                    key: row.key.clone(),
                    kind: kind.into(),
                    repaired: self.repair,
                });
                if self.repair {
                    to_write.push((*table, row.clone()));
                }
            }
        } else {
            to_write = rows.rows.clone();
        }
        // The block's own row (listed last) is written last, if it is written at all.
        let own_row_last = to_write.last().map(|(t, r)| (*t, &r.key)) == rows.rows.last().map(|(t, r)| (*t, &r.key));
        block_rows::write_rows(self.target.as_ref(), &to_write, own_row_last)
            .await
            .map_err(|e| self.fail(slot, "writing", e))?;
        let written = to_write.len() as u64;
        let bytes = to_write.iter().map(|(_, row)| block_rows::row_bytes(row)).sum();
        part.counts.rows_copied += written;
        if self.verify && self.repair {
            part.counts.rows_repaired += written;
        }
        // Read back only what changed: a target found equal (or left as it
        // was, without repair) is digested from the first read.
        let target = match (self.verify, to_write.is_empty()) {
            (false, _) => None,
            (true, true) => Some(held_digest),
            (true, false) => Some(self.read_back(rows, &origin_digests).await?),
        };
        let mut origin = SetDigest::default();
        origin_digests.iter().for_each(|d| origin.add_row(d));
        let epoch = slot / self.epoch_slots;
        let digest = EpochDigest {
            epoch,
            blocks: 1,
            rows: rows.rows.len() as u64,
            origin: origin.to_hex(),
            target: target.map(SetDigest::to_hex),
        };
        part.digests.insert(epoch, digest);
        Ok((bytes, part))
    }

    /// The target's digest of the block's rows after the write. With repair
    /// on it must equal the origin's; otherwise it is what the target holds.
    async fn read_back(&self, rows: &BlockRows, origin: &[[u8; 32]]) -> Result<SetDigest, String> {
        let slot = rows.slot;
        let held = block_rows::read_same_rows(self.target.as_ref(), rows)
            .await
            .map_err(|e| self.fail(slot, "re-reading", e))?;
        let mut digest = SetDigest::default();
        for ((table, row), want) in rows.rows.iter().zip(origin) {
            let got = held.get(&(*table, row.key.clone())).map(|r| row_digest(*table, r));
            if self.repair && got.as_ref() != Some(want) {
                return Err(format!(
                    "slot {slot}: table {table}, row {}: the target does not hold what was written",
                    row.key
                ));
            }
            if let Some(got) = got {
                digest.add_row(&got);
            }
        }
        Ok(digest)
    }
}

#[async_trait]
impl BlockSink<BlockRows> for ReplicaSink {
    fn name(&self) -> &'static str {
        "canonical"
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::Held
    }

    async fn write(&self, number: BlockNumber, rows: &BlockRows) -> Result<Written, String> {
        debug_assert_eq!(number, rows.slot);
        let (bytes, part) = self.copy(rows).await?;
        self.outcome.lock().expect("replica outcome").merge(part);
        Ok(Written { bytes })
    }

    async fn flush(&self) -> Result<Flushed, String> {
        self.target.sync().await.map_err(|e| format!("{}: {e}", self.target.describe()))?;
        let replica = std::mem::take(&mut *self.outcome.lock().expect("replica outcome"));
        count_rows(&replica.counts);
        Ok(Flushed { replica, ..Flushed::default() })
    }

    async fn remove(&self, number: BlockNumber) -> Result<(), String> {
        Err(format!("slot {number}: a replica takes back no block (its origin holds final blocks only)"))
    }
}

/// A flushed batch's row counts in the worker metrics.
fn count_rows(counts: &crate::catalog::ReplicaCounts) {
    use crate::telemetry::metrics::{WORKER, WorkerMetrics};
    let rows = &WORKER.replication_rows;
    WorkerMetrics::count(rows, "copied", counts.rows_copied);
    WorkerMetrics::count(rows, "compared", counts.rows_compared);
    WorkerMetrics::count(rows, "missing", counts.rows_missing);
    WorkerMetrics::count(rows, "mismatched", counts.rows_mismatched);
    WorkerMetrics::count(rows, "repaired", counts.rows_repaired);
}
