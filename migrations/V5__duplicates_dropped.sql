-- Rows a source gave more than once (a BigQuery dataset's repeated
-- transactions), kept once and counted here for the job's status.
ALTER TABLE ingest_shards ADD COLUMN duplicates_dropped bigint NOT NULL DEFAULT 0;
