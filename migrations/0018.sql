-- Migration 18: `repro rerun ID --repeat N` records its re-runs as a group, so later commands
-- (`repro diff`) find "the repeats of A". One row per repeat, written as each one ends (an
-- interrupted group keeps the repeats that ran). No foreign key on `original`: the repeats
-- stay a group when the original is deleted.
CREATE TABLE run_repeats (
    run_id   TEXT NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    group_id TEXT NOT NULL,
    original TEXT NOT NULL,
    seq      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX run_repeats_original ON run_repeats (original, group_id, seq);
