-- Migration 19: `repro sweep` groups the runs it records under a sweep id (`ls --sweep ID`,
-- `show`). One row per run: the sweep, and the combination's position in it.
CREATE TABLE sweep_runs (
    run_id   TEXT NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    sweep_id TEXT NOT NULL,
    pos      INTEGER NOT NULL
);
CREATE INDEX sweep_runs_sweep ON sweep_runs (sweep_id, pos);
