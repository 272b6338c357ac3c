//! `repro rerun ID --on slurm`: the Slurm script of the run (the same engine plan as `repro run`
//! and the bash script) submitted with `sbatch` and recorded as a new run linked to the original
//! with the job id (`submit`); then asked about (`poll`), or followed until the job ends
//! (`squeue`, then `sacct`, then `sacct -c`), and finished with the job's outcome and output hashes.
//!
//! The job directory (`dir`) holds the script (`rerun.sbatch`), Slurm's log and the checkout
//! (`code/`); it must be on a filesystem the compute nodes see (the submit directory usually is).
//! A submitted re-run stays `running` with its job id until `poll` (CLI: `--wait`, or later
//! `repro rerun NEW_ID --poll`) sees the job ended and records the outcome.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capture::host;
use crate::capture::image::registry::RegistryOptions;
use crate::capture::scheduler::{SchedulerContext, SlurmContext};
use crate::error::{CliError, CliResult};
use crate::ops::rerun::{compare_outputs, OutputCheck};
use crate::ops::run::{hash_outputs, registry_flags, which};
use crate::ops::slurm::{Client, JobState, JobStatus, Outcome, Submit};
use crate::ops::Events;
use crate::record::{ExecMode, Run, Status};
use crate::rerun::slurm::{render, Runtime, SlurmOptions};
use crate::store::{Finish, Store};

/// The script's file name in the job directory.
pub const SCRIPT_FILE: &str = "rerun.sbatch";
/// The checkout's directory name in the job directory.
pub const CODE_DIR: &str = "code";

/// What to submit and how.
#[derive(Debug, Clone, Default)]
pub struct SlurmRerunRequest {
    /// The original run's id (resolved).
    pub id: String,
    /// Run on the host instead of in the pinned container.
    pub host: bool,
    /// Container runtime in the job (default: apptainer when this host has it, else podman).
    pub runtime: Option<Runtime>,
    /// Extra `sbatch` arguments, verbatim.
    pub sbatch_args: Vec<OsString>,
    /// The job directory (empty or missing); default `./repro-slurm-<new id, 12 chars>`.
    pub dir: Option<PathBuf>,
    /// Registry options of the pull (podman runtime).
    pub registry: RegistryOptions,
    /// The Slurm client (its slurm.conf).
    pub client: Client,
}

/// A submitted re-run.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The new run's id.
    pub run_id: String,
    pub job_id: String,
    pub dir: PathBuf,
    pub runtime: Option<Runtime>,
}

/// How a followed job ended (see `poll`).
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub outcome: Outcome,
    /// Every task's final state (one for a plain job).
    pub jobs: Vec<JobStatus>,
    /// The original's outputs compared with the new ones (empty when they cannot be seen here).
    pub outputs: Vec<OutputCheck>,
}

fn default_runtime() -> Runtime {
    if which("apptainer").is_some() {
        Runtime::Apptainer
    } else {
        Runtime::Podman
    }
}

fn runtime_name(r: Runtime) -> &'static str {
    match r {
        Runtime::Apptainer => "apptainer",
        Runtime::Podman => "podman",
    }
}

