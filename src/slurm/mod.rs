//! Slurm jobs seen from outside: submit a batch script (`sbatch --parsable`), follow it (`squeue`
//! while the controller remembers the job, then `sacct`, then `sacct -c` from the job completion
//! log), cancel it (`scancel`), and map its final state to a repro status and exit code.
//!
//! `sbatch --wait` is not used to follow jobs: it polls the controller every 10 seconds. Callers
//! poll with `Client::poll` at their own pace (`Client::wait` does it every second).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::Hinted;
use crate::record::Status;

/// Errors talking to Slurm; each names the command or job involved.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` failed ({status}): {stderr}")]
    Command {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("`sbatch --parsable` answered {output:?}, not a job id")]
    BadSubmitOutput { output: String },
    #[error("Slurm knows no job {job_id} (not in squeue, sacct, or the job completion log)")]
    UnknownJob { job_id: String },
    #[error("job {job_id} did not finish within {waited:?}")]
    Timeout { job_id: String, waited: Duration },
}

impl Hinted for SlurmError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            SlurmError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "run this on a node with Slurm's client commands (a login node), or install them (Debian: slurm-client)".into()
            }
            SlurmError::Spawn { .. } => return None,
            SlurmError::Command { .. } => {
                "check that the controller answers (`sinfo`) and that SLURM_CONF points at this cluster's slurm.conf".into()
            }
            SlurmError::BadSubmitOutput { .. } => return None,
            SlurmError::UnknownJob { .. } => {
                "the controller forgets finished jobs after MinJobAge (300 s by default); keep accounting (slurmdbd) or JobCompType=jobcomp/filetxt to look them up later".into()
            }
            SlurmError::Timeout { job_id, .. } => {
                format!("the job keeps running; follow it with `squeue -j {job_id}` or cancel it with `scancel {job_id}`")
            }
        })
    }
}

/// A Slurm job state (the `State` column of squeue and sacct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Configuring,
    Completing,
    Suspended,
    Requeued,
    /// Any other non-final state (RESIZING, SIGNALING, STAGE_OUT, STOPPED, REQUEUE_HOLD, …).
    OtherActive(String),
    Completed,
    Failed,
    Cancelled,
    Timeout,
    OutOfMemory,
    NodeFail,
    BootFail,
    Deadline,
    Preempted,
    Revoked,
    SpecialExit,
    /// A state this module does not know; treated as final and mapped to `lost`.
    Unknown(String),
}

impl JobState {
    /// Parses the state column; sacct's "CANCELLED by 1000" counts as CANCELLED, and the
    /// abbreviations of `squeue %t` (CD, F, CA, TO, …) are accepted.
    pub fn parse(s: &str) -> JobState {
        let word = s
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let key = word.trim_end_matches('+');
        if let Some((_, _, state)) = STATE_NAMES
            .iter()
            .find(|(name, abbr, _)| key == *name || key == *abbr)
        {
            return state.clone();
        }
        if OTHER_ACTIVE.contains(&key) {
            JobState::OtherActive(word)
        } else {
            JobState::Unknown(word)
        }
    }

    /// Whether the job has ended for good (no further state change expected).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            JobState::Pending
                | JobState::Running
                | JobState::Configuring
                | JobState::Completing
                | JobState::Suspended
                | JobState::Requeued
                | JobState::OtherActive(_)
        )
    }
}

/// The states `JobState::parse` names: the word of squeue/sacct and the `squeue %t` abbreviation.
const STATE_NAMES: &[(&str, &str, JobState)] = &[
    ("PENDING", "PD", JobState::Pending),
    ("RUNNING", "R", JobState::Running),
    ("CONFIGURING", "CF", JobState::Configuring),
    ("COMPLETING", "CG", JobState::Completing),
    ("SUSPENDED", "S", JobState::Suspended),
    ("REQUEUED", "RQ", JobState::Requeued),
    ("COMPLETED", "CD", JobState::Completed),
    ("FAILED", "F", JobState::Failed),
    ("CANCELLED", "CA", JobState::Cancelled),
    ("TIMEOUT", "TO", JobState::Timeout),
    ("OUT_OF_MEMORY", "OOM", JobState::OutOfMemory),
    ("NODE_FAIL", "NF", JobState::NodeFail),
    ("BOOT_FAIL", "BF", JobState::BootFail),
    ("DEADLINE", "DL", JobState::Deadline),
    ("PREEMPTED", "PR", JobState::Preempted),
    ("REVOKED", "RV", JobState::Revoked),
    ("SPECIAL_EXIT", "SE", JobState::SpecialExit),
];

