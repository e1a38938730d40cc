-- Lake partitions: a Parquet object is committed when its row is, in the
-- same transaction as the checkpoint of the batch that wrote it. Readers
-- list partitions here, so they see only committed ones.
CREATE TABLE lake_partitions (
    path        text        PRIMARY KEY,
    job         text        NOT NULL,
    table_name  text        NOT NULL,
    first_block bigint      NOT NULL,
    last_block  bigint      NOT NULL,
    rows        bigint      NOT NULL,
    bytes       bigint      NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX lake_partitions_by_job ON lake_partitions (job, table_name, first_block);
