-- repro database schema: the CURRENT full schema, as a fresh database gets it.
--
-- A new database is created from this file alone, then `PRAGMA user_version` is set to the
-- number of the last file in `migrations/`. Existing databases are upgraded by the files in
-- `migrations/` (NNNN.sql, applied once each, in order, in a transaction). When you add a
-- migration, change this file to match: the test `store::migrate::tests::migrations_reach_the_fresh_schema`
-- compares the two (and the fixtures of every earlier version) and fails if they differ.

CREATE TABLE runs (
    id                 TEXT PRIMARY KEY NOT NULL,      -- ULID, lowercase
    name               TEXT,
    status             TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'killed', 'lost', 'error')),
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
    rerun_of           TEXT,
    pid_ns             INTEGER,                        -- inode of the wrapper's /proc/self/ns/pid
    scheduler          TEXT,                           -- JSON: the Slurm job / Kubernetes pod the run ran in
    scheduler_job_id   TEXT,                           -- Slurm job id (raw; a task's own id in an array)
    scheduler_array_job_id TEXT,                       -- Slurm array id, for array tasks
    exec_registry      TEXT                            -- JSON: registry access of the engine plan (insecure, CA path + SHA-256)
);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_status_started ON runs (status, started_at);
CREATE INDEX runs_image_digest ON runs (image_digest);
CREATE INDEX runs_image_index_digest ON runs (image_index_digest);
CREATE INDEX runs_code_commit ON runs (code_commit);
CREATE INDEX runs_rerun_of ON runs (rerun_of);
-- Indexes for `ls` filters that also give newest-first order (id) without a sort.
CREATE INDEX runs_status_id ON runs (status, id);
CREATE INDEX runs_host_id ON runs (host, id);
CREATE INDEX runs_branch_id ON runs (code_branch, id);
CREATE INDEX runs_name ON runs (name);
CREATE INDEX runs_image_ref ON runs (image_ref, id);
CREATE INDEX runs_scheduler_job_id ON runs (scheduler_job_id) WHERE scheduler_job_id IS NOT NULL;
CREATE INDEX runs_scheduler_array_job_id ON runs (scheduler_array_job_id) WHERE scheduler_array_job_id IS NOT NULL;


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
CREATE INDEX run_datasets_name ON run_datasets (name, version, run_id);
CREATE INDEX run_datasets_digest ON run_datasets (name, digest, run_id);
-- `repro which DIR`: the runs that read a path dataset with this digest.
CREATE INDEX run_datasets_by_digest ON run_datasets (digest) WHERE digest IS NOT NULL;

CREATE TABLE run_outputs (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pos    INTEGER NOT NULL,
    path   TEXT NOT NULL,
    sha256 TEXT,
    bytes  INTEGER,
    kept   INTEGER,                                -- 1: a copy is in the object store; 0: not (see not_kept); NULL: recorded before outputs were kept
    not_kept TEXT,                                 -- why no copy is kept
    PRIMARY KEY (run_id, pos)
);
-- `repro which DIR`: the runs whose directory output has this digest.
CREATE INDEX run_outputs_sha256 ON run_outputs (sha256) WHERE sha256 IS NOT NULL;

-- Every file of every hashed output (a file output: one row, rel = ''), for `repro which` and
-- the object store's references; SHA-256 as 64 hex.
CREATE TABLE output_files (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pos    INTEGER NOT NULL,
    rel    BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    bytes  INTEGER NOT NULL,
    PRIMARY KEY (run_id, pos, rel)
);
CREATE INDEX output_files_sha256 ON output_files (sha256);

-- The files of path datasets whose manifest is known (dataset digest → file digests).
CREATE TABLE dataset_files (
    digest TEXT NOT NULL,
    rel    BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    bytes  INTEGER,
    PRIMARY KEY (digest, rel)
) WITHOUT ROWID;
CREATE INDEX dataset_files_sha256 ON dataset_files (sha256);

-- Where a run's outputs or attestations were pushed (OCI registry artifacts).
CREATE TABLE run_artifacts (
    run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL CHECK (kind IN ('outputs', 'attestation')),
    reference TEXT NOT NULL,
    digest    TEXT NOT NULL,
    pushed_at TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, reference)
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
    -- 1: read from the command's arguments (params_from_argv, migration 17), not --param.
    from_argv INTEGER NOT NULL DEFAULT 0,
    -- 1: logged by the job at run time (REPRO_PARAMS, migration 20), not --param.
    from_job INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_params_kv ON run_params (key, value, run_id);