/// Renders, submits and records the re-run (`running`, with the job id). Follow it with
/// `poll`, which records the outcome once the job has ended.
pub fn submit(ev: &dyn Events, store: &mut Store, req: &SlurmRerunRequest) -> CliResult<Submitted> {
    let orig = store.get_run(&req.id)?;
    let mode = if req.host || orig.image.is_none() {
        ExecMode::Host
    } else {
        orig.exec.mode
    };
    if mode == ExecMode::Container {
        if let Some(img) = orig.image.as_ref().filter(|i| i.digest.is_none()) {
            return Err(CliError::user(format!(
                "run {} has no image digest ({} was recorded unpinned); it cannot be re-run pinned",
                orig.id, img.reference
            ))
            .hint("re-run it on the host with --host, or run it anew with a pinned image"));
        }
    }
    let runtime =
        (mode == ExecMode::Container).then(|| req.runtime.unwrap_or_else(default_runtime));

    let mut exec = orig.exec.clone();
    exec.mode = mode;
    exec.engine = runtime.map(|r| runtime_name(r).to_string());
    if mode == ExecMode::Host {
        exec.workdir = None;
    }
    // The script re-runs the original with the engine the job will use.
    let script_run = Run {
        exec: exec.clone(),
        ..orig.clone()
    };
    let registry = orig
        .image
        .as_ref()
        .map(|i| registry_flags(i, &req.registry))
        .unwrap_or_default();
    let ca_pem = match &req.registry.ca_cert {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            CliError::user(format!(
                "cannot read the CA certificate {}: {e}",
                p.display()
            ))
            .hint("give --ca-cert a PEM file")
        })?),
        None => None,
    };
    let script = render(
        &script_run,
        &SlurmOptions {
            runtime: runtime.unwrap_or_default(),
            engine: crate::rerun::bash::BashOptions {
                engine: Some(crate::exec::Engine::Podman),
                registry,
                ca_pem,
                fallback: match &orig.image {
                    Some(img) => crate::ops::archive::recorded_fallback(store, img)?,
                    None => None,
                },
            },
        },
    )?;

    // The new run: the original's provenance, no wrapper process (the job runs elsewhere).
    let mut run = Run {
        name: orig.name.clone(),
        image: orig.image.clone(),
        code: orig.code.clone(),
        datasets: orig.datasets.clone(),
        params: orig.params.clone(),
        tags: orig.tags.clone(),
        env: orig.env.clone(),
        rerun_of: Some(orig.id.clone()),
        ..Run::start(orig.command.clone(), orig.cwd.clone(), exec)
    };
    run.pid = None;
    run.pid_start = None;
    run.pid_ns = None;
    run.boot_id = None;

    let dir = match &req.dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(d)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(true)
            {
                return Err(CliError::user(format!("{} is not empty", d.display()))
                    .hint("give --checkout an empty or missing directory"));
            }
            d.clone()
        }
        None => PathBuf::from(format!("repro-slurm-{}", run.short_id())),
    };
    let cant = |what: &str, e: std::io::Error| {
        CliError::user(format!("cannot {what} in {}: {e}", dir.display()))
            .hint("give --checkout a writable directory on a filesystem the compute nodes see")
    };
    std::fs::create_dir_all(&dir).map_err(|e| cant("create the job directory", e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| cant("resolve the job directory", e))?;
    let file = dir.join(SCRIPT_FILE);
    std::fs::write(&file, &script).map_err(|e| cant("write the script", e))?;
    let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755));

    let job_id = req.client.submit(&Submit {
        script,
        sbatch_args: req.sbatch_args.clone(),
        workdir: Some(dir.clone()),
        script_file: Some(file),
        script_args: vec![dir.join(CODE_DIR).into_os_string()],
    })?;
    ev.status(&format!(
        "submitted Slurm job {job_id} (script and log in {})",
        dir.display()
    ));
    run.scheduler = Some(SchedulerContext {
        slurm: Some(SlurmContext {
            job_id: job_id.clone(),
            ..Default::default()
        }),
        kubernetes: None,
    });
    if let Err(e) = store.insert_run(&run) {
        // An unrecorded job would run unseen: cancel it.
        let _ = req.client.cancel(&job_id);
        return Err(CliError::from(e).hint(format!(
            "Slurm job {job_id} was cancelled because the re-run could not be recorded"
        )));
    }
    Ok(Submitted {
        run_id: run.id,
        job_id,
        dir,
        runtime,
    })
}

/// Polls until every task has ended, reporting each change of state.
fn follow(
    ev: &dyn Events,
    client: &Client,
    job_id: &str,
    interval: Duration,
) -> CliResult<Vec<JobStatus>> {
    let mut last = String::new();
    let jobs = client.wait(job_id, interval, None, |jobs| {
        let states: Vec<String> = jobs
            .iter()
            .map(|j| format!("{} {}", j.display_id(), state_name(&j.state)))
            .collect();
        let now = states.join(", ");
        if now != last {
            ev.status(&format!("Slurm: {now}"));
            last = now;
        }
    })?;
    Ok(jobs)
}

/// Slurm's name of a state (`PENDING`, `RUNNING`, …).
pub fn state_name(s: &JobState) -> String {
    match s {
        JobState::OtherActive(w) | JobState::Unknown(w) => w.clone(),
        other => format!("{other:?}")
            .chars()
            .flat_map(|c| {
                if c.is_ascii_uppercase() {
                    vec!['_', c]
                } else {
                    vec![c.to_ascii_uppercase()]
                }
            })
            .collect::<String>()
            .trim_start_matches('_')
            .to_string(),
    }
}

/// The run's outcome from its tasks: the first task that did not succeed, else success.
pub fn combined_outcome(jobs: &[JobStatus]) -> Option<Outcome> {
    let outcomes: Vec<Outcome> = jobs.iter().filter_map(JobStatus::outcome).collect();
    if outcomes.len() != jobs.len() || outcomes.is_empty() {
        return None;
    }
    outcomes
        .iter()
        .find(|o| o.status != Status::Succeeded)
        .or(outcomes.first())
        .cloned()
}

