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
