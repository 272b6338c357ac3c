-- Migration 3: applied once, in a transaction, then PRAGMA user_version = 3.
-- Released: never edit; add a new file instead.

-- Written to be idempotent (IF NOT EXISTS, drop-and-recreate): for a while main carried these
-- statements inside migration 2, so some version-2 databases already have them.
-- Indexes for `ls` filters that also give newest-first order (id) without a sort, covering
-- indexes for annotation and dataset filters, and the distinct image references so that a
-- substring match on the reference scans a few rows instead of every run.
CREATE INDEX IF NOT EXISTS runs_status_id ON runs (status, id);
CREATE INDEX IF NOT EXISTS runs_host_id ON runs (host, id);
CREATE INDEX IF NOT EXISTS runs_branch_id ON runs (code_branch, id);
CREATE INDEX IF NOT EXISTS runs_name ON runs (name);
CREATE INDEX IF NOT EXISTS runs_image_ref ON runs (image_ref, id);
DROP INDEX IF EXISTS run_tags_tag;
CREATE INDEX run_tags_tag ON run_tags (tag, run_id);
DROP INDEX IF EXISTS run_params_kv;
CREATE INDEX run_params_kv ON run_params (key, value, run_id);
DROP INDEX IF EXISTS run_datasets_name;
CREATE INDEX run_datasets_name ON run_datasets (name, version, run_id);
CREATE INDEX IF NOT EXISTS run_datasets_digest ON run_datasets (name, digest, run_id);

CREATE TABLE IF NOT EXISTS image_refs (
    ref TEXT PRIMARY KEY NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO image_refs (ref) SELECT DISTINCT image_ref FROM runs WHERE image_ref IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS runs_image_ref_seen AFTER INSERT ON runs WHEN NEW.image_ref IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO image_refs (ref) VALUES (NEW.image_ref);
END;
