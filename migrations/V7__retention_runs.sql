-- The last run of each RetentionPolicy (its status): what was removed, where
-- the rules cut and where the replica guard held them.
CREATE TABLE retention_runs (
    policy text PRIMARY KEY,
    record text NOT NULL, -- JSON of catalog::RetentionRecord
    updated_at timestamptz NOT NULL DEFAULT now()
);
