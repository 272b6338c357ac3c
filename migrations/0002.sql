-- Migration 2: applied once, in a transaction, then PRAGMA user_version = 2.
-- Released: never edit; add a new file instead.

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
