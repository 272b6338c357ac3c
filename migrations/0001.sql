-- Migration 1: applied once, in a transaction, then PRAGMA user_version = 1.
-- Released: never edit; add a new file instead.

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
