-- Migration 17: params read from the command's arguments (`params_from_argv`, docs/params.md)
-- are marked, so `show` and the JSON can tell them from `--param`. Earlier params were all given
-- with `--param` (or `repro param`).
ALTER TABLE run_params ADD COLUMN from_argv INTEGER NOT NULL DEFAULT 0;
