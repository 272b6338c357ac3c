//! `repro sweep --on slurm`: the combinations as one Slurm job array. Each array task is this
//! same sweep command line with `--sweep-member ID:$SLURM_ARRAY_TASK_ID:REPORT` (the member mode
//! `--jobs` uses), so each task records its run with `repro run`'s own code on the node — its
//! Slurm job, array job and task ids captured as for any run inside a job — and adds it to the
//! sweep. `--wait` follows the array until every task has ended and ranks the runs.
//!
//! The job directory (`repro-sweep-<12 chars of the sweep id>` by default) holds the array script
//! (`sweep.sbatch`), Slurm's log of each task (`slurm-<array>_<task>.out`) and the tasks' reports;
//! it, the working directory, the repro executable and the database must be reachable from the
//! compute nodes (a shared filesystem).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Hinted;
use crate::ops::sweep::{
    finish, new_sweep_id, not_run, report_row, skipped, Identity, SweepError, SweepOutcome,
    SweepPlan, SweepRun,
};
use crate::ops::Events;
use crate::slurm::{Client, JobStatus, SlurmError, Submit};
use crate::store::Store;

/// The array script's file name in the job directory.
pub const SCRIPT_FILE: &str = "sweep.sbatch";
/// The tasks' reports, in the job directory.
pub const REPORTS_DIR: &str = "reports";

/// Why an array could not be submitted or followed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmSweepError {
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    /// The job directory cannot be made or written.
    #[error("cannot {what} in {}: {reason}", dir.display())]
    JobDir {
        what: &'static str,
        dir: PathBuf,
        reason: String,
    },
    /// The script cannot hold an argument (a NUL, or not UTF-8).
    #[error("the sweep command line cannot be written into the Slurm script: {0}")]
    Quote(String),
}

impl Hinted for SlurmSweepError {
    fn hint(&self) -> Option<String> {
        match self {
            SlurmSweepError::Sweep(e) => e.hint(),
            SlurmSweepError::Slurm(e) => e.hint(),
            SlurmSweepError::JobDir { .. } => Some(
                "give a writable, empty --job-dir on a filesystem the compute nodes see".into(),
            ),
            SlurmSweepError::Quote(_) => {
                Some("write the command line in UTF-8 without NUL bytes".into())
            }
        }
    }
    fn is_usage(&self) -> bool {
        matches!(self, SlurmSweepError::Sweep(e) if e.is_usage())
    }
}

/// How to submit the array.
#[derive(Debug, Clone, Default)]
pub struct SlurmSweep {
    /// The Slurm client (its slurm.conf).
    pub client: Client,
    /// Extra `sbatch` arguments, verbatim, after repro's own (so they win).
    pub sbatch_args: Vec<OsString>,
    /// The job directory (empty or missing); default `./repro-sweep-<12 chars of the id>`.
    pub dir: Option<PathBuf>,
    /// `--jobs N`: at most N tasks at once (`--array=…%N`).
    pub jobs: Option<usize>,
    /// Follow the array until every task has ended.
    pub wait: bool,
    /// The database the tasks record into (exported as `REPRO_DB`).
    pub db: PathBuf,
    /// The command line each task runs (with its member flag).
    pub line: crate::ops::sweep::MemberLine,
    /// How often `wait` asks Slurm.
    pub interval: Duration,
}

/// What `submit` did.
#[derive(Debug)]
pub struct SlurmSubmitted {
    /// The sweep id.
    pub id: String,
    /// The array's job id; `None` when every combination was skipped (`--needed`).
    pub job_id: Option<String>,
    /// The job directory.
    pub dir: Option<PathBuf>,
    /// The positions submitted as array tasks.
    pub tasks: Vec<usize>,
    /// With `wait` (or nothing to submit): the ranked rows of every combination.
    pub outcome: Option<SweepOutcome>,
}

/// `--array=0,2,5%2`: the task indices (the combinations' positions) and the throttle.
pub fn array_spec(tasks: &[usize], jobs: Option<usize>) -> String {
    let list = tasks
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    match jobs {
        Some(n) => format!("{list}%{n}"),
        None => list,
    }
}

