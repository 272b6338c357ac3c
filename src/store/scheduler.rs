//! The scheduler context of a run in the store and in `--json`: the `scheduler` column holds the
//! JSON of [`SchedulerContext`], `scheduler_job_id` / `scheduler_array_job_id` the Slurm ids that
//! `ls --job` looks up (indexed); `--json` and exports use the flat shape of DESIGN.md:
//! `null`, or `{"kind": "slurm", "job_id": …, …}` / `{"kind": "kubernetes", "pod": …, …}` with
//! every field present (null when unknown). A Slurm job inside a pod carries the pod under
//! `"kubernetes"`.

use rusqlite::Row;

use crate::record::scheduler::SchedulerContext;

/// The values of the three `runs` columns for a context.
pub(super) fn columns(
    ctx: Option<&SchedulerContext>,
) -> (Option<String>, Option<String>, Option<String>) {
    let Some(ctx) = ctx else {
        return (None, None, None);
    };
    let text = serde_json::to_string(ctx).expect("the scheduler context serialises");
    let slurm = ctx.slurm.as_ref();
    (
        Some(text),
        slurm.map(|s| s.job_id.clone()),
        slurm.and_then(|s| s.array_job_id.clone()),
    )
}

/// Reads the `scheduler` column of a row selected with `RUN_COLUMNS`.
pub(super) fn from_row(r: &Row) -> rusqlite::Result<Option<SchedulerContext>> {
    let text: Option<String> = r.get("scheduler")?;
    match text {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t).map(Some).map_err(|e| {
            let i = r.as_ref().column_index("scheduler").unwrap_or(0);
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

/// The SQL condition (with `?` bound to `job` `n` times, in order) of `ls --job JOB`: the raw
/// job id, the array id (every task), or `ARRAY_TASK` (one task) — as
/// [`SlurmContext::matches`] defines it.
pub fn job_condition(job: &str, next_param: usize) -> (String, Vec<String>) {
    let job = job.trim();
    let p = next_param;
    match job.split_once('_') {
        Some((array, task)) => (
            format!(
                "(scheduler_job_id = ?{p} OR (scheduler_array_job_id = ?{} AND json_extract(scheduler, '$.slurm.array_task_id') = ?{}))",
                p + 1,
                p + 2
            ),
            vec![job.to_string(), array.to_string(), task.to_string()],
        ),
        None => (
            format!("(scheduler_job_id = ?{p} OR scheduler_array_job_id = ?{p})"),
            vec![job.to_string()],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn job_condition_matches_ids_arrays_and_tasks() {
        let (sql, args) = job_condition("42", 3);
        assert_eq!(
            sql,
            "(scheduler_job_id = ?3 OR scheduler_array_job_id = ?3)"
        );
        assert_eq!(args, vec!["42"]);
        let (sql, args) = job_condition("40_2", 1);
        assert!(sql.contains("?3"), "{sql}");
        assert_eq!(args, vec!["40_2", "40", "2"]);
    }
}
