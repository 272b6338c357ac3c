-- Migration 15: `repro which` answers with indexed look-ups only. A directory given to it is
-- matched against directory outputs by their digest (run_outputs.sha256) and against path
-- datasets by theirs (run_datasets.digest, whose older index leads with the name); outputs of
-- files recorded before migration 14 get their one output_files row (rel = empty), as newer
-- runs do.
CREATE INDEX run_outputs_sha256 ON run_outputs (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX run_datasets_by_digest ON run_datasets (digest) WHERE digest IS NOT NULL;
INSERT OR IGNORE INTO output_files (run_id, pos, rel, sha256, bytes)
    SELECT run_id, pos, X'', sha256, bytes FROM run_outputs
    WHERE sha256 IS NOT NULL AND bytes IS NOT NULL AND sha256 NOT LIKE 'sha256:%';