fn record_end(
    ev: &dyn Events,
    store: &mut Store,
    run: &Run,
    orig: &Run,
    jobs: Vec<JobStatus>,
    outputs_dir: Option<&Path>,
) -> CliResult<JobEnd> {
    let outcome = combined_outcome(&jobs)
        .ok_or_else(|| CliError::user(format!("Slurm job of run {} has not ended", run.id)))?;
    let paths: Vec<String> = orig.outputs.iter().map(|o| o.path.clone()).collect();
    let outputs = match outputs_dir {
        Some(d) if !paths.is_empty() => hash_outputs(ev, &paths, d),
        _ => Vec::new(),
    };
    let ended = host::now();
    let started = chrono::DateTime::parse_from_rfc3339(&run.started_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or(ended);
    let fin = Finish {
        status: outcome.status,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        ended_at: host::rfc3339(ended),
        duration_ms: (ended - started).num_milliseconds().max(0),
        outputs: outputs.clone(),
    };
    if store.finish_run(&run.id, &fin)? {
        if let Some(reason) = &outcome.reason {
            store.add_note(&run.id, reason)?;
        }
    }
    let checks = if outputs_dir.is_some() {
        compare_outputs(&orig.outputs, &outputs)
    } else {
        Vec::new()
    };
    Ok(JobEnd {
        outcome,
        jobs,
        outputs: checks,
    })
}

/// What `poll` found.
#[derive(Debug)]
pub enum Polled {
    /// The job has not ended: every task's state.
    Active(Vec<JobStatus>),
    /// The job ended and the run was finished with this outcome.
    Ended(JobEnd),
    /// The run is not `running` (already finished): nothing to do.
    AlreadyFinished(Status),
}

/// Asks Slurm about a submitted re-run (`id`: the new run) and records its outcome once the
/// job has ended; with `wait`, follows it until then. Outputs are hashed in the job directory
/// when `dir` names it.
pub fn poll(
    ev: &dyn Events,
    store: &mut Store,
    client: &Client,
    id: &str,
    wait: Option<Duration>,
    dir: Option<&Path>,
) -> CliResult<Polled> {
    let run = store.get_run(id)?;
    let job_id = run
        .scheduler
        .as_ref()
        .and_then(|s| s.slurm.as_ref())
        .map(|s| s.job_id.clone())
        .filter(|_| run.pid.is_none())
        .ok_or_else(|| {
            CliError::user(format!(
                "run {} was not submitted to Slurm by `repro rerun --on slurm`",
                run.id
            ))
            .hint("give the id of the re-run that `repro rerun ID --on slurm` printed")
        })?;
    if run.status != Status::Running {
        return Ok(Polled::AlreadyFinished(run.status));
    }
    let jobs = match wait {
        Some(interval) => follow(ev, client, &job_id, interval)?,
        None => client.poll(&job_id)?,
    };
    if !jobs.iter().all(|j| j.state.is_final()) {
        return Ok(Polled::Active(jobs));
    }
    let orig = match &run.rerun_of {
        Some(o) => store.get_run(o)?,
        None => run.clone(),
    };
    let outputs_dir = dir.map(|d| match &orig.code {
        Some(_) => d.join(CODE_DIR).join(&orig.cwd),
        None => PathBuf::from(&orig.cwd),
    });
    Ok(Polled::Ended(record_end(
        ev,
        store,
        &run,
        &orig,
        jobs,
        outputs_dir.as_deref(),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_are_slurms() {
        assert_eq!(state_name(&JobState::Pending), "PENDING");
        assert_eq!(state_name(&JobState::OutOfMemory), "OUT_OF_MEMORY");
        assert_eq!(state_name(&JobState::NodeFail), "NODE_FAIL");
        assert_eq!(
            state_name(&JobState::OtherActive("STOPPED".into())),
            "STOPPED"
        );
    }

    fn job(state: JobState, code: i32) -> JobStatus {
        JobStatus {
            job_id: "1".into(),
            array_job_id: None,
            array_task_id: None,
            state,
            exit_code: code,
            signal: 0,
            reason: None,
        }
    }

    #[test]
    fn the_first_task_that_did_not_succeed_decides() {
        let jobs = vec![
            job(JobState::Completed, 0),
            job(JobState::Failed, 2),
            job(JobState::Failed, 3),
        ];
        let o = combined_outcome(&jobs).unwrap();
        assert_eq!((o.status, o.exit_code), (Status::Failed, Some(2)));
        let o = combined_outcome(&[job(JobState::Completed, 0)]).unwrap();
        assert_eq!(o.status, Status::Succeeded);
        assert!(
            combined_outcome(&[job(JobState::Completed, 0), job(JobState::Running, 0)]).is_none()
        );
        assert!(combined_outcome(&[]).is_none());
    }
}
