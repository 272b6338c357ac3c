-- Migration 9: the scheduler context of a run (docs/cluster.md): the Slurm job or Kubernetes pod
-- it ran in, as the JSON object of `capture::scheduler::SchedulerContext`, and the Slurm job id
-- and array id it carries, indexed for `repro ls --job ID` (partial indexes: most runs have none,
-- and a bulk import should not pay for them). All null outside a scheduler.
ALTER TABLE runs ADD COLUMN scheduler TEXT;
ALTER TABLE runs ADD COLUMN scheduler_job_id TEXT;
ALTER TABLE runs ADD COLUMN scheduler_array_job_id TEXT;
CREATE INDEX runs_scheduler_job_id ON runs (scheduler_job_id) WHERE scheduler_job_id IS NOT NULL;
CREATE INDEX runs_scheduler_array_job_id ON runs (scheduler_array_job_id) WHERE scheduler_array_job_id IS NOT NULL;
