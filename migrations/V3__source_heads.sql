-- The newest block a job's source held when its worker last asked (follow
-- jobs record it): how far behind the chain the source itself runs, e.g. a
-- BigQuery dataset hours behind. Times are Unix seconds.
CREATE TABLE source_heads (
    job          text   PRIMARY KEY,
    newest_block bigint NOT NULL,
    block_time   bigint,
    observed_at  bigint NOT NULL
);
