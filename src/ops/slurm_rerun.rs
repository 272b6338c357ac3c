//! `repro rerun ID --on slurm`: the Slurm script of the run (the same engine plan as `repro run`
//! and the bash script) submitted with `sbatch` and recorded as a new run linked to the original
//! with the job id (`submit`); then asked about (`poll`), or followed until the job ends
//! (`squeue`, then `sacct`, then `sacct -c`), and finished with the job's outcome and output hashes.
//!
//! The job directory (`dir`) holds the script (`rerun.sbatch`), Slurm's log and the checkout
//! (`code/`); it must be on a filesystem the compute nodes see (the submit directory usually is).
//! A submitted re-run stays `running` with its job id until `poll` (CLI: `--wait`, or later
//! `repro rerun NEW_ID --poll`) sees the job ended and records the outcome, its metrics (the
//! job's `REPRO_METRICS` file, `metrics.jsonl` in the job directory, and `--metrics` paths) and
//! the checks against the original (outputs and metrics, as a local re-run has them).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capture::host;
use crate::capture::image::registry::RegistryOptions;
use crate::exec::which;
use crate::ops::channels::{Channels, OUTPUTS_VAR, PARAMS_VAR};
use crate::ops::rerun::{new_run, require_empty, rerun_mode, Checks, RerunError, Tolerance};
use crate::ops::run::keep_outputs;
use crate::ops::Events;
use crate::record::scheduler::{SchedulerContext, SlurmContext};
use crate::record::{ExecMode, Run, Status};
use crate::script::slurm::Runtime;
use crate::script::{RenderError, ScriptOptions, Target};
use crate::slurm::{Client, JobState, JobStatus, Outcome, SlurmError, Submit};
use crate::store::{Finish, Store, StoreError};

/// Why a Slurm re-run could not be submitted, followed or recorded.
#[derive(Debug, thiserror::Error)]
pub enum SlurmRerunError {
    /// What a local re-run refuses too (an unpinned image, a used job directory, …).
    #[error(transparent)]
    Rerun(Box<RerunError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    /// The Slurm script cannot be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The job directory cannot be made or written.
    #[error("cannot {what} in {}: {reason}", dir.display())]
    JobDir {
        what: &'static str,
        dir: PathBuf,
        reason: String,
    },
    /// The submitted job could not be recorded (it was cancelled).
    #[error("{source}")]
    Unrecorded {
        job_id: String,
        source: Box<StoreError>,
    },
    /// Another process recorded the outcome while this one waited.
    #[error("run {run_id} was finished ({status}) by someone else while this one waited")]
    FinishedElsewhere { run_id: String, status: Status },
    /// `--wait` returned while the job was still active.
    #[error("Slurm job {job_id} is still active after the wait")]
    StillActive { job_id: String },
    /// The job has not ended.
    #[error("Slurm job of run {id} has not ended")]
    NotEnded { id: String },
    /// The run is not a re-run submitted to Slurm.
    #[error("run {id} was not submitted to Slurm by `repro rerun --on slurm`")]
    NotSubmitted { id: String },
}

impl From<RerunError> for SlurmRerunError {
    fn from(e: RerunError) -> Self {
        SlurmRerunError::Rerun(Box::new(e))
    }
}

impl crate::error::Hinted for SlurmRerunError {
    fn hint(&self) -> Option<String> {
        match self {
            SlurmRerunError::Rerun(e) => e.hint(),
            SlurmRerunError::Store(e) => e.hint(),
            SlurmRerunError::Slurm(e) => e.hint(),
            SlurmRerunError::Render(e) => e.hint(),
            SlurmRerunError::JobDir { .. } => Some(
                "give --checkout a writable directory on a filesystem the compute nodes see".into(),
            ),
            SlurmRerunError::Unrecorded { job_id, .. } => Some(format!(
                "Slurm job {job_id} was cancelled because the re-run could not be recorded"
            )),
            SlurmRerunError::NotSubmitted { .. } => {
                Some("give the id of the re-run that `repro rerun ID --on slurm` printed".into())
            }
            _ => None,
        }
    }
}

/// The script's file name in the job directory.
pub const SCRIPT_FILE: &str = "rerun.sbatch";
/// The checkout's directory name in the job directory.
pub const CODE_DIR: &str = "code";
/// The job's `REPRO_METRICS` file in the job directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The job's `REPRO_PARAMS` and `REPRO_OUTPUTS` files, in this directory of the job directory.
pub const CHANNELS_DIR: &str = "channels";
/// How often `--wait` asks Slurm.
pub const INTERVAL: Duration = Duration::from_secs(1);

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
    /// Follow the job until it ends and record its outcome.
    pub wait: bool,
    /// What to do when the job ends (`wait`).
    pub end: EndOptions,
}

