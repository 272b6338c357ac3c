-- Migration 4: the `error` status (the engine could not pull or start the image, so the job
-- never ran) and the wrapper's pid namespace (`pid_ns`, so a run in another namespace is not
-- taken for lost). SQLite cannot widen a CHECK in place: the runs table is rebuilt, keeping its
-- rows, indexes and trigger; the child tables reference it by name and keep their rows (the
-- migration runs with foreign keys off, and checks them before it commits).

CREATE TABLE runs_new (
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
    pid_ns             INTEGER                         -- inode of the wrapper's /proc/self/ns/pid
);
INSERT INTO runs_new (id, name, status, exit_code, signal, started_at, ended_at, duration_ms, argv, cwd,
    exec_mode, engine, workdir, engine_args, gpus, image_ref, image_digest, image_index_digest,
    image_platform, image_resolved_by, image_labels, code_repo_root, code_remote, code_commit,
    code_branch, code_dirty, code_untracked, code_patch, code_patch_sha256, host, user, platform,
    pid, pid_start, boot_id, rerun_of)
SELECT id, name, status, exit_code, signal, started_at, ended_at, duration_ms, argv, cwd,
    exec_mode, engine, workdir, engine_args, gpus, image_ref, image_digest, image_index_digest,
    image_platform, image_resolved_by, image_labels, code_repo_root, code_remote, code_commit,
    code_branch, code_dirty, code_untracked, code_patch, code_patch_sha256, host, user, platform,
    pid, pid_start, boot_id, rerun_of
FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_status_started ON runs (status, started_at);
CREATE INDEX runs_image_digest ON runs (image_digest);
CREATE INDEX runs_image_index_digest ON runs (image_index_digest);
CREATE INDEX runs_code_commit ON runs (code_commit);
CREATE INDEX runs_rerun_of ON runs (rerun_of);
CREATE INDEX runs_status_id ON runs (status, id);
CREATE INDEX runs_host_id ON runs (host, id);
CREATE INDEX runs_branch_id ON runs (code_branch, id);
CREATE INDEX runs_name ON runs (name);
CREATE INDEX runs_image_ref ON runs (image_ref, id);
CREATE TRIGGER runs_image_ref_seen AFTER INSERT ON runs WHEN NEW.image_ref IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO image_refs (ref) VALUES (NEW.image_ref);
END;