/// Other states a job leaves again (words and abbreviations): `JobState::OtherActive`.
const OTHER_ACTIVE: &[&str] = &[
    "RESIZING",
    "RS",
    "SIGNALING",
    "SI",
    "STAGE_OUT",
    "SO",
    "STOPPED",
    "ST",
    "REQUEUE_HOLD",
    "RH",
    "REQUEUE_FED",
    "RF",
    "RESV_DEL_HOLD",
    "RD",
];

/// One job (or one array task) as Slurm reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// The raw job id (for an array task, the task's own id).
    pub job_id: String,
    /// The array's id, for array tasks.
    pub array_job_id: Option<String>,
    /// The task index (or a range like `0-9%2` for tasks not started yet).
    pub array_task_id: Option<String>,
    pub state: JobState,
    /// The batch script's exit code (0 when it was killed by a signal).
    pub exit_code: i32,
    /// The signal that ended the batch script, 0 if none.
    pub signal: i32,
    /// Slurm's reason column (squeue), e.g. `TimeLimit`, `NonZeroExitCode`.
    pub reason: Option<String>,
    /// How often Slurm requeued the job (node failure, preemption, `scontrol requeue`): squeue's
    /// `RestartCnt`, or the completion log's earlier rows of the job; `None` when not known
    /// (sacct with slurmdbd lists only the last attempt).
    pub restarts: Option<u32>,
}

impl JobStatus {
    /// `ARRAY_TASK` for an array task, else the raw id.
    pub fn display_id(&self) -> String {
        match (&self.array_job_id, &self.array_task_id) {
            (Some(a), Some(t)) => format!("{a}_{t}"),
            _ => self.job_id.clone(),
        }
    }

    /// The repro outcome of this job, `None` while it has not ended.
    pub fn outcome(&self) -> Option<Outcome> {
        outcome(&self.state, self.exit_code, self.signal)
    }
}

/// What a finished Slurm job means for the run record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// The recorded exit code: the script's for `succeeded`/`failed`, none otherwise.
    pub exit_code: Option<i32>,
    /// The signal that ended the script, when Slurm reports one.
    pub signal: Option<i32>,
    /// Why, in words, when the status alone does not say it (time limit, cancelled, node failure).
    pub reason: Option<String>,
}

impl Outcome {
    /// The exit code a waiting `repro` exits with, as for local runs: the script's code, 128+N
    /// for signal N, and 1 when the job ended without either (cancelled before it started, node
    /// failure).
    pub fn wrapper_exit_code(&self) -> i32 {
        match (self.status, self.exit_code, self.signal) {
            (Status::Succeeded, _, _) => 0,
            (_, Some(code), _) if code != 0 => code,
            (_, _, Some(sig)) if sig > 0 => 128 + sig,
            _ => 1,
        }
    }
}

