-- Migration 20: params the job logged itself at run time (`repro.log_params`, the REPRO_PARAMS
-- channel, docs/python.md) are marked, so `show` and the JSON can tell them from `--param` and
-- from the command's arguments.
ALTER TABLE run_params ADD COLUMN from_job INTEGER NOT NULL DEFAULT 0;
