-- repro database schema.
--
-- Ordered, append-only migrations: each `-- migration: N` section is applied once, in order,
-- inside a transaction, and `PRAGMA user_version` is set to N afterwards. Never edit a
-- released section; add a new one at the end.

-- migration: 1
CREATE TABLE runs (
    id                 TEXT PRIMARY KEY NOT NULL,      -- ULID, lowercase
    name               TEXT,
    status             TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'killed', 'lost')),
    exit_code          INTEGER,
    signal             INTEGER,
    started_at         TEXT NOT NULL,                  -- RFC 3339 UTC, millisecond precision
    ended_at           TEXT,
    duration_ms        INTEGER,
    argv               TEXT NOT NULL,                  -- JSON array; non-UTF-8 args as {"base64": …}
    cwd                TEXT NOT NULL,
    exec_mode          TEXT NOT NULL CHECK (exec_mode IN ('container', 'host')),
    engine             TEXT,
    workdir            TEXT,
    engine_args        TEXT NOT NULL DEFAULT '[]',     -- JSON array of strings
    gpus               TEXT,
    image_ref          TEXT,
    image_digest       TEXT,
    image_index_digest TEXT,
    image_platform     TEXT,
    image_resolved_by  TEXT CHECK (image_resolved_by IN ('pinned', 'registry', 'engine', 'unpinned')),
    image_labels       TEXT,                           -- JSON object
    code_repo_root     TEXT,
    code_remote        TEXT,
    code_commit        TEXT,
    code_branch        TEXT,
    code_dirty         INTEGER,
    code_untracked     TEXT,                           -- JSON array
    code_patch         TEXT,
    code_patch_sha256  TEXT,
    host               TEXT NOT NULL,
    user               TEXT NOT NULL,
    platform           TEXT NOT NULL,
    pid                INTEGER,
    pid_start          INTEGER,                        -- start time of the wrapper (clock ticks since boot)
    boot_id            TEXT,
    rerun_of           TEXT
);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_status_started ON runs (status, started_at);
CREATE INDEX runs_image_digest ON runs (image_digest);
CREATE INDEX runs_image_index_digest ON runs (image_index_digest);
CREATE INDEX runs_code_commit ON runs (code_commit);
CREATE INDEX runs_rerun_of ON runs (rerun_of);

CREATE TABLE run_datasets (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pos     INTEGER NOT NULL,
    name    TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('label', 'path', 'dvc', 'uri')),
    uri     TEXT,
    version TEXT,
    digest  TEXT,
    files   INTEGER,
    bytes   INTEGER,
    PRIMARY KEY (run_id, pos)
);
CREATE INDEX run_datasets_name ON run_datasets (name, version);

CREATE TABLE run_outputs (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pos    INTEGER NOT NULL,
    path   TEXT NOT NULL,
    sha256 TEXT,
    bytes  INTEGER,
    PRIMARY KEY (run_id, pos)
);

CREATE TABLE run_env (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);

-- Annotations: added at or after the run, never part of its provenance.
CREATE TABLE run_params (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_params_kv ON run_params (key, value);

CREATE TABLE run_tags (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    tag    TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
);
CREATE INDEX run_tags_tag ON run_tags (tag);

CREATE TABLE run_notes (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pos     INTEGER NOT NULL,
    text    TEXT NOT NULL,
    PRIMARY KEY (run_id, pos)
);

-- Content hashes of files, keyed by what changes when a file changes (see src/capture/dataset).
CREATE TABLE hash_cache (
    path      TEXT PRIMARY KEY NOT NULL,               -- absolute path
    dev       INTEGER NOT NULL,
    ino       INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    ctime_ns  INTEGER NOT NULL,
    sha256    TEXT NOT NULL,
    hashed_ns INTEGER NOT NULL                          -- wall clock when hashed (racy-clean check)
);

-- migration: 2
-- hash_cache again, clustered on path (WITHOUT ROWID) so a dataset's rows are one ordered range
-- scan (no index probe plus table lookup per file), with the SHA-256 as 32 raw bytes. It is
-- only a cache, so the old rows are dropped rather than copied.
DROP TABLE hash_cache;
CREATE TABLE hash_cache (
    path      TEXT PRIMARY KEY NOT NULL,               -- absolute path
    dev       INTEGER NOT NULL,
    ino       INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    ctime_ns  INTEGER NOT NULL,
    sha256    BLOB NOT NULL,                            -- 32 bytes
    hashed_ns INTEGER NOT NULL                          -- wall clock when hashing started (racy-clean check)
) WITHOUT ROWID;

-- migration: 3
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

-- migration: 4
-- Attestations produced by `repro attest` (docs/attest.md): the digest of each document per run,
-- so `show --format notes` can cite it and a push can find the file. Not part of the provenance.
CREATE TABLE IF NOT EXISTS run_attestations (
    run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    sha256     TEXT NOT NULL,                          -- hex SHA-256 of the document as written
    keyid      TEXT,                                   -- signing key id; null for an unsigned statement
    path       TEXT,                                   -- absolute path written with -o; null for stdout
    created_at TEXT NOT NULL,                          -- RFC 3339 UTC
    PRIMARY KEY (run_id, sha256)
) WITHOUT ROWID;

-- migration: 5
-- Where `repro image archive` keeps a copy of a run's image (docs/images.md): an OCI image layout
-- directory or an archive registry repository. An annotation of the run, never its provenance.
CREATE TABLE IF NOT EXISTS run_archives (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('oci-layout', 'registry')),
    location    TEXT NOT NULL,                         -- absolute directory, or REGISTRY/REPO
    digest      TEXT NOT NULL,                         -- the top digest archived (index or manifest)
    archived_at TEXT NOT NULL,                         -- RFC 3339 UTC
    PRIMARY KEY (run_id, kind, location)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_archives_location ON run_archives (location, run_id);