/// What is done when a followed job has ended: read metrics, compare, push.
#[derive(Debug, Clone, Default)]
pub struct EndOptions {
    /// `--metrics` paths, relative to the re-run's working directory in the job directory.
    pub metrics: Vec<PathBuf>,
    /// How close each metric must come to the original's.
    pub tolerance: Tolerance,
    /// Push the re-run to MLflow once it has ended.
    pub mlflow: Option<crate::ops::mlflow::AfterRun>,
    /// Whether the re-run's outputs are kept in the object store.
    pub keep_outputs: crate::store::kept::KeepPolicy,
}

/// What `poll` asks about.
#[derive(Debug, Clone, Default)]
pub struct PollRequest {
    /// The re-run's id (the new run).
    pub id: String,
    /// Follow the job until it ends.
    pub wait: bool,
    /// The job directory, where outputs are hashed and metrics read (none: nothing compared).
    pub dir: Option<PathBuf>,
    pub client: Client,
    pub end: EndOptions,
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
    /// The original's outputs and metrics compared with the new ones (empty when the job
    /// directory was not given).
    pub checks: Checks,
    /// Whether the checks could be made (the job directory was given).
    pub checked: bool,
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
pub fn submit(
    ev: &dyn Events,
    store: &mut Store,
    req: &SlurmRerunRequest,
) -> Result<Submitted, SlurmRerunError> {
    let orig = store.get_run(&req.id)?;
    let mode = rerun_mode(&orig, req.host)?;
    let runtime =
        (mode == ExecMode::Container).then(|| req.runtime.unwrap_or_else(default_runtime));

    let mut exec = orig.exec.clone();
    exec.mode = mode;
    exec.engine = runtime.map(|r| runtime_name(r).to_string());
    if mode == ExecMode::Host {
        exec.workdir = None;
    }
    // The script re-runs the original with the engine the job will use, from the one engine
    // plan (the registry access the run recorded, plus the options given now), rendered by the
    // function `repro script --target slurm` calls.
    let script_run = Run {
        exec: exec.clone(),
        ..orig.clone()
    };
    let script = crate::script::render(
        &script_run,
        &ScriptOptions {
            target: Target::Slurm,
            engine: Some(crate::exec::Engine::Podman),
            registry: req.registry.clone(),
            runtime: runtime.unwrap_or_default(),
            git_image: None,
            fallback: match &orig.image {
                Some(img) => crate::ops::archive::recorded_fallback(store, img)?,
                None => None,
            },
            python_env: None,
        },
    )?;
    exec.registry = crate::ops::rerun::registry_access(&orig, &req.registry);

    // The new run: the original's provenance, no wrapper process (the job runs elsewhere).
    let mut run = new_run(&orig, exec);
    run.pid = None;
    run.pid_start = None;
    run.pid_ns = None;
    run.boot_id = None;

    let dir = match &req.dir {
        Some(d) => {
            require_empty(d)?;
            d.clone()
        }
        None => PathBuf::from(format!("repro-slurm-{}", run.short_id())),
    };
    let cant = |what: &'static str, e: std::io::Error| SlurmRerunError::JobDir {
        what,
        dir: dir.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| cant("create the job directory", e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| cant("resolve the job directory", e))?;
    let file = dir.join(SCRIPT_FILE);
    std::fs::write(&file, &script).map_err(|e| cant("write the script", e))?;
    let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755));
    // The job reports metrics as under `repro run`: REPRO_RUN_ID and REPRO_METRICS, a file in
    // the job directory (sbatch exports them; the user's own --export comes later and wins).
    let mut sbatch_args = metrics_export(ev, &run.id, &dir);
    sbatch_args.extend(req.sbatch_args.iter().cloned());

    let job_id = req.client.submit(&Submit {
        script,
        sbatch_args,
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
        return Err(SlurmRerunError::Unrecorded {
            job_id,
            source: Box::new(e),
        });
    }
    Ok(Submitted {
        run_id: run.id,
        job_id,
        dir,
        runtime,
    })
}