/// Maps a final Slurm state and the script's exit code/signal to a repro outcome; `None` for a
/// job that has not ended.
///
/// - COMPLETED → succeeded, exit 0.
/// - FAILED → failed with the script's exit code; killed when a signal ended it.
/// - CANCELLED, TIMEOUT, DEADLINE, PREEMPTED, OUT_OF_MEMORY → killed: the scheduler (or a person)
///   stopped the job, the script did not choose to fail. The reason says which.
/// - NODE_FAIL, REVOKED, unknown states → lost: nobody knows how the script ended.
/// - BOOT_FAIL → failed: the script never ran.
/// - SPECIAL_EXIT → failed with the script's code.
pub fn outcome(state: &JobState, exit_code: i32, signal: i32) -> Option<Outcome> {
    if !state.is_final() {
        return None;
    }
    let sig = (signal > 0).then_some(signal);
    let killed = |reason: &str| Outcome {
        status: Status::Killed,
        exit_code: None,
        signal: sig,
        reason: Some(reason.to_string()),
    };
    let lost = |reason: String| Outcome {
        status: Status::Lost,
        exit_code: None,
        signal: None,
        reason: Some(reason),
    };
    Some(match state {
        JobState::Completed => Outcome {
            status: Status::Succeeded,
            exit_code: Some(0),
            signal: None,
            reason: None,
        },
        JobState::Failed | JobState::SpecialExit if sig.is_some() && exit_code == 0 => {
            killed("Slurm: the batch script was killed by a signal")
        }
        JobState::Failed | JobState::SpecialExit => Outcome {
            status: Status::Failed,
            exit_code: (exit_code != 0).then_some(exit_code),
            signal: None,
            reason: Some(if *state == JobState::SpecialExit {
                "Slurm: SPECIAL_EXIT (the job was held for requeue)".into()
            } else if exit_code == 0 {
                "Slurm: FAILED without an exit code (the batch script could not be launched)".into()
            } else {
                format!("Slurm: FAILED, the batch script exited with {exit_code}")
            }),
        },
        JobState::Cancelled => killed("Slurm: CANCELLED (scancel, by the user or an administrator)"),
        JobState::Timeout => killed(
            "Slurm: TIMEOUT, the job reached its time limit (--time) and was sent SIGTERM, then SIGKILL",
        ),
        JobState::Deadline => killed("Slurm: DEADLINE, the job reached its --deadline"),
        JobState::Preempted => killed("Slurm: PREEMPTED by a higher-priority job"),
        JobState::OutOfMemory => killed(
            "Slurm: OUT_OF_MEMORY, the job exceeded its memory limit and was killed",
        ),
        JobState::BootFail => Outcome {
            status: Status::Failed,
            exit_code: None,
            signal: None,
            reason: Some("Slurm: BOOT_FAIL, the node failed to boot; the script never ran".into()),
        },
        JobState::NodeFail => {
            lost("Slurm: NODE_FAIL, the job's node stopped responding; how the script ended is unknown".into())
        }
        JobState::Revoked => {
            lost("Slurm: REVOKED, the job was moved to another cluster of the federation".into())
        }
        JobState::Unknown(s) => lost(format!("Slurm: unknown final state {s:?}")),
        // The active states (`!is_final()`), already answered above.
        _ => return None,
    })
}

/// The `squeue --Format` that `parse_squeue` reads: `|`-terminated fields, reason last.
pub const SQUEUE_FORMAT: &str =
    "JobID:|,ArrayJobID:|,ArrayTaskID:|,State:|,exit_code:|,RestartCnt:|,Reason:|";

/// The `sacct --format` that `parse_sacct` reads (with `--parsable2`).
pub const SACCT_FORMAT: &str = "JobIDRaw,JobID,State,ExitCode";

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "N/A" && s != "(null)").then(|| s.to_string())
}

/// The rows of a `|`-separated listing that have at least `fields` fields, each read by `row`;
/// lines that do not parse are skipped.
fn parse_rows(
    text: &str,
    fields: usize,
    row: impl Fn(&[&str]) -> Option<JobStatus>,
) -> Vec<JobStatus> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            (f.len() >= fields).then(|| row(&f)).flatten()
        })
        .collect()
}

/// Parses `squeue --noheader --Format SQUEUE_FORMAT`; lines that do not parse are skipped.
/// The exit_code column is a wait status (code << 8 | signal).
pub fn parse_squeue(text: &str) -> Vec<JobStatus> {
    parse_rows(text, 7, |f| {
        let wait: i32 = f[4].trim().parse().unwrap_or(0);
        let array_task_id = some(f[2]);
        Some(JobStatus {
            job_id: some(f[0])?,
            array_job_id: array_task_id.as_ref().and_then(|_| some(f[1])),
            array_task_id,
            state: JobState::parse(f[3]),
            exit_code: (wait >> 8) & 0xff,
            signal: wait & 0x7f,
            restarts: f[5].trim().parse().ok(),
            reason: some(f[6]).filter(|r| r != "None"),
        })
    })
}