fn word(a: &std::ffi::OsStr) -> Result<String, SlurmSweepError> {
    use std::os::unix::ffi::OsStrExt;
    crate::script::quote::bash(a.as_bytes()).map_err(|e| SlurmSweepError::Quote(e.to_string()))
}

/// The array script: each task goes to the working directory and runs its member of the sweep.
pub fn render(
    id: &str,
    cwd: &Path,
    dir: &Path,
    req: &SlurmSweep,
) -> Result<String, SlurmSweepError> {
    let mut s = String::new();
    s.push_str("#!/usr/bin/env bash\n");
    // The command line's words are single-quoted on purpose (`$`, quotes, `~` are data).
    s.push_str("# shellcheck disable=SC1003,SC2016,SC2088\n");
    s.push_str(&format!(
        "# repro sweep {id}: one Slurm array task per combination; each task records its run\n"
    ));
    s.push_str("# with repro on the node and adds it to the sweep (repro ls --sweep ID).\n");
    s.push_str("set -u\n");
    s.push_str(&format!("cd -- {} || exit 1\n", word(cwd.as_os_str())?));
    s.push_str(&format!("export REPRO_DB={}\n", word(req.db.as_os_str())?));
    s.push_str("task=\"${SLURM_ARRAY_TASK_ID:?submit this script with sbatch --array}\"\n");
    let reports = dir.join(REPORTS_DIR);
    s.push_str(&format!(
        "report={}/\"$task\".json\n",
        word(reports.as_os_str())?
    ));
    let mut line = String::from("exec");
    for a in &req.line.before {
        line.push(' ');
        line.push_str(&word(a)?);
    }
    line.push_str(&format!(" --sweep-member {id}:\"$task\":\"$report\""));
    for a in &req.line.after {
        line.push(' ');
        line.push_str(&word(a)?);
    }
    s.push_str(&line);
    s.push('\n');
    Ok(s)
}

/// Plans the array (with `--needed`, done combinations are left out), writes the script and
/// submits it; with `wait`, follows it until every task has ended and gathers the rows.
pub fn submit(
    ev: &dyn Events,
    store: &mut Store,
    plan: &SweepPlan,
    req: &SlurmSweep,
) -> Result<SlurmSubmitted, SlurmSweepError> {
    let id = new_sweep_id();
    let same = if plan.needed {
        Some(Identity::now(ev, store, &plan.base)?)
    } else {
        None
    };
    let mut rows: Vec<(usize, SweepRun)> = Vec::new();
    let mut tasks = Vec::new();
    for pos in 0..plan.combos.len() {
        match skipped(ev, store, plan, &id, pos, same.as_ref())? {
            Some(row) => rows.push((pos, row)),
            None => tasks.push(pos),
        }
    }
    if tasks.is_empty() {
        ev.status(&format!(
            "sweep {id}: every combination already succeeded; nothing submitted"
        ));
        let rows = rows.into_iter().map(|(_, r)| r).collect();
        return Ok(SlurmSubmitted {
            outcome: Some(finish(ev, plan, id.clone(), rows, 0)),
            id,
            job_id: None,
            dir: None,
            tasks,
        });
    }
    let dir = match &req.dir {
        Some(d) => d.clone(),
        None => PathBuf::from(format!("repro-sweep-{}", &id[..12.min(id.len())])),
    };
    let cant = |what: &'static str, e: std::io::Error| SlurmSweepError::JobDir {
        what,
        dir: dir.clone(),
        reason: e.to_string(),
    };
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(cant(
            "use the job directory",
            std::io::Error::other("it is not empty"),
        ));
    }
    std::fs::create_dir_all(dir.join(REPORTS_DIR))
        .map_err(|e| cant("create the job directory", e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| cant("resolve the job directory", e))?;
    let script = render(&id, &plan.base.cwd, &dir, req)?;
    let file = dir.join(SCRIPT_FILE);
    std::fs::write(&file, &script).map_err(|e| cant("write the script", e))?;
    let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755));
    let mut log = dir.clone().into_os_string();
    log.push("/slurm-%A_%a.out");
    let mut sbatch_args: Vec<OsString> = vec![
        format!("--job-name=repro-sweep-{}", &id[..12.min(id.len())]).into(),
        format!("--array={}", array_spec(&tasks, req.jobs)).into(),
        {
            let mut o = OsString::from("--output=");
            o.push(&log);
            o
        },
    ];
    sbatch_args.extend(req.sbatch_args.iter().cloned());
    let job_id = req.client.submit(&Submit {
        script,
        sbatch_args,
        workdir: Some(plan.base.cwd.clone()),
        script_file: Some(file),
        script_args: Vec::new(),
    })?;
    ev.status(&format!(
        "sweep {id}: submitted Slurm array job {job_id} ({} task(s); script and logs in {})",
        tasks.len(),
        dir.display()
    ));
    if !req.wait {
        return Ok(SlurmSubmitted {
            id,
            job_id: Some(job_id),
            dir: Some(dir),
            tasks,
            outcome: None,
        });
    }
    let jobs = follow(ev, &req.client, &job_id, req.interval)?;
    for &pos in &tasks {
        let path = dir.join(REPORTS_DIR).join(format!("{pos}.json"));
        let row = match report_row(store, plan, pos, &path)? {
            Some(row) => row,
            None => task_row(plan, pos, &job_id, &jobs),
        };
        rows.push((pos, row));
    }
    rows.sort_by_key(|(pos, _)| *pos);
    let rows = rows.into_iter().map(|(_, r)| r).collect();
    Ok(SlurmSubmitted {
        outcome: Some(finish(ev, plan, id.clone(), rows, 0)),
        id,
        job_id: Some(job_id),
        dir: Some(dir),
        tasks,
    })
}

