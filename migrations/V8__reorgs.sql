-- Reorganizations a follower ahead of finality repaired: the stored chain
-- and the node's parted above block `base`; `depth` blocks were taken back
-- and fetched again. Times are Unix seconds.
CREATE TABLE reorgs (
    id          bigserial PRIMARY KEY,
    job         text      NOT NULL,
    base        bigint    NOT NULL,
    depth       bigint    NOT NULL,
    replaced    text      NOT NULL,
    replacement text,
    repaired_at bigint    NOT NULL
);
CREATE INDEX reorgs_by_job ON reorgs (job, id);
