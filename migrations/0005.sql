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