CREATE TABLE run_tags (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    tag    TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
);
CREATE INDEX run_tags_tag ON run_tags (tag, run_id);

-- The sweep a run was recorded by (`repro sweep`), and its combination's position in it.
CREATE TABLE sweep_runs (
    run_id   TEXT NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    sweep_id TEXT NOT NULL,
    pos      INTEGER NOT NULL
);
CREATE INDEX sweep_runs_sweep ON sweep_runs (sweep_id, pos);

-- The trail of channel tags moved by `repro promote` (migration 21, docs/promote.md).
CREATE TABLE promotions (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT,
    repository   TEXT NOT NULL,
    channel      TEXT NOT NULL,
    digest       TEXT NOT NULL,
    previous     TEXT,
    kind         TEXT NOT NULL CHECK (kind IN ('promote', 'rollback')),
    promoted_at  TEXT NOT NULL,
    user         TEXT NOT NULL,
    note         TEXT
);
CREATE INDEX promotions_channel ON promotions (repository, channel, id);
CREATE INDEX promotions_digest ON promotions (channel, digest);
-- The environment a run ran in (docs/environment.md), each distinct snapshot stored once.
CREATE TABLE environments (
    sha256 TEXT NOT NULL PRIMARY KEY,
    body   TEXT NOT NULL
);
CREATE TABLE run_environments (
    run_id      TEXT NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    environment TEXT NOT NULL REFERENCES environments (sha256)
);
CREATE INDEX run_environments_environment ON run_environments (environment);

CREATE TABLE run_notes (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pos     INTEGER NOT NULL,
    text    TEXT NOT NULL,
    PRIMARY KEY (run_id, pos)
);

-- Content hashes of files, keyed by what changes when a file changes (see src/capture/dataset);
-- clustered on path so a dataset's rows are one range scan; the SHA-256 as 32 raw bytes.
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

