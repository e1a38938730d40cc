-- Replication (IngestJob source: store): rows copied and what verification
-- found, per shard; the rows found wrong in the target; and per-epoch
-- digests of both sides (order-independent sums of row digests), which prove
-- a replica equal to its origin without reading either again.
ALTER TABLE ingest_shards
    ADD COLUMN rows_copied bigint NOT NULL DEFAULT 0,
    ADD COLUMN rows_compared bigint NOT NULL DEFAULT 0,
    ADD COLUMN rows_missing bigint NOT NULL DEFAULT 0,
    ADD COLUMN rows_mismatched bigint NOT NULL DEFAULT 0,
    ADD COLUMN rows_repaired bigint NOT NULL DEFAULT 0;

CREATE TABLE replica_mismatches (
    job text NOT NULL,
    table_name text NOT NULL,
    row_key text NOT NULL,
    slot bigint NOT NULL,
    kind text NOT NULL,
    repaired boolean NOT NULL,
    found_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, table_name, row_key)
);

CREATE TABLE replica_digests (
    job text NOT NULL,
    epoch bigint NOT NULL,
    blocks bigint NOT NULL,
    rows bigint NOT NULL,
    origin_digest text NOT NULL,
    target_digest text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, epoch)
);