/// Parses `sacct --noheader --parsable2 --format SACCT_FORMAT` (also with `-c`): ExitCode is
/// `code:signal`; an array task's JobID is `ARRAY_TASK`.
pub fn parse_sacct(text: &str) -> Vec<JobStatus> {
    parse_rows(text, 4, |f| {
        let (array_job_id, array_task_id) = match f[1].split_once('_') {
            Some((a, t)) => (some(a), some(t)),
            None => (None, None),
        };
        let (code, sig) = f[3].split_once(':').unwrap_or((f[3], "0"));
        Some(JobStatus {
            job_id: some(f[0])?,
            array_job_id,
            array_task_id,
            state: JobState::parse(f[2]),
            exit_code: code.trim().parse().unwrap_or(0),
            signal: sig.trim().parse().unwrap_or(0),
            reason: None,
            restarts: None,
        })
    })
}

/// One row per job from accounting rows: the completion log (`sacct -c`) writes a row each time
/// the job ends, a requeue included (state PENDING or REQUEUED), so a requeued job has several
/// rows under one raw id. The last row is the job's state; the rows before it are its restarts.
pub fn last_attempts(rows: Vec<JobStatus>) -> Vec<JobStatus> {
    let mut out: Vec<JobStatus> = Vec::new();
    for row in rows {
        match out.iter_mut().find(|j| j.job_id == row.job_id) {
            Some(seen) => {
                let restarts = seen.restarts.unwrap_or(0) + 1;
                *seen = JobStatus {
                    restarts: Some(restarts),
                    ..row
                };
            }
            None => out.push(row),
        }
    }
    out
}

/// Parses the answer of `sbatch --parsable`: `JOBID` or `JOBID;CLUSTER`.
pub fn parse_submit(output: &str) -> Result<String, SlurmError> {
    let first = output.trim().split(';').next().unwrap_or("").trim();
    if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) {
        Ok(first.to_string())
    } else {
        Err(SlurmError::BadSubmitOutput {
            output: output.trim().to_string(),
        })
    }
}

/// What to submit: the batch script's text (given to `sbatch` on stdin), extra `sbatch`
/// arguments, and the directory to submit from (the job's working directory).
#[derive(Debug, Clone, Default)]
pub struct Submit {
    pub script: String,
    pub sbatch_args: Vec<OsString>,
    pub workdir: Option<PathBuf>,
    /// Submit this file (which holds `script`) instead of giving the text on stdin: `sbatch`
    /// passes `script_args` to a script file only.
    pub script_file: Option<PathBuf>,
    /// Arguments of the batch script (`$1`, …); needs `script_file`.
    pub script_args: Vec<OsString>,
}

/// Runs Slurm's client commands, optionally against a given slurm.conf (`SLURM_CONF`).
#[derive(Debug, Clone, Default)]
pub struct Client {
    conf: Option<PathBuf>,
}

impl Client {
    /// A client using the environment's Slurm configuration.
    pub fn new() -> Client {
        Client::default()
    }