-- The distinct image references, so that a substring match on the reference scans a few rows.
CREATE TABLE image_refs (
    ref TEXT PRIMARY KEY NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER runs_image_ref_seen AFTER INSERT ON runs WHEN NEW.image_ref IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO image_refs (ref) VALUES (NEW.image_ref);
END;

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

-- What `repro mlflow push` sent to each MLflow tracking server (src/store/mlflow.rs): one row per
-- (server, experiment, run), so an unchanged run costs no request and a changed one sends only
-- what changed. No foreign key: `gc` of a local run does not delete what a server already holds.
CREATE TABLE mlflow_pushes (
    tracking_uri   TEXT NOT NULL,                       -- normalised (no trailing slash)
    experiment     TEXT NOT NULL,                       -- experiment name
    run_id         TEXT NOT NULL,                       -- repro run id
    mlflow_run_id  TEXT NOT NULL,
    experiment_id  TEXT NOT NULL,
    pushed_hash    TEXT NOT NULL,                       -- sha256 of everything pushed
    params_json    TEXT NOT NULL,                       -- params as the server holds them
    tags_json      TEXT NOT NULL,                       -- tags repro set, as the server holds them
    state_hash     TEXT NOT NULL,                       -- status, end time, name
    inputs_hash    TEXT NOT NULL,                       -- datasets logged with runs/log-inputs
    artifacts_hash TEXT NOT NULL,                       -- repro/ artifacts uploaded
    metrics_json   TEXT NOT NULL,                       -- {key: points pushed}
    pushed_at      TEXT NOT NULL,                       -- RFC 3339 UTC
    fingerprint    TEXT,                                -- what the mapping read (migration 10); NULL: compare pushed_hash
    PRIMARY KEY (tracking_uri, experiment, run_id)
) WITHOUT ROWID;

-- The kept outputs `repro mlflow push` uploaded as MLflow artifacts (`outputs/…`; migration 16):
-- one row per file and MLflow run, written as each upload is acknowledged, so a re-push sends
-- only what is missing and an interrupted push resumes. No foreign key, as above.
CREATE TABLE mlflow_artifacts (
    tracking_uri  TEXT NOT NULL,
    mlflow_run_id TEXT NOT NULL,
    path          TEXT NOT NULL,                        -- artifact path, `outputs/…`
    run_id        TEXT NOT NULL,                        -- repro run id
    sha256        TEXT NOT NULL,                        -- hex SHA-256 of the bytes uploaded
    bytes         INTEGER NOT NULL,
    uploaded_at   TEXT NOT NULL,                        -- RFC 3339 UTC
    PRIMARY KEY (tracking_uri, mlflow_run_id, path)
) WITHOUT ROWID;
CREATE INDEX mlflow_artifacts_run ON mlflow_artifacts (run_id, tracking_uri);

-- `repro rerun --repeat N`: each repeat, its group and the run it repeats (migration 18).
CREATE TABLE run_repeats (
    run_id   TEXT NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    group_id TEXT NOT NULL,
    original TEXT NOT NULL,
    seq      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX run_repeats_original ON run_repeats (original, group_id, seq);

-- Metrics a job reported (REPRO_METRICS lines, --metrics files). One summary row per run and
-- key (what `ls --sort/--where metric:KEY` reads, through the (key, stat) indexes), and the
-- points of each series clustered by (series, seq) so a run's history is one range scan and a
-- million points append in order. SQLite stores NaN as NULL: a NULL value is NaN, and a NULL
-- min/max means every value was NaN. Times are seconds since the Unix epoch.
CREATE TABLE run_metrics (
    series    INTEGER PRIMARY KEY,
    run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    last      REAL,                                     -- value at the highest step (else the last reported)
    min       REAL,
    max       REAL,
    count     INTEGER NOT NULL,
    last_step INTEGER,
    UNIQUE (run_id, key)
);
CREATE INDEX run_metrics_key_last ON run_metrics (key, last, run_id);
CREATE INDEX run_metrics_key_min ON run_metrics (key, min, run_id);
CREATE INDEX run_metrics_key_max ON run_metrics (key, max, run_id);

CREATE TABLE metric_points (
    series INTEGER NOT NULL REFERENCES run_metrics (series) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,                            -- order reported, from 0
    step   INTEGER,
    value  REAL,                                        -- NULL: NaN
    time   REAL,
    PRIMARY KEY (series, seq)
) WITHOUT ROWID;

-- Where `repro image archive` keeps a copy of a run's image (docs/images.md): an OCI image layout
-- directory or an archive registry repository. An annotation of the run, never its provenance.
CREATE TABLE run_archives (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('oci-layout', 'registry')),
    location    TEXT NOT NULL,                         -- absolute directory, or REGISTRY/REPO
    digest      TEXT NOT NULL,                         -- the top digest archived (index or manifest)
    archived_at TEXT NOT NULL,                         -- RFC 3339 UTC
    PRIMARY KEY (run_id, kind, location)
) WITHOUT ROWID;
CREATE INDEX run_archives_location ON run_archives (location, run_id);

-- the change stamp of `repro mlflow push` (src/ops/mlflow.rs, docs/mlflow.md).
-- Every insert, update or delete of a row that belongs to a run (datasets, outputs, env, params,
-- tags, notes, attestations, archives, metric series summaries) gives the run a new number from
-- one counter, so "the run's number is the one recorded at its last push" proves that none of
-- them changed, without loading them. A run's own columns are read directly (one query for all
-- runs). Metric points are only ever appended together with their series' summary row, which
-- carries the count. A run without a row here has had no child row changed since this migration.
CREATE TABLE run_change_counter (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL
);
INSERT INTO run_change_counter (one, seq) VALUES (1, 0);
CREATE TABLE run_changes (
    run_id TEXT PRIMARY KEY NOT NULL,
    seq    INTEGER NOT NULL                             -- from run_change_counter, never reused
) WITHOUT ROWID;
CREATE TRIGGER run_datasets_changed_insert AFTER INSERT ON run_datasets
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_datasets_changed_update AFTER UPDATE ON run_datasets
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_datasets_changed_delete AFTER DELETE ON run_datasets
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_outputs_changed_insert AFTER INSERT ON run_outputs
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_outputs_changed_update AFTER UPDATE ON run_outputs
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_outputs_changed_delete AFTER DELETE ON run_outputs
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_env_changed_insert AFTER INSERT ON run_env
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_env_changed_update AFTER UPDATE ON run_env
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_env_changed_delete AFTER DELETE ON run_env
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_params_changed_insert AFTER INSERT ON run_params
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_params_changed_update AFTER UPDATE ON run_params
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_params_changed_delete AFTER DELETE ON run_params
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_tags_changed_insert AFTER INSERT ON run_tags
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_tags_changed_update AFTER UPDATE ON run_tags
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_tags_changed_delete AFTER DELETE ON run_tags
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_notes_changed_insert AFTER INSERT ON run_notes
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_notes_changed_update AFTER UPDATE ON run_notes
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_notes_changed_delete AFTER DELETE ON run_notes
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_attestations_changed_insert AFTER INSERT ON run_attestations
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_attestations_changed_update AFTER UPDATE ON run_attestations
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_attestations_changed_delete AFTER DELETE ON run_attestations
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_archives_changed_insert AFTER INSERT ON run_archives
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_archives_changed_update AFTER UPDATE ON run_archives
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_archives_changed_delete AFTER DELETE ON run_archives
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_metrics_changed_insert AFTER INSERT ON run_metrics
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_metrics_changed_update AFTER UPDATE ON run_metrics
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER run_metrics_changed_delete AFTER DELETE ON run_metrics
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER runs_changes_forget AFTER DELETE ON runs
BEGIN
    DELETE FROM run_changes WHERE run_id = OLD.id;
