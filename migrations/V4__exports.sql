-- TrainingExports: what the export worker did, for the resource's status
-- (the controller reads it; workers need no Kubernetes API access).
CREATE TABLE exports (
    job        text        PRIMARY KEY,
    -- Running, Succeeded or Failed
    phase      text        NOT NULL,
    documents  bigint      NOT NULL DEFAULT 0,
    tokens     bigint      NOT NULL DEFAULT 0,
    shards     bigint      NOT NULL DEFAULT 0,
    bytes      bigint      NOT NULL DEFAULT 0,
    manifest   text,
    digest     text,
    -- why it failed
    message    text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