/// `--export=ALL,REPRO_RUN_ID=…,REPRO_METRICS=DIR/metrics.jsonl,REPRO_PARAMS=…,REPRO_OUTPUTS=…`
/// for sbatch: the job reports metrics, params and outputs as under `repro run`, through files
/// created now in the job directory (a podman job mounts them; the script sets `REPRO_WORKDIR`).
/// What cannot be created is left out with a warning.
fn metrics_export(ev: &dyn Events, run_id: &str, dir: &Path) -> Vec<OsString> {
    use std::os::unix::fs::OpenOptionsExt;
    // sbatch splits --export on commas.
    let text = dir.to_string_lossy();
    if text.contains(',') || text.contains('\n') {
        ev.warn(&format!(
            "the job directory {} has a comma in its path: the job's metrics, params and outputs (REPRO_METRICS, REPRO_PARAMS, REPRO_OUTPUTS) are not collected",
            dir.display()
        ));
        return Vec::new();
    }
    let mut pairs = Vec::new();
    let file = dir.join(METRICS_FILE);
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file);
    match made {
        Ok(_) => {
            pairs.push(format!("{}={run_id}", crate::ops::metrics::RUN_ID_VAR));
            pairs.push(format!(
                "{}={}",
                crate::ops::metrics::METRICS_VAR,
                file.to_string_lossy()
            ));
        }
        Err(e) => ev.warn(&format!(
            "cannot create {} ({e}): the job's metrics (REPRO_METRICS) are not collected",
            file.display()
        )),
    }
    match Channels::create(&dir.join(CHANNELS_DIR)) {
        Ok(c) => {
            let (params, outputs) = c.files();
            pairs.push(format!("{PARAMS_VAR}={}", params.to_string_lossy()));
            pairs.push(format!("{OUTPUTS_VAR}={}", outputs.to_string_lossy()));
        }
        Err(e) => ev.warn(&format!(
            "cannot create {} ({e}): the job's params and outputs (REPRO_PARAMS, REPRO_OUTPUTS) are not collected",
            dir.join(CHANNELS_DIR).display()
        )),
    }
    if pairs.is_empty() {
        return Vec::new();
    }
    vec![OsString::from(format!("--export=ALL,{}", pairs.join(",")))]
}

/// What `rerun` did.
#[derive(Debug)]
pub enum SlurmRerun {
    /// Submitted and recorded `running` (follow it with `poll`).
    Submitted(Submitted),
    /// Submitted, followed (`wait`) and finished with the job's outcome.
    Ended(Submitted, JobEnd),
}