/// The row of a task that wrote no report: how Slurm says it ended.
fn task_row(plan: &SweepPlan, pos: usize, job_id: &str, jobs: &[JobStatus]) -> SweepRun {
    let task = pos.to_string();
    let status = jobs
        .iter()
        .find(|j| j.array_task_id.as_deref() == Some(task.as_str()));
    let mut row = not_run(
        plan,
        pos,
        match status {
            Some(j) => format!(
                "Slurm task {job_id}_{pos} ended {} before recording a run (its log: slurm-{job_id}_{pos}.out)",
                crate::ops::slurm_rerun::state_name(&j.state)
            ),
            None => format!("Slurm does not know task {job_id}_{pos}"),
        },
    );
    if let Some(o) = status.and_then(JobStatus::outcome) {
        row.status = o.status.as_str().to_string();
        row.exit = o.wrapper_exit_code().max(1);
    }
    row
}

/// Polls until every task has ended, saying each change of the tasks' states.
fn follow(
    ev: &dyn Events,
    client: &Client,
    job_id: &str,
    interval: Duration,
) -> Result<Vec<JobStatus>, SlurmError> {
    let mut last = String::new();
    client.wait(job_id, interval, None, |jobs| {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for j in jobs {
            *counts
                .entry(crate::ops::slurm_rerun::state_name(&j.state))
                .or_default() += 1;
        }
        let now = counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        if now != last {
            ev.status(&format!("Slurm {job_id}: {now}"));
            last = now;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_list_the_tasks_and_the_throttle() {
        assert_eq!(array_spec(&[0, 1, 2], None), "0,1,2");
        assert_eq!(array_spec(&[1, 4], Some(2)), "1,4%2");
    }

    #[test]
    fn the_script_quotes_every_word_and_runs_the_member() {
        let req = SlurmSweep {
            db: "/data/my db.sqlite".into(),
            line: crate::ops::sweep::MemberLine::of(
                "/opt/repro".into(),
                &[
                    "repro",
                    "sweep",
                    "--grid",
                    "lr=0.1,0.2",
                    "--",
                    "sh",
                    "-c",
                    "echo 'x' $HOME {lr}",
                ]
                .map(OsString::from),
            ),
            ..Default::default()
        };
        let s = render("01abc", Path::new("/w d"), Path::new("/j"), &req).unwrap();
        assert!(s.contains("cd -- '/w d' || exit 1\n"), "{s}");
        assert!(s.contains("export REPRO_DB='/data/my db.sqlite'\n"), "{s}");
        assert!(
            s.contains("exec /opt/repro sweep --sweep-member 01abc:\"$task\":\"$report\" --grid 'lr=0.1,0.2' -- sh -c 'echo '\\''x'\\'' $HOME {lr}'\n"),
            "{s}"
        );
        assert!(s.contains("report=/j/reports/\"$task\".json\n"), "{s}");
    }
}
