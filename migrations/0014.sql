-- Migration 14: kept outputs. Each output says whether a copy is in the object store
-- (`<data dir>/objects/sha256/…`) and, when not, why; `output_files` lists every file of every
-- hashed output (a file output is one row with an empty `rel`) so `repro which` is one indexed
-- look-up and the object store knows which objects a run still holds; `dataset_files` does the
-- same for the files of path datasets whose manifest is known; `run_artifacts` records where a
-- run's outputs or attestations were pushed (an OCI registry).
ALTER TABLE run_outputs ADD COLUMN kept INTEGER;
ALTER TABLE run_outputs ADD COLUMN not_kept TEXT;

CREATE TABLE output_files (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pos    INTEGER NOT NULL,
    rel    BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    bytes  INTEGER NOT NULL,
    PRIMARY KEY (run_id, pos, rel)
);
CREATE INDEX output_files_sha256 ON output_files (sha256);

CREATE TABLE dataset_files (
    digest TEXT NOT NULL,
    rel    BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    bytes  INTEGER,
    PRIMARY KEY (digest, rel)
) WITHOUT ROWID;
CREATE INDEX dataset_files_sha256 ON dataset_files (sha256);

CREATE TABLE run_artifacts (
    run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL CHECK (kind IN ('outputs', 'attestation')),
    reference TEXT NOT NULL,
    digest    TEXT NOT NULL,
    pushed_at TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, reference)
);