/// `repro rerun ID --on slurm`: `submit` (calling `submitted` as soon as the job is queued),
/// then with `wait`, follows the job (`poll`) until it ends and records it.
pub fn rerun(
    ev: &dyn Events,
    store: &mut Store,
    req: &SlurmRerunRequest,
    submitted: &mut dyn FnMut(&Submitted),
) -> Result<SlurmRerun, SlurmRerunError> {
    let sub = submit(ev, store, req)?;
    submitted(&sub);
    if !req.wait {
        return Ok(SlurmRerun::Submitted(sub));
    }
    let polled = poll(
        ev,
        store,
        &PollRequest {
            id: sub.run_id.clone(),
            wait: true,
            dir: Some(sub.dir.clone()),
            client: req.client.clone(),
            end: req.end.clone(),
        },
    )?;
    match polled {
        Polled::Ended(end) => Ok(SlurmRerun::Ended(sub, end)),
        Polled::AlreadyFinished(status) => Err(SlurmRerunError::FinishedElsewhere {
            run_id: sub.run_id,
            status,
        }),
        Polled::Active(_) => Err(SlurmRerunError::StillActive { job_id: sub.job_id }),
    }
}

/// Polls until every task has ended, reporting each change of state.
fn follow(
    ev: &dyn Events,
    client: &Client,
    job_id: &str,
    interval: Duration,
) -> Result<Vec<JobStatus>, SlurmError> {
    let mut last = String::new();
    let jobs = client.wait(job_id, interval, None, |jobs| {
        let states: Vec<String> = jobs
            .iter()
            .map(|j| match j.restarts {
                Some(n) if n > 0 => format!(
                    "{} {} (requeued {})",
                    j.display_id(),
                    state_name(&j.state),
                    times(n)
                ),
                _ => format!("{} {}", j.display_id(), state_name(&j.state)),
            })
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

fn times(n: u32) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// The note a re-run gets when Slurm requeued its job (node failure, preemption, `scontrol
/// requeue`): how often, and where the earlier attempts are; `None` when it was not requeued
/// (or the accounting Slurm answered from does not say).
pub fn requeue_note(jobs: &[JobStatus]) -> Option<String> {
    let requeued: Vec<(String, u32)> = jobs
        .iter()
        .filter_map(|j| j.restarts.filter(|n| *n > 0).map(|n| (j.display_id(), n)))
        .collect();
    let last = requeued.iter().map(|(_, n)| *n).max()?;
    let which: Vec<String> = requeued
        .iter()
        .map(|(id, n)| format!("job {id} {}", times(*n)))
        .collect();
    Some(format!(
        "Slurm requeued {} (node failure, preemption or `scontrol requeue`): the outcome is that of \
         the last attempt ({}); every attempt wrote to the job's log, and the checkout an earlier \
         attempt left is kept beside `{CODE_DIR}/` as `{CODE_DIR}.attempt-N`",
        which.join(", "),
        if requeued.len() == 1 {
            format!("attempt {}", last + 1)
        } else {
            "of each task".to_string()
        }
    ))
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
    req: &PollRequest,
) -> Result<JobEnd, SlurmRerunError> {
    let outcome =
        combined_outcome(&jobs).ok_or_else(|| SlurmRerunError::NotEnded { id: run.id.clone() })?;
    // What the job sent through REPRO_PARAMS and REPRO_OUTPUTS (read once: the files go).
    let sent = match &req.dir {
        Some(dir) if dir.join(CHANNELS_DIR).is_dir() => Channels {
            dir: dir.join(CHANNELS_DIR),
        }
        .collect(ev),
        _ => Default::default(),
    };
    // The original's outputs, then those the job declared (`repro.output`), without repeats.
    let mut paths: Vec<String> = orig.outputs.iter().map(|o| o.path.clone()).collect();
    for p in sent.outputs {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    // Held until the outcome naming the kept objects is recorded (see `keep_lock`).
    let keeping = crate::ops::run::keep_lock(ev, store, &paths, &req.end.keep_outputs);
    let outputs = match outputs_dir {
        Some(d) if !paths.is_empty() => keep_outputs(ev, store, &paths, d, &req.end.keep_outputs),
        _ => (Vec::new(), Vec::new()),
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
        outputs: outputs.0.clone(),
        output_files: outputs.1,
    };
    let finished_now = store
        .finish_durably(run, &fin, crate::store::FINISH_BUDGET, &mut |e| {
            ev.warn(&format!("{e}; retrying to record the outcome"))
        })?
        .finished_now();
    drop(keeping);
    let requeued = requeue_note(&jobs);
    if let Some(note) = &requeued {
        ev.status(note);
    }
    if finished_now {
        crate::ops::run::record_job_params(ev, store, run, sent.params);
        if let Some(reason) = &outcome.reason {
            store.add_note(&run.id, reason)?;
        }
        if let Some(note) = &requeued {
            store.add_note(&run.id, note)?;
        }
    }
    let checks = match (outputs_dir, &req.dir) {
        (Some(cwd), Some(dir)) => {
            if finished_now {
                let file = dir.join(METRICS_FILE);
                let file = file.exists().then_some(file);
                crate::ops::metrics::collect(
                    ev,
                    store,
                    &run.id,
                    file.as_deref(),
                    &req.end.metrics,
                    cwd,
                );
            }
            Some(Checks::of(
                store,
                orig,
                &run.id,
                Some(&outputs.0),
                req.end.tolerance,
            )?)
        }
        _ => None,
    };
    if let (true, Some(m)) = (finished_now, &req.end.mlflow) {
        crate::ops::mlflow::after_run(ev, store, &run.id, m);
    }
    Ok(JobEnd {
        outcome,
        jobs,
        checked: checks.is_some(),
        checks: checks.unwrap_or_default(),
    })
}

impl JobEnd {
    /// repro's exit code: the job's (`Outcome::wrapper_exit_code`), or 1 under `check` when it
    /// succeeded but an output or a metric differs from the original's.
    pub fn exit_code(&self, check: bool) -> i32 {
        self.checks
            .exit_code(self.outcome.wrapper_exit_code(), check)
    }
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

/// Asks Slurm about a submitted re-run (`req.id`: the new run) and records its outcome once
/// the job has ended; with `wait`, follows it until then. Outputs are hashed, and metrics read,
/// in the job directory when `dir` names it.
pub fn poll(
    ev: &dyn Events,
    store: &mut Store,
    req: &PollRequest,
) -> Result<Polled, SlurmRerunError> {
    let run = store.get_run(&req.id)?;
    let job_id = run
        .scheduler
        .as_ref()
        .and_then(|s| s.slurm.as_ref())
        .map(|s| s.job_id.clone())
        .filter(|_| run.pid.is_none())
        .ok_or_else(|| SlurmRerunError::NotSubmitted { id: run.id.clone() })?;
    if run.status != Status::Running {
        return Ok(Polled::AlreadyFinished(run.status));
    }
    let jobs = if req.wait {
        follow(ev, &req.client, &job_id, INTERVAL)?
    } else {
        req.client.poll(&job_id)?
    };
    if !jobs.iter().all(|j| j.state.is_final()) {
        return Ok(Polled::Active(jobs));
    }
    let orig = match &run.rerun_of {
        Some(o) => store.get_run(o)?,
        None => run.clone(),
    };
    let outputs_dir = req.dir.as_ref().map(|d| match &orig.code {
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
        req,
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
            restarts: None,
        }
    }

    #[test]
    fn a_requeued_job_gets_a_note_naming_the_restarts() {
        let mut j = job(JobState::Completed, 0);
        assert_eq!(requeue_note(std::slice::from_ref(&j)), None);
        j.restarts = Some(0);
        assert_eq!(requeue_note(std::slice::from_ref(&j)), None);
        j.restarts = Some(2);
        let note = requeue_note(&[j]).unwrap();
        assert!(note.starts_with("Slurm requeued job 1 twice"), "{note}");
        assert!(note.contains("(attempt 3)"), "{note}");
        assert!(note.contains("code.attempt-N"), "{note}");
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