END;

-- One row per dataset version the runs read (name, version, digest), kept up to
-- date by triggers on run_datasets, so that `repro ui`'s Datasets page reads a row a version
-- instead of grouping every dataset row of every run (30 s over 1,000,000 runs).
-- `vkey`/`dkey` are the version and digest with '' for none (a key cannot hold NULLs that
-- compare equal). `first_run`/`last_run`: the smallest and largest run ids (ULIDs, which sort
-- by the time the run started); `readings`: the dataset rows (runs) that read it.
CREATE TABLE dataset_versions (
    name      TEXT NOT NULL,
    vkey      TEXT NOT NULL,
    dkey      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    uri       TEXT,
    files     INTEGER,
    bytes     INTEGER,
    readings  INTEGER NOT NULL,
    first_run TEXT NOT NULL,
    last_run  TEXT NOT NULL,
    PRIMARY KEY (name, vkey, dkey)
) WITHOUT ROWID;
CREATE TRIGGER dataset_versions_insert AFTER INSERT ON run_datasets
BEGIN
    INSERT INTO dataset_versions (name, vkey, dkey, kind, uri, files, bytes, readings, first_run, last_run)
    VALUES (NEW.name, ifnull(NEW.version, ''), ifnull(NEW.digest, ''), NEW.kind, NEW.uri, NEW.files,
            NEW.bytes, 1, NEW.run_id, NEW.run_id)
    ON CONFLICT (name, vkey, dkey) DO UPDATE SET
        readings = readings + 1,
        uri = coalesce(uri, excluded.uri),
        files = coalesce(max(files, excluded.files), files, excluded.files),
        bytes = coalesce(max(bytes, excluded.bytes), bytes, excluded.bytes),
        first_run = min(first_run, excluded.first_run),
        last_run = max(last_run, excluded.last_run);
END;
CREATE TRIGGER dataset_versions_delete AFTER DELETE ON run_datasets
BEGIN
    UPDATE dataset_versions SET
        readings = readings - 1,
        first_run = CASE WHEN first_run = OLD.run_id THEN ifnull((SELECT min(run_id) FROM run_datasets
            WHERE name = OLD.name AND version IS OLD.version AND digest IS OLD.digest), first_run)
            ELSE first_run END,
        last_run = CASE WHEN last_run = OLD.run_id THEN ifnull((SELECT max(run_id) FROM run_datasets
            WHERE name = OLD.name AND version IS OLD.version AND digest IS OLD.digest), last_run)
            ELSE last_run END
    WHERE name = OLD.name AND vkey = ifnull(OLD.version, '') AND dkey = ifnull(OLD.digest, '');
    DELETE FROM dataset_versions
    WHERE name = OLD.name AND vkey = ifnull(OLD.version, '') AND dkey = ifnull(OLD.digest, '')
      AND readings <= 0;
