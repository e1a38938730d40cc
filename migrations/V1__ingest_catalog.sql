-- Ingestion catalog: one row per shard of a job with its checkpoint and
-- counters; skipped slots; gaps until they are repaired.
CREATE TABLE ingest_shards (
    job            text        NOT NULL,
    shard          integer     NOT NULL,
    start_slot     bigint      NOT NULL,
    end_slot       bigint      NOT NULL,
    -- highest slot such that every slot from start_slot up to it is accounted
    -- for (written, skipped by the chain, or listed as a gap); NULL: none yet
    checkpoint     bigint,
    blocks_written bigint      NOT NULL DEFAULT 0,
    bytes_written  bigint      NOT NULL DEFAULT 0,
    slots_skipped  bigint      NOT NULL DEFAULT 0,
    gaps_found     bigint      NOT NULL DEFAULT 0,
    gaps_repaired  bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, shard)
);

CREATE TABLE skipped_slots (
    job  text   NOT NULL,
    slot bigint NOT NULL,
    PRIMARY KEY (job, slot)
);

CREATE TABLE gaps (
    job         text        NOT NULL,
    slot        bigint      NOT NULL,
    reason      text        NOT NULL,
    attempts    integer     NOT NULL DEFAULT 1,
    found_at    timestamptz NOT NULL DEFAULT now(),
    repaired_at timestamptz,
    PRIMARY KEY (job, slot)
);

CREATE INDEX gaps_open ON gaps (job, slot) WHERE repaired_at IS NULL;