    /// A client for the cluster configured by `slurm_conf`.
    pub fn with_conf(slurm_conf: impl Into<PathBuf>) -> Client {
        Client {
            conf: Some(slurm_conf.into()),
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        if let Some(conf) = &self.conf {
            c.env("SLURM_CONF", conf);
        }
        c.stdin(Stdio::null());
        c
    }

    fn output(&self, mut cmd: Command, program: &str) -> Result<std::process::Output, SlurmError> {
        cmd.output().map_err(|source| SlurmError::Spawn {
            program: program.to_string(),
            source,
        })
    }

    /// Submits a batch script with `sbatch --parsable` and returns the job id.
    pub fn submit(&self, req: &Submit) -> Result<String, SlurmError> {
        let mut cmd = self.command("sbatch");
        cmd.arg("--parsable")
            .args(&req.sbatch_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &req.script_file {
            Some(file) => {
                cmd.arg(file).args(&req.script_args).stdin(Stdio::null());
            }
            None => {
                cmd.stdin(Stdio::piped());
            }
        }
        if let Some(dir) = &req.workdir {
            cmd.current_dir(dir);
        }
        let spawn_err = |source| SlurmError::Spawn {
            program: "sbatch".into(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            // sbatch that rejects its arguments exits before reading: its stderr says why.
            if let Err(e) = stdin.write_all(req.script.as_bytes()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(spawn_err(e));
                }
            }
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() {
            return Err(command_error("sbatch", &out));
        }
        parse_submit(&String::from_utf8_lossy(&out.stdout))
    }

    /// The state of job `job_id` (all tasks of an array), from squeue while the controller
    /// remembers it, else from `poll_accounting`.
    pub fn poll(&self, job_id: &str) -> Result<Vec<JobStatus>, SlurmError> {
        match self.poll_controller(job_id)? {
            Some(jobs) => Ok(jobs),
            None => self.poll_accounting(job_id),
        }
    }

    /// The controller's view (`squeue --states=all`), `None` once it has purged the job
    /// (MinJobAge after the end, 300 s by default).
    pub fn poll_controller(&self, job_id: &str) -> Result<Option<Vec<JobStatus>>, SlurmError> {
        let mut cmd = self.command("squeue");
        cmd.args(["--noheader", "--all", "--states=all", "--jobs", job_id])
            .arg(format!("--Format={SQUEUE_FORMAT}"));
        // squeue exits 1 with "Invalid job id specified" once the controller purged the job.
        self.jobs(cmd, "squeue", parse_squeue)
    }

    /// The jobs listed by `cmd` when it succeeds and lists any, else `None`.
    fn jobs(
        &self,
        cmd: Command,
        program: &str,
        parse: fn(&str) -> Vec<JobStatus>,
    ) -> Result<Option<Vec<JobStatus>>, SlurmError> {
        let out = self.output(cmd, program)?;
        let jobs = if out.status.success() {
            parse(&String::from_utf8_lossy(&out.stdout))
        } else {
            Vec::new()
        };
        Ok((!jobs.is_empty()).then_some(jobs))
    }

    /// The accounting view: `sacct` (slurmdbd), else `sacct -c` (the job completion log of
    /// `JobCompType=jobcomp/filetxt`). The completion log lists array tasks by raw id only.
    pub fn poll_accounting(&self, job_id: &str) -> Result<Vec<JobStatus>, SlurmError> {
        for completion_log in [false, true] {
            let mut cmd = self.command("sacct");
            if completion_log {
                cmd.arg("--completion");
            }
            cmd.args([
                "--noheader",
                "--parsable2",
                "--allocations",
                "--jobs",
                job_id,
            ])
            .arg(format!("--format={SACCT_FORMAT}"));
            if let Some(jobs) = self.jobs(cmd, "sacct", parse_sacct)? {
                return Ok(last_attempts(jobs));
            }
        }
        Err(SlurmError::UnknownJob {
            job_id: job_id.to_string(),
        })
    }

    /// Polls `job_id` every `interval` until every task has a final state, calling `on_poll`
    /// with each answer; gives up after `timeout`.
    pub fn wait(
        &self,
        job_id: &str,
        interval: Duration,
        timeout: Option<Duration>,
        mut on_poll: impl FnMut(&[JobStatus]),
    ) -> Result<Vec<JobStatus>, SlurmError> {
        let start = Instant::now();
        loop {
            let jobs = self.poll(job_id)?;
            on_poll(&jobs);
            if jobs.iter().all(|j| j.state.is_final()) {
                return Ok(jobs);
            }
            if let Some(t) = timeout {
                if start.elapsed() > t {
                    return Err(SlurmError::Timeout {
                        job_id: job_id.to_string(),
                        waited: start.elapsed(),
                    });
                }
            }
            std::thread::sleep(interval);
        }
    }

    /// Cancels job `job_id` (`scancel`).
    pub fn cancel(&self, job_id: &str) -> Result<(), SlurmError> {
        let mut cmd = self.command("scancel");
        cmd.arg(job_id);
        let out = self.output(cmd, "scancel")?;
        if !out.status.success() {
            return Err(command_error("scancel", &out));
        }
        Ok(())
    }

    /// The slurm.conf this client uses, when set explicitly.
    pub fn conf(&self) -> Option<&Path> {
        self.conf.as_deref()
    }
}

fn command_error(program: &str, out: &std::process::Output) -> SlurmError {
    SlurmError::Command {
        program: program.to_string(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_including_sacct_suffixes_and_abbreviations() {
        assert_eq!(JobState::parse("COMPLETED"), JobState::Completed);
        assert_eq!(JobState::parse("CANCELLED by 1000"), JobState::Cancelled);
        assert_eq!(JobState::parse("CA"), JobState::Cancelled);
        assert_eq!(JobState::parse("TO"), JobState::Timeout);
        assert_eq!(JobState::parse("RUNNING"), JobState::Running);
        assert_eq!(JobState::parse("REQUEUED"), JobState::Requeued);
        assert_eq!(
            JobState::parse("SIGNALING"),
            JobState::OtherActive("SIGNALING".into())
        );
        assert_eq!(JobState::parse("WEIRD"), JobState::Unknown("WEIRD".into()));
        assert!(!JobState::parse("PENDING").is_final());
        assert!(!JobState::parse("COMPLETING").is_final());
        assert!(JobState::parse("NODE_FAIL").is_final());
        assert!(JobState::parse("WEIRD").is_final());
    }

    fn out(state: &str, code: i32, sig: i32) -> Option<Outcome> {
        outcome(&JobState::parse(state), code, sig)
    }

    /// Final states as Slurm reports them → (status, recorded exit code, signal, the exit code
    /// of a waiting `repro`, a word the reason must contain).
    #[test]
    fn final_states_map_to_outcomes() {
        use Status::{Failed, Killed, Lost, Succeeded};
        /// Slurm's state, code and signal; the outcome; the wrapper's code; a word of the reason.
        type Row = (
            &'static str,
            i32,
            i32,
            Status,
            Option<i32>,
            Option<i32>,
            i32,
            Option<&'static str>,
        );
        #[rustfmt::skip]
        let table: &[Row] = &[
            ("COMPLETED", 0, 0, Succeeded, Some(0), None, 0, None),
            ("FAILED", 3, 0, Failed, Some(3), None, 3, Some("exited with 3")),
            // FAILED without a code: the script could not start.
            ("FAILED", 0, 0, Failed, None, None, 1, Some("without an exit code")),
            // FAILED by a signal (e.g. the script was SIGSEGVed) is killed.
            ("FAILED", 0, 11, Killed, None, Some(11), 139, Some("signal")),
            ("CANCELLED by 0", 0, 15, Killed, None, Some(15), 143, Some("CANCELLED")),
            // Cancelled while pending: no signal, exit 1.
            ("CANCELLED", 0, 0, Killed, None, None, 1, Some("CANCELLED")),
            ("TIMEOUT", 0, 15, Killed, None, Some(15), 143, Some("time limit")),
            ("DEADLINE", 0, 9, Killed, None, Some(9), 137, Some("DEADLINE")),
            ("PREEMPTED", 0, 9, Killed, None, Some(9), 137, Some("PREEMPTED")),
            ("OUT_OF_MEMORY", 0, 9, Killed, None, Some(9), 137, Some("memory")),
            ("NODE_FAIL", 0, 0, Lost, None, None, 1, Some("NODE_FAIL")),
            ("REVOKED", 0, 0, Lost, None, None, 1, Some("REVOKED")),
            ("SOMETHING_NEW", 0, 0, Lost, None, None, 1, Some("SOMETHING_NEW")),
            ("BOOT_FAIL", 0, 0, Failed, None, None, 1, Some("BOOT_FAIL")),
            ("SPECIAL_EXIT", 4, 0, Failed, Some(4), None, 4, Some("SPECIAL_EXIT")),
        ];
        for &(state, code, sig, status, exit_code, signal, wrapper, reason) in table {
            let o = out(state, code, sig).unwrap_or_else(|| panic!("{state}: no outcome"));
            let row = format!("{state} {code}:{sig} → {o:?}");
            assert_eq!(
                (o.status, o.exit_code, o.signal),
                (status, exit_code, signal),
                "{row}"
            );
            assert_eq!(o.wrapper_exit_code(), wrapper, "{row}");
            match reason {
                None => assert_eq!(o.reason, None, "{row}"),
                Some(word) => assert!(o.reason.as_deref().unwrap_or("").contains(word), "{row}"),
            }
        }
    }

    #[test]
    fn active_states_have_no_outcome() {
        for s in [
            "PENDING",
            "RUNNING",
            "COMPLETING",
            "SUSPENDED",
            "CONFIGURING",
            "REQUEUED",
        ] {
            assert_eq!(out(s, 0, 0), None, "{s}");
        }
    }

    // Values seen from Slurm 22.05 (Debian 12) on the test cluster, in SQUEUE_FORMAT's order.
    #[test]
    fn squeue_rows_parse() {
        let text = "8|8|N/A|CANCELLED|15|0|None|\n\
                    2|2|N/A|FAILED|768|0|NonZeroExitCode|\n\
                    7|4|1|FAILED|256|0|NonZeroExitCode|\n\
                    9|9|N/A|TIMEOUT|15|2|TimeLimit|\n";
        let jobs = parse_squeue(text);
        assert_eq!(jobs.len(), 4);
        assert_eq!(
            (jobs[0].state.clone(), jobs[0].exit_code, jobs[0].signal),
            (JobState::Cancelled, 0, 15)
        );
        assert_eq!(jobs[0].reason, None);
        assert_eq!((jobs[1].exit_code, jobs[1].signal), (3, 0));
        assert_eq!(jobs[1].reason.as_deref(), Some("NonZeroExitCode"));
        assert_eq!(jobs[2].display_id(), "4_1");
        assert_eq!(jobs[2].job_id, "7");
        assert_eq!(jobs[2].exit_code, 1);
        assert_eq!(jobs[3].state, JobState::Timeout);
        assert_eq!(jobs[3].reason.as_deref(), Some("TimeLimit"));
        assert_eq!((jobs[0].restarts, jobs[3].restarts), (Some(0), Some(2)));
        assert!(parse_squeue("garbage\n").is_empty());
    }

    // `sacct -c` prints raw ids in both columns; `sacct` with slurmdbd prints `ARRAY_TASK` in the
    // second and "CANCELLED by UID".
    #[test]
    fn sacct_rows_parse() {
        let text = "3|3|CANCELLED by 0|0:0\n2|2|FAILED|3:0\n7|4_1|FAILED|1:0\n8|8|CANCELLED|0:15\n";
        let jobs = parse_sacct(text);
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].state, JobState::Cancelled);
        assert_eq!((jobs[1].exit_code, jobs[1].signal), (3, 0));
        assert_eq!(jobs[2].display_id(), "4_1");
        assert_eq!(jobs[3].signal, 15);
        assert!(parse_sacct("").is_empty());
    }

    // Slurm 22.05's completion log after `scontrol requeue` of job 1 and of task 6 (raw id 7):
    // a PENDING row for each requeue, then the final one.
    #[test]
    fn a_requeued_job_is_its_last_row_with_the_restarts_counted() {
        let text = "1|1|PENDING|0:0\n7|6_1|PENDING|0:0\n1|1|PENDING|0:0\n1|1|COMPLETED|0:0\n\
                    7|6_1|FAILED|2:0\n9|9|COMPLETED|0:0\n";
        let jobs = last_attempts(parse_sacct(text));
        let seen: Vec<(&str, JobState, i32, Option<u32>)> = jobs
            .iter()
            .map(|j| (j.job_id.as_str(), j.state.clone(), j.exit_code, j.restarts))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("1", JobState::Completed, 0, Some(2)),
                ("7", JobState::Failed, 2, Some(1)),
                ("9", JobState::Completed, 0, None),
            ]
        );
        assert!(jobs.iter().all(|j| j.state.is_final()));
    }

    #[test]
    fn submit_output_parses() {
        assert_eq!(parse_submit("42\n").unwrap(), "42");
        assert_eq!(parse_submit("42;cluster\n").unwrap(), "42");
        assert!(parse_submit("Submitted batch job 42").is_err());
        assert!(parse_submit("").is_err());
    }
}