END;
CREATE TRIGGER dataset_versions_update AFTER UPDATE OF run_id, name, version, digest ON run_datasets
BEGIN
    UPDATE dataset_versions SET
        readings = readings - 1,
        first_run = CASE WHEN first_run = OLD.run_id THEN ifnull((SELECT min(run_id) FROM run_datasets
            WHERE name = OLD.name AND version IS OLD.version AND digest IS OLD.digest), first_run)
            ELSE first_run END,
        last_run = CASE WHEN last_run = OLD.run_id THEN ifnull((SELECT max(run_id) FROM run_datasets
            WHERE name = OLD.name AND version IS OLD.version AND digest IS OLD.digest), last_run)
            ELSE last_run END
    WHERE name = OLD.name AND vkey = ifnull(OLD.version, '') AND dkey = ifnull(OLD.digest, '');
    DELETE FROM dataset_versions
    WHERE name = OLD.name AND vkey = ifnull(OLD.version, '') AND dkey = ifnull(OLD.digest, '')
      AND readings <= 0;
    INSERT INTO dataset_versions (name, vkey, dkey, kind, uri, files, bytes, readings, first_run, last_run)
    VALUES (NEW.name, ifnull(NEW.version, ''), ifnull(NEW.digest, ''), NEW.kind, NEW.uri, NEW.files,
            NEW.bytes, 1, NEW.run_id, NEW.run_id)
    ON CONFLICT (name, vkey, dkey) DO UPDATE SET
        readings = readings + 1,
        uri = coalesce(uri, excluded.uri),
        files = coalesce(max(files, excluded.files), files, excluded.files),
        bytes = coalesce(max(bytes, excluded.bytes), bytes, excluded.bytes),
        first_run = min(first_run, excluded.first_run),
        last_run = max(last_run, excluded.last_run);
END;

-- The same for the images the runs used: one row per (reference as written, digest), kept by
-- triggers on runs, for the Images page (2 s over 1,000,000 runs when grouped from runs).
CREATE TABLE image_uses (
    ref       TEXT NOT NULL,
    dkey      TEXT NOT NULL,
    runs      INTEGER NOT NULL,
    first_run TEXT NOT NULL,
    last_run  TEXT NOT NULL,
    PRIMARY KEY (ref, dkey)
) WITHOUT ROWID;
CREATE TRIGGER image_uses_insert AFTER INSERT ON runs WHEN NEW.image_ref IS NOT NULL
BEGIN
    INSERT INTO image_uses (ref, dkey, runs, first_run, last_run)
    VALUES (NEW.image_ref, ifnull(NEW.image_digest, ''), 1, NEW.id, NEW.id)
    ON CONFLICT (ref, dkey) DO UPDATE SET
        runs = runs + 1,
        first_run = min(first_run, excluded.first_run),
        last_run = max(last_run, excluded.last_run);
END;
CREATE TRIGGER image_uses_delete AFTER DELETE ON runs WHEN OLD.image_ref IS NOT NULL
BEGIN
    UPDATE image_uses SET
        runs = runs - 1,
        first_run = CASE WHEN first_run = OLD.id THEN ifnull((SELECT min(id) FROM runs
            WHERE image_ref = OLD.image_ref AND image_digest IS OLD.image_digest), first_run)
            ELSE first_run END,
        last_run = CASE WHEN last_run = OLD.id THEN ifnull((SELECT max(id) FROM runs
            WHERE image_ref = OLD.image_ref AND image_digest IS OLD.image_digest), last_run)
            ELSE last_run END
    WHERE ref = OLD.image_ref AND dkey = ifnull(OLD.image_digest, '');
    DELETE FROM image_uses
    WHERE ref = OLD.image_ref AND dkey = ifnull(OLD.image_digest, '') AND runs <= 0;
END;
CREATE TRIGGER image_uses_update AFTER UPDATE OF image_ref, image_digest ON runs
BEGIN
    UPDATE image_uses SET
        runs = runs - 1,
        first_run = CASE WHEN first_run = OLD.id THEN ifnull((SELECT min(id) FROM runs
            WHERE image_ref = OLD.image_ref AND image_digest IS OLD.image_digest), first_run)
            ELSE first_run END,
        last_run = CASE WHEN last_run = OLD.id THEN ifnull((SELECT max(id) FROM runs
            WHERE image_ref = OLD.image_ref AND image_digest IS OLD.image_digest), last_run)
            ELSE last_run END
    WHERE ref = OLD.image_ref AND dkey = ifnull(OLD.image_digest, '');
    DELETE FROM image_uses
    WHERE ref = OLD.image_ref AND dkey = ifnull(OLD.image_digest, '') AND runs <= 0;
    INSERT INTO image_uses (ref, dkey, runs, first_run, last_run)
    SELECT NEW.image_ref, ifnull(NEW.image_digest, ''), 1, NEW.id, NEW.id WHERE NEW.image_ref IS NOT NULL
    ON CONFLICT (ref, dkey) DO UPDATE SET
        runs = runs + 1,
        first_run = min(first_run, excluded.first_run),
        last_run = max(last_run, excluded.last_run);
END;
