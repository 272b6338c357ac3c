-- Migration 21: the trail of channel tags moved by `repro promote` (docs/promote.md): which
-- digest a channel tag of a repository was pointed at, the digest it held before, when, by whom
-- and why, and the run behind it (kept when the run is deleted: the trail is history).
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
