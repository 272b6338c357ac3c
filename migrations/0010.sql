-- Migration 10: the cheap change check of `repro mlflow push` (src/ops/mlflow.rs, docs/mlflow.md).
-- `fingerprint` is the SHA-256 of what the mapping reads (the run record, its metric series
-- summary, its attestation rows and files' size and mtime, the parent's MLflow run id, the mapping
-- version) when the run was pushed: equal means unchanged, without rendering or hashing what would
-- be sent. NULL in rows written before this migration (and while a param conflict stands): the
-- next push compares the full `pushed_hash` once and fills it in.
ALTER TABLE mlflow_pushes ADD COLUMN fingerprint TEXT;
