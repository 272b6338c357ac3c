-- Migration 22: the environment a run ran in (docs/environment.md), content-addressed: each
-- distinct snapshot is stored once and runs point at it.
CREATE TABLE environments (
    sha256 TEXT NOT NULL PRIMARY KEY,
    body   TEXT NOT NULL
);
CREATE TABLE run_environments (
    run_id      TEXT NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    environment TEXT NOT NULL REFERENCES environments (sha256)
);
CREATE INDEX run_environments_environment ON run_environments (environment);
