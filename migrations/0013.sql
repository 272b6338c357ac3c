-- Migration 13: what a run needed to reach its image's registry (declared insecure, the CA
-- certificates it trusted: path and SHA-256; never credentials), as JSON, so that `repro rerun`,
-- every `repro script` target, Slurm re-runs and the MLflow `rerun.sh` pull the way the run did
-- without the flags given again. NULL when the run needed nothing beyond the defaults.
ALTER TABLE runs ADD COLUMN exec_registry TEXT;
